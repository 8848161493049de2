//! `marionette capture-motion`: the motion of a driving video as a motion file, to animate any
//! portrait with later (`animate --motion`).

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::ModelArgs;
use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::{Precision, PrecisionChoice};
use marionette::animate::{CaptureRequest, Reference, capture_motion};

/// Options of `capture-motion`.
#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Driving video file, or a folder of frames (read in name order).
    #[arg(long)]
    driving: PathBuf,
    /// The motion file to write (JSON lines; see the README, "Motion files").
    #[arg(long)]
    output: PathBuf,
    /// Use driving frame N as the reference frame (0-based; default: the first). With FOMM the
    /// reference can also be chosen when animating (`animate --motion --best-frame N` or
    /// `--find-best-frame`).
    #[arg(long, value_name = "N")]
    best_frame: Option<usize>,
    /// Crop the driving frames to a centred square before resizing.
    #[arg(long)]
    crop_square: bool,
    /// Frame rate recorded for a folder of frames.
    #[arg(long, default_value_t = 25.0, value_parser = super::animate::positive_fps)]
    fps: f64,
}

/// Runs `capture-motion`.
pub fn run(args: CaptureArgs) -> Result<()> {
    // The keypoints as the offline animation measures them (f32), so that replaying gives the
    // same frames as animating from the video.
    let request = args.model.request(
        TransferOptions::default(),
        PrecisionChoice::Exact(Precision::F32),
    );
    let mut loaded = super::load(&request)?;
    let req = CaptureRequest {
        driving: args.driving,
        output: args.output,
        reference: args.best_frame.map_or(Reference::First, Reference::Frame),
        crop_square: args.crop_square,
        folder_fps: args.fps,
    };
    let bar = super::animate::progress_bar();
    let summary = capture_motion(loaded.engine.as_mut(), &req, &mut |done, total| {
        bar.set_length(total.unwrap_or(done) as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("capturing the motion of {}", req.driving.display()))?;
    bar.finish();
    eprintln!(
        "wrote the motion of {} frames to {} ({} engine, {:.3} fps, reference frame {})",
        summary.frames,
        req.output.display(),
        loaded.engine.name(),
        summary.fps,
        summary.reference_frame
    );
    Ok(())
}
