//! Degrading instead of stalling: what the live loop does less of when the machine cannot keep
//! up, decided from what it measures.
//!
//! On a machine many times slower than ours (an emulated processor, a CPU quota, an old laptop),
//! the camera-rate work alone (decoding the driving video, cropping, the in-between frames) can
//! take every cycle, and the model, which runs at a lower priority so that it never slows that
//! work on a normal machine, would then never render: the portrait freezes. The governor keeps
//! the model progressing, in this order:
//!
//! 1. the camera is read no faster than its frames become outputs once the frames that do not
//!    (replaced before the model took them, or cropped for a model job it never took) cost more
//!    than [`MAX_WASTED_SHARE`] of the loop's time: [`Pace::capture_interval`];
//! 2. in-betweens are made on one camera frame in `every` (the virtual camera repeats the last
//!    output meanwhile), `every` doubling while the model has not delivered a keyframe for
//!    [`STARVED`], and halving again once keyframes come well within it; but a new output at
//!    least every [`MAX_INBETWEEN_GAP`], counted in time: when waiting for the next camera frame
//!    and then making an in-between (at what the last one cost) would overrun it, this frame
//!    gets one, as long as in-betweens take at most half the time;
//! 3. the face is looked for once a second instead of five times: [`Pace::face_period`];
//! 4. (in the inference loop) keyframes go off when the model renders a frame in less time than
//!    an in-between takes, so its frames are shown as they are.
//!
//! Nothing stops: the virtual camera is written on its own clock whatever this decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The model has not delivered for this long: make room for it (a keyframe at least every two
/// seconds is the aim, so this is below that).
pub const STARVED: Duration = Duration::from_millis(1500);

/// Camera frames that become no output may cost at most this share of the loop's time (their
/// decoding and cropping) before the camera is read less often. On our machines they cost about
/// 2 % (a 0.8 ms crop, 26 a second).
pub const MAX_WASTED_SHARE: f64 = 0.1;

/// The window rates and shares are measured over.
const SHARE_WINDOW: Duration = Duration::from_secs(2);

/// Keyframes coming at least this often let the in-betweens come back.
const HEALTHY: Duration = Duration::from_millis(800);

/// However slow the machine, an in-between at least this often (when camera frames come): the
/// portrait keeps following the camera between the model's frames.
const MAX_INBETWEEN_GAP: Duration = Duration::from_millis(1500);

/// How often the governor may change a setting.
const SETTLE: Duration = Duration::from_secs(1);

/// The camera is read at least this often, however slow the rest.
const MIN_CAPTURE_FPS: f64 = 1.0;

/// Events per second over the last [`SHARE_WINDOW`] (`times` oldest first).
fn rate(times: &[Instant]) -> f64 {
    let now = Instant::now();
    let n = times.iter().filter(|t| now - **t < SHARE_WINDOW).count();
    n as f64 / SHARE_WINDOW.as_secs_f64()
}

/// Appends `t`, forgetting what is older than [`SHARE_WINDOW`].
fn push_window(times: &mut Vec<Instant>, t: Instant) {
    times.push(t);
    let keep_from = times.partition_point(|x| t - *x >= SHARE_WINDOW);
    times.drain(..keep_from);
}

/// The processor time this process has used, all its threads together (an in-between's warp
/// runs on the rayon pool).
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write; the clock exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The face thread's period when degraded (a face drifts slowly; the model needs the time).
pub const SLOW_FACE_PERIOD: Duration = Duration::from_secs(2);

/// Knobs the governor sets for the other threads (atomics: read on every frame, no lock).
#[derive(Debug, Default)]
pub struct Pace {
    /// Microseconds the capture thread leaves at least between reads (0: as fast as the source).
    capture_interval_us: AtomicU64,
    /// Milliseconds the face thread leaves at least between searches (0: its own rate).
    face_period_ms: AtomicU64,
}

impl Pace {
    /// The least time between two camera reads (zero: none).
    pub fn capture_interval(&self) -> Duration {
        Duration::from_micros(self.capture_interval_us.load(Ordering::Relaxed))
    }

    /// The least time between two face searches (zero: the face thread's own rate).
    pub fn face_period(&self) -> Duration {
        Duration::from_millis(self.face_period_ms.load(Ordering::Relaxed))
    }

