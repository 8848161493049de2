//! Tests of `media`: skimage-exact resizing (reference data from scikit-image 0.26.0, made by
//! `tests/data/resize/make_reference.py`), JPEG decoding identical to Pillow's (reference data from
//! Pillow 13.0.0 with libjpeg-turbo 3.2.0, made by `tests/data/jpeg/make_reference.py`), video in /
//! out through ffmpeg, frame folders.
//!
//! The video tests need `ffmpeg` and `ffprobe` (with libx264 and the lavfi test sources) on PATH.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, Rgb, RgbImage};
use marionette::media::MediaError;
use marionette::media::frames::{FrameFolderWriter, list_image_files, load_image, load_rgb};
use marionette::media::resize::{
    center_square_crop, resize_hwc_f64, resize_like_skimage, tensor_to_rgb8, to_model_tensor,
};
use marionette::media::video::{
    FfmpegTools, VideoReader, VideoWriter, is_video_path, probe, probe_with,
};

// ---------------------------------------------------------------------------------------------
// helpers

/// The FOMM fixtures: `$MARIONETTE_FIXTURES`, else `../shared/fixtures/fomm` beside the crate
/// (main crate), else two levels up (scratch crates).
fn fixtures_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MARIONETTE_FIXTURES") {
        return PathBuf::from(d);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in ["..", "../.."] {
        let d = root.join(up).join("shared/fixtures/fomm");
        if d.is_dir() {
            return d;
        }
    }
    panic!("FOMM fixtures not found: set MARIONETTE_FIXTURES");
}

fn reference() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/resize/resize_reference.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).expect("reading the resize reference")
}

fn u8_hwc(t: &Tensor) -> (Vec<u8>, usize, usize, usize) {
    let (h, w, c) = t.dims3().expect("HWC tensor");
    (t.flatten_all().unwrap().to_vec1::<u8>().unwrap(), h, w, c)
}

fn f64_values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// `pattern()` of make_reference.py.
fn pattern(h: u32, w: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = |ch: u32| {
            let v = x * 31 + y * 17 + ch * 101 + ((x * y) % 29) * 7 + ((x ^ y) & 15) * 5;
            (v % 256) as u8
        };
        Rgb([v(0), v(1), v(2)])
    })
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed for the video tests (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let s: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    s as f64 / a.as_raw().len() as f64
}

// ---------------------------------------------------------------------------------------------
// resize: scikit-image reference

/// Tolerances: the f64 results must agree with skimage to 1e-14 (same operations in the same order;
/// in practice they are bit-identical or an ulp apart), and after the cast to f32 (what the model
/// sees) to 1e-6.
const F64_TOL: f64 = 1e-14;
const F32_TOL: f64 = 1e-6;

