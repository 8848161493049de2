//! Video files through the `ffmpeg` and `ffprobe` command-line programs.
//!
//! Choice: plain `std::process` with raw RGB frames over pipes, not `ffmpeg-sidecar`. What we need is
//! small (one `ffprobe` call, one decoding child writing `rgb24` frames to its stdout, one encoding
//! child reading them from its stdin), `std` covers it without a new dependency, and it keeps full
//! control over the exact arguments (which matter: `-fps_mode passthrough`, `-af apad -shortest`), over
//! stderr capture for error messages, and over killing the child. No C bindings, nothing to build.
//!
//! * Decoding gives frames exactly as the original demo saw them through imageio-ffmpeg (the same
//!   `ffmpeg` conversion to `rgb24`), in order, without duplicates or drops (`-fps_mode passthrough`,
//!   or `-vsync passthrough` for FFmpeg before 5.1). A rotated video (phone footage with a display
//!   matrix) is turned upright by ffmpeg, and [`VideoInfo`] reports the upright size.
//! * Encoding: H.264 (`libx264`, `yuv420p`, CRF 18) with AAC audio for `.mp4` / `.mov` / `.m4v` (with
//!   `+faststart`), `.mkv`, `.avi` and anything else; VP9 + Opus for `.webm`; a palette GIF for `.gif`
//!   (no audio). The audio of another file can be muxed in; it is padded with silence and cut at the end
//!   of the video (`-af apad -shortest`): plain `-shortest` drops video frames when the audio is shorter.
//! * Paths are passed as `file:<path>`, so names containing `:` or starting with `-` are not taken for
//!   protocols or options.
//! * Every child process is killed and reaped when its reader / writer is dropped.
//! * `MARIONETTE_FFMPEG` / `MARIONETTE_FFPROBE` name other programs than `ffmpeg` / `ffprobe` on `PATH`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::JoinHandle;

use image::RgbImage;

use super::MediaError;

/// How much of a child's stderr we keep for error messages (its end).
const STDERR_KEEP_BYTES: usize = 4096;
/// Quality of the H.264 output: CRF 18 is visually lossless for most content (x264 documentation).
const X264_CRF: &str = "18";
/// Quality of the VP9 output (constant quality mode, libvpx-vp9 recommends 15-35).
const VP9_CRF: &str = "30";
/// AAC bit rate for the muxed audio.
const AUDIO_BITRATE: &str = "192k";

/// File extensions treated as videos (lower case).
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "gif", "mpg", "mpeg", "wmv", "flv", "ts", "m2ts",
    "mts", "3gp", "ogv", "mxf",
];

/// Whether a path names a video file, by its extension (case-insensitive). An output path without a
/// video extension is taken to be a folder of frame pictures.
pub fn is_video_path(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Which `ffmpeg` / `ffprobe` programs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfmpegTools {
    /// The `ffmpeg` program: a bare name is looked up on `PATH`.
    pub ffmpeg: PathBuf,
    /// The `ffprobe` program: a bare name is looked up on `PATH`.
    pub ffprobe: PathBuf,
}

impl Default for FfmpegTools {
    fn default() -> Self {
        Self::from_env()
    }
}

impl FfmpegTools {
    /// `$MARIONETTE_FFMPEG` / `$MARIONETTE_FFPROBE` when set, else `ffmpeg` / `ffprobe` on `PATH`.
    pub fn from_env() -> Self {
        let pick = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Self {
            ffmpeg: pick("MARIONETTE_FFMPEG", "ffmpeg"),
            ffprobe: pick("MARIONETTE_FFPROBE", "ffprobe"),
        }
    }

    /// Explicit programs.
    pub fn new(ffmpeg: impl Into<PathBuf>, ffprobe: impl Into<PathBuf>) -> Self {
        Self {
            ffmpeg: ffmpeg.into(),
            ffprobe: ffprobe.into(),
        }
    }

    /// Check that both programs run (`-version`); the error says how to install them.
    pub fn check(&self) -> Result<(), MediaError> {
        ffmpeg_has_fps_mode(&self.ffmpeg)?;
        let out = run_version(&self.ffprobe, "ffprobe")?;
        if !out.status.success() {
            return Err(MediaError::ToolFailed {
                program: "ffprobe".into(),
                action: "checking",
                path: self.ffprobe.clone(),
                status: out.status.to_string(),
                stderr: tail_text(&out.stderr),
            });
        }
        Ok(())
    }
}

/// What `ffprobe` says about a video file.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Width of the decoded frames (after ffmpeg's automatic rotation).
    pub width: u32,
    /// Height of the decoded frames (after ffmpeg's automatic rotation).
    pub height: u32,
    /// Frames per second: the stream's `avg_frame_rate`, or `r_frame_rate` when the average is unknown.
    /// (For constant-rate files both are equal; for variable-rate ones the average keeps the duration.)
    pub fps: f64,
    /// Number of frames the container declares (`nb_frames`); `None` when it does not say (Matroska,
    /// WebM, raw streams). Decoding may still give a slightly different count for damaged files.
    pub frame_count: Option<u64>,
    /// Whether the file has at least one audio stream.
    pub has_audio: bool,
    /// Codec of the video stream as ffprobe names it (`h264`, `vp9`, ...).
    pub codec: String,
    /// Display rotation in degrees from the stream metadata (0 when none); ffmpeg applies it when
    /// decoding.
    pub rotation: i32,
}

