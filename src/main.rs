//! The `marionette` command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use marionette::animate::{AnimateEngine, AnimateRequest, Reference, animate};
use marionette::engine::classic::{ClassicEngine, ClassicParams};
use marionette::engine::select::{self, EngineChoice, EngineKind};
use marionette::model::checkpoint::Checkpoint;
use marionette::model::config::FommConfig;
use marionette::model::fomm::{Fomm, RunOptions};
use marionette::model::motion_transfer::TransferOptions;
use marionette::model::presets;

#[derive(Parser)]
#[command(
    name = "marionette",
    version,
    about = "Animate a portrait with your webcam or a video (First Order Motion Model)"
)]
struct Cli {
    /// Log level filter (e.g. info, debug, marionette=trace); also RUST_LOG.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    /// With no command: the desktop window.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Clone)]
struct ModelArgs {
    /// Engine: fomm (the neural network; needs a checkpoint), classic (weight-free point
    /// tracking) or auto (fomm when a checkpoint is found, else classic).
    #[arg(long, default_value = "auto", value_name = "fomm|classic|auto")]
    engine: EngineKind,
    /// Frame size of the classic engine (square; FOMM's comes from its config).
    #[arg(long, default_value_t = 256, value_name = "PIXELS")]
    classic_size: usize,
    /// FOMM checkpoint: .pth.tar (as published) or .safetensors. Default: the first published
    /// checkpoint found in ./models, beside the executable, or ~/.local/share/marionette/models.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Config: a published name (vox-256, vox-adv-256, taichi-256, ...) or a YAML file in the
    /// original layout. Default: guessed from the checkpoint's file name, else vox-256.
    #[arg(long)]
    config: Option<String>,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    cpu: bool,
    /// FOMM with random weights of --config's structure instead of a checkpoint (for measuring
    /// speed; the output is noise).
    #[arg(long, conflicts_with = "checkpoint")]
    random_weights: bool,
}

#[derive(Subcommand)]
enum Command {
    /// The desktop window (what `marionette` with no command opens): pick a portrait, line your
    /// face up, calibrate, and appear animated in the preview and the virtual camera.
    Window {
        #[command(flatten)]
        model: ModelArgs,
        /// Webcam index (0 = /dev/video0) or device path. Default: the saved choice, else the
        /// first webcam, else idle motion.
        #[arg(long, conflicts_with_all = ["test_pattern", "idle"])]
        camera: Option<String>,
        /// Drive the portrait with the built-in moving test pattern.
        #[arg(long, conflicts_with = "idle")]
        test_pattern: bool,
        /// No driving source: the portrait moves by itself.
        #[arg(long)]
        idle: bool,
        /// Virtual camera: auto, none or a device path (default: the saved choice, else auto).
        #[arg(long)]
        vcam: Option<String>,
        /// Settings file (default: $XDG_CONFIG_HOME/marionette/settings.toml).
        #[arg(long)]
        settings: Option<PathBuf>,
    },
    /// Animate a portrait with a driving video or folder of frames (offline).
    Animate {
        #[command(flatten)]
        model: ModelArgs,
        /// The portrait to animate (any image; resized to the model's frame size).
        #[arg(long)]
        source: PathBuf,
        /// Driving video file, or a folder of frames (read in name order).
        #[arg(long)]
        driving: PathBuf,
        /// Output video (.mp4, .mkv, ...: H.264 at the driving frame rate, with its audio) or
        /// folder (one PNG per frame).
        #[arg(long)]
        output: PathBuf,
        /// Absolute motion transfer: the driving keypoints as they are (default: relative).
        #[arg(long)]
        absolute: bool,
        /// Do not scale the motion by the ratio of the keypoint hulls.
        #[arg(long)]
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
        /// Frame rate of an output video when the driving input is a folder of frames.
        #[arg(long, default_value_t = 25.0)]
        fps: f64,
    },
    /// Convert a checkpoint (.pth.tar legacy or zip, or .safetensors) to .safetensors holding
    /// kp_detector.* and generator.*.
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// Also check that the checkpoint fits this config (name or YAML path).
        #[arg(long)]
        config: Option<String>,
    },
    /// The live loop without a window: driving frames -> animated portrait -> virtual camera
    /// and/or recorder.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// Webcam index (0 = /dev/video0) or part of its name. Default: the first webcam found.
        #[arg(long, conflicts_with_all = ["driving_file", "test_pattern"])]
        camera: Option<String>,
        /// A driving video file (played at its own rate, looping) or a folder of frames.
        #[arg(long, conflicts_with = "test_pattern")]
        driving_file: Option<PathBuf>,
        /// The built-in moving test pattern as the driving source.
        #[arg(long)]
        test_pattern: bool,
        /// No driving source: the portrait moves by itself (idle motion). The default when no
        /// source is given and no webcam is found.
        #[arg(long, conflicts_with_all = ["camera", "driving_file", "test_pattern"])]
        idle: bool,
        /// The portrait (default: the bundled Eileen Collins portrait).
        #[arg(long)]
        avatar: Option<PathBuf>,
        /// Virtual camera to write to: a v4l2loopback device (e.g. /dev/video10), `auto` (the
        /// v4l2loopback device found, if any) or `none`.
        #[arg(long, default_value = "auto")]
        vcam: String,
        /// Virtual camera frame size: 640x480 or 1280x720.
        #[arg(long, default_value = "640x480")]
        vcam_size: String,
        /// Virtual camera pixel format: yuyv or i420.
        #[arg(long, default_value = "yuyv")]
        vcam_format: String,
        /// Also record the animated frames (video file or folder of PNGs).
        #[arg(long)]
        record: Option<PathBuf>,
        /// Stop after this many output frames.
        #[arg(long)]
        frames: Option<u64>,
        /// Show the camera crop instead of the animated portrait.
        #[arg(long)]
        passthrough: bool,
        /// Mirror the camera crop.
        #[arg(long)]
        mirror: bool,
        /// Print stats every few seconds and at exit.
        #[arg(long)]
        stats: bool,
    },
    /// List cameras and virtual-camera outputs.
    Devices,
    /// Write synthetic driving sequences: a photo warped by known motions relative to frame 0
    /// (rotations, scaling, shifts, smooth non-rigid wobbles), one folder per motion.
    MakeSequences {
        /// The photo (centre-cropped to a square and resized).
        #[arg(long)]
        photo: PathBuf,
        /// Folder to write the sequence folders into.
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 256)]
        size: u32,
        /// The face region where errors are measured, as fractions of the frame: x0,y0,x1,y1.
        #[arg(long, default_value = "0.25,0.1,0.75,0.65")]
        face: marionette::synth::FaceBox,
        /// Moved frames after frame 0 (the motion grows linearly to its full amount).
        #[arg(long, default_value_t = 20)]
        frames: usize,
    },
    /// Accuracy on synthetic sequences: animates frame 0 of each sequence with the sequence as the
    /// driving video and prints the error against the known frames over the face region.
    Evaluate {
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
        face: Option<marionette::synth::FaceBox>,
        /// One JSON object per sequence instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure speed with random weights of a config's structure (no checkpoint needed).
    Bench {
        /// fomm (random weights of --config) or classic (on the bundled portrait moving by a known
        /// motion).
        #[arg(long, default_value = "fomm", value_name = "fomm|classic")]
        engine: EngineKind,
        /// Frame size of the classic engine.
        #[arg(long, default_value_t = 256)]
        classic_size: usize,
        /// Time everything in the live loop except the model instead (camera decode, crop,
        /// tensors, compose, colour conversion, write), at --camera-size.
        #[arg(long)]
        live: bool,
        /// Camera and virtual-camera frame size for --live.
        #[arg(long, default_value = "1280x720")]
        camera_size: String,
        /// Config name or YAML path.
        #[arg(long, default_value = "vox-256")]
        config: String,
        /// Timed iterations per stage (median reported).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        cpu: bool,
        /// Precision of the convolutions: auto, f32 or bf16.
        #[arg(long, default_value = "auto")]
        precision: String,
    },
}

