//! Getting pictures and videos in and out of `marionette animate`.
//!
//! * [`resize`]: the exact preprocessing of the original FOMM `demo.py`
//!   (`skimage.transform.resize(frame, (256, 256))[..., :3]`) and the exact
//!   float -> `u8` conversion it uses on the predictions (`img_as_ubyte`).
//! * [`video`]: reading and writing video files through the `ffmpeg` / `ffprobe`
//!   command-line programs (raw RGB frames over pipes, no C bindings).
//! * [`pipe`]: a long-running `ffmpeg` fed and read through its pipes (the remote frames' codec).
//! * [`frames`]: folders of numbered pictures, in and out.
//! * [`jpeg`]: JPEG decoding that matches Pillow (libjpeg-turbo) byte for byte.
//!
//! All three share one error type, [`MediaError`].

pub mod budget;
pub mod frames;
pub mod jpeg;
pub mod pipe;
pub mod resize;
pub mod video;

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing pictures and videos.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// `ffmpeg` or `ffprobe` could not be started because it does not exist.
    #[error(
        "{program} was not found {where_}: install it (Debian/Ubuntu: sudo apt-get install ffmpeg)"
    )]
    ToolNotFound {
        /// `ffmpeg` or `ffprobe`.
        program: String,
        /// `on PATH` or `at <path>` (when an explicit path was configured).
        where_: String,
    },
    /// `ffmpeg` / `ffprobe` exists but could not be started.
    #[error("could not start {program}: {source}")]
    ToolSpawn {
        /// `ffmpeg` or `ffprobe`.
        program: String,
        /// The error from starting it.
        #[source]
        source: std::io::Error,
    },
    /// `ffmpeg` / `ffprobe` ran and failed; `stderr` is the end of what it printed.
    #[error("{program} failed while {action} {}: {status}; its last messages: {stderr}", path.display())]
    ToolFailed {
        /// `ffmpeg` or `ffprobe`.
        program: String,
        /// What we asked it to do ("reading", "writing", "probing").
        action: &'static str,
        /// The video file.
        path: PathBuf,
        /// Exit status in words.
        status: String,
        /// The last lines it printed on stderr.
        stderr: String,
    },
    /// A long-running `ffmpeg` fed through pipes stopped answering or failed.
    #[error("ffmpeg failed while {action}: {status}; its last messages: {stderr}")]
    PipeFailed {
        /// What it was doing ("coding frames as H.264").
        action: &'static str,
        /// Exit status, or what failed on the pipe, in words.
        status: String,
        /// The last lines it printed on stderr.
        stderr: String,
    },
    /// The file is readable by `ffprobe` but has no video stream, or its
    /// description does not make sense (no size, no frame rate).
    #[error("{} is not a usable video: {reason}", path.display())]
    NotAVideo {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The decoder stopped in the middle of a frame.
    #[error(
        "the video {} ended in the middle of frame {frame_index} ({got} of {expected} bytes): the file is probably truncated",
        path.display()
    )]
    TruncatedFrame {
        /// The video file.
        path: PathBuf,
        /// Index of the incomplete frame (0-based).
        frame_index: u64,
        /// Bytes of it received.
        got: usize,
        /// Bytes in a whole RGB frame.
        expected: usize,
    },
    /// A frame handed to a writer does not have the size the writer was created with.
    #[error(
        "frame {frame_index} is {got_width}x{got_height} but the output was opened for {width}x{height}"
    )]
    FrameSizeMismatch {
        /// Index of the frame (0-based).
        frame_index: u64,
        /// The writer's width.
        width: u32,
        /// The writer's height.
        height: u32,
        /// The frame's width.
        got_width: u32,
        /// The frame's height.
        got_height: u32,
    },
    /// A picture file could not be decoded or encoded.
    #[error("could not {action} the image {}: {source}", path.display())]
    Image {
        /// What was being done ("read the image", ...).
        action: &'static str,
        /// The picture file.
        path: PathBuf,
        /// The decoder's or encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A file or folder could not be read or written.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "create the folder", "list the folder", ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A folder that should hold pictures has none with a known extension.
    #[error("the folder {} holds no pictures (looked for {extensions})", dir.display())]
    NoImages {
        /// The folder.
        dir: PathBuf,
        /// The extensions looked for, comma-separated.
        extensions: String,
    },
    /// An output folder already holds frames from an earlier run.
    #[error(
        "the folder {} already holds frame pictures (e.g. {}): choose an empty folder or delete them first",
        dir.display(), example.display()
    )]
    OutputFolderNotEmpty {
        /// The folder.
        dir: PathBuf,
        /// One of the frame files already there.
        example: PathBuf,
    },
    /// A size or argument that cannot work (zero width, odd tensor shape, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// Pixel values that cannot be turned into an 8-bit picture.
    #[error("{0}")]
    InvalidPixels(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
