//! The inference loop: runs at the camera's rate, applies [`Control`] commands between frames, and
//! turns each driving frame into an output frame ([`InferenceLoop::on_frame`]).
//!
//! The engine itself runs on the model thread ([`super::model`]), which renders the newest frame
//! it is given whenever it is free. Two ways to make outputs from what it renders:
//! * keyframes off: each rendered frame is the output (the output rate is the model's rate);
//! * keyframes on: rendered frames are keyframes, and every camera frame's output is the latest
//!   keyframe warped by the motion since its driving frame ([`InBetween`]), so the portrait moves
//!   at the camera's rate whatever the model's speed.
//!
//! `auto` turns keyframes on while the model is slower than the camera. Without a driving source
//! the loop asks the model for idle-motion poses ([`InferenceLoop::on_idle`]).
//!
//! With automatic framing the newest frames also go to the face thread ([`super::faces`]), and the
//! crop follows the face it finds ([`AutoFraming`]); the reference frame waits (up to
//! [`FACE_WAIT`]) for the first face, so the reference pose is taken on a framed face. Every frame
//! is handed on with its capture time and the crop's place in the camera frame ([`FrameInfo`]):
//! the engines smooth the motion on that clock and measure it in the reference frame's view, so a
//! moving crop does not move the portrait.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use crossbeam_channel::{Receiver, Sender};

use super::faces::Sighting;
use super::framing::{AutoFraming, Crop, FramingMode, ViewStabiliser, crop_resize};
use super::governor::{Governor, process_cpu_time};
use super::model::{Job, JobKind, ModelCommand, Rendered};
use super::portraits::Portraits;
use super::queue::SinkSender;
use super::{
    Control, FramingReport, KeyframeMode, PipelineError, PipelineOptions, Shared, seconds,
};
use crate::channel::{LatestReceiver, LatestSender, RecvError};
use crate::engine::keyframes::InBetween;
use crate::engine::smoothing::Smoothing;
use crate::engine::{EngineError, FrameInfo};
use crate::frame::{Frame, Size};
use crate::media::resize::{rgb8_to_tensor, tensor_to_rgb8};
use crate::watermark::{MarkEngine, Marker, Payload};

/// The sinks' queues, by sink name: (frame, live) where live means it shows a driving frame.
pub(super) type Outputs = Vec<(String, SinkSender)>;

/// The inference loop's ends of the model thread's channels.
pub(super) struct ModelLink {
    pub(super) jobs: LatestSender<Job>,
    pub(super) results: LatestReceiver<Rendered>,
    pub(super) commands: Sender<ModelCommand>,
}

/// The inference loop's ends of the face thread's channels.
pub(super) struct FaceLink {
    pub(super) frames: LatestSender<Frame>,
    pub(super) sightings: LatestReceiver<Sighting>,
}

/// With automatic framing, the reference frame waits at most this long for the first face; after
/// that the crop stays centred until one is found.
pub const FACE_WAIT: Duration = Duration::from_millis(1500);

/// The crop and how it is placed.
struct Framing {
    mode: FramingMode,
    /// The crop the user set (manual framing; its mirror flag counts in both modes).
    user: Crop,
    auto: AutoFraming,
    /// The camera frame size the face was found in (a new size forgets it).
    camera: Option<Size>,
    /// The last face found, camera pixels.
    face: Option<crate::face::FaceBox>,
    /// When the current calibration started waiting for a face.
    waiting_since: Option<Instant>,
    /// The views handed to the engines (crop moves taken out of the motion).
    stabiliser: ViewStabiliser,
}

/// `auto` turns keyframes on when the model's median step is above this fraction of the frame
/// period, and off again below [`KEYFRAMES_OFF_BELOW`] (hysteresis, so it does not flicker).
const KEYFRAMES_ON_ABOVE: f64 = 1.0;
const KEYFRAMES_OFF_BELOW: f64 = 0.7;

/// `auto` turns keyframes off when the model's step is below this multiple of an in-between's
/// time (the in-betweens would cost about as much as the frames they stand in for).
const INBETWEEN_OVER_MODEL_OFF: f64 = 1.0;

