//! End to end on real V4L2 drivers: a Debian kernel under QEMU (tests/vm) with `vivid` as the
//! webcam and `v4l2loopback` as the virtual camera. Inside, the real `marionette run` captures from
//! vivid through nokhwa, animates with the tiny FOMM fixture and writes YUYV 640x480 to the loopback
//! device plus PNGs through the recorder; then idle motion (classic engine) goes out as I420
//! 1280x720. An independent V4L2 client (ffmpeg's v4l2 input) reads the device while it runs and
//! prints an MD5 per frame. Here every frame read is matched byte for byte with a recorded frame
//! converted the way the virtual camera converts it: frames arrive from start-up (the still,
//! marked portrait first), in order, in the stated format, and they change (the avatar moves).
//!
//! Needs the VM built once (`bash packaging/setup.sh --tests` or `tests/vm/build.sh`, which need
//! root for apt). Takes a few minutes: everything runs under software emulation.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use marionette::frame::{Frame, Size};
use marionette::output::compose::compose;
use marionette::output::convert::{PixelFormat, convert};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vm_cache() -> PathBuf {
    std::env::var_os("VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/vm"))
}

/// MD5s of the frames ffmpeg read (framemd5 lines: stream, dts, pts, duration, size, md5).
fn read_framemd5(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (the reader got nothing?)", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            assert_eq!(f.len(), 6, "bad framemd5 line {l:?}");
            (f[4].parse().expect("size"), f[5].to_string())
        })
        .collect()
}

/// The recorded frames, in order, as the MD5 of what the virtual camera writes for each.
fn expected_md5s(dir: &Path, size: Size, format: PixelFormat) -> Vec<String> {
    let files = marionette::media::frames::list_image_files(dir)
        .unwrap_or_else(|e| panic!("recorded frames: {e}"));
    let mut yuv = Vec::new();
    files
        .iter()
        .map(|p| {
            let img = image::open(p).expect("recorded PNG").to_rgb8();
            let frame = Frame::from_image(0, Instant::now(), img);
            convert(&compose(&frame, size, false), format, &mut yuv);
            format!("{:x}", md5::compute(&yuv))
        })
        .collect()
}

struct Matched {
    /// Index of the recorded frame each read frame is, `None` when it is none of them.
    indices: Vec<Option<usize>>,
}