/// CUDA when built with it and a GPU is there, else the CPU; says which.
fn pick_device(force_cpu: bool) -> Result<Device> {
    if force_cpu {
        return Ok(Device::Cpu);
    }
    #[cfg(feature = "cuda")]
    {
        match Device::new_cuda(0) {
            Ok(d) => {
                eprintln!("device: CUDA GPU 0 (--cpu to run on the CPU)");
                return Ok(d);
            }
            Err(e) => {
                // candle's error text can carry a backtrace (RUST_BACKTRACE): its first line says it.
                let e = e.to_string();
                let first = e.lines().next().unwrap_or("unknown error");
                eprintln!("device: CPU (no usable CUDA GPU: {first})");
            }
        }
    }
    #[cfg(not(feature = "cuda"))]
    tracing::info!("running on the CPU (build with `--features cuda` for NVIDIA GPUs)");
    Ok(Device::Cpu)
}

/// The engine `args` ask for (see [`select::choose_engine`]), loaded; says which one runs.
fn load_engine(args: &ModelArgs) -> Result<AnimateEngine> {
    Ok(load_engine_described(args)?.0)
}

/// [`load_engine`], with a one-line summary for the window's status.
fn load_engine_described(args: &ModelArgs) -> Result<(AnimateEngine, String)> {
    let device_name = |d: &Device| if d.is_cuda() { "CUDA GPU" } else { "CPU" };
    if args.random_weights {
        let config = presets::resolve_config(args.config.as_deref().unwrap_or("vox-256"))?;
        eprintln!(
            "engine: fomm with random weights of {} (speed only)",
            config.name
        );
        let device = pick_device(args.cpu)?;
        let summary = format!(
            "FOMM with random weights of {} (speed only), {}",
            config.name,
            device_name(&device)
        );
        return Ok((
            AnimateEngine::Fomm(Box::new(Fomm::random(&config, &device)?)),
            summary,
        ));
    }
    let dirs = select::search_dirs();
    let choice = select::choose_engine(args.engine, args.checkpoint.as_deref(), &dirs)?;
    eprintln!("{}", select::describe(&choice, &dirs));
    match choice {
        EngineChoice::Fomm { checkpoint, .. } => {
            let fomm = load_fomm(&checkpoint, args)?;
            let summary = format!(
                "FOMM ({}) from {}, {}",
                fomm.config.name,
                checkpoint
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                device_name(fomm.device())
            );
            Ok((AnimateEngine::Fomm(Box::new(fomm)), summary))
        }
        EngineChoice::Classic { fallback } => {
            let size = args.classic_size;
            let summary = if fallback {
                format!(
                    "classic (point tracking, {size} px): no FOMM checkpoint found; see \
                     models/README.md to get one"
                )
            } else {
                format!("classic (point tracking, {size} px)")
            };
            Ok((
                AnimateEngine::Classic(Box::new(
                    ClassicEngine::new(ClassicParams::default(), (size, size))
                        .context("--classic-size")?,
                )),
                summary,
            ))
        }
    }
}

