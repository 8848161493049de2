//! The live pipeline's threads through its public interface, with the real FOMM engine (tiny
//! fixture), a real frame source and a real recorder.

use crate::common;

use std::time::{Duration, Instant};

use candle_core::Device;
use common::fixture;
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::model::Fomm;
use fomm::motion_transfer::TransferOptions;
use marionette::capture::{CaptureError, FolderSource, FrameSource};
use marionette::engine::fomm::FommAnimator;
use marionette::output::{FrameSink, Recorder};
use marionette::pipeline::framing::Crop;
use marionette::pipeline::{Pipeline, PipelineOptions};

fn engine() -> Box<FommAnimator> {
    let config = FommConfig::from_yaml_file(&fixture("tiny.yaml")).unwrap();
    let ckpt = Checkpoint::load(&fixture("tiny-legacy.pth.tar")).unwrap();
    Box::new(FommAnimator::new(
        Fomm::from_checkpoint(&config, &ckpt, "tiny", &Device::Cpu, Default::default()).unwrap(),
        TransferOptions::default(),
    ))
}

fn options() -> PipelineOptions {
    let portrait = image::open(fixture("tiny-input-source.png"))
        .unwrap()
        .to_rgb8();
    PipelineOptions {
        portrait: (0, portrait),
        crop: Crop::default(),
        passthrough: false,
        fps: 30.0,
        reopen: false,
        ..PipelineOptions::default()
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
    let pipeline = Pipeline::start(Some(factory), engine(), vec![recorder], options())
        .expect("the pipeline starts");
    // The first frames wait for the portrait to be cached and the reference frame: on a busy
    // machine that takes seconds.
    let recorded = || std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    common::live::wait_for(
        "3 recorded frames",
        || recorded() >= 3,
        Duration::from_secs(30),
    );
    let stats = pipeline.stats().expect("stats");
    let t = Instant::now();
    let exits = pipeline.join();
    // Stopping takes well under a second; the margin is for a machine busy with other work.
    assert!(
        t.elapsed() < common::live::patience(Duration::from_secs(3)),
        "shutdown took {:?}",
        t.elapsed()
    );
    for e in &exits {
        assert!(e.result.is_ok(), "{} ended with {:?}", e.thread, e.result);
    }
    let written = recorded();
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
    let pipeline = Pipeline::start(Some(factory), engine(), Vec::new(), options())
        .expect("the pipeline starts");
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::live::{Probe, counter, echo, small_options, wait_for};
use marionette::output::NullSink;

/// A fast source, a slow engine and a slower sink: every frame that reaches the sink is newer than
/// the one before and carries its own content; frames replaced in the queues are counted, and every
/// frame made is either processed, counted as dropped, or still in a queue.
#[test]
fn frames_stay_in_order_and_every_stale_frame_is_counted() {
    let made = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let probe = Box::new(Probe {
        seen: seen.clone(),
        delay: Duration::from_millis(12),
        fail_at: None,
        writes: 0,
    });
    let pipeline = Pipeline::start(
        Some(counter(made.clone(), Duration::from_millis(1))),
        echo(Duration::from_millis(4)),
        vec![probe],
        small_options(),
    )
    .expect("the pipeline starts");
    wait_for(
        "60 frames at the sink",
        || seen.lock().map(|s| s.len() >= 60).unwrap_or(true),
        Duration::from_secs(20),
    );
    let exits = pipeline.join();
    for e in &exits {
        assert!(e.result.is_ok(), "{} ended with {:?}", e.thread, e.result);
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() >= 60,
        "only {} frames reached the sink",
        seen.len()
    );
    // Before the first driving frame the sink gets the still portrait (amber-marked, level 255).
    let seen: Vec<(u64, u8)> = seen.into_iter().skip_while(|s| s.1 == 255).collect();
    for w in seen.windows(2) {
        assert!(w[1].0 > w[0].0, "out of order: {:?} after {:?}", w[1], w[0]);
    }
    for (seq, level) in &seen {
        assert_eq!(
            *level,
            (seq % 251) as u8,
            "frame {seq} carries another frame's content"
        );
    }
    let gaps: u64 = seen.windows(2).map(|w| w[1].0 - w[0].0 - 1).sum();
    assert!(
        gaps > 0,
        "a fast source into a slow pipeline must skip frames"
    );
    // Accounting is checked through the stats at the end of the run.
    let made = made.load(Ordering::SeqCst);
    assert!(
        made > seen.len() as u64 * 2,
        "made {made}, saw {}",
        seen.len()
    );
}

/// The same accounting, read from the stats the `--stats` output prints.
#[test]
fn stats_count_processed_and_dropped_frames() {
    let made = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    // A sink slower than the model (60 ms a frame against 5): its queue must drop frames.
    let probe = Box::new(Probe {
        seen: seen.clone(),
        delay: Duration::from_millis(60),
        fail_at: None,
        writes: 0,
    });
    let pipeline = Pipeline::start(
        Some(counter(made.clone(), Duration::from_millis(1))),
        echo(Duration::from_millis(5)),
        vec![probe],
        small_options(),
    )
    .expect("the pipeline starts");
    wait_for(
        "400 frames made",
        || made.load(Ordering::SeqCst) >= 400,
        Duration::from_secs(20),
    );
    let (exits, s) = pipeline.join_with_stats();
    let s = s.expect("stats");
    assert!(exits.iter().all(|e| e.result.is_ok()), "{exits:?}");
    let made = made.load(Ordering::SeqCst);
    // Made = processed + replaced in the capture queue + replaced in the model's queues + at
    // most one being made, one waiting for the loop, one for the model, one being rendered and
    // one rendered.
    let accounted = s.frames_out + s.dropped_capture + s.dropped_model;
    assert!(
        accounted <= made && made <= accounted + 5,
        "made {made}, processed {}, dropped {} + {}",
        s.frames_out,
        s.dropped_capture,
        s.dropped_model
    );
    assert!(s.dropped_capture + s.dropped_model > 0, "{s:?}");
    // Processed = written + replaced in the sink's queue + at most one waiting + one being written.
    let written = seen.lock().unwrap().len() as u64;
    let sink_dropped = s.dropped_sink.get("probe").copied().unwrap_or(0);
    let sent = s.frames_out + s.stills_out;
    assert!(
        written + sink_dropped <= sent && sent <= written + sink_dropped + 2,
        "processed {} (+{} stills), written {written}, dropped at the sink {sink_dropped}",
        s.frames_out,
        s.stills_out
    );
    assert!(sink_dropped > 0, "{s:?}");
}

/// A sink that fails ends the run: its thread reports the error, the others stop promptly.
#[test]
fn a_failing_sink_ends_the_run_with_its_error() {
    let made = Arc::new(AtomicU64::new(0));
    let probe = Box::new(Probe {
        seen: Arc::new(Mutex::new(Vec::new())),
        delay: Duration::ZERO,
        fail_at: Some(5),
        writes: 0,
    });
    let pipeline = Pipeline::start(
        Some(counter(made, Duration::from_millis(2))),
        echo(Duration::ZERO),
        vec![probe, Box::new(NullSink::default())],
        small_options(),
    )
    .expect("the pipeline starts");
    wait_for(
        "the run to end after its sink failed",
        || !pipeline.is_running(),
        Duration::from_secs(5),
    );
    let exits = pipeline.join();
    let sink = exits
        .iter()
        .find(|e| e.thread == "sink:probe")
        .expect("the probe's thread");
    let msg = format!("{}", sink.result.as_ref().expect_err("the sink failed"));
    assert!(msg.contains("device unplugged"), "{msg}");
    for e in exits.iter().filter(|e| e.thread != "sink:probe") {
        assert!(e.result.is_ok(), "{} ended with {:?}", e.thread, e.result);
    }
}

/// `Pipeline::stop` from outside stops every thread cleanly and quickly.
#[test]
fn quit_command_stops_every_thread_within_a_second() {
    let made = Arc::new(AtomicU64::new(0));
    let pipeline = Pipeline::start(
        Some(counter(made.clone(), Duration::from_millis(30))),
        echo(Duration::ZERO),
        vec![Box::new(NullSink::default())],
        small_options(),
    )
    .expect("the pipeline starts");
    wait_for(
        "5 frames made",
        || made.load(Ordering::SeqCst) >= 5,
        Duration::from_secs(5),
    );
    let t = Instant::now();
    pipeline.stop();
    // The promise is a second; the margin is for a machine busy with other work.
    wait_for(
        "every thread to stop",
        || !pipeline.is_running(),
        Duration::from_secs(3),
    );
    eprintln!("stopped in {:?}", t.elapsed());
    let exits = pipeline.join();
    // Sink, capture, faces (the face finder for automatic framing), model, inference.
    assert_eq!(exits.len(), 5, "{exits:?}");
    assert!(exits.iter().all(|e| e.result.is_ok()), "{exits:?}");
}
