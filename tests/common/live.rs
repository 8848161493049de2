//! Behaviour of the threads and queues, with sources, engines and sinks written for the test
//! through the public traits (a counting source, an engine that returns the driving frame after an
//! optional delay, sinks that record what they get or fail on purpose).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use marionette::capture::{CaptureError, FrameSource};
use marionette::engine::{Animator, EngineError};
use marionette::frame::{Frame, Size};
use marionette::output::{FrameSink, SinkError};
use marionette::pipeline::framing::Crop;
use marionette::pipeline::{PipelineOptions, SourceFactory};

pub const SIDE: u32 = 32;

/// Frames numbered 0, 1, 2, ... as fast as asked (optionally paced), each a flat grey whose level
/// encodes the number, so the output can be traced back to its input.
pub struct Counter {
    next: u64,
    made: Arc<AtomicU64>,
    interval: Duration,
}

impl FrameSource for Counter {
    fn name(&self) -> String {
        "counter".into()
    }
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        if !self.interval.is_zero() {
            std::thread::sleep(self.interval);
        }
        let seq = self.next;
        self.next += 1;
        self.made.fetch_add(1, Ordering::SeqCst);
        let level = (seq % 251) as u8;
        Ok(Frame::new(
            seq,
            Instant::now(),
            Size::new(SIDE, SIDE),
            vec![level; (SIDE * SIDE * 3) as usize],
        )
        .expect("frame size"))
    }
}

pub fn counter(made: Arc<AtomicU64>, interval: Duration) -> SourceFactory {
    Box::new(move || -> Result<Box<dyn FrameSource>, CaptureError> {
        Ok(Box::new(Counter {
            next: 0,
            made,
            interval,
        }))
    })
}

/// Returns the driving frame as the animated portrait, after `delay`.
pub struct Echo {
    delay: Duration,
    calibrated: bool,
}

impl Animator for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn frame_size(&self) -> (usize, usize) {
        (SIDE as usize, SIDE as usize)
    }
    fn recalibrate(&mut self) {
        self.calibrated = false;
    }
    fn is_calibrated(&self) -> bool {
        self.calibrated
    }
    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        std::thread::sleep(self.delay);
        self.calibrated = true;
        Ok(driving.clone())
    }
    fn animate_idle(&mut self, _: f64) -> Result<Tensor, EngineError> {
        Err(EngineError::NoSource)
    }
    fn select_portrait(&mut self, _: u64, _: &Tensor) -> Result<(), EngineError> {
        Ok(())
    }
}

pub fn echo(delay: Duration) -> Box<Echo> {
    Box::new(Echo {
        delay,
        calibrated: false,
    })
}

/// Records the sequence numbers and grey levels it is given, slowly if asked; fails on write
/// number `fail_at` if set.
pub struct Probe {
    pub seen: Arc<Mutex<Vec<(u64, u8)>>>,
    pub delay: Duration,
    pub fail_at: Option<usize>,
    pub writes: usize,
}

impl FrameSink for Probe {
    fn name(&self) -> String {
        "probe".into()
    }
    fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        self.writes += 1;
        if Some(self.writes) == self.fail_at {
            return Err(SinkError::Device {
                path: "probe".into(),
                message: "device unplugged".into(),
            });
        }
        std::thread::sleep(self.delay);
        let level = frame.rgb.first().copied().unwrap_or(0);
        if let Ok(mut s) = self.seen.lock() {
            s.push((frame.seq, level));
        }
        Ok(())
    }
}

pub fn small_options() -> PipelineOptions {
    PipelineOptions {
        portrait: (0, image::RgbImage::new(SIDE, SIDE)),
        crop: Crop::default(),
        passthrough: false,
        fps: 30.0,
        reopen: false,
        // These tests check pixels exactly; tests/watermark.rs checks the mark.
        watermark: false,
        ..PipelineOptions::default()
    }
}

/// `limit` times `MARIONETTE_TEST_TIME_SCALE` (default 1): how long a test waits for something a
/// loaded or emulated machine does slowly. Only waits are scaled; a passing test waits no longer.
pub fn patience(limit: Duration) -> Duration {
    let scale = std::env::var("MARIONETTE_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 1.0)
        .unwrap_or(1.0);
    limit.mul_f64(scale)
}

/// Waits until `done` holds, looking every 5 ms; fails the test, naming `what`, when it does not
/// within `limit` ([`patience`]-scaled).
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool, limit: Duration) {
    let limit = patience(limit);
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "waited {limit:?} for {what}, in vain");
        std::thread::sleep(Duration::from_millis(5));
    }
}
