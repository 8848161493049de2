//! Motion files: captured from a driving sequence, replayed onto portraits. FOMM (the tiny
//! fixture model) must give exactly the frames animating from the video gives, for every transfer
//! option and reference choice; keypoints must read back bit for bit. The classic engine replays
//! its own maps; a live recording reads back and replays.

use crate::classic_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::Device;
use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::{Precision, PrecisionChoice};
use marionette::animate::{
    AnimateRequest, CaptureRequest, Keyframes, MotionAnimateRequest, Reference, animate,
    animate_motion_file, capture_motion,
};
use marionette::engine::Animator;
use marionette::engine::classic::{ClassicEngine, ClassicParams};
use marionette::engine::select::{EngineKind, EngineRequest, load_engine};
use marionette::media::frames::{list_image_files, load_rgb};
use marionette::media::resize::to_model_tensor;
use marionette::motion::file::{MotionReader, RecordKind};
use marionette::motion::{FrameMotion, KeypointSet, MotionEngine, ReferenceMotion};
use marionette::pipeline::{Pipeline, PipelineOptions};

fn fixture(name: &str) -> PathBuf {
    classic_support::fixtures_dir().join(name)
}

fn tiny() -> Box<dyn Animator + Send> {
    let req = EngineRequest {
        kind: EngineKind::Fomm,
        checkpoint: Some(fixture("tiny.safetensors")),
        config: Some(fixture("tiny.yaml").display().to_string()),
        device: Device::Cpu,
        precision: PrecisionChoice::Exact(Precision::F32),
        ..EngineRequest::default()
    };
    load_engine(&req).expect("tiny model").engine
}

/// The fixture's three driving frames, and the first again (a return to the reference pose).
fn fomm_driving(dir: &Path) -> PathBuf {
    let d = dir.join("driving");
    std::fs::create_dir_all(&d).unwrap();
    for (i, n) in [0, 1, 2, 0].iter().enumerate() {
        std::fs::copy(
            fixture(&format!("tiny-input-driving{n}.png")),
            d.join(format!("{i}.png")),
        )
        .unwrap();
    }
    d
}

fn frames(dir: &Path) -> Vec<image::RgbImage> {
    list_image_files(dir)
        .unwrap()
        .iter()
        .map(|p| load_rgb(p).unwrap())
        .collect()
}

fn video_request(
    source: &Path,
    driving: &Path,
    out: &Path,
    transfer: TransferOptions,
    reference: Reference,
) -> AnimateRequest {
    AnimateRequest {
        source: source.to_path_buf(),
        driving: driving.to_path_buf(),
        output: out.to_path_buf(),
        transfer,
        reference,
        crop_square: false,
        folder_fps: 25.0,
        keyframes: Keyframes::default(),
        smoothing: marionette::engine::smoothing::Smoothing::OFF,
        badge: false,
        watermark: true,
    }
}

fn motion_request(
    source: &Path,
    motion: &Path,
    out: &Path,
    transfer: TransferOptions,
    reference: Reference,
) -> MotionAnimateRequest {
    MotionAnimateRequest {
        source: source.to_path_buf(),
        motion: motion.to_path_buf(),
        output: out.to_path_buf(),
        transfer,
        reference,
        crop_square: false,
        fps: None,
        badge: false,
        watermark: true,
    }
}

fn capture(engine: &mut dyn Animator, driving: &Path, out: &Path, reference: Reference) {
    let req = CaptureRequest {
        driving: driving.to_path_buf(),
        output: out.to_path_buf(),
        reference,
        crop_square: false,
        folder_fps: 25.0,
    };
    capture_motion(engine, &req, &mut |_, _| {}).expect("capture");
}

