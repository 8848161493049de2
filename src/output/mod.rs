//! Where animated frames go: a v4l2loopback virtual camera, a recorder (video file or PNG
//! folder), or nowhere. One [`FrameSink`] interface; sinks know only [`crate::frame`].

pub mod compose;
pub mod convert;
pub mod switch;
pub mod v4l2;

use std::path::{Path, PathBuf};

use crate::frame::Frame;
use crate::media::MediaError;
use crate::media::frames::FrameFolderWriter;
use crate::media::video::{VideoWriter, is_video_path};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("virtual camera {path}: {message}")]
    Device { path: String, message: String },
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(
        "the recording cannot keep up: a frame waited {waited:?} for room in its queue (the disk \
         or the encoder is too slow); record to a faster disk, or as a video rather than PNGs"
    )]
    TooSlow { waited: std::time::Duration },
    #[error("frame is {got} but the {sink} sink was opened for {want}")]
    WrongSize {
        sink: String,
        got: String,
        want: String,
    },
}

/// A consumer of frames. `write` must not block for long: the pipeline gives each sink its own
/// thread, but a sink that stalls still delays its own frames.
pub trait FrameSink: Send {
    /// For messages and stats ("v4l2:/dev/video10", "record:out.mp4", "null").
    fn name(&self) -> String;
    fn write(&mut self, frame: &Frame) -> Result<(), SinkError>;
    /// Whether the last frame should be written again when no new one arrives in time (virtual
    /// cameras: browsers list a v4l2loopback device only while it is being written to).
    fn repeats(&self) -> bool {
        false
    }
    /// Whether the sink must get every animated frame (a recording) rather than the newest one (a
    /// live output). The pipeline then gives it a bounded queue and waits for it when it is full
    /// ([`crate::pipeline::queue`]), drains the queue before stopping, and sends it no still frames.
    fn lossless(&self) -> bool {
        false
    }
    /// Flush and close (a video file is finalised here).
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Takes frames and does nothing (benchmarks, headless runs that only want stats).
#[derive(Debug, Default)]
pub struct NullSink {
    pub frames: u64,
}

impl FrameSink for NullSink {
    fn name(&self) -> String {
        "null".into()
    }
    fn write(&mut self, _frame: &Frame) -> Result<(), SinkError> {
        self.frames += 1;
        Ok(())
    }
}

enum RecorderTarget {
    /// Opened lazily at the first frame, when the size is known.
    Video {
        writer: Option<VideoWriter>,
        fps: f64,
    },
    Folder(FrameFolderWriter),
}

/// Records frames to a video file (by extension: H.264 mp4 etc., at a constant frame rate) or a
/// folder of PNGs: every animated frame the pipeline makes (a lossless sink), optionally only the
/// first N.
pub struct Recorder {
    path: PathBuf,
    target: RecorderTarget,
    limit: Option<u64>,
    written: u64,
}

impl Recorder {
    pub fn create(path: &Path, fps: f64) -> Result<Self, SinkError> {
        let target = if is_video_path(path) {
            RecorderTarget::Video { writer: None, fps }
        } else {
            RecorderTarget::Folder(FrameFolderWriter::create(path, 0)?)
        };
        Ok(Self {
            path: path.to_path_buf(),
            target,
            limit: None,
            written: 0,
        })
    }

    /// Keeps only the first `limit` frames (`--frames N`: the run may make one or two more before
    /// it stops).
    pub fn with_limit(mut self, limit: Option<u64>) -> Self {
        self.limit = limit;
        self
    }

    /// Frames recorded so far.
    pub fn frames_written(&self) -> u64 {
        self.written
    }
}

impl FrameSink for Recorder {
    fn name(&self) -> String {
        format!("record:{}", self.path.display())
    }

    fn lossless(&self) -> bool {
        true
    }

    fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        if self.limit.is_some_and(|n| self.written >= n) {
            return Ok(());
        }
        let img = frame.to_image().ok_or_else(|| SinkError::WrongSize {
            sink: self.name(),
            got: frame.size.to_string(),
            want: "a consistent RGB buffer".into(),
        })?;
        match &mut self.target {
            RecorderTarget::Folder(w) => {
                w.write(&img)?;
            }
            RecorderTarget::Video { writer, fps } => {
                if writer.is_none() {
                    *writer = Some(VideoWriter::create(
                        &self.path,
                        frame.size.width,
                        frame.size.height,
                        *fps,
                        None,
                    )?);
                }
                if let Some(w) = writer {
                    w.write(&img)?;
                }
            }
        }
        self.written += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if let RecorderTarget::Video { writer, .. } = &mut self.target
            && let Some(w) = writer.take()
        {
            w.finish()?;
        }
        Ok(())
    }
}
