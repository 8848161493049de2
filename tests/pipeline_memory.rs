//! Memory of the live pipeline over 10,000 frames, alone in its own test process so that no other
//! test's allocations show up in the measurement.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use common::live::{counter, echo, small_options, wait_for};
use marionette::output::NullSink;
use marionette::pipeline::Pipeline;

/// Resident memory of this process in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// 10,000 frames through capture, framing, the engine interface and a sink: memory after the
/// first 1,000 frames and after all 10,000 differs by little (no queue grows, nothing is kept).
#[test]
fn memory_stays_flat_over_ten_thousand_frames() {
    let made = Arc::new(AtomicU64::new(0));
    let pipeline = Pipeline::start(
        Some(counter(made.clone(), Duration::ZERO)),
        echo(Duration::ZERO),
        vec![Box::new(NullSink::default())],
        small_options(),
    )
    .expect("the pipeline starts");
    let out = || pipeline.stats().map_or(0, |s| s.frames_out);
    wait_for("1,000 frames", || out() >= 1_000, Duration::from_secs(60));
    let early = rss_bytes();
    wait_for(
        "10,000 frames",
        || out() >= 10_000,
        Duration::from_secs(300),
    );
    let late = rss_bytes();
    let done = out();
    let exits = pipeline.join();
    assert!(exits.iter().all(|e| e.result.is_ok()), "{exits:?}");
    assert!(done >= 10_000, "only {done} frames in the time allowed");
    assert!(early > 0, "no /proc/self/statm");
    // Each frame is 3 KB of RGB plus its tensors (12 KB): 9,000 kept frames would be > 100 MB.
    let growth = late.saturating_sub(early);
    assert!(
        growth < 8 << 20,
        "memory grew by {} KB between frame 1,000 and 10,000",
        growth >> 10
    );
}
