//! The V4L2 devices on this machine: webcams to read and virtual cameras (v4l2loopback) to
//! write, and the `--vcam auto|none|PATH` choice that `run` and the window share.

use std::path::PathBuf;
use std::str::FromStr;

use v4l::Device;

/// A V4L2 device node and what it is.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// `/dev/video<N>`.
    pub path: PathBuf,
    /// The name the driver gives it ("marionette" for our virtual camera).
    pub card: String,
    /// The driver ("v4l2 loopback", "uvcvideo", "vivid").
    pub driver: String,
    /// It delivers frames.
    pub capture: bool,
    /// It takes frames.
    pub output: bool,
}

/// Every /dev/video* node with its name and whether it captures or outputs.
pub fn list_devices() -> Vec<DeviceInfo> {
    let mut nodes: Vec<_> = v4l::context::enum_devices();
    nodes.sort_by_key(|n| n.index());
    nodes
        .into_iter()
        .filter_map(|node| {
            let dev = Device::with_path(node.path()).ok()?;
            let caps = dev.query_caps().ok()?;
            let flags = caps.capabilities;
            use v4l::capability::Flags;
            Some(DeviceInfo {
                path: node.path().to_path_buf(),
                card: caps.card,
                driver: caps.driver,
                capture: flags.intersects(Flags::VIDEO_CAPTURE | Flags::VIDEO_CAPTURE_MPLANE),
                output: flags.intersects(Flags::VIDEO_OUTPUT | Flags::VIDEO_OUTPUT_MPLANE),
            })
        })
        .collect()
}

impl DeviceInfo {
    /// A v4l2loopback node (a virtual camera), whichever way it reports itself just now.
    pub fn is_loopback(&self) -> bool {
        self.driver.contains("loopback")
    }

    /// A virtual camera marionette can write to.
    pub fn is_virtual_camera(&self) -> bool {
        self.is_loopback() && self.output
    }

    /// A camera to read from (a capture node that is not a virtual camera).
    pub fn is_webcam(&self) -> bool {
        self.capture && !self.is_loopback()
    }
}

/// The virtual camera to write to when none is named: a v4l2loopback node that accepts output,
/// the one labelled "marionette" (marionette-setup-virtual-camera) first.
pub fn find_virtual_camera(devices: &[DeviceInfo]) -> Option<&DeviceInfo> {
    let loopbacks: Vec<&DeviceInfo> = devices.iter().filter(|d| d.is_virtual_camera()).collect();
    loopbacks
        .iter()
        .find(|d| d.card.eq_ignore_ascii_case("marionette"))
        .or(loopbacks.first())
        .copied()
}

/// The webcam to read when none is named: the first capture node that is not a virtual camera.
pub fn find_webcam(devices: &[DeviceInfo]) -> Option<&DeviceInfo> {
    devices.iter().find(|d| d.is_webcam())
}

/// Which virtual camera to write to, as `--vcam` and the window's setting say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcamChoice {
    /// The v4l2loopback device found, if any ([`find_virtual_camera`]).
    Auto,
    /// No virtual camera.
    None,
    /// This device.
    Path(PathBuf),
}

/// An empty `--vcam` value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("an empty virtual-camera choice: use auto, none or a device path such as /dev/video10")]
pub struct EmptyVcamChoice;

impl FromStr for VcamChoice {
    type Err = EmptyVcamChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Err(EmptyVcamChoice),
            "auto" => Ok(VcamChoice::Auto),
            "none" | "off" => Ok(VcamChoice::None),
            path => Ok(VcamChoice::Path(PathBuf::from(path))),
        }
    }
}

/// How to set up the virtual camera: the installed command, or the same script in a checkout.
macro_rules! setup_hint {
    () => {
        "`sudo marionette-setup-virtual-camera` (in a source checkout: \
         `sudo bash packaging/setup-virtual-camera.sh`)"
    };
}

/// How to set up the virtual camera, for messages.
pub const SETUP_HINT: &str = setup_hint!();

/// What to tell the user when `auto` finds no virtual camera.
pub const NO_VIRTUAL_CAMERA: &str = concat!(
    "no virtual camera found (v4l2loopback is not loaded): set one up with ",
    setup_hint!()
);

impl VcamChoice {
    /// The device to open: `Ok(None)` for `none`, `Err` with [`NO_VIRTUAL_CAMERA`] when `auto`
    /// finds nothing.
    pub fn resolve(&self, devices: &[DeviceInfo]) -> Result<Option<PathBuf>, &'static str> {
        match self {
            VcamChoice::None => Ok(None),
            VcamChoice::Path(p) => Ok(Some(p.clone())),
            VcamChoice::Auto => find_virtual_camera(devices)
                .map(|d| Some(d.path.clone()))
                .ok_or(NO_VIRTUAL_CAMERA),
        }
    }
}
