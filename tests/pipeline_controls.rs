//! What the window asks of a running pipeline: switching the driving source (and falling back to
//! idle motion with the reason when a source fails to open), switching portraits by id, mirrored
//! output, motion-transfer options, and the preview of camera frames.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use common::live::{SIDE, counter, small_options, wait_for};
use marionette::capture::{CaptureError, FrameSource};
use marionette::channel::latest;
use marionette::engine::{Animator, EngineError};
use marionette::frame::{Frame, Size};
use marionette::output::{FrameSink, SinkError};
use marionette::pipeline::{Control, Pipeline, PipelineOptions, SourceFactory};

/// Idle motion is a flat grey of level 200; driving frames are echoed. Records what it is asked.
#[derive(Default)]
struct Log {
    portraits: Vec<u64>,
    transfers: Vec<(bool, bool)>,
}

struct Engine {
    log: Arc<Mutex<Log>>,
    calibrated: bool,
    /// The idle motion's grey level.
    idle: u8,
    side: usize,
}

impl Animator for Engine {
    fn name(&self) -> &'static str {
        "test"
    }
    fn frame_size(&self) -> (usize, usize) {
        (self.side, self.side)
    }
    fn recalibrate(&mut self) {
        self.calibrated = false;
    }
    fn is_calibrated(&self) -> bool {
        self.calibrated
    }
    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        self.calibrated = true;
        Ok(driving.clone())
    }
    fn animate_idle(&mut self, _: f64) -> Result<Tensor, EngineError> {
        let s = self.side;
        Ok(Tensor::full(
            self.idle as f32 / 255.0,
            (1, 3, s, s),
            &Device::Cpu,
        )?)
    }
    fn select_portrait(&mut self, id: u64, _: &Tensor) -> Result<(), EngineError> {
        self.log.lock().unwrap().portraits.push(id);
        Ok(())
    }
    fn keypoint_view(&self) -> Option<marionette::engine::KeypointView> {
        Some(marionette::engine::KeypointView {
            driving: vec![[0.5, -0.5]],
            portrait: vec![[0.25, 0.0]],
        })
    }
    fn set_transfer(&mut self, relative: bool, adapt_scale: bool) -> Result<(), EngineError> {
        self.log
            .lock()
            .unwrap()
            .transfers
            .push((relative, adapt_scale));
        if relative {
            Ok(())
        } else {
            Err(EngineError::Unsupported {
                engine: "test",
                what: "absolute motion transfer",
            })
        }
    }
}

fn engine() -> (Box<Engine>, Arc<Mutex<Log>>) {
    engine_of(200, SIDE as usize)
}

/// An engine whose idle motion is grey `idle`, rendering `side` x `side` frames.
fn engine_of(idle: u8, side: usize) -> (Box<Engine>, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    (
        Box::new(Engine {
            log: log.clone(),
            calibrated: false,
            idle,
            side,
        }),
        log,
    )
}

/// (seq, first pixel's red, last pixel's red) of the last frame written.
type Seen = Arc<Mutex<Option<(u64, u8, u8)>>>;

/// Keeps what the last write got.
struct Last(Seen);

impl FrameSink for Last {
    fn name(&self) -> String {
        "last".into()
    }
    fn write(&mut self, f: &Frame) -> Result<(), SinkError> {
        let first = f.rgb.first().copied().unwrap_or(0);
        let last = f.rgb[f.rgb.len() - 3];
        *self.0.lock().unwrap() = Some((f.seq, first, last));
        Ok(())
    }
}

fn failing() -> SourceFactory {
    Box::new(|| -> Result<Box<dyn FrameSource>, CaptureError> {
        Err(CaptureError::Camera {
            camera: "/dev/video7".into(),
            message: "no such device".into(),
        })
    })
}

/// Frames whose left half is black and right half white.
struct Halves(u64);

impl FrameSource for Halves {
    fn name(&self) -> String {
        "halves".into()
    }
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        std::thread::sleep(Duration::from_millis(10));
        self.0 += 1;
        let rgb: Vec<u8> = (0..SIDE * SIDE)
            .flat_map(|i| {
                let v = if i % SIDE < SIDE / 2 { 0 } else { 255 };
                [v, v, v]
            })
            .collect();
        Ok(Frame::new(self.0, Instant::now(), Size::new(SIDE, SIDE), rgb).expect("size"))
    }
}

fn last_level(last: &Seen) -> Option<u8> {
    last.lock().unwrap().map(|l| l.1)
}

