//! The real window under Xvfb, drawn by Mesa's software renderer (lavapipe or llvmpipe): start
//! `marionette window` on the test pattern with the tiny FOMM checkpoint, screenshot the X
//! screen, check that the camera and output panes are drawn and not blank, then drive it with
//! real X key presses (xdotool) and check that they reached the engine: `c` recalibrates, `2`
//! picks the second portrait, `o` turns the overlay on, `Esc` quits cleanly and the settings are
//! saved. Screenshots are kept in target/window-test for looking at. The other tests here: a
//! damaged settings file, no display, FOMM weights added in the window, and rendering on a
//! `marionette serve` chosen in the window (a wrong secret, the right one, the server's loss,
//! and back to this machine).
//!
//! Needs Xvfb, xdotool and ImageMagick's `import` (`bash packaging/setup.sh --tests` installs
//! them, with Mesa's Vulkan driver).

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        // Xvfb picks a free display number itself and writes it to the given descriptor: tests
        // running at once never share a screen. `-noreset`: by default the server resets when
        // its last client leaves, and a client connecting during the reset is refused; the
        // short-lived xdotool calls that poll for the window would make that race with the app.
        let mut child = Command::new("Xvfb")
            .args([
                "-noreset",
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting Xvfb");
        let mut out = child.stdout.take().expect("Xvfb's stdout");
        let mut number = String::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            number.push(byte[0] as char);
        }
        let n: u32 = number.trim().parse().expect("Xvfb did not say its display");
        assert!(Path::new(&format!("/tmp/.X11-unix/X{n}")).exists());
        Self {
            child,
            display: format!(":{n}"),
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn x(display: &str, args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("DISPLAY", display)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_log(path: &Path, what: &str, count: usize, limit: Duration, child: &mut Child) {
    let t = Instant::now();
    while log(path).matches(what).count() < count {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "marionette exited ({status}) before {what:?}:\n{}",
                log(path)
            );
        }
        assert!(
            t.elapsed() < limit,
            "no {count} x {what:?} after {limit:?}:\n{}",
            log(path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `layout:` line: camera and output panes as (x, y, w, h) in pixels.
fn layout(log: &str) -> [[u32; 4]; 2] {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("layout: ").map(|(_, r)| r.to_string()))
        .expect("no layout line");
    let rect = |s: &str| -> [u32; 4] {
        let v: Vec<u32> = s
            .split_whitespace()
            .filter_map(|t| t.parse::<f32>().ok())
            .map(|f| f as u32)
            .collect();
        [v[0], v[1], v[2], v[3]]
    };
    let (cam, out) = line.split_once(';').expect("two panes");
    [
        rect(cam.trim_start_matches("camera")),
        rect(out.trim().trim_start_matches("output")),
    ]
}

fn screenshot(display: &str, path: &Path) -> image::RgbImage {
    x(
        display,
        &["import", "-window", "root", path.to_str().unwrap()],
    );
    image::open(path).expect("reading the screenshot").to_rgb8()
}

/// Mean and standard deviation of the luminance inside `r` (inset by 2 px).
fn region_stats(img: &image::RgbImage, r: [u32; 4]) -> (f64, f64) {
    let mut v = Vec::new();
    for y in r[1] + 2..(r[1] + r[3]).saturating_sub(2).min(img.height()) {
        for x in r[0] + 2..(r[0] + r[2]).saturating_sub(2).min(img.width()) {
            let p = img.get_pixel(x, y).0;
            v.push(0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64);
        }
    }
    assert!(v.len() > 1000, "pane {r:?} is too small or off screen");
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean, var.sqrt())
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage, r: [u32; 4]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0.0;
    for y in r[1]..r[1] + r[3] {
        for x in r[0]..r[0] + r[2] {
            let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
            sum += (0..3)
                .map(|c| (p[c] as f64 - q[c] as f64).abs())
                .sum::<f64>()
                / 3.0;
            n += 1.0;
        }
    }
    sum / n
}

/// [`mean_abs_diff`] of `a`'s region against `b`'s region mirrored left to right.
fn mean_abs_diff_mirrored(a: &image::RgbImage, b: &image::RgbImage, r: [u32; 4]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0.0;
    for y in r[1]..r[1] + r[3] {
        for x in r[0]..r[0] + r[2] {
            let mx = r[0] + r[2] - 1 - (x - r[0]);
            let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(mx, y).0);
            sum += (0..3)
                .map(|c| (p[c] as f64 - q[c] as f64).abs())
                .sum::<f64>()
                / 3.0;
            n += 1.0;
        }
    }
    sum / n
}

/// Takes screenshots until `done` holds for one (the window redraws on its own clock), failing
/// with `what` after `limit`; returns that screenshot.
fn screen_until(
    display: &str,
    path: &Path,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&image::RgbImage) -> bool,
) -> image::RgbImage {
    let t = Instant::now();
    loop {
        let shot = screenshot(display, path);
        if done(&shot) {
            return shot;
        }
        assert!(t.elapsed() < limit, "{what}: not on screen after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A driving picture that is still and not symmetric: the fixture's driving frame with a red
/// block on its left, so that a mirrored pane differs from the unmirrored one.
fn still_driving_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("driving");
    std::fs::create_dir_all(&folder).unwrap();
    let mut img = image::open(fixture("tiny-input-driving0.png"))
        .unwrap()
        .to_rgb8();
    let (w, h) = img.dimensions();
    for y in h / 4..h * 3 / 4 {
        for x in 0..w / 5 {
            img.put_pixel(x, y, image::Rgb([230, 20, 20]));
        }
    }
    img.save(folder.join("frame_000000.png")).unwrap();
    folder
}

/// Starts `marionette window` on `display` with the tiny fixture, a still driving picture, the
/// settings in `config` and the log in `logfile`.
fn start_window(display: &str, home: &Path, config: &Path, logfile: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_marionette"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_CONFIG_HOME", config)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_RUNTIME_DIR", home)
        .args([
            "--log",
            "marionette=info",
            "window",
            "--framing",
            "manual",
            "--vcam",
            "none",
        ])
        // A still camera picture, so that what the keys change is all that changes.
        .arg("--driving-file")
        .arg(still_driving_folder(home))
        .arg("--checkpoint")
        .arg(fixture("tiny.safetensors"))
        .arg("--config")
        .arg(fixture("tiny.yaml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logfile).unwrap())
        .spawn()
        .unwrap()
}

/// Resizes the window: the panes (laid out as `before`) are laid out again and drawn at the new
/// size; unmapped and mapped again (what minimising does), drawing goes on.
fn resize_and_remap(
    display: &str,
    window: &str,
    logfile: &Path,
    shots: &Path,
    before: [[u32; 4]; 2],
    limit: Duration,
) {
    x(
        display,
        &["xdotool", "windowsize", "--sync", window, "900", "640"],
    );
    let t = Instant::now();
    let resized = loop {
        let l = layout(&log(logfile));
        if l != before {
            break l;
        }
        assert!(t.elapsed() < limit, "no new layout after resizing");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        resized[0][2] < before[0][2],
        "smaller panes: {resized:?} vs {before:?}"
    );
    for r in resized {
        assert!(
            r[0] + r[2] <= 900 && r[1] + r[3] <= 640,
            "{r:?} outside the window"
        );
    }
    screen_until(
        display,
        &shots.join("5-resized.png"),
        "both panes drawn at the new size",
        limit,
        |img| resized.iter().all(|&r| region_stats(img, r).1 > 10.0),
    );
    // Unmapped and mapped again (what minimising does): drawing goes on.
    x(display, &["xdotool", "windowunmap", "--sync", window]);
    x(display, &["xdotool", "windowmap", "--sync", window]);
    screen_until(
        display,
        &shots.join("6-mapped-again.png"),
        "the output pane after unmap/map",
        limit,
        |img| region_stats(img, resized[1]).1 > 10.0,
    );
    x(display, &["xdotool", "windowfocus", "--sync", window]);
}

/// Esc quits: exit status 0, threads joined, settings saved.
fn quit_and_check_the_saved_settings(
    display: &str,
    child: &mut std::process::Child,
    logfile: &Path,
    config: &Path,
) {
    x(display, &["xdotool", "key", "Escape"]);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still running after Esc"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = log(logfile);
    assert!(status.success(), "exit {status}:\n{text}");
    assert!(
        !text.contains("stopped:"),
        "a thread ended with an error:\n{text}"
    );
    let mut saved = String::new();
    std::fs::File::open(config.join("marionette/settings.toml"))
        .expect("settings were not saved")
        .read_to_string(&mut saved)
        .unwrap();
    assert!(
        saved.contains("avatar = \"bundled:grace-hopper\""),
        "{saved}"
    );
    assert!(saved.contains("overlay = true"), "{saved}");
    assert!(saved.contains("mirror_preview = false"), "{saved}");
    // The command line's source is not saved over the user's choice.
    assert!(!saved.contains("driving"), "{saved}");
}

#[test]
fn window_draws_both_panes_and_answers_x_key_presses() {
    for tool in ["Xvfb", "xdotool", "import"] {
        assert!(
            have(tool),
            "{tool} is missing: run `bash packaging/setup.sh --tests` (installs xvfb, xdotool, \
             imagemagick and mesa-vulkan-drivers)"
        );
    }
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../window-test");
    std::fs::create_dir_all(&shots).unwrap();
    let xvfb = Xvfb::start();
    let d = xvfb.display.clone();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let logfile = shots.join("marionette.log");
    let mut child = start_window(&d, home.path(), &config, &logfile);
    let limit = Duration::from_secs(120);
    wait_log(&logfile, "first output frame shown", 1, limit, &mut child);
    wait_log(&logfile, "calibrated on frame", 1, limit, &mut child);
    let window = x(&d, &["xdotool", "search", "--name", "^marionette$"]);
    let window = window
        .lines()
        .next()
        .expect("no window named marionette")
        .to_string();
    let text = log(&logfile);
    let [cam, out] = layout(&text);
    // The background of an undrawn pane is flat; a drawn one has the driving picture or the
    // animated portrait in it.
    let drawn = |img: &image::RgbImage| [cam, out].iter().all(|&r| region_stats(img, r).1 > 10.0);
    let first = screen_until(&d, &shots.join("1-started.png"), "both panes", limit, drawn);

    // `c` through X: the engine takes a new reference frame.
    x(&d, &["xdotool", "windowfocus", "--sync", &window]);
    x(&d, &["xdotool", "key", "c"]);
    wait_log(&logfile, "action: Recalibrate", 1, limit, &mut child);
    wait_log(&logfile, "calibrated on frame", 2, limit, &mut child);

    // `2`: the second bundled portrait; the output pane changes to it.
    x(&d, &["xdotool", "key", "2"]);
    wait_log(&logfile, "portrait: Grace Hopper", 1, limit, &mut child);
    wait_log(&logfile, "calibrated on frame", 3, limit, &mut child);
    let second = screen_until(
        &d,
        &shots.join("2-second-portrait.png"),
        "the second portrait in the output pane",
        limit,
        |img| mean_abs_diff(&first, img, out) > 8.0,
    );
    // The camera pane shows the same still picture throughout.
    let still = mean_abs_diff(&first, &second, cam);
    assert!(still < 2.0, "the still camera pane changed by {still:.1}");

    // `o`: the alignment overlay blends the portrait over the camera pane; `o` again removes it.
    x(&d, &["xdotool", "key", "o"]);
    wait_log(&logfile, "action: Toggle(Overlay)", 1, limit, &mut child);
    screen_until(
        &d,
        &shots.join("3-overlay.png"),
        "the overlay on the camera pane",
        limit,
        |img| mean_abs_diff(&second, img, cam) > 8.0,
    );
    x(&d, &["xdotool", "key", "o"]);
    wait_log(&logfile, "action: Toggle(Overlay)", 2, limit, &mut child);
    let plain = screen_until(
        &d,
        &shots.join("3-overlay-off.png"),
        "the camera pane without the overlay",
        limit,
        |img| mean_abs_diff(&second, img, cam) < 2.0,
    );

    // `m`: the camera pane mirrors: it becomes the mirror image of what it showed.
    x(&d, &["xdotool", "key", "m"]);
    wait_log(
        &logfile,
        "action: Toggle(MirrorPreview)",
        1,
        limit,
        &mut child,
    );
    let mirrored = screen_until(
        &d,
        &shots.join("4-mirrored.png"),
        "the mirrored camera pane",
        limit,
        |img| mean_abs_diff(&plain, img, cam) > 8.0,
    );
    let as_mirror = mean_abs_diff_mirrored(&mirrored, &plain, cam);
    let as_before = mean_abs_diff(&mirrored, &plain, cam);
    assert!(
        as_mirror * 3.0 < as_before,
        "the camera pane changed but is not the mirror image of itself: {as_mirror:.1} from \
         the mirror image, {as_before:.1} from the unmirrored pane"
    );
    // The overlay on again (the saved settings below keep it).
    x(&d, &["xdotool", "key", "o"]);
    wait_log(&logfile, "action: Toggle(Overlay)", 3, limit, &mut child);

    resize_and_remap(&d, &window, &logfile, &shots, [cam, out], limit);

    quit_and_check_the_saved_settings(&d, &mut child, &logfile, &config);
}

#[test]
fn without_a_display_the_window_says_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .env_remove("RUST_BACKTRACE")
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot open a window"), "{err}");
    assert!(err.contains("marionette run"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_damaged_settings_file_is_reported_and_the_window_still_opens() {
    for tool in ["Xvfb", "xdotool"] {
        assert!(
            have(tool),
            "{tool} is missing: run `bash packaging/setup.sh --tests`"
        );
    }
    let xvfb = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("settings.toml");
    std::fs::write(&settings, "overlay = [broken").unwrap();
    let logfile = home.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DISPLAY", &xvfb.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_RUNTIME_DIR", home.path())
        .env("MARIONETTE_MODEL_DIR", home.path())
        .args([
            "--log",
            "marionette=info",
            "window",
            "--idle",
            "--vcam",
            "none",
        ])
        .arg("--settings")
        .arg(&settings)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&logfile).unwrap())
        .spawn()
        .unwrap();
    wait_log(
        &logfile,
        "first output frame shown",
        1,
        Duration::from_secs(120),
        &mut child,
    );
    let text = log(&logfile);
    assert!(
        text.contains("starting from the default settings"),
        "{text}"
    );
    assert!(
        text.contains("engine: classic"),
        "no weights: the classic engine\n{text}"
    );
    let window = x(
        &xvfb.display,
        &["xdotool", "search", "--name", "^marionette$"],
    );
    let window = window.lines().next().expect("no window").to_string();
    x(
        &xvfb.display,
        &["xdotool", "windowfocus", "--sync", &window],
    );
    x(&xvfb.display, &["xdotool", "key", "Escape"]);
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still running after Esc"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The damaged file is kept aside, not lost.
    let aside = std::fs::read_to_string(home.path().join("settings.toml.broken")).unwrap();
    assert_eq!(aside, "overlay = [broken");
    assert!(text.contains("settings.toml.broken"), "{text}");
}

#[test]
fn weights_added_in_the_window_switch_the_engine_and_damaged_ones_change_nothing() {
    for tool in ["Xvfb", "xdotool", "import"] {
        assert!(
            have(tool),
            "{tool} is missing: run `bash packaging/setup.sh --tests`"
        );
    }
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../window-weights-test");
    std::fs::create_dir_all(&shots).unwrap();
    let xvfb = Xvfb::start();
    let d = xvfb.display.clone();
    let home = tempfile::tempdir().unwrap();
    let models = home.path().join("models");
    // The tiny checkpoint with its config beside it (its structure is no published config's).
    let good = home.path().join("my-weights.pth.tar");
    std::fs::copy(fixture("tiny-legacy.pth.tar"), &good).unwrap();
    std::fs::copy(fixture("tiny.yaml"), home.path().join("my-weights.yaml")).unwrap();
    let damaged = home.path().join("damaged.pth.tar");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let logfile = shots.join("marionette.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DISPLAY", &d)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_RUNTIME_DIR", home.path())
        .env("MARIONETTE_MODEL_DIR", &models)
        .args([
            "--log",
            "marionette=info",
            "window",
            "--framing",
            "manual",
            "--vcam",
            "none",
        ])
        .arg("--driving-file")
        .arg(still_driving_folder(home.path()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&logfile).unwrap())
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(120);
    wait_log(&logfile, "first output frame shown", 1, limit, &mut child);
    assert!(
        log(&logfile).contains("engine: classic"),
        "{}",
        log(&logfile)
    );
    let window = x(&d, &["xdotool", "search", "--name", "^marionette$"]);
    let window = window.lines().next().expect("no window").to_string();
    x(&d, &["xdotool", "windowfocus", "--sync", &window]);
    let [_, out] = layout(&log(&logfile));
    let classic = screen_until(
        &d,
        &shots.join("1-classic.png"),
        "the output",
        limit,
        |img| region_stats(img, out).1 > 10.0,
    );

    // Ctrl+O opens the dialog with its path field taking the keyboard; a damaged file typed
    // there is refused, says why, and nothing is added.
    let add = |path: &Path| {
        x(&d, &["xdotool", "key", "ctrl+o"]);
        std::thread::sleep(Duration::from_millis(500));
        x(&d, &["xdotool", "key", "ctrl+a", "BackSpace"]);
        x(
            &d,
            &[
                "xdotool",
                "type",
                "--delay",
                "5",
                &path.display().to_string(),
            ],
        );
        x(&d, &["xdotool", "key", "Return"]);
    };
    add(&damaged);
    wait_log(&logfile, "weights refused", 1, limit, &mut child);
    let refused = log(&logfile);
    assert!(refused.contains("damaged.pth.tar"), "{refused}");
    assert!(
        !models.exists() || std::fs::read_dir(&models).unwrap().count() == 0,
        "a damaged checkpoint was added"
    );
    screenshot(&d, &shots.join("2-refused.png"));
    assert!(!refused.contains("engine switched"), "{refused}");

    // The good one: copied into the models folder, and the engine switches to FOMM.
    x(&d, &["xdotool", "key", "Escape"]);
    add(&good);
    wait_log(&logfile, "engine switched: FOMM", 1, limit, &mut child);
    assert!(models.join("my-weights.pth.tar").is_file());
    assert!(models.join("my-weights.yaml").is_file());
    let switched = screen_until(
        &d,
        &shots.join("3-fomm.png"),
        "the FOMM output in the output pane",
        limit,
        |img| mean_abs_diff(&classic, img, out) > 8.0,
    );
    assert!(region_stats(&switched, out).1 > 1.0);
    assert!(child.try_wait().unwrap().is_none(), "{}", log(&logfile));

    // A later run finds it there.
    x(&d, &["xdotool", "key", "Escape"]);
    x(&d, &["xdotool", "key", "Escape"]);
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still running after Esc"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_window_renders_on_a_server_says_what_the_server_does_and_comes_back() {
    for tool in ["Xvfb", "xdotool", "import"] {
        assert!(
            have(tool),
            "{tool} is missing: run `bash packaging/setup.sh --tests`"
        );
    }
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../window-remote-test");
    std::fs::create_dir_all(&shots).unwrap();
    let home = tempfile::tempdir().unwrap();
    let (mut server, addr, secret) =
        super::remote::start_serve("127.0.0.1:0", &home.path().join("secret"));
    let xvfb = Xvfb::start();
    let d = xvfb.display.clone();
    let logfile = shots.join("marionette.log");
    let mut child = start_window(&d, home.path(), &home.path().join("config"), &logfile);
    let limit = Duration::from_secs(120);
    wait_log(&logfile, "first output frame shown", 1, limit, &mut child);
    let window = x(&d, &["xdotool", "search", "--name", "^marionette$"]);
    let window = window.lines().next().expect("no window").to_string();
    x(&d, &["xdotool", "windowfocus", "--sync", &window]);
    let [_, out] = layout(&log(&logfile));

    // Ctrl+R opens the dialog with the server field taking the keyboard (typing waits until the
    // window has taken the key, or the address's digits would pick portraits); Tab goes to the
    // secret field, Enter connects.
    let open_dialog = |times: usize, child: &mut Child| {
        x(&d, &["xdotool", "key", "ctrl+r"]);
        wait_log(&logfile, "action: OpenRemote", times, limit, child);
        std::thread::sleep(Duration::from_millis(500));
    };
    let connect = |secret: &str, times: usize, child: &mut Child| {
        open_dialog(times, child);
        let type_over = |text: &str| {
            x(&d, &["xdotool", "key", "ctrl+a", "BackSpace"]);
            x(&d, &["xdotool", "type", "--delay", "5", text]);
        };
        type_over(&addr.to_string());
        x(&d, &["xdotool", "key", "Tab"]);
        std::thread::sleep(Duration::from_millis(200));
        type_over(secret);
        x(&d, &["xdotool", "key", "Return"]);
    };
    // A wrong secret: the server refuses it, the window says so and renders here.
    connect("0000-0000-0000-0000-0000-0000-0000-0000", 1, &mut child);
    wait_log(&logfile, "engine switched", 1, limit, &mut child);
    wait_log(&logfile, "trying again", 1, limit, &mut child);
    let refused = log(&logfile);
    assert!(refused.contains("secret"), "{refused}");
    assert!(!refused.contains("renders from now on"), "{refused}");
    assert!(child.try_wait().unwrap().is_none(), "{refused}");

    // The right one: the server renders.
    connect(&secret.to_string(), 2, &mut child);
    wait_log(&logfile, "engine switched", 2, limit, &mut child);
    wait_log(&logfile, "renders from now on", 1, limit, &mut child);
    let remote = screen_until(
        &d,
        &shots.join("1-remote.png"),
        "the server's frames in the output pane",
        limit,
        |img| region_stats(img, out).1 > 10.0,
    );
    assert!(region_stats(&remote, out).1 > 10.0);

    // The server goes: the window says so and goes on rendering here.
    server.kill().unwrap();
    server.wait().unwrap();
    wait_log(
        &logfile,
        "rendering on this machine until it is back",
        1,
        limit,
        &mut child,
    );
    std::thread::sleep(Duration::from_secs(2));
    let here = screenshot(&d, &shots.join("2-here.png"));
    assert!(region_stats(&here, out).1 > 10.0);
    assert!(child.try_wait().unwrap().is_none(), "{}", log(&logfile));

    // "Render here" (reached with Tab past the two fields and Connect) switches back.
    open_dialog(3, &mut child);
    for _ in 0..3 {
        x(&d, &["xdotool", "key", "Tab"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    x(&d, &["xdotool", "key", "Return"]);
    wait_log(&logfile, "engine switched", 3, limit, &mut child);
    let back = log(&logfile);
    let last_switch = back
        .lines()
        .rfind(|l| l.contains("engine switched"))
        .unwrap();
    assert!(!last_switch.contains("rendered on"), "{last_switch}");

    // Esc closes the dialog, then the window.
    x(&d, &["xdotool", "key", "Escape"]);
    x(&d, &["xdotool", "key", "Escape"]);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still running after Esc"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", log(&logfile));
}
