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
use super::stats::Stats;
use crate::capture::{CaptureError, FrameSource};
use crate::engine::{Animator, EngineError};
use crate::frame::{Frame, Size};
use crate::output::{FrameSink, SinkError};

/// Commands the UI (or a test) sends; applied by the inference thread between frames.
#[derive(Debug, Clone)]
pub enum Control {
    /// The next driving frame becomes the reference frame D1.
    Recalibrate,
    /// Switch to portrait `index` of those given at start.
    SetAvatar(usize),
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
    pub avatar: usize,
    pub crop: Crop,
    pub passthrough: bool,
    /// Frame rate of the idle motion and of repeated frames when nothing new arrives.
    pub fps: f64,
    /// Reopen a failing camera with back-off instead of ending the run.
    pub reopen: bool,
}

/// A running pipeline.
pub struct Pipeline {
    threads: Vec<(String, JoinHandle<Result<(), PipelineError>>)>,
    control: Sender<Control>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<Mutex<Stats>>,
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
        options: PipelineOptions,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (control_tx, control_rx): (Sender<Control>, Receiver<Control>) = bounded(64);
        let mut threads = Vec::new();

        // Sinks: one thread each, fed by a latest-wins channel.
        let mut outputs: Vec<(String, LatestSender<(Frame, bool)>)> = Vec::new();
        for mut sink in sinks {
            let (tx, rx) = latest::<(Frame, bool)>();
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
                        if stop.load(Ordering::Relaxed) {
                            break Ok(());
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

        // Capture.
        let (frame_tx, frame_rx) = latest::<Frame>();
        let has_source = source.is_some();
        if let Some(factory) = source {
            let stop = stop.clone();
            let reopen = options.reopen;
            let handle = std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    let mut src = factory()?;
                    let mut backoff = Duration::from_millis(250);
                    while !stop.load(Ordering::Relaxed) {
                        match src.next_frame() {
                            Ok(frame) => {
                                backoff = Duration::from_millis(250);
                                if frame_tx.send(frame).is_err() {
                                    return Ok(());
                                }
                            }
                            Err(e) if reopen && e.is_transient() => {
                                tracing::warn!("{}: {e}; retrying in {backoff:?}", src.name());
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(4));
                                if let Err(e) = src.reopen() {
                                    tracing::warn!("{}: reopen failed: {e}", src.name());
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
        } else {
            drop(frame_tx);
        }

        // Inference.
        {
            let stop = stop.clone();
            let stats = stats.clone();
            let handle = std::thread::Builder::new()
                .name("inference".into())
                .spawn(move || {
                    let (h, _) = engine.frame_size();
                    let side = h as u32;
                    let tensors: Vec<candle_core::Tensor> = options
                        .portraits
                        .iter()
                        .map(|p| to_tensor(p.as_raw(), side))
                        .collect::<Result<_, _>>()?;
                    let mut avatar = options.avatar.min(tensors.len().saturating_sub(1));
                    let publish = |frame: Frame,
                                   live: bool,
                                   outputs: &[(String, LatestSender<(Frame, bool)>)]| {
                        for (_, o) in outputs {
                            let _ = o.send((frame.clone(), live));
                        }
                        if let Ok(mut s) = stats.lock() {
                            for (name, o) in outputs {
                                s.record_sink_drops(name, o.dropped());
                            }
                        }
                    };
                    // Each portrait marked as not calibrated, composed once: sent while no driving
                    // frame has arrived, sharing its pixels.
                    let stills: Vec<Frame> = options
                        .portraits
                        .iter()
                        .map(|p| {
                            let f = Frame::from_image(0, Instant::now(), p.clone());
                            crate::output::compose::compose(&f, f.size, true)
                        })
                        .collect();
                    let still = |avatar: usize, seq: u64| {
                        if let Ok(mut s) = stats.lock() {
                            s.record_still();
                        }
                        stills.get(avatar).map(|f| Frame {
                            seq,
                            captured_at: Instant::now(),
                            ..f.clone()
                        })
                    };
                    // The still goes out before anything slow (preparing the portrait can take
                    // seconds): virtual cameras get a frame at once.
                    if let Some(f) = still(avatar, 0) {
                        publish(f, false, &outputs);
                    }
                    if let Some(t) = tensors.get(avatar) {
                        engine.select_portrait(avatar as u64, t)?;
                    }
                    let mut crop = options.crop;
                    let mut passthrough = options.passthrough;
                    let started = Instant::now();
                    let period = Duration::from_secs_f64(1.0 / options.fps.max(1.0));
                    let mut seq = 0u64;
                    let mut got_frame = false;
                    while !stop.load(Ordering::Relaxed) {
                        while let Ok(cmd) = control_rx.try_recv() {
                            match cmd {
                                Control::Recalibrate => engine.recalibrate(),
                                Control::SetAvatar(i) => {
                                    if let Some(t) = tensors.get(i) {
                                        engine.select_portrait(i as u64, t)?;
                                        engine.recalibrate();
                                        avatar = i;
                                    }
                                }
                                Control::Passthrough(p) => passthrough = p,
                                Control::SetCrop(c) => crop = c.clamped(),
                                Control::Quit => {
                                    stop.store(true, Ordering::Relaxed);
                                    return Ok(());
                                }
                            }
                        }
                        let received = if has_source {
                            frame_rx.recv_timeout(period)
                        } else {
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
                                    let result = engine.animate(&to_tensor(&square, side)?)?;
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
                                publish(out, true, &outputs);
                            }
                            Err(RecvError::Timeout) => {
                                // No driving frame: idle motion without a source, the still portrait
                                // (marked as not calibrated) while waiting for the first frame.
                                if !has_source {
                                    // Paced at `fps`: the idle pose of frame n is at n / fps.
                                    let due = started + period.mul_f64(seq as f64);
                                    let now = Instant::now();
                                    if due > now {
                                        std::thread::sleep((due - now).min(period));
                                        continue;
                                    }
                                    let t = Instant::now();
                                    let result = engine.animate_idle(seq as f64 / options.fps)?;
                                    let (size, rgb) = from_tensor(&result)?;
                                    if let Ok(mut s) = stats.lock() {
                                        s.record_inference(t.elapsed(), 0);
                                    }
                                    publish(
                                        Frame {
                                            seq,
                                            captured_at: t,
                                            size,
                                            rgb: Arc::new(rgb),
                                        },
                                        true,
                                        &outputs,
                                    );
                                    // A slow engine skips poses rather than falling behind.
                                    seq = seq.max(
                                        (started.elapsed().as_secs_f64() * options.fps) as u64,
                                    ) + 1;
                                } else if !got_frame && let Some(f) = still(avatar, seq) {
                                    publish(f, false, &outputs);
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
            stop,
            stats,
        }
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