#[test]
fn resize_matches_skimage_on_reference_cases() {
    let r = reference();
    let cases = [
        "down2",
        "nonsquare",
        "mixed",
        "up",
        "identity",
        "bigfactor",
        "tiny",
        "singlerow",
        "const",
        "rgba",
    ];
    for name in cases {
        let (input, h, w, c) = u8_hwc(&r[&format!("{name}.input")]);
        let want_t = &r[&format!("{name}.output")];
        let (oh, ow, _) = want_t.dims3().unwrap();
        let want = f64_values(want_t);
        // RGB(A) -> RGB: demo.py's `[..., :3]`.
        let rgb: Vec<u8> = input
            .chunks_exact(c)
            .flat_map(|px| px[..3].to_vec())
            .collect();
        let img = RgbImage::from_raw(w as u32, h as u32, rgb).unwrap();
        let got = resize_like_skimage(&img, ow as u32, oh as u32).unwrap();
        let d64 = max_abs_diff(&got, &want);
        eprintln!("{name}: {h}x{w}x{c} -> {oh}x{ow}: max |diff| f64 {d64:e}");
        assert!(d64 <= F64_TOL, "{name}: f64 max diff {d64:e}");

        let t = to_model_tensor(&img, ow as u32, oh as u32).unwrap();
        assert_eq!(t.dims(), &[1, 3, oh, ow]);
        assert_eq!(t.dtype(), DType::F32);
        let got32 = f64_values(&t.squeeze(0).unwrap().permute((1, 2, 0)).unwrap());
        let want32: Vec<f64> = want.iter().map(|&v| f64::from(v as f32)).collect();
        let d32 = max_abs_diff(&got32, &want32);
        assert!(d32 <= F32_TOL, "{name}: f32 max diff {d32:e}");
        assert!(got.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn resize_keeps_every_channel_of_any_count() {
    // The RGBA case through the generic path, with alpha: the first 3 channels must match too.
    let r = reference();
    let (input, h, w, c) = u8_hwc(&r["rgba.input"]);
    let src: Vec<f64> = input
        .iter()
        .map(|&v| f64::from(v) * (1.0 / 255.0))
        .collect();
    let got = resize_hwc_f64(&src, w, h, c, 16, 16).unwrap();
    let rgb: Vec<f64> = got.chunks_exact(4).flat_map(|p| p[..3].to_vec()).collect();
    let d = max_abs_diff(&rgb, &f64_values(&r["rgba.output"]));
    assert!(d <= F64_TOL, "rgba generic: {d:e}");
    // Alpha is constant 255: stays exactly 1.
    assert!(got.chunks_exact(4).all(|p| p[3] == 1.0));
}

#[test]
fn resize_matches_skimage_on_a_photo_and_a_demo_sized_picture() {
    let r = reference();
    let photo = load_rgb(&fixtures_dir().join("tiny-input-source.png")).unwrap();
    let got = resize_like_skimage(&photo, 96, 80).unwrap();
    let d = max_abs_diff(&got, &f64_values(&r["photo.output"]));
    eprintln!("photo 256x256 -> 80x96: max |diff| f64 {d:e}");
    assert!(d <= F64_TOL, "photo: {d:e}");

    // 512 wide x 600 high -> 256x256, as demo.py does for a portrait photo; skimage's float64 result
    // was stored as float32, so compare the f32 tensor.
    let big = pattern(600, 512);
    let row0: Vec<u8> = big.as_raw()[..512 * 3].to_vec();
    let want_row0 = r["big.input_row0"]
        .flatten_all()
        .unwrap()
        .to_vec1::<u8>()
        .unwrap();
    assert_eq!(
        row0, want_row0,
        "the test picture formula differs from make_reference.py"
    );
    let start = std::time::Instant::now();
    let t = to_model_tensor(&big, 256, 256).unwrap();
    eprintln!("600x512 -> 256x256 resize: {:?}", start.elapsed());
    let got = f64_values(&t.squeeze(0).unwrap().permute((1, 2, 0)).unwrap());
    let d = max_abs_diff(&got, &f64_values(&r["big.output"]));
    eprintln!("big 600x512 -> 256x256: max |diff| f32 {d:e}");
    assert!(d <= F32_TOL, "big: {d:e}");
}

#[test]
fn tensor_to_rgb8_matches_img_as_ubyte() {
    let r = reference();
    for (name, batch) in [("ubyte32", false), ("ubyte64", true)] {
        let mut t = r[&format!("{name}.input")].clone();
        if batch {
            t = t.unsqueeze(0).unwrap(); // (1, 3, H, W) also accepted
        }
        let img = tensor_to_rgb8(&t).unwrap();
        let (want, h, w, _) = u8_hwc(&r[&format!("{name}.output")]);
        assert_eq!(img.dimensions(), (w as u32, h as u32));
        let wrong = img
            .as_raw()
            .iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(wrong, 0, "{name}: {wrong} bytes differ from img_as_ubyte");
    }
}

#[test]
fn tensor_to_rgb8_rejects_what_skimage_rejects() {
    let over = Tensor::full(1.5f32, (3, 2, 2), &Device::Cpu).unwrap();
    let err = tensor_to_rgb8(&over).unwrap_err();
    assert!(matches!(err, MediaError::InvalidPixels(_)), "{err}");
    let nan = Tensor::full(f32::NAN, (1, 3, 2, 2), &Device::Cpu).unwrap();
    assert!(matches!(
        tensor_to_rgb8(&nan).unwrap_err(),
        MediaError::InvalidPixels(_)
    ));
    let wrong_shape = Tensor::zeros((4, 2, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        tensor_to_rgb8(&wrong_shape).unwrap_err(),
        MediaError::InvalidArgument(_)
    ));
    // Slightly negative values clip to 0 (skimage allows [-1, 0) for unsigned output).
    let neg = Tensor::full(-0.25f32, (3, 1, 1), &Device::Cpu).unwrap();
    assert_eq!(tensor_to_rgb8(&neg).unwrap().as_raw(), &[0, 0, 0]);
}

#[test]
fn center_square_crop_takes_the_middle() {
    let img = RgbImage::from_fn(7, 4, |x, y| Rgb([x as u8, y as u8, 0]));
    let c = center_square_crop(&img);
    assert_eq!(c.dimensions(), (4, 4));
    assert_eq!(c.get_pixel(0, 0).0, [1, 0, 0]);
    assert_eq!(c.get_pixel(3, 3).0, [4, 3, 0]);
    let tall = RgbImage::from_fn(3, 8, |x, y| Rgb([x as u8, y as u8, 0]));
    let c = center_square_crop(&tall);
    assert_eq!(c.dimensions(), (3, 3));
    assert_eq!(c.get_pixel(0, 0).0, [0, 2, 0]);
}

// ---------------------------------------------------------------------------------------------
// video

/// 12 frames at 25 fps, 64x48, with a 440 Hz sine audio track (ffmpeg's lavfi test sources).
fn make_test_video(dir: &Path) -> PathBuf {
    let path = dir.join("src clip.mp4"); // a space in the name on purpose
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        "0.48",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        path.to_str().unwrap(),
    ]);
    path
}

#[test]
fn video_round_trip_with_audio() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_test_video(dir.path());

    let info = probe(&src).unwrap();
    assert_eq!((info.width, info.height), (64, 48));
    assert_eq!(info.fps, 25.0);
    assert_eq!(info.frame_count, Some(12));
    assert!(info.has_audio);
    assert_eq!(info.codec, "h264");

    let frames: Vec<RgbImage> = VideoReader::open(&src)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(frames.len(), 12);
    // The same frames as ffmpeg's own RGB conversion (first and last), bit for bit.
    for (index, frame) in [(0usize, &frames[0]), (11, &frames[11])] {
        let png = dir.path().join(format!("ref{index}.png"));
        ffmpeg(&[
            "-i",
            src.to_str().unwrap(),
            "-vf",
            &format!("select=eq(n\\,{index})"),
            "-frames:v",
            "1",
            "-pix_fmt",
            "rgb24",
            png.to_str().unwrap(),
        ]);
        let want = load_rgb(&png).unwrap();
        assert_eq!(frame.as_raw(), want.as_raw(), "frame {index}");
    }

    let out = dir.path().join("nested/out.mp4");
    let mut w = VideoWriter::create(&out, 64, 48, info.fps, Some(&src)).unwrap();
    for f in &frames {
        w.write(f).unwrap();
    }
    assert_eq!(w.frames_written(), 12);
    w.finish().unwrap();

    let oi = probe(&out).unwrap();
    assert_eq!((oi.width, oi.height), (64, 48));
    assert_eq!(oi.fps, 25.0);
    assert_eq!(oi.frame_count, Some(12));
    assert!(oi.has_audio);
    assert_eq!(oi.codec, "h264");
    let back: Vec<RgbImage> = VideoReader::open(&out)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back.len(), 12);
    let worst = frames
        .iter()
        .zip(&back)
        .map(|(a, b)| mean_abs_diff(a, b))
        .fold(0.0, f64::max);
    eprintln!("re-encoded testsrc: worst per-frame mean |diff| {worst:.2} / 255");
    // CRF 18 on a tiny, sharp-edged picture with 4:2:0 chroma: a few levels on average.
    assert!(
        worst < 6.0,
        "re-encoding changed the frames too much: {worst}"
    );
}

