//! Model keyframes with motion in between: the in-between warp follows a known motion, the offline
//! form is deterministic and is plain animation at N = 1, and the live loop keeps the camera's
//! rate with a model that takes half a second per frame.

use crate::common;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candle_core::{Device, Tensor};
use common::fixture;
use common::live::{Probe, counter, echo, small_options, wait_for};
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::model::Fomm;
use fomm::motion_transfer::TransferOptions;
use marionette::animate::{AnimateRequest, InBetweenMode, Keyframes, Reference, animate};
use marionette::engine::FrameInfo;
use marionette::engine::fomm::FommAnimator;
use marionette::engine::keyframes::InBetween;
use marionette::engine::smoothing::Smoothing;
use marionette::pipeline::{KeyframeMode, Pipeline, PipelineOptions};

const N: usize = 96;

/// A smooth random texture (sums of blurred noise), values in [0, 1], as (3, N, N) planes.
fn texture(seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32
    };
    let coarse: Vec<f32> = (0..16 * 16).map(|_| rnd()).collect();
    let mut plane = vec![0f32; N * N];
    for y in 0..N {
        for x in 0..N {
            // Bilinear upsampling of a 16x16 noise grid: texture at every scale the tracker uses.
            let (fx, fy) = (
                x as f32 * 15.0 / (N - 1) as f32,
                y as f32 * 15.0 / (N - 1) as f32,
            );
            let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(15), (y0 + 1).min(15));
            let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
            let at = |xx: usize, yy: usize| coarse[yy * 16 + xx];
            plane[y * N + x] = (1.0 - ty) * ((1.0 - tx) * at(x0, y0) + tx * at(x1, y0))
                + ty * ((1.0 - tx) * at(x0, y1) + tx * at(x1, y1));
        }
    }
    [
        plane.clone(),
        plane.iter().map(|v| 1.0 - v).collect(),
        plane,
    ]
    .concat()
}

/// `img` (3, N, N) moved by (dx, dy) whole pixels, edges repeated.
fn shifted(img: &[f32], dx: isize, dy: isize) -> Vec<f32> {
    let mut out = vec![0f32; img.len()];
    for c in 0..3 {
        for y in 0..N {
            for x in 0..N {
                let sx = (x as isize - dx).clamp(0, N as isize - 1) as usize;
                let sy = (y as isize - dy).clamp(0, N as isize - 1) as usize;
                out[(c * N + y) * N + x] = img[(c * N + sy) * N + sx];
            }
        }
    }
    out
}

fn tensor(v: &[f32]) -> Tensor {
    Tensor::from_vec(v.to_vec(), (1, 3, N, N), &Device::Cpu).expect("tensor")
}

/// Mean absolute difference over the interior (a 16-pixel margin: edges have no texture to move).
fn interior_mae(a: &Tensor, b: &[f32]) -> f64 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (mut sum, mut n) = (0f64, 0usize);
    for c in 0..3 {
        for y in 16..N - 16 {
            for x in 16..N - 16 {
                let i = (c * N + y) * N + x;
                sum += f64::from((a[i] - b[i]).abs());
                n += 1;
            }
        }
    }
    sum / n as f64
}

/// The driving frames shift by (4, -3) pixels after the keyframe's: the in-between shows the
/// keyframe shifted by the same amount (no adapt scale: the transfer is the identity). Tolerance:
/// a mean absolute error of 0.01 over the interior (bilinear resampling of a texture whose
/// neighbouring pixels differ by about 0.02); holding the keyframe errs 5x more.
#[test]
fn inbetween_follows_a_known_shift() {
    let keyframe = texture(7);
    let driving = texture(7);
    let mut ib = InBetween::new(N, false);
    ib.set_keyframe(
        &tensor(&keyframe),
        &tensor(&driving),
        &FrameInfo::default(),
        false,
    )
    .unwrap();
    for step in 1..=4 {
        let (dx, dy) = (step, -(step as f32 * 0.75).round() as isize);
        let out = ib
            .render(&tensor(&shifted(&driving, dx, dy)), &FrameInfo::default())
            .unwrap();
        let want = shifted(&keyframe, dx, dy);
        let moved = interior_mae(&out, &want);
        let held = interior_mae(&tensor(&keyframe), &want);
        assert!(
            moved < 0.01 && moved * 5.0 < held,
            "shift ({dx}, {dy}): error {moved:.4} (holding the keyframe: {held:.4})"
        );
    }
}

/// A cross-faded switch: right after a new keyframe the output lies between the old keyframe's
/// warp and the new one's, and after the fade it is the new one's.
#[test]
fn a_new_keyframe_fades_in() {
    use marionette::engine::keyframes::BLEND_FRAMES;
    let (old, new) = (texture(3), texture(4));
    let driving = texture(9);
    let mut ib = InBetween::new(N, false);
    ib.set_keyframe(
        &tensor(&old),
        &tensor(&driving),
        &FrameInfo::default(),
        false,
    )
    .unwrap();
    // Shown long enough for the whole fade (half the frames a keyframe was shown for at most).
    for _ in 0..2 * BLEND_FRAMES {
        ib.render(&tensor(&driving), &FrameInfo::default()).unwrap();
    }
    ib.set_keyframe(
        &tensor(&new),
        &tensor(&driving),
        &FrameInfo::default(),
        true,
    )
    .unwrap();
    // The first frame after the switch is mostly the old keyframe (the new one's weight is
    // 1 / (BLEND_FRAMES + 1)), but already on its way.
    let first = ib.render(&tensor(&driving), &FrameInfo::default()).unwrap();
    let (to_old, to_new) = (interior_mae(&first, &old), interior_mae(&first, &new));
    assert!(to_old > 1e-3 && to_old < to_new, "{to_old} {to_new}");
    let mut last = first;
    for _ in 0..BLEND_FRAMES {
        last = ib.render(&tensor(&driving), &FrameInfo::default()).unwrap();
    }
    assert!(interior_mae(&last, &new) < 1e-4);
}

