//! The live loop: a camera frame in, an animated frame out to every sink, on named threads
//! joined by latest-wins channels ([`crate::channel`]). The only module that knows every stage.
//!
//! ```text
//! capture_thread ──frames──> InferenceLoop ──(frame, live)──> sink_thread (one per sink)
//!   (capture.rs)        (inference.rs: crop, in-betweens,     (sink.rs: write, repeat the last
//!                        publish; Control applied between     frame so virtual cameras never
//!                        frames)  │  ^ rendered frames         go silent)
//!                           newest│  │
//!                           frame v  │
//!                         model_thread (model.rs: the engine, at its own rate,
//!                                       lower scheduling priority)
//! ```
//!
//! Where a camera frame becomes a virtual-camera frame: `inference::InferenceLoop::on_frame`
//! (crop -> model job, and with keyframes on the in-between: the latest model keyframe warped to
//! this frame's motion -> publish), then `sink`'s thread writes it to the device.
//!
//! A [`Pipeline`] is stopped one way: [`Pipeline::stop`] (or a [`Stopper`] from another thread,
//! e.g. a Ctrl-C handler), then [`Pipeline::join`] says how each thread ended. Dropping a
//! pipeline stops and joins it.

mod capture;
mod faces;
pub mod framing;
mod governor;
mod inference;
mod model;
mod portraits;
mod queue;
mod sink;
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use crate::capture::CaptureError;
pub use crate::capture::SourceFactory;
use crate::channel::{LatestSender, latest};
use crate::engine::smoothing::Smoothing;
use crate::engine::{Animator, EngineError, KeypointView};
use crate::face::FaceBox;
use crate::frame::{Frame, Size};
use crate::output::{FrameSink, SinkError};
use framing::{Crop, FramingMode};
pub use model::MotionFile;
use stats::Stats;

/// Commands the UI (or a test) sends; applied by the inference thread between frames.
#[derive(Debug, Clone)]
pub enum Control {
    /// The next driving frame becomes the reference frame D1.
    Recalibrate,
    /// Switch to a portrait by id, adding it first if it is new (it is cropped to a centred square
    /// and resized to the engine's frame size). Switching back to a known id costs nothing.
    SetPortrait {
        /// The portrait's stable id (the engines cache what they compute about it under it).
        id: u64,
        /// The picture; used only the first time this id is seen.
        image: Arc<image::RgbImage>,
    },
    /// Flip the output (what the virtual camera and recorder get) left to right.
    MirrorOutput(bool),
    /// Relative or absolute motion transfer, and adapt scale (FOMM's demo options).
    Transfer {
        /// Motion relative to the reference frame (else the driving keypoints as they are).
        relative: bool,
        /// Scale the motion by the ratio of the keypoint hulls.
        adapt_scale: bool,
    },
    /// Keep the last frame's keypoints for [`Pipeline::keypoints`] (off by default: reading them
    /// back costs a copy per frame, from the GPU with CUDA).
    ReportKeypoints(bool),
    /// Show the camera crop instead of the animated portrait.
    Passthrough(bool),
    /// The square of the camera frame the model sees.
    SetCrop(Crop),
    /// Model keyframes with motion in between: on, off, or on while the model is slower than
    /// the camera.
    Keyframes(KeyframeMode),
    /// Smoothing of the driving motion (keypoints and the in-betweens' motion).
    Smoothing(Smoothing),
    /// Automatic framing around the face, or the crop set with [`Control::SetCrop`].
    Framing(FramingMode),
    /// The "AI ANIMATED" badge in a corner of the animated frames (not of passthrough).
    Badge(bool),
    /// Run another engine from now on (e.g. FOMM once its weights are added), with the portrait,
    /// motion transfer and smoothing in use; refused with a notice when its frame size is not
    /// this run's.
    SetEngine(EngineHandoff),
}

/// An engine handed to a running pipeline with [`Control::SetEngine`]: taken once, by the
/// pipeline (a clone of the handle finds it gone).
#[derive(Clone)]
pub struct EngineHandoff(Arc<std::sync::Mutex<Option<Box<dyn Animator + Send>>>>);

impl EngineHandoff {
    /// Wraps `engine` for [`Control::SetEngine`].
    pub fn new(engine: Box<dyn Animator + Send>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(engine))))
    }

    /// The engine, if no one took it yet.
    pub(crate) fn take(&self) -> Option<Box<dyn Animator + Send>> {
        self.0.lock().ok()?.take()
    }
}

