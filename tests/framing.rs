//! Automatic face framing: the bundled portraits pasted on a room in 16:9 frames are found, the
//! crop is placed around the face the way FOMM's training crops were and follows it as it drifts
//! across the frame, and a crop that moves does not move the portrait.
//!
//! The loop here is the live loop's framing, frame by frame and deterministic: a face search every
//! sixth frame (the face thread's 5 a second at 30 fps) whose result arrives with the next frame,
//! [`AutoFraming`] for the crop, [`ViewStabiliser`] for the views the engine is given.

use crate::common;

use std::path::PathBuf;
use std::time::Instant;

use common::scenes::{Rng, mean_frame_change, noisy_frame, paste_portrait, room};
use image::RgbImage;
use marionette::engine::classic::{ClassicEngine, ClassicParams};
use marionette::engine::keyframes::InBetween;
use marionette::engine::{FrameInfo, FrameView};
use marionette::face::{FaceBox, FaceDetector};
use marionette::frame::{Frame, Size};
use marionette::media::resize::{rgb8_to_tensor, tensor_to_rgb8};
use marionette::pipeline::framing::{
    AutoFraming, Crop, FACE_CROP_SCALE, ViewStabiliser, crop_resize,
};

const W: u32 = 640;
const H: u32 = 360;
const FPS: f64 = 30.0;
/// The engine's frame side.
const SIDE: u32 = 256;

/// The face's centre stays within this fraction of the crop's side from the crop's centre: with
/// the crop 1.8 times the face box ([`FACE_CROP_SCALE`]) the whole face box then stays inside the
/// crop (up to 0.22).
const CENTRE_TOLERANCE: f64 = 0.2;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The bundled portraits, cropped to a square around the head.
fn portraits() -> Vec<(&'static str, RgbImage)> {
    let collins = image::open(repo("assets/avatars/eileen-collins.png"))
        .unwrap()
        .to_rgb8();
    let hopper = image::open(repo("assets/avatars/grace-hopper.jpg"))
        .unwrap()
        .to_rgb8();
    vec![
        (
            "eileen-collins",
            image::imageops::crop_imm(&collins, 56, 0, 400, 400).to_image(),
        ),
        (
            "grace-hopper",
            image::imageops::crop_imm(&hopper, 56, 0, 400, 400).to_image(),
        ),
    ]
}

/// Where the face is in `portrait` scaled to `side`, as the detector sees it alone.
fn face_in(portrait: &RgbImage, side: u32) -> FaceBox {
    let scaled =
        image::imageops::resize(portrait, side, side, image::imageops::FilterType::Triangle);
    FaceDetector::new()
        .unwrap()
        .detect(scaled.as_raw(), side, side)
        .expect("the detector finds the portrait's face on its own")
}

#[test]
fn faces_on_a_room_are_found() {
    let mut rng = Rng::new(7);
    let background = room(W, H, &mut rng);
    let mut detector = FaceDetector::new().unwrap();
    // The room alone has no face.
    assert!(
        detector.detect(background.as_raw(), W, H).is_none(),
        "a face found in an empty room"
    );
    for (name, p) in portraits() {
        for (x, y, side) in [(60.0, 40.0, 220), (380.0, 120.0, 180), (250.0, 10.0, 300)] {
            let frame = paste_portrait(&background, &p, x, y, side);
            let truth = face_in(&p, side);
            let found = detector
                .detect(frame.as_raw(), W, H)
                .unwrap_or_else(|| panic!("{name} at ({x}, {y}) not found"));
            let c = found.centre();
            let t = truth.centre();
            let off = ((c[0] - x - t[0]).powi(2) + (c[1] - y - t[1]).powi(2)).sqrt();
            println!(
                "{name} at ({x}, {y}) side {side}: box {:.0}x{:.0} at ({:.0}, {:.0}), {off:.1} px from where it is alone",
                found.width, found.height, found.x, found.y
            );
            assert!(off < 0.15 * truth.width, "{name}: {off} px off");
        }
    }
}

/// One frame through the live loop's framing: returns (crop, the view handed to the engine).
struct Framer {
    detector: FaceDetector,
    auto: AutoFraming,
    stabiliser: ViewStabiliser,
    pending: Option<(FaceBox, f64)>,
    n: usize,
}

