//! No black borders: where the motion samples outside the picture, the classic engine (and the
//! in-betweens, which are its warps of a keyframe, and its idle motion) fills from the picture's
//! edge instead of zeros; FOMM, which keeps the original's zero padding inside the model, is
//! measured the same way. Sway (shifts) and zoom (the face moving away) move the picture off an
//! edge; the check: no output band touching the edge is darker than the same band of the portrait
//! moved by the known motion with its edge filling the outside, by more than [`MAX_DARKER`] (a
//! black band is 0.45-0.75 darker).

use crate::common;

use std::path::PathBuf;

use candle_core::Device;
use common::fixture;
use common::scenes::edge_darkening;
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::model::Fomm;
use fomm::motion_transfer::TransferOptions;
use image::RgbImage;
use marionette::engine::classic::{ClassicEngine, ClassicParams};
use marionette::engine::fomm::FommAnimator;
use marionette::engine::keyframes::InBetween;
use marionette::engine::{Animator, FrameInfo};
use marionette::media::resize::{tensor_to_rgb8, to_model_tensor};
use marionette::synth::{KnownMotion, warp};

/// The most an edge band (the outermost 2 rows or columns) may be darker than the picture's own,
/// in units of 1.0: 0.04 is 10 levels of 255, far below a black band (the portrait's edges are
/// 0.45-0.75 bright) and above what resampling the edge changes.
const MAX_DARKER: f64 = 0.04;
const BAND: u32 = 2;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn collins(size: u32) -> RgbImage {
    let img = image::open(repo("assets/avatars/eileen-collins.png"))
        .unwrap()
        .to_rgb8();
    let crop = image::imageops::crop_imm(&img, 96, 0, 320, 320).to_image();
    image::imageops::resize(&crop, size, size, image::imageops::FilterType::Triangle)
}

/// Sways (shifts left, right, up, down) and zooms (out and in), each growing over `n` frames.
fn motions(size: u32) -> Vec<(&'static str, KnownMotion)> {
    let px = f64::from(size) / 256.0;
    let m = |shift: [f64; 2], scale: f64, degrees: f64| KnownMotion {
        degrees,
        scale,
        shift: [shift[0] * px, shift[1] * px],
        wobble: 0.0,
        local: 0.0,
    };
    vec![
        ("sway right", m([24.0, 0.0], 1.0, 0.0)),
        ("sway left", m([-24.0, 0.0], 1.0, 0.0)),
        ("sway down", m([0.0, 20.0], 1.0, 0.0)),
        ("sway up-left", m([-16.0, -16.0], 1.0, 4.0)),
        ("zoom out", m([0.0, 0.0], 0.85, 0.0)),
        ("zoom in", m([0.0, 0.0], 1.15, 0.0)),
    ]
}

/// The driving frames of `motion` applied to `photo`, frame 0 unmoved.
fn driving(photo: &RgbImage, motion: &KnownMotion, n: usize) -> Vec<RgbImage> {
    let s = photo.width();
    (0..=n)
        .map(|i| {
            let m = motion.lerp(i as f64 / n as f64);
            warp(photo, |x, y| m.backward(s, s, x, y))
        })
        .collect()
}

/// What the output should show for each driving frame: `photo` moved by the same motion, with
/// the picture's edge filling where the motion reaches outside it (the driving frames themselves
/// are black there, as a camera sees nothing beyond its frame). Content moving in from inside the
/// picture is compared with itself, so only a band that is not filled counts.
fn ideal(photo: &RgbImage, motion: &KnownMotion, n: usize) -> Vec<RgbImage> {
    let s = photo.width();
    let last = f64::from(s - 1);
    (0..=n)
        .map(|i| {
            let m = motion.lerp(i as f64 / n as f64);
            warp(photo, |x, y| {
                let (sx, sy) = m.backward(s, s, x, y);
                (sx.clamp(0.0, last), sy.clamp(0.0, last))
            })
        })
        .collect()
}

/// The worst edge darkening of `engine`'s outputs for `frames` against `expected` (one per frame).
fn worst(engine: &mut dyn Animator, frames: &[RgbImage], expected: &[RgbImage]) -> f64 {
    engine.recalibrate();
    frames
        .iter()
        .zip(expected)
        .enumerate()
        .map(|(i, (f, want))| {
            let n = want.width();
            let t = to_model_tensor(f, n, n).unwrap();
            let out = engine
                .animate_with(&t, &FrameInfo::at(i as f64 / 30.0))
                .unwrap();
            edge_darkening(&tensor_to_rgb8(&out).unwrap(), want, BAND)
        })
        .fold(f64::NEG_INFINITY, f64::max)
}

