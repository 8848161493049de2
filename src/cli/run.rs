//! `marionette run`: the live loop without a window.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::ModelArgs;
use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::PrecisionChoice;
use marionette::capture::SourceSpec;
use marionette::capture::webcam::CameraSelector;
use marionette::devices::{VcamChoice, find_webcam, list_devices};
use marionette::engine::smoothing::Smoothing;
use marionette::frame::{Frame, Size};
use marionette::motion::file::{MotionHeader, MotionWriter};
use marionette::output::badge::badged;
use marionette::output::compose::compose;
use marionette::output::convert::PixelFormat;
use marionette::output::v4l2::V4l2Sink;
use marionette::output::{FrameSink, NullSink, Recorder};
use marionette::pipeline::framing::{Crop, FramingMode};
use marionette::pipeline::{KeyframeMode, Pipeline, PipelineOptions};
use marionette::provenance::Provenance;

/// The live loop's frame rate (idle motion, repeated frames, the virtual camera's rate).
const FPS: f64 = 30.0;

/// Options of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Webcam: index (0 = /dev/video0), device path, or part of its name. Default: the first
    /// webcam found.
    #[arg(long, conflicts_with_all = ["driving_file", "test_pattern", "idle"])]
    camera: Option<CameraSelector>,
    /// A driving video file (played at its own rate, looping) or a folder of frames.
    #[arg(long, conflicts_with_all = ["test_pattern", "idle"])]
    driving_file: Option<PathBuf>,
    /// The built-in moving test pattern as the driving source.
    #[arg(long, conflicts_with = "idle")]
    test_pattern: bool,
    /// No driving source: the portrait moves by itself (idle motion). The default when no
    /// source is given and no webcam is found.
    #[arg(long)]
    idle: bool,
    /// The portrait (default: the bundled Eileen Collins portrait).
    #[arg(long)]
    avatar: Option<PathBuf>,
    /// Virtual camera to write to: a v4l2loopback device (e.g. /dev/video10), `auto` (the
    /// v4l2loopback device found, if any) or `none`.
    #[arg(long, default_value = "auto")]
    vcam: VcamChoice,
    /// Virtual camera frame size: 640x480 or 1280x720.
    #[arg(long, default_value = "640x480")]
    vcam_size: Size,
    /// Virtual camera pixel format: yuyv or i420.
    #[arg(long, default_value = "yuyv")]
    vcam_format: PixelFormat,
    /// Also record the animated frames (video file or folder of PNGs).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Record the motion of every frame the engine renders into a motion file (FOMM keypoints
    /// and Jacobians, or the classic engine's anchors and maps; a reference line at each
    /// calibration), to animate any portrait with later (`animate --motion FILE`).
    #[arg(long, value_name = "FILE")]
    record_motion: Option<PathBuf>,
    /// Draw an "AI ANIMATED" badge in the bottom-right corner of the virtual camera and the
    /// recording.
    #[arg(long)]
    badge: bool,
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
    /// Model keyframes with motion in between: auto (while the model is slower than the
    /// camera), on or off (the output rate is then the model's).
    #[arg(long, default_value = "auto", value_name = "auto|on|off")]
    keyframes: KeyframeMode,
    /// Smooth the driving motion (One Euro filter on the keypoints): on (the default), off, or a
    /// strength from 0 (off) to 1. Removes the shake sensor noise causes when you sit still.
    #[arg(long, default_value = "on", value_name = "on|off|0..1")]
    smoothing: Smoothing,
    /// Place the model's square crop around your face and follow slow drifts (auto, the
    /// default), or keep the centred square (manual).
    #[arg(long, default_value = "auto", value_name = "auto|manual")]
    framing: FramingMode,
    /// Render on another machine running `marionette serve` (HOST or HOST:PORT). This machine
    /// still needs the FOMM checkpoint (its keypoint detector runs here), and renders here while
    /// the server is out of reach.
    #[arg(long, value_name = "HOST[:PORT]")]
    remote: Option<String>,
    /// The pairing secret `marionette serve` printed (with --remote).
    #[arg(long, requires = "remote", conflicts_with = "secret_file")]
    secret: Option<String>,
    /// A file holding the pairing secret (with --remote), e.g. the server's --secret-file.
    #[arg(long, requires = "remote", value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// How the server's frames come (with --remote): h264 (H.264 with full colour, about 4 kB a
    /// frame at 256x256) or raw (lossless, 196 kB a frame: for a fast local network).
    #[arg(
        long,
        requires = "remote",
        default_value = "h264",
        value_name = "h264|raw"
    )]
    remote_codec: RemoteCodec,
}

