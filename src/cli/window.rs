//! `marionette window` (and `marionette` alone): the desktop window.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::ModelArgs;
use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::PrecisionChoice;
use marionette::app::settings::{Settings, SourceSetting};
use marionette::app::window::{WindowOptions, event_loop, run as run_window};
use marionette::capture::webcam::CameraSelector;
use marionette::devices::VcamChoice;
use marionette::engine::smoothing::Smoothing;
use marionette::pipeline::KeyframeMode;
use marionette::pipeline::framing::FramingMode;

/// Options of `window`; each applies to this run only (the saved settings are not changed).
#[derive(clap::Args, Debug)]
pub struct WindowArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Webcam: index (0 = /dev/video0), device path, or part of its name. Default: the saved
    /// choice, else the first webcam, else idle motion.
    #[arg(long, conflicts_with_all = ["test_pattern", "idle", "driving_file"])]
    camera: Option<CameraSelector>,
    /// Drive the portrait with the built-in moving test pattern.
    #[arg(long, conflicts_with_all = ["idle", "driving_file"])]
    test_pattern: bool,
    /// Drive the portrait with a video file or a folder of pictures instead of a webcam (looped
    /// at its rate; a folder at 30 pictures a second).
    #[arg(long, value_name = "VIDEO|FOLDER", conflicts_with = "idle")]
    driving_file: Option<PathBuf>,
    /// No driving source: the portrait moves by itself.
    #[arg(long)]
    idle: bool,
    /// Virtual camera: auto, none or a device path (default: the saved choice, else auto).
    #[arg(long)]
    vcam: Option<VcamChoice>,
    /// Settings file (default: $XDG_CONFIG_HOME/marionette/settings.toml).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Model keyframes with motion in between: auto (while the model is slower than the
    /// camera), on or off (default: the saved choice, else auto).
    #[arg(long, value_name = "auto|on|off")]
    keyframes: Option<KeyframeMode>,
    /// Smoothing of the driving motion: on, off, or a strength from 0 (off) to 1 (default: the
    /// saved choice, else on).
    #[arg(long, value_name = "on|off|0..1")]
    smoothing: Option<Smoothing>,
    /// The model's crop: auto (around your face, following slow drifts) or manual (zoom and
    /// pan by hand) (default: the saved choice, else auto).
    #[arg(long, value_name = "auto|manual")]
    framing: Option<FramingMode>,
}

/// Runs the window until it is closed.
pub fn run(args: WindowArgs) -> Result<()> {
    let source = if args.test_pattern {
        Some(SourceSetting::TestPattern)
    } else if let Some(path) = &args.driving_file {
        if !path.exists() {
            bail!("--driving-file {}: no such file or folder", path.display());
        }
        Some(SourceSetting::File(path.display().to_string()))
    } else if args.idle {
        Some(SourceSetting::Idle)
    } else {
        args.camera.map(|c| SourceSetting::Camera(c.to_string()))
    };
    let settings_path = match args.settings {
        Some(p) => p,
        None => Settings::default_path()?,
    };
    // A missing display is reported before the model loads.
    let event_loop = event_loop()?;
    let request = args
        .model
        .request(TransferOptions::default(), PrecisionChoice::Auto);
    let loaded = super::load(&request)?;
    let (h, w) = loaded.engine.frame_size();
    if h != w {
        bail!("the window needs a square frame size, the engine has {w}x{h}");
    }
    let vcam = args.vcam.map(|v| match v {
        VcamChoice::Auto => "auto".to_string(),
        VcamChoice::None => "none".to_string(),
        VcamChoice::Path(p) => p.display().to_string(),
    });
    run_window(
        event_loop,
        WindowOptions {
            engine: loaded.engine,
            engine_status: loaded.status,
            source,
            vcam,
            settings_path,
            bundled: marionette::assets::BundledAvatars::find(),
            user_dir: marionette::app::gallery::user_dir(),
            fps: 30.0,
            keyframes: args.keyframes,
            smoothing: args.smoothing,
            framing: args.framing,
            request,
        },
    )
    .context("the window")
}