/// Matches read frames to recorded ones in order: each read frame is the earliest recorded frame
/// with its MD5 at or after the previous match. A frame whose MD5 was recorded only before the
/// previous match arrived out of order.
fn match_in_order(read: &[(usize, String)], expected: &[String]) -> Matched {
    let mut at = 0usize;
    let mut indices = Vec::new();
    for (i, (_, md5)) in read.iter().enumerate() {
        match expected.iter().skip(at).position(|e| e == md5) {
            Some(k) => {
                at += k;
                indices.push(Some(at));
            }
            None => {
                assert!(
                    !expected.iter().take(at).any(|e| e == md5),
                    "read frame {i} is recorded frame {:?}, before the frame read just before it ({at}): out of order",
                    expected.iter().position(|e| e == md5)
                );
                indices.push(None);
            }
        }
    }
    Matched { indices }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn webcam_to_virtual_camera_on_real_v4l2_drivers() {
    let cache = vm_cache();
    assert!(
        cache.join("current/vmlinuz").is_file(),
        "the test VM is not built in {}: run `bash packaging/setup.sh --tests` (or tests/vm/build.sh as root) first",
        cache.display()
    );
    let out = tempfile::Builder::new()
        .prefix("live-vm-")
        .tempdir_in(repo().join("target"))
        .expect("scratch folder");
    // LIVE_VM_KEEP=1 keeps the guest's results for a look.
    let share = if std::env::var_os("LIVE_VM_KEEP").is_some() {
        let kept = out.keep();
        eprintln!("keeping {}", kept.display());
        kept
    } else {
        out.path().to_path_buf()
    };
    let share = share.as_path();
    let status = Command::new(repo().join("tests/vm/run.sh"))
        .current_dir(repo())
        .env("VM_CACHE", &cache)
        .env("VM_TIMEOUT", "1500")
        .arg(share)
        .arg(repo().join("tests/vm/e2e-live-guest.sh"))
        .arg(env!("CARGO_BIN_EXE_marionette"))
        .arg(common::fixtures_dir())
        .args(["12", "60"])
        .status()
        .expect("running tests/vm/run.sh");
    let logs = || {
        format!(
            "\n--- run-yuyv.log\n{}\n--- recv-yuyv.framemd5.log\n{}\n--- run-i420.log\n{}\n--- recv-i420.framemd5.log\n{}",
            read(&share.join("run-yuyv.log")),
            read(&share.join("recv-yuyv.framemd5.log")),
            read(&share.join("run-i420.log")),
            read(&share.join("recv-i420.framemd5.log")),
        )
    };
    assert!(status.success(), "the VM run failed: {status}{}", logs());
    assert_eq!(
        read(&share.join("vivid-ctrl.rc")).trim(),
        "0",
        "setting vivid's movement: {}",
        read(&share.join("vivid-ctrl.log"))
    );

    // `marionette devices` inside the VM sees vivid as a camera and the loopback as an output.
    let devices = read(&share.join("devices.txt"));
    assert!(
        devices.contains("/dev/video0\tcamera"),
        "devices:\n{devices}"
    );
    assert!(
        devices.contains("/dev/video10\tvirtual-camera output\tmarionette"),
        "devices:\n{devices}"
    );

    // 1. Webcam -> tiny FOMM -> YUYV 640x480.
    assert_eq!(read(&share.join("run-yuyv.rc")).trim(), "0", "{}", logs());
    assert_eq!(
        read(&share.join("format-yuyv.txt")).trim(),
        "YUYV:640x480@30",
        "the loopback device's format"
    );
    let got = read_framemd5(&share.join("recv-yuyv.framemd5"));
    let size = Size::new(640, 480);
    assert!(got.len() >= 10, "read only {} frames{}", got.len(), logs());
    for (n, _) in &got {
        assert_eq!(*n, PixelFormat::Yuyv.frame_bytes(size), "frame bytes");
    }
    let want = expected_md5s(&share.join("rec-yuyv"), size, PixelFormat::Yuyv);
    // Before the engine has loaded, the virtual camera gets the still portrait (the bundled avatar
    // at full resolution, marked as not calibrated); the pipeline then sends its own still (the
    // portrait at the engine's size, marked) until the first camera frame. Recordings hold only
    // animated frames.
    let avatar =
        marionette::media::frames::load_rgb(&repo().join("assets/avatars/eileen-collins.png"))
            .expect("bundled avatar");
    let square = marionette::media::resize::center_square_crop(&avatar);
    let still_md5 = |img: image::RgbImage| {
        let still = Frame::from_image(0, Instant::now(), img);
        let marked = compose(&still, still.size, true);
        let mut yuv = Vec::new();
        convert(&compose(&marked, size, false), PixelFormat::Yuyv, &mut yuv);
        format!("{:x}", md5::compute(&yuv))
    };
    let first_still = still_md5(square.clone());
    // The tiny fixture's frame size (tiny.yaml: frame_shape 256x256).
    let pipeline_still = still_md5(image::imageops::resize(
        &square,
        256,
        256,
        image::imageops::FilterType::Triangle,
    ));
    let leading = got.iter().take_while(|(_, m)| *m == first_still).count();
    let got_before = got.len();
    let got: Vec<(usize, String)> = got.into_iter().skip(leading).collect();
    assert!(!got.is_empty(), "only the first still came through");
    // From start-up: after the virtual camera's own stills, the pipeline's still portrait, not an
    // animated frame.
    assert_eq!(
        got[0].1, pipeline_still,
        "after {leading} of the virtual camera's first stills, the next frame read is not the pipeline's still, marked portrait ({got_before} read)"
    );
    let stills = got.iter().take_while(|(_, m)| *m == pipeline_still).count();
    let got: Vec<(usize, String)> = got.into_iter().skip(stills).collect();
    assert!(!got.is_empty(), "only still portraits came through");
    let m = match_in_order(&got, &want);
    let matched: Vec<usize> = m.indices.iter().flatten().copied().collect();
    assert!(
        matched.len() * 10 >= got.len() * 9,
        "only {} of {} frames read back are frames the recorder wrote",
        matched.len(),
        got.len()
    );
    // The avatar moves: several different animated frames came through.
    let distinct: HashSet<&String> = got.iter().map(|(_, m)| m).collect();
    assert!(
        distinct.len() >= 5,
        "only {} different animated frames read back",
        distinct.len()
    );

    // 2. Idle motion (classic) -> I420 1280x720.
    assert_eq!(read(&share.join("run-i420.rc")).trim(), "0", "{}", logs());
    assert_eq!(
        read(&share.join("format-i420.txt")).trim(),
        "YU12:1280x720@30",
        "the loopback device's format"
    );
    let got = read_framemd5(&share.join("recv-i420.framemd5"));
    let size = Size::new(1280, 720);
    assert!(got.len() >= 10, "read only {} frames{}", got.len(), logs());
    for (n, _) in &got {
        assert_eq!(*n, PixelFormat::I420.frame_bytes(size), "frame bytes");
    }
    let want = expected_md5s(&share.join("rec-i420"), size, PixelFormat::I420);
    let m = match_in_order(&got, &want);
    let matched: HashSet<usize> = m.indices.iter().flatten().copied().collect();
    // Under emulation the recorder (PNG encoding) skips some idle frames that the virtual camera
    // sent, so not every frame read has a recorded twin; those that do are in order (checked above).
    assert!(
        matched.len() >= 5,
        "only {} different recorded frames among {} read back",
        matched.len(),
        got.len()
    );
}
