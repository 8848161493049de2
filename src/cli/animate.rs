//! `marionette animate`: a portrait animated by a driving video or folder of frames, offline.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::ModelArgs;
use fomm::model::RunOptions;
use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::{Precision, PrecisionChoice};
use marionette::animate::{
    AnimateRequest, AnimateSummary, InBetweenMode, Keyframes, MotionAnimateRequest, Reference,
    animate, animate_motion_file,
};
use marionette::engine::select::EngineKind;
use marionette::engine::smoothing::Smoothing;
use marionette::motion::MotionEngine;
use marionette::motion::file::MotionReader;

/// Options of `animate`.
#[derive(clap::Args, Debug)]
pub struct AnimateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The portrait to animate (any image; resized to the model's frame size).
    #[arg(long)]
    source: PathBuf,
    /// Driving video file, or a folder of frames (read in name order).
    #[arg(long, required_unless_present = "motion", conflicts_with = "motion")]
    driving: Option<PathBuf>,
    /// A motion file (`capture-motion`, `run --record-motion`) instead of a driving video:
    /// the recorded motion drives the portrait. With --engine auto the file's engine is used.
    #[arg(long, value_name = "FILE")]
    motion: Option<PathBuf>,
    /// Draw an "AI ANIMATED" badge in the bottom-right corner of every frame.
    #[arg(long)]
    badge: bool,
    /// Output video (.mp4, .mkv, ...: H.264 at the driving frame rate, with its audio) or
    /// folder (one PNG per frame).
    #[arg(long)]
    output: PathBuf,
    /// Absolute motion transfer: the driving keypoints as they are (default: relative).
    #[arg(long)]
    absolute: bool,
    /// Do not scale the motion by the ratio of the keypoint hulls.
    #[arg(long, conflicts_with = "absolute")]
    no_adapt_scale: bool,
    /// Use driving frame N as the reference frame (0-based).
    #[arg(long, value_name = "N", conflicts_with = "find_best_frame")]
    best_frame: Option<usize>,
    /// Use the driving frame whose keypoints best match the portrait's as the reference.
    #[arg(long)]
    find_best_frame: bool,
    /// grid_sample convention: true (torch 1.0, what the published weights were trained
    /// with) or false (the unmodified code on torch >= 1.3).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    align_corners: bool,
    /// Crop the source and driving images to a centred square before resizing.
    #[arg(long)]
    crop_square: bool,
    /// Frame rate of an output video when the driving input is a folder of frames (default 25),
    /// or when a motion file has none (a live recording, resampled by its frames' times; default
    /// 30).
    #[arg(long, value_parser = positive_fps)]
    fps: Option<f64>,
    #[command(flatten)]
    keyframes: KeyframeArgs,
    /// Smooth the driving motion (One Euro filter on the keypoints): off (the default: the
    /// original's results), on, or a strength from 0 (off) to 1. Removes the jitter of noisy
    /// driving videos.
    #[arg(long, default_value = "off", value_name = "off|on|0..1")]
    smoothing: Smoothing,
}

/// The offline form of the live loop's keyframes.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct KeyframeArgs {
    /// Render only every N-th frame with the engine (keyframes 0, N, 2N, ...) and make the others
    /// from the last keyframe, as the live loop does when the model is slower than the camera.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    keyframe_every: u32,
    /// Between keyframes: warp the last keyframe by the motion since its frame (warp), or show it
    /// unchanged (hold: what a loop without in-betweens shows).
    #[arg(long, value_enum, default_value = "warp", value_name = "warp|hold")]
    inbetween: InBetweenArg,
}

/// `--inbetween`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum InBetweenArg {
    /// Warp the last keyframe.
    Warp,
    /// Hold the last keyframe.
    Hold,
}

impl KeyframeArgs {
    /// The library's keyframe settings.
    pub fn keyframes(&self) -> Keyframes {
        Keyframes {
            every: self.keyframe_every as usize,
            inbetween: match self.inbetween {
                InBetweenArg::Warp => InBetweenMode::Warp,
                InBetweenArg::Hold => InBetweenMode::Hold,
            },
        }
    }
}

/// A frame rate: a positive, finite number.
pub fn positive_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("a frame rate must be a positive number, got {s:?}")),
    }
}

