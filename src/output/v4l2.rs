//! The virtual camera: frames written to a v4l2loopback device (V4L2 output, `write()` I/O),
//! converted to YUYV (default) or I420 and framed to 640x480 or 1280x720.

use std::io::Write;
use std::path::{Path, PathBuf};

use v4l::video::Output;
use v4l::{Device, Format, FourCC};

use super::compose::compose_convert;
use super::convert::{PixelFormat, convert};
use super::{FrameSink, SinkError};
use crate::frame::{Frame, Size};

/// An open v4l2loopback output.
pub struct V4l2Sink {
    path: PathBuf,
    device: Device,
    size: Size,
    format: PixelFormat,
    /// Frame rate announced to consumers.
    fps: u32,
    yuv: Vec<u8>,
    /// Frames not written because the device was busy (EAGAIN): a slow consumer never stalls us.
    pub skipped: u64,
    /// Frames written.
    pub written: u64,
}

impl V4l2Sink {
    /// Opens `path`, checks it is a video output device and sets the format.
    pub fn open(path: &Path, size: Size, format: PixelFormat, fps: u32) -> Result<Self, SinkError> {
        let err = |message: String| SinkError::Device {
            path: path.display().to_string(),
            message,
        };
        let device = Device::with_path(path).map_err(|e| {
            err(format!(
                "cannot open it ({e}). Is v4l2loopback loaded (set it up with {}) and \
                 do you have access (group `video`)?",
                crate::devices::SETUP_HINT
            ))
        })?;
        let caps = device
            .query_caps()
            .map_err(|e| err(format!("not a V4L2 device ({e})")))?;
        if !caps
            .capabilities
            .contains(v4l::capability::Flags::VIDEO_OUTPUT)
        {
            return Err(err(if caps.driver.contains("loopback") {
                format!(
                    "the virtual camera {} does not accept a writer now: another program is writing to \
                     it, or one that wrote with plain write() left it stuck (a v4l2loopback 0.12 bug; \
                     marionette itself releases it). Close the other program, or reload the module: \
                     sudo modprobe -r v4l2loopback, then {}",
                    caps.card,
                    crate::devices::SETUP_HINT
                )
            } else {
                format!(
                    "{} ({}) is not a video output device: pick the v4l2loopback device (see `marionette devices`)",
                    caps.card, caps.driver
                )
            }));
        }
        let want = Format::new(size.width, size.height, FourCC::new(&format.fourcc()));
        let got = Output::set_format(&device, &want)
            .map_err(|e| err(format!("cannot set format {size} {:?}: {e}", format)))?;
        if got.width != size.width || got.height != size.height || got.fourcc != want.fourcc {
            return Err(err(format!(
                "the device took {}x{} {} instead of {size} {}: another program may be writing to it with another format",
                got.width, got.height, got.fourcc, want.fourcc
            )));
        }
        // Frame rate for consumers that ask (best effort: not every loopback version supports it).
        let _ = Output::set_params(&device, &v4l::video::output::Parameters::with_fps(fps));
        stream_on(&device).map_err(|e| err(format!("cannot start the output stream: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            device,
            size,
            format,
            fps,
            yuv: Vec::new(),
            skipped: 0,
            written: 0,
        })
    }

    /// The frame size the device was set to.
    pub fn size(&self) -> Size {
        self.size
    }

    /// The pixel format the device was set to.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The frame rate announced to consumers.
    pub fn fps(&self) -> u32 {
        self.fps
    }
}

/// VIDIOC_STREAMON on the output queue, although frames go out with write(): v4l2loopback (0.12.x)
/// records an opener as its writer only here, and only a recorded writer gives the device back when
/// it closes. A writer that only calls write() leaves the device refusing new writers (it reports
/// neither capture nor output) until the module is reloaded, so the virtual camera would not come
/// back after marionette restarts. Found in the VM test; see v4l2loopback.c, vidioc_streamon and
/// v4l2_loopback_close.
fn stream_on(device: &Device) -> std::io::Result<()> {
    let mut buf_type = v4l::buffer::Type::VideoOutput as u32;
    // SAFETY: VIDIOC_STREAMON reads one int (the buffer type) through the pointer, which points at
    // `buf_type`, alive for the whole call; the descriptor belongs to `device`, open for the call.
    unsafe {
        v4l::v4l2::ioctl(
            device.handle().fd(),
            v4l::v4l2::vidioc::VIDIOC_STREAMON,
            &mut buf_type as *mut u32 as *mut std::os::raw::c_void,
        )
    }
}

impl FrameSink for V4l2Sink {
    fn name(&self) -> String {
        format!("v4l2:{}", self.path.display())
    }

    fn repeats(&self) -> bool {
        true
    }

    fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        if frame.size == self.size {
            convert(frame, self.format, &mut self.yuv);
        } else {
            compose_convert(frame, self.size, false, self.format, &mut self.yuv);
        }
        self.send()
    }

    fn repeat(&mut self) -> Result<bool, SinkError> {
        if self.yuv.is_empty() {
            return Ok(false);
        }
        self.send().map(|()| true)
    }
}

impl V4l2Sink {
    /// Writes the converted frame in `yuv` to the device.
    fn send(&mut self) -> Result<(), SinkError> {
        match self.device.write(&self.yuv) {
            Ok(n) if n == self.yuv.len() => {
                self.written += 1;
                Ok(())
            }
            Ok(n) => Err(SinkError::Device {
                path: self.path.display().to_string(),
                message: format!("short write: {n} of {} bytes", self.yuv.len()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.skipped += 1;
                Ok(())
            }
            Err(e) => Err(SinkError::Device {
                path: self.path.display().to_string(),
                message: format!("write failed: {e}"),
            }),
        }
    }
}
