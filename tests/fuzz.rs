//! Fuzzing of everything marionette reads from files it did not write: checkpoints (legacy
//! pickle, zip, safetensors) and their pickles, the YAML configs, the settings TOML, pictures
//! (portraits and driving folders), ffprobe's output, driving-frame names, and the byte stream a
//! remote-rendering peer sends.
//!
//! Our own mutation fuzzer on the stable toolchain (tests/fuzz/engine.rs), seeded from the
//! fixtures (tests/fuzz/targets.rs). Each target runs for a few seconds here; the long run is
//! `tests/fuzz/run.sh` (this file's ignored `long_run`). A run fails on a panic, on memory over the
//! target's bound, on a run slower than 5 s, and on the process's peak RSS growing by 1.5 GiB.

#[path = "fuzz/engine.rs"]
mod engine;
#[path = "fuzz/targets.rs"]
mod targets;

use std::time::Duration;

use engine::{Budget, Counting, Report};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn check(report: &Report) {
    eprintln!("{}", report.line());
    for f in &report.findings {
        eprintln!(
            "  {} {}: {} (input saved to {:?})",
            report.target, f.kind, f.detail, f.saved
        );
    }
    assert!(
        report.findings.is_empty(),
        "{}: {} findings",
        report.target,
        report.findings.len()
    );
}

fn short(name: &str) {
    let target = targets::by_name(name).expect("target");
    let seconds: f64 = std::env::var("FUZZ_SHORT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let budget = Budget {
        execs: 2_000_000,
        time: Duration::from_secs_f64(seconds),
    };
    let report = engine::fuzz(&target, budget, 0x6d61_7269_6f6e);
    check(&report);
    // Every seed decodes (but those meant to be refused): mutants of broken seeds would only
    // reach the error paths.
    assert_eq!(
        report.seeds_ok,
        target.seeds.len() as u64 - target.refused_seeds,
        "{name}: {} of {} seeds decode, {} are meant to be refused",
        report.seeds_ok,
        target.seeds.len(),
        target.refused_seeds
    );
    assert!(
        report.execs > target.seeds.len() as u64,
        "{name}: no mutants ran"
    );
}

#[test]
fn fuzz_checkpoint() {
    short("checkpoint");
}

#[test]
fn fuzz_pickle() {
    short("pickle");
}

#[test]
fn fuzz_config() {
    short("config");
}

#[test]
fn fuzz_settings() {
    short("settings");
}

#[test]
fn fuzz_image() {
    short("image");
}

#[test]
fn fuzz_verify() {
    short("verify");
}

#[test]
fn fuzz_wire() {
    short("wire");
}

#[test]
fn fuzz_probe() {
    short("probe");
}

#[test]
fn fuzz_names() {
    short("names");
}

/// Replays a saved finding (tests/fuzz/regressions/FILE) through its target: no panic, memory
/// within the target's bound, and an error whose message contains `expect`.
fn regression(target: &str, file: &str, expect: &str) {
    let target = targets::by_name(target).expect("target");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/regressions")
        .join(file);
    let input = std::fs::read(&path).expect("regression input");
    let (outcome, mem) = engine::tracked(|| (target.exec)(&input));
    let bound = (target.alloc_bound)(input.len());
    assert!(
        mem.largest <= bound && mem.peak <= 2 * bound,
        "{file}: {} in one allocation, {} at the peak (bound {})",
        engine::human(mem.largest),
        engine::human(mem.peak),
        engine::human(bound)
    );
    assert!(outcome.contains(expect), "{file}: {outcome}");
}

/// Found by the fuzzer: a 789-byte TIFF whose directory entry declares 9.4 million values made
/// the `tiff` crate reserve 216 MiB before reading them (the file then ran out). Entries whose
/// values lie beyond the end of the file are now refused before the decoder sees them.
#[test]
fn regression_image_tiff_entry_count_beyond_file() {
    regression(
        "image",
        "image-tiff-entry-count-beyond-file.bin",
        "beyond the end of the 789-byte file",
    );
}

/// Found by the fuzzer: a 98-byte lossless WebP declaring a huge canvas made the decoder reserve
/// 68 MiB. Pictures that declare more pixels than their file can hold (`decode_budget`) are
/// refused before any pixel memory is reserved.
#[test]
fn regression_image_webp_huge_canvas_in_98_bytes() {
    regression(
        "image",
        "image-webp-huge-canvas-in-98-bytes.bin",
        "more than a 98-byte file can hold",
    );
}

/// The same in 150 bytes (74 MiB reserved before the fix).
#[test]
fn regression_image_webp_huge_canvas_in_150_bytes() {
    regression(
        "image",
        "image-webp-huge-canvas-in-150-bytes.bin",
        "more than a 150-byte file can hold",
    );
}

/// The long run (tests/fuzz/run.sh): `FUZZ_SECONDS` per target (default 600), at most
/// `FUZZ_EXECS` executions per target (default unlimited), `FUZZ_TARGETS` (comma-separated,
/// default all), `FUZZ_SEED`.
#[test]
#[ignore = "long: run through tests/fuzz/run.sh"]
fn long_run() {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let seconds: f64 = env("FUZZ_SECONDS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(600.0);
    let execs: u64 = env("FUZZ_EXECS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let seed: u64 = env("FUZZ_SEED").and_then(|s| s.parse().ok()).unwrap_or(1);
    let wanted: Option<Vec<String>> =
        env("FUZZ_TARGETS").map(|s| s.split(',').map(|t| t.trim().to_string()).collect());
    let mut reports = Vec::new();
    for target in targets::all() {
        if let Some(w) = &wanted
            && !w.iter().any(|n| n == target.name)
        {
            continue;
        }
        eprintln!(
            "fuzzing {} ({} seeds, memory bound: {}) ...",
            target.name,
            target.seeds.len(),
            target.bound_text
        );
        let report = engine::fuzz(
            &target,
            Budget {
                execs,
                time: Duration::from_secs_f64(seconds),
            },
            seed,
        );
        eprintln!("{}", report.line());
        reports.push(report);
    }
    let total: u64 = reports.iter().map(|r| r.execs).sum();
    let findings: usize = reports.iter().map(|r| r.findings.len()).sum();
    eprintln!("\nsummary:");
    for r in &reports {
        eprintln!("{}", r.line());
    }
    eprintln!("total: {total} executions, {findings} findings");
    for r in &reports {
        check(r);
    }
}

/// Replays saved inputs: `FUZZ_REPLAY=TARGET:FILE[,TARGET:FILE...]`; allocations over
/// `FUZZ_TRAP` bytes (default 64 MiB) print where they happen.
#[test]
#[ignore = "replays saved findings"]
fn replay() {
    let Ok(list) = std::env::var("FUZZ_REPLAY") else {
        return;
    };
    let trap = std::env::var("FUZZ_TRAP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64u64 << 20);
    for item in list.split(',') {
        let (name, file) = item.split_once(':').expect("TARGET:FILE");
        let target = targets::by_name(name).expect("target");
        let input = std::fs::read(file).expect("input file");
        eprintln!("{name} {file}: {}", engine::replay(&target, &input, trap));
    }
}
