//! The FOMM engine through the `Animator` interface: calibration and idle motion.

use crate::common;

use candle_core::Device;
use common::{diff, fixture, load_tensors};
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::model::Fomm;
use fomm::motion_transfer::TransferOptions;
use marionette::engine::Animator;
use marionette::engine::fomm::FommAnimator;

fn engine() -> FommAnimator {
    let config = FommConfig::from_yaml_file(&fixture("tiny.yaml")).unwrap();
    let ckpt = Checkpoint::load(&fixture("tiny-legacy.pth.tar")).unwrap();
    let model =
        Fomm::from_checkpoint(&config, &ckpt, "tiny", &Device::Cpu, Default::default()).unwrap();
    FommAnimator::new(model, TransferOptions::default())
}

#[test]
fn animate_needs_a_source_and_calibrates_on_the_first_frame() {
    let inputs = load_tensors("tiny-inputs.safetensors");
    let mut e = engine();
    assert!(
        e.animate(&inputs["driving.0"]).is_err(),
        "no portrait set yet"
    );
    e.select_portrait(0, &inputs["source"]).unwrap();
    assert!(!e.is_calibrated());
    let first = e.animate(&inputs["driving.1"]).unwrap();
    assert!(e.is_calibrated());
    // The calibration frame itself renders the portrait in its own pose, whatever the frame.
    let out = load_tensors("tiny-outputs-ac-true.safetensors");
    let (max, _) = diff(&first, &out["relative.0.prediction"]);
    assert!(
        max < 3e-3,
        "calibration frame renders the source pose ({max})"
    );
    let moved = e.animate(&inputs["driving.2"]).unwrap();
    assert!(diff(&moved, &first).0 > 0.05);
    e.recalibrate();
    let again = e.animate(&inputs["driving.2"]).unwrap();
    assert!(
        diff(&again, &first).0 < 3e-3,
        "after recalibration frame 2 is the new reference"
    );
}

#[test]
fn idle_motion_moves_the_portrait_smoothly() {
    let inputs = load_tensors("tiny-inputs.safetensors");
    let mut e = engine();
    e.select_portrait(0, &inputs["source"]).unwrap();
    let rest = e.render_idle(0.0).unwrap();
    let out = load_tensors("tiny-outputs-ac-true.safetensors");
    // At t = 0 the pose is the rest pose: the source-pose rendering.
    let (_, mean0) = diff(&rest, &out["relative.0.prediction"]);
    assert!(mean0 < 1e-4, "t=0 is the rest pose ({mean0})");
    let mut prev = rest;
    let mut total = 0.0;
    // One second at 15 fps (the ease-in and the start of the motion).
    for i in 1..=15 {
        let frame = e.render_idle(i as f64 / 15.0).unwrap();
        let (_, step) = diff(&frame, &prev);
        assert!(step < 0.03, "idle frame {i} jumps ({step})");
        total += step;
        prev = frame;
    }
    assert!(
        total > 0.01,
        "idle motion should move the portrait ({total})"
    );
}

/// Code paths no published config uses but the original supports: scale_factor 1 (no
/// anti-alias module), a zero-order model (no Jacobians), no occlusion map, padding 3 heads,
/// and a generator without a dense motion network. Random weights; shapes and finiteness.
#[test]
fn unusual_configs_build_and_run() {
    use candle_core::Tensor;
    let yaml = |jac: bool, occl: bool, dense: &str| {
        format!(
            "dataset_params: {{frame_shape: [64, 64, 3]}}\nmodel_params:\n  common_params: {{num_kp: 4, num_channels: 3, estimate_jacobian: {jac}}}\n  \
             kp_detector_params: {{temperature: 0.1, block_expansion: 4, max_features: 16, num_blocks: 3, scale_factor: 1, pad: 3}}\n  \
             generator_params:\n    {{block_expansion: 4, max_features: 16, num_down_blocks: 2, num_bottleneck_blocks: 1, estimate_occlusion_map: {occl}{dense}}}\n"
        )
    };
    let dense = ", dense_motion_params: {block_expansion: 4, max_features: 16, num_blocks: 3, scale_factor: 1}";
    for (jac, occl, dm) in [
        (false, false, dense),
        (true, true, dense),
        (true, false, ""),
    ] {
        let config = FommConfig::from_yaml_str(&yaml(jac, occl, dm), "unusual").expect("config");
        let model = Fomm::random(&config, &Device::Cpu, Default::default()).expect("model");
        let img = Tensor::rand(0f32, 1.0, (1, 3, 64, 64), &Device::Cpu).unwrap();
        let src = model.prepare_source(&img).expect("prepare");
        assert_eq!(src.keypoints.value.dims(), &[1, 4, 2]);
        assert_eq!(src.keypoints.jacobian.is_some(), jac);
        let kp = model.detect(&img).expect("detect");
        let out = model.render(&src, &kp, true).expect("render");
        assert_eq!(out.prediction.dims(), &[1, 3, 64, 64]);
        let dm_out = out.dense_motion.as_ref();
        assert_eq!(dm_out.is_some(), !dm.is_empty());
        assert_eq!(
            dm_out.and_then(|d| d.occlusion_map.as_ref()).is_some(),
            occl && !dm.is_empty()
        );
        let v = out
            .prediction
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(v.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
    }
}

/// The classic engine's idle motion (no driving frame): the rest pose at t = 0, small steps between
/// frames at 30 fps, a visible motion, and for ten minutes of simulated time never further from the
/// portrait than the pose bounds allow.
#[test]
fn classic_idle_motion_is_smooth_and_bounded() {
    use marionette::engine::classic::{ClassicEngine, ClassicParams};
    let img = image::open(fixture("tiny-input-source.png"))
        .unwrap()
        .to_rgb8();
    let n = 64u32;
    let img = image::imageops::resize(&img, n, n, image::imageops::FilterType::Triangle);
    let portrait = marionette::media::resize::to_model_tensor(&img, n, n).unwrap();
    let mut e = ClassicEngine::new(ClassicParams::default(), (n as usize, n as usize)).unwrap();
    assert!(e.animate_idle(0.0).is_err(), "no portrait set yet");
    e.select_portrait(0, &portrait).unwrap();
    let rest = e.animate_idle(0.0).unwrap();
    let (max0, _) = diff(&rest, &portrait);
    assert!(max0 < 1e-5, "t=0 is the portrait itself ({max0})");
    let mut prev = rest;
    let mut total = 0.0;
    let mut furthest: f64 = 0.0;
    for i in 1..=90 {
        let frame = e.animate_idle(i as f64 / 30.0).unwrap();
        let (_, step) = diff(&frame, &prev);
        assert!(step < 0.01, "idle frame {i} jumps ({step})");
        total += step;
        furthest = furthest.max(diff(&frame, &portrait).1);
        prev = frame;
    }
    assert!(
        total > 0.02,
        "idle motion should move the portrait ({total})"
    );
    // The first 30 s set the scale of the motion; over ten minutes (every 1.3 s) it never gets
    // more than twice as far from the portrait (no drift), nor beyond an absolute bound.
    for i in 0..60 {
        let frame = e.animate_idle(i as f64 * 0.5).unwrap();
        furthest = furthest.max(diff(&frame, &portrait).1);
    }
    for i in 0..460 {
        let t = 30.0 + 1.3 * i as f64;
        let frame = e.animate_idle(t).unwrap();
        let (_, mean) = diff(&frame, &portrait);
        assert!(
            mean <= 2.0 * furthest && mean < 0.15,
            "idle pose at {t:.1} s is far from the portrait ({mean}; up to {furthest} in the first 30 s)"
        );
    }
}