fn tiny_engine() -> FommAnimator {
    let config = FommConfig::from_yaml_file(&fixture("tiny.yaml")).unwrap();
    let ckpt = Checkpoint::load(&fixture("tiny.safetensors")).unwrap();
    let model =
        Fomm::from_checkpoint(&config, &ckpt, "tiny", &Device::Cpu, Default::default()).unwrap();
    FommAnimator::new(model, TransferOptions::default())
}

/// Animates the tiny fixture's three driving frames into a PNG folder; returns the files' bytes.
fn animate_tiny(dir: &std::path::Path, name: &str, keyframes: Keyframes) -> Vec<Vec<u8>> {
    let driving = dir.join("driving");
    if !driving.exists() {
        std::fs::create_dir_all(&driving).unwrap();
        for i in 0..3 {
            std::fs::copy(
                fixture(&format!("tiny-input-driving{i}.png")),
                driving.join(format!("{i}.png")),
            )
            .unwrap();
        }
    }
    let out = dir.join(name);
    let req = AnimateRequest {
        source: fixture("tiny-input-source.png"),
        driving,
        output: out.clone(),
        transfer: TransferOptions::default(),
        reference: Reference::First,
        crop_square: false,
        folder_fps: 25.0,
        keyframes,
        smoothing: Smoothing::OFF,
        badge: false,
        watermark: true,
    };
    let mut engine = tiny_engine();
    animate(&mut engine, &req, &mut |_, _| {}).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn offline_keyframes_are_deterministic_and_n1_is_plain_animation() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = animate_tiny(tmp.path(), "plain", Keyframes::default());
    let every1 = animate_tiny(
        tmp.path(),
        "n1",
        Keyframes {
            every: 1,
            inbetween: InBetweenMode::Warp,
        },
    );
    assert_eq!(plain, every1, "N = 1 must be plain animation");
    let k2 = Keyframes {
        every: 2,
        inbetween: InBetweenMode::Warp,
    };
    let a = animate_tiny(tmp.path(), "a", k2);
    let b = animate_tiny(tmp.path(), "b", k2);
    assert_eq!(a, b, "the offline form must be deterministic");
    // Keyframes 0 and 2 are what plain animation renders; frame 1 is made in between.
    assert_eq!(a.len(), 3);
    assert_eq!(a[0], plain[0]);
    assert_eq!(a[2], plain[2]);
    assert_ne!(a[1], plain[1]);
}

/// A model that takes 500 ms per frame, a camera at 30 fps: the output still comes at the
/// camera's rate (in-betweens), the keyframes at the model's, and the latencies the stats report
/// match: outputs a frame or two behind their camera frames, keyframes at least the model's step.
#[test]
fn live_output_keeps_the_camera_rate_with_a_slow_model() {
    let made = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let probe = Box::new(Probe {
        seen: seen.clone(),
        delay: Duration::ZERO,
        fail_at: None,
        writes: 0,
    });
    let pipeline = Pipeline::start(
        Some(counter(made, Duration::from_millis(33))),
        echo(Duration::from_millis(500)),
        vec![probe],
        PipelineOptions {
            keyframes: KeyframeMode::Auto,
            ..small_options()
        },
    )
    .expect("the pipeline starts");
    // Warm up until keyframes are on (auto needs a few model steps), then watch 90 outputs.
    wait_for(
        "keyframes to turn on",
        || pipeline.stats().is_some_and(|s| s.keyframes_on),
        Duration::from_secs(10),
    );
    let count = || {
        pipeline
            .stats()
            .map_or((0, 0), |s| (s.frames_out, s.keyframes))
    };
    let start = count();
    wait_for(
        "90 more outputs",
        || count().0 >= start.0 + 90,
        Duration::from_secs(30),
    );
    let (exits, stats) = pipeline.join_with_stats();
    assert!(exits.iter().all(|e| e.result.is_ok()), "{exits:?}");
    let s = stats.expect("stats");
    assert!(s.keyframes_on, "{s:?}");
    // Every camera frame gets an output, not every model step: a model 15 times slower than the
    // camera gives many outputs per keyframe (a loop without in-betweens gives one).
    let outputs = s.frames_out - start.0;
    let keyframes = (s.keyframes - start.1).max(1);
    assert!(
        outputs >= 5 * keyframes,
        "{outputs} outputs for {keyframes} keyframes: {s:?}"
    );
    // The outputs follow their camera frames; the keyframes trail by the model's step (500 ms).
    assert!(
        s.keyframe_latency_ms_p50 >= 500.0,
        "keyframes {:.0} ms behind their camera frames with a 500 ms model",
        s.keyframe_latency_ms_p50
    );
    assert!(
        s.latency_ms_p50 < s.keyframe_latency_ms_p50 / 2.0,
        "outputs {:.0} ms behind their camera frames, keyframes {:.0} ms",
        s.latency_ms_p50,
        s.keyframe_latency_ms_p50
    );
}
