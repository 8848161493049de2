//! `marionette animate` end to end, through the real binary: a config, a legacy-format
//! checkpoint and PNG frames in, PNG frames (or a video) out. The PNGs must match the original
//! implementation's predictions within 3 levels (max) and 0.35 levels (mean) of 255.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture, load_tensors};

fn marionette() -> Command {
    Command::new(env!("CARGO_BIN_EXE_marionette"))
}

/// A driving folder with the fixture's driving frames under names whose plain string order is
/// wrong (10 < 9), so name order must be numeric-aware.
fn driving_folder(dir: &Path, name: &str, frames: usize) -> PathBuf {
    let driving = dir.join("driving");
    std::fs::create_dir_all(&driving).expect("mkdir");
    for n in 0..frames {
        std::fs::copy(
            fixture(&format!("{name}-input-driving{n}.png")),
            driving.join(format!("d{}.png", 8 + n)),
        )
        .expect("copy");
    }
    driving
}

fn read_png(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// `animate`'s output with its invisible mark (FOMM's payload) taken off again: what the
/// original's output is compared with.
fn unmarked(png: image::RgbImage) -> image::RgbImage {
    let (w, h) = png.dimensions();
    let pixels =
        crate::common::without_mark(png.as_raw(), w, h, marionette::watermark::MarkEngine::Fomm);
    image::RgbImage::from_raw(w, h, pixels).expect("same size")
}

/// (max, mean) difference in 8-bit levels between a PNG and a (1, 3, H, W) reference in [0, 1].
fn level_diff(png: &image::RgbImage, reference: &candle_core::Tensor) -> (f64, f64) {
    let (_, c, h, w) = reference.dims4().expect("nchw");
    let r = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!((png.width() as usize, png.height() as usize), (w, h));
    let mut max = 0f64;
    let mut sum = 0f64;
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let want = r[(ch * h + y) * w + x] as f64 * 255.0;
                let got = png.get_pixel(x as u32, y as u32)[ch] as f64;
                let d = (got - want).abs();
                max = max.max(d);
                sum += d;
            }
        }
    }
    (max, sum / (c * h * w) as f64)
}

fn animate_folder(name: &str, frames: usize, extra: &[&str], mode: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let driving = driving_folder(tmp.path(), name, frames);
    let out = tmp.path().join("out");
    let ckpt = if name == "tiny" {
        fixture("tiny-legacy.pth.tar")
    } else {
        fixture(&format!("{name}-zip.pth.tar"))
    };
    let status = marionette()
        .args(["animate", "--config"])
        .arg(fixture(&format!("{name}.yaml")))
        .arg("--checkpoint")
        .arg(&ckpt)
        .arg("--source")
        .arg(fixture(&format!("{name}-input-source.png")))
        .arg("--driving")
        .arg(&driving)
        .arg("--output")
        .arg(&out)
        .args(extra)
        .status()
        .expect("run marionette");
    assert!(status.success(), "marionette animate failed");
    let mut written: Vec<_> = std::fs::read_dir(&out)
        .expect("output folder")
        .map(|e| e.unwrap().path())
        .collect();
    written.sort();
    assert_eq!(written.len(), frames, "one PNG per driving frame");
    let reference = load_tensors(&format!("{name}-outputs-ac-true.safetensors"));
    for (n, path) in written.iter().enumerate() {
        let want = &reference[&format!("{mode}.{n}.prediction")];
        let (max, mean) = level_diff(&unmarked(read_png(path)), want);
        assert!(
            max <= 3.0 && mean <= 0.35,
            "{name} {mode} frame {n} ({}): max {max} levels, mean {mean}",
            path.display()
        );
    }
}

#[test]
fn animate_tiny_relative_from_legacy_checkpoint_matches_original() {
    animate_folder("tiny", 3, &[], "relative");
}

#[test]
fn animate_tiny_absolute_matches_original() {
    animate_folder("tiny", 3, &["--absolute"], "absolute");
}

#[test]
fn animate_tiny2_relative_matches_original() {
    animate_folder("tiny2", 2, &[], "relative");
}