/// How long `auto` waits for the model's first frame before making in-betweens.
const FIRST_FRAME_PATIENCE: Duration = Duration::from_secs(1);

/// Recent step times kept for the medians.
const RECENT: usize = 9;

/// Appends `v` to the recent values, keeping the last [`RECENT`].
fn push_recent(values: &mut Vec<f64>, v: f64) {
    values.push(v);
    if values.len() > RECENT {
        values.remove(0);
    }
}

/// The median of `values` (`None` when empty).
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Idle motion's clock: pose `n` is due at `start + n / fps`; restarts whenever the run goes idle.
#[derive(Default)]
struct IdleClock {
    start: Option<Instant>,
    n: u64,
}

/// The transfer options as last set (the in-betweens follow them).
#[derive(Clone, Copy)]
struct Transfer {
    relative: bool,
    adapt_scale: bool,
}

/// The inference thread's state.
pub(super) struct InferenceLoop {
    model: ModelLink,
    faces: FaceLink,
    framing: Framing,
    inbetween: InBetween,
    portraits: Portraits,
    /// The engine's square frame side.
    side: u32,
    crop: Crop,
    passthrough: bool,
    mirror_output: bool,
    badge: bool,
    report_keypoints: bool,
    transfer: Transfer,
    smoothing: Smoothing,
    /// Marks the animated frames ([`crate::watermark`]); `None` when off.
    marker: Option<Marker>,
    mode: KeyframeMode,
    /// Whether outputs are in-betweens now (decided by `mode` and the model's speed).
    keyframes_on: bool,
    /// The model's recent step times (ms), newest last.
    model_ms: Vec<f64>,
    /// The in-betweens' recent times (ms), newest last.
    inbetween_ms: Vec<f64>,
    /// When the model was given its first driving frame (cleared once it has rendered one).
    waiting_since: Option<Instant>,
    /// What cropping the last camera frame (and making its tensor) cost.
    last_cropping: Duration,
    /// What the loop does less of on a machine that cannot keep up.
    governor: Governor,
    /// The next driving frame is the reference frame.
    calibrate_next: bool,
    /// Whether a driving frame arrived since the last (re)calibration.
    got_frame: bool,
    /// Whether the last pass ran on a driving source (a lost camera that returns recalibrates).
    was_live: bool,
    fps: f64,
    idle: IdleClock,
    outputs: Outputs,
    shared: Shared,
}

impl InferenceLoop {
    /// Sends the first portrait's still at once (virtual cameras get a frame immediately), then
    /// asks the model thread to prepare the portrait.
    pub(super) fn new(
        side: u32,
        model: ModelLink,
        faces: FaceLink,
        options: PipelineOptions,
        outputs: Outputs,
        shared: Shared,
    ) -> Result<Self, PipelineError> {
        let mut portraits = Portraits::new(side);
        let (id, image) = &options.portrait;
        let first = portraits.select(*id, image)?.clone();
        let look = Look {
            mirror: options.mirror_output,
            badge: options.badge,
        };
        publish_still(&first.still, &outputs, &shared, look);
        let _ = model.commands.send(ModelCommand::SetPortrait {
            id: *id,
            tensor: first.tensor.clone(),
        });
        let keyframes_on = options.keyframes == KeyframeMode::On;
        shared.stats(|s| s.keyframes_on = keyframes_on);
        let transfer = Transfer {
            relative: options.transfer.relative,
            adapt_scale: options.transfer.adapt_scale,
        };
        let _ = model.commands.send(ModelCommand::Transfer {
            relative: transfer.relative,
            adapt_scale: transfer.adapt_scale,
        });
        let _ = model
            .commands
            .send(ModelCommand::Smoothing(options.smoothing));
        let mut inbetween = InBetween::new(side as usize, transfer.adapt_scale);
        inbetween.set_smoothing(options.smoothing);
        let crop = options.crop.clamped();
        if let Ok(mut f) = shared.framing.lock() {
            f.crop = crop;
            f.mode = options.framing;
        }
        Ok(Self {
            model,
            faces,
            framing: Framing {
                mode: options.framing,
                user: crop,
                auto: AutoFraming::default(),
                camera: None,
                face: None,
                waiting_since: None,
                stabiliser: ViewStabiliser::default(),
            },
            inbetween,
            portraits,
            side,
            crop,
            passthrough: options.passthrough,
            mirror_output: options.mirror_output,
            badge: options.badge,
            report_keypoints: false,
            transfer,
            smoothing: options.smoothing,
            marker: options
                .watermark
                .then(|| Marker::new(Payload::new(MarkEngine::Other))),
            mode: options.keyframes,
            keyframes_on,
            model_ms: Vec::new(),
            inbetween_ms: Vec::new(),
            waiting_since: None,
            last_cropping: Duration::ZERO,
            governor: Governor::new(options.fps.max(1.0)),
            calibrate_next: true,
            got_frame: false,
            was_live: shared.live.load(Ordering::Relaxed),
            fps: options.fps.max(1.0),
            idle: IdleClock::default(),
            outputs,
            shared,
        })
    }