    fn set_capture_interval(&self, d: Duration) {
        self.capture_interval_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn set_face_period(&self, d: Duration) {
        self.face_period_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }
}

/// The inference loop's governor.
#[derive(Debug)]
pub struct Governor {
    /// The camera's (and the outputs') frame rate.
    fps: f64,
    /// In-betweens on one camera frame in `every`.
    every: u32,
    /// Camera frames since the last in-between.
    since_inbetween: u32,
    /// The camera is read at most this often (frames a second); `fps` when not capped.
    capture_fps: f64,
    /// When the model last delivered, or when it was last given work while idle.
    last_keyframe: Instant,
    /// When the last output was made (an in-between or a keyframe).
    last_output: Instant,
    /// What the last in-between took to make (wall-clock time).
    inbetween_cost: Duration,
    /// The processor time the process used while the last in-between was made (less than the
    /// wall-clock time where a CPU quota or other programs hold the process back).
    inbetween_cpu: Duration,
    /// The last two intervals between keyframes.
    keyframe_gaps: [Duration; 2],
    last_change: Instant,
    /// When the loop took each of its last camera frames, and what cropping it cost.
    taken: Vec<(Instant, Duration)>,
    /// When each recent output was made from a camera frame (an in-between or a keyframe).
    useful: Vec<Instant>,
    /// The model is rendering keyframes (the starvation rule applies).
    waiting_for_model: bool,
}

impl Governor {
    /// A governor for a loop at `fps`, doing everything at first.
    pub fn new(fps: f64) -> Self {
        let now = Instant::now();
        Self {
            fps: fps.max(1.0),
            every: 1,
            since_inbetween: 0,
            capture_fps: fps.max(1.0),
            last_keyframe: now,
            last_output: now,
            inbetween_cost: Duration::ZERO,
            inbetween_cpu: Duration::ZERO,
            keyframe_gaps: [Duration::ZERO; 2],
            last_change: now,
            taken: Vec::new(),
            useful: Vec::new(),
            waiting_for_model: false,
        }
    }

    /// An in-between was made; it took `cost` of wall-clock time and `cpu` of processor time.
    pub fn on_inbetween(&mut self, cost: Duration, cpu: Duration) {
        let now = Instant::now();
        push_window(&mut self.useful, now);
        self.last_output = now;
        self.inbetween_cost = cost;
        self.inbetween_cpu = cpu;
    }

    /// A camera frame was taken; whether to make an in-between for it.
    pub fn inbetween_due(&mut self) -> bool {
        self.since_inbetween += 1;
        let now = Instant::now();
        // The time between the camera frames the loop takes, over the last window.
        let frame_gap = match (self.taken.first(), self.taken.last()) {
            (Some((a, _)), Some((b, _))) if self.taken.len() > 1 => {
                (*b - *a) / (self.taken.len() as u32 - 1)
            }
            _ => Duration::from_secs_f64(1.0 / self.capture_fps),
        };
        // Late: waiting for the next frame and then making an in-between would overrun the
        // gap. Only while in-betweens take at most half the processor, though: where one costs
        // more than the gap itself (an emulated processor), the model gets the other half.
        // (Processor time: under a CPU quota an in-between waits for its share, and that wait
        // takes no work from the model.)
        let since = now - self.last_output;
        let late = since + frame_gap + self.inbetween_cost >= MAX_INBETWEEN_GAP
            && since >= self.inbetween_cpu;
        if self.since_inbetween >= self.every || late {
            self.since_inbetween = 0;
            true
        } else {
            false
        }
    }

    /// The model delivered a keyframe (or, with keyframes off, an output).
    pub fn on_keyframe(&mut self) {
        let now = Instant::now();
        push_window(&mut self.useful, now);
        self.keyframe_gaps = [self.keyframe_gaps[1], now - self.last_keyframe];
        self.last_keyframe = now;
        self.last_output = now;
    }

    /// Whether keyframes are in use (the starvation rule watches the model only then).
    pub fn set_waiting_for_model(&mut self, on: bool) {
        if on && !self.waiting_for_model {
            // Count from now, not from the last keyframe of an earlier stretch.
            self.last_keyframe = Instant::now();
        }
        self.waiting_for_model = on;
    }

