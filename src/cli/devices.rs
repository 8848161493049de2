//! `marionette devices`: the cameras and virtual-camera outputs found.

use anyhow::Result;

use marionette::devices::list_devices;

/// Runs `devices`.
pub fn run() -> Result<()> {
    let devices = list_devices();
    if devices.is_empty() {
        println!(
            "no V4L2 devices (/dev/video*): no webcam, and v4l2loopback is not loaded (set it up \
             with {})",
            marionette::devices::SETUP_HINT
        );
    }
    for d in &devices {
        let kind = match (d.capture, d.output) {
            (true, true) => "camera + output",
            (true, false) => "camera",
            (false, true) => "virtual-camera output",
            _ => "other",
        };
        println!("{}\t{}\t{} ({})", d.path.display(), kind, d.card, d.driver);
    }
    Ok(())
}
