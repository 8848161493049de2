//! The threads of the live loop: capture -> inference -> one thread per sink, joined by
//! latest-wins channels, with `Control` commands applied between frames and every thread ending
//! with a reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::channel::{LatestSender, RecvError, latest};
use super::framing::{Crop, crop_resize};
use super::queue::{SinkSender, sink_queue};
use super::stats::Stats;
use crate::capture::{CaptureError, FrameSource};
use crate::engine::{Animator, EngineError, KeypointView};
use crate::frame::{Frame, Size};
use crate::output::{FrameSink, SinkError};

/// Commands the UI (or a test) sends; applied by the inference thread between frames.
#[derive(Debug, Clone)]
pub enum Control {
    /// The next driving frame becomes the reference frame D1.
    Recalibrate,
    /// Switch to portrait `index` of those given at start.
    SetAvatar(usize),
    /// Switch to a portrait by id, adding it first if it is new (it is cropped to a centred square
    /// and resized to the engine's frame size). Switching back to a known id costs nothing.
    SetPortrait {
        id: u64,
        image: Arc<image::RgbImage>,
    },
    /// Flip the output (what the virtual camera and recorder get) left to right.
    MirrorOutput(bool),
    /// Relative or absolute motion transfer, and adapt scale (FOMM's demo options).
    Transfer {
        relative: bool,
        adapt_scale: bool,
    },
    /// Keep the last frame's keypoints for [`Pipeline::keypoints`] (off by default: reading them
    /// back costs a copy per frame, from the GPU with CUDA).
    ReportKeypoints(bool),
    /// Show the camera crop instead of the animated portrait.
    Passthrough(bool),
    SetCrop(Crop),
    Quit,
}

/// Why a thread stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("capture: {0}")]
    Capture(#[from] CaptureError),
    #[error("inference: {0}")]
    Engine(#[from] EngineError),
    #[error("sink {sink}: {source}")]
    Sink {
        sink: String,
        #[source]
        source: Box<SinkError>,
    },
    #[error("thread {0} panicked")]
    Panicked(String),
    #[error("{0}")]
    Stopped(String),
}

/// A thread's name and how it ended.
#[derive(Debug)]
pub struct ThreadExit {
    pub thread: String,
    pub result: Result<(), PipelineError>,
}

/// Creates the frame source on the capture thread (cameras must stay on their thread).
pub type SourceFactory = Box<dyn FnOnce() -> Result<Box<dyn FrameSource>, CaptureError> + Send>;

pub struct PipelineOptions {
    /// Portraits (already square, at the engine's frame size), selectable by index.
    pub portraits: Vec<image::RgbImage>,
    /// Their ids for the engine's cache and [`Control::SetPortrait`] (default: the indices).
    pub ids: Vec<u64>,
    pub avatar: usize,
    pub crop: Crop,
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
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            portraits: Vec::new(),
            ids: Vec::new(),
            avatar: 0,
            crop: Crop::default(),
            passthrough: false,
            fps: 30.0,
            reopen: false,
            mirror_output: false,
            preview: None,
        }
    }
}

/// A running pipeline.
pub struct Pipeline {
    threads: Vec<(String, JoinHandle<Result<(), PipelineError>>)>,
    control: Sender<Control>,
    sources: Sender<Option<SourceFactory>>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<Mutex<Stats>>,
    keypoints: Arc<Mutex<Option<KeypointView>>>,
    live: Arc<AtomicBool>,
    source_error: Arc<Mutex<Option<String>>>,
}

/// The portraits the inference thread knows, by id: each as the engine's input tensor and as the
/// still frame (marked as not calibrated) shown while waiting, both made once.
#[derive(Default)]
struct Portraits {
    entries: std::collections::HashMap<u64, (candle_core::Tensor, Frame)>,
}

impl Portraits {
    fn insert(&mut self, id: u64, image: &image::RgbImage, side: u32) -> Result<(), EngineError> {
        let resized;
        let image = if image.width() == side && image.height() == side {
            image
        } else {
            let square = crate::media::resize::center_square_crop(image);
            resized =
                image::imageops::resize(&square, side, side, image::imageops::FilterType::Triangle);
            &resized
        };
        let tensor = to_tensor(image.as_raw(), side)?;
        let f = Frame::from_image(0, Instant::now(), image.clone());
        let still = crate::output::compose::compose(&f, f.size, true);
        self.entries.insert(id, (tensor, still));
        Ok(())
    }

