//! Webcams through nokhwa (V4L2 on Linux). MJPG or YUYV at 640x480 or 1280x720, 30 fps, whichever
//! the camera offers closest; frames are decoded here (MJPG with the `image` crate's JPEG
//! decoder, YUYV with BT.601 limited-range arithmetic).

use std::time::Instant;

use rayon::prelude::*;

use nokhwa::Camera;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use super::{CaptureError, FrameSource};
use crate::frame::{Frame, Size};

/// Which camera, as `--camera` takes it everywhere: its index (`0` = /dev/video0), a device
/// path (`/dev/video2`, or a link to one such as `/dev/v4l/by-id/...`), or part of its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSelector {
    /// `/dev/video<N>`.
    Index(u32),
    /// A device path that is not of the form `/dev/video<N>` (resolved when opened).
    Path(std::path::PathBuf),
    /// Part of the camera's name, any case.
    Name(String),
}

/// An empty `--camera` value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("an empty camera name: give an index (0), a device path (/dev/video0) or part of its name")]
pub struct EmptyCameraSelector;

impl std::str::FromStr for CameraSelector {
    type Err = EmptyCameraSelector;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(EmptyCameraSelector);
        }
        Ok(match s.trim_start_matches("/dev/video").parse::<u32>() {
            Ok(i) => CameraSelector::Index(i),
            Err(_) if s.starts_with('/') => CameraSelector::Path(s.into()),
            Err(_) => CameraSelector::Name(s.to_string()),
        })
    }
}

impl std::fmt::Display for CameraSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CameraSelector::Index(i) => write!(f, "/dev/video{i}"),
            CameraSelector::Path(p) => write!(f, "{}", p.display()),
            CameraSelector::Name(n) => f.write_str(n),
        }
    }
}

/// What a camera delivers, and what we ask of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebcamRequest {
    /// Preferred frame size (else 640x480, else what the camera has).
    pub size: Size,
    /// Preferred frame rate.
    pub fps: u32,
    /// Prefer MJPG (less USB bandwidth, 720p30 on USB 2) over YUYV.
    pub mjpeg: bool,
}

impl Default for WebcamRequest {
    fn default() -> Self {
        Self {
            size: Size::new(1280, 720),
            fps: 30,
            mjpeg: true,
        }
    }
}

/// A camera name and its index as nokhwa reports them.
#[derive(Debug, Clone)]
pub struct CameraEntry {
    /// nokhwa's index (a number for V4L2 devices: N of /dev/videoN).
    pub index: String,
    /// The camera's human-readable name.
    pub name: String,
    /// nokhwa's description of it.
    pub description: String,
}

/// Cameras the system offers.
pub fn list_cameras() -> Result<Vec<CameraEntry>, CaptureError> {
    let infos = nokhwa::query(ApiBackend::Video4Linux).map_err(|e| CaptureError::Camera {
        camera: "*".into(),
        message: e.to_string(),
    })?;
    Ok(infos
        .into_iter()
        .map(|i| CameraEntry {
            index: i.index().to_string(),
            name: i.human_name(),
            description: i.description().to_string(),
        })
        .collect())
}

/// A V4L2 webcam as a [`FrameSource`] (through nokhwa): MJPG, YUYV or RGB frames turned into RGB8.
pub struct Webcam {
    selector: CameraSelector,
    request: WebcamRequest,
    camera: Option<Camera>,
    seq: u64,
    label: String,
}

impl Webcam {
    /// Opens the camera and starts streaming.
    pub fn open(selector: CameraSelector, request: WebcamRequest) -> Result<Self, CaptureError> {
        let mut cam = Self {
            label: format!("{selector:?}"),
            selector,
            request,
            camera: None,
            seq: 0,
        };
        cam.reopen()?;
        Ok(cam)
    }

    fn err(&self, message: String) -> CaptureError {
        CaptureError::Camera {
            camera: self.label.clone(),
            message,
        }
    }

