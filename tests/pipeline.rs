//! The live pipeline's threads through its public interface, with the real FOMM engine (tiny
//! fixture), a real frame source and a real recorder.

mod common;

use std::time::{Duration, Instant};

use candle_core::Device;
use common::fixture;
use marionette::capture::{CaptureError, FolderSource, FrameSource};
use marionette::engine::fomm::FommAnimator;
use marionette::model::checkpoint::Checkpoint;
use marionette::model::config::FommConfig;
use marionette::model::fomm::Fomm;
use marionette::model::motion_transfer::TransferOptions;
use marionette::output::{FrameSink, Recorder};
use marionette::pipeline::framing::Crop;
use marionette::pipeline::runner::{Pipeline, PipelineOptions};

fn engine() -> Box<FommAnimator> {
    let config = FommConfig::from_yaml_file(&fixture("tiny.yaml")).unwrap();
    let ckpt = Checkpoint::load(&fixture("tiny-legacy.pth.tar")).unwrap();
    Box::new(FommAnimator::new(
        Fomm::from_checkpoint(&config, &ckpt, "tiny", &Device::Cpu).unwrap(),
        TransferOptions::default(),
    ))
}

fn options() -> PipelineOptions {
    let portrait = image::open(fixture("tiny-input-source.png"))
        .unwrap()
        .to_rgb8();
    PipelineOptions {
        portraits: vec![portrait],
        avatar: 0,
        crop: Crop::default(),
        passthrough: false,
        fps: 30.0,
        reopen: false,
    }
}

#[test]
fn frames_flow_from_source_to_recorder_and_shutdown_is_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let driving = tmp.path().join("driving");
    std::fs::create_dir_all(&driving).unwrap();
    for n in 0..3 {
        std::fs::copy(
            fixture(&format!("tiny-input-driving{n}.png")),
            driving.join(format!("{n}.png")),
        )
        .unwrap();
    }
    let out = tmp.path().join("out");
    let recorder: Box<dyn FrameSink> = Box::new(Recorder::create(&out, 30.0).unwrap());
    let dir = driving.clone();
    let factory = Box::new(move || -> Result<Box<dyn FrameSource>, CaptureError> {
        Ok(Box::new(FolderSource::open(&dir, 30.0)?))
    });
    let pipeline = Pipeline::start(Some(factory), engine(), vec![recorder], options());
    std::thread::sleep(Duration::from_millis(2500));
    let stats = pipeline.stats.lock().unwrap().snapshot();
    let t = Instant::now();
    let exits = pipeline.join();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        t.elapsed()
    );
    for e in &exits {
        assert!(e.result.is_ok(), "{} ended with {:?}", e.thread, e.result);
    }
    let written = std::fs::read_dir(&out).unwrap().count();
    assert!(written >= 3, "recorded {written} frames");
    assert!(
        stats.frames_out >= 3 && stats.latency_ms_p50.is_finite(),
        "{stats:?}"
    );
}

#[test]
fn a_failing_source_ends_the_run_with_its_error() {
    let factory = Box::new(|| -> Result<Box<dyn FrameSource>, CaptureError> {
        Err(CaptureError::Empty("no such camera".into()))
    });
    let pipeline = Pipeline::start(Some(factory), engine(), Vec::new(), options());
    let t = Instant::now();
    while pipeline.is_running() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let exits = pipeline.join();
    let capture = exits
        .iter()
        .find(|e| e.thread == "capture")
        .expect("capture thread");
    let msg = format!("{:?}", capture.result);
    assert!(msg.contains("no such camera"), "{msg}");
}
