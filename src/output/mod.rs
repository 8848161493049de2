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

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("virtual camera {path}: {message}")]
    Device { path: String, message: String },
    #[error(transparent)]
    Media(#[from] MediaError),
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
        /// `-metadata` entries.
        tags: Vec<(String, String)>,
    },
    Folder(FrameFolderWriter),
}

/// Records frames to a video file (by extension: H.264 mp4 etc.) or a folder of PNGs.
pub struct Recorder {
    path: PathBuf,
    target: RecorderTarget,
}

impl Recorder {
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
        })
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

    fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        let img = frame.to_image().ok_or_else(|| SinkError::WrongSize {
            sink: self.name(),
            got: frame.size.to_string(),
            want: "a consistent RGB buffer".into(),
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
