//! Offline animation: the original `demo.py` done as a library call. A portrait is animated by a
//! driving video or a folder of frames; frames are read and written as a stream, so long videos
//! do not have to fit in memory.

use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::engine::keyframes::InBetween;
use crate::engine::smoothing::Smoothing;
use crate::engine::{Animator, EngineError, FrameInfo, motion_mismatch};
use crate::media::MediaError;
use crate::media::frames::{FrameFolderWriter, PngText, list_image_files, load_rgb};
use crate::media::resize::{center_square_crop, tensor_to_rgb8, to_model_tensor};
use crate::media::video::{VideoReader, VideoWriter, is_video_path};
use crate::motion::file::{MotionFileError, MotionHeader, MotionReader, MotionWriter, RecordKind};
use crate::motion::{FrameMotion, KeypointSet, MotionEngine, ReferenceMotion};
use crate::output::badge::draw_badge;
use crate::provenance::Provenance;
use crate::watermark::{MarkEngine, Marker, Payload};
use fomm::keypoint_detector::Keypoints;
use fomm::model::ModelError;
use fomm::motion_transfer::{TransferOptions, convex_hull_area};

/// Why an offline animation failed.
#[derive(Debug, thiserror::Error)]
pub enum AnimateError {
    /// A picture or video could not be read or written.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The driving video or folder (named) gave no frame.
    #[error("the driving {0} has no frames")]
    NoFrames(String),
    /// [`Reference::Frame`] names a frame past the end of the driving sequence.
    #[error(
        "--best-frame {requested} is out of range: the driving sequence has {count} frames (0..{count})"
    )]
    BestFrameOutOfRange {
        /// The frame asked for (0-based).
        requested: usize,
        /// The number of driving frames.
        count: usize,
    },
    /// The driving path (named) is neither a file nor a folder.
    #[error("driving path {0} is neither a video file nor a folder of images")]
    BadDriving(String),
    /// [`Reference::Best`] was asked of an engine (named) without a keypoint detector.
    #[error(
        "the {0} engine has no keypoint detector to find the best frame with (--find-best-frame); use the fomm engine (a checkpoint) or --best-frame N"
    )]
    NoDetector(&'static str),
    /// A motion file could not be read or written.
    #[error(transparent)]
    Motion(#[from] MotionFileError),
    /// A motion file was read but does not fit this run (engine, portrait or options).
    #[error("{path}: {message}")]
    BadMotion {
        /// The motion file.
        path: String,
        /// What does not fit, and what to do.
        message: String,
    },
}

impl From<ModelError> for AnimateError {
    fn from(e: ModelError) -> Self {
        AnimateError::Engine(EngineError::Model(e))
    }
}

impl From<candle_core::Error> for AnimateError {
    fn from(e: candle_core::Error) -> Self {
        AnimateError::Engine(EngineError::Model(ModelError::Candle(e)))
    }
}

/// Which driving frame is the reference D_1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// The first frame (the original demo's default).
    First,
    /// A given frame (`--best-frame N`).
    Frame(usize),
    /// The frame whose normalised keypoints are closest to the source's (`--find-best-frame`).
    Best,
}

/// What to animate, with what, into where, and how.
#[derive(Debug, Clone)]
pub struct AnimateRequest {
    /// The portrait picture.
    pub source: PathBuf,
    /// A driving video file or a folder of frame pictures.
    pub driving: PathBuf,
    /// A video file (by its extension) or else a folder for PNG frames.
    pub output: PathBuf,
    /// Relative or absolute motion, adapt scale.
    pub transfer: TransferOptions,
    /// Which driving frame is the reference D_1.
    pub reference: Reference,
    /// Crop images to a centred square before resizing.
    pub crop_square: bool,
    /// Frame rate of an output video when the driving input is a folder.
    pub folder_fps: f64,
    /// The engine renders only every n-th frame; the others are made from the last one.
    pub keyframes: Keyframes,
    /// Smoothing of the driving motion (off: the original's results), on frame times index / fps.
    pub smoothing: Smoothing,
    /// Draw the "AI ANIMATED" badge in a corner of every frame.
    pub badge: bool,
    /// The invisible mark ([`crate::watermark`]) in every frame.
    pub watermark: bool,
}