#[test]
fn sources_switch_while_running_and_a_failing_one_falls_back_to_idle_motion() {
    let (engine, _) = engine();
    let last = Arc::new(Mutex::new(None));
    let (preview_tx, preview_rx) = latest::<Frame>();
    let pipeline = Pipeline::start(
        None,
        engine,
        vec![Box::new(Last(last.clone()))],
        PipelineOptions {
            preview: Some(preview_tx),
            ..small_options()
        },
    )
    .expect("the pipeline starts");
    // No source: idle motion.
    wait_for(
        "the still portrait",
        || last_level(&last) == Some(200),
        Duration::from_secs(5),
    );
    assert!(!pipeline.is_live());

    // A source: its frames (grey levels < 200 for the first frames) reach the output and the
    // preview.
    let made = Arc::new(AtomicU64::new(0));
    pipeline.set_source(Some(counter(made.clone(), Duration::from_millis(10))));
    wait_for(
        "live frames",
        || pipeline.is_live() && last_level(&last).is_some_and(|l| l < 100),
        Duration::from_secs(5),
    );
    assert!(pipeline.is_live());
    assert!(
        last_level(&last).is_some_and(|l| l < 100),
        "{:?}",
        last.lock()
    );
    let preview = preview_rx.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(preview.size, Size::new(SIDE, SIDE));

    // A source that fails to open: back to idle motion, with the reason, still running.
    pipeline.set_source(Some(failing()));
    wait_for(
        "the source's error",
        || pipeline.source_error().is_some(),
        Duration::from_secs(5),
    );
    let err = pipeline.source_error().unwrap();
    assert!(err.contains("/dev/video7"), "{err}");
    assert!(!pipeline.is_live());
    let made_then = made.load(Ordering::SeqCst);
    wait_for(
        "the still portrait again",
        || last_level(&last) == Some(200),
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        made.load(Ordering::SeqCst),
        made_then,
        "the old source was closed"
    );
    assert!(pipeline.is_running());

    // And a working source again clears the error.
    pipeline.set_source(Some(Box::new(
        || -> Result<Box<dyn FrameSource>, CaptureError> { Ok(Box::new(Halves(0))) },
    )));
    wait_for(
        "live frames from the new source",
        || pipeline.is_live(),
        Duration::from_secs(5),
    );
    assert!(pipeline.source_error().is_none());
    let exits = pipeline.join();
    assert!(exits.iter().all(|e| e.result.is_ok()), "{exits:?}");
}

#[test]
fn mirror_output_flips_what_the_sinks_get_and_keypoints_come_when_asked() {
    let (engine, _) = engine();
    let last = Arc::new(Mutex::new(None));
    let pipeline = Pipeline::start(
        Some(Box::new(
            || -> Result<Box<dyn FrameSource>, CaptureError> { Ok(Box::new(Halves(0))) },
        )),
        engine,
        vec![Box::new(Last(last.clone()))],
        small_options(),
    )
    .expect("the pipeline starts");
    let get = || *last.lock().unwrap();
    wait_for(
        "a frame",
        || get().is_some_and(|l| l.0 > 0),
        Duration::from_secs(5),
    );
    let (_, first, end) = get().unwrap();
    assert_eq!((first, end), (0, 255), "left black, right white");
    pipeline
        .control()
        .send(Control::MirrorOutput(true))
        .unwrap();
    wait_for(
        "a mirrored frame",
        || get().is_some_and(|l| l.1 == 255),
        Duration::from_secs(5),
    );
    let (_, first, end) = get().unwrap();
    assert_eq!((first, end), (255, 0), "mirrored");
    // Keypoints are read back only once asked for.
    assert_eq!(pipeline.keypoints(), None);
    pipeline
        .control()
        .send(Control::ReportKeypoints(true))
        .unwrap();
    wait_for(
        "keypoints",
        || pipeline.keypoints().is_some(),
        Duration::from_secs(5),
    );
    assert_eq!(pipeline.keypoints().unwrap().driving, vec![[0.5, -0.5]]);
    pipeline
        .control()
        .send(Control::ReportKeypoints(false))
        .unwrap();
    wait_for(
        "keypoints to stop",
        || pipeline.keypoints().is_none(),
        Duration::from_secs(5),
    );
    assert_eq!(pipeline.keypoints(), None);
    pipeline.join();
}

#[test]
fn portraits_switch_by_id_and_transfer_options_reach_the_engine() {
    let (engine, log) = engine();
    let pipeline = Pipeline::start(
        None,
        engine,
        vec![Box::new(marionette::output::NullSink::default())],
        PipelineOptions {
            portrait: (7, image::RgbImage::new(SIDE, SIDE)),
            ..small_options()
        },
    )
    .expect("the pipeline starts");
    let c = pipeline.control();
    let image = Arc::new(image::RgbImage::from_pixel(100, 60, image::Rgb([9, 9, 9])));
    c.send(Control::SetPortrait {
        id: 42,
        image: image.clone(),
    })
    .unwrap();
    c.send(Control::SetPortrait { id: 7, image }).unwrap();
    c.send(Control::Transfer {
        relative: true,
        adapt_scale: false,
    })
    .unwrap();
    c.send(Control::Transfer {
        relative: false,
        adapt_scale: true,
    })
    .unwrap();
    let notice = || pipeline.stats().expect("stats").notice;
    wait_for("the notice", || notice().is_some(), Duration::from_secs(5));
    let l = log.lock().unwrap();
    // The start portrait under its given id, then by id (any size: it is cropped and resized).
    assert_eq!(l.portraits, vec![7, 42, 7]);
    // The start's options (relative, adapt scale), then the two sent.
    assert_eq!(
        l.transfers,
        vec![(true, true), (true, false), (false, true)]
    );
    drop(l);
    let n = notice().unwrap();
    assert!(n.contains("absolute"), "{n}");
    // A refused option is reported, not fatal.
    assert!(pipeline.is_running());
    let exits = pipeline.join();
    assert!(exits.iter().all(|e| e.result.is_ok()), "{exits:?}");
}

