//! How far a reduced precision lands from the f32 model: the same portrait and driving frames
//! animated at both precisions, compared frame by frame (PSNR, peak 1.0: the generator's sigmoid
//! output) in relative animation (the original demo's `--relative --adapt_scale`, reference =
//! the first driving frame) and absolute animation (raw driving keypoints), plus the largest
//! change of the driving keypoints and Jacobians.
//!
//! This is the measure the precision bar is stated in: PyTorch's own bf16 autocast against
//! PyTorch f32 on the same model and inputs (`bench/pytorch/reference.py quality`).

use candle_core::Tensor;
use serde::Serialize;

use crate::keypoint_detector::Keypoints;
use crate::model::{Fomm, ModelError};
use crate::motion_transfer::{MotionTransfer, TransferOptions};
use crate::ops::precision::PrecisionPlan;

/// One comparison of a precision plan with f32.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// What was compared, e.g. "kp f32, dense motion bf16, generator bf16".
    pub plan: String,
    /// PSNR (dB) of each relative-animation frame against f32.
    pub relative_psnr: Vec<f64>,
    /// PSNR (dB) of each absolute-animation frame against f32.
    pub absolute_psnr: Vec<f64>,
    /// Largest |change| of any driving keypoint coordinate (normalised units, [-1, 1]).
    pub kp_value_max_abs: f64,
    /// Largest |change| of any driving Jacobian entry.
    pub kp_jacobian_max_abs: f64,
}

impl QualityReport {
    /// The worst relative-animation frame's PSNR.
    pub fn worst_relative(&self) -> f64 {
        self.relative_psnr
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }

    /// The worst absolute-animation frame's PSNR.
    pub fn worst_absolute(&self) -> f64 {
        self.absolute_psnr
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }
}

/// A plan in words.
pub fn describe(plan: &PrecisionPlan) -> String {
    format!(
        "kp detector {}, dense motion {}, generator {}",
        plan.kp_detector, plan.dense_motion, plan.generator
    )
}

/// PSNR in dB of `a` against `b` (same shape), peak 1.0; infinite when they are equal.
pub fn psnr(a: &Tensor, b: &Tensor) -> Result<f64, ModelError> {
    let mse = (a - b)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok(if mse == 0.0 {
        f64::INFINITY
    } else {
        -10.0 * mse.log10()
    })
}

fn max_abs(a: &Tensor, b: &Tensor) -> Result<f64, ModelError> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64)
}

/// Everything one precision renders for the comparison.
struct Run {
    relative: Vec<Tensor>,
    absolute: Vec<Tensor>,
    driving_kp: Vec<Keypoints>,
}

fn animate(model: &Fomm, source: &Tensor, driving: &[Tensor]) -> Result<Run, ModelError> {
    let prepared = model.prepare_source(source)?;
    let driving_kp = driving
        .iter()
        .map(|d| model.detect(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut relative = MotionTransfer::new(TransferOptions::default());
    let mut absolute = MotionTransfer::new(TransferOptions::absolute());
    let mut run = Run {
        relative: Vec::new(),
        absolute: Vec::new(),
        driving_kp: Vec::new(),
    };
    for kp in &driving_kp {
        let rel = relative.transfer(&prepared.keypoints, kp)?;
        run.relative
            .push(model.render(&prepared, &rel, false)?.prediction);
        let abs = absolute.transfer(&prepared.keypoints, kp)?;
        run.absolute
            .push(model.render(&prepared, &abs, false)?.prediction);
    }
    run.driving_kp = driving_kp;
    Ok(run)
}

/// Animates `source` with `driving` (images as the models take them) with `reference` (the
/// same weights at f32) and with `reduced`, and compares.
pub fn compare(
    reference: &Fomm,
    reduced: &Fomm,
    source: &Tensor,
    driving: &[Tensor],
) -> Result<QualityReport, ModelError> {
    let plan = reduced.precision();
    let want = animate(reference, source, driving)?;
    let got = animate(reduced, source, driving)?;
    let frames = |a: &[Tensor], b: &[Tensor]| -> Result<Vec<f64>, ModelError> {
        a.iter().zip(b).map(|(x, y)| psnr(x, y)).collect()
    };
    let mut kp_value_max_abs = 0f64;
    let mut kp_jacobian_max_abs = 0f64;
    for (a, b) in got.driving_kp.iter().zip(&want.driving_kp) {
        kp_value_max_abs = kp_value_max_abs.max(max_abs(&a.value, &b.value)?);
        if let (Some(ja), Some(jb)) = (&a.jacobian, &b.jacobian) {
            kp_jacobian_max_abs = kp_jacobian_max_abs.max(max_abs(ja, jb)?);
        }
    }
    Ok(QualityReport {
        plan: describe(&plan),
        relative_psnr: frames(&got.relative, &want.relative)?,
        absolute_psnr: frames(&got.absolute, &want.absolute)?,
        kp_value_max_abs,
        kp_jacobian_max_abs,
    })
}