/// How often the engine renders, and what the frames in between show: the offline, deterministic
/// form of the live loop's keyframes ([`crate::engine::keyframes`]). Keyframes are frames 0, n,
/// 2n, ... (exactly what plain animation renders for them); frame `t` between keyframes `k` and
/// `k + n` is keyframe `k` warped by the driving motion from frame `k` to frame `t`, or, with
/// [`InBetweenMode::Hold`], keyframe `k` as it is (what a live loop without in-betweens shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframes {
    /// Render every n-th frame (1: every frame, plain animation).
    pub every: usize,
    /// What the frames in between show.
    pub inbetween: InBetweenMode,
}

impl Default for Keyframes {
    fn default() -> Self {
        Self {
            every: 1,
            inbetween: InBetweenMode::Warp,
        }
    }
}

/// What frames between keyframes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InBetweenMode {
    /// The last keyframe warped by the motion since its driving frame.
    #[default]
    Warp,
    /// The last keyframe unchanged.
    Hold,
}

/// What [`animate`] did.
#[derive(Debug, Clone)]
pub struct AnimateSummary {
    /// Frames written.
    pub frames: usize,
    /// Index of the driving frame used as the reference D_1.
    pub reference_frame: usize,
    /// Whether the output is a video (else a folder of PNGs).
    pub output_is_video: bool,
    /// The output's frame rate: the driving video's, or the request's `folder_fps`.
    pub fps: f64,
}

/// Frames of a driving video or folder, in order.
enum DrivingFrames {
    Video(VideoReader),
    Folder(std::vec::IntoIter<PathBuf>),
}

impl DrivingFrames {
    /// The frames, their count when known, and a video's frame rate.
    fn open(path: &Path) -> Result<(Self, Option<usize>, Option<f64>), AnimateError> {
        if path.is_dir() {
            let files = list_image_files(path)?;
            let n = files.len();
            Ok((DrivingFrames::Folder(files.into_iter()), Some(n), None))
        } else if path.is_file() {
            // The reader probes the file once; its info gives the count and the rate.
            let reader = VideoReader::open(path)?;
            let count = reader.info().frame_count.map(|n| n as usize);
            let fps = reader.info().fps;
            Ok((DrivingFrames::Video(reader), count, Some(fps)))
        } else {
            Err(AnimateError::BadDriving(path.display().to_string()))
        }
    }

    fn next_frame(&mut self) -> Option<Result<image::RgbImage, MediaError>> {
        match self {
            DrivingFrames::Video(r) => r.next(),
            DrivingFrames::Folder(files) => files.next().map(|p| load_rgb(&p)),
        }
    }
}

fn prepare(img: image::RgbImage, crop: bool, size: (usize, usize)) -> Result<Tensor, AnimateError> {
    let img = if crop { center_square_crop(&img) } else { img };
    Ok(to_model_tensor(&img, size.1 as u32, size.0 as u32)?)
}

/// The original demo's `find_best_frame` normalisation: centre the keypoints and divide by the
/// square root of their hull area.
fn normalized_points(kp: &Keypoints) -> Result<Vec<[f64; 2]>, AnimateError> {
    let v = kp
        .value
        .get(0)?
        .to_dtype(candle_core::DType::F64)?
        .to_vec2::<f64>()?;
    let pts: Vec<[f64; 2]> = v
        .iter()
        .map(|p| {
            [
                p.first().copied().unwrap_or(0.0),
                p.get(1).copied().unwrap_or(0.0),
            ]
        })
        .collect();
    let n = pts.len().max(1) as f64;
    let mean = pts
        .iter()
        .fold([0.0, 0.0], |a, p| [a[0] + p[0] / n, a[1] + p[1] / n]);
    let centred: Vec<[f64; 2]> = pts
        .iter()
        .map(|p| [p[0] - mean[0], p[1] - mean[1]])
        .collect();
    let scale = convex_hull_area(&centred).sqrt();
    let scale = if scale > 0.0 { scale } else { 1.0 };
    Ok(centred
        .iter()
        .map(|p| [p[0] / scale, p[1] / scale])
        .collect())
}