    /// The thread's body: commands, rendered frames, then the next driving frame or an idle tick,
    /// until stopped.
    pub(super) fn run(
        mut self,
        frames: LatestReceiver<Frame>,
        control: Receiver<Control>,
    ) -> Result<(), PipelineError> {
        super::model::set_nice(super::model::LOOP_NICE);
        let result = self.serve(&frames, &control);
        // Frames replaced after the last one taken count too: the run's final stats must add
        // up to what the camera made, however busy the machine was when it stopped.
        self.record_drops(frames.dropped());
        result
    }

    fn serve(
        &mut self,
        frames: &LatestReceiver<Frame>,
        control: &Receiver<Control>,
    ) -> Result<(), PipelineError> {
        let period = Duration::from_secs_f64(1.0 / self.fps);
        while !self.shared.stopped() {
            while let Ok(cmd) = control.try_recv() {
                self.apply(cmd);
            }
            while let Ok(r) = self.model.results.try_recv() {
                self.on_rendered(r)?;
            }
            let live = self.shared.live.load(Ordering::Relaxed);
            // Back from idle motion (a lost camera returned, a source picked): a new reference.
            if live && !self.was_live {
                self.recalibrate();
            }
            self.was_live = live;
            let received = if live {
                self.idle = IdleClock::default();
                frames.recv_timeout(period)
            } else {
                // Frames still queued from a source just taken away are stale.
                let _ = frames.try_recv();
                Err(RecvError::Timeout)
            };
            match received {
                Ok(frame) => self.on_frame(frame, frames.dropped())?,
                Err(RecvError::Timeout) => self.on_idle(live, period)?,
                // The capture thread also ends when another thread stopped the run; only an
                // unexpected end is this thread's error.
                Err(RecvError::Disconnected) if self.shared.stopped() => return Ok(()),
                Err(RecvError::Disconnected) => {
                    return Err(PipelineError::Stopped("the capture thread ended".into()));
                }
            }
        }
        Ok(())
    }

    /// Says which engine the mark names.
    pub(super) fn with_mark_engine(mut self, engine: MarkEngine) -> Self {
        if let Some(m) = &mut self.marker {
            m.set_payload(Payload::new(engine));
        }
        self
    }

