//! The FOMM engine through the `Animator` interface: calibration and idle motion.

mod common;

use candle_core::Device;
use common::{diff, fixture, load_tensors};
use marionette::engine::Animator;
use marionette::engine::fomm::FommAnimator;
use marionette::model::checkpoint::Checkpoint;
use marionette::model::config::FommConfig;
use marionette::model::fomm::Fomm;
use marionette::model::motion_transfer::TransferOptions;

fn engine() -> FommAnimator {
    let config = FommConfig::from_yaml_file(&fixture("tiny.yaml")).unwrap();
    let ckpt = Checkpoint::load(&fixture("tiny-legacy.pth.tar")).unwrap();
    let model = Fomm::from_checkpoint(&config, &ckpt, "tiny", &Device::Cpu).unwrap();
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
    e.set_source(&inputs["source"]).unwrap();
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
    e.set_source(&inputs["source"]).unwrap();
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