    fn tensor(&self, id: u64) -> Option<&candle_core::Tensor> {
        self.entries.get(&id).map(|e| &e.0)
    }

    fn still(&self, id: u64) -> Option<&Frame> {
        self.entries.get(&id).map(|e| &e.1)
    }
}

/// The frame flipped left to right.
fn mirrored(frame: &Frame) -> Frame {
    let w = frame.size.width as usize;
    let mut rgb = Vec::with_capacity(frame.rgb.len());
    for row in frame.rgb.chunks_exact(w * 3) {
        for px in row.chunks_exact(3).rev() {
            rgb.extend_from_slice(px);
        }
    }
    Frame {
        rgb: Arc::new(rgb),
        ..frame.clone()
    }
}

fn to_tensor(rgb: &[u8], side: u32) -> Result<candle_core::Tensor, EngineError> {
    let side = side as usize;
    crate::media::resize::rgb8_to_tensor(rgb, side, side)
        .map_err(|e| EngineError::Model(crate::model::fomm::ModelError::Input(e.to_string())))
}

fn from_tensor(t: &candle_core::Tensor) -> Result<(Size, Vec<u8>), EngineError> {
    let img = crate::media::resize::tensor_to_rgb8(t)
        .map_err(|e| EngineError::Model(crate::model::fomm::ModelError::Input(e.to_string())))?;
    Ok((Size::new(img.width(), img.height()), img.into_raw()))
}

