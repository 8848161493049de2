//! `marionette bench`: speed per stage (FOMM at each precision and thread count, the classic
//! engine, the live loop without the model) and the reduced precisions' quality.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use candle_core::Device;

use fomm::load::checkpoint::Checkpoint;
use fomm::load::presets;
use fomm::model::Fomm;
use fomm::ops::precision::{self, Precision, PrecisionChoice, PrecisionPlan};
use fomm::quality::compare;
use marionette::bench::{BenchReport, run as bench_fomm, run_classic, run_live_path};
use marionette::engine::select::pick_device;
use marionette::frame::Size;
use marionette::media::resize::to_model_tensor;

/// What to measure.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchEngine {
    /// FOMM with random weights of --config.
    Fomm,
    /// The classic engine on the bundled portrait moving by a known motion.
    Classic,
}

/// Options of `bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// fomm (random weights of --config) or classic.
    #[arg(long, value_enum, default_value = "fomm")]
    engine: BenchEngine,
    /// Frame size of the classic engine.
    #[arg(long, default_value_t = 256)]
    classic_size: usize,
    /// Time everything in the live loop except the model instead (camera decode, crop,
    /// tensors, compose, colour conversion, write), at --camera-size.
    #[arg(long, conflicts_with_all = ["precision", "threads", "quality", "classic_size"])]
    live: bool,
    /// Camera and virtual-camera frame size for --live.
    #[arg(long, default_value = "1280x720", requires = "live")]
    camera_size: Size,
    /// Config name or YAML path.
    #[arg(long, default_value = "vox-256")]
    config: String,
    /// Precisions to measure, comma-separated (auto = the one live use picks). Default: every
    /// precision this processor runs natively.
    #[arg(long, value_delimiter = ',')]
    precision: Vec<PrecisionChoice>,
    /// Thread counts to measure, comma-separated; 0 = all cores. Default: 1, 2 and all.
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Timed iterations per stage (median reported).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Print one JSON object per measurement.
    #[arg(long)]
    json: bool,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    cpu: bool,
    /// Instead of speed: animate --source with --driving at f32 and at each --precision and
    /// print how far each lands from f32 (PSNR of the worst frame, relative and absolute
    /// animation; keypoint changes). Needs --checkpoint.
    #[arg(long, requires_all = ["checkpoint", "source", "driving"])]
    quality: bool,
    /// The weights for --quality.
    #[arg(long, requires = "quality")]
    checkpoint: Option<PathBuf>,
    /// The portrait for --quality.
    #[arg(long, requires = "quality")]
    source: Option<PathBuf>,
    /// Driving frames for --quality (the first is the reference of relative animation).
    #[arg(long, num_args = 1.., requires = "quality")]
    driving: Vec<PathBuf>,
}

/// Runs `bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.live {
        return live(&args);
    }
    match args.engine {
        BenchEngine::Classic => {
            if !args.precision.is_empty() || args.quality {
                bail!("--precision and --quality apply to --engine fomm");
            }
            classic(&args)
        }
        BenchEngine::Fomm if args.quality => quality(&args),
        BenchEngine::Fomm => fomm(&args),
    }
}