    /// Applies one command.
    pub(super) fn apply(&mut self, cmd: Control) {
        match cmd {
            Control::Recalibrate => self.recalibrate(),
            Control::SetPortrait { id, image } => match self.portraits.select(id, &image) {
                Ok(p) => {
                    let tensor = p.tensor.clone();
                    let _ = self
                        .model
                        .commands
                        .send(ModelCommand::SetPortrait { id, tensor });
                    self.recalibrate();
                }
                Err(e) => self.notice(format!("portrait {id}: {e}")),
            },
            Control::Passthrough(p) => self.passthrough = p,
            Control::SetCrop(c) => {
                let c = c.clamped();
                if c.mirror != self.framing.user.mirror {
                    // A flipped picture is not a motion: start from a new reference frame.
                    self.recalibrate();
                }
                self.framing.user = c;
                match self.framing.mode {
                    FramingMode::Manual => self.crop = c,
                    FramingMode::Auto => self.crop.mirror = c.mirror,
                }
            }
            Control::MirrorOutput(m) => self.mirror_output = m,
            Control::Badge(b) => self.badge = b,
            Control::ReportKeypoints(on) => {
                self.report_keypoints = on;
                if let Ok(mut k) = self.shared.keypoints.lock() {
                    *k = None;
                }
            }
            Control::Transfer {
                relative,
                adapt_scale,
            } => {
                self.transfer = Transfer {
                    relative,
                    adapt_scale,
                };
                self.inbetween.set_adapt_scale(adapt_scale);
                let _ = self.model.commands.send(ModelCommand::Transfer {
                    relative,
                    adapt_scale,
                });
                self.recalibrate();
            }
            Control::Keyframes(mode) => {
                self.mode = mode;
                self.update_mode();
            }
            Control::Smoothing(smoothing) => {
                self.smoothing = smoothing;
                self.inbetween.set_smoothing(smoothing);
                let _ = self.model.commands.send(ModelCommand::Smoothing(smoothing));
            }
            Control::Framing(mode) if mode != self.framing.mode => {
                self.framing.mode = mode;
                if mode == FramingMode::Manual {
                    self.crop = self.framing.user;
                }
                // The crop jumps: start from a new reference frame in the new crop.
                self.recalibrate();
            }
            Control::Framing(_) => {}
            Control::SetEngine(handoff) => self.set_engine(handoff),
        }
    }

    /// Hands the model thread another engine, set up like the last one: the portrait, motion
    /// transfer and smoothing in use; a new reference frame; the model's speed measured anew.
    fn set_engine(&mut self, handoff: super::EngineHandoff) {
        let Some(engine) = handoff.take() else {
            return;
        };
        let (h, w) = engine.frame_size();
        if h != w || h != self.side as usize {
            let side = self.side;
            self.notice(format!(
                "the new engine renders {w}x{h} frames and this run {side}x{side}: restart \
                 marionette to use it"
            ));
            return;
        }
        if let Some(m) = &mut self.marker {
            m.set_payload(Payload::new(MarkEngine::from(engine.id())));
        }
        let commands = &self.model.commands;
        let _ = commands.send(ModelCommand::SetEngine(engine));
        if let Some((id, p)) = self.portraits.current_with_id() {
            let tensor = p.tensor.clone();
            let _ = commands.send(ModelCommand::SetPortrait { id, tensor });
        }
        let _ = commands.send(ModelCommand::Transfer {
            relative: self.transfer.relative,
            adapt_scale: self.transfer.adapt_scale,
        });
        let _ = commands.send(ModelCommand::Smoothing(self.smoothing));
        self.model_ms.clear();
        self.waiting_since = None;
        self.recalibrate();
    }

    fn recalibrate(&mut self) {
        self.calibrate_next = true;
        self.got_frame = false;
        self.inbetween.reset();
        self.framing.waiting_since = None;
    }

    /// Automatic framing for `frame`: hands it to the face thread, takes in what that found, and
    /// moves the crop. Returns false while the reference frame is waiting for the first face.
    fn frame_the_face(&mut self, frame: &Frame) -> bool {
        let f = &mut self.framing;
        if f.camera != Some(frame.size) {
            f.camera = Some(frame.size);
            f.auto.reset();
            f.face = None;
        }
        if f.mode != FramingMode::Auto {
            return true;
        }
        let _ = self.faces.frames.send(frame.clone());
        while let Ok(s) = self.faces.sightings.try_recv() {
            if s.size == frame.size
                && let Some(face) = s.face
            {
                f.auto.observe(&face, seconds(s.captured_at));
                f.face = Some(face);
            }
        }
        if self.calibrate_next {
            let since = *f.waiting_since.get_or_insert_with(Instant::now);
            if !f.auto.has_face() && since.elapsed() < FACE_WAIT {
                return false;
            }
            // The reference frame is taken on the face, framed exactly.
            f.auto.snap();
        }
        if let Some(c) = f
            .auto
            .step(seconds(frame.captured_at), frame.size, f.user.mirror)
        {
            self.crop = c;
        }
        true
    }