impl Framer {
    fn new() -> Self {
        Self {
            detector: FaceDetector::new().unwrap(),
            auto: AutoFraming::default(),
            stabiliser: ViewStabiliser::default(),
            pending: None,
            n: 0,
        }
    }

    fn frame(&mut self, img: &RgbImage, t: f64) -> (Crop, FrameView) {
        if let Some((face, seen)) = self.pending.take() {
            self.auto.observe(&face, seen);
        }
        if self.n.is_multiple_of(6)
            && let Some(face) = self.detector.detect(img.as_raw(), W, H)
        {
            if self.n == 0 {
                // At start the reference frame waits for the face.
                self.auto.observe(&face, t);
            } else {
                self.pending = Some((face, t));
            }
        }
        let crop = self
            .auto
            .step(t, Size::new(W, H), false)
            .expect("a face was found");
        let view = self
            .stabiliser
            .view(crop.view(Size::new(W, H), SIDE), t, self.n == 0);
        self.n += 1;
        (crop, view)
    }
}

fn square(img: &RgbImage, crop: &Crop) -> RgbImage {
    let frame = Frame::from_image(0, Instant::now(), img.clone());
    RgbImage::from_raw(SIDE, SIDE, crop_resize(&frame, crop, SIDE)).unwrap()
}

/// The classic engine animating `portrait` with the crops, the views handed on (`compensate`)
/// or the crop's own (the portrait then moves with the crop).
fn animate(
    portrait: &RgbImage,
    squares: &[(RgbImage, FrameView)],
    compensate: bool,
) -> Vec<RgbImage> {
    let mut e =
        ClassicEngine::new(ClassicParams::default(), (SIDE as usize, SIDE as usize)).unwrap();
    let p = image::imageops::resize(portrait, SIDE, SIDE, image::imageops::FilterType::Triangle);
    e.set_source(&rgb8_to_tensor(p.as_raw(), SIDE as usize, SIDE as usize).unwrap())
        .unwrap();
    squares
        .iter()
        .enumerate()
        .map(|(i, (sq, view))| {
            let t = rgb8_to_tensor(sq.as_raw(), SIDE as usize, SIDE as usize).unwrap();
            let info = FrameInfo {
                time: Some(i as f64 / FPS),
                view: if compensate {
                    *view
                } else {
                    FrameView::IDENTITY
                },
            };
            tensor_to_rgb8(&e.animate_with(&t, &info).unwrap()).unwrap()
        })
        .collect()
}

/// Frame-to-frame changes of a video (mean absolute, units of 1.0).
fn changes(frames: &[RgbImage]) -> Vec<f64> {
    frames.windows(2).map(mean_frame_change).collect()
}

#[test]
fn the_crop_follows_a_drifting_face() {
    let mut rng = Rng::new(11);
    let background = room(W, H, &mut rng);
    for (name, portrait) in portraits() {
        let side = 200u32;
        let face = face_in(&portrait, side);
        // 6 s at 30 fps: the head drifts 170 px right and 40 px down, easing in and out, with
        // sensor noise on every frame.
        let n = 180;
        let mut framer = Framer::new();
        let mut worst: f64 = 0.0;
        let mut sum = 0.0;
        let mut squares = Vec::new();
        let mut crop_moves = Vec::new();
        let mut last_crop: Option<Crop> = None;
        for i in 0..n {
            let t = i as f64 / FPS;
            let s = (i as f64 / (n - 1) as f64).clamp(0.0, 1.0);
            let ease = 0.5 - 0.5 * (std::f64::consts::PI * s).cos();
            let (x, y) = (90.0 + 170.0 * ease, 40.0 + 40.0 * ease);
            let frame = noisy_frame(
                &paste_portrait(&background, &portrait, x, y, side),
                2.5,
                0.0,
                &mut rng,
            );
            let (crop, view) = framer.frame(&frame, t);
            let (c, crop_side) = crop.centre_side(Size::new(W, H));
            let f = [x + face.centre()[0], y + face.centre()[1]];
            let off = ((f[0] - c[0]).powi(2) + (f[1] - c[1]).powi(2)).sqrt() / crop_side;
            worst = worst.max(off);
            sum += off;
            if i == 0 {
                println!(
                    "{name}: face box {:.0} px, crop side {crop_side:.0} px ({:.2} x the box)",
                    face.width.max(face.height),
                    crop_side / face.width.max(face.height)
                );
            }
            if let Some(l) = last_crop {
                crop_moves.push(l != crop);
            }
            last_crop = Some(crop);
            squares.push((square(&frame, &crop), view));
        }
        let moving = crop_moves.iter().filter(|m| **m).count();
        println!(
            "{name}: face centre off the crop centre by at most {worst:.3} of its side (mean {:.3}); the crop moved on {moving} of {} frames",
            sum / n as f64,
            n - 1
        );
        assert!(
            worst <= CENTRE_TOLERANCE,
            "{name}: face {worst} of the side off centre"
        );
        assert!(moving > 10, "{name}: the crop should follow the drift");
        // The portrait follows the head smoothly: no frame changes much more than the drift's
        // ordinary frames do (no jump where the crop moves).
        let out = animate(&portrait, &squares, true);
        let ch = changes(&out[1..]);
        let mut sorted = ch.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let max = sorted[sorted.len() - 1];
        println!("{name}: portrait frame change median {median:.4}, max {max:.4}");
        assert!(
            max <= 4.0 * median + 0.004,
            "{name}: a jump of {max} (median {median})"
        );
    }
}