/// The original demo's distance between normalised keypoint sets: the sum of squared offsets.
fn distance(a: &[[f64; 2]], b: &[[f64; 2]]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2))
        .sum()
}

enum Output {
    Video(VideoWriter),
    Folder(FrameFolderWriter),
}

/// Animates `req.source` with `req.driving` into `req.output` with any engine. `progress(done,
/// total)` is called after each written frame (`total` is `None` when the count is not known in
/// advance).
///
/// The reference frame D_1 is the first driving frame, frame N (`Reference::Frame`), or the frame
/// whose keypoints best match the portrait's (`Reference::Best`, engines with a detector): the
/// engine is calibrated on it before the first frame is rendered.
pub fn animate(
    engine: &mut dyn Animator,
    req: &AnimateRequest,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<AnimateSummary, AnimateError> {
    engine.set_transfer(req.transfer.relative, req.transfer.adapt_scale)?;
    engine.set_smoothing(req.smoothing);
    let size = engine.frame_size();
    let source = prepare(load_rgb(&req.source)?, req.crop_square, size)?;
    engine.select_portrait(0, &source)?;
    engine.recalibrate();
    let reference_frame = calibrate(engine, req, size)?;

    let (mut frames, count, video_fps) = DrivingFrames::open(&req.driving)?;
    let fps = video_fps.unwrap_or(req.folder_fps);
    let audio = video_fps.is_some().then_some(req.driving.as_path());
    let provenance = Provenance::for_engine(engine.name());
    let mut output = open_output(&req.output, size, fps, audio, count, &provenance)?;
    let mut finish = Finish::new(req.badge, req.watermark, engine);
    let mut written = 0usize;
    let every = req.keyframes.every.max(1);
    let mut inbetween = InBetween::new(size.0, req.transfer.adapt_scale);
    inbetween.set_smoothing(req.smoothing);
    let mut last_key: Option<Tensor> = None;
    while let Some(frame) = frames.next_frame() {
        let driving = prepare(frame?, req.crop_square, size)?;
        // Offline frame times: index / frame rate (the smoothing's clock).
        let info = FrameInfo::at(written as f64 / fps);
        let out = match &last_key {
            Some(key) if !written.is_multiple_of(every) => match req.keyframes.inbetween {
                InBetweenMode::Warp => inbetween.render(&driving, &info)?,
                InBetweenMode::Hold => key.clone(),
            },
            _ => {
                let key = engine.animate_with(&driving, &info)?;
                if every > 1 {
                    // Offline the keyframe is shown at its own frame: no fade needed.
                    inbetween.set_keyframe(&key, &driving, &info, false)?;
                    last_key = Some(key.clone());
                }
                key
            }
        };
        write_frame(&mut output, &out, &mut finish)?;
        written += 1;
        progress(written, count);
    }
    if written == 0 {
        return Err(AnimateError::NoFrames(req.driving.display().to_string()));
    }
    let output_is_video = finish_output(output)?;
    Ok(AnimateSummary {
        frames: written,
        reference_frame,
        output_is_video,
        fps,
    })
}

/// Sets the engine's reference frame as `req.reference` asks; returns its index. For the first
/// frame nothing is needed: an engine calibrates on the first frame it animates.
fn calibrate(
    engine: &mut dyn Animator,
    req: &AnimateRequest,
    size: (usize, usize),
) -> Result<usize, AnimateError> {
    match req.reference {
        Reference::First => return Ok(0),
        Reference::Frame(n) => {
            engine.calibrate_on(&driving_frame(&req.driving, n, req.crop_square, size)?)?;
            return Ok(n);
        }
        Reference::Best => {}
    }
    // Reference::Best: the frame whose keypoints are nearest the portrait's.
    let (mut frames, _, _) = DrivingFrames::open(&req.driving)?;
    let portrait = normalized_points(
        engine
            .portrait_keypoints()
            .ok_or(AnimateError::NoDetector(engine.name()))?,
    )?;
    // (index, distance to the portrait's keypoints, frame) of the best frame so far.
    let mut chosen: Option<(usize, f64, Tensor)> = None;
    let mut i = 0usize;
    while let Some(frame) = frames.next_frame() {
        let tensor = prepare(frame?, req.crop_square, size)?;
        let kp = engine
            .detect(&tensor)?
            .ok_or(AnimateError::NoDetector(engine.name()))?;
        let d = distance(&portrait, &normalized_points(&kp)?);
        if chosen.as_ref().is_none_or(|c| d < c.1) {
            chosen = Some((i, d, tensor));
        }
        i += 1;
    }
    match chosen {
        Some((i, _, frame)) => {
            engine.calibrate_on(&frame)?;
            Ok(i)
        }
        None => Err(AnimateError::NoFrames(req.driving.display().to_string())),
    }
}

/// Frame `n` of the driving video or folder, prepared for the model.
fn driving_frame(
    driving: &Path,
    n: usize,
    crop_square: bool,
    size: (usize, usize),
) -> Result<Tensor, AnimateError> {
    let (mut frames, _, _) = DrivingFrames::open(driving)?;
    let mut count = 0usize;
    while let Some(frame) = frames.next_frame() {
        if count == n {
            return prepare(frame?, crop_square, size);
        }
        count += 1;
    }
    Err(AnimateError::BestFrameOutOfRange {
        requested: n,
        count,
    })
}

/// Where the animated frames go: a video (H.264 at `fps`, with `audio`'s audio track) or a
/// folder of PNGs; both say they are synthetic ([`Provenance`]).
fn open_output(
    path: &Path,
    size: (usize, usize),
    fps: f64,
    audio: Option<&Path>,
    total: Option<usize>,
    provenance: &Provenance,
) -> Result<Output, AnimateError> {
    Ok(if is_video_path(path) {
        Output::Video(VideoWriter::create_tagged(
            path,
            size.1 as u32,
            size.0 as u32,
            fps,
            audio,
            &provenance.video_tags(),
        )?)
    } else {
        Output::Folder(
            FrameFolderWriter::create(path, total.unwrap_or(0) as u64)?
                .with_text(PngText::provenance(provenance)),
        )
    })
}

/// How every written frame is finished: the mark, then the badge over it.
struct Finish {
    badge: bool,
    marker: Option<Marker>,
}

impl Finish {
    fn new(badge: bool, watermark: bool, engine: &dyn Animator) -> Self {
        let mark_engine = MarkEngine::from(engine.id());
        Self {
            badge,
            marker: watermark.then(|| Marker::new(Payload::new(mark_engine))),
        }
    }
}

fn write_frame(
    output: &mut Output,
    frame: &Tensor,
    finish: &mut Finish,
) -> Result<(), AnimateError> {
    let mut img = tensor_to_rgb8(frame)?;
    if let Some(m) = &mut finish.marker {
        let (w, h) = img.dimensions();
        m.mark_rgb(&mut img, w, h);
    }
    if finish.badge {
        let (w, h) = (img.width() as usize, img.height() as usize);
        draw_badge(&mut img, w, h);
    }
    match output {
        Output::Video(w) => w.write(&img)?,
        Output::Folder(w) => {
            w.write(&img)?;
        }
    }
    Ok(())
}

fn finish_output(output: Output) -> Result<bool, AnimateError> {
    match output {
        Output::Video(w) => {
            w.finish()?;
            Ok(true)
        }
        Output::Folder(_) => Ok(false),
    }
}

// ---------------------------------------------------------------------------------------------
// Motion files: capture once, replay onto any portrait.

/// What [`capture_motion`] records.
#[derive(Debug, Clone)]
pub struct CaptureRequest {
    /// The driving video or folder of frames.
    pub driving: PathBuf,
    /// The motion file to write.
    pub output: PathBuf,
    /// The reference frame: the first, or frame N ([`Reference::Best`] needs a portrait and is
    /// chosen at replay instead).
    pub reference: Reference,
    /// Crop the frames to a centred square before resizing.
    pub crop_square: bool,
    /// The frame rate of a folder of frames.
    pub folder_fps: f64,
}

/// What [`capture_motion`] wrote.
#[derive(Debug, Clone)]
pub struct CaptureSummary {
    /// Frames recorded.
    pub frames: usize,
    /// The reference frame's index.
    pub reference_frame: usize,
    /// The frame rate recorded.
    pub fps: f64,
}

/// Records the motion of every driving frame of `req.driving` into the motion file
/// `req.output`, relative to the reference frame, with `engine`'s own measurements (FOMM's
/// keypoints and Jacobians, the classic engine's anchors and local maps). No portrait is needed.
pub fn capture_motion(
    engine: &mut dyn Animator,
    req: &CaptureRequest,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<CaptureSummary, AnimateError> {
    let source = engine.motion_source().ok_or(EngineError::Unsupported {
        engine: engine.name(),
        what: "capturing motion",
    })?;
    let size = source.frame_size;
    let (mut frames, count, video_fps) = DrivingFrames::open(&req.driving)?;
    let fps = video_fps.unwrap_or(req.folder_fps);
    let driving_name = req
        .driving
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let header = MotionHeader::new(source, Some(fps), driving_name);
    engine.recalibrate();
    // Frame N as the reference: measured first.
    let mut reference_frame = match req.reference {
        Reference::Frame(n) => {
            let frame = driving_frame(&req.driving, n, req.crop_square, size)?;
            if engine.capture(&frame)?.is_none() {
                return Err(AnimateError::BadDriving(format!(
                    "{} frame {n} (too little texture to be the reference frame)",
                    req.driving.display()
                )));
            }
            Some(n)
        }
        _ => None,
    };
    let mut writer = MotionWriter::create(&req.output, header)?;
    if let (Some(n), Some(r)) = (reference_frame, engine.reference_motion()) {
        writer.reference(n as u64, n as f64 / fps, &r)?;
    }
    let mut written = 0usize;
    let mut i = 0usize;
    while let Some(frame) = frames.next_frame() {
        let tensor = prepare(frame?, req.crop_square, size)?;
        let motion = engine.capture(&tensor)?;
        let t = i as f64 / fps;
        if reference_frame.is_none()
            && let Some(r) = engine.reference_motion()
        {
            writer.reference(i as u64, t, &r)?;
            reference_frame = Some(i);
        }
        if let Some(m) = motion {
            writer.frame(i as u64, t, &m)?;
            written += 1;
        }
        i += 1;
        progress(i, count);
    }
    writer.finish()?;
    if i == 0 {
        return Err(AnimateError::NoFrames(req.driving.display().to_string()));
    }
    Ok(CaptureSummary {
        frames: written,
        reference_frame: reference_frame.unwrap_or(0),
        fps,
    })
}

/// What [`animate_motion_file`] animates.
#[derive(Debug, Clone)]
pub struct MotionAnimateRequest {
    /// The portrait.
    pub source: PathBuf,
    /// The motion file.
    pub motion: PathBuf,
    /// A video file or a folder of PNGs.
    pub output: PathBuf,
    /// Relative (or, FOMM, absolute) motion and adapt scale.
    pub transfer: TransferOptions,
    /// The reference frame: the file's own ([`Reference::First`]), or (FOMM) a recorded frame
    /// by its index, or the recorded frame whose keypoints best match the portrait's.
    pub reference: Reference,
    /// Crop the portrait to a centred square before resizing.
    pub crop_square: bool,
    /// The output frame rate for a file without one (a live recording, resampled by the frames'
    /// times); `None`: the file's rate, else 30.
    pub fps: Option<f64>,
    /// Draw the "AI ANIMATED" badge.
    pub badge: bool,
    /// The invisible mark ([`crate::watermark`]) in every frame.
    pub watermark: bool,
}

/// Animates a portrait from a motion file ([`capture_motion`], `run --record-motion`): the
/// recorded motion, relative to the recorded reference frame, drives `engine` as the video did.
/// A file with a frame rate gives one output frame per recorded frame; one without (a live
/// recording) is resampled at `req.fps` by its frames' times. Returns the summary and notes
/// (such as a checkpoint that differs from the one the motion was captured with).
pub fn animate_motion_file(
    engine: &mut dyn Animator,
    req: &MotionAnimateRequest,
    progress: &mut dyn FnMut(usize, Option<usize>),
) -> Result<(AnimateSummary, Vec<String>), AnimateError> {
    let path = req.motion.display().to_string();
    let reader = MotionReader::open(&req.motion)?;
    let header = reader.header().clone();
    let mut notes = Vec::new();
    check_motion_fits(engine, &header, &path, &mut notes)?;
    engine.set_transfer(req.transfer.relative, req.transfer.adapt_scale)?;
    let size = engine.frame_size();
    let source = prepare(load_rgb(&req.source)?, req.crop_square, size)?;
    engine.select_portrait(0, &source)?;
    engine.recalibrate();
    // A reference chosen at replay (FOMM): it replaces the file's reference lines.
    let chosen = match req.reference {
        Reference::First => None,
        other => Some(choose_recorded_reference(
            engine,
            &req.motion,
            other,
            &path,
        )?),
    };
    let (fps, resample) = match (header.fps, req.fps) {
        (Some(f), _) => (f, false),
        (None, f) => (f.unwrap_or(30.0), true),
    };
    let provenance = Provenance::for_engine(engine.name());
    let mut output = open_output(&req.output, size, fps, None, None, &provenance)?;
    let mut finish = Finish::new(req.badge, req.watermark, engine);
    let mut written = 0usize;
    let mut reference_frame = chosen.as_ref().map(|c| c.0);
    if let Some((_, r)) = &chosen {
        engine.set_reference_motion(r)?;
    }
    // Resampling: output frame k shows the latest recorded frame at or before start + k / fps.
    let mut next_time: Option<f64> = None;
    let mut current: Option<Tensor> = None;
    for record in reader {
        let record = record?;
        match record.kind {
            RecordKind::Reference(r) => {
                if chosen.is_none() {
                    engine.set_reference_motion(&r)?;
                    reference_frame.get_or_insert(record.frame as usize);
                }
            }
            RecordKind::Frame(m) => {
                if resample {
                    // Frames due more than half a period before this one show the last one.
                    let start = *next_time.get_or_insert(record.t);
                    while let Some(frame) = &current {
                        if start + (written as f64 + 0.5) / fps > record.t {
                            break;
                        }
                        write_frame(&mut output, frame, &mut finish)?;
                        written += 1;
                        progress(written, None);
                    }
                }
                let out = engine
                    .animate_motion(&m)
                    .map_err(|e| AnimateError::BadMotion {
                        path: path.clone(),
                        message: format!("line {}: {e}", record.line),
                    })?;
                if resample {
                    current = Some(out);
                } else {
                    write_frame(&mut output, &out, &mut finish)?;
                    written += 1;
                    progress(written, None);
                }
            }
        }
    }
    if let Some(frame) = &current {
        write_frame(&mut output, frame, &mut finish)?;
        written += 1;
        progress(written, None);
    }
    if written == 0 {
        return Err(AnimateError::NoFrames(path));
    }
    let output_is_video = finish_output(output)?;
    Ok((
        AnimateSummary {
            frames: written,
            reference_frame: reference_frame.unwrap_or(0),
            output_is_video,
            fps,
        },
        notes,
    ))
}

/// Refuses a motion file `engine` cannot replay, with what to do instead.
fn check_motion_fits(
    engine: &dyn Animator,
    header: &MotionHeader,
    path: &str,
    notes: &mut Vec<String>,
) -> Result<(), AnimateError> {
    let recorded = &header.source;
    let Some(ours) = engine.motion_source() else {
        return Err(motion_mismatch(recorded.engine, engine.name()).into());
    };
    if ours.engine != recorded.engine {
        return Err(motion_mismatch(recorded.engine, engine.name()).into());
    }
    match recorded.engine {
        MotionEngine::Classic if ours.frame_size != recorded.frame_size => {
            Err(EngineError::MotionMismatch {
                motion: MotionEngine::Classic,
                engine: engine.name(),
                why: format!(
                    "it was captured at {}x{} pixels and this engine runs at {}x{}; use --classic-size {}",
                    recorded.frame_size.1,
                    recorded.frame_size.0,
                    ours.frame_size.1,
                    ours.frame_size.0,
                    recorded.frame_size.0
                ),
            }
            .into())
        }
        MotionEngine::Fomm => {
            if ours.keypoints != recorded.keypoints || ours.jacobians != recorded.jacobians {
                return Err(EngineError::MotionMismatch {
                    motion: MotionEngine::Fomm,
                    engine: engine.name(),
                    why: format!(
                        "it has {} keypoints{} and this model ({}) has {}{}; use the checkpoint and config it was captured with ({})",
                        recorded.keypoints,
                        if recorded.jacobians { " with Jacobians" } else { "" },
                        ours.config.as_deref().unwrap_or("?"),
                        ours.keypoints,
                        if ours.jacobians { " with Jacobians" } else { "" },
                        describe_model(recorded.config.as_deref(), recorded.checkpoint.as_deref()),
                    ),
                }
                .into());
            }
            if let (Some(a), Some(b)) = (&recorded.checkpoint, &ours.checkpoint)
                && a != b
            {
                let note = format!(
                    "{path} was captured with checkpoint {a}; animating with {b}: keypoints are each checkpoint's own, so the motion may come out wrong"
                );
                tracing::warn!("{note}");
                notes.push(note);
            }
            Ok(())
        }
        MotionEngine::Classic => Ok(()),
    }
}

fn describe_model(config: Option<&str>, checkpoint: Option<&str>) -> String {
    match (config, checkpoint) {
        (Some(c), Some(k)) => format!("config {c}, checkpoint {k}"),
        (Some(c), None) => format!("config {c}"),
        (None, Some(k)) => format!("checkpoint {k}"),
        (None, None) => "not recorded".into(),
    }
}

/// The recorded frame to use as the reference (FOMM): frame N by its index, or the one whose
/// keypoints best match the portrait's.
fn choose_recorded_reference(
    engine: &dyn Animator,
    motion: &Path,
    reference: Reference,
    path: &str,
) -> Result<(usize, ReferenceMotion), AnimateError> {
    if engine.motion_source().map(|s| s.engine) != Some(MotionEngine::Fomm) {
        return Err(AnimateError::BadMotion {
            path: path.to_string(),
            message: "the classic engine's recorded motion is relative to the reference frame it was captured with; --best-frame and --find-best-frame need FOMM motion (choose the reference when capturing: capture-motion --best-frame N)"
                .into(),
        });
    }
    let portrait = match reference {
        Reference::Best => Some(normalized_points(
            engine
                .portrait_keypoints()
                .ok_or(AnimateError::NoDetector(engine.name()))?,
        )?),
        _ => None,
    };
    let device = candle_core::Device::Cpu;
    let mut best: Option<(f64, usize, KeypointSet)> = None;
    let mut frames = 0usize;
    for record in MotionReader::open(motion)? {
        let record = record?;
        let RecordKind::Frame(FrameMotion::Fomm(kp)) = record.kind else {
            continue;
        };
        frames += 1;
        match (reference, &portrait) {
            (Reference::Frame(n), _) if record.frame as usize == n => {
                return Ok((n, ReferenceMotion::Fomm(kp)));
            }
            (Reference::Best, Some(portrait)) => {
                let d = distance(portrait, &normalized_points(&kp.to_keypoints(&device)?)?);
                if best.as_ref().is_none_or(|b| d < b.0) {
                    best = Some((d, record.frame as usize, kp));
                }
            }
            _ => {}
        }
    }
    match (best, reference) {
        (Some((_, i, kp)), _) => Ok((i, ReferenceMotion::Fomm(kp))),
        (None, Reference::Frame(n)) => Err(AnimateError::BestFrameOutOfRange {
            requested: n,
            count: frames,
        }),
        (None, _) => Err(AnimateError::NoFrames(path.to_string())),
    }
}