#[test]
fn fomm_motion_file_replays_exactly_what_the_video_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let driving = fomm_driving(tmp.path());
    let motion = tmp.path().join("motion.jsonl");
    let mut engine = tiny();
    capture(engine.as_mut(), &driving, &motion, Reference::First);

    // The header, then the reference and one line per frame; keypoints bit for bit as detected.
    let mut reader = MotionReader::open(&motion).unwrap();
    let header = reader.header().clone();
    assert_eq!(header.source.engine, MotionEngine::Fomm);
    assert_eq!(header.source.keypoints, 10);
    assert_eq!(header.source.frame_size, (256, 256));
    assert_eq!(header.source.config.as_deref(), Some("tiny.yaml"));
    assert_eq!(
        header.source.checkpoint.as_deref(),
        Some("tiny.safetensors")
    );
    assert_eq!(header.fps, Some(25.0));
    let records = reader.read_all().unwrap();
    assert_eq!(records.len(), 5);
    let files = list_image_files(&driving).unwrap();
    let detected: Vec<KeypointSet> = files
        .iter()
        .map(|f| {
            let t = to_model_tensor(&load_rgb(f).unwrap(), 256, 256).unwrap();
            KeypointSet::from_keypoints(&engine.detect(&t).unwrap().unwrap()).unwrap()
        })
        .collect();
    let bits = |k: &KeypointSet| -> Vec<u32> {
        k.points
            .iter()
            .flatten()
            .chain(k.jacobians.iter().flatten().flatten().flatten())
            .map(|v| v.to_bits())
            .collect()
    };
    let RecordKind::Reference(ReferenceMotion::Fomm(r)) = &records[0].kind else {
        panic!("no reference first");
    };
    assert_eq!(bits(r), bits(&detected[0]));
    for (i, rec) in records[1..].iter().enumerate() {
        assert_eq!(rec.frame, i as u64);
        assert!((rec.t - i as f64 / 25.0).abs() < 1e-12);
        let RecordKind::Frame(FrameMotion::Fomm(k)) = &rec.kind else {
            panic!("line {} is not a FOMM frame", rec.line);
        };
        assert_eq!(bits(k), bits(&detected[i]), "frame {i}");
    }

    // The fixture's portrait and another one, with every transfer option and reference choice.
    let portraits = [
        fixture("tiny-input-source.png"),
        fixture("tiny2-input-source.png"),
    ];
    let cases = [
        (TransferOptions::default(), Reference::First),
        (
            TransferOptions {
                adapt_scale: false,
                ..TransferOptions::default()
            },
            Reference::First,
        ),
        (TransferOptions::absolute(), Reference::First),
        (TransferOptions::default(), Reference::Frame(2)),
        (TransferOptions::default(), Reference::Best),
    ];
    for (p, portrait) in portraits.iter().enumerate() {
        for (c, (transfer, reference)) in cases.iter().enumerate() {
            let from_video = tmp.path().join(format!("video-{p}-{c}"));
            let from_motion = tmp.path().join(format!("motion-{p}-{c}"));
            let v = animate(
                engine.as_mut(),
                &video_request(portrait, &driving, &from_video, *transfer, *reference),
                &mut |_, _| {},
            )
            .unwrap();
            let (m, notes) = animate_motion_file(
                engine.as_mut(),
                &motion_request(portrait, &motion, &from_motion, *transfer, *reference),
                &mut |_, _| {},
            )
            .unwrap();
            assert!(notes.is_empty(), "{notes:?}");
            assert_eq!((m.frames, m.reference_frame), (v.frames, v.reference_frame));
            let (a, b) = (frames(&from_video), frames(&from_motion));
            assert_eq!(a.len(), 4);
            for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                assert!(
                    a.as_raw() == b.as_raw(),
                    "portrait {p}, case {c} ({transfer:?}, {reference:?}): frame {i} differs"
                );
            }
        }
    }
}

