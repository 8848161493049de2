//! The inference thread: owns the engine, applies [`Control`] commands between frames, turns each
//! driving frame into an animated frame ([`InferenceLoop::on_frame`]), and keeps the sinks fed
//! when no driving frame comes ([`InferenceLoop::on_idle`]: idle motion, or the still portrait
//! while waiting for the first frame).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::framing::{Crop, crop_resize};
use super::portraits::Portraits;
use super::{Control, PipelineError, PipelineOptions, Shared};
use crate::channel::{LatestReceiver, LatestSender, RecvError};
use crate::engine::{Animator, EngineError};
use crate::frame::{Frame, Size};
use crate::media::resize::{rgb8_to_tensor, tensor_to_rgb8};

/// The sinks' queues, by sink name: (frame, live) where live means it shows a driving frame.
pub(super) type Outputs = Vec<(String, LatestSender<(Frame, bool)>)>;

/// Idle motion's clock: pose `n` is shown at `start + n / fps`; restarts whenever the run goes
/// idle.
#[derive(Default)]
struct IdleClock {
    start: Option<Instant>,
    n: u64,
}

/// The inference thread's state.
pub(super) struct InferenceLoop {
    engine: Box<dyn Animator + Send>,
    portraits: Portraits,
    /// The engine's square frame side.
    side: u32,
    crop: Crop,
    passthrough: bool,
    mirror_output: bool,
    report_keypoints: bool,
    /// Whether a driving frame arrived since the last (re)calibration.
    got_frame: bool,
    fps: f64,
    idle: IdleClock,
    outputs: Outputs,
    shared: Shared,
}

impl InferenceLoop {
    /// Prepares the first portrait and sends its still at once (before anything slow: virtual
    /// cameras get a frame immediately), then lets the engine prepare it.
    pub(super) fn new(
        mut engine: Box<dyn Animator + Send>,
        options: PipelineOptions,
        outputs: Outputs,
        shared: Shared,
    ) -> Result<Self, PipelineError> {
        let (h, _) = engine.frame_size();
        let side = h as u32;
        let mut portraits = Portraits::new(side);
        let (id, image) = &options.portrait;
        let first = portraits.select(*id, image)?.clone();
        publish_still(&first.still, &outputs, &shared, options.mirror_output);
        engine.select_portrait(*id, &first.tensor)?;
        Ok(Self {
            engine,
            portraits,
            side,
            crop: options.crop,
            passthrough: options.passthrough,
            mirror_output: options.mirror_output,
            report_keypoints: false,
            got_frame: false,
            fps: options.fps.max(1.0),
            idle: IdleClock::default(),
            outputs,
            shared,
        })
    }

    /// The thread's body: commands, then the next driving frame or an idle tick, until stopped.
    pub(super) fn run(
        mut self,
        frames: LatestReceiver<Frame>,
        control: Receiver<Control>,
    ) -> Result<(), PipelineError> {
        let period = Duration::from_secs_f64(1.0 / self.fps);
        while !self.shared.stopped() {
            while let Ok(cmd) = control.try_recv() {
                self.apply(cmd)?;
            }
            let live = self.shared.live.load(Ordering::Relaxed);
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

    /// Applies one command.
    pub(super) fn apply(&mut self, cmd: Control) -> Result<(), PipelineError> {
        match cmd {
            Control::Recalibrate => {
                self.engine.recalibrate();
                self.got_frame = false;
            }
            Control::SetPortrait { id, image } => {
                let portrait = self.portraits.select(id, &image)?;
                self.engine.select_portrait(id, &portrait.tensor)?;
                self.engine.recalibrate();
                self.got_frame = false;
            }
            Control::Passthrough(p) => self.passthrough = p,
            Control::SetCrop(c) => self.crop = c.clamped(),
            Control::MirrorOutput(m) => self.mirror_output = m,
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
                if let Err(e) = self.engine.set_transfer(relative, adapt_scale) {
                    // Refused options are reported and the run goes on.
                    tracing::warn!("{e}");
                    self.shared.stats(|s| s.notice = Some(e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// A driving frame: crop it to the model's square, animate (or pass it through), publish.
    pub(super) fn on_frame(&mut self, frame: Frame, dropped: u64) -> Result<(), PipelineError> {
        self.got_frame = true;
        let t = Instant::now();
        let square = crop_resize(&frame, &self.crop, self.side);
        self.shared.stats(|s| s.record_framing(t.elapsed()));
        let t = Instant::now();
        let (size, rgb) = if self.passthrough {
            (Size::new(self.side, self.side), square)
        } else {
            let side = self.side as usize;
            let input = rgb8_to_tensor(&square, side, side).map_err(EngineError::from)?;
            let calibrated = self.engine.is_calibrated();
            let result = self.engine.animate(&input)?;
            if !calibrated && self.engine.is_calibrated() {
                tracing::info!("calibrated on frame {}", frame.seq);
                self.shared.stats(|s| s.calibrations += 1);
            }
            if self.report_keypoints
                && let Ok(mut k) = self.shared.keypoints.lock()
            {
                *k = self.engine.keypoint_view();
            }
            to_rgb(&result)?
        };
        self.shared
            .stats(|s| s.record_inference(t.elapsed(), dropped));
        self.publish(
            Frame {
                seq: frame.seq,
                captured_at: frame.captured_at,
                size,
                rgb: Arc::new(rgb),
            },
            true,
        );
        Ok(())
    }

    /// No driving frame within a frame period: idle motion without a source (paced at `fps`:
    /// the idle pose of frame n is at n / fps), the still portrait while waiting for the first
    /// frame of one.
    pub(super) fn on_idle(&mut self, live: bool, period: Duration) -> Result<(), PipelineError> {
        if live {
            if !self.got_frame
                && let Some(p) = self.portraits.current()
            {
                publish_still(&p.still, &self.outputs, &self.shared, self.mirror_output);
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
        let t = Instant::now();
        let result = self.engine.animate_idle(self.idle.n as f64 / self.fps)?;
        let (size, rgb) = to_rgb(&result)?;
        self.shared.stats(|s| s.record_inference(t.elapsed(), 0));
        if self.report_keypoints
            && let Ok(mut k) = self.shared.keypoints.lock()
        {
            *k = None;
        }
        let frame = Frame {
            seq: self.idle.n,
            captured_at: t,
            size,
            rgb: Arc::new(rgb),
        };
        self.publish(frame, true);
        // A slow engine skips poses rather than falling behind.
        self.idle.n = self
            .idle
            .n
            .max((start.elapsed().as_secs_f64() * self.fps) as u64)
            + 1;
        Ok(())
    }

    /// Sends a frame to every sink.
    fn publish(&self, frame: Frame, live: bool) {
        publish(frame, live, &self.outputs, &self.shared, self.mirror_output);
    }
}

/// A portrait's still (marked as not calibrated), stamped now.
fn publish_still(still: &Frame, outputs: &Outputs, shared: &Shared, mirror: bool) {
    shared.stats(|s| s.record_still());
    let frame = Frame {
        captured_at: Instant::now(),
        ..still.clone()
    };
    publish(frame, false, outputs, shared, mirror);
}

/// Sends a frame to every sink (mirrored if asked), counting what their queues dropped.
fn publish(frame: Frame, live: bool, outputs: &Outputs, shared: &Shared, mirror: bool) {
    let frame = if mirror { mirrored(&frame) } else { frame };
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
fn to_rgb(t: &candle_core::Tensor) -> Result<(Size, Vec<u8>), EngineError> {
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