#[test]
fn an_engine_handed_over_runs_with_the_portrait_and_options_in_use() {
    let (first, _) = engine();
    let seen: Seen = Arc::default();
    let pipeline = Pipeline::start(
        None,
        first,
        vec![Box::new(Last(seen.clone()))],
        PipelineOptions {
            portrait: (7, image::RgbImage::new(SIDE, SIDE)),
            ..small_options()
        },
    )
    .expect("the pipeline starts");
    let c = pipeline.control();
    let level = || last_level(&seen);
    wait_for(
        "the first engine's idle motion",
        || level() == Some(200),
        Duration::from_secs(10),
    );
    c.send(Control::SetPortrait {
        id: 42,
        image: Arc::new(image::RgbImage::new(SIDE, SIDE)),
    })
    .unwrap();
    c.send(Control::Transfer {
        relative: true,
        adapt_scale: false,
    })
    .unwrap();

    // An engine of another frame size is refused, and the run goes on with the first.
    let (wrong, wrong_log) = engine_of(10, SIDE as usize * 2);
    c.send(Control::SetEngine(
        marionette::pipeline::EngineHandoff::new(wrong),
    ))
    .unwrap();
    let notice = || pipeline.stats().expect("stats").notice;
    wait_for("the refusal", || notice().is_some(), Duration::from_secs(5));
    let n = notice().unwrap();
    assert!(n.contains("restart"), "{n}");
    assert!(wrong_log.lock().unwrap().portraits.is_empty());
    assert_eq!(level(), Some(200));

    // The second engine takes over with the portrait and options in use.
    let (second, log) = engine_of(60, SIDE as usize);
    c.send(Control::SetEngine(
        marionette::pipeline::EngineHandoff::new(second),
    ))
    .unwrap();
    wait_for(
        "the second engine's idle motion",
        || level() == Some(60),
        Duration::from_secs(10),
    );
    let l = log.lock().unwrap();
    assert_eq!(l.portraits, vec![42]);
    assert_eq!(l.transfers, vec![(true, false)]);
    drop(l);
    let exits = pipeline.join();
    assert!(exits.iter().all(|e| e.result.is_ok()), "{exits:?}");
}

/// Counts writes; fails from write `fail_from` on.
struct FakeDevice {
    writes: Arc<AtomicU64>,
    fail_from: u64,
}

impl FrameSink for FakeDevice {
    fn name(&self) -> String {
        "device".into()
    }
    fn write(&mut self, _: &Frame) -> Result<(), SinkError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_from {
            return Err(SinkError::Device {
                path: "/dev/video10".into(),
                message: "No such device (module unloaded)".into(),
            });
        }
        Ok(())
    }
}

#[test]
fn the_virtual_camera_output_is_switched_while_running_and_a_failing_device_is_closed() {
    use marionette::output::switch::SwitchableSink;
    let (engine, _) = engine();
    let (switch, handle) = SwitchableSink::new("vcam");
    let pipeline = Pipeline::start(None, engine, vec![Box::new(switch)], small_options())
        .expect("the pipeline starts");
    // Nothing open: frames are dropped quietly.
    std::thread::sleep(Duration::from_millis(100));
    assert!(handle.status().device.is_none());
    assert!(!handle.status().is_writing());

    let first = Arc::new(AtomicU64::new(0));
    handle.set(
        Some(Box::new(FakeDevice {
            writes: first.clone(),
            fail_from: u64::MAX,
        })),
        "/dev/video10 YUYV 640x480",
    );
    wait_for(
        "5 frames written",
        || handle.status().frames >= 5,
        Duration::from_secs(5),
    );
    let s = handle.status();
    assert_eq!(s.device.as_deref(), Some("/dev/video10 YUYV 640x480"));
    assert!(s.is_writing());

    // Another device: the first one gets nothing more.
    let second = Arc::new(AtomicU64::new(0));
    handle.set(
        Some(Box::new(FakeDevice {
            writes: second.clone(),
            fail_from: 4,
        })),
        "/dev/video11 I420 1280x720",
    );
    // It fails at its fourth write: closed and reported, the run goes on.
    wait_for(
        "the device's error",
        || handle.status().error.is_some(),
        Duration::from_secs(5),
    );
    let s = handle.status();
    assert!(s.device.is_none());
    assert!(
        s.error.as_deref().unwrap().contains("module unloaded"),
        "{s:?}"
    );
    let before = first.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(first.load(Ordering::SeqCst), before);
    assert_eq!(second.load(Ordering::SeqCst), 4);
    assert!(pipeline.is_running());
    let exits = pipeline.join();
    assert!(exits.iter().all(|e| e.result.is_ok()), "{exits:?}");
}
