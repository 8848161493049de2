//! The model thread: owns the engine and renders whatever the inference loop hands it, newest
//! first, as fast as it can (a slow engine skips frames rather than falling behind). Its threads
//! run at a lower scheduling priority than the rest of the live loop, so that the camera-rate work
//! (in-between frames, the virtual camera) is never starved by the model's arithmetic.
//!
//! An engine that renders elsewhere (`run --remote`) takes new driving frames while earlier ones
//! are still on their way ([`Animator::submit`]); their frames are handed on as they come, each
//! with its own driving frame, so the in-betweens warp every keyframe from the pose it shows.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use crossbeam_channel::Receiver;

use super::{PipelineError, Shared};
use crate::channel::{LatestReceiver, LatestSender, RecvError};
use crate::engine::smoothing::Smoothing;
use crate::engine::{Animator, EngineError, FrameInfo, KeypointView, Submitted};
use crate::motion::file::{MotionFileError, MotionWriter};
use crate::motion::{FrameMotion, ReferenceMotion};

/// Where `run --record-motion` writes: a motion file ([`crate::motion::file`]).
pub type MotionFile = MotionWriter<std::io::BufWriter<std::fs::File>>;

/// Records the motion of every frame the model renders from a driving frame, with a reference
/// line at each calibration; times are seconds since the first recorded frame was captured.
/// A frame is only written after a reference line (the file's rule): one rendered before the
/// engine could give its reference is left out.
struct MotionLog {
    writer: MotionFile,
    start: Option<Instant>,
    /// A reference line has been written.
    referenced: bool,
}

/// A driving frame's motion as the motion file records it, read from the engine right after the
/// frame went in.
struct FrameRecord {
    motion: Option<FrameMotion>,
    reference: Option<ReferenceMotion>,
}

impl FrameRecord {
    fn of(engine: &dyn Animator) -> Self {
        Self {
            motion: engine.last_motion(),
            reference: engine.reference_motion(),
        }
    }
}

impl MotionLog {
    fn record(&mut self, r: &Rendered, record: FrameRecord) -> Result<(), MotionFileError> {
        if r.driving.is_none() {
            // Idle poses have no driving frame: nothing to record.
            return Ok(());
        }
        let Some(motion) = record.motion else {
            return Ok(());
        };
        let start = *self.start.get_or_insert(r.captured_at);
        let t = r.captured_at.saturating_duration_since(start).as_secs_f64();
        if (r.calibrated || !self.referenced)
            && let Some(reference) = record.reference
        {
            self.writer.reference(r.seq, t, &reference)?;
            self.referenced = true;
        }
        if !self.referenced {
            return Ok(());
        }
        self.writer.frame(r.seq, t, &motion)
    }
}

/// What to render.
pub(super) enum JobKind {
    /// A driving frame; `calibrate`: it becomes the reference frame first.
    Frame {
        /// Make this frame the reference D_1 before animating it.
        calibrate: bool,
    },
    /// The idle-motion pose at `t` seconds (`input` is unused).
    Idle {
        /// Seconds on the idle clock.
        t: f64,
    },
}

/// One piece of work for the model.
pub(super) struct Job {
    pub(super) seq: u64,
    pub(super) captured_at: Instant,
    /// The driving frame as the engine takes it.
    pub(super) input: Tensor,
    /// Its capture time and place in the camera frame.
    pub(super) info: FrameInfo,
    pub(super) kind: JobKind,
    /// Read the engine's keypoints back after rendering.
    pub(super) keypoints: bool,
}

/// What the model rendered.
pub(super) struct Rendered {
    pub(super) seq: u64,
    pub(super) captured_at: Instant,
    /// The driving frame it was rendered for (`None` for idle poses).
    pub(super) driving: Option<Tensor>,
    /// That frame's capture time and place in the camera frame.
    pub(super) info: FrameInfo,
    pub(super) output: Tensor,
    /// How long the engine took.
    pub(super) took: Duration,
    /// The engine calibrated on this frame.
    pub(super) calibrated: bool,
    pub(super) keypoints: Option<KeypointView>,
}