/// The frames' coding `run --remote` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RemoteCodec {
    /// H.264 4:4:4 through ffmpeg (raw where ffmpeg here or on the server cannot).
    H264,
    /// Uncompressed RGB.
    Raw,
}

impl RunArgs {
    /// The driving source: the one named, else the first webcam, else idle motion.
    fn source(&self) -> SourceSpec {
        if self.idle {
            SourceSpec::Idle
        } else if let Some(c) = &self.camera {
            SourceSpec::Camera(c.clone())
        } else if let Some(path) = &self.driving_file {
            SourceSpec::File {
                path: path.clone(),
                fps: FPS,
            }
        } else if self.test_pattern {
            SourceSpec::TestPattern
        } else {
            match find_webcam(&list_devices()) {
                Some(d) => {
                    eprintln!("camera: {} ({})", d.path.display(), d.card);
                    SourceSpec::Camera(CameraSelector::Path(d.path.clone()))
                }
                None => {
                    eprintln!(
                        "no webcam found: the portrait moves by itself (idle motion). Use \
                         --camera, --driving-file or --test-pattern to drive it"
                    );
                    SourceSpec::Idle
                }
            }
        }
    }

    /// The virtual camera (with the still portrait written at once: browsers list a virtual
    /// camera only once something writes to it), the recorder, or a null sink.
    fn sinks(
        &self,
        portrait: &image::RgbImage,
        provenance: &Provenance,
    ) -> Result<Vec<Box<dyn FrameSink>>> {
        let mut sinks: Vec<Box<dyn FrameSink>> = Vec::new();
        let device = match self.vcam.resolve(&list_devices()) {
            Ok(d) => d,
            Err(why) => {
                eprintln!("{why}; running without");
                None
            }
        };
        if let Some(dev) = device {
            let mut vcam = V4l2Sink::open(&dev, self.vcam_size, self.vcam_format, FPS as u32)?;
            let mut still = Frame::from_image(0, Instant::now(), portrait.clone());
            if self.badge {
                still = badged(still);
            }
            vcam.write(&compose(&still, still.size, true))?;
            eprintln!(
                "virtual camera: {} {} {}",
                dev.display(),
                self.vcam_size,
                self.vcam_format
            );
            sinks.push(Box::new(vcam));
        }
        if let Some(path) = &self.record {
            sinks.push(Box::new(
                Recorder::create(path, FPS)?
                    .with_limit(self.frames)
                    .with_provenance(provenance),
            ));
        }
        if sinks.is_empty() {
            eprintln!("no output: frames are discarded (use --vcam or --record to keep them)");
            sinks.push(Box::new(NullSink::default()));
        }
        Ok(sinks)
    }
}

/// What drove a live recording, for the motion file's header.
fn source_name(args: &RunArgs) -> String {
    if let Some(path) = &args.driving_file {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "a driving file".into())
    } else if args.test_pattern {
        "test pattern".into()
    } else {
        "camera".into()
    }
}