#[test]
fn writer_keeps_every_frame_in_order_when_the_audio_is_shorter() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("short.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "0.2",
        audio.to_str().unwrap(),
    ]);
    let out = dir.path().join("ordered.mp4");
    let n = 30u32;
    let mut w = VideoWriter::create(&out, 32, 32, 10.0, Some(&audio)).unwrap();
    for i in 0..n {
        let level = (i * 8) as u8;
        w.write(&RgbImage::from_pixel(32, 32, Rgb([level, level, level])))
            .unwrap();
    }
    w.finish().unwrap();
    let info = probe(&out).unwrap();
    assert!(info.has_audio);
    assert_eq!(info.fps, 10.0);
    let back: Vec<RgbImage> = VideoReader::open(&out)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back.len(), n as usize, "frames were dropped");
    for (i, f) in back.iter().enumerate() {
        let mean = f.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / f.as_raw().len() as f64;
        assert!(
            (mean - (i * 8) as f64).abs() < 3.0,
            "frame {i}: mean {mean}, expected {}",
            i * 8
        );
    }
}

#[test]
fn writer_handles_odd_sizes_no_audio_and_wrong_frames() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("odd.mkv");
    let mut w = VideoWriter::create(&out, 33, 21, 12.5, None).unwrap();
    let err = w.write(&RgbImage::new(32, 21)).unwrap_err();
    assert!(matches!(err, MediaError::FrameSizeMismatch { .. }), "{err}");
    for _ in 0..3 {
        w.write(&RgbImage::from_pixel(33, 21, Rgb([200, 10, 10])))
            .unwrap();
    }
    w.finish().unwrap();
    let info = probe(&out).unwrap();
    // Padded by one row / column for yuv420p.
    assert_eq!((info.width, info.height), (34, 22));
    assert_eq!(info.fps, 12.5);
    assert!(!info.has_audio);
    assert_eq!(VideoReader::open(&out).unwrap().count(), 3);

    // No frames: an error, not an empty file reported as success.
    let w = VideoWriter::create(&dir.path().join("empty.mp4"), 8, 8, 25.0, None).unwrap();
    assert!(w.finish().is_err());
    // Bad arguments.
    assert!(VideoWriter::create(&dir.path().join("x.mp4"), 0, 8, 25.0, None).is_err());
    assert!(VideoWriter::create(&dir.path().join("x.mp4"), 8, 8, f64::NAN, None).is_err());
}