#[test]
fn a_motion_refuses_the_other_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let driving = fomm_driving(tmp.path());
    let motion = tmp.path().join("fomm.jsonl");
    capture(tiny().as_mut(), &driving, &motion, Reference::First);
    let mut classic = ClassicEngine::new(ClassicParams::default(), (256, 256)).unwrap();
    let err = animate_motion_file(
        &mut classic,
        &motion_request(
            &fixture("tiny-input-source.png"),
            &motion,
            &tmp.path().join("out"),
            TransferOptions::default(),
            Reference::First,
        ),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("captured with the fomm engine") && err.contains("--engine fomm"),
        "{err}"
    );

    let classic_motion = tmp.path().join("classic.jsonl");
    capture(&mut classic, &driving, &classic_motion, Reference::First);
    let err = animate_motion_file(
        tiny().as_mut(),
        &motion_request(
            &fixture("tiny-input-source.png"),
            &classic_motion,
            &tmp.path().join("out2"),
            TransferOptions::default(),
            Reference::First,
        ),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("captured with the classic engine") && err.contains("--engine classic"),
        "{err}"
    );
    // A classic motion at another frame size says which size to use.
    let mut small = ClassicEngine::new(ClassicParams::default(), (128, 128)).unwrap();
    let err = animate_motion_file(
        &mut small,
        &motion_request(
            &fixture("tiny-input-source.png"),
            &classic_motion,
            &tmp.path().join("out3"),
            TransferOptions::default(),
            Reference::First,
        ),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--classic-size 256"), "{err}");
}

/// A sequence with known motion: a photo turning and drifting, as PNG files.
fn classic_driving(dir: &Path, n: usize) -> PathBuf {
    let d = dir.join("classic-driving");
    std::fs::create_dir_all(&d).unwrap();
    let size = 256;
    let photo = classic_support::photos(size)
        .into_iter()
        .find(|p| p.name == "collins")
        .unwrap();
    for i in 0..n {
        let a = (i as f64 * 1.5).to_radians();
        let (s, c) = a.sin_cos();
        let shift = i as f64 * 1.2;
        let centre = size as f64 / 2.0;
        let rgb = classic_support::warp(&photo.rgb, size, |x, y| {
            let (dx, dy) = (x - centre - shift, y - centre);
            (centre + c * dx + s * dy, centre - s * dx + c * dy)
        });
        let img = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
            let at = |ch: usize| {
                (rgb[ch * size * size + y as usize * size + x as usize] * 255.0).round() as u8
            };
            image::Rgb([at(0), at(1), at(2)])
        });
        img.save(d.join(format!("{i:02}.png"))).unwrap();
    }
    d
}

#[test]
fn classic_motion_file_replays_its_own_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let driving = classic_driving(tmp.path(), 8);
    let motion = tmp.path().join("classic.jsonl");
    let mut engine = ClassicEngine::new(ClassicParams::default(), (256, 256)).unwrap();
    engine.set_adapt_scale(true);
    capture(&mut engine, &driving, &motion, Reference::First);
    let mut reader = MotionReader::open(&motion).unwrap();
    assert_eq!(reader.header().source.engine, MotionEngine::Classic);
    let records = reader.read_all().unwrap();
    assert_eq!(records.len(), 9);
    let RecordKind::Reference(ReferenceMotion::Classic(r)) = &records[0].kind else {
        panic!("no classic reference first");
    };
    assert!(!r.anchors.is_empty() && r.texture.is_some());
    let RecordKind::Frame(FrameMotion::Classic(last)) = &records[8].kind else {
        panic!("no classic frame last");
    };
    let maps = last.anchors.as_ref().expect("the last frame moved");
    assert!(maps.iter().flatten().count() > maps.len() / 2);

    // The portrait is the reference frame itself (the same noise floor: the same framing as
    // live), then another photo; adapt scale on and off.
    let first = list_image_files(&driving).unwrap()[0].clone();
    let other = classic_support::avatars_dir().join("grace-hopper.jpg");
    for (p, portrait) in [first, other].iter().enumerate() {
        for adapt in [true, false] {
            let transfer = TransferOptions {
                adapt_scale: adapt,
                ..TransferOptions::default()
            };
            let from_video = tmp.path().join(format!("video-{p}-{adapt}"));
            let from_motion = tmp.path().join(format!("motion-{p}-{adapt}"));
            animate(
                &mut engine,
                &video_request(portrait, &driving, &from_video, transfer, Reference::First),
                &mut |_, _| {},
            )
            .unwrap();
            animate_motion_file(
                &mut engine,
                &motion_request(portrait, &motion, &from_motion, transfer, Reference::First),
                &mut |_, _| {},
            )
            .unwrap();
            let (a, b) = (frames(&from_video), frames(&from_motion));
            assert_eq!(a.len(), 8);
            assert_eq!(b.len(), 8);
            for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                let max = a
                    .as_raw()
                    .iter()
                    .zip(b.as_raw())
                    .map(|(x, y)| x.abs_diff(*y))
                    .max()
                    .unwrap_or(0);
                assert_eq!(
                    max, 0,
                    "portrait {p}, adapt scale {adapt}: frame {i} differs"
                );
            }
            // The portrait moves.
            assert_ne!(a[0].as_raw(), a[7].as_raw());
        }
    }
    // The classic engine's motion is relative to its own reference: no reference at replay.
    let err = animate_motion_file(
        &mut engine,
        &motion_request(
            &classic_support::avatars_dir().join("grace-hopper.jpg"),
            &motion,
            &tmp.path().join("refused"),
            TransferOptions::default(),
            Reference::Frame(3),
        ),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--best-frame"), "{err}");
}