impl std::fmt::Debug for EngineHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineHandoff")
    }
}

/// Where the model's crop is and where the face is, for the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FramingReport {
    /// The camera frame's size (`None` before the first frame).
    pub camera: Option<Size>,
    /// The crop the model sees now.
    pub crop: Crop,
    /// The face last found (automatic framing), in camera pixels.
    pub face: Option<FaceBox>,
    /// How the crop is placed.
    pub mode: FramingMode,
}

/// Seconds from a fixed origin (the first call in this process) to `t`: capture times as the
/// engines' frame clock.
pub(crate) fn seconds(t: std::time::Instant) -> f64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    match t.checked_duration_since(epoch) {
        Some(d) => d.as_secs_f64(),
        None => -epoch.duration_since(t).as_secs_f64(),
    }
}

/// Whether outputs are the model's frames or in-betweens made from them
/// ([`crate::engine::keyframes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyframeMode {
    /// On while the model is slower than the camera.
    #[default]
    Auto,
    /// Always in-betweens.
    On,
    /// Always the model's own frames (the output rate is the model's).
    Off,
}

/// A `--keyframes` value that is none of the known ones.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown keyframe mode '{0}': expected auto, on or off")]
pub struct ParseKeyframeModeError(String);

impl std::str::FromStr for KeyframeMode {
    type Err = ParseKeyframeModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(KeyframeMode::Auto),
            "on" => Ok(KeyframeMode::On),
            "off" => Ok(KeyframeMode::Off),
            _ => Err(ParseKeyframeModeError(s.to_string())),
        }
    }
}

