//! Where driving frames come from: a webcam (nokhwa), a video file (played at its own rate,
//! looping), a folder of images, or a built-in test pattern. One [`FrameSource`] interface;
//! sources know only [`crate::frame`].

pub(crate) mod pattern;
pub mod webcam;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::frame::Frame;
use crate::media::MediaError;
use crate::media::frames::{list_image_files, load_rgb};
use crate::media::video::VideoReader;

/// Why a driving source could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A webcam could not be found, opened or read, or sent a frame that cannot be decoded.
    #[error("camera {camera}: {message}")]
    Camera {
        /// The camera's name or selector.
        camera: String,
        /// What failed.
        message: String,
    },
    /// A video file or picture could not be read.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// A video file or folder (named) has no frames.
    #[error("{0} has no frames")]
    Empty(String),
}

impl CaptureError {
    /// Whether reopening the source later may help (an unplugged or busy camera).
    pub fn is_transient(&self) -> bool {
        matches!(self, CaptureError::Camera { .. })
    }
}

/// Creates the frame source on the capture thread (cameras must stay on their thread).
pub type SourceFactory = Box<dyn FnOnce() -> Result<Box<dyn FrameSource>, CaptureError> + Send>;

/// A driving source by description.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// No driving source: idle motion.
    Idle,
    /// A webcam.
    Camera(webcam::CameraSelector),
    /// The built-in moving test pattern.
    TestPattern,
    /// A video file (played at its own rate, looping) or a folder of frames (at `fps`).
    File {
        /// The video or folder.
        path: PathBuf,
        /// Frame rate of a folder.
        fps: f64,
    },
}

impl SourceSpec {
    /// The factory that opens this source on the capture thread; `None` for idle motion.
    /// `face` is the portrait the test pattern moves around.
    pub fn factory(&self, face: image::RgbImage) -> Option<SourceFactory> {
        match self.clone() {
            SourceSpec::Idle => None,
            SourceSpec::Camera(selector) => Some(Box::new(move || {
                Ok(Box::new(webcam::Webcam::open(
                    selector,
                    webcam::WebcamRequest::default(),
                )?) as Box<dyn FrameSource>)
            })),
            SourceSpec::TestPattern => Some(Box::new(move || {
                Ok(Box::new(pattern::TestPattern::new(
                    face,
                    crate::frame::Size::new(640, 480),
                    30.0,
                )) as Box<dyn FrameSource>)
            })),
            SourceSpec::File { path, fps } => Some(Box::new(move || {
                if path.is_dir() {
                    Ok(Box::new(FolderSource::open(&path, fps)?) as Box<dyn FrameSource>)
                } else {
                    Ok(Box::new(VideoFileSource::open(&path)?) as Box<dyn FrameSource>)
                }
            })),
        }
    }
}

/// A stream of driving frames. `next_frame` blocks until the next frame is due.
/// Not `Send`: some cameras must stay on the thread that opened them, so the pipeline builds
/// each source on its capture thread from a `Send` factory.
pub trait FrameSource {
    /// For messages and stats (`camera:<name>`, `video:<path>`, `folder:<path>`,
    /// `test-pattern`).
    fn name(&self) -> String;
    /// The next frame, once it is due.
    fn next_frame(&mut self) -> Result<Frame, CaptureError>;
    /// Tries to get a failed source going again (a webcam that was unplugged).
    fn reopen(&mut self) -> Result<(), CaptureError> {
        Ok(())
    }
}

/// Sleeps so that frames come out at a steady rate.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(fps: f64) -> Self {
        let fps = if fps.is_finite() && fps > 0.0 {
            fps.min(240.0)
        } else {
            30.0
        };
        Self {
            interval: Duration::from_secs_f64(1.0 / fps),
            next: None,
        }
    }

    /// Waits for the next slot. Falls behind gracefully: a late frame is not followed by a burst.
    pub fn wait(&mut self) {
        let now = Instant::now();
        match self.next {
            Some(t) if t > now => {
                std::thread::sleep(t - now);
                self.next = Some(t + self.interval);
            }
            _ => self.next = Some(now + self.interval),
        }
    }
}

/// A video file played at its own frame rate, looping at the end.
pub(crate) struct VideoFileSource {
    path: PathBuf,
    reader: VideoReader,
    pacer: Pacer,
    seq: u64,
    frames_in_pass: u64,
}

impl VideoFileSource {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let reader = VideoReader::open(path)?;
        let fps = reader.info().fps;
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            pacer: Pacer::new(fps),
            seq: 0,
            frames_in_pass: 0,
        })
    }
}

impl FrameSource for VideoFileSource {
    fn name(&self) -> String {
        format!("video:{}", self.path.display())
    }

    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        let img = match self.reader.next() {
            Some(r) => r?,
            None => {
                if self.frames_in_pass == 0 {
                    return Err(CaptureError::Empty(self.path.display().to_string()));
                }
                self.reader = VideoReader::open(&self.path)?;
                self.frames_in_pass = 0;
                self.reader
                    .next()
                    .ok_or_else(|| CaptureError::Empty(self.path.display().to_string()))??
            }
        };
        self.pacer.wait();
        self.frames_in_pass += 1;
        let frame = Frame::from_image(self.seq, Instant::now(), img);
        self.seq += 1;
        Ok(frame)
    }
}

/// The images of a folder in name order, looping, at a given rate.
pub struct FolderSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    index: usize,
    pacer: Pacer,
    seq: u64,
}

impl FolderSource {
    /// Lists the pictures of `dir`, to be played at `fps` frames per second.
    pub fn open(dir: &Path, fps: f64) -> Result<Self, CaptureError> {
        let files = list_image_files(dir)?;
        if files.is_empty() {
            return Err(CaptureError::Empty(dir.display().to_string()));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            index: 0,
            pacer: Pacer::new(fps),
            seq: 0,
        })
    }
}

impl FrameSource for FolderSource {
    fn name(&self) -> String {
        format!("folder:{}", self.dir.display())
    }

    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        let path = self
            .files
            .get(self.index % self.files.len().max(1))
            .cloned()
            .ok_or_else(|| CaptureError::Empty(self.dir.display().to_string()))?;
        let img = load_rgb(&path)?;
        self.index = (self.index + 1) % self.files.len();
        self.pacer.wait();
        let frame = Frame::from_image(self.seq, Instant::now(), img);
        self.seq += 1;
        Ok(frame)
    }
}
