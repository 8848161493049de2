//! The invisible mark through real codecs: marionette's own output (`run --idle`, composed as
//! the virtual camera sends it) re-encoded as a call would (H.264 and VP8 at 300 kbit/s, scaled,
//! cropped, brighter or darker, mirrored, a JPEG still) is found by `marionette verify` from two
//! seconds; unmarked inputs are not; the mark costs at least 42 dB of PSNR on the portraits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use marionette::frame::{Frame, Size};
use marionette::output::compose::compose;
use marionette::watermark::{Detector, MarkEngine, Marker, Payload};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("running ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `marionette verify --json PATH` as (marked, p_false, engine).
fn verify(path: &Path) -> (bool, f64, Option<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .args(["verify", "--json", "--seconds", "2"])
        .arg(path)
        .output()
        .expect("running marionette verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify {}: {}{text}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    (
        v["marked"].as_bool().expect("marked"),
        v["p_false"].as_f64().expect("p_false"),
        v["engine"].as_str().map(str::to_string),
    )
}

/// Two seconds of marionette's output (idle motion, classic engine), 640x480 as the virtual
/// camera composes it, as PNGs in `dir`.
fn marked_clip(dir: &Path) -> PathBuf {
    let raw = dir.join("raw");
    let o = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .env("MARIONETTE_MODEL_DIR", dir.join("no-models"))
        .args([
            "run", "--idle", "--engine", "classic", "--frames", "60", "--vcam", "none",
        ])
        .arg("--record")
        .arg(format!("{}/", raw.display()))
        .output()
        .expect("running marionette run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.join("vcam");
    std::fs::create_dir_all(&out).unwrap();
    let files = marionette::media::frames::list_image_files(&raw).unwrap();
    assert_eq!(files.len(), 60);
    for (i, f) in files.iter().enumerate() {
        let img = image::open(f).unwrap().to_rgb8();
        let frame = Frame::from_image(0, Instant::now(), img);
        let c = compose(&frame, Size::new(640, 480), false);
        image::RgbImage::from_raw(640, 480, c.rgb.to_vec())
            .unwrap()
            .save(out.join(format!("{i:04}.png")))
            .unwrap();
    }
    out
}

#[test]
fn the_mark_survives_what_a_call_does_and_says_which_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let clip = marked_clip(d);
    let input = format!("{}/%04d.png", clip.display());
    let (marked, p, engine) = verify(&clip);
    assert!(marked && p < 1e-20, "the clip as written: p_false {p}");
    assert_eq!(engine.as_deref(), Some("classic"));

    // Each as a call app would send it: the change, then the codec at a call's low rate.
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("h264", None, "libx264"),
        ("vp8", None, "libvpx"),
        ("320x240", Some("scale=320:240"), "libx264"),
        ("1280x720", Some("scale=1280:720"), "libx264"),
        (
            "crop 5% each side",
            Some("crop=iw*0.9:ih*0.9,scale=640:480"),
            "libx264",
        ),
        (
            "brightness and contrast +10%",
            Some("eq=brightness=0.1:contrast=1.1"),
            "libx264",
        ),
        (
            "brightness and contrast -10%",
            Some("eq=brightness=-0.1:contrast=0.9"),
            "libx264",
        ),
        ("mirrored", Some("hflip"), "libvpx"),
    ];
    let mut report = Vec::new();
    for (name, filter, codec) in cases {
        let out = d.join(format!(
            "{}.{}",
            name.replace([' ', ',', '%'], "_"),
            if *codec == "libvpx" { "webm" } else { "mp4" }
        ));
        let mut args = vec!["-framerate", "30", "-i", &input];
        if let Some(f) = filter {
            args.extend(["-vf", f]);
        }
        let out_s = out.display().to_string();
        args.extend(["-c:v", codec, "-b:v", "300k", "-pix_fmt", "yuv420p", &out_s]);
        ffmpeg(&args);
        let (marked, p, engine) = verify(&out);
        report.push(format!("{name}: p_false {p:.1e}"));
        assert!(marked, "{name}: not found (p_false {p:.2e})");
        assert_eq!(engine.as_deref(), Some("classic"), "{name}");
    }
    // A still: one frame as JPEG at quality 50.
    let still = image::open(clip.join("0030.png")).unwrap().to_rgb8();
    let jpeg = d.join("still.jpg");
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 50)
        .encode_image(&still)
        .unwrap();
    std::fs::write(&jpeg, bytes).unwrap();
    let (marked, p, _) = verify(&jpeg);
    report.push(format!("JPEG q50 still: p_false {p:.1e}"));
    assert!(marked, "JPEG q50 still: not found (p_false {p:.2e})");
    eprintln!("watermark: {}", report.join("; "));
}