impl Pipeline {
    /// Starts the threads. `source: None` runs on idle motion alone.
    pub fn start(
        source: Option<SourceFactory>,
        mut engine: Box<dyn Animator + Send>,
        sinks: Vec<Box<dyn FrameSink>>,
        mut options: PipelineOptions,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let keypoints: Arc<Mutex<Option<KeypointView>>> = Arc::default();
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (control_tx, control_rx): (Sender<Control>, Receiver<Control>) = bounded(64);
        let mut threads = Vec::new();

        // Sinks: one thread each, fed by a latest-wins channel, or a bounded queue that delivers
        // every frame for a sink that must not lose any (a recording).
        let mut outputs: Vec<(String, SinkSender)> = Vec::new();
        for mut sink in sinks {
            let (tx, rx) = sink_queue(sink.lossless(), stop.clone());
            outputs.push((sink.name(), tx));
            let stop = stop.clone();
            let stats = stats.clone();
            let repeat = Duration::from_secs_f64(1.0 / options.fps.max(1.0));
            let name = format!("sink:{}", sink.name());
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let mut last: Option<Frame> = None;
                    let result = loop {
                        if stop.load(Ordering::Relaxed) && !rx.drains_on_stop() {
                            break Ok(());
                        }
                        if let Some(waited) = rx.stalled() {
                            break Err(PipelineError::Sink {
                                sink: sink.name(),
                                source: Box::new(SinkError::TooSlow { waited }),
                            });
                        }
                        match rx.recv_timeout(repeat) {
                            Ok((frame, live)) => {
                                let t = Instant::now();
                                if let Err(source) = sink.write(&frame) {
                                    break Err(PipelineError::Sink {
                                        sink: sink.name(),
                                        source: Box::new(source),
                                    });
                                }
                                if let Ok(mut s) = stats.lock() {
                                    s.record_sink(
                                        &sink.name(),
                                        t.elapsed(),
                                        live.then(|| frame.captured_at.elapsed()),
                                    );
                                }
                                last = Some(frame);
                            }
                            // Nothing new: repeat the last frame so virtual cameras never go silent.
                            Err(RecvError::Timeout) => {
                                if sink.repeats()
                                    && let Some(f) = &last
                                    && let Err(source) = sink.write(f)
                                {
                                    break Err(PipelineError::Sink {
                                        sink: sink.name(),
                                        source: Box::new(source),
                                    });
                                }
                            }
                            Err(RecvError::Disconnected) => break Ok(()),
                        }
                    };
                    let finished = sink.finish().map_err(|source| PipelineError::Sink {
                        sink: sink.name(),
                        source: Box::new(source),
                    });
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result.and(finished)
                });
            if let Ok(h) = handle {
                threads.push((name, h));
            }
        }

        // Capture: runs the current source; `set_source` swaps it (or takes it away: idle motion)
        // between frames. Every frame also goes to the preview, if any.
        let (frame_tx, frame_rx) = latest::<Frame>();
        let (source_tx, source_rx) = bounded::<Option<SourceFactory>>(4);
        let live = Arc::new(AtomicBool::new(source.is_some()));
        let source_error: Arc<Mutex<Option<String>>> = Arc::default();
        {
            let stop = stop.clone();
            let reopen = options.reopen;
            let live = live.clone();
            let source_error = source_error.clone();
            let preview = options.preview.take();
            let handle = std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    // The source given at start must open: its error ends the run.
                    let mut src: Option<Box<dyn FrameSource>> = match source {
                        Some(factory) => Some(factory()?),
                        None => None,
                    };
                    let mut backoff = Duration::from_millis(250);
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(next) = source_rx.try_recv() {
                            // Close the old source first: a camera can be opened once.
                            src = None;
                            live.store(false, Ordering::Relaxed);
                            if let Some(factory) = next {
                                match factory() {
                                    Ok(s) => {
                                        tracing::info!("source: {}", s.name());
                                        src = Some(s);
                                        if let Ok(mut e) = source_error.lock() {
                                            *e = None;
                                        }
                                    }
                                    // A source picked while running that fails to open leaves
                                    // the run on idle motion, with the reason to show.
                                    Err(e) => {
                                        tracing::warn!("source: {e}");
                                        if let Ok(mut slot) = source_error.lock() {
                                            *slot = Some(e.to_string());
                                        }
                                    }
                                }
                            }
                            live.store(src.is_some(), Ordering::Relaxed);
                        }
                        let Some(current) = src.as_mut() else {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        };
                        match current.next_frame() {
                            Ok(frame) => {
                                backoff = Duration::from_millis(250);
                                if let Some(p) = &preview {
                                    let _ = p.send(frame.clone());
                                }
                                if frame_tx.send(frame).is_err() {
                                    return Ok(());
                                }
                            }
                            // A lost camera: said once, idle motion meanwhile (`live` off), and
                            // reopened with back-off; when it is back the run is live again and
                            // the inference thread recalibrates.
                            Err(e) if reopen && e.is_transient() => {
                                if live.swap(false, Ordering::Relaxed) {
                                    tracing::warn!(
                                        "{}: lost ({e}); the portrait moves by itself until it is back",
                                        current.name()
                                    );
                                } else {
                                    tracing::debug!("{}: {e}; retrying in {backoff:?}", current.name());
                                }
                                if let Ok(mut slot) = source_error.lock() {
                                    *slot = Some(e.to_string());
                                }
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(4));
                                match current.reopen() {
                                    Ok(()) => {
                                        tracing::warn!("{}: back; recalibrating", current.name());
                                        if let Ok(mut slot) = source_error.lock() {
                                            *slot = None;
                                        }
                                        live.store(true, Ordering::Relaxed);
                                    }
                                    Err(e) => {
                                        tracing::debug!("{}: reopen failed: {e}", current.name())
                                    }
                                }
                            }
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                return Err(PipelineError::Capture(e));
                            }
                        }
                    }
                    Ok(())
                });
            if let Ok(h) = handle {
                threads.push(("capture".into(), h));
            }
        }

        // Inference.
        {
            let stop = stop.clone();
            let stats = stats.clone();
            let keypoints = keypoints.clone();
            let live = live.clone();
            let handle = std::thread::Builder::new()
                .name("inference".into())
                .spawn(move || {
                    let (h, _) = engine.frame_size();
                    let side = h as u32;
                    let ids: Vec<u64> = (0..options.portraits.len())
                        .map(|i| options.ids.get(i).copied().unwrap_or(i as u64))
                        .collect();
                    let mut portraits = Portraits::default();
                    for (id, p) in ids.iter().zip(&options.portraits) {
                        portraits.insert(*id, p, side)?;
                    }
                    let mut avatar = ids
                        .get(options.avatar)
                        .or(ids.first())
                        .copied()
                        .unwrap_or(0);
                    let mut mirror_output = options.mirror_output;
                    let mut report_keypoints = false;
                    let publish =
                        |frame: Frame,
                         live: bool,
                         mirror: bool,
                         outputs: &[(String, SinkSender)]| {
                            let frame = if mirror { mirrored(&frame) } else { frame };
                            for (_, o) in outputs {
                                let _ = o.send((frame.clone(), live));
                            }
                            if let Ok(mut s) = stats.lock() {
                                for (name, o) in outputs {
                                    s.record_sink_drops(name, o.dropped());
                                }
                            }
                        };
                    let still = |portraits: &Portraits, avatar: u64, seq: u64| {
                        if let Ok(mut s) = stats.lock() {
                            s.record_still();
                        }
                        portraits.still(avatar).map(|f| Frame {
                            seq,
                            captured_at: Instant::now(),
                            ..f.clone()
                        })
                    };
                    // The still goes out before anything slow (preparing the portrait can take
                    // seconds): virtual cameras get a frame at once.
                    if let Some(f) = still(&portraits, avatar, 0) {
                        publish(f, false, mirror_output, &outputs);
                    }
                    if let Some(t) = portraits.tensor(avatar) {
                        engine.select_portrait(avatar, t)?;
                    }
                    let mut crop = options.crop;
                    let mut passthrough = options.passthrough;
                    let period = Duration::from_secs_f64(1.0 / options.fps.max(1.0));
                    // Idle motion's clock: restarts whenever the run goes idle.
                    let mut idle_start: Option<Instant> = None;
                    let mut idle_n = 0u64;
                    let mut got_frame = false;
                    let mut was_live = live.load(Ordering::Relaxed);
                    let notice = |msg: String| {
                        tracing::warn!("{msg}");
                        if let Ok(mut s) = stats.lock() {
                            s.notice = Some(msg);
                        }
                    };
                    while !stop.load(Ordering::Relaxed) {
                        while let Ok(cmd) = control_rx.try_recv() {
                            match cmd {
                                Control::Recalibrate => {
                                    engine.recalibrate();
                                    got_frame = false;
                                }
                                Control::SetAvatar(i) => {
                                    if let Some(&id) = ids.get(i)
                                        && let Some(t) = portraits.tensor(id)
                                    {
                                        engine.select_portrait(id, t)?;
                                        engine.recalibrate();
                                        avatar = id;
                                    }
                                }
                                Control::SetPortrait { id, image } => {
                                    if portraits.tensor(id).is_none() {
                                        portraits.insert(id, &image, side)?;
                                    }
                                    if let Some(t) = portraits.tensor(id) {
                                        engine.select_portrait(id, t)?;
                                        engine.recalibrate();
                                        avatar = id;
                                        got_frame = false;
                                    }
                                }
                                Control::Passthrough(p) => passthrough = p,
                                Control::SetCrop(c) => crop = c.clamped(),
                                Control::MirrorOutput(m) => mirror_output = m,
                                Control::ReportKeypoints(on) => {
                                    report_keypoints = on;
                                    if let Ok(mut k) = keypoints.lock() {
                                        *k = None;
                                    }
                                }
                                Control::Transfer {
                                    relative,
                                    adapt_scale,
                                } => {
                                    if let Err(e) = engine.set_transfer(relative, adapt_scale) {
                                        notice(e.to_string());
                                    }
                                }
                                Control::Quit => {
                                    stop.store(true, Ordering::Relaxed);
                                    return Ok(());
                                }
                            }
                        }
                        let is_live = live.load(Ordering::Relaxed);
                        // Back from idle motion (a lost camera returned): a new reference pose.
                        if is_live && !was_live {
                            engine.recalibrate();
                            got_frame = false;
                        }
                        was_live = is_live;
                        let received = if is_live {
                            idle_start = None;
                            frame_rx.recv_timeout(period)
                        } else {
                            // Frames still queued from a source just taken away are stale.
                            let _ = frame_rx.try_recv();
                            Err(RecvError::Timeout)
                        };
                        match received {
                            Ok(frame) => {
                                got_frame = true;
                                let t = Instant::now();
                                let square = crop_resize(&frame, &crop, side);
                                if let Ok(mut s) = stats.lock() {
                                    s.record_framing(t.elapsed());
                                }
                                let t = Instant::now();
                                let out = if passthrough {
                                    Frame {
                                        seq: frame.seq,
                                        captured_at: frame.captured_at,
                                        size: Size::new(side, side),
                                        rgb: Arc::new(square),
                                    }
                                } else {
                                    let calibrated = engine.is_calibrated();
                                    let result = engine.animate(&to_tensor(&square, side)?)?;
                                    if !calibrated && engine.is_calibrated() {
                                        tracing::info!("calibrated on frame {}", frame.seq);
                                        if let Ok(mut s) = stats.lock() {
                                            s.calibrations += 1;
                                        }
                                    }
                                    if report_keypoints && let Ok(mut k) = keypoints.lock() {
                                        *k = engine.keypoint_view();
                                    }
                                    let (size, rgb) = from_tensor(&result)?;
                                    Frame {
                                        seq: frame.seq,
                                        captured_at: frame.captured_at,
                                        size,
                                        rgb: Arc::new(rgb),
                                    }
                                };
                                if let Ok(mut s) = stats.lock() {
                                    s.record_inference(t.elapsed(), frame_rx.dropped());
                                }
                                publish(out, true, mirror_output, &outputs);
                            }
                            Err(RecvError::Timeout) => {
                                // No driving frame: idle motion without a source, the still portrait
                                // (marked as not calibrated) while waiting for the first frame.
                                if !is_live {
                                    // Paced at `fps`: the idle pose of frame n is at n / fps.
                                    let start = *idle_start.get_or_insert_with(|| {
                                        idle_n = 0;
                                        Instant::now()
                                    });
                                    let due = start + period.mul_f64(idle_n as f64);
                                    let now = Instant::now();
                                    if due > now {
                                        std::thread::sleep((due - now).min(period));
                                        continue;
                                    }
                                    let t = Instant::now();
                                    let result =
                                        engine.animate_idle(idle_n as f64 / options.fps)?;
                                    let (size, rgb) = from_tensor(&result)?;
                                    if let Ok(mut s) = stats.lock() {
                                        s.record_inference(t.elapsed(), 0);
                                    }
                                    if report_keypoints && let Ok(mut k) = keypoints.lock() {
                                        *k = None;
                                    }
                                    publish(
                                        Frame {
                                            seq: idle_n,
                                            captured_at: t,
                                            size,
                                            rgb: Arc::new(rgb),
                                        },
                                        true,
                                        mirror_output,
                                        &outputs,
                                    );
                                    // A slow engine skips poses rather than falling behind.
                                    idle_n = idle_n
                                        .max((start.elapsed().as_secs_f64() * options.fps) as u64)
                                        + 1;
                                } else if !got_frame && let Some(f) = still(&portraits, avatar, 0) {
                                    publish(f, false, mirror_output, &outputs);
                                }
                            }
                            // The capture thread also ends when another thread stopped the run;
                            // only an unexpected end is this thread's error.
                            Err(RecvError::Disconnected) if stop.load(Ordering::Relaxed) => {
                                return Ok(());
                            }
                            Err(RecvError::Disconnected) => {
                                return Err(PipelineError::Stopped(
                                    "the capture thread ended".into(),
                                ));
                            }
                        }
                    }
                    Ok(())
                });
            if let Ok(h) = handle {
                threads.push(("inference".into(), h));
            }
        }
        Pipeline {
            threads,
            control: control_tx,
            sources: source_tx,
            stop,
            stats,
            keypoints,
            live,
            source_error,
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
        self.live.load(Ordering::Relaxed)
    }

    /// Why the current or last picked source is not delivering frames, if it is not.
    pub fn source_error(&self) -> Option<String> {
        self.source_error.lock().ok().and_then(|e| e.clone())
    }

    /// The keypoints of the last animated frame (for the overlay), once asked for with
    /// [`Control::ReportKeypoints`].
    pub fn keypoints(&self) -> Option<KeypointView> {
        self.keypoints.lock().ok().and_then(|k| k.clone())
    }

    /// A handle for sending commands.
    pub fn control(&self) -> Sender<Control> {
        self.control.clone()
    }

    /// Asks every thread to stop (they check at least every frame period).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn is_running(&self) -> bool {
        self.threads.iter().any(|(_, h)| !h.is_finished())
    }

    /// Waits for every thread and says how each ended.
    pub fn join(self) -> Vec<ThreadExit> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(thread, h)| {
                let result = h
                    .join()
                    .unwrap_or_else(|_| Err(PipelineError::Panicked(thread.clone())));
                ThreadExit { thread, result }
            })
            .collect()
    }
}