    /// A driving frame: crop it to the model's square, hand it to the model, and make an output
    /// (the crop itself in passthrough, an in-between with keyframes on; with keyframes off the
    /// output comes when the model has rendered it).
    pub(super) fn on_frame(&mut self, frame: Frame, dropped: u64) -> Result<(), PipelineError> {
        let t = Instant::now();
        self.govern();
        let ready = self.frame_the_face(&frame);
        if let Ok(mut r) = self.shared.framing.lock() {
            *r = FramingReport {
                camera: Some(frame.size),
                crop: self.crop,
                face: self.framing.face,
                mode: self.framing.mode,
            };
        }
        if !ready {
            return Ok(());
        }
        self.got_frame = true;
        let square = crop_resize(&frame, &self.crop, self.side);
        let time = seconds(frame.captured_at);
        let info = FrameInfo {
            time: Some(time),
            view: self.framing.stabiliser.view(
                self.crop.view(frame.size, self.side),
                time,
                self.calibrate_next,
            ),
        };
        self.shared.stats(|s| s.record_framing(t.elapsed()));
        if self.passthrough {
            let out = Frame {
                seq: frame.seq,
                captured_at: frame.captured_at,
                size: Size::new(self.side, self.side),
                rgb: Arc::new(square),
            };
            self.shared.stats(|s| s.record_inference(t.elapsed()));
            // The camera itself: no badge.
            publish(out, true, &self.outputs, &self.shared, self.look(false));
            return Ok(());
        }
        let side = self.side as usize;
        let input = rgb8_to_tensor(&square, side, side).map_err(EngineError::from)?;
        self.last_cropping = t.elapsed();
        let calibrate = std::mem::take(&mut self.calibrate_next);
        let job = Job {
            seq: frame.seq,
            captured_at: frame.captured_at,
            input: input.clone(),
            info,
            kind: JobKind::Frame { calibrate },
            keypoints: self.report_keypoints,
        };
        if calibrate {
            // The reference frame must not be replaced by a newer one on the way: the model and
            // the in-betweens must agree on it.
            let _ = self.model.commands.send(ModelCommand::Render(job));
        } else {
            let _ = self.model.jobs.send(job);
        }
        self.slow_start();
        self.record_drops(dropped);
        if calibrate && self.transfer.relative {
            // In relative motion the reference frame renders the portrait as it is: the
            // in-betweens can start from it before the model has rendered anything.
            if let Some(p) = self.portraits.current() {
                self.inbetween
                    .set_keyframe(&p.tensor, &input, &info, false)?;
            }
        }
        // On a machine that cannot keep up, not every camera frame gets one: the outputs
        // repeat the last meanwhile, and the model gets the time.
        if self.keyframes_on && self.inbetween.has_keyframe() && self.governor.inbetween_due() {
            let t = Instant::now();
            let cpu = process_cpu_time();
            let out = self.inbetween.render(&input, &info)?;
            let (size, rgb) = to_rgb(&out)?;
            let took = t.elapsed();
            push_recent(&mut self.inbetween_ms, took.as_secs_f64() * 1e3);
            self.governor
                .on_inbetween(took, process_cpu_time().saturating_sub(cpu));
            self.shared.stats(|s| s.record_inference(took));
            self.publish(
                Frame {
                    seq: frame.seq,
                    captured_at: frame.captured_at,
                    size,
                    rgb: Arc::new(rgb),
                },
                true,
            );
        }
        Ok(())
    }