/// Why a thread stopped, or the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The driving source failed.
    #[error("capture: {0}")]
    Capture(#[from] CaptureError),
    /// The engine failed.
    #[error("inference: {0}")]
    Engine(#[from] EngineError),
    /// The motion recording failed.
    #[error("motion recording: {0}")]
    Motion(#[from] crate::motion::file::MotionFileError),
    /// A sink failed to write.
    #[error("sink {sink}: {source}")]
    Sink {
        /// The sink's name.
        sink: String,
        /// What went wrong.
        #[source]
        source: Box<SinkError>,
    },
    /// A thread panicked (a bug).
    #[error("thread {0} panicked")]
    Panicked(String),
    /// A thread ended because another one it depends on ended first.
    #[error("{0}")]
    Stopped(String),
    /// The operating system refused a thread.
    #[error("cannot start the {thread} thread: {source}")]
    Spawn {
        /// Which thread.
        thread: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A thread's name and how it ended.
#[derive(Debug)]
pub struct ThreadExit {
    /// The thread's name (`capture`, `inference`, `sink:<name>`).
    pub thread: String,
    /// Clean end, or why it stopped.
    pub result: Result<(), PipelineError>,
}

/// How the pipeline starts.
pub struct PipelineOptions {
    /// The portrait shown first, with its id; any picture (it is cropped to a centred square and
    /// resized to the engine's frame size). More are added with [`Control::SetPortrait`].
    pub portrait: (u64, image::RgbImage),
    /// The square of the camera frame the model sees.
    pub crop: Crop,
    /// Show the camera crop instead of the animated portrait.
    pub passthrough: bool,
    /// Frame rate of the idle motion and of repeated frames when nothing new arrives.
    pub fps: f64,
    /// Reopen a failing camera with back-off instead of ending the run.
    pub reopen: bool,
    /// Flip the output left to right.
    pub mirror_output: bool,
    /// Every driving frame as it arrives (before cropping), for a preview that runs at the
    /// camera's rate whatever the engine's speed.
    pub preview: Option<LatestSender<Frame>>,
    /// Model keyframes with motion in between.
    pub keyframes: KeyframeMode,
    /// Motion transfer at start (changed later with [`Control::Transfer`]).
    pub transfer: fomm::motion_transfer::TransferOptions,
    /// Smoothing of the driving motion at start (default: on at the default strength).
    pub smoothing: Smoothing,
    /// How the crop is placed at start (default: manual, `crop` as given).
    pub framing: FramingMode,
    /// The "AI ANIMATED" badge on the animated frames (changed later with [`Control::Badge`]).
    pub badge: bool,
    /// The invisible mark ([`crate::watermark`]) in every animated frame; on unless a test needs
    /// the bare pixels.
    pub watermark: bool,
    /// Records the motion of every frame the model renders (`run --record-motion`); the file is
    /// flushed when the pipeline stops.
    pub record_motion: Option<MotionFile>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            portrait: (0, image::RgbImage::new(1, 1)),
            crop: Crop::default(),
            passthrough: false,
            fps: 30.0,
            reopen: false,
            mirror_output: false,
            preview: None,
            keyframes: KeyframeMode::Auto,
            transfer: Default::default(),
            smoothing: Smoothing::default(),
            framing: FramingMode::Manual,
            badge: false,
            watermark: true,
            record_motion: None,
        }
    }
}

/// What the threads share with the [`Pipeline`] handle.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    /// Set to stop every thread; each checks it at least once per frame period.
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
    keypoints: Arc<Mutex<Option<KeypointView>>>,
    /// Whether a driving source is running (false: idle motion).
    live: Arc<AtomicBool>,
    /// Why the current or last picked source is not delivering frames.
    source_error: Arc<Mutex<Option<String>>>,
    framing: Arc<Mutex<FramingReport>>,
    /// What the governor asks of the capture and face threads.
    pace: Arc<governor::Pace>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Runs `f` on the statistics (skipped if a thread panicked while holding them).
    fn stats(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// Runs `f` on the statistics if no other thread holds them now; whether it ran. For a
    /// thread that must not wait (a virtual camera's writer): on a starved machine the holder
    /// may be kept from running for a whole scheduling period.
    fn try_stats(&self, f: impl FnOnce(&mut Stats)) -> bool {
        match self.stats.try_lock() {
            Ok(mut s) => {
                f(&mut s);
                true
            }
            Err(_) => false,
        }
    }

    fn set_source_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.source_error.lock() {
            *slot = error;
        }
    }
}

/// Stops a pipeline from another thread (a Ctrl-C handler, say).
#[derive(Clone)]
pub struct Stopper(Arc<AtomicBool>);

impl Stopper {
    /// Asks every thread of the pipeline to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A running pipeline. Dropping it stops and joins its threads.
pub struct Pipeline {
    threads: Vec<(String, JoinHandle<Result<(), PipelineError>>)>,
    control: Sender<Control>,
    sources: Sender<Option<SourceFactory>>,
    shared: Shared,
}

impl Pipeline {
    /// Starts the threads. `source: None` runs on idle motion alone. Fails only when a thread
    /// cannot be created (then the ones already started are stopped and joined).
    pub fn start(
        source: Option<SourceFactory>,
        engine: Box<dyn Animator + Send>,
        sinks: Vec<Box<dyn FrameSink>>,
        mut options: PipelineOptions,
    ) -> Result<Self, PipelineError> {
        let shared = Shared::default();
        shared.live.store(source.is_some(), Ordering::Relaxed);
        let (control_tx, control_rx) = bounded(64);
        let (source_tx, source_rx) = bounded(4);
        let mut pipeline = Pipeline {
            threads: Vec::new(),
            control: control_tx,
            sources: source_tx,
            shared: shared.clone(),
        };
        let mut outputs = Vec::new();
        for sink in sinks {
            let (tx, rx) = queue::sink_queue(sink.lossless(), shared.stop.clone());
            let name = sink.name();
            let (thread_shared, fps) = (shared.clone(), options.fps);
            pipeline.spawn(format!("sink:{name}"), move || {
                sink::sink_thread(sink, rx, fps, &thread_shared)
            })?;
            outputs.push((name, tx));
        }
        let (frame_tx, frame_rx) = latest::<Frame>();
        let capture = capture::Capture {
            first: source,
            switches: source_rx,
            frames: frame_tx,
            preview: options.preview.take(),
            reopen: options.reopen,
        };
        let capture_shared = shared.clone();
        pipeline.spawn("capture".into(), move || capture.run(&capture_shared))?;
        let side = engine.frame_size().0 as u32;
        let (face_frames_tx, face_frames_rx) = latest::<Frame>();
        let (sightings_tx, sightings_rx) = latest();
        let face_shared = shared.clone();
        pipeline.spawn("faces".into(), move || {
            faces::face_thread(face_frames_rx, sightings_tx, &face_shared)
        })?;
        let (job_tx, job_rx) = latest();
        let (result_tx, result_rx) = latest();
        let (command_tx, command_rx) = bounded(64);
        let model_shared = shared.clone();
        let motion = options.record_motion.take();
        let mark_engine = crate::watermark::MarkEngine::from(engine.id());
        pipeline.spawn("model".into(), move || {
            model::model_thread(engine, job_rx, command_rx, result_tx, &model_shared, motion)
        })?;
        let link = inference::ModelLink {
            jobs: job_tx,
            results: result_rx,
            commands: command_tx,
        };
        let faces = inference::FaceLink {
            frames: face_frames_tx,
            sightings: sightings_rx,
        };
        let inference_shared = shared.clone();
        pipeline.spawn("inference".into(), move || {
            inference::InferenceLoop::new(side, link, faces, options, outputs, inference_shared)?
                .with_mark_engine(mark_engine)
                .run(frame_rx, control_rx)
        })?;
        Ok(pipeline)
    }

    /// Starts a named thread; on failure stops the threads already running.
    fn spawn(
        &mut self,
        name: String,
        f: impl FnOnce() -> Result<(), PipelineError> + Send + 'static,
    ) -> Result<(), PipelineError> {
        match std::thread::Builder::new().name(name.clone()).spawn(f) {
            Ok(handle) => {
                self.threads.push((name, handle));
                Ok(())
            }
            Err(source) => {
                self.shared.request_stop();
                for (_, h) in self.threads.drain(..) {
                    let _ = h.join();
                }
                Err(PipelineError::Spawn {
                    thread: name,
                    source,
                })
            }
        }
    }

    /// Replaces the driving source between frames (`None`: idle motion) and recalibrates. A
    /// source that fails to open leaves the run on idle motion; [`Pipeline::source_error`] says
    /// why.
    pub fn set_source(&self, source: Option<SourceFactory>) {
        let _ = self.sources.send(source);
        let _ = self.control.send(Control::Recalibrate);
    }

    /// Whether a driving source is running (false: idle motion).
    pub fn is_live(&self) -> bool {
        self.shared.live.load(Ordering::Relaxed)
    }

    /// Why the current or last picked source is not delivering frames, if it is not.
    pub fn source_error(&self) -> Option<String> {
        self.shared.source_error.lock().ok().and_then(|e| e.clone())
    }

    /// The keypoints of the last animated frame (for the overlay), once asked for with
    /// [`Control::ReportKeypoints`].
    pub fn keypoints(&self) -> Option<KeypointView> {
        self.shared.keypoints.lock().ok().and_then(|k| k.clone())
    }

    /// Where the model's crop and the face are now.
    pub fn framing(&self) -> Option<FramingReport> {
        self.shared.framing.lock().ok().map(|f| *f)
    }

    /// The live statistics so far.
    pub fn stats(&self) -> Option<stats::StatsSnapshot> {
        self.shared.stats.lock().ok().map(|s| s.snapshot())
    }

    /// A handle for sending commands.
    pub fn control(&self) -> Sender<Control> {
        self.control.clone()
    }

    /// Asks every thread to stop (they check at least every frame period).
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// A handle that stops this pipeline from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.stop.clone())
    }

    /// Whether any thread is still running.
    pub fn is_running(&self) -> bool {
        self.threads.iter().any(|(_, h)| !h.is_finished())
    }

    /// Stops every thread, waits for them and says how each ended.
    pub fn join(mut self) -> Vec<ThreadExit> {
        self.join_all()
    }

    /// [`Pipeline::join`], and the statistics once every thread has ended (nothing changes them
    /// after that).
    pub fn join_with_stats(mut self) -> (Vec<ThreadExit>, Option<stats::StatsSnapshot>) {
        let exits = self.join_all();
        (exits, self.stats())
    }

    fn join_all(&mut self) -> Vec<ThreadExit> {
        self.shared.request_stop();
        self.threads
            .drain(..)
            .map(|(thread, h)| {
                let result = h
                    .join()
                    .unwrap_or_else(|_| Err(PipelineError::Panicked(thread.clone())));
                ThreadExit { thread, result }
            })
            .collect()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for exit in self.join_all() {
            if let Err(e) = exit.result {
                tracing::warn!("{} stopped: {e}", exit.thread);
            }
        }
    }
}