#[test]
fn animate_to_video_keeps_frame_count_rate_and_audio() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A 6-frame driving video at 12.5 fps with a sine audio track, made from the fixture frames.
    let frames = tmp.path().join("f");
    std::fs::create_dir_all(&frames).unwrap();
    for n in 0..6 {
        std::fs::copy(
            fixture(&format!("tiny-input-driving{}.png", n % 3)),
            frames.join(format!("{n}.png")),
        )
        .unwrap();
    }
    let driving = tmp.path().join("driving.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-framerate", "12.5", "-i"])
        .arg(frames.join("%d.png"))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=0.48",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&driving)
        .status()
        .expect("ffmpeg");
    assert!(ok.success());
    let out = tmp.path().join("result.mp4");
    let status = marionette()
        .args(["animate", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .arg("--source")
        .arg(fixture("tiny-input-source.png"))
        .arg("--driving")
        .arg(&driving)
        .arg("--output")
        .arg(&out)
        .arg("--find-best-frame")
        .status()
        .expect("run");
    assert!(status.success());
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,nb_read_frames,r_frame_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(&out)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(text.contains("h264,video,25/2,6"), "video stream: {text}");
    assert!(text.contains("aac,audio"), "audio kept: {text}");
}

#[test]
fn missing_checkpoint_is_a_clear_error() {
    let out = marionette()
        .args([
            "animate",
            "--checkpoint",
            "/nonexistent/vox-cpk.pth.tar",
            "--source",
            "a.png",
            "--driving",
            "b",
            "--output",
            "c",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vox-cpk.pth.tar"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn corrupt_source_image_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("portrait.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    let out = marionette()
        .args(["animate", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny.safetensors"))
        .arg("--source")
        .arg(&bad)
        .arg("--driving")
        .arg(tmp.path())
        .arg("--output")
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("portrait.png") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn convert_writes_the_two_networks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tiny.safetensors");
    let status = marionette()
        .arg("convert")
        .arg(fixture("tiny-legacy.pth.tar"))
        .arg(&out)
        .arg("--config")
        .arg(fixture("tiny.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    let got = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    let want = load_tensors("tiny.safetensors");
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        let g = &got[k];
        assert_eq!(g.dims(), v.dims(), "{k}");
        assert_eq!(g.dtype(), v.dtype(), "{k}");
        if v.dtype() == candle_core::DType::F32 {
            assert_eq!(common::diff(g, v).0, 0.0, "{k}");
        }
    }
}

#[test]
fn mismatched_config_names_keys_shapes_and_a_fitting_config() {
    let out = marionette()
        .arg("convert")
        .arg(fixture("tiny2-zip.pth.tar"))
        .arg("/dev/null")
        .arg("--config")
        .arg(fixture("tiny.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not fit config"), "{err}");
    assert!(
        err.contains("shape mismatch for `generator.") && err.contains("the config expects"),
        "{err}"
    );
    assert!(
        err.contains("num_kp: 5")
            && err.contains("single_jacobian_map: true")
            && err.contains("num_down_blocks: 3"),
        "{err}"
    );
}

fn run_folder(tmp: &Path, driving: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    marionette()
        .args(["animate", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-legacy.pth.tar"))
        .arg("--source")
        .arg(fixture("tiny-input-source.png"))
        .arg("--driving")
        .arg(driving)
        .arg("--output")
        .arg(tmp.join(out))
        .args(extra)
        .output()
        .expect("run marionette")
}

/// With `--best-frame N`, frame N is the reference: it renders the portrait in its own pose, as
/// frame 0 does with the default reference; other frames move relative to frame N.
#[test]
fn best_frame_makes_that_frame_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let driving = driving_folder(tmp.path(), "tiny", 3);
    assert!(
        run_folder(tmp.path(), &driving, "first", &[])
            .status
            .success()
    );
    assert!(
        run_folder(tmp.path(), &driving, "best2", &["--best-frame", "2"])
            .status
            .success()
    );
    let first0 = read_png(&tmp.path().join("first/frame_000000.png"));
    let best2 = read_png(&tmp.path().join("best2/frame_000002.png"));
    let best0 = read_png(&tmp.path().join("best2/frame_000000.png"));
    let max_diff = |a: &image::RgbImage, b: &image::RgbImage| {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap()
    };
    assert!(
        max_diff(&first0, &best2) <= 1,
        "the reference frame renders the source pose"
    );
    assert!(
        max_diff(&first0, &best0) > 10,
        "frame 0 moves relative to frame 2"
    );
}

#[test]
fn best_frame_out_of_range_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let driving = driving_folder(tmp.path(), "tiny", 3);
    let out = run_folder(tmp.path(), &driving, "o", &["--best-frame", "7"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--best-frame 7 is out of range") && err.contains("3 frames"),
        "{err}"
    );
}