fn load_fomm(checkpoint_path: &Path, args: &ModelArgs) -> Result<Fomm> {
    let config_spec = match &args.config {
        Some(c) => c.clone(),
        None => presets::config_for_checkpoint(checkpoint_path)
            .unwrap_or("vox-256")
            .to_string(),
    };
    let config = presets::resolve_config(&config_spec)?;
    eprintln!(
        "model: {} with config {}",
        checkpoint_path.display(),
        config.name
    );
    let checkpoint = Checkpoint::load(checkpoint_path)?;
    let device = pick_device(args.cpu)?;
    Ok(Fomm::from_checkpoint(
        &config,
        &checkpoint,
        &checkpoint_path.display().to_string(),
        &device,
    )?)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn run_animate(cmd: Command) -> Result<()> {
    let Command::Animate {
        model,
        source,
        driving,
        output,
        absolute,
        no_adapt_scale,
        best_frame,
        find_best_frame,
        align_corners,
        crop_square,
        fps,
    } = cmd
    else {
        bail!("internal: not an animate command");
    };
    let mut engine = load_engine(&model)?;
    if let AnimateEngine::Fomm(fomm) = &mut engine {
        fomm.options = RunOptions { align_corners };
    }
    let transfer = if absolute {
        TransferOptions::absolute()
    } else {
        TransferOptions {
            adapt_scale: !no_adapt_scale,
            ..TransferOptions::default()
        }
    };
    let reference = match (best_frame, find_best_frame) {
        (Some(n), _) => Reference::Frame(n),
        (None, true) => Reference::Best,
        (None, false) => Reference::First,
    };
    if !(fps.is_finite() && fps > 0.0) {
        bail!("--fps must be a positive number, got {fps}");
    }
    let req = AnimateRequest {
        source,
        driving,
        output,
        transfer,
        reference,
        crop_square,
        folder_fps: fps,
    };
    let bar = progress_bar();
    let summary = animate(engine, &req, &mut |done, total| {
        if let Some(t) = total {
            bar.set_length(t as u64);
        } else {
            bar.set_length(done as u64);
        }
        bar.set_position(done as u64);
    })
    .with_context(|| {
        format!(
            "animating {} with {}",
            req.source.display(),
            req.driving.display()
        )
    })?;
    bar.finish();
    eprintln!(
        "wrote {} frames to {} ({}; reference frame {})",
        summary.frames,
        req.output.display(),
        if summary.output_is_video {
            format!("H.264 video at {:.3} fps", summary.fps)
        } else {
            "PNG folder".to_string()
        },
        summary.reference_frame
    );
    Ok(())
}

fn run_convert(input: &Path, output: &Path, config: Option<&str>) -> Result<()> {
    let checkpoint = Checkpoint::load(input)?;
    if let Some(spec) = config {
        let config: FommConfig = presets::resolve_config(spec)?;
        Fomm::from_checkpoint(
            &config,
            &checkpoint,
            &input.display().to_string(),
            &Device::Cpu,
        )?;
        eprintln!("{} fits config {}", input.display(), config.name);
    }
    checkpoint.save_safetensors(output)?;
    eprintln!(
        "wrote {} tensors to {}",
        checkpoint.tensors.len(),
        output.display()
    );
    Ok(())
}

fn run_bench(config: &str, iters: usize, json: bool, cpu: bool, precision: &str) -> Result<()> {
    let config = presets::resolve_config(config)?;
    let device = pick_device(cpu)?;
    let choice: marionette::model::precision::PrecisionChoice = precision.parse()?;
    let plan = marionette::model::precision::PrecisionPlan::for_precision(choice.resolve()?);
    let r = marionette::bench::run(&config, &device, iters, plan)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "config {} on {} at {} ({} threads), median of {} runs:",
            r.config, r.device, r.precision, r.threads, r.iterations
        );
        println!(
            "  prepare source (once per portrait) {:>9.2} ms",
            r.prepare_source_ms
        );
        println!(
            "  keypoint detector                  {:>9.2} ms",
            r.kp_detector_ms
        );
        println!(
            "  motion transfer                    {:>9.2} ms",
            r.motion_transfer_ms
        );
        println!(
            "  dense motion                       {:>9.2} ms",
            r.dense_motion_ms
        );
        println!(
            "  decoder                            {:>9.2} ms",
            r.decoder_ms
        );
        println!(
            "  whole per-frame step               {:>9.2} ms  ({:.2} fps)",
            r.per_frame_ms, r.fps
        );
        println!(
            "  grid_sample (1,256,64,64)          {:>9.2} ms",
            r.grid_sample_features_ms
        );
        println!(
            "  grid_sample (1,3,256,256)          {:>9.2} ms",
            r.grid_sample_image_ms
        );
    }
    Ok(())
}