#[test]
fn gif_and_webm_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_test_video(dir.path());
    for name in ["out.gif", "out.webm"] {
        let out = dir.path().join(name);
        let mut w = VideoWriter::create(&out, 64, 48, 25.0, Some(&src)).unwrap();
        for f in VideoReader::open(&src).unwrap() {
            w.write(&f.unwrap()).unwrap();
        }
        w.finish().unwrap();
        let info = probe(&out).unwrap();
        assert_eq!((info.width, info.height), (64, 48), "{name}");
        assert_eq!(info.has_audio, name.ends_with("webm"), "{name}");
        assert_eq!(VideoReader::open(&out).unwrap().count(), 12, "{name}");
    }
}

#[test]
fn dropping_a_reader_early_stops_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_test_video(dir.path());
    for _ in 0..20 {
        let mut r = VideoReader::open(&src).unwrap();
        assert!(r.next().unwrap().is_ok());
        // Dropped here with 11 frames unread: must not block or leak.
    }
    let mut r = VideoReader::open(&src).unwrap();
    assert_eq!(r.by_ref().count(), 12);
    assert!(r.next().is_none(), "stays finished");
}

#[test]
fn corrupt_and_missing_videos_give_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.mp4");
    std::fs::write(&bad, b"this is not a video at all, just some text bytes").unwrap();
    let err = VideoReader::open(&bad)
        .err()
        .expect("corrupt video must fail");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, MediaError::ToolFailed { .. }), "{msg}");
    assert!(
        msg.contains("bad.mp4") && msg.contains("Invalid data"),
        "{msg}"
    );

    let err = probe(&dir.path().join("missing.mp4")).unwrap_err();
    assert!(matches!(err, MediaError::Io { .. }), "{err}");

    // Truncated file: the first 2 KiB of a valid video.
    let src = make_test_video(dir.path());
    let bytes = std::fs::read(&src).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..2048.min(bytes.len())]).unwrap();
    let result: Result<Vec<RgbImage>, _> = VideoReader::open(&cut).and_then(|r| r.collect());
    match result {
        Err(e) => eprintln!("{e}"),
        Ok(frames) => panic!("a truncated video read as {} fine frames", frames.len()),
    }
}

