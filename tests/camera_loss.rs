//! A camera that is lost and comes back, through the pipeline: the outputs keep getting frames
//! throughout (idle motion while it is gone), the source is reopened with back-off, and the run
//! recalibrates on the camera's first frame after its return. The same with real drivers (vivid
//! unplugged and plugged back in a VM) is in tests/live_vm.rs.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use common::live::{SIDE, patience, small_options, wait_for};
use marionette::capture::{CaptureError, FrameSource};
use marionette::engine::{Animator, EngineError};
use marionette::frame::{Frame, Size};
use marionette::output::{FrameSink, SinkError};
use marionette::pipeline::{Pipeline, PipelineOptions};

/// What the flaky camera does, shared with the test.
#[derive(Default)]
struct Plug {
    /// Unplugged: reads and reopens fail.
    unplugged: bool,
    reopens: u32,
    reads_failed: u32,
}

/// Frames of grey level 200 every 10 ms while plugged in; a camera error while not.
struct FlakyCamera {
    plug: Arc<Mutex<Plug>>,
    seq: u64,
    broken: bool,
}

impl FrameSource for FlakyCamera {
    fn name(&self) -> String {
        "camera:flaky".into()
    }
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        std::thread::sleep(Duration::from_millis(10));
        let unplugged = self.plug.lock().map(|p| p.unplugged).unwrap_or(true);
        if unplugged || self.broken {
            self.broken = true;
            if let Ok(mut p) = self.plug.lock() {
                p.reads_failed += 1;
            }
            return Err(CaptureError::Camera {
                camera: "flaky".into(),
                message: "frame read failed (No such device)".into(),
            });
        }
        self.seq += 1;
        Ok(Frame::new(
            self.seq,
            Instant::now(),
            Size::new(SIDE, SIDE),
            vec![200; (SIDE * SIDE * 3) as usize],
        )
        .expect("frame"))
    }
    fn reopen(&mut self) -> Result<(), CaptureError> {
        let mut p = self
            .plug
            .lock()
            .map_err(|_| CaptureError::Empty("lock".into()))?;
        p.reopens += 1;
        if p.unplugged {
            return Err(CaptureError::Camera {
                camera: "flaky".into(),
                message: "cannot open it".into(),
            });
        }
        self.broken = false;
        Ok(())
    }
}

/// Returns the driving frame; idle motion is a flat grey of level 50.
struct Engine {
    calibrated: bool,
    recalibrations: Arc<Mutex<u32>>,
}

impl Animator for Engine {
    fn name(&self) -> &'static str {
        "echo-idle"
    }
    fn frame_size(&self) -> (usize, usize) {
        (SIDE as usize, SIDE as usize)
    }
    fn recalibrate(&mut self) {
        self.calibrated = false;
        if let Ok(mut n) = self.recalibrations.lock() {
            *n += 1;
        }
    }
    fn is_calibrated(&self) -> bool {
        self.calibrated
    }
    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        self.calibrated = true;
        Ok(driving.clone())
    }
    fn animate_idle(&mut self, _: f64) -> Result<Tensor, EngineError> {
        Ok(Tensor::full(
            50f32 / 255.0,
            (1, 3, SIDE as usize, SIDE as usize),
            &Device::Cpu,
        )?)
    }
    fn select_portrait(&mut self, _: u64, _: &Tensor) -> Result<(), EngineError> {
        Ok(())
    }
}

/// Notes when each frame arrived and its grey level.
struct Timeline {
    seen: Arc<Mutex<Vec<(Instant, u8)>>>,
}

impl FrameSink for Timeline {
    fn name(&self) -> String {
        "timeline".into()
    }
    fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        if let Ok(mut s) = self.seen.lock() {
            s.push((Instant::now(), frame.rgb.first().copied().unwrap_or(0)));
        }
        Ok(())
    }
    // Like a virtual camera: the last frame again when nothing new comes.
    fn repeats(&self) -> bool {
        true
    }
}

#[test]
fn a_lost_camera_gives_idle_motion_then_is_reopened_and_recalibrated() {
    let plug = Arc::new(Mutex::new(Plug::default()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recalibrations = Arc::new(Mutex::new(0));
    let camera_plug = plug.clone();
    let factory = Box::new(move || -> Result<Box<dyn FrameSource>, CaptureError> {
        Ok(Box::new(FlakyCamera {
            plug: camera_plug,
            seq: 0,
            broken: false,
        }))
    });
    let options = PipelineOptions {
        reopen: true,
        ..small_options()
    };
    let pipeline = Pipeline::start(
        Some(factory),
        Box::new(Engine {
            calibrated: false,
            recalibrations: recalibrations.clone(),
        }),
        vec![Box::new(Timeline { seen: seen.clone() })],
        options,
    )
    .expect("the pipeline starts");
    let level_count = |level: u8| {
        seen.lock()
            .map(|s| s.iter().filter(|(_, l)| *l == level).count())
            .unwrap_or(0)
    };
    // Plugged in: camera frames.
    wait_for(
        "20 camera frames",
        || level_count(200) >= 20,
        Duration::from_secs(10),
    );
    assert!(pipeline.is_live());
    // The start's set-up (portrait, transfer options) may recalibrate; count from here.
    let recalibrated_before = *recalibrations.lock().unwrap();
    let unplugged_at = Instant::now();
    plug.lock().unwrap().unplugged = true;
    // Gone: idle motion within a second.
    wait_for(
        "idle motion while the camera is gone",
        || level_count(50) >= 20,
        Duration::from_secs(10),
    );
    assert!(!pipeline.is_live());
    assert!(pipeline.source_error().is_some());
    std::thread::sleep(Duration::from_millis(1500));
    let before = level_count(200);
    plug.lock().unwrap().unplugged = false;
    let replugged_at = Instant::now();
    // Back: camera frames again (reopened after the back-off, at most 4 s).
    wait_for(
        "camera frames again after the replug",
        || level_count(200) >= before + 20,
        Duration::from_secs(20),
    );
    let back_after = replugged_at.elapsed();
    let exits = pipeline.join();
    for e in &exits {
        assert!(e.result.is_ok(), "{} ended with {:?}", e.thread, e.result);
    }
    // The back-off tops out at 4 s: back within that and a margin a busy machine meets.
    assert!(
        back_after < patience(Duration::from_secs(10)),
        "back after {back_after:?}"
    );
    let p = plug.lock().unwrap();
    assert!(p.reopens >= 2, "{} reopens", p.reopens);
    // The output never went silent: frames every 33 ms, and no gap of a second even on a
    // machine busy with other work.
    let s = seen.lock().unwrap();
    let worst = s
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    assert!(
        worst < patience(Duration::from_secs(1)),
        "a gap of {worst:?}"
    );
    // Camera frames, then idle, then camera frames again.
    let after_unplug: Vec<u8> = s
        .iter()
        .filter(|(t, _)| *t > unplugged_at + Duration::from_millis(500))
        .map(|(_, l)| *l)
        .collect();
    let first_idle = after_unplug.iter().position(|&l| l == 50);
    let back = after_unplug.iter().rposition(|&l| l == 50);
    assert!(first_idle.is_some() && back.is_some_and(|b| b + 1 < after_unplug.len()));
    // Recalibrated once, on the way back.
    assert_eq!(*recalibrations.lock().unwrap(), recalibrated_before + 1);
}
