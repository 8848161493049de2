//! `--engine fomm|classic|auto`: auto runs FOMM when a checkpoint is found and the classic engine
//! otherwise, and says which; through the library and through the real binary.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixture;
use marionette::engine::select::{EngineChoice, EngineKind, SelectError, choose_engine};

fn marionette(models: &Path, cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_marionette"));
    c.current_dir(cwd).env("MARIONETTE_MODEL_DIR", models);
    c
}

/// Three driving frames in a folder.
fn driving(dir: &Path) -> PathBuf {
    let d = dir.join("driving");
    std::fs::create_dir_all(&d).unwrap();
    for n in 0..3 {
        std::fs::copy(
            fixture(&format!("tiny-input-driving{n}.png")),
            d.join(format!("{n}.png")),
        )
        .unwrap();
    }
    d
}

#[test]
fn auto_chooses_by_whether_a_checkpoint_is_found() {
    let empty = tempfile::tempdir().unwrap();
    let dirs = vec![empty.path().to_path_buf()];
    assert_eq!(
        choose_engine(EngineKind::Auto, None, &dirs).unwrap(),
        EngineChoice::Classic { fallback: true }
    );
    assert!(matches!(
        choose_engine(EngineKind::Fomm, None, &dirs),
        Err(SelectError::NoCheckpoint { .. })
    ));
    assert_eq!(
        choose_engine(EngineKind::Classic, None, &dirs).unwrap(),
        EngineChoice::Classic { fallback: false }
    );
    let with = tempfile::tempdir().unwrap();
    let ckpt = with.path().join("tiny.safetensors");
    std::fs::copy(fixture("tiny.safetensors"), &ckpt).unwrap();
    let dirs = vec![empty.path().to_path_buf(), with.path().to_path_buf()];
    assert_eq!(
        choose_engine(EngineKind::Auto, None, &dirs).unwrap(),
        EngineChoice::Fomm {
            checkpoint: ckpt.clone(),
            found: true
        }
    );
    // A checkpoint named on the command line wins, and must exist.
    let given = fixture("tiny-legacy.pth.tar");
    assert_eq!(
        choose_engine(EngineKind::Auto, Some(&given), &[]).unwrap(),
        EngineChoice::Fomm {
            checkpoint: given.clone(),
            found: false
        }
    );
    assert!(matches!(
        choose_engine(
            EngineKind::Auto,
            Some(&with.path().join("nope.pth.tar")),
            &[]
        ),
        Err(SelectError::MissingCheckpoint(_))
    ));
    assert!(matches!(
        choose_engine(EngineKind::Classic, Some(&given), &[]),
        Err(SelectError::CheckpointWithClassic)
    ));
}

#[test]
fn auto_runs_classic_without_a_checkpoint_and_says_how_to_get_fomm() {
    let work = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let drv = driving(work.path());
    let out = work.path().join("out");
    let o = marionette(models.path(), work.path())
        .args(["animate", "--source"])
        .arg(fixture("tiny-input-source.png"))
        .arg("--driving")
        .arg(&drv)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("engine: classic"), "{err}");
    assert!(err.contains("no FOMM checkpoint was found"), "{err}");
    assert!(err.contains("marionette models add FILE"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
}

#[test]
fn auto_runs_fomm_with_the_tiny_checkpoint_it_finds() {
    let work = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("tiny.safetensors"),
        models.path().join("tiny.safetensors"),
    )
    .unwrap();
    let drv = driving(work.path());
    let out = work.path().join("out");
    let o = marionette(models.path(), work.path())
        .args(["animate", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--source")
        .arg(fixture("tiny-input-source.png"))
        .arg("--driving")
        .arg(&drv)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("engine: fomm (found checkpoint"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
}

#[test]
fn engine_fomm_without_a_checkpoint_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let drv = driving(work.path());
    let o = marionette(models.path(), work.path())
        .args(["animate", "--engine", "fomm", "--source"])
        .arg(fixture("tiny-input-source.png"))
        .arg("--driving")
        .arg(&drv)
        .arg("--output")
        .arg(work.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("--engine classic"), "{err}");
    assert!(err.contains("--checkpoint"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