#[test]
fn live_motion_recording_reads_back_and_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("live.jsonl");
    let engine = ClassicEngine::new(ClassicParams::default(), (128, 128)).unwrap();
    let source = Animator::motion_source(&engine).expect("the classic engine records motion");
    let header = marionette::motion::file::MotionHeader::new(source, None, Some("test".into()));
    let writer = marionette::motion::file::MotionWriter::create(&path, header).unwrap();
    let portrait = image::open(classic_support::avatars_dir().join("eileen-collins.png"))
        .unwrap()
        .to_rgb8();
    let portrait = marionette::media::resize::center_square_crop(&portrait);
    let factory = marionette::capture::SourceSpec::TestPattern.factory(portrait.clone());
    let options = PipelineOptions {
        portrait: (0, portrait.clone()),
        fps: 30.0,
        record_motion: Some(writer),
        ..PipelineOptions::default()
    };
    let sink = marionette::output::NullSink::default();
    let pipeline =
        Pipeline::start(factory, Box::new(engine), vec![Box::new(sink)], options).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if pipeline.stats().is_some_and(|s| s.frames_out >= 20) {
            break;
        }
    }
    for exit in pipeline.join() {
        assert!(exit.result.is_ok(), "{}: {:?}", exit.thread, exit.result);
    }
    let mut reader = MotionReader::open(&path).unwrap();
    assert_eq!(reader.header().fps, None);
    let records = reader.read_all().unwrap();
    assert!(matches!(
        records.first().map(|r| &r.kind),
        Some(RecordKind::Reference(_))
    ));
    let frames_recorded = records
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Frame(_)))
        .count();
    assert!(frames_recorded >= 5, "{frames_recorded} frames recorded");
    // Times increase from 0.
    assert_eq!(records[0].t, 0.0);
    // Replayed onto another portrait, resampled at 30 fps by the frames' times.
    let out = tmp.path().join("replay");
    let mut replay = ClassicEngine::new(ClassicParams::default(), (128, 128)).unwrap();
    let (summary, _) = animate_motion_file(
        &mut replay,
        &motion_request(
            &classic_support::avatars_dir().join("grace-hopper.jpg"),
            &path,
            &out,
            TransferOptions::default(),
            Reference::First,
        ),
        &mut |_, _| {},
    )
    .unwrap();
    let last_t = records.last().unwrap().t;
    let expected = (last_t * 30.0).round() as usize + 1;
    assert!(
        summary.frames.abs_diff(expected) <= 1,
        "{} frames for {last_t} s",
        summary.frames
    );
    assert_eq!(frames(&out).len(), summary.frames);
}