#[test]
fn missing_ffmpeg_is_reported_with_install_advice() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("any.mp4");
    std::fs::write(&src, b"x").unwrap();
    let tools = FfmpegTools::new("marionette-no-such-ffmpeg", "marionette-no-such-ffprobe");
    let err = probe_with(&tools, &src).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ffprobe was not found on PATH: install it (Debian/Ubuntu: sudo apt-get install ffmpeg)"
    );
    let err = tools.check().unwrap_err();
    assert_eq!(
        err.to_string(),
        "ffmpeg was not found on PATH: install it (Debian/Ubuntu: sudo apt-get install ffmpeg)"
    );
    let err = VideoWriter::create_with(&tools, &dir.path().join("o.mp4"), 8, 8, 25.0, None)
        .err()
        .unwrap();
    assert!(matches!(err, MediaError::ToolNotFound { .. }), "{err}");
    let abs = FfmpegTools::new("/nonexistent/ffmpeg", "/nonexistent/ffprobe");
    let err = probe_with(&abs, &src).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ffprobe was not found at /nonexistent/ffprobe: install it"),
        "{err}"
    );
}

#[test]
fn video_paths_by_extension() {
    assert!(is_video_path(Path::new("out.mp4")));
    assert!(is_video_path(Path::new("OUT.MOV")));
    assert!(!is_video_path(Path::new("out")));
    assert!(!is_video_path(Path::new("out/frame.png")));
}

// ---------------------------------------------------------------------------------------------
// frame folders

#[test]
fn folder_listing_is_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    let img = RgbImage::new(2, 2);
    for name in ["10.png", "2.png", "1.png", "11.JPG", "003.png"] {
        img.save_with_format(dir.path().join(name), image::ImageFormat::Png)
            .unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), b"not a picture").unwrap();
    std::fs::create_dir(dir.path().join("4.png")).unwrap(); // a folder with a picture's name
    let names: Vec<String> = list_image_files(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["1.png", "2.png", "003.png", "10.png", "11.JPG"]);

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        list_image_files(empty.path()).unwrap_err(),
        MediaError::NoImages { .. }
    ));
    assert!(matches!(
        list_image_files(&empty.path().join("missing")).unwrap_err(),
        MediaError::Io { .. }
    ));
}

#[test]
fn corrupt_images_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"definitely not a png").unwrap();
    let err = load_rgb(&bad).unwrap_err();
    assert!(err.to_string().contains("broken.png"), "{err}");

    // A real PNG cut short.
    let good = dir.path().join("good.png");
    pattern(64, 64).save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_rgb(&cut).unwrap_err();
    assert!(matches!(err, MediaError::Image { .. }), "{err}");
    assert!(matches!(
        load_rgb(&dir.path().join("missing.png")).unwrap_err(),
        MediaError::Io { .. }
    ));
}

#[test]
fn load_rgb_converts_like_the_original_demo() {
    let dir = tempfile::tempdir().unwrap();
    let rgba = dir.path().join("rgba.png");
    image::RgbaImage::from_pixel(3, 2, image::Rgba([10, 20, 30, 40]))
        .save(&rgba)
        .unwrap();
    assert_eq!(load_rgb(&rgba).unwrap().get_pixel(2, 1).0, [10, 20, 30]);
    let grey = dir.path().join("grey.png");
    image::GrayImage::from_pixel(3, 2, image::Luma([77]))
        .save(&grey)
        .unwrap();
    assert_eq!(load_rgb(&grey).unwrap().get_pixel(0, 0).0, [77, 77, 77]);
    let deep = dir.path().join("deep.png");
    image::ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(2, 2, Rgb([0x12ff, 0xff00, 0x0080]))
        .save(&deep)
        .unwrap();
    // High byte, as Pillow reads 16-bit RGB PNGs.
    assert_eq!(
        load_rgb(&deep).unwrap().get_pixel(1, 1).0,
        [0x12, 0xff, 0x00]
    );
}