fn run_bench_live(camera_size: &str, iters: usize, json: bool) -> Result<()> {
    let size = parse_size(camera_size)?;
    let path = bundled_avatar().context("the bundled avatars (assets/avatars) were not found")?;
    let photo = marionette::media::frames::load_rgb(&path)
        .with_context(|| format!("loading {}", path.display()))?;
    let r = marionette::bench::run_live_path(&photo, size, 256, iters.max(30))?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "live loop without the model, camera {} -> model {}x{} -> {}, median of {} runs:",
            r.camera, r.model_side, r.model_side, r.output, r.iterations
        );
        for (name, v) in [
            ("decode MJPG", r.decode_mjpg_ms),
            ("decode YUYV", r.decode_yuyv_ms),
            ("crop + resize", r.crop_resize_ms),
            ("tensors in/out", r.tensor_io_ms),
            ("compose on background", r.compose_ms),
            ("RGB -> YUYV", r.convert_yuyv_ms),
            ("RGB -> I420", r.convert_i420_ms),
            ("compose -> YUYV, fused", r.compose_yuyv_ms),
            ("write", r.write_ms),
            ("total, MJPG camera", r.total_mjpg_ms),
            ("total, YUYV camera", r.total_yuyv_ms),
        ] {
            println!("  {name:24} {v:>8.3} ms");
        }
    }
    Ok(())
}