    /// Called once per camera frame the loop takes, with what cropping the previous one cost;
    /// adjusts the knobs in `pace`.
    pub fn on_frame(&mut self, cropping: Duration, pace: &Pace) {
        let now = Instant::now();
        self.taken.push((now, cropping));
        let keep_from = self
            .taken
            .partition_point(|(t, _)| now - *t >= SHARE_WINDOW);
        self.taken.drain(..keep_from);
        if now - self.last_change < SETTLE {
            return;
        }
        let mut changed = false;
        // 1. Read the camera no faster than its frames become outputs (with a margin, so that
        //    a machine that catches up is seen), once the others cost enough to matter.
        let taken = self.taken.len() as f64 / SHARE_WINDOW.as_secs_f64();
        let useful = rate(&self.useful);
        let cropping: Duration = self.taken.iter().map(|(_, c)| *c).sum();
        let wasted = (1.0 - useful / taken.max(1e-9)).max(0.0) * cropping.as_secs_f64()
            / SHARE_WINDOW.as_secs_f64();
        let capture_fps = if wasted > MAX_WASTED_SHARE && taken > 1.5 * useful + 1.0 {
            (1.5 * useful).clamp(MIN_CAPTURE_FPS, self.fps)
        } else {
            (self.capture_fps * 1.25).min(self.fps)
        };
        if (capture_fps - self.capture_fps).abs() > 0.5 {
            self.capture_fps = capture_fps;
            let interval = if capture_fps >= self.fps {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(1.0 / capture_fps)
            };
            pace.set_capture_interval(interval);
            changed = true;
        }
        // 2. Fewer in-betweens while the model is starved, more once it is not.
        let since = now - self.last_keyframe;
        let starved = self.waiting_for_model && since > STARVED;
        let max_every = ((self.capture_fps * MAX_INBETWEEN_GAP.as_secs_f64()) as u32).max(1);
        if starved && self.every < max_every {
            self.every = (self.every * 2).min(max_every);
            changed = true;
        } else if self.every > 1
            && since < HEALTHY
            && self.keyframe_gaps.iter().all(|g| *g < HEALTHY)
        {
            self.every /= 2;
            changed = true;
        }
        // 3. The face less often while anything is cut.
        pace.set_face_period(if self.degraded() {
            SLOW_FACE_PERIOD
        } else {
            Duration::ZERO
        });
        if changed {
            self.last_change = now;
        }
    }

    /// Whether anything is cut now.
    pub fn degraded(&self) -> bool {
        self.every > 1 || self.capture_fps < self.fps - 0.5
    }

    /// What is cut and why, in words (`None` when nothing is).
    pub fn describe(&self) -> Option<String> {
        if !self.degraded() {
            return None;
        }
        let mut cut = Vec::new();
        if self.capture_fps < self.fps - 0.5 {
            cut.push(format!("the camera read at {:.0} fps", self.capture_fps));
        }
        if self.every > 1 {
            cut.push(format!("in-betweens on 1 frame in {}", self.every));
        }
        cut.push(format!(
            "the face looked for every {} s",
            SLOW_FACE_PERIOD.as_secs()
        ));
        let model = match self.keyframe_gaps[1] {
            g if g.is_zero() => String::new(),
            g => format!(" (the model renders every {:.1} s)", g.as_secs_f64()),
        };
        Some(format!(
            "this machine cannot keep up: {}{model}",
            cut.join(", ")
        ))
    }

