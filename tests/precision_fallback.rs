//! A processor without AVX512_BF16 takes the f32 path: forced with `MARIONETTE_CPU=baseline`
//! (read once per process, so each case runs the real binary), `--precision auto` then gives
//! today's f32 results bit for bit, and asking for bf16 is refused with a clear error. Where bf16
//! is native, `auto` takes it only where it measures faster; `MARIONETTE_AUTO_PRECISION` forces
//! each branch of that rule, so both run on any processor with AVX512_BF16.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::fixture;

fn marionette(baseline: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_marionette"));
    c.env_remove("MARIONETTE_AUTO_PRECISION");
    if baseline {
        c.env("MARIONETTE_CPU", "baseline");
    } else {
        c.env_remove("MARIONETTE_CPU");
    }
    c
}

/// Animates the tiny fixture (three driving frames) at `precision`; returns the PNGs' bytes.
fn animate(dir: &Path, name: &str, precision: &str, baseline: bool) -> Vec<Vec<u8>> {
    animate_with(dir, name, precision, baseline, None)
}

/// [`animate`] with `MARIONETTE_AUTO_PRECISION` set to `auto_takes`.
fn animate_with(
    dir: &Path,
    name: &str,
    precision: &str,
    baseline: bool,
    auto_takes: Option<&str>,
) -> Vec<Vec<u8>> {
    let driving = dir.join("driving");
    if !driving.exists() {
        std::fs::create_dir_all(&driving).unwrap();
        for i in 0..3 {
            std::fs::copy(
                fixture(&format!("tiny-input-driving{i}.png")),
                driving.join(format!("{i}.png")),
            )
            .unwrap();
        }
    }
    let out = dir.join(name);
    let mut command = marionette(baseline);
    if let Some(p) = auto_takes {
        command.env("MARIONETTE_AUTO_PRECISION", p);
    }
    let status = command
        .args(["animate", "--engine", "fomm", "--precision", precision])
        .arg("--checkpoint")
        .arg(fixture("tiny.safetensors"))
        .arg("--config")
        .arg(fixture("tiny.yaml"))
        .arg("--source")
        .arg(fixture("tiny-input-source.png"))
        .arg("--driving")
        .arg(&driving)
        .arg("--output")
        .arg(&out)
        .output()
        .expect("run marionette");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn without_the_instructions_auto_is_todays_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let f32_native = animate(tmp.path(), "f32", "f32", false);
    let auto_baseline = animate(tmp.path(), "auto-baseline", "auto", true);
    assert_eq!(f32_native, auto_baseline);
}

#[test]
fn asking_for_bf16_without_the_instructions_is_refused() {
    let out = marionette(true)
        .args(["bench", "--precision", "bf16", "--iters", "1", "--config"])
        .arg(fixture("tiny.yaml"))
        .output()
        .expect("run marionette");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AVX512_BF16") && err.contains("--precision auto or f32"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn with_the_instructions_auto_follows_the_measured_rates() {
    use fomm::ops::precision::{self, Precision};
    if !Precision::Bf16.is_native() {
        eprintln!(
            "skipped: this processor has no AVX512_BF16 (or MARIONETTE_CPU caps it), so auto \
             has one branch here, f32, which the baseline test checks"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f32_native = animate(tmp.path(), "f32", "f32", false);
    // Both branches of the rule, forced.
    let took_bf16 = animate_with(tmp.path(), "auto-bf16", "auto", false, Some("bf16"));
    let took_f32 = animate_with(tmp.path(), "auto-f32", "auto", false, Some("f32"));
    // The first frame is the reference frame in relative animation: the generator alone, at
    // bf16, renders it a little differently; the keypoints (f32) are the same.
    assert_ne!(
        f32_native, took_bf16,
        "auto forced to bf16 gave f32's output"
    );
    assert_eq!(f32_native, took_f32, "auto forced to f32 differs from f32");
    // Unforced, auto follows the rates measured on this core.
    let auto_native = animate(tmp.path(), "auto", "auto", false);
    let rates = precision::kernel_rates().expect("measured where bf16 is native");
    if precision::bf16_pays() {
        assert_eq!(
            auto_native, took_bf16,
            "auto should run bf16 here: {rates:?}"
        );
    } else {
        assert_eq!(
            auto_native, f32_native,
            "auto should run f32 here: {rates:?}"
        );
    }
}
