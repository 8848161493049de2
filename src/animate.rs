//! Offline animation: the original `demo.py` done as a library call. A portrait is animated by a
//! driving video or a folder of frames; frames are read and written as a stream, so long videos
//! do not have to fit in memory.

use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::engine::keyframes::InBetween;
use crate::engine::smoothing::Smoothing;
use crate::engine::{Animator, EngineError, FrameInfo};
use crate::media::MediaError;
use crate::media::frames::{FrameFolderWriter, list_image_files, load_rgb};
use crate::media::resize::{center_square_crop, tensor_to_rgb8, to_model_tensor};
use crate::media::video::{VideoReader, VideoWriter, is_video_path};
use crate::model::fomm::ModelError;
use crate::model::keypoint_detector::Keypoints;
use crate::model::motion_transfer::{TransferOptions, convex_hull_area};

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
    let mut output = open_output(req, size, fps, video_fps.is_some(), count)?;
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
        write_frame(&mut output, &out)?;
        written += 1;
        progress(written, count);
    }
    if written == 0 {
        return Err(AnimateError::NoFrames(req.driving.display().to_string()));
    }
    let output_is_video = matches!(output, Output::Video(_));
    if let Output::Video(w) = output {
        w.finish()?;
    }
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
    if req.reference == Reference::First {
        return Ok(0);
    }
    let (mut frames, _, _) = DrivingFrames::open(&req.driving)?;
    let mut count = 0usize;
    // (index, distance to the portrait's keypoints, frame) of the best frame so far.
    let mut chosen: Option<(usize, f64, Tensor)> = None;
    let portrait = match req.reference {
        Reference::Best => Some(normalized_points(
            engine
                .portrait_keypoints()
                .ok_or(AnimateError::NoDetector(engine.name()))?,
        )?),
        _ => None,
    };
    while let Some(frame) = frames.next_frame() {
        let i = count;
        count += 1;
        match (req.reference, &portrait) {
            (Reference::Frame(n), _) if i == n => {
                chosen = Some((i, 0.0, prepare(frame?, req.crop_square, size)?));
                break;
            }
            (Reference::Best, Some(portrait)) => {
                let tensor = prepare(frame?, req.crop_square, size)?;
                let kp = engine
                    .detect(&tensor)?
                    .ok_or(AnimateError::NoDetector(engine.name()))?;
                let d = distance(portrait, &normalized_points(&kp)?);
                if chosen.as_ref().is_none_or(|c| d < c.1) {
                    chosen = Some((i, d, tensor));
                }
            }
            _ => {}
        }
    }
    match (chosen, req.reference) {
        (Some((i, _, frame)), _) => {
            engine.calibrate_on(&frame)?;
            Ok(i)
        }
        (None, Reference::Frame(n)) => Err(AnimateError::BestFrameOutOfRange {
            requested: n,
            count,
        }),
        (None, _) => Err(AnimateError::NoFrames(req.driving.display().to_string())),
    }
}

/// Where the animated frames go: a video (H.264 at `fps`, with the driving video's audio) or a
/// folder of PNGs.
fn open_output(
    req: &AnimateRequest,
    size: (usize, usize),
    fps: f64,
    driving_is_video: bool,
    total: Option<usize>,
) -> Result<Output, AnimateError> {
    Ok(if is_video_path(&req.output) {
        let audio = driving_is_video.then_some(req.driving.as_path());
        Output::Video(VideoWriter::create(
            &req.output,
            size.1 as u32,
            size.0 as u32,
            fps,
            audio,
        )?)
    } else {
        Output::Folder(FrameFolderWriter::create(
            &req.output,
            total.unwrap_or(0) as u64,
        )?)
    })
}

fn write_frame(output: &mut Output, frame: &Tensor) -> Result<(), AnimateError> {
    let img = tensor_to_rgb8(frame)?;
    match output {
        Output::Video(w) => w.write(&img)?,
        Output::Folder(w) => {
            w.write(&img)?;
        }
    }
    Ok(())
}