    /// A frame the model rendered: a new keyframe (keyframes on) or the next output.
    fn on_rendered(&mut self, r: Rendered) -> Result<(), PipelineError> {
        let latency = r.captured_at.elapsed();
        self.shared.stats(|s| s.record_keyframe(r.took, latency));
        push_recent(&mut self.model_ms, r.took.as_secs_f64() * 1e3);
        self.governor.on_keyframe();
        self.update_mode();
        if self.report_keypoints
            && let Ok(mut k) = self.shared.keypoints.lock()
        {
            *k = r.keypoints.clone();
        }
        match &r.driving {
            Some(driving) if self.keyframes_on && !self.governor.degraded() => {
                // Not shown as it is: it shows the pose of a frame captured a model step ago. The
                // next camera frame's in-between warps it to the present.
                let blend = self.inbetween.has_keyframe();
                self.inbetween
                    .set_keyframe(&r.output, driving, &r.info, blend)?;
            }
            Some(driving) if self.keyframes_on => {
                // Few in-betweens on this machine: the keyframe is shown as it is (its pose a
                // model step old), and the in-betweens that come warp from it.
                self.inbetween
                    .set_keyframe(&r.output, driving, &r.info, false)?;
                let (size, rgb) = to_rgb(&r.output)?;
                self.shared.stats(|s| s.record_inference(r.took));
                self.publish(
                    Frame {
                        seq: r.seq,
                        captured_at: r.captured_at,
                        size,
                        rgb: Arc::new(rgb),
                    },
                    true,
                );
            }
            _ => {
                let (size, rgb) = to_rgb(&r.output)?;
                self.shared.stats(|s| s.record_inference(r.took));
                let frame = Frame {
                    seq: r.seq,
                    captured_at: r.captured_at,
                    size,
                    rgb: Arc::new(rgb),
                };
                self.publish(frame, true);
            }
        }
        Ok(())
    }

    /// What the capture queue (`dropped`, its count) and the model's queues have replaced so far.
    fn record_drops(&self, dropped: u64) {
        let dropped_jobs = self.model.jobs.dropped() + self.model.results.dropped();
        self.shared.stats(|s| {
            s.dropped_model = dropped_jobs;
            s.dropped_capture = dropped;
        });
    }

    /// Keyframes on or off, from the mode, the model's median step time and the in-betweens'.
    fn update_mode(&mut self) {
        let on = match self.mode {
            KeyframeMode::On => true,
            KeyframeMode::Off => false,
            KeyframeMode::Auto => {
                let period_ms = 1e3 / self.fps;
                match (median(&self.model_ms), median(&self.inbetween_ms)) {
                    // An in-between costs more than the model's own frame (a small model, or
                    // a slow machine): show the model's frames as they are.
                    (Some(m), Some(i)) if m < INBETWEEN_OVER_MODEL_OFF * i => false,
                    (Some(m), _) if m > KEYFRAMES_ON_ABOVE * period_ms => true,
                    (Some(m), _) if m < KEYFRAMES_OFF_BELOW * period_ms => false,
                    _ => self.keyframes_on,
                }
            }
        };
        if on != self.keyframes_on {
            tracing::info!("keyframes {}", if on { "on" } else { "off" });
            self.keyframes_on = on;
            self.shared.stats(|s| s.keyframes_on = on);
        }
        self.governor.set_waiting_for_model(on);
    }