impl VideoInfo {
    /// Bytes of one decoded `rgb24` frame; `None` when over 2 GiB.
    pub fn frame_bytes(&self) -> Option<usize> {
        (self.width as usize)
            .checked_mul(self.height as usize)
            .and_then(|n| n.checked_mul(3))
            .filter(|&n| n <= 1 << 31)
    }

    /// What [`VideoReader`] reserves for a frame before ffmpeg has sent any of it: the frame's size
    /// up to 64 MiB (an 8K frame is 100 MB); a larger frame's buffer grows with the bytes that
    /// actually arrive, so a size that `ffprobe` misreports cannot reserve memory by itself.
    pub fn initial_frame_buffer(&self) -> usize {
        self.frame_bytes().unwrap_or(0).min(FRAME_RESERVE_MAX)
    }
}

/// See [`VideoInfo::initial_frame_buffer`].
const FRAME_RESERVE_MAX: usize = 64 << 20;

/// Describe a video file with `ffprobe` (found as [`FfmpegTools::from_env`] says).
pub fn probe(path: &Path) -> Result<VideoInfo, MediaError> {
    probe_with(&FfmpegTools::from_env(), path)
}

/// [`probe`] with explicit programs.
pub fn probe_with(tools: &FfmpegTools, path: &Path) -> Result<VideoInfo, MediaError> {
    let text = run_ffprobe(tools, path)?;
    parse_probe_output(&text, path)
}

/// Whether a media file (video or audio only) has an audio stream.
pub fn has_audio_with(tools: &FfmpegTools, path: &Path) -> Result<bool, MediaError> {
    let text = run_ffprobe(tools, path)?;
    Ok(parse_streams(&text).iter().any(|s| s.codec_type == "audio"))
}