#[test]
fn classic_fills_from_the_edge_under_sway_and_zoom() {
    let photo = collins(256);
    let portrait = to_model_tensor(&photo, 256, 256).unwrap();
    for (name, motion) in motions(256) {
        let frames = driving(&photo, &motion, 12);
        let expected = ideal(&photo, &motion, 12);
        let mut e = ClassicEngine::new(ClassicParams::default(), (256, 256)).unwrap();
        e.set_source(&portrait).unwrap();
        let d = worst(&mut e, &frames, &expected);
        println!("classic, {name}: edges at most {d:+.4} darker than the portrait's");
        assert!(d <= MAX_DARKER, "{name}: an edge is {d} darker");
    }
}

#[test]
fn inbetweens_fill_from_the_edge() {
    let photo = collins(256);
    let key = to_model_tensor(&photo, 256, 256).unwrap();
    for (name, motion) in motions(256) {
        let frames = driving(&photo, &motion, 12);
        let expected = ideal(&photo, &motion, 12);
        let mut ib = InBetween::new(256, false);
        let mut d = f64::NEG_INFINITY;
        for (i, f) in frames.iter().enumerate() {
            let t = to_model_tensor(f, 256, 256).unwrap();
            let info = FrameInfo::at(i as f64 / 30.0);
            if i == 0 {
                ib.set_keyframe(&key, &t, &info, false).unwrap();
            }
            let out = tensor_to_rgb8(&ib.render(&t, &info).unwrap()).unwrap();
            d = d.max(edge_darkening(&out, &expected[i], BAND));
        }
        println!("in-betweens, {name}: edges at most {d:+.4} darker");
        assert!(d <= MAX_DARKER, "{name}: an edge is {d} darker");
    }
}

#[test]
fn classic_idle_motion_fills_from_the_edge() {
    let photo = collins(256);
    let portrait = to_model_tensor(&photo, 256, 256).unwrap();
    let mut e = ClassicEngine::new(ClassicParams::default(), (256, 256)).unwrap();
    e.set_source(&portrait).unwrap();
    let mut d = f64::NEG_INFINITY;
    for i in 0..150 {
        let out = e.animate_idle(i as f64 * 0.2).unwrap();
        d = d.max(edge_darkening(&tensor_to_rgb8(&out).unwrap(), &photo, BAND));
    }
    println!("classic idle motion, 30 s: edges at most {d:+.4} darker");
    assert!(d <= MAX_DARKER, "idle motion: an edge is {d} darker");
}

/// FOMM keeps the original's zero padding inside the model (the parity tests hold it to the
/// original exactly); its output is measured the same way, against its own output at rest. With
/// the fixture's random weights the decoder repaints the whole picture, so the figure says how
/// far its edges drift, not what a trained model shows.
#[test]
fn fomm_edges_are_measured_the_same_way() {
    let config = FommConfig::from_yaml_file(&fixture("tiny.yaml")).unwrap();
    let ckpt = Checkpoint::load(&fixture("tiny-legacy.pth.tar")).unwrap();
    let model =
        Fomm::from_checkpoint(&config, &ckpt, "tiny", &Device::Cpu, Default::default()).unwrap();
    let mut e = FommAnimator::new(model, TransferOptions::default());
    let source = image::open(fixture("tiny-input-source.png"))
        .unwrap()
        .to_rgb8();
    e.select_portrait(0, &to_model_tensor(&source, 256, 256).unwrap())
        .unwrap();
    let mut worst_all = f64::NEG_INFINITY;
    for (name, motion) in motions(256) {
        let frames = driving(&source, &motion, 6);
        e.recalibrate();
        let rest = e
            .animate_with(
                &to_model_tensor(&frames[0], 256, 256).unwrap(),
                &FrameInfo::at(0.0),
            )
            .unwrap();
        let rest = tensor_to_rgb8(&rest).unwrap();
        let d = worst(&mut e, &frames, &vec![rest; frames.len()]);
        println!("FOMM tiny fixture, {name}: edges at most {d:+.4} darker than at rest");
        worst_all = worst_all.max(d);
    }
    // Measured 0.024-0.033 over the six motions (the fixture's weights and inputs are fixed, so
    // the figure is the same on every run); black borders, as a warp with zero padding leaves
    // them, darken the edge band by far more than 0.05.
    assert!(
        worst_all <= FOMM_FIXTURE_MAX_DARKER,
        "FOMM's edges are {worst_all:+.4} darker than at rest"
    );
}

/// How much darker the tiny fixture's edges may get than at rest (measured at most 0.033).
const FOMM_FIXTURE_MAX_DARKER: f64 = 0.05;