    fn resolve_index(&self) -> Result<CameraIndex, CaptureError> {
        match &self.selector {
            CameraSelector::Index(i) => Ok(CameraIndex::Index(*i)),
            CameraSelector::Path(path) => {
                // A link such as /dev/v4l/by-id/... leads to the /dev/video<N> node.
                let target = std::fs::canonicalize(path)
                    .map_err(|e| self.err(format!("{}: {e}", path.display())))?;
                target
                    .to_str()
                    .and_then(|t| t.strip_prefix("/dev/video"))
                    .and_then(|n| n.parse::<u32>().ok())
                    .map(CameraIndex::Index)
                    .ok_or_else(|| {
                        self.err(format!(
                            "{} is not a video device (/dev/video<N>)",
                            path.display()
                        ))
                    })
            }
            CameraSelector::Name(name) => {
                let wanted = name.to_lowercase();
                let cams = list_cameras()?;
                cams.iter()
                    .find(|c| c.name.to_lowercase().contains(&wanted))
                    .map(|c| match c.index.parse::<u32>() {
                        Ok(i) => CameraIndex::Index(i),
                        Err(_) => CameraIndex::String(c.index.clone()),
                    })
                    .ok_or_else(|| {
                        self.err(format!(
                            "no camera named like {name:?}; cameras: {}",
                            cams.iter()
                                .map(|c| format!("{} ({})", c.name, c.index))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
            }
        }
    }

    /// The format the camera actually delivers.
    pub fn format(&self) -> Option<CameraFormat> {
        self.camera.as_ref().map(|c| c.camera_format())
    }
}

/// One MJPG camera frame (a JPEG picture) to packed RGB.
pub fn decode_mjpg(jpeg: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    Ok(
        image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)?
            .to_rgb8()
            .into_raw(),
    )
}

/// YUYV (Y0 U Y1 V) to RGB8, BT.601 limited range, `size` pixels (a short input leaves the rest
/// black).
pub fn yuyv_to_rgb(yuyv: &[u8], size: Size) -> Vec<u8> {
    let (w, h) = (size.width as usize, size.height as usize);
    let mut out = vec![0u8; w * h * 3];
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    // Two pixels per 4 input bytes; rows in parallel.
    let pairs = (w * h / 2).min(yuyv.len() / 4);
    out[..pairs * 6]
        .par_chunks_mut(w.max(2) / 2 * 6)
        .zip(yuyv[..pairs * 4].par_chunks(w.max(2) / 2 * 4))
        .for_each(|(dst, src)| {
            for (o, px) in dst.chunks_exact_mut(6).zip(src.chunks_exact(4)) {
                let (y0, u, y1, v) = (
                    px[0] as i32 - 16,
                    px[1] as i32 - 128,
                    px[2] as i32 - 16,
                    px[3] as i32 - 128,
                );
                // Inverse of the BT.601 matrix in 16.16 fixed point: 1.164 Y + 1.596 Cr, etc.
                let (rv, guv, bu) = (104597 * v, -25675 * u - 53279 * v, 132201 * u);
                let (c0, c1) = (76309 * y0 + 32768, 76309 * y1 + 32768);
                o[0] = clamp((c0 + rv) >> 16);
                o[1] = clamp((c0 + guv) >> 16);
                o[2] = clamp((c0 + bu) >> 16);
                o[3] = clamp((c1 + rv) >> 16);
                o[4] = clamp((c1 + guv) >> 16);
                o[5] = clamp((c1 + bu) >> 16);
            }
        });
    out
}

impl FrameSource for Webcam {
    fn name(&self) -> String {
        format!("camera:{}", self.label)
    }

    fn reopen(&mut self) -> Result<(), CaptureError> {
        if let Some(mut old) = self.camera.take() {
            let _ = old.stop_stream();
        }
        let index = self.resolve_index()?;
        // Ask for the preferred format first, then fall back: not every camera (vivid, many
        // cheap webcams) offers MJPG, and nokhwa refuses a "closest" request in a format the
        // camera lacks.
        let (w, h, fps) = (
            self.request.size.width,
            self.request.size.height,
            self.request.fps,
        );
        let order = if self.request.mjpeg {
            [FrameFormat::MJPEG, FrameFormat::YUYV]
        } else {
            [FrameFormat::YUYV, FrameFormat::MJPEG]
        };
        let mut attempts = Vec::new();
        for fourcc in order {
            for (cw, ch) in [(w, h), (640, 480)] {
                attempts.push(RequestedFormatType::Closest(CameraFormat::new(
                    Resolution::new(cw, ch),
                    fourcc,
                    fps,
                )));
            }
        }
        attempts.push(RequestedFormatType::AbsoluteHighestFrameRate);
        let mut last_error = String::new();
        let mut opened = None;
        for attempt in attempts {
            let format = RequestedFormat::new::<RgbFormat>(attempt);
            match Camera::with_backend(index.clone(), format, ApiBackend::Video4Linux) {
                Ok(c) => {
                    opened = Some(c);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let mut camera = opened.ok_or_else(|| {
            self.err(format!(
                "cannot open it ({last_error}); is it plugged in and not used by another program?"
            ))
        })?;
        camera
            .open_stream()
            .map_err(|e| self.err(format!("cannot start streaming ({e})")))?;
        self.label = camera.info().human_name();
        tracing::info!("camera {} delivers {}", self.label, camera.camera_format());
        self.camera = Some(camera);
        Ok(())
    }

    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        let camera = self.camera.as_mut().ok_or_else(|| CaptureError::Camera {
            camera: self.label.clone(),
            message: "not open".into(),
        })?;
        let fmt = camera.camera_format();
        let raw = match camera.frame_raw() {
            Ok(raw) => raw,
            Err(e) => {
                // Let go of the device at once (an unplugged camera's driver can only go away,
                // and another program can only take it, once it is closed); `reopen` opens it
                // again.
                let message = format!("frame read failed ({e})");
                if let Some(mut old) = self.camera.take() {
                    let _ = old.stop_stream();
                }
                return Err(CaptureError::Camera {
                    camera: self.label.clone(),
                    message,
                });
            }
        };
        let captured_at = Instant::now();
        let size = Size::new(fmt.width(), fmt.height());
        let rgb = match fmt.format() {
            FrameFormat::MJPEG => decode_mjpg(&raw).map_err(|e| CaptureError::Camera {
                camera: self.label.clone(),
                message: format!("bad MJPG frame ({e})"),
            })?,
            FrameFormat::YUYV => yuyv_to_rgb(&raw, size),
            FrameFormat::RAWRGB => raw.to_vec(),
            other => {
                return Err(CaptureError::Camera {
                    camera: self.label.clone(),
                    message: format!("unsupported camera format {other}"),
                });
            }
        };
        let frame =
            Frame::new(self.seq, captured_at, size, rgb).map_err(|e| CaptureError::Camera {
                camera: self.label.clone(),
                message: e.to_string(),
            })?;
        self.seq += 1;
        Ok(frame)
    }
}