fn run_bench_classic(size: usize, iters: usize, json: bool) -> Result<()> {
    let path = bundled_avatar().context("the bundled avatars (assets/avatars) were not found")?;
    let photo = marionette::media::frames::load_rgb(&path)
        .with_context(|| format!("loading {}", path.display()))?;
    // At least 60 driving frames: one sweep of the motion there and back.
    let r = marionette::bench::run_classic(&photo, size, iters.max(60))?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "classic engine {}x{} ({} threads), {} frames of {}:",
            r.size,
            r.size,
            r.threads,
            r.frames,
            path.display()
        );
        println!(
            "  set source (once per portrait)     {:>9.2} ms",
            r.set_source_ms
        );
        println!(
            "  calibration frame                  {:>9.2} ms",
            r.calibrate_ms
        );
        println!(
            "  per frame (track, fit, flow, warp) {:>9.2} ms median, {:.2} ms p90  ({:.1} fps)",
            r.per_frame_ms, r.p90_ms, r.fps
        );
    }
    Ok(())
}

/// The sequence folders under `path`: itself when it holds frames, else its subfolders that do.
fn sequence_dirs(path: &Path) -> Result<Vec<PathBuf>> {
    if marionette::media::frames::list_image_files(path).is_ok() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && marionette::media::frames::list_image_files(p).is_ok())
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

fn run_evaluate(cmd: Command) -> Result<()> {
    use marionette::synth::{TARGET_MAE, evaluate, read_spec};
    let Command::Evaluate {
        mut model,
        sequences,
        produced,
        output,
        face,
        json,
    } = cmd
    else {
        bail!("internal: not an evaluate command");
    };
    let dirs = sequence_dirs(&sequences)?;
    let scratch = tempfile_dir()?;
    let mut scores = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "sequence".into());
        let out = match (&produced, &output) {
            (Some(p), _) if dirs.len() == 1 && !p.join(&name).is_dir() => p.clone(),
            (Some(p), _) => p.join(&name),
            (None, Some(o)) => o.join(&name),
            (None, None) => scratch.join(&name),
        };
        if produced.is_none() {
            if let Ok(Some(spec)) = read_spec(dir) {
                model.classic_size = spec.size as usize;
            }
            let frames = marionette::media::frames::list_image_files(dir)?;
            let first = frames.first().context("no frames")?.clone();
            let req = AnimateRequest {
                source: first,
                driving: dir.clone(),
                output: out.clone(),
                transfer: TransferOptions::default(),
                reference: Reference::First,
                crop_square: false,
                folder_fps: 25.0,
            };
            animate(load_engine(&model)?, &req, &mut |_, _| {})
                .with_context(|| format!("animating {}", dir.display()))?;
        }
        let score = evaluate(dir, &out, face)
            .with_context(|| format!("scoring {} against {}", out.display(), dir.display()))?;
        if json {
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

/// A fresh scratch folder under the system's temporary folder.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("marionette-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn run_devices() -> Result<()> {
    use marionette::output::v4l2::list_devices;
    let devices = list_devices();
    if devices.is_empty() {
        println!(
            "no V4L2 devices (/dev/video*): no webcam, and v4l2loopback is not loaded (see packaging/setup-virtual-camera.sh)"
        );
    }
    for d in &devices {
        let kind = match (d.capture, d.output) {
            (true, true) => "camera + output",
            (true, false) => "camera",
            (false, true) => "virtual-camera output",
            _ => "other",
        };
        println!("{}\t{}\t{} ({})", d.path.display(), kind, d.card, d.driver);
    }
    Ok(())
}

/// The bundled default portrait (see [`marionette::app::gallery::bundled_dir`]).
fn bundled_avatar() -> Option<PathBuf> {
    marionette::app::gallery::bundled_dir()
        .map(|d| d.join("eileen-collins.png"))
        .filter(|p| p.is_file())
}

fn parse_size(s: &str) -> Result<marionette::frame::Size> {
    Ok(s.parse()?)
}