#[test]
fn frame_folder_writer_names_sort_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a/b");
    let mut w = FrameFolderWriter::create(&out, 12).unwrap();
    for i in 0..12u8 {
        let p = w
            .write(&RgbImage::from_pixel(4, 3, Rgb([i, 0, 0])))
            .unwrap();
        assert_eq!(
            p.file_name().unwrap().to_string_lossy(),
            format!("frame_{i:06}.png")
        );
    }
    assert_eq!(w.frames_written(), 12);
    let listed = list_image_files(&out).unwrap();
    assert_eq!(listed.len(), 12);
    for (i, p) in listed.iter().enumerate() {
        assert_eq!(load_rgb(p).unwrap().get_pixel(0, 0).0[0] as usize, i);
    }
    // A second run into the same folder is refused rather than mixing old frames in.
    assert!(matches!(
        FrameFolderWriter::create(&out, 5).err().unwrap(),
        MediaError::OutputFolderNotEmpty { .. }
    ));
    // Wide enough for the count.
    let many = FrameFolderWriter::create(&dir.path().join("many"), 1_234_567).unwrap();
    assert_eq!(
        many.next_path().file_name().unwrap().to_string_lossy(),
        "frame_0000000.png"
    );
}

#[test]
fn rotated_video_is_read_upright() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_test_video(dir.path());
    let rotated = dir.path().join("rotated.mp4");
    // A quarter-turn display rotation, as phones record portrait video.
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        rotated.to_str().unwrap(),
    ]);
    let info = probe(&rotated).unwrap();
    assert_eq!(info.rotation % 180, 90, "rotation {}", info.rotation);
    assert_eq!((info.width, info.height), (48, 64));
    let frames: Vec<RgbImage> = VideoReader::open(&rotated)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(frames.len(), 12);
    assert!(frames.iter().all(|f| f.dimensions() == (48, 64)));
}

#[test]
fn ffmpeg_failures_surface_its_message() {
    let dir = tempfile::tempdir().unwrap();
    // The output path is an existing folder: ffmpeg cannot open it for writing.
    let out = dir.path().join("taken.mp4");
    std::fs::create_dir(&out).unwrap();
    let frame = RgbImage::new(16, 16);
    let result = VideoWriter::create(&out, 16, 16, 25.0, None).and_then(|mut w| {
        for _ in 0..50 {
            w.write(&frame)?;
        }
        w.finish()
    });
    let err = result.unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, MediaError::ToolFailed { .. }), "{msg}");
    assert!(
        msg.contains("taken.mp4") && msg.contains("directory"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// JPEG: Pillow reference (tests/data/jpeg/make_reference.py)

fn jpeg_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/jpeg")
        .join(name)
}

/// Every case of make_reference.py: its JPEG file and the layout Pillow reads it as.
const JPEG_CASES: &[(&str, &str)] = &[
    ("grace-hopper", "RGB"),
    ("q75-420", "RGB"),
    ("q95-420", "RGB"),
    ("q95-444", "RGB"),
    ("q75-422-odd", "RGB"),
    ("q75-420-odd-restart", "RGB"),
    ("progressive-q85-420", "RGB"),
    ("grey-q90", "L"),
    ("rgb-q90", "RGB"),
    ("cmyk-q90", "CMYK"),
    ("damaged-q95-444", "RGB"),
];

/// Tolerance: none. Pillow's decoded pixels (stored losslessly as PNG) must come back byte for byte.
#[test]
fn jpeg_decodes_exactly_like_pillow() {
    for &(name, mode) in JPEG_CASES {
        let jpg = jpeg_data(&format!("{name}.jpg"));
        let want = image::open(jpeg_data(&format!("{name}.pillow.png")))
            .unwrap()
            .to_rgb8();
        let raw = load_image(&jpg).unwrap_or_else(|e| panic!("{name}: {e}"));
        match mode {
            "L" => assert!(matches!(raw, DynamicImage::ImageLuma8(_)), "{name}"),
            _ => assert!(matches!(raw, DynamicImage::ImageRgb8(_)), "{name}"),
        }
        let got = load_rgb(&jpg).unwrap();
        assert_eq!(got.dimensions(), want.dimensions(), "{name}");
        let differing = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing,
            0,
            "{name}: {differing} of {} bytes differ from Pillow (mean |diff| {:.4})",
            got.as_raw().len(),
            mean_abs_diff(&got, &want)
        );
    }
}