    /// `auto` with no frame from the model yet, [`FIRST_FRAME_PATIENCE`] after giving it one (a
    /// slow machine, or a big model): keyframes on, so that the portrait moves at once through
    /// in-betweens of its first keyframe (in relative motion, the portrait itself).
    fn slow_start(&mut self) {
        if self.mode != KeyframeMode::Auto || self.keyframes_on || !self.model_ms.is_empty() {
            return;
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= FIRST_FRAME_PATIENCE {
            tracing::info!(
                "keyframes on: the model has not rendered a frame in {:.1} s",
                since.elapsed().as_secs_f64()
            );
            self.keyframes_on = true;
            self.shared.stats(|s| s.keyframes_on = true);
            self.governor.set_waiting_for_model(true);
        }
    }

    /// Lets the governor look at the load, and says what it cuts when that changes.
    fn govern(&mut self) {
        let before = self.governor.describe();
        self.governor
            .on_frame(self.last_cropping, &self.shared.pace);
        let now = self.governor.describe();
        if now != before {
            match &now {
                Some(d) => tracing::info!("degraded: {d}"),
                None => tracing::info!("the machine keeps up again: everything is done"),
            }
            self.shared.stats(|s| s.degraded = now);
        }
    }

    /// No driving frame within a frame period: ask the model for the idle pose when one is due
    /// (no source; paced at `fps`, the idle pose of frame n is at n / fps), or repeat the still
    /// portrait while waiting for the first frame of a source.
    pub(super) fn on_idle(&mut self, live: bool, period: Duration) -> Result<(), PipelineError> {
        if live {
            if !self.got_frame
                && !self.inbetween.has_keyframe()
                && let Some(p) = self.portraits.current()
            {
                publish_still(&p.still, &self.outputs, &self.shared, self.look(self.badge));
            }
            return Ok(());
        }
        let start = *self.idle.start.get_or_insert_with(Instant::now);
        let due = start + period.mul_f64(self.idle.n as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep((due - now).min(period));
            return Ok(());
        }
        let input = match self.portraits.current() {
            Some(p) => p.tensor.clone(),
            None => return Ok(()),
        };
        let _ = self.model.jobs.send(Job {
            seq: self.idle.n,
            captured_at: now,
            input,
            info: FrameInfo::default(),
            kind: JobKind::Idle {
                t: self.idle.n as f64 / self.fps,
            },
            keypoints: false,
        });
        // A slow engine skips poses rather than falling behind.
        self.idle.n = self
            .idle
            .n
            .max((start.elapsed().as_secs_f64() * self.fps) as u64)
            + 1;
        Ok(())
    }

    fn notice(&self, msg: String) {
        tracing::warn!("{msg}");
        self.shared.stats(|s| s.notice = Some(msg));
    }

    /// How outputs look now; `badge`: whether this frame may carry the badge.
    fn look(&self, badge: bool) -> Look {
        Look {
            mirror: self.mirror_output,
            badge: badge && self.badge,
        }
    }

    /// Sends an animated frame to every sink.
    fn publish(&mut self, frame: Frame, live: bool) {
        let frame = match &mut self.marker {
            Some(m) => {
                let mut rgb = Arc::unwrap_or_clone(frame.rgb);
                m.mark_rgb(&mut rgb, frame.size.width, frame.size.height);
                Frame {
                    rgb: Arc::new(rgb),
                    ..frame
                }
            }
            None => frame,
        };
        publish(frame, live, &self.outputs, &self.shared, self.look(true));
    }
}

/// How a published frame is finished.
#[derive(Clone, Copy)]
struct Look {
    /// Flipped left to right.
    mirror: bool,
    /// With the "AI ANIMATED" badge (drawn after mirroring, so it reads).
    badge: bool,
}

/// A portrait's still (marked as not calibrated), stamped now.
fn publish_still(still: &Frame, outputs: &Outputs, shared: &Shared, look: Look) {
    shared.stats(|s| s.record_still());
    let frame = Frame {
        captured_at: Instant::now(),
        ..still.clone()
    };
    publish(frame, false, outputs, shared, look);
}

/// Sends a frame to every sink (mirrored, badged if asked), counting what their queues dropped.
fn publish(frame: Frame, live: bool, outputs: &Outputs, shared: &Shared, look: Look) {
    let frame = if look.mirror { mirrored(&frame) } else { frame };
    let frame = if look.badge {
        crate::output::badge::badged(frame)
    } else {
        frame
    };
    for (_, o) in outputs {
        let _ = o.send((frame.clone(), live));
    }
    shared.stats(|s| {
        for (name, o) in outputs {
            s.record_sink_drops(name, o.dropped());
        }
    });
}

/// An engine's output as RGB bytes.
fn to_rgb(t: &Tensor) -> Result<(Size, Vec<u8>), EngineError> {
    let img = tensor_to_rgb8(t)?;
    Ok((Size::new(img.width(), img.height()), img.into_raw()))
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