fn run_live(cmd: Command) -> Result<()> {
    use marionette::app::settings::SourceSetting;
    use marionette::capture::{CaptureError, FolderSource, FrameSource, VideoFileSource};
    use marionette::engine::Animator;
    use marionette::engine::fomm::FommAnimator;
    use marionette::output::{FrameSink, Recorder, v4l2::V4l2Sink};
    use marionette::pipeline::framing::Crop;
    use marionette::pipeline::runner::{Pipeline, PipelineOptions, SourceFactory};
    let Command::Run {
        model,
        camera,
        driving_file,
        test_pattern,
        idle,
        avatar,
        vcam,
        vcam_size,
        vcam_format,
        record,
        frames,
        passthrough,
        mirror,
        stats,
    } = cmd
    else {
        bail!("internal: not a run command");
    };
    let avatar_path = match avatar {
        Some(p) => p,
        None => bundled_avatar()
            .context("no --avatar given and the bundled avatars (assets/avatars) were not found")?,
    };
    let portrait = marionette::media::frames::load_rgb(&avatar_path)
        .with_context(|| format!("loading avatar {}", avatar_path.display()))?;
    let square = marionette::media::resize::center_square_crop(&portrait);
    let fps = 30.0;
    let devices = marionette::output::v4l2::list_devices();
    // No source named: the first webcam, else idle motion.
    let camera = match (&camera, &driving_file, test_pattern, idle) {
        (None, None, false, false) => match marionette::output::v4l2::find_webcam(&devices) {
            Some(d) => {
                eprintln!("camera: {} ({})", d.path.display(), d.card);
                Some(d.path.display().to_string())
            }
            None => {
                eprintln!(
                    "no webcam found: the portrait moves by itself (idle motion). Use --camera, \
                     --driving-file or --test-pattern to drive it"
                );
                None
            }
        },
        _ => camera,
    };
    let idle = idle || (camera.is_none() && driving_file.is_none() && !test_pattern);
    if idle {
        eprintln!("source: idle motion (the portrait moves by itself)");
    }
    let source: Option<SourceFactory> = if idle {
        None
    } else if let Some(cam) = camera {
        marionette::app::source_factory(&SourceSetting::Camera(cam), square.clone())
    } else if let Some(path) = driving_file {
        Some(Box::new(
            move || -> Result<Box<dyn FrameSource>, CaptureError> {
                if path.is_dir() {
                    Ok(Box::new(FolderSource::open(&path, 30.0)?))
                } else {
                    Ok(Box::new(VideoFileSource::open(&path)?))
                }
            },
        ))
    } else {
        marionette::app::source_factory(&SourceSetting::TestPattern, square.clone())
    };
    let mut sinks: Vec<Box<dyn FrameSink>> = Vec::new();
    let vcam: Option<PathBuf> = match vcam.as_str() {
        "none" | "off" => None,
        "auto" => match marionette::output::v4l2::find_virtual_camera(&devices) {
            Some(d) => Some(d.path.clone()),
            None => {
                eprintln!(
                    "no virtual camera found (v4l2loopback is not loaded): run \
                     packaging/setup-virtual-camera.sh to get one; running without"
                );
                None
            }
        },
        path => Some(PathBuf::from(path)),
    };
    if let Some(dev) = &vcam {
        let size = parse_size(&vcam_size)?;
        let format = vcam_format.parse().map_err(anyhow::Error::msg)?;
        let mut vcam = V4l2Sink::open(dev, size, format, fps as u32)?;
        // A frame at once (the still portrait, marked as not calibrated), before the engine
        // loads: browsers list a virtual camera only once something writes to it.
        let still =
            marionette::frame::Frame::from_image(0, std::time::Instant::now(), square.clone());
        vcam.write(&marionette::output::compose::compose(
            &still, still.size, true,
        ))?;
        sinks.push(Box::new(vcam));
        eprintln!("virtual camera: {} {size} {vcam_format}", dev.display());
    }
    if let Some(path) = &record {
        sinks.push(Box::new(Recorder::create(path, fps)?.with_limit(frames)));
    }
    if sinks.is_empty() {
        eprintln!("no output: frames are discarded (use --vcam or --record to keep them)");
        sinks.push(Box::new(marionette::output::NullSink::default()));
    }
    let engine: Box<dyn Animator + Send> = match load_engine(&model)? {
        AnimateEngine::Fomm(fomm) => Box::new(FommAnimator::new(*fomm, TransferOptions::default())),
        AnimateEngine::Classic(c) => c,
    };
    let (h, w) = engine.frame_size();
    if h != w {
        bail!("the live loop needs a square frame size, the engine has {w}x{h}");
    }
    // The pipeline resizes the portrait to the engine's frame size.
    let options = PipelineOptions {
        portraits: vec![square],
        avatar: 0,
        crop: Crop {
            mirror,
            ..Crop::default()
        },
        passthrough,
        fps,
        reopen: true,
        ..PipelineOptions::default()
    };
    let pipeline = Pipeline::start(source, engine, sinks, options);
    let stop = pipeline.stop_flag();
    ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    let mut last_print = std::time::Instant::now();
    while pipeline.is_running()
        && !pipeline
            .stop_flag()
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let snap = pipeline.stats.lock().map(|s| s.snapshot()).ok();
        if let (Some(n), Some(s)) = (frames, &snap)
            && s.frames_out >= n
        {
            break;
        }
        if stats && last_print.elapsed().as_secs() >= 3 {
            last_print = std::time::Instant::now();
            if let Some(s) = snap {
                eprintln!("{}", serde_json::to_string(&s)?);
            }
        }
    }
    let snap = pipeline.stats.lock().map(|s| s.snapshot()).ok();
    let exits = pipeline.join();
    if stats && let Some(s) = snap {
        eprintln!("{}", serde_json::to_string(&s)?);
    }
    let mut failed = None;
    for e in exits {
        match e.result {
            Ok(()) => tracing::info!("{} stopped", e.thread),
            Err(err) => {
                eprintln!("{} stopped: {err}", e.thread);
                failed.get_or_insert(err);
            }
        }
    }
    match failed {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

fn run_window(cmd: Command) -> Result<()> {
    use marionette::app::settings::{Settings, SourceSetting};
    use marionette::app::window::{WindowOptions, run};
    use marionette::engine::Animator;
    use marionette::engine::fomm::FommAnimator;
    let Command::Window {
        model,
        camera,
        test_pattern,
        idle,
        vcam,
        settings,
    } = cmd
    else {
        bail!("internal: not a window command");
    };
    let source = if test_pattern {
        Some(SourceSetting::TestPattern)
    } else if idle {
        Some(SourceSetting::Idle)
    } else {
        camera.map(|c| {
            if c.starts_with('/') {
                SourceSetting::Camera(c)
            } else {
                SourceSetting::Camera(format!("/dev/video{c}"))
            }
        })
    };
    let settings_path = match settings {
        Some(p) => p,
        None => Settings::default_path()?,
    };
    let event_loop = marionette::app::window::event_loop()?;
    let (engine, summary) = load_engine_described(&model)?;
    let (engine, absolute_supported): (Box<dyn Animator + Send>, bool) = match engine {
        AnimateEngine::Fomm(f) => (
            Box::new(FommAnimator::new(*f, TransferOptions::default())),
            true,
        ),
        AnimateEngine::Classic(c) => (c, false),
    };
    let (h, w) = engine.frame_size();
    if h != w {
        bail!("the window needs a square frame size, the engine has {w}x{h}");
    }
    run(
        event_loop,
        WindowOptions {
            engine,
            engine_status: summary,
            absolute_supported,
            source,
            vcam,
            settings_path,
            bundled_dir: marionette::app::gallery::bundled_dir(),
            user_dir: marionette::app::gallery::user_dir(),
            fps: 30.0,
        },
    )
    .context("the window")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .context("bad --log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let command = match cli.command {
        Some(c) => c,
        None => match Cli::try_parse_from(["marionette", "window"]) {
            Ok(Cli {
                command: Some(c), ..
            }) => c,
            _ => bail!("internal: the window's default options do not parse"),
        },
    };
    match command {
        cmd @ Command::Window { .. } => run_window(cmd),
        cmd @ Command::Animate { .. } => run_animate(cmd),
        cmd @ Command::Run { .. } => run_live(cmd),
        Command::Devices => run_devices(),
        Command::Convert {
            input,
            output,
            config,
        } => run_convert(&input, &output, config.as_deref()),
        Command::Bench {
            live: true,
            camera_size,
            iters,
            json,
            ..
        } => run_bench_live(&camera_size, iters, json),
        Command::Bench {
            engine: EngineKind::Classic,
            classic_size,
            iters,
            json,
            ..
        } => run_bench_classic(classic_size, iters, json),
        Command::Bench {
            config,
            iters,
            json,
            cpu,
            precision,
            ..
        } => run_bench(&config, iters, json, cpu, &precision),
        Command::MakeSequences {
            photo,
            output,
            size,
            face,
            frames,
        } => {
            let dirs = marionette::synth::generate(&photo, &output, size, face, frames)
                .with_context(|| format!("writing sequences of {}", photo.display()))?;
            for d in &dirs {
                println!("{}", d.display());
            }
            eprintln!("wrote {} sequences to {}", dirs.len(), output.display());
            Ok(())
        }
        cmd @ Command::Evaluate { .. } => run_evaluate(cmd),
    }
}
