//! A recording loses nothing: the recorder is a lossless sink (a bounded queue with back-pressure
//! instead of the live outputs' latest-wins channel), so every frame the pipeline makes is in the
//! file, also while FFmpeg starts, and a video's duration is frames / fps. Through the pipeline
//! with a slow-starting sink, and through `marionette run` for video and PNG outputs.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::live::{counter, echo, small_options, wait_for};
use marionette::frame::Frame;
use marionette::output::{FrameSink, Recorder, SinkError};
use marionette::pipeline::Pipeline;

/// Frames and duration (seconds) of a video, counted by decoding it.
fn video_frames(path: &Path) -> (u64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames:format=duration"])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in ffprobe's output: {text}"))
            .trim()
            .to_string()
    };
    (
        field("nb_read_frames=").parse().expect("frame count"),
        field("duration=").parse().expect("duration"),
    )
}

fn png_count(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
                .count() as u64
        })
        .unwrap_or(0)
}

/// A lossless sink that is slow to start (like FFmpeg) and then records the frames' numbers.
struct SlowStart {
    seen: Arc<Mutex<Vec<u64>>>,
    first_delay: Duration,
}

impl FrameSink for SlowStart {
    fn name(&self) -> String {
        "slow-start".into()
    }
    fn lossless(&self) -> bool {
        true
    }
    fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        if let Ok(mut s) = self.seen.lock() {
            if s.is_empty() {
                std::thread::sleep(self.first_delay);
            }
            s.push(frame.seq);
        }
        Ok(())
    }
}

/// Every animated frame reaches a lossless sink, in order, even when the sink takes a second
/// over its first frame; the live output beside it (latest-wins) drops frames meanwhile.
#[test]
fn a_lossless_sink_gets_every_frame_while_it_starts() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let live_seen = Arc::new(Mutex::new(Vec::new()));
    let sinks: Vec<Box<dyn FrameSink>> = vec![
        Box::new(SlowStart {
            seen: seen.clone(),
            first_delay: Duration::from_secs(1),
        }),
        Box::new(common::live::Probe {
            seen: live_seen.clone(),
            delay: Duration::from_millis(8),
            fail_at: None,
            writes: 0,
        }),
    ];
    let pipeline = Pipeline::start(
        Some(counter(
            Arc::new(AtomicU64::new(0)),
            Duration::from_millis(2),
        )),
        echo(Duration::from_millis(3)),
        sinks,
        small_options(),
    )
    .expect("the pipeline starts");
    wait_for(
        "150 frames out",
        || pipeline.stats().is_none_or(|s| s.frames_out >= 150),
        Duration::from_secs(30),
    );
    let (exits, s) = pipeline.join_with_stats();
    for e in &exits {
        assert!(e.result.is_ok(), "{} ended with {:?}", e.thread, e.result);
    }
    let s = s.expect("stats");
    let seen = seen.lock().unwrap().clone();
    assert!(s.frames_out >= 150, "{s:?}");
    assert_eq!(
        seen.len() as u64,
        s.frames_out,
        "the lossless sink got {} of the {} frames made ({s:?})",
        seen.len(),
        s.frames_out
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(s.dropped_sink.get("slow-start"), Some(&0), "{s:?}");
    // The live output kept only the newest frames meanwhile, as it should.
    assert!(
        (live_seen.lock().unwrap().len() as u64) < s.frames_out,
        "the live sink got every frame too"
    );
}

/// Through the pipeline into a real video file: N frames made, N frames in the file, N / fps
/// seconds long.
#[test]
fn a_video_recording_has_every_frame_and_lasts_frames_over_fps() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rec.mp4");
    let recorder: Box<dyn FrameSink> = Box::new(Recorder::create(&path, 30.0).unwrap());
    let pipeline = Pipeline::start(
        Some(counter(
            Arc::new(AtomicU64::new(0)),
            Duration::from_millis(1),
        )),
        echo(Duration::from_millis(2)),
        vec![recorder],
        small_options(),
    )
    .expect("the pipeline starts");
    wait_for(
        "90 frames out",
        || pipeline.stats().is_none_or(|s| s.frames_out >= 90),
        Duration::from_secs(30),
    );
    let (exits, s) = pipeline.join_with_stats();
    for e in &exits {
        assert!(e.result.is_ok(), "{} ended with {:?}", e.thread, e.result);
    }
    let made = s.expect("stats").frames_out;
    let (frames, duration) = video_frames(&path);
    assert_eq!(frames, made, "frames in the file vs frames made");
    assert!(
        (duration - made as f64 / 30.0).abs() < 1.5 / 30.0,
        "{duration} s for {made} frames at 30 fps"
    );
}

fn run_cli(args: &[&str]) -> String {
    let models = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MARIONETTE_MODEL_DIR", models.path())
        .args(args)
        .output()
        .expect("marionette");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "marionette {args:?}: {err}");
    err
}

/// The user's case: `marionette run --idle --frames 30 --record out.mp4` (it wrote 21 to 29
/// frames when the recorder dropped frames while FFmpeg started).
#[test]
fn run_frames_n_records_exactly_n_frames_as_video_and_as_pngs() {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let video = tmp.path().join(format!("out{round}.mp4"));
        let v = video.to_string_lossy().into_owned();
        run_cli(&[
            "run", "--idle", "--frames", "30", "--vcam", "none", "--record", &v,
        ]);
        let (frames, duration) = video_frames(&video);
        assert_eq!(frames, 30, "round {round}");
        assert!((duration - 1.0).abs() < 1.5 / 30.0, "{duration} s");
    }
    let folder = tmp.path().join("pngs");
    let f = folder.to_string_lossy().into_owned();
    run_cli(&[
        "run", "--idle", "--frames", "30", "--vcam", "none", "--record", &f,
    ]);
    assert_eq!(png_count(&folder), 30);
}
