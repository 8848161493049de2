//! The binary outside the repository: copied alone into an empty folder it animates its built-in
//! avatars; installed as `<prefix>/bin/marionette` beside `<prefix>/share/marionette/avatars` (the
//! Debian package's layout) it reads them from there. Also what packaging takes from the binary:
//! `--version`, the man pages and the shell completions.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Copies the built binary to `dir/NAME` (executable) and returns its path.
fn copy_binary(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let exe = dir.join("marionette");
    std::fs::copy(env!("CARGO_BIN_EXE_marionette"), &exe).unwrap();
    exe
}

/// `marionette run --idle` for 3 frames into a PNG folder, from `cwd`, with no checkpoint around;
/// returns its stderr after checking it succeeded and recorded the frames.
fn run_idle(exe: &Path, cwd: &Path) -> String {
    let models = tempfile::tempdir().unwrap();
    let rec = cwd.join("rec");
    let out = Command::new(exe)
        .current_dir(cwd)
        .env("MARIONETTE_MODEL_DIR", models.path())
        .env_remove("RUST_LOG")
        .args(["--log", "marionette=info", "run", "--idle", "--frames", "3"])
        .args(["--vcam", "none", "--record"])
        .arg(&rec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{} failed: {stderr}", exe.display());
    let frames = std::fs::read_dir(&rec).unwrap().count();
    assert!(frames >= 3, "{frames} frames recorded: {stderr}");
    stderr
}

#[test]
fn a_binary_alone_in_an_empty_folder_uses_its_built_in_avatars() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = copy_binary(&tmp.path().join("bin"));
    let stderr = run_idle(&exe, tmp.path());
    assert!(
        stderr.contains("built into the binary"),
        "the log does not say where the portrait came from: {stderr}"
    );
}

#[test]
fn an_installed_binary_reads_the_avatars_from_share_marionette() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("usr");
    let exe = copy_binary(&prefix.join("bin"));
    let avatars = prefix.join("share/marionette/avatars");
    std::fs::create_dir_all(&avatars).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/avatars");
    for name in ["eileen-collins.png", "grace-hopper.jpg"] {
        std::fs::copy(repo.join(name), avatars.join(name)).unwrap();
    }
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let stderr = run_idle(&exe, &work);
    let expected = avatars.join("eileen-collins.png");
    assert!(
        stderr.contains(&expected.display().to_string()),
        "not read from {}: {stderr}",
        expected.display()
    );
    assert_eq!(
        marionette::assets::data_dir_for(&exe),
        Some(prefix.join("share/marionette"))
    );
}

#[test]
fn the_built_in_avatars_decode_and_the_default_is_eileen_collins() {
    let bundled = marionette::assets::BundledAvatars::BuiltIn;
    let files = bundled.files().unwrap();
    let names: Vec<String> = files.iter().map(|f| f.stem()).collect();
    assert_eq!(names, ["eileen-collins", "grace-hopper"]);
    for f in &files {
        let on_disk = marionette::media::frames::load_rgb(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(&f.path),
        )
        .unwrap();
        assert_eq!(f.decode().unwrap(), on_disk, "{}", f.file_name);
    }
    assert_eq!(
        bundled.default_avatar().unwrap().file_name,
        "eileen-collins.png"
    );
    // A folder without the default portrait falls back to the built-in one.
    let other = tempfile::tempdir().unwrap();
    image::RgbImage::new(8, 8)
        .save(other.path().join("someone.png"))
        .unwrap();
    let from_dir = marionette::assets::BundledAvatars::Dir(other.path().to_path_buf());
    assert_eq!(
        from_dir.default_avatar().unwrap().path,
        Path::new("assets/avatars/eileen-collins.png")
    );
}

#[test]
fn version_says_whether_it_was_built_with_cuda() {
    let out = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("marionette {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let cuda = if cfg!(feature = "cuda") {
        "built with CUDA"
    } else {
        "built without CUDA"
    };
    assert!(text.contains(cuda), "{text}");
}

#[test]
fn generates_man_pages_and_shell_completions() {
    let tmp = tempfile::tempdir().unwrap();
    for what in ["man", "completions"] {
        let status = Command::new(env!("CARGO_BIN_EXE_marionette"))
            .arg("generate")
            .arg(what)
            .arg(tmp.path().join(what))
            .status()
            .unwrap();
        assert!(status.success(), "generate {what}");
    }
    let man = std::fs::read_to_string(tmp.path().join("man/marionette.1")).unwrap();
    assert!(
        man.starts_with(".ie"),
        "not roff: {}",
        &man[..man.len().min(80)]
    );
    assert!(man.contains("marionette\\-run(1)"), "no run command: {man}");
    assert!(tmp.path().join("man/marionette-run.1").is_file());
    // The hidden command is not documented.
    assert!(!tmp.path().join("man/marionette-generate.1").exists());
    let bash = std::fs::read_to_string(tmp.path().join("completions/marionette.bash")).unwrap();
    assert!(
        bash.contains("--vcam-size"),
        "bash completions lack run's options"
    );
    assert!(tmp.path().join("completions/_marionette").is_file());
    assert!(tmp.path().join("completions/marionette.fish").is_file());
}
