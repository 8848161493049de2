//! `marionette models add|list` and what an installed binary says about checkpoints: add checks
//! a file and copies it where every run finds it (a run then picks FOMM), a damaged or unfitting
//! file changes nothing and says why, the folders named are the installation's real ones, and
//! error messages name each cause once and no build-machine path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::fixture;

/// The binary, with its data folder in `home` and no model folder override.
fn marionette(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_marionette"));
    c.env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("HOME", home)
        .env_remove("MARIONETTE_MODEL_DIR")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .current_dir(home);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn user_models(home: &Path) -> PathBuf {
    home.join("data/marionette/models")
}

#[test]
fn add_then_run_picks_fomm() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // The fixture's structure fits no published config: its YAML is given and kept beside it.
    let added = marionette(h)
        .args(["models", "add", "--json", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg(fixture("tiny-zip.pth.tar"))
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", text(&added));
    let json: serde_json::Value = serde_json::from_slice(&added.stdout).expect("one JSON object");
    let path = PathBuf::from(json["path"].as_str().unwrap());
    assert_eq!(path, user_models(h).join("tiny-zip.pth.tar"));
    assert!(path.is_file());
    assert!(user_models(h).join("tiny-zip.yaml").is_file());
    // list says where, which config, and that it loads.
    let listed = marionette(h)
        .args(["models", "list", "--json"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed));
    let line: serde_json::Value = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a checkpoint listed");
    assert_eq!(line["loads"], true, "{line}");
    assert_eq!(line["folder_kind"], "user", "{line}");
    // A run now animates with FOMM, from the added file and its config.
    let rec = h.join("rec");
    let run = marionette(h)
        .args([
            "--log",
            "marionette=info",
            "run",
            "--test-pattern",
            "--frames",
            "10",
        ])
        .args(["--vcam", "none", "--record"])
        .arg(&rec)
        .output()
        .unwrap();
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("engine: fomm (found checkpoint"), "{out}");
    assert!(out.contains("tiny-zip.pth.tar"), "{out}");
    assert_eq!(std::fs::read_dir(&rec).unwrap().count(), 10, "{out}");
}

#[test]
fn a_damaged_or_unfitting_checkpoint_is_refused_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Truncated.
    let bytes = std::fs::read(fixture("tiny-zip.pth.tar")).unwrap();
    let broken = h.join("broken.pth.tar");
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let out = marionette(h)
        .args(["models", "add"])
        .arg(&broken)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("broken.pth.tar was not added"), "{said}");
    // No published config fits the fixture, and none was given nor kept beside it: it says
    // what would fit.
    let alone = h.join("alone.safetensors");
    std::fs::copy(fixture("tiny.safetensors"), &alone).unwrap();
    let out = marionette(h)
        .args(["models", "add"])
        .arg(&alone)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("--config"), "{said}");
    assert!(said.contains("num_kp: 10"), "{said}");
    assert!(
        !user_models(h).exists() || std::fs::read_dir(user_models(h)).unwrap().count() == 0,
        "something was copied"
    );
}

#[test]
fn an_installed_binary_names_its_real_folders_and_how_to_add_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("usr");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    let exe = prefix.join("bin/marionette");
    std::fs::copy(env!("CARGO_BIN_EXE_marionette"), &exe).unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(&exe)
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("MARIONETTE_MODEL_DIR")
        .env_remove("RUST_BACKTRACE")
        .current_dir(&home)
        .args(["animate", "--engine", "fomm", "--source"])
        .arg(fixture("tiny-input-source.png"))
        .arg("--driving")
        .arg(fixture("tiny-input-driving0.png"))
        .arg("--output")
        .arg(home.join("out"))
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    let user = home.join(".local/share/marionette/models");
    let share = prefix.join("share/marionette/models");
    assert!(said.contains(&user.display().to_string()), "{said}");
    assert!(said.contains(&share.display().to_string()), "{said}");
    assert!(!said.contains("bin/models"), "{said}");
    assert!(said.contains("marionette models add"), "{said}");
    assert!(!said.contains("models/README.md"), "{said}");
}

#[test]
fn errors_name_each_cause_once_and_no_build_path() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = marionette(h)
        .args(["animate", "--source", "/nonexistent.jpg", "--driving"])
        .arg(fixture("tiny-input-driving0.png"))
        .arg("--output")
        .arg(h.join("out"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let cause = "No such file or directory (os error 2)";
    assert_eq!(said.matches(cause).count(), 1, "{said}");
    // No display: what to do, without a path inside the build machine's crate sources.
    let out = marionette(h)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .arg("window")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot open a window"), "{said}");
    assert!(!said.contains(".cargo"), "{said}");
    assert!(!said.contains("registry"), "{said}");
    assert!(!said.contains(".rs:"), "{said}");
}