    /// In-betweens on one camera frame in this many.
    #[cfg(test)]
    pub fn every(&self) -> u32 {
        self.every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starved_model_gets_fewer_inbetweens() {
        let pace = Pace::default();
        let mut g = Governor::new(30.0);
        g.set_waiting_for_model(true);
        g.last_keyframe = Instant::now() - Duration::from_secs(3);
        g.last_change = Instant::now() - SETTLE;
        g.on_frame(Duration::ZERO, &pace);
        assert_eq!(g.every(), 2);
        assert!(
            g.describe().is_some_and(|d| d.contains("1 frame in 2")),
            "{:?}",
            g.describe()
        );
        // Only every second frame gets an in-between now.
        let due: Vec<bool> = (0..4).map(|_| g.inbetween_due()).collect();
        assert_eq!(due.iter().filter(|d| **d).count(), 2);
        // Keyframes coming quickly again bring them back.
        g.on_keyframe();
        g.on_keyframe();
        g.on_keyframe();
        g.last_change = Instant::now() - SETTLE;
        g.on_frame(Duration::ZERO, &pace);
        assert_eq!(g.every(), 1);
    }

    #[test]
    fn the_camera_is_read_no_faster_than_frames_become_outputs() {
        let pace = Pace::default();
        let mut g = Governor::new(30.0);
        let start = Instant::now() - Duration::from_millis(1900);
        // Thirty frames taken in two seconds, cropped in 40 ms each, four of which became
        // outputs.
        g.taken = (0..30)
            .map(|i| {
                (
                    start + Duration::from_millis(60 * i),
                    Duration::from_millis(40),
                )
            })
            .collect();
        g.useful = (0..4)
            .map(|i| start + Duration::from_millis(450 * i))
            .collect();
        g.last_change = Instant::now() - SETTLE;
        g.on_frame(Duration::from_millis(40), &pace);
        let interval = pace.capture_interval();
        assert!(
            interval >= Duration::from_millis(300) && interval <= Duration::from_millis(500),
            "{interval:?}"
        );
        assert_eq!(pace.face_period(), SLOW_FACE_PERIOD);
        // Every frame taken becoming an output again: the cap rises towards the camera's rate.
        let before = g.capture_fps;
        g.useful = g.taken.iter().map(|(t, _)| *t).collect();
        g.last_change = Instant::now() - SETTLE;
        g.on_frame(Duration::from_millis(40), &pace);
        assert!(g.capture_fps > before);
    }

    #[test]
    fn a_frame_that_would_otherwise_be_late_gets_an_in_between() {
        let mut g = Governor::new(30.0);
        g.set_waiting_for_model(true);
        g.every = 64;
        let start = Instant::now() - Duration::from_millis(900);
        // Camera frames taken every 300 ms, the last in-between 900 ms ago, costing 200 ms.
        g.taken = (0..4)
            .map(|i| (start + Duration::from_millis(300 * i), Duration::ZERO))
            .collect();
        g.last_output = start;
        g.inbetween_cost = Duration::from_millis(200);
        // 900 + 300 + 200 < 1500: the next frame still makes it in time.
        assert!(!g.inbetween_due());
        // 1100 + 300 + 200 >= 1500: this one must.
        g.last_output = start - Duration::from_millis(200);
        assert!(g.inbetween_due());
        g.on_inbetween(Duration::from_millis(200), Duration::from_millis(200));
        assert!(!g.inbetween_due());
        // A keyframe shown counts as an output too.
        g.last_output = start - Duration::from_millis(200);
        g.on_keyframe();
        assert!(!g.inbetween_due());
        // In-betweens that cost more than the gap (2 s of work each): one only once as long has
        // passed since the last output, so the model keeps half the processor.
        g.inbetween_cost = Duration::from_secs(2);
        g.inbetween_cpu = Duration::from_secs(2);
        g.last_output = Instant::now() - Duration::from_millis(1500);
        assert!(!g.inbetween_due());
        g.last_output = Instant::now() - Duration::from_millis(2100);
        assert!(g.inbetween_due());
        // The same wall-clock time spent mostly waiting for a CPU quota: not held back.
        g.inbetween_cpu = Duration::from_millis(100);
        g.last_output = Instant::now() - Duration::from_millis(1500);
        assert!(g.inbetween_due());
    }

    #[test]
    fn a_machine_that_keeps_up_is_left_alone() {
        let pace = Pace::default();
        let mut g = Governor::new(30.0);
        g.set_waiting_for_model(true);
        for _ in 0..90 {
            g.on_keyframe();
            g.on_frame(Duration::from_millis(1), &pace);
            assert!(g.inbetween_due());
            g.on_inbetween(Duration::from_millis(1), Duration::from_millis(1));
        }
        assert!(!g.degraded());
        assert_eq!(pace.capture_interval(), Duration::ZERO);
        assert_eq!(pace.face_period(), Duration::ZERO);
    }
}
