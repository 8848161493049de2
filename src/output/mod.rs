//! Where animated frames go: a v4l2loopback virtual camera, a recorder (video file or PNG
//! folder), or nowhere. One [`FrameSink`] interface; sinks know only [`crate::frame`].

pub mod badge;
pub mod compose;
pub mod convert;
pub mod switch;
pub mod v4l2;

use std::path::{Path, PathBuf};

use crate::frame::Frame;
use crate::media::MediaError;
use crate::media::frames::{FrameFolderWriter, PngText};
use crate::media::video::{VideoWriter, is_video_path};

/// Why a sink could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The virtual-camera device could not be opened, set up or written.
    #[error("virtual camera {path}: {message}")]
    Device {
        /// The device path.
        path: String,
        /// What failed, with what to do about it.
        message: String,
    },
    /// The recorder could not write its video or picture.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// A lossless sink's queue stayed full too long: the recorder cannot keep up.
    #[error(
        "the recording cannot keep up: a frame waited {waited:?} for room in its queue (the disk \
         or the encoder is too slow); record to a faster disk, or as a video rather than PNGs"
    )]
    TooSlow {
        /// How long the frame waited.
        waited: std::time::Duration,
    },
    /// A frame's buffer does not match its size (or the size the sink was opened for).
    #[error("a {got} frame does not fit the {sink} sink: it needs {want}")]
    WrongSize {
        /// The sink's name.
        sink: String,
        /// The frame's size.
        got: String,
        /// What the sink expected.
        want: String,
    },
}

/// A consumer of frames. `write` must not block for long: the pipeline gives each sink its own
/// thread, but a sink that stalls still delays its own frames.
pub trait FrameSink: Send {
    /// For messages and stats ("v4l2:/dev/video10", "record:out.mp4", "null").
    fn name(&self) -> String;
    /// Writes one frame.
    fn write(&mut self, frame: &Frame) -> Result<(), SinkError>;
    /// Whether the last frame should be written again when no new one arrives in time (virtual
    /// cameras: browsers list a v4l2loopback device only while it is being written to).
    fn repeats(&self) -> bool {
        false
    }
    /// Writes the last frame again, as it was already converted: a repeat costs a copy, never a
    /// conversion. `Ok(false)` when the sink has nothing converted to repeat (then the caller
    /// writes the frame itself).
    fn repeat(&mut self) -> Result<bool, SinkError> {
        Ok(false)
    }
    /// Whether the sink must get every animated frame (a recording) rather than the newest one (a
    /// live output). The pipeline then gives it a queue bounded in memory, waits for it when the
    /// queue is full, drains the queue before stopping, and sends it no still frames.
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
    /// Frames taken.
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
        /// `-metadata` entries.
        tags: Vec<(String, String)>,
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
    /// A recorder into `path`: a video at `fps` when the extension is a video's (opened at the
    /// first frame, at its size), else a folder of PNGs (created now).
    pub fn create(path: &Path, fps: f64) -> Result<Self, SinkError> {
        let target = if is_video_path(path) {
            RecorderTarget::Video {
                writer: None,
                fps,
                tags: Vec::new(),
            }
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

    /// Every recording says it is a synthetic animation and what made it
    /// ([`crate::provenance`]): the video's `comment`, or each PNG's text chunks.
    pub fn with_provenance(mut self, provenance: &crate::provenance::Provenance) -> Self {
        self.target = match self.target {
            RecorderTarget::Video { writer, fps, .. } => RecorderTarget::Video {
                writer,
                fps,
                tags: provenance.video_tags(),
            },
            RecorderTarget::Folder(w) => {
                RecorderTarget::Folder(w.with_text(PngText::provenance(provenance)))
            }
        };
        self
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
            want: "an RGB buffer of that size".into(),
        })?;
        match &mut self.target {
            RecorderTarget::Folder(w) => {
                w.write(&img)?;
            }
            RecorderTarget::Video { writer, fps, tags } => {
                if writer.is_none() {
                    *writer = Some(VideoWriter::create_tagged(
                        &self.path,
                        frame.size.width,
                        frame.size.height,
                        *fps,
                        None,
                        tags,
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
