//! The command line: one typed argument struct and one `run` function per command, each in its
//! own file. Strings become the library's types at the edge (clap value parsers over their
//! `FromStr`), flags that make no sense together are refused, and each command turns its flags
//! into the library's requests once.

pub mod animate;
pub mod bench;
pub mod capture;
pub mod convert;
pub mod devices;
pub mod generate;
pub mod run;
pub mod sequences;
pub mod window;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::PrecisionChoice;
use marionette::engine::select::{
    EngineKind, EngineRequest, LoadedEngine, load_engine, pick_device,
};

/// `marionette --version`: the version and whether this build can use NVIDIA GPUs.
#[cfg(feature = "cudnn")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (built with CUDA and cuDNN)");
#[cfg(all(feature = "cuda", not(feature = "cudnn")))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (built with CUDA)");
#[cfg(not(feature = "cuda"))]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (built without CUDA: runs on the CPU)"
);

/// `marionette`: a portrait animated by your webcam or a video.
#[derive(Parser)]
#[command(
    name = "marionette",
    version = VERSION,
    propagate_version = true,
    about = "Animate a portrait with your webcam or a video (First Order Motion Model)"
)]
pub struct Cli {
    /// Log level filter (e.g. info, debug, marionette=trace); also RUST_LOG.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
    /// With no command: the desktop window.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// The desktop window (what `marionette` with no command opens): pick a portrait, line your
    /// face up, calibrate, and appear animated in the preview and the virtual camera.
    Window(window::WindowArgs),
    /// The live loop without a window: driving frames -> animated portrait -> virtual camera
    /// and/or recorder.
    Run(run::RunArgs),
    /// Animate a portrait with a driving video or folder of frames, or a motion file (offline).
    Animate(animate::AnimateArgs),
    /// Record the motion of a driving video or folder of frames into a motion file (FOMM's
    /// keypoints and Jacobians, or the classic engine's anchors and local maps), to animate any
    /// portrait with later (`animate --motion`).
    CaptureMotion(capture::CaptureArgs),
    /// Convert a checkpoint (.pth.tar legacy or zip, or .safetensors) to .safetensors holding
    /// kp_detector.* and generator.*.
    Convert(convert::ConvertArgs),
    /// List cameras and virtual-camera outputs.
    Devices,
    /// Write synthetic driving sequences: a photo warped by known motions relative to frame 0
    /// (rotations, scaling, shifts, smooth non-rigid wobbles), one folder per motion.
    MakeSequences(sequences::MakeSequencesArgs),
    /// Accuracy on synthetic sequences: animates frame 0 of each sequence with the sequence as the
    /// driving video and prints the error against the known frames over the face region.
    Evaluate(sequences::EvaluateArgs),
    /// Measure speed (random weights of a config's structure, no checkpoint needed) or the
    /// reduced precisions' quality.
    Bench(bench::BenchArgs),
    /// Write the man pages or the shell completions into a folder (for packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

impl Command {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        match self {
            Command::Window(a) => window::run(a),
            Command::Run(a) => run::run(a),
            Command::Animate(a) => animate::run(a),
            Command::CaptureMotion(a) => capture::run(a),
            Command::Convert(a) => convert::run(a),
            Command::Devices => devices::run(),
            Command::MakeSequences(a) => sequences::make(a),
            Command::Evaluate(a) => sequences::evaluate(a),
            Command::Bench(a) => bench::run(a),
            Command::Generate(a) => generate::run(a),
        }
    }
}

/// Which engine and model, shared by every command that animates.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Engine: fomm (the neural network; needs a checkpoint), classic (weight-free point
    /// tracking) or auto (fomm when a checkpoint is found, else classic).
    #[arg(long, default_value = "auto", value_name = "fomm|classic|auto")]
    pub engine: EngineKind,
    /// Frame size of the classic engine (square; FOMM's comes from its config).
    #[arg(long, default_value_t = 256, value_name = "PIXELS")]
    pub classic_size: usize,
    /// FOMM checkpoint: .pth.tar (as published) or .safetensors. Default: the first published
    /// checkpoint found in ./models, beside the executable, or ~/.local/share/marionette/models.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Config: a published name (vox-256, vox-adv-256, taichi-256, ...) or a YAML file in the
    /// original layout. Default: guessed from the checkpoint's file name, else vox-256.
    #[arg(long)]
    pub config: Option<String>,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    /// FOMM with random weights of --config's structure instead of a checkpoint (for measuring
    /// speed; the output is noise).
    #[arg(long, conflicts_with = "checkpoint")]
    pub random_weights: bool,
    /// FOMM's arithmetic on the CPU: f32 (faithful to the original bit for bit), bf16 (the
    /// convolutions' operands in bfloat16, on processors with AVX512_BF16), or auto (bf16 where
    /// this processor's bf16 instructions measure clearly faster than its f32 ones, else f32). Default: auto for live use, f32 for `animate`.
    #[arg(long, value_name = "auto|f32|bf16")]
    pub precision: Option<PrecisionChoice>,
}

impl ModelArgs {
    /// The library's engine request, with `default_precision` where --precision is not given.
    pub fn request(
        &self,
        transfer: TransferOptions,
        default_precision: PrecisionChoice,
    ) -> EngineRequest {
        let (device, device_note) = pick_device(self.cpu);
        tracing::info!("{device_note}");
        EngineRequest {
            kind: self.engine,
            checkpoint: self.checkpoint.clone(),
            config: self.config.clone(),
            random_weights: self.random_weights,
            classic_size: self.classic_size,
            device,
            precision: self.precision.unwrap_or(default_precision),
            transfer,
            ..EngineRequest::default()
        }
    }
}

/// Loads the engine and says what runs.
pub fn load(request: &EngineRequest) -> Result<LoadedEngine> {
    let loaded = load_engine(request).context("loading the engine")?;
    for note in &loaded.notes {
        eprintln!("{note}");
    }
    Ok(loaded)
}

/// The portrait to animate live: the one given, else the bundled default.
pub fn portrait(given: Option<&PathBuf>) -> Result<image::RgbImage> {
    match given {
        Some(path) => marionette::media::frames::load_rgb(path)
            .with_context(|| format!("loading the portrait {}", path.display())),
        None => Ok(default_portrait()?.0),
    }
}

/// The bundled default portrait, decoded, and where it came from (see [`marionette::assets`]).
pub fn default_portrait() -> Result<(image::RgbImage, PathBuf)> {
    let bundled = marionette::assets::BundledAvatars::find();
    let file = bundled
        .default_avatar()
        .with_context(|| format!("the bundled default portrait ({bundled})"))?;
    let image = file
        .decode()
        .with_context(|| format!("the bundled default portrait ({bundled})"))?;
    tracing::info!("portrait: {} ({bundled})", file.path.display());
    Ok((image, file.path))
}
