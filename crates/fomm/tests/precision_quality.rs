//! Quality of the reduced precisions against our f32 path on the fixtures, held to what PyTorch
//! users accept: PyTorch's bf16 autocast against PyTorch f32, run on the original code with the
//! same weights and inputs (bench/pytorch/reference.py quality, torch 2.15.0, grid_sample
//! align_corners=True). Its figures, worst frame, PSNR in dB (relative / absolute animation),
//! and its driving keypoints' largest change (value / Jacobian):
//!
//! | model | relative | absolute | kp value | kp Jacobian |
//! |---|---|---|---|---|
//! | tiny  | 18.07 | 16.52 | 0.0157 | 0.0358 |
//! | tiny2 | 27.09 | 17.28 | 0.0324 | 0.0202 |
//!
//! A plan passes when its worst frames are at least as good and its keypoints move no more.
//! The random fixture weights make FOMM very sensitive (peaked heatmaps): a few pixels of
//! keypoint shift rearrange the noise-textured output, hence the low figures on both sides.

mod common;

use candle_core::Tensor;
use common::{fixture, load_tensors};
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::model::Fomm;
use fomm::ops::precision::{Precision, PrecisionPlan};
use fomm::quality::{QualityReport, compare};

struct Bar {
    relative: f64,
    absolute: f64,
    kp_value: f64,
    kp_jacobian: f64,
}

fn measure(name: &str, frames: usize, plan: PrecisionPlan) -> QualityReport {
    let config = FommConfig::from_yaml_file(&fixture(&format!("{name}.yaml"))).expect("config");
    let ckpt = Checkpoint::load(&fixture(&format!("{name}.safetensors"))).expect("checkpoint");
    let cpu = candle_core::Device::Cpu;
    let reference =
        Fomm::from_checkpoint(&config, &ckpt, name, &cpu, PrecisionPlan::default()).expect("model");
    let reduced = Fomm::from_checkpoint(&config, &ckpt, name, &cpu, plan).expect("model");
    let inputs = load_tensors(&format!("{name}-inputs.safetensors"));
    let get = |k: &str| -> Tensor { inputs.get(k).cloned().expect(k) };
    let driving: Vec<Tensor> = (0..frames).map(|i| get(&format!("driving.{i}"))).collect();
    compare(&reference, &reduced, &get("source"), &driving).expect("compare")
}

fn check(name: &str, frames: usize, plan: PrecisionPlan, bar: &Bar) {
    let r = measure(name, frames, plan);
    eprintln!("{name} {}: {r:?}", r.plan);
    assert!(
        r.worst_relative() >= bar.relative && r.worst_absolute() >= bar.absolute,
        "{name} {}: worst frames {:.2} / {:.2} dB, PyTorch bf16 {:.2} / {:.2}",
        r.plan,
        r.worst_relative(),
        r.worst_absolute(),
        bar.relative,
        bar.absolute
    );
    assert!(
        r.kp_value_max_abs <= bar.kp_value && r.kp_jacobian_max_abs <= bar.kp_jacobian,
        "{name} {}: keypoints moved {:.4} / {:.4}, PyTorch bf16 {:.4} / {:.4}",
        r.plan,
        r.kp_value_max_abs,
        r.kp_jacobian_max_abs,
        bar.kp_value,
        bar.kp_jacobian
    );
}

const TINY: Bar = Bar {
    relative: 18.07,
    absolute: 16.52,
    kp_value: 0.0157,
    kp_jacobian: 0.0358,
};
const TINY2: Bar = Bar {
    relative: 27.09,
    absolute: 17.28,
    kp_value: 0.0324,
    kp_jacobian: 0.0202,
};

#[test]
fn bf16_plan_meets_pytorch_bf16_on_tiny() {
    check(
        "tiny",
        3,
        PrecisionPlan::for_precision(Precision::Bf16),
        &TINY,
    );
}

#[test]
fn bf16_plan_meets_pytorch_bf16_on_tiny2() {
    check(
        "tiny2",
        2,
        PrecisionPlan::for_precision(Precision::Bf16),
        &TINY2,
    );
}

#[test]
fn a_bf16_keypoint_detector_moves_the_keypoints_as_much_as_pytorch() {
    // Why the bf16 plan keeps the keypoint detector at f32: with it at bf16 too, the driving
    // keypoints of tiny move about as far as PyTorch's autocast moves them (0.0161 against
    // 0.0157 when this was written), and they steer everything after; with it at f32 they do not
    // move at all.
    let all = measure("tiny", 3, PrecisionPlan::uniform(Precision::Bf16));
    let plan = measure("tiny", 3, PrecisionPlan::for_precision(Precision::Bf16));
    eprintln!("tiny all bf16: {all:?}\ntiny bf16 plan: {plan:?}");
    assert!(
        all.kp_value_max_abs > TINY.kp_value / 2.0,
        "a bf16 detector moved the keypoints by only {:.4} (PyTorch {:.4})",
        all.kp_value_max_abs,
        TINY.kp_value
    );
    assert_eq!(plan.kp_value_max_abs, 0.0, "{plan:?}");
    assert_eq!(plan.kp_jacobian_max_abs, 0.0, "{plan:?}");
}

#[test]
fn f32_plan_is_exact() {
    let r = measure("tiny2", 2, PrecisionPlan::default());
    assert!(r.worst_relative().is_infinite() && r.worst_absolute().is_infinite());
    assert_eq!((r.kp_value_max_abs, r.kp_jacobian_max_abs), (0.0, 0.0));
}