/// Commands that change the engine, applied between jobs in the order sent.
pub(super) enum ModelCommand {
    /// Select (and prepare, the first time) a portrait.
    SetPortrait { id: u64, tensor: Tensor },
    /// Relative or absolute motion, adapt scale.
    Transfer { relative: bool, adapt_scale: bool },
    /// Smoothing of the driving motion.
    Smoothing(Smoothing),
    /// A job that must not be skipped (the reference frame).
    Render(Job),
    /// Another engine from now on; the commands after it set it up.
    SetEngine(Box<dyn Animator + Send>),
}

/// Scheduling priority ("nice" value) of the model's threads; the rest of the live loop runs at 0.
/// At 5 the kernel gives a runnable loop thread three quarters of a core the model also wants
/// (CFS weights 1024 against 335).
pub const MODEL_NICE: i32 = 5;

/// Nice value of the camera-rate threads (capture, in-betweens): below the virtual camera's
/// writer (0, or -5 where the process may), so that on a machine with no time to spare the writer
/// is the one that runs when it is due.
pub const LOOP_NICE: i32 = 4;

/// Lowers the calling thread's scheduling priority to [`MODEL_NICE`] (Linux: the nice value is per
/// thread). Best effort: failing leaves the thread as it was.
pub(super) fn lower_priority() {
    set_nice(MODEL_NICE);
}

