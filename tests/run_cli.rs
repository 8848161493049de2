//! `marionette run` through the real binary, with no webcam and no weights (idle motion on the
//! classic engine): it starts, records a moving portrait, and Ctrl-C (SIGINT) stops it promptly
//! with a complete recording.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn png_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0)
}

#[test]
fn idle_run_records_a_moving_portrait_and_stops_on_ctrl_c() {
    let work = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let rec = work.path().join("rec");
    let mut child = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MARIONETTE_MODEL_DIR", models.path())
        .args(["run", "--idle", "--vcam", "none", "--record"])
        .arg(&rec)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while png_count(&rec) < 40 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(png_count(&rec) >= 40, "the run recorded too little");
    let stopped = Instant::now();
    // The shell's own `kill` (no procps needed on a minimal machine).
    let kill = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "still running 10 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = stopped.elapsed();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status}: {err}");
    // The promise is a second; the margin is for a machine busy with other work
    // (MARIONETTE_TEST_TIME_SCALE stretches it further on a slower one).
    assert!(
        took < crate::common::live::patience(Duration::from_secs(3)),
        "Ctrl-C took {took:?}"
    );
    assert!(err.contains("engine: classic"), "{err}");
    assert!(err.contains("source: idle motion"), "{err}");
    // Every recorded frame is a complete PNG, and the portrait moved.
    let mut files: Vec<_> = std::fs::read_dir(&rec)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let first = image::open(&files[0]).unwrap().to_rgb8();
    let last = image::open(files.last().unwrap()).unwrap().to_rgb8();
    let moved = first
        .as_raw()
        .iter()
        .zip(last.as_raw())
        .filter(|(a, b)| a.abs_diff(**b) > 8)
        .count();
    assert!(
        moved > 100,
        "idle motion barely moved the portrait ({moved} values)"
    );
}