/// The precisions asked for, resolved on this processor.
fn precisions(args: &BenchArgs) -> Result<Vec<Precision>> {
    if args.precision.is_empty() {
        return Ok(Precision::native());
    }
    let mut out = Vec::new();
    for p in &args.precision {
        let p = p.resolve()?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn fomm(args: &BenchArgs) -> Result<()> {
    let config = presets::resolve_config(&args.config)?;
    let (device, note) = pick_device(args.cpu);
    eprintln!("{note}");
    if device.is_cpu() {
        eprintln!("{}", auto_note());
    }
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads: Vec<usize> = if args.threads.is_empty() {
        vec![1, 2, 0]
    } else {
        args.threads.clone()
    };
    for t in &mut threads {
        if *t == 0 || *t > all {
            *t = all;
        }
    }
    threads.dedup();
    for precision in precisions(args)? {
        for &n in &threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .context("creating the thread pool")?;
            let plan = PrecisionPlan::for_precision(precision);
            let r = pool.install(|| bench_fomm(&config, &device, args.iters, plan))?;
            print_fomm(&r, args.json)?;
        }
    }
    Ok(())
}

/// What `--precision auto` takes on this processor, and the measured rates it went by.
fn auto_note() -> String {
    let auto = PrecisionChoice::Auto
        .resolve()
        .map_or_else(|e| e.to_string(), |p| p.to_string());
    match precision::kernel_rates() {
        Some(r) => format!(
            "auto: {auto} (measured per core: bf16 dot products {:.0} G multiply-adds/s, f32 FMA {:.0}; \
             bf16 is taken from {:.1}x)",
            r.bf16,
            r.f32,
            precision::BF16_MIN_GAIN
        ),
        None => format!(
            "auto: {auto} (no AVX512_BF16: {})",
            fomm::ops::cpu::summary()
        ),
    }
}

fn print_fomm(r: &BenchReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    println!(
        "config {} on {} at {} ({} threads), median of {} runs:",
        r.config, r.device, r.precision, r.threads, r.iterations
    );
    for (name, ms) in [
        ("prepare source (once per portrait)", r.prepare_source_ms),
        ("keypoint detector", r.kp_detector_ms),
        ("motion transfer", r.motion_transfer_ms),
        ("dense motion", r.dense_motion_ms),
        ("decoder", r.decoder_ms),
    ] {
        println!("  {name:34} {ms:>9.2} ms");
    }
    println!(
        "  {:34} {:>9.2} ms  ({:.2} fps)",
        "whole per-frame step", r.per_frame_ms, r.fps
    );
    println!(
        "  {:34} {:>9.2} ms",
        "grid_sample (1,256,64,64)", r.grid_sample_features_ms
    );
    println!(
        "  {:34} {:>9.2} ms",
        "grid_sample (1,3,256,256)", r.grid_sample_image_ms
    );
    Ok(())
}

fn quality(args: &BenchArgs) -> Result<()> {
    let (Some(checkpoint), Some(source)) = (&args.checkpoint, &args.source) else {
        bail!("--quality needs --checkpoint, --source and --driving");
    };
    let config = presets::resolve_config(&args.config)?;
    let weights = Checkpoint::load(checkpoint)?;
    let origin = checkpoint.display().to_string();
    let reference = Fomm::from_checkpoint(
        &config,
        &weights,
        &origin,
        &Device::Cpu,
        PrecisionPlan::default(),
    )?;
    let (h, w) = config.frame_size;
    let image = |p: &PathBuf| -> Result<candle_core::Tensor> {
        let img = marionette::media::frames::load_rgb(p)
            .with_context(|| format!("loading {}", p.display()))?;
        Ok(to_model_tensor(&img, w as u32, h as u32)?)
    };
    let source = image(source)?;
    let driving = args.driving.iter().map(image).collect::<Result<Vec<_>>>()?;
    for precision in precisions(args)?
        .into_iter()
        .filter(|p| *p != Precision::F32)
    {
        let plan = PrecisionPlan::for_precision(precision);
        let reduced = Fomm::from_checkpoint(&config, &weights, &origin, &Device::Cpu, plan)?;
        let r = compare(&reference, &reduced, &source, &driving)?;
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            let dbs = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!("{} against f32, PSNR per frame (dB):", r.plan);
            println!(
                "  relative: {} (worst {:.2})",
                dbs(&r.relative_psnr),
                r.worst_relative()
            );
            println!(
                "  absolute: {} (worst {:.2})",
                dbs(&r.absolute_psnr),
                r.worst_absolute()
            );
            println!(
                "  driving keypoints moved at most {:.4} (values), {:.4} (Jacobians)",
                r.kp_value_max_abs, r.kp_jacobian_max_abs
            );
        }
    }
    Ok(())
}

fn classic(args: &BenchArgs) -> Result<()> {
    let (photo, path) = super::default_portrait()?;
    // At least 60 driving frames: one sweep of the motion there and back.
    let r = run_classic(&photo, args.classic_size, args.iters.max(60))?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
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
    Ok(())
}

fn live(args: &BenchArgs) -> Result<()> {
    let (photo, _) = super::default_portrait()?;
    let r = run_live_path(&photo, args.camera_size, 256, args.iters.max(30))?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
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
        ("invisible mark, model size", r.mark_ms),
        ("invisible mark, camera size", r.mark_camera_ms),
        ("write", r.write_ms),
        ("total, MJPG camera", r.total_mjpg_ms),
        ("total, YUYV camera", r.total_yuyv_ms),
    ] {
        println!("  {name:24} {v:>8.3} ms");
    }
    Ok(())
}