/// Asks the kernel for short time slices for the calling thread (Linux 6.12 and later, EEVDF's
/// per-task slice through `sched_setattr`; unprivileged): a thread that wakes to write one frame
/// is then run soon after it wakes, ahead of threads in long computations. Best effort: older
/// kernels refuse, and the thread keeps the default slice. Returns whether it took.
pub(super) fn short_slices() -> bool {
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` (include/uapi/linux/sched/types.h), its first version (48 bytes).
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        // SAFETY: getpriority only reads its arguments.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice,
            priority: 0,
            // 0.1 ms, the shortest slice the kernel takes.
            runtime: 100_000,
            deadline: 0,
            period: 0,
        };
        // SAFETY: sched_setattr reads `attr` (alive for the call, of the size it states) and
        // changes only the calling thread (pid 0).
        unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Sets the calling thread's nice value (Linux: per thread). Best effort: a value the process may
/// not take (below its limit, without the privilege) leaves the thread as it was; returns whether
/// it took.
pub(super) fn set_nice(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; `gettid` has no preconditions.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// The model thread's body; `motion` records the rendered frames' motion.
pub(super) fn model_thread(
    engine: Box<dyn Animator + Send>,
    jobs: LatestReceiver<Job>,
    commands: Receiver<ModelCommand>,
    results: LatestSender<Rendered>,
    shared: &Shared,
    motion: Option<MotionFile>,
) -> Result<(), PipelineError> {
    let mut log = motion.map(|writer| MotionLog {
        writer,
        start: None,
        referenced: false,
    });
    let result = model_loop(engine, jobs, commands, results, shared, &mut log);
    let finished = match log {
        Some(log) => log.writer.finish().map(drop),
        None => Ok(()),
    };
    result?;
    Ok(finished?)
}

/// How late a frame in flight that has come may be handed on: the loop's poll while frames are
/// on their way.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(5);

/// Driving frames in flight the loop remembers at most; the engine skips older ones anyway.
const MAX_IN_FLIGHT: usize = 64;

fn model_loop(
    mut engine: Box<dyn Animator + Send>,
    jobs: LatestReceiver<Job>,
    commands: Receiver<ModelCommand>,
    results: LatestSender<Rendered>,
    shared: &Shared,
    log: &mut Option<MotionLog>,
) -> Result<(), PipelineError> {
    lower_priority();
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("model-{i}"))
        .start_handler(|_| lower_priority())
        .build()
        .map_err(|e| PipelineError::Spawn {
            thread: "model pool".into(),
            source: std::io::Error::other(e),
        })?;
    let poll = Duration::from_millis(20);
    let mut out = Outlet {
        results,
        log,
        shared,
        in_flight: VecDeque::new(),
        engine_notice: None,
    };
    // Applies every queued command; false when the inference thread is gone.
    let drain = |engine: &mut Box<dyn Animator + Send>, out: &mut Outlet| {
        while let Ok(cmd) = commands.try_recv() {
            if let ModelCommand::SetEngine(new) = cmd {
                *engine = new;
                out.in_flight.clear();
                out.forget_engine();
                continue;
            }
            let started = pool.install(|| apply(engine.as_mut(), cmd, shared))?;
            if let Some(started) = started
                && !out.take(engine.as_ref(), started)?
            {
                return Ok(false);
            }
        }
        Ok::<bool, PipelineError>(true)
    };
    while !shared.stopped() {
        if !drain(&mut engine, &mut out)? {
            return Ok(());
        }
        if !out.in_flight.is_empty() {
            let more = engine.wants_more();
            let wait = if more { Duration::ZERO } else { IN_FLIGHT_POLL };
            if let Some(f) = pool.install(|| engine.finished(wait))? {
                if !out.arrived(engine.as_ref(), f.tag, f.frame)? {
                    return Ok(());
                }
                continue;
            }
            if !more {
                continue;
            }
        }
        let wait = if out.in_flight.is_empty() {
            poll
        } else {
            IN_FLIGHT_POLL
        };
        let job = match jobs.recv_timeout(wait) {
            Ok(job) => job,
            Err(RecvError::Timeout) => continue,
            Err(RecvError::Disconnected) => return Ok(()),
        };
        // Commands sent before this job (the portrait, the reference frame) come first.
        if !drain(&mut engine, &mut out)? {
            return Ok(());
        }
        let record = out.log.is_some();
        let started = pool.install(|| start(engine.as_mut(), job, record, false))?;
        if !out.take(engine.as_ref(), started)? {
            return Ok(());
        }
    }
    Ok(())
}

/// A driving frame an engine took to render elsewhere, waiting for its frame.
struct InFlight {
    seq: u64,
    captured_at: Instant,
    driving: Tensor,
    info: FrameInfo,
    submitted: Instant,
    calibrated: bool,
    keypoints: Option<KeypointView>,
    /// Its motion, for the motion file (when one is written).
    record: Option<FrameRecord>,
}

/// What became of a job.
enum Started {
    Done(Rendered),
    InFlight(InFlight),
}

/// Where rendered frames go.
struct Outlet<'a> {
    results: LatestSender<Rendered>,
    log: &'a mut Option<MotionLog>,
    shared: &'a Shared,
    /// Driving frames whose frames are on their way, oldest first.
    in_flight: VecDeque<InFlight>,
    /// The last notice the engine gave, while it is the one shown.
    engine_notice: Option<String>,
}

impl Outlet<'_> {
    /// The engine was replaced: what it said and its remote figures no longer hold (a notice
    /// someone else gave since stays).
    fn forget_engine(&mut self) {
        let said = self.engine_notice.take();
        self.shared.stats(|s| {
            s.remote = None;
            if said.is_some() && s.notice == said {
                s.notice = None;
            }
        });
    }

    /// Records `r` in the motion file (its motion `record`, else the engine's last), counts a
    /// calibration, and queues it for the inference thread; false when that thread is gone.
    /// Calibrations are counted here, not where the frame is taken: the queue keeps only the
    /// newest frame, and on a slow machine the reference frame is often replaced by the next
    /// one before it is read.
    fn deliver(
        &mut self,
        engine: &dyn Animator,
        r: Rendered,
        record: Option<FrameRecord>,
    ) -> Result<bool, PipelineError> {
        if r.driving.is_some() {
            // Frames in flight from before this one that have not come never will.
            while self.in_flight.front().is_some_and(|w| w.seq <= r.seq) {
                self.in_flight.pop_front();
            }
        }
        if let Some(log) = self.log.as_mut() {
            let record = record.unwrap_or_else(|| FrameRecord::of(engine));
            log.record(&r, record)?;
        }
        if r.calibrated {
            tracing::info!("calibrated on frame {}", r.seq);
            self.shared.stats(|s| s.calibrations += 1);
        }
        if let Some(remote) = engine.remote_stats() {
            self.shared.stats(|s| s.remote = Some(remote));
        }
        if let Some(notice) = engine.take_notice() {
            self.shared.stats(|s| s.notice = Some(notice.clone()));
            self.engine_notice = Some(notice);
        }
        Ok(self.results.send(r).is_ok())
    }

    /// A started job: delivered when it was rendered at once, else remembered until its frame
    /// comes; false when the inference thread is gone.
    fn take(&mut self, engine: &dyn Animator, started: Started) -> Result<bool, PipelineError> {
        match started {
            Started::Done(r) => self.deliver(engine, r, None),
            Started::InFlight(w) => {
                if self.in_flight.len() >= MAX_IN_FLIGHT {
                    self.in_flight.pop_front();
                }
                self.in_flight.push_back(w);
                Ok(true)
            }
        }
    }

    /// The frame of the driving frame in flight tagged `tag` has come: delivers it with its
    /// driving frame. A tag no longer remembered is dropped.
    fn arrived(
        &mut self,
        engine: &dyn Animator,
        tag: u64,
        output: Tensor,
    ) -> Result<bool, PipelineError> {
        let Some(i) = self.in_flight.iter().position(|w| w.seq == tag) else {
            return Ok(true);
        };
        let Some(w) = self.in_flight.remove(i) else {
            return Ok(true);
        };
        let r = Rendered {
            seq: w.seq,
            captured_at: w.captured_at,
            driving: Some(w.driving),
            info: w.info,
            output,
            took: w.submitted.elapsed(),
            calibrated: w.calibrated,
            keypoints: w.keypoints,
        };
        self.deliver(engine, r, w.record)
    }
}

/// Applies a command; a [`ModelCommand::Render`] gives its rendered frame, rendered at once
/// whatever the engine (the reference frame must not be skipped).
fn apply(
    engine: &mut dyn Animator,
    cmd: ModelCommand,
    shared: &Shared,
) -> Result<Option<Started>, EngineError> {
    match cmd {
        ModelCommand::Render(job) => return start(engine, job, false, true).map(Some),
        ModelCommand::SetPortrait { id, tensor } => {
            engine.select_portrait(id, &tensor)?;
            engine.recalibrate();
        }
        ModelCommand::Transfer {
            relative,
            adapt_scale,
        } => {
            if let Err(e) = engine.set_transfer(relative, adapt_scale) {
                // Refused options are reported and the run goes on.
                tracing::warn!("{e}");
                shared.stats(|s| s.notice = Some(e.to_string()));
            }
        }
        ModelCommand::Smoothing(smoothing) => engine.set_smoothing(smoothing),
        // Swapped by the loop, which owns the engine.
        ModelCommand::SetEngine(_) => {}
    }
    Ok(None)
}

/// Submits a driving frame, or renders it at once with `now`; an idle pose is rendered at once.
/// `record`: read a frame's motion for the motion file when it goes in flight.
fn start(
    engine: &mut dyn Animator,
    job: Job,
    record: bool,
    now: bool,
) -> Result<Started, EngineError> {
    let t = Instant::now();
    let calibrate = match job.kind {
        JobKind::Frame { calibrate } => calibrate,
        JobKind::Idle { t: at } => {
            return Ok(Started::Done(Rendered {
                seq: job.seq,
                captured_at: job.captured_at,
                driving: None,
                info: job.info,
                output: engine.animate_idle(at)?,
                took: t.elapsed(),
                calibrated: false,
                keypoints: None,
            }));
        }
    };
    if calibrate {
        engine.recalibrate();
    }
    let was = engine.is_calibrated();
    let submitted = if now {
        Submitted::Rendered(engine.animate_with(&job.input, &job.info)?)
    } else {
        engine.submit(&job.input, &job.info, job.seq)?
    };
    let calibrated = !was && engine.is_calibrated();
    let keypoints = if job.keypoints {
        engine.keypoint_view()
    } else {
        None
    };
    Ok(match submitted {
        Submitted::Rendered(output) => Started::Done(Rendered {
            seq: job.seq,
            captured_at: job.captured_at,
            driving: Some(job.input),
            info: job.info,
            output,
            took: t.elapsed(),
            calibrated,
            keypoints,
        }),
        Submitted::Sent => Started::InFlight(InFlight {
            seq: job.seq,
            captured_at: job.captured_at,
            driving: job.input,
            info: job.info,
            submitted: t,
            calibrated,
            keypoints,
            record: record.then(|| FrameRecord::of(engine)),
        }),
    })
}