/// `local` rendering on the server at `addr` (the default port where none is given) while it is
/// there.
fn remote_engine(
    local: Box<dyn marionette::engine::Animator + Send>,
    addr: &str,
    args: &RunArgs,
) -> Result<Box<dyn marionette::engine::Animator + Send>> {
    use marionette::remote::channel::Secret;
    if local.id() != marionette::engine::EngineId::Fomm {
        bail!(
            "--remote renders FOMM, and its keypoint detector runs here: give the checkpoint \
             (--checkpoint, or `marionette models add FILE`)"
        );
    }
    let secret = match (&args.secret, &args.secret_file) {
        (Some(text), _) => Secret::parse(text)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the secret file {}", path.display()))?;
            Secret::parse(&text).with_context(|| format!("the secret file {}", path.display()))?
        }
        (None, None) => bail!(
            "--remote needs the pairing secret `marionette serve` printed: --secret or \
             --secret-file"
        ),
    };
    let addr = marionette::remote::client::with_default_port(addr);
    let h264 = match args.remote_codec {
        RemoteCodec::Raw => None,
        RemoteCodec::H264 => {
            let tools = marionette::media::video::FfmpegTools::from_env();
            if marionette::remote::codec::can_decode(&tools) {
                Some(tools)
            } else {
                eprintln!(
                    "remote rendering: {} cannot decode H.264 here, so frames come raw (196 kB \
                     each at 256x256); install ffmpeg for compressed frames",
                    tools.ffmpeg.display()
                );
                None
            }
        }
    };
    eprintln!("remote rendering: {addr} (rendering here until it answers)");
    Ok(Box::new(marionette::remote::animator::RemoteAnimator::new(
        local, &addr, secret, h264,
    )))
}

/// Runs `run` until Ctrl-C, `--frames`, or a thread's error.
pub fn run(args: RunArgs) -> Result<()> {
    let portrait =
        marionette::media::resize::center_square_crop(&super::portrait(args.avatar.as_ref())?);
    let source = args.source();
    if source == SourceSpec::Idle {
        eprintln!("source: idle motion (the portrait moves by itself)");
    }
    let request = args
        .model
        .request(TransferOptions::default(), PrecisionChoice::Auto);
    let mut loaded = super::load(&request)?;
    let (h, w) = loaded.engine.frame_size();
    if h != w {
        bail!("the live loop needs a square frame size, the engine has {w}x{h}");
    }
    if let Some(addr) = &args.remote {
        loaded.engine = remote_engine(loaded.engine, addr, &args)?;
    }
    let sinks = args.sinks(&portrait, &Provenance::for_engine(loaded.engine.name()))?;
    let record_motion = match &args.record_motion {
        Some(path) => {
            let source = loaded.engine.motion_source().with_context(|| {
                format!(
                    "the {} engine cannot record its motion",
                    loaded.engine.name()
                )
            })?;
            let header = MotionHeader::new(source, None, Some(source_name(&args)));
            let writer = MotionWriter::create(path, header)
                .with_context(|| format!("creating the motion file {}", path.display()))?;
            eprintln!("recording the motion to {}", path.display());
            Some(writer)
        }
        None => None,
    };
    let options = PipelineOptions {
        portrait: (0, portrait.clone()),
        crop: Crop {
            mirror: args.mirror,
            ..Crop::default()
        },
        passthrough: args.passthrough,
        fps: FPS,
        reopen: true,
        keyframes: args.keyframes,
        smoothing: args.smoothing,
        framing: args.framing,
        badge: args.badge,
        record_motion,
        ..PipelineOptions::default()
    };
    let pipeline = Pipeline::start(source.factory(portrait), loaded.engine, sinks, options)?;
    let stopper = pipeline.stopper();
    ctrlc::set_handler(move || stopper.stop()).context("installing the Ctrl-C handler")?;
    let mut last_print = Instant::now();
    while pipeline.is_running() {
        std::thread::sleep(Duration::from_millis(50));
        let snap = pipeline.stats();
        if let (Some(n), Some(s)) = (args.frames, &snap)
            && s.frames_out >= n
        {
            break;
        }
        if args.stats && last_print.elapsed() >= Duration::from_secs(3) {
            last_print = Instant::now();
            if let Some(s) = snap {
                eprintln!("{}", serde_json::to_string(&s)?);
            }
        }
    }
    let (exits, snap) = pipeline.join_with_stats();
    if args.stats
        && let Some(s) = snap
    {
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