/// Frames without the mark: the test pattern, the portraits, noise, the fixtures' frames.
#[test]
fn unmarked_pictures_are_not_called_marked() {
    let mut inputs: Vec<(String, Vec<image::RgbImage>)> = Vec::new();
    for name in ["eileen-collins.png", "grace-hopper.jpg"] {
        let img =
            marionette::media::frames::load_rgb(&repo().join("assets/avatars").join(name)).unwrap();
        let f = Frame::from_image(0, Instant::now(), img);
        let c = compose(&f, Size::new(640, 480), false);
        inputs.push((
            name.into(),
            vec![image::RgbImage::from_raw(640, 480, c.rgb.to_vec()).unwrap()],
        ));
    }
    let face =
        marionette::media::frames::load_rgb(&repo().join("assets/avatars/eileen-collins.png"))
            .unwrap();
    let factory = marionette::capture::SourceSpec::TestPattern
        .factory(face)
        .expect("the test pattern is a source");
    let mut pattern = factory().unwrap();
    let frames: Vec<image::RgbImage> = (0..60)
        .map(|_| {
            let f = pattern.next_frame().unwrap();
            image::RgbImage::from_raw(f.size.width, f.size.height, f.rgb.to_vec()).unwrap()
        })
        .collect();
    inputs.push(("test pattern, 2 s".into(), frames));
    let mut state = 0x1234_5678u32;
    let noise: Vec<u8> = (0..320 * 240 * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    inputs.push((
        "noise".into(),
        vec![image::RgbImage::from_raw(320, 240, noise).unwrap()],
    ));
    let fixtures = crate::common::fixtures_dir();
    for f in [
        "tiny-input-source.png",
        "tiny-input-driving0.png",
        "tiny2-input-source.png",
    ] {
        let img = marionette::media::frames::load_rgb(&fixtures.join(f)).unwrap();
        inputs.push((f.into(), vec![img]));
    }
    for (name, frames) in inputs {
        let mut d = Detector::default();
        for f in &frames {
            d.add_rgb(f.as_raw(), f.width(), f.height());
        }
        let v = d.verdict();
        assert!(!v.marked, "{name} called marked: {v:?}");
        assert!(v.payload.is_none(), "{name}");
    }
}

#[test]
fn the_mark_costs_at_least_42_db_on_the_portraits() {
    for name in ["eileen-collins.png", "grace-hopper.jpg"] {
        let img =
            marionette::media::frames::load_rgb(&repo().join("assets/avatars").join(name)).unwrap();
        for size in [256u32, 480] {
            let plain = image::imageops::resize(
                &marionette::media::resize::center_square_crop(&img),
                size,
                size,
                image::imageops::FilterType::Triangle,
            );
            let mut marked = plain.clone();
            Marker::new(Payload::new(MarkEngine::Fomm)).mark_rgb(&mut marked, size, size);
            let mse = plain
                .as_raw()
                .iter()
                .zip(marked.as_raw())
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum::<f64>()
                / plain.as_raw().len() as f64;
            let psnr = 10.0 * (255.0f64 * 255.0 / mse).log10();
            assert!(psnr >= 42.0, "{name} at {size}: {psnr:.1} dB");
        }
    }
}

#[test]
fn verify_says_what_it_cannot_read_and_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // A truncated video, a text file, an empty folder, a missing file.
    let mut video = Vec::new();
    let out = d.join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        &out.display().to_string(),
    ]);
    video.extend(std::fs::read(&out).unwrap());
    let truncated = d.join("truncated.mp4");
    std::fs::write(&truncated, &video[..video.len() / 3]).unwrap();
    let text = d.join("notes.png");
    std::fs::write(&text, "not a picture").unwrap();
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (path, says) in [
        (truncated, "truncated.mp4"),
        (text, "notes.png"),
        (empty.clone(), "holds no pictures"),
        (d.join("missing.png"), "missing.png"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_marionette"))
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", path.display());
        assert!(err.contains(says), "{}: {err}", path.display());
        assert!(!err.contains("panicked"), "{err}");
    }
    // The good clip reads, and is not marked: exit status 0.
    let (marked, _, _) = verify(&out);
    assert!(!marked);
}