/// A still face whose crop moves (automatic framing re-centring it by 15 % of the crop and
/// zooming 10 %): the engines are told, so the portrait stays where it is; told nothing, it would
/// move with the crop.
#[test]
fn a_moving_crop_does_not_move_the_portrait() {
    let mut rng = Rng::new(5);
    let background = room(W, H, &mut rng);
    let (_, portrait) = portraits().remove(0);
    let still = paste_portrait(&background, &portrait, 200.0, 60.0, 220);
    let face = face_in(&portrait, 220);
    let (c0, side0) = (
        [200.0 + face.centre()[0], 60.0 + face.centre()[1]],
        FACE_CROP_SCALE * face.width.max(face.height),
    );
    let mut stabiliser = ViewStabiliser::default();
    let n = 45;
    let squares: Vec<(RgbImage, FrameView)> = (0..n)
        .map(|i| {
            let t = i as f64 / FPS;
            // The crop moves over frames 10..25 (half a second), then stands.
            let s = ((i as f64 - 10.0) / 15.0).clamp(0.0, 1.0);
            let c = [c0[0] + 0.15 * side0 * s, c0[1] - 0.05 * side0 * s];
            let crop = Crop::around(Size::new(W, H), c, side0 * (1.0 + 0.1 * s), false);
            let frame = noisy_frame(&still, 1.0, 0.0, &mut rng);
            let view = stabiliser.view(crop.view(Size::new(W, H), SIDE), t, i == 0);
            (square(&frame, &crop), view)
        })
        .collect();
    let told = animate(&portrait, &squares, true);
    let untold = animate(&portrait, &squares, false);
    let drift = |v: &[RgbImage]| mean_frame_change(&[v[9].clone(), v[25].clone()]);
    let (a, b) = (drift(&told), drift(&untold));
    println!(
        "crop moved 15 % of its side and zoomed 10 % in 0.5 s: the portrait changed {a:.4} (told), {b:.4} (not told)"
    );
    assert!(a <= b / 3.0, "told {a}, not told {b}");

    // The in-betweens (keyframes) are told the same way.
    let mut ib = InBetween::new(SIDE as usize, false);
    let p = image::imageops::resize(&portrait, SIDE, SIDE, image::imageops::FilterType::Triangle);
    let key = rgb8_to_tensor(p.as_raw(), SIDE as usize, SIDE as usize).unwrap();
    let frames: Vec<RgbImage> = squares
        .iter()
        .enumerate()
        .map(|(i, (sq, view))| {
            let t = rgb8_to_tensor(sq.as_raw(), SIDE as usize, SIDE as usize).unwrap();
            let info = FrameInfo {
                time: Some(i as f64 / FPS),
                view: *view,
            };
            if i == 0 {
                ib.set_keyframe(&key, &t, &info, false).unwrap();
            }
            tensor_to_rgb8(&ib.render(&t, &info).unwrap()).unwrap()
        })
        .collect();
    let c = drift(&frames);
    println!("in-betweens: the portrait changed {c:.4}");
    assert!(c <= b / 3.0, "in-betweens told {c}, not told {b}");
}