/// `ffprobe`'s description of the streams of `path` (`-of default` text).
fn run_ffprobe(tools: &FfmpegTools, path: &Path) -> Result<String, MediaError> {
    if !path.is_file() {
        return Err(MediaError::Io {
            action: "open the video",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let mut cmd = Command::new(&tools.ffprobe);
    cmd.arg("-v")
        .arg("error")
        .arg("-show_entries")
        .arg(
            "stream=index,codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate,nb_frames\
             :stream_side_data=rotation:stream_tags=rotate",
        )
        .arg("-of")
        .arg("default")
        .arg(file_url(path))
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| spawn_error(&tools.ffprobe, "ffprobe", e))?;
    if !out.status.success() {
        return Err(MediaError::ToolFailed {
            program: "ffprobe".into(),
            action: "probing",
            path: path.to_path_buf(),
            status: out.status.to_string(),
            stderr: tail_text(&out.stderr),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One `[STREAM]` section of `ffprobe -of default` output.
#[derive(Debug, Default)]
struct ProbedStream {
    codec_type: String,
    codec_name: String,
    width: Option<u32>,
    height: Option<u32>,
    r_frame_rate: Option<f64>,
    avg_frame_rate: Option<f64>,
    nb_frames: Option<u64>,
    rotation: Option<f64>,
}

/// Parse `ffprobe -of default` output (`[STREAM]` sections of `key=value` lines).
fn parse_streams(text: &str) -> Vec<ProbedStream> {
    let mut streams: Vec<ProbedStream> = Vec::new();
    let mut current: Option<ProbedStream> = None;
    for line in text.lines() {
        let line = line.trim();
        match line {
            "[STREAM]" => current = Some(ProbedStream::default()),
            "[/STREAM]" => streams.extend(current.take()),
            _ => {
                let (Some(s), Some((key, value))) = (current.as_mut(), line.split_once('=')) else {
                    continue;
                };
                match key {
                    "codec_type" => s.codec_type = value.to_string(),
                    "codec_name" => s.codec_name = value.to_string(),
                    "width" => s.width = value.parse().ok(),
                    "height" => s.height = value.parse().ok(),
                    "r_frame_rate" => s.r_frame_rate = parse_rate(value),
                    "avg_frame_rate" => s.avg_frame_rate = parse_rate(value),
                    "nb_frames" => s.nb_frames = value.parse().ok().filter(|&n| n > 0),
                    // Display-matrix side data (FFmpeg >= 5) or the older `rotate` tag.
                    "rotation" | "TAG:rotate" if s.rotation.is_none() => {
                        s.rotation = value.parse().ok();
                    }
                    _ => {}
                }
            }
        }
    }
    streams
}

/// The [`VideoInfo`] of parsed `ffprobe` output (`-of default` text: `[STREAM]` sections of
/// `key=value` lines): the first video stream, and whether there is audio. `path` names the file in
/// errors.
pub fn parse_probe_output(text: &str, path: &Path) -> Result<VideoInfo, MediaError> {
    let streams = parse_streams(text);
    let has_audio = streams.iter().any(|s| s.codec_type == "audio");
    let not_video = |reason: String| MediaError::NotAVideo {
        path: path.to_path_buf(),
        reason,
    };
    let video = streams
        .into_iter()
        .find(|s| s.codec_type == "video")
        .ok_or_else(|| not_video("it has no video stream".into()))?;
    let (Some(w), Some(h)) = (video.width, video.height) else {
        return Err(not_video("ffprobe reports no frame size".into()));
    };
    if w == 0 || h == 0 {
        return Err(not_video(format!("ffprobe reports a {w}x{h} frame size")));
    }
    let fps = video
        .avg_frame_rate
        .or(video.r_frame_rate)
        .ok_or_else(|| not_video("ffprobe reports no frame rate".into()))?;
    // Normalise to a multiple of 90 degrees; a quarter turn swaps the decoded width and height.
    let rotation = video
        .rotation
        .map(|r| ((r / 90.0).round() as i32).rem_euclid(4) * 90)
        .unwrap_or(0);
    let (width, height) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
    Ok(VideoInfo {
        width,
        height,
        fps,
        frame_count: video.nb_frames,
        has_audio,
        codec: video.codec_name,
        rotation,
    })
}

/// `"30000/1001"` -> 29.97...; `"0/0"`, garbage -> `None`.
fn parse_rate(s: &str) -> Option<f64> {
    let v = match s.split_once('/') {
        Some((n, d)) => {
            let n: f64 = n.trim().parse().ok()?;
            let d: f64 = d.trim().parse().ok()?;
            if d == 0.0 {
                return None;
            }
            n / d
        }
        None => s.trim().parse().ok()?,
    };
    (v.is_finite() && v > 0.0).then_some(v)
}

/// Decoded frames of a video file, in order, as 8-bit RGB pictures: an iterator of
/// `Result<RgbImage, MediaError>` that ends after the last frame, or with one error when ffmpeg fails
/// or the stream is cut short. [`VideoReader::info`] gives the size and frame rate up front.
pub struct VideoReader {
    info: VideoInfo,
    path: PathBuf,
    child: Option<ChildGuard>,
    stdout: Option<ChildStdout>,
    frame_bytes: usize,
    next_index: u64,
}

impl VideoReader {
    /// Probe the file and start decoding it.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        Self::open_with(&FfmpegTools::from_env(), path)
    }

    /// [`VideoReader::open`] with explicit programs.
    pub fn open_with(tools: &FfmpegTools, path: &Path) -> Result<Self, MediaError> {
        let info = probe_with(tools, path)?;
        let frame_bytes = info.frame_bytes().ok_or_else(|| MediaError::NotAVideo {
            path: path.to_path_buf(),
            reason: format!("its {}x{} frames are too large", info.width, info.height),
        })?;
        let sync = if ffmpeg_has_fps_mode(&tools.ffmpeg)? {
            ["-fps_mode", "passthrough"]
        } else {
            ["-vsync", "passthrough"]
        };
        let mut cmd = Command::new(&tools.ffmpeg);
        cmd.args(["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"])
            .arg("-i")
            .arg(file_url(path))
            .args(["-map", "0:v:0", "-an", "-sn", "-dn"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args(sync)
            .arg("pipe:1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(cmd, &tools.ffmpeg, "ffmpeg")?;
        let stdout = child.child.stdout.take();
        Ok(Self {
            info,
            path: path.to_path_buf(),
            child: Some(child),
            stdout,
            frame_bytes,
            next_index: 0,
        })
    }

    /// What `ffprobe` said about the file.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Index of the next frame to be returned (= frames returned so far).
    pub fn frames_read(&self) -> u64 {
        self.next_index
    }

    /// End of stream: reap ffmpeg and turn a failure into an error.
    fn finish(&mut self, partial: Option<usize>) -> Option<Result<RgbImage, MediaError>> {
        self.stdout = None;
        let child = self.child.take()?;
        let (status, stderr) = match child.wait() {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        if !status.success() {
            return Some(Err(MediaError::ToolFailed {
                program: "ffmpeg".into(),
                action: "reading",
                path: self.path.clone(),
                status: status.to_string(),
                stderr,
            }));
        }
        partial.map(|got| {
            Err(MediaError::TruncatedFrame {
                path: self.path.clone(),
                frame_index: self.next_index,
                got,
                expected: self.frame_bytes,
            })
        })
    }
}

impl Iterator for VideoReader {
    type Item = Result<RgbImage, MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        let stdout = self.stdout.as_mut()?;
        let mut buf = Vec::with_capacity(self.info.initial_frame_buffer());
        if let Err(e) = stdout.take(self.frame_bytes as u64).read_to_end(&mut buf) {
            self.stdout = None;
            self.child = None; // kills and reaps ffmpeg
            return Some(Err(MediaError::Io {
                action: "read decoded frames of",
                path: self.path.clone(),
                source: e,
            }));
        }
        let got = buf.len();
        if got == 0 {
            return self.finish(None);
        }
        if got < self.frame_bytes {
            return self.finish(Some(got));
        }
        self.next_index += 1;
        match RgbImage::from_raw(self.info.width, self.info.height, buf) {
            Some(img) => Some(Ok(img)),
            // Unreachable in practice: `frame_bytes` is width * height * 3.
            None => Some(Err(MediaError::InvalidArgument(format!(
                "a decoded frame of {} does not fit {}x{} pixels",
                self.path.display(),
                self.info.width,
                self.info.height
            )))),
        }
    }
}

/// Encodes 8-bit RGB frames into a video file with `ffmpeg`.
pub struct VideoWriter {
    path: PathBuf,
    width: u32,
    height: u32,
    child: Option<ChildGuard>,
    stdin: Option<ChildStdin>,
    frames_written: u64,
}

impl VideoWriter {
    /// Start an encoder for `path` (format from its extension, see the module documentation) at `fps`
    /// frames per second. When `audio_from` names a file with an audio track, that audio is muxed in.
    /// Creates the output's folder if needed and overwrites an existing file.
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        audio_from: Option<&Path>,
    ) -> Result<Self, MediaError> {
        Self::create_with(
            &FfmpegTools::from_env(),
            path,
            width,
            height,
            fps,
            audio_from,
        )
    }

    /// [`VideoWriter::create`] with metadata entries (`-metadata key=value`, e.g. a `comment`;
    /// formats without such entries, GIF, drop them).
    pub fn create_tagged(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        audio_from: Option<&Path>,
        tags: &[(String, String)],
    ) -> Result<Self, MediaError> {
        Self::create_full(
            &FfmpegTools::from_env(),
            path,
            (width, height),
            fps,
            audio_from,
            tags,
        )
    }

    /// [`VideoWriter::create`] with explicit programs.
    pub fn create_with(
        tools: &FfmpegTools,
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        audio_from: Option<&Path>,
    ) -> Result<Self, MediaError> {
        Self::create_full(tools, path, (width, height), fps, audio_from, &[])
    }

    /// [`VideoWriter::create_tagged`] with explicit programs.
    pub fn create_full(
        tools: &FfmpegTools,
        path: &Path,
        (width, height): (u32, u32),
        fps: f64,
        audio_from: Option<&Path>,
        tags: &[(String, String)],
    ) -> Result<Self, MediaError> {
        if width == 0 || height == 0 || width > 16384 || height > 16384 {
            return Err(MediaError::InvalidArgument(format!(
                "cannot write a {width}x{height} video: sides must be between 1 and 16384"
            )));
        }
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(MediaError::InvalidArgument(format!(
                "cannot write a video at {fps} frames per second: expected a rate in (0, 1000]"
            )));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        let gif = ext == "gif";
        let audio = match audio_from {
            Some(a) if !gif => has_audio_with(tools, a)?.then_some(a),
            _ => None,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| MediaError::Io {
                action: "create the folder",
                path: parent.to_path_buf(),
                source: e,
            })?;
        }

        let mut cmd = Command::new(&tools.ffmpeg);
        cmd.args(["-hide_banner", "-nostats", "-loglevel", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .arg("-s")
            .arg(format!("{width}x{height}"))
            .arg("-framerate")
            .arg(format!("{fps}"))
            .args(["-i", "pipe:0"]);
        if let Some(a) = audio {
            cmd.arg("-i").arg(file_url(a));
        }
        cmd.args(["-map", "0:v:0"]);
        if audio.is_some() {
            cmd.args(["-map", "1:a:0"]);
        }
        match ext.as_str() {
            "gif" => {
                // One palette for the whole clip (ffmpeg palettegen / paletteuse).
                cmd.args(["-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse"]);
            }
            "webm" => {
                cmd.args(["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "0"])
                    .args(["-crf", VP9_CRF]);
                if audio.is_some() {
                    cmd.args(["-c:a", "libopus", "-b:a", AUDIO_BITRATE]);
                }
            }
            _ => {
                cmd.args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", X264_CRF]);
                if width % 2 == 1 || height % 2 == 1 {
                    // yuv420p needs even sides: add one black row / column.
                    cmd.args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]);
                }
                if audio.is_some() {
                    cmd.args(["-c:a", "aac", "-b:a", AUDIO_BITRATE]);
                }
                if matches!(ext.as_str(), "mp4" | "m4v" | "mov") {
                    cmd.args(["-movflags", "+faststart"]);
                }
            }
        }
        if audio.is_some() {
            // Pad the audio with silence and stop at the end of the video: plain `-shortest` would
            // drop video frames when the audio track is shorter than the video.
            cmd.args(["-af", "apad", "-shortest"]);
        }
        for (key, value) in tags {
            cmd.arg("-metadata").arg(format!("{key}={value}"));
        }
        cmd.arg(file_url(path))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(cmd, &tools.ffmpeg, "ffmpeg")?;
        let stdin = child.child.stdin.take();
        Ok(Self {
            path: path.to_path_buf(),
            width,
            height,
            child: Some(child),
            stdin,
            frames_written: 0,
        })
    }

    /// Number of frames handed to the encoder so far.
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Encode one frame; it must have the size the writer was created with.
    pub fn write(&mut self, frame: &RgbImage) -> Result<(), MediaError> {
        if frame.width() != self.width || frame.height() != self.height {
            return Err(MediaError::FrameSizeMismatch {
                frame_index: self.frames_written,
                width: self.width,
                height: self.height,
                got_width: frame.width(),
                got_height: frame.height(),
            });
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(MediaError::InvalidArgument(format!(
                "the encoder for {} has already stopped after an error",
                self.path.display()
            )));
        };
        if let Err(e) = stdin.write_all(frame.as_raw()) {
            // Most likely ffmpeg exited (broken pipe): its own message says why.
            self.stdin = None;
            return Err(match self.child.take().map(ChildGuard::wait) {
                Some(Ok((status, stderr))) if !status.success() => MediaError::ToolFailed {
                    program: "ffmpeg".into(),
                    action: "writing",
                    path: self.path.clone(),
                    status: status.to_string(),
                    stderr,
                },
                Some(Err(err)) => err,
                _ => MediaError::Io {
                    action: "send frames to ffmpeg for",
                    path: self.path.clone(),
                    source: e,
                },
            });
        }
        self.frames_written += 1;
        Ok(())
    }

    /// Close the stream and wait for ffmpeg to finish the file.
    pub fn finish(mut self) -> Result<(), MediaError> {
        if self.frames_written == 0 {
            // `self` is dropped: ffmpeg is killed.
            return Err(MediaError::InvalidArgument(format!(
                "no frames were written to {}",
                self.path.display()
            )));
        }
        self.stdin = None; // EOF for ffmpeg
        let Some(child) = self.child.take() else {
            return Err(MediaError::InvalidArgument(format!(
                "the encoder for {} has already stopped after an error",
                self.path.display()
            )));
        };
        let (status, stderr) = child.wait()?;
        if !status.success() {
            return Err(MediaError::ToolFailed {
                program: "ffmpeg".into(),
                action: "writing",
                path: self.path.clone(),
                status: status.to_string(),
                stderr,
            });
        }
        Ok(())
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        self.stdin = None;
        // `self.child`'s guard kills and reaps ffmpeg.
    }
}

/// A running child whose stderr is drained by a thread; dropping it kills and reaps the child.
struct ChildGuard {
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
    program: &'static str,
    reaped: bool,
}

impl ChildGuard {
    fn spawn(
        mut cmd: Command,
        program_path: &Path,
        program: &'static str,
    ) -> Result<Self, MediaError> {
        let mut child = cmd
            .spawn()
            .map_err(|e| spawn_error(program_path, program, e))?;
        let stderr = child.stderr.take().map(drain_stderr);
        Ok(Self {
            child,
            stderr,
            program,
            reaped: false,
        })
    }

    /// Wait for the child to exit; returns its status and the end of its stderr.
    fn wait(mut self) -> Result<(ExitStatus, String), MediaError> {
        let status = self.child.wait().map_err(|e| MediaError::ToolSpawn {
            program: self.program.into(),
            source: e,
        })?;
        self.reaped = true;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ok((status, tail_text(&stderr)))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            // Errors here mean the child already exited; nothing else to do.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}

/// Read a child's stderr to its end on a thread, keeping the last [`STDERR_KEEP_BYTES`].
pub(super) fn drain_stderr(mut stderr: ChildStderr) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_KEEP_BYTES {
                        kept.drain(..kept.len() - STDERR_KEEP_BYTES);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        kept
    })
}

/// The last lines of a program's messages, for an error.
pub(super) fn tail_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_KEEP_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let first = lines.len().saturating_sub(12);
    let tail = lines[first..].join(" | ");
    if tail.is_empty() {
        "(it printed nothing)".into()
    } else {
        tail
    }
}

pub(super) fn spawn_error(program_path: &Path, program: &str, e: std::io::Error) -> MediaError {
    if e.kind() == std::io::ErrorKind::NotFound {
        let bare = program_path.components().count() == 1 && !program_path.is_absolute();
        MediaError::ToolNotFound {
            program: program.into(),
            where_: if bare {
                "on PATH".into()
            } else {
                format!("at {}", program_path.display())
            },
        }
    } else {
        MediaError::ToolSpawn {
            program: program.into(),
            source: e,
        }
    }
}

/// `file:<path>`: ffmpeg then never reads the path as a protocol (`a:b.mp4`) or an option (`-x.mp4`).
fn file_url(path: &Path) -> OsString {
    let mut s = OsString::from("file:");
    s.push(path.as_os_str());
    s
}

fn run_version(program_path: &Path, program: &str) -> Result<std::process::Output, MediaError> {
    Command::new(program_path)
        .args(["-hide_banner", "-version"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(program_path, program, e))
}

/// Whether this ffmpeg knows `-fps_mode` (FFmpeg >= 5.1; older ones only have `-vsync`). Cached per
/// program path. Also the place where a missing ffmpeg is first noticed.
pub(super) fn ffmpeg_has_fps_mode(program_path: &Path) -> Result<bool, MediaError> {
    static CACHE: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());
    if let Ok(cache) = CACHE.lock()
        && let Some((_, v)) = cache.iter().find(|(p, _)| p == program_path)
    {
        return Ok(*v);
    }
    let out = run_version(program_path, "ffmpeg")?;
    if !out.status.success() {
        return Err(MediaError::ToolFailed {
            program: "ffmpeg".into(),
            action: "checking",
            path: program_path.to_path_buf(),
            status: out.status.to_string(),
            stderr: tail_text(&out.stderr),
        });
    }
    let v = version_has_fps_mode(&String::from_utf8_lossy(&out.stdout));
    if let Ok(mut cache) = CACHE.lock() {
        cache.push((program_path.to_path_buf(), v));
    }
    Ok(v)
}

/// Parse `ffmpeg version 5.1.9-0+deb12u1 Copyright ...`; builds from git (`N-...`) and anything
/// unparsable are assumed recent.
fn version_has_fps_mode(version_output: &str) -> bool {
    let Some(ver) = version_output
        .lines()
        .next()
        .and_then(|l| l.split("version").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
    else {
        return true;
    };
    let ver = ver.trim_start_matches('n');
    let mut parts = ver.split(|c: char| !c.is_ascii_digit());
    let major: Option<u32> = parts.next().and_then(|p| p.parse().ok());
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    match major {
        Some(major) => (major, minor) >= (5, 1),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_extensions() {
        assert!(is_video_path(Path::new("a/b.MP4")));
        assert!(is_video_path(Path::new("x.webm")));
        assert!(is_video_path(Path::new("x.gif")));
        assert!(!is_video_path(Path::new("out")));
        assert!(!is_video_path(Path::new("out/frames.png")));
        assert!(!is_video_path(Path::new("out.d/")));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("25/1"), Some(25.0));
        assert_eq!(parse_rate("30000/1001"), Some(30000.0 / 1001.0));
        assert_eq!(parse_rate("0/0"), None);
        assert_eq!(parse_rate("N/A"), None);
        assert_eq!(parse_rate("12.5"), Some(12.5));
    }

    #[test]
    fn versions() {
        assert!(version_has_fps_mode(
            "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026"
        ));
        assert!(!version_has_fps_mode(
            "ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright"
        ));
        assert!(!version_has_fps_mode("ffmpeg version 5.0.1 Copyright"));
        assert!(version_has_fps_mode("ffmpeg version n6.1 Copyright"));
        assert!(version_has_fps_mode(
            "ffmpeg version N-112233-gabcdef Copyright"
        ));
    }

    #[test]
    fn probe_output_with_rotation_and_audio() {
        let text = "[STREAM]\nindex=0\ncodec_name=h264\ncodec_type=video\nwidth=64\nheight=48\n\
                    r_frame_rate=30/1\navg_frame_rate=30000/1001\nnb_frames=N/A\n[SIDE_DATA]\n\
                    rotation=-90\n[/SIDE_DATA]\n[/STREAM]\n[STREAM]\nindex=1\ncodec_type=audio\n\
                    r_frame_rate=0/0\n[/STREAM]\n";
        let info = parse_probe_output(text, Path::new("x.mp4")).unwrap();
        assert_eq!((info.width, info.height), (48, 64));
        assert_eq!(info.rotation, 270);
        assert_eq!(info.fps, 30000.0 / 1001.0);
        assert_eq!(info.frame_count, None);
        assert!(info.has_audio);
        let err = parse_probe_output(
            "[STREAM]\ncodec_type=audio\n[/STREAM]\n",
            Path::new("a.m4a"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no video stream"), "{err}");
    }
}
