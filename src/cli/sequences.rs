//! `marionette make-sequences` and `marionette evaluate`: synthetic driving sequences with known
//! motion, and the engines' accuracy on them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::ModelArgs;
use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::{Precision, PrecisionChoice};
use marionette::animate::{AnimateRequest, Keyframes, Reference, animate};
use marionette::engine::smoothing::Smoothing;
use marionette::media::frames::list_image_files;
use marionette::synth::{FaceBox, TARGET_MAE, evaluate as score, generate, read_spec};

/// Options of `make-sequences`.
#[derive(clap::Args, Debug)]
pub struct MakeSequencesArgs {
    /// The photo (centre-cropped to a square and resized).
    #[arg(long)]
    photo: PathBuf,
    /// Folder to write the sequence folders into.
    #[arg(long)]
    output: PathBuf,
    /// Frame side in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// The face region where errors are measured, as fractions of the frame: x0,y0,x1,y1.
    #[arg(long, default_value = "0.25,0.1,0.75,0.65")]
    face: FaceBox,
    /// Moved frames after frame 0 (the motion grows linearly to its full amount).
    #[arg(long, default_value_t = 20)]
    frames: usize,
}

/// Options of `evaluate`.
#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A sequence folder (from make-sequences, or any folder of frames with --face), or a
    /// folder of such folders.
    sequences: PathBuf,
    /// Score existing outputs instead of animating: the output folder of one sequence, or a
    /// folder holding one output folder per sequence name.
    #[arg(long)]
    produced: Option<PathBuf>,
    /// Keep the animated frames here, one folder per sequence.
    #[arg(long, conflicts_with = "produced")]
    output: Option<PathBuf>,
    /// Face region (x0,y0,x1,y1 fractions) for sequences without sequence.json.
    #[arg(long)]
    face: Option<FaceBox>,
    /// One JSON object per sequence instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    keyframes: super::animate::KeyframeArgs,
    /// Smooth the driving motion as the live loop does: off (the default), on, or a strength
    /// from 0 to 1 (frames 1/25 s apart).
    #[arg(long, default_value = "off", value_name = "off|on|0..1")]
    smoothing: Smoothing,
}

/// Runs `make-sequences`.
pub fn make(args: MakeSequencesArgs) -> Result<()> {
    let dirs = generate(&args.photo, &args.output, args.size, args.face, args.frames)
        .with_context(|| format!("writing sequences of {}", args.photo.display()))?;
    for d in &dirs {
        println!("{}", d.display());
    }
    eprintln!(
        "wrote {} sequences to {}",
        dirs.len(),
        args.output.display()
    );
    Ok(())
}

/// The sequence folders under `path`: itself when it holds frames, else its subfolders that do.
fn sequence_dirs(path: &Path) -> Result<Vec<PathBuf>> {
    if list_image_files(path).is_ok() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && list_image_files(p).is_ok())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "{} holds neither frames nor sequence folders: make some with `marionette make-sequences`",
            path.display()
        );
    }
    Ok(dirs)
}

/// Animates frame 0 of `dir` with the whole sequence into `out`.
fn animate_sequence(
    model: &ModelArgs,
    keyframes: Keyframes,
    smoothing: Smoothing,
    dir: &Path,
    out: &Path,
) -> Result<()> {
    let mut model = model.clone();
    if let Ok(Some(spec)) = read_spec(dir) {
        model.classic_size = spec.size as usize;
    }
    let first = list_image_files(dir)?.first().context("no frames")?.clone();
    let req = AnimateRequest {
        source: first,
        driving: dir.to_path_buf(),
        output: out.to_path_buf(),
        transfer: TransferOptions::default(),
        reference: Reference::First,
        crop_square: false,
        folder_fps: 25.0,
        keyframes,
        smoothing,
        badge: false,
        // The evaluation measures motion against known truth: the bare pixels.
        watermark: false,
    };
    let request = model.request(req.transfer, PrecisionChoice::Exact(Precision::F32));
    let mut loaded = super::load(&request)?;
    animate(loaded.engine.as_mut(), &req, &mut |_, _| {})
        .with_context(|| format!("animating {}", dir.display()))?;
    Ok(())
}

/// Runs `evaluate`.
pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let dirs = sequence_dirs(&args.sequences)?;
    let scratch = std::env::temp_dir().join(format!("marionette-eval-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let mut scores = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "sequence".into());
        let out = match (&args.produced, &args.output) {
            (Some(p), _) if dirs.len() == 1 && !p.join(&name).is_dir() => p.clone(),
            (Some(p), _) => p.join(&name),
            (None, Some(o)) => o.join(&name),
            (None, None) => scratch.join(&name),
        };
        if args.produced.is_none() {
            animate_sequence(
                &args.model,
                args.keyframes.keyframes(),
                args.smoothing,
                dir,
                &out,
            )?;
        }
        let score = score(dir, &out, args.face)
            .with_context(|| format!("scoring {} against {}", out.display(), dir.display()))?;
        if args.json {
            println!("{}", serde_json::to_string(&score)?);
        } else {
            println!(
                "{:40} {:3} frames  MAE mean {:.4}  max {:.4}  last {:.4}  (unmoved {:.4})  {}",
                score.name,
                score.frames,
                score.mean_mae,
                score.max_mae,
                score.last_mae,
                score.unmoved_mae,
                if score.passes() { "ok" } else { "ABOVE TARGET" }
            );
        }
        scores.push(score);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let worst = scores.iter().map(|s| s.max_mae).fold(0.0, f64::max);
    let mean = scores.iter().map(|s| s.mean_mae).sum::<f64>() / scores.len().max(1) as f64;
    eprintln!(
        "{} sequences: worst frame MAE {worst:.4}, mean MAE {mean:.4} (target: at most {TARGET_MAE} over the face)",
        scores.len()
    );
    Ok(())
}