#[test]
fn jpeg_is_recognised_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let disguised = dir.path().join("picture.png");
    std::fs::copy(jpeg_data("q75-420.jpg"), &disguised).unwrap();
    let want = image::open(jpeg_data("q75-420.pillow.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(load_rgb(&disguised).unwrap(), want);
    // Bytes after the end-of-image marker are ignored, as by Pillow.
    let trailing = dir.path().join("trailing.jpg");
    let mut bytes = std::fs::read(jpeg_data("q75-420.jpg")).unwrap();
    bytes.extend_from_slice(b"some trailing bytes");
    std::fs::write(&trailing, &bytes).unwrap();
    assert_eq!(load_rgb(&trailing).unwrap(), want);
}

/// Offset of the frame header (SOF0 baseline / SOF2 progressive) in a JPEG file.
fn sof_offset(bytes: &[u8]) -> usize {
    bytes
        .windows(2)
        .position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2))
        .expect("no SOF0/SOF2 marker")
}

fn assert_jpeg_error(path: &Path, expect_in_message: &str) {
    let err = load_rgb(path).expect_err("a broken JPEG must give an error");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, MediaError::Image { .. }), "{msg}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "{msg}");
    assert!(
        msg.contains(expect_in_message),
        "expected {expect_in_message:?} in: {msg}"
    );
}

/// Pillow refuses all of these ("image file is truncated" for the cut ones, checked with Pillow
/// 13.0.0); libjpeg's fatal errors must come back as errors, not as a panic or an exit.
#[test]
fn broken_jpegs_give_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    for case in ["q75-420", "progressive-q85-420", "grey-q90", "grace-hopper"] {
        let bytes = std::fs::read(jpeg_data(&format!("{case}.jpg"))).unwrap();
        assert_eq!(
            &bytes[bytes.len() - 2..],
            [0xFF, 0xD9],
            "{case} ends with EOI"
        );
        let cut = write(&format!("{case}-half.jpg"), &bytes[..bytes.len() / 2]);
        assert_jpeg_error(&cut, "truncated");
        let no_eoi = write(&format!("{case}-no-eoi.jpg"), &bytes[..bytes.len() - 2]);
        assert_jpeg_error(&no_eoi, "truncated");
        let header_only = write(
            &format!("{case}-header.jpg"),
            &bytes[..sof_offset(&bytes) + 4],
        );
        assert_jpeg_error(&header_only, "truncated");
    }

    // No marker after the magic: libjpeg skips the junk looking for one and runs out of data.
    let junk = write("junk.jpg", b"\xFF\xD8\xFF\x00 this is not JPEG data at all");
    assert_jpeg_error(&junk, "Jpeg");

    // libjpeg fatal errors (these unwind out of libjpeg and are caught).
    let bytes = std::fs::read(jpeg_data("q75-420.jpg")).unwrap();
    let sof = sof_offset(&bytes);
    let mut twelve_bit = bytes.clone();
    twelve_bit[sof + 4] = 12;
    assert_jpeg_error(&write("twelve-bit.jpg", &twelve_bit), "precision 12");
    let mut zero_height = bytes.clone();
    zero_height[sof + 5..sof + 7].copy_from_slice(&[0, 0]);
    assert_jpeg_error(&write("zero-height.jpg", &zero_height), "invalid");

    // A header claiming 65000x65000 pixels (libjpeg's own limit is 65500 per side): refused before
    // any pixel memory is allocated, like Pillow's decompression bomb check.
    let mut huge = bytes.clone();
    let side = 65000u16.to_be_bytes();
    huge[sof + 5..sof + 9].copy_from_slice(&[side[0], side[1], side[0], side[1]]);
    assert_jpeg_error(&write("huge.jpg", &huge), "scale it down");

    // The magic alone, and nothing.
    assert_jpeg_error(&write("magic.jpg", b"\xFF\xD8\xFF"), "magic.jpg");
    assert!(load_rgb(&write("empty.jpg", b"")).is_err());
}