/// A progress bar for frames written.
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Runs `animate`.
pub fn run(args: AnimateArgs) -> Result<()> {
    let transfer = if args.absolute {
        TransferOptions::absolute()
    } else {
        TransferOptions {
            adapt_scale: !args.no_adapt_scale,
            ..TransferOptions::default()
        }
    };
    let reference = match (args.best_frame, args.find_best_frame) {
        (Some(n), _) => Reference::Frame(n),
        (None, true) => Reference::Best,
        (None, false) => Reference::First,
    };
    let mut model = args.model.clone();
    if let Some(motion) = &args.motion {
        if args.smoothing.is_on() {
            bail!(
                "--smoothing smooths the motion measured in a driving video; a motion file is \
                 replayed as it was recorded (drop --smoothing, or animate the driving video)"
            );
        }
        if args.keyframes.keyframe_every > 1 {
            bail!(
                "--keyframe-every makes in-between frames from the driving video's pixels; a \
                 motion file has none (drop --keyframe-every)"
            );
        }
        // The file says which engine (and classic frame size) it needs.
        let header = MotionReader::open(motion)
            .with_context(|| format!("reading the motion file {}", motion.display()))?
            .header()
            .clone();
        let recorded = header.source.engine;
        if model.engine == EngineKind::Auto {
            model.engine = match recorded {
                MotionEngine::Fomm => EngineKind::Fomm,
                MotionEngine::Classic => EngineKind::Classic,
            };
        }
        if recorded == MotionEngine::Classic && model.classic_size == DEFAULT_CLASSIC_SIZE {
            model.classic_size = header.source.frame_size.0;
        }
    }
    // Offline results stay faithful to the original unless asked otherwise.
    let mut request = model.request(transfer, PrecisionChoice::Exact(Precision::F32));
    request.run = RunOptions {
        align_corners: args.align_corners,
    };
    let mut loaded = super::load(&request)?;
    let bar = progress_bar();
    let mut on_progress = |done: usize, total: Option<usize>| {
        bar.set_length(total.unwrap_or(done) as u64);
        bar.set_position(done as u64);
    };
    let (summary, output) = match (&args.motion, &args.driving) {
        (Some(motion), _) => {
            let req = MotionAnimateRequest {
                source: args.source.clone(),
                motion: motion.clone(),
                output: args.output.clone(),
                transfer,
                reference,
                crop_square: args.crop_square,
                fps: args.fps,
                badge: args.badge,
                watermark: true,
            };
            let (summary, notes) =
                animate_motion_file(loaded.engine.as_mut(), &req, &mut on_progress).with_context(
                    || {
                        format!(
                            "animating {} with the motion file {}",
                            req.source.display(),
                            motion.display()
                        )
                    },
                )?;
            for note in notes {
                eprintln!("warning: {note}");
            }
            (summary, req.output)
        }
        (None, Some(driving)) => {
            let req = AnimateRequest {
                source: args.source.clone(),
                driving: driving.clone(),
                output: args.output.clone(),
                transfer,
                reference,
                crop_square: args.crop_square,
                folder_fps: args.fps.unwrap_or(25.0),
                keyframes: args.keyframes.keyframes(),
                smoothing: args.smoothing,
                badge: args.badge,
                watermark: true,
            };
            let summary =
                animate(loaded.engine.as_mut(), &req, &mut on_progress).with_context(|| {
                    format!(
                        "animating {} with {}",
                        req.source.display(),
                        req.driving.display()
                    )
                })?;
            (summary, req.output)
        }
        (None, None) => bail!("give --driving VIDEO|FOLDER or --motion FILE"),
    };
    bar.finish();
    report(&summary, &output);
    Ok(())
}

/// `--classic-size`'s default (a motion file's own size replaces it).
const DEFAULT_CLASSIC_SIZE: usize = 256;

fn report(summary: &AnimateSummary, output: &std::path::Path) {
    eprintln!(
        "wrote {} frames to {} ({}; reference frame {})",
        summary.frames,
        output.display(),
        if summary.output_is_video {
            format!("H.264 video at {:.3} fps", summary.fps)
        } else {
            "PNG folder".to_string()
        },
        summary.reference_frame
    );
}
