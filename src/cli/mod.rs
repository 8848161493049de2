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
pub mod models;
pub mod run;
pub mod sequences;
pub mod serve;
pub mod verify;
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

/// marionette's long description (`--help` and the man page).
const ROOT_ABOUT: &str =
    "Animate a portrait with your webcam or a video (First Order Motion Model).

A portrait (a photo, a painting, a statue) moves the way you move. Your webcam drives it through \
the First Order Motion Model (Siarohin et al., NeurIPS 2019): keypoints with local affine motion, \
transferred relative to a reference pose that you set by looking at the camera, a dense motion \
field with an occlusion map, and a generator that renders the portrait in the new pose. The \
result shows in a window and, through v4l2loopback, as a camera that Zoom, Teams, Meet and \
browsers list. The same engine animates a portrait offline from a driving video.

The published FOMM weights cannot be shipped with marionette: until you add them (marionette \
models add, or \"Add FOMM weights\" in the window), a weight-free classic engine moves the \
portrait as a whole face. With no webcam, the portrait moves by itself. Everything it makes says \
that it is animated (in the files' metadata, and an optional badge on the picture).

With no command, marionette opens the window.";

/// `marionette models`'s long description: the models guide (also its man page).
const MODELS_ABOUT: &str = "The FOMM checkpoints found, and adding one.

marionette animates with the First Order Motion Model when it finds one of the checkpoints the \
paper's authors publish, and with its weight-free classic engine otherwise. The weights cannot be \
shipped with marionette: download them yourself. They are published in the authors' repository \
(github.com/AliaksandrSiarohin/first-order-model, \"Pre-trained checkpoint\"), one folder on \
Google Drive (https://drive.google.com/open?id=1PyQJmkdCsAkOYwUyaj_l-l0as-iLDgeH) and on Yandex \
Disk (https://yadi.sk/d/lEw8uRm140L_eQ). For faces take vox-adv-cpk.pth.tar (vox-cpk.pth.tar \
also works); taichi-*, nemo, mgif, bair and fashion animate bodies, smiles, cartoon animals, a \
robot arm and fashion models.

`marionette models add FILE` reads the file as it is loaded to run (never executing anything \
from it), checks every key and shape against its config (found from its structure, or given with \
--config), and copies it into your models folder ($XDG_DATA_HOME/marionette/models, by default \
~/.local/share/marionette/models), where every later run and the window find it. The window's \
\"Add FOMM weights\" does the same. `marionette models list` shows what is found where, with \
each checkpoint's config and whether it loads.

The folders searched, in order: yours; the installation's (<prefix>/share/marionette/models \
when the binary is <prefix>/bin/marionette); a source build's models/ folder; or only \
$MARIONETTE_MODEL_DIR when it is set. The first checkpoint found runs (the published names \
first); --checkpoint FILE on any command takes another.";

/// `marionette`: a portrait animated by your webcam or a video.
#[derive(Parser)]
#[command(
    name = "marionette",
    version = VERSION,
    propagate_version = true,
    about = "Animate a portrait with your webcam or a video (First Order Motion Model)",
    long_about = ROOT_ABOUT
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
    /// The FOMM checkpoints found, and adding one (`models list`, `models add FILE`).
    #[command(long_about = MODELS_ABOUT)]
    Models(models::ModelsArgs),
    /// Write synthetic driving sequences: a photo warped by known motions relative to frame 0
    /// (rotations, scaling, shifts, smooth non-rigid wobbles), one folder per motion.
    MakeSequences(sequences::MakeSequencesArgs),
    /// Accuracy on synthetic sequences: animates frame 0 of each sequence with the sequence as the
    /// driving video and prints the error against the known frames over the face region.
    Evaluate(sequences::EvaluateArgs),
    /// Render for clients on other machines (`run --remote`): FOMM on this machine's processor or
    /// GPU, driven by the keypoints the clients send; encrypted, paired by a secret it prints.
    Serve(serve::ServeArgs),
    /// Whether a video, an image, a folder of images or a camera carries marionette's invisible
    /// mark (every frame marionette generates has it): the payload and the chance that an
    /// unmarked input would look as marked. Exit status 0 either way.
    Verify(verify::VerifyArgs),
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
            Command::Models(a) => models::run(a),
            Command::Serve(a) => serve::run(a),
            Command::MakeSequences(a) => sequences::make(a),
            Command::Evaluate(a) => sequences::evaluate(a),
            Command::Verify(a) => verify::run(a),
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
    /// FOMM checkpoint: .pth.tar (as published) or .safetensors. Default: the first one found in
    /// the models folders (`marionette models list` shows them; `models add FILE` adds one).
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
