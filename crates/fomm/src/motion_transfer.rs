//! Test-time motion transfer (the original's `animate.normalize_kp`, paper Sec. 3.4 / Eq. 10-11):
//! the motion of a driving frame D_t relative to a reference frame D_1 is applied to the source's
//! keypoints, so the source keeps its own identity and pose at D_1.
//!
//! kp_new = (kp(D_t) - kp(D_1)) * scale + kp(S),  J_new = J(D_t) J(D_1)^-1 J(S),
//! scale = sqrt(area(hull kp(S))) / sqrt(area(hull kp(D_1))).

use candle_core::{DType, Result, Tensor};

use crate::keypoint_detector::Keypoints;

/// Closed-form inverse of a batch of 2x2 matrices (..., 2, 2). Candle has no matrix inverse; for
/// 2x2 the adjugate formula is exact up to rounding.
pub fn inverse_2x2(m: &Tensor) -> Result<Tensor> {
    let dims = m.dims().to_vec();
    let n = dims.len();
    if n < 2 || dims[n - 1] != 2 || dims[n - 2] != 2 {
        return Err(candle_core::Error::Msg(format!(
            "inverse_2x2 expects (..., 2, 2), got {dims:?}"
        )));
    }
    let flat = m.reshape(((), 4))?;
    let a = flat.narrow(1, 0, 1)?;
    let b = flat.narrow(1, 1, 1)?;
    let c = flat.narrow(1, 2, 1)?;
    let d = flat.narrow(1, 3, 1)?;
    let det = ((&a * &d)? - (&b * &c)?)?;
    let adj = Tensor::cat(&[&d, &b.neg()?, &c.neg()?, &a], 1)?;
    adj.broadcast_div(&det)?.reshape(dims)
}

/// Area of the convex hull of 2-D points (scipy's `ConvexHull(points).volume` in 2-D), in f64.
/// Andrew's monotone chain then the shoelace formula; 0 for fewer than 3 non-collinear points.
/// Hand-written: ten points per frame do not justify a geometry crate.
pub fn convex_hull_area(points: &[[f64; 2]]) -> f64 {
    let mut pts: Vec<[f64; 2]> = points
        .iter()
        .copied()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
        .collect();
    pts.sort_by(|p, q| p[0].total_cmp(&q[0]).then(p[1].total_cmp(&q[1])));
    pts.dedup();
    if pts.len() < 3 {
        return 0.0;
    }
    let cross = |o: [f64; 2], a: [f64; 2], b: [f64; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[f64; 2]>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    let mut twice_area = 0.0;
    for i in 0..hull.len() {
        let p = hull[i];
        let q = hull[(i + 1) % hull.len()];
        twice_area += p[0] * q[1] - q[0] * p[1];
    }
    (twice_area / 2.0).abs()
}

/// Keypoint positions of batch element 0 as f64 pairs.
fn points_of(value: &Tensor) -> Result<Vec<[f64; 2]>> {
    let v = value.get(0)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    Ok(v.iter()
        .map(|p| {
            [
                p.first().copied().unwrap_or(0.0),
                p.get(1).copied().unwrap_or(0.0),
            ]
        })
        .collect())
}

/// `adapt_movement_scale` of normalize_kp: sqrt(area(S)) / sqrt(area(D_1)). Falls back to 1 when
/// a hull is degenerate (all keypoints on a line), where the original would raise a Qhull error.
pub fn adapt_movement_scale(kp_source: &Keypoints, kp_reference: &Keypoints) -> Result<f64> {
    let source_area = convex_hull_area(&points_of(&kp_source.value)?);
    let driving_area = convex_hull_area(&points_of(&kp_reference.value)?);
    let scale = source_area.sqrt() / driving_area.sqrt();
    Ok(if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    })
}

/// How driving keypoints are turned into the keypoints the generator renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOptions {
    /// Relative motion (`use_relative_movement`); false = absolute (the raw driving keypoints).
    pub relative: bool,
    /// Scale the motion by the ratio of keypoint hull sizes (`adapt_movement_scale`).
    pub adapt_scale: bool,
    /// Relative Jacobians (`use_relative_jacobian`), only meaningful with `relative`.
    pub relative_jacobian: bool,
}

impl Default for TransferOptions {
    /// The original demo's `--relative --adapt_scale`, the recommended mode.
    fn default() -> Self {
        Self {
            relative: true,
            adapt_scale: true,
            relative_jacobian: true,
        }
    }
}

impl TransferOptions {
    /// Absolute transfer (demo.py without `--relative`): the driving keypoints as they are.
    pub fn absolute() -> Self {
        Self {
            relative: false,
            adapt_scale: false,
            relative_jacobian: false,
        }
    }
}

/// `normalize_kp(kp_source, kp_driving, kp_driving_initial, ...)`.
pub fn normalize_kp(
    kp_source: &Keypoints,
    kp_driving: &Keypoints,
    kp_reference: &Keypoints,
    options: TransferOptions,
) -> Result<Keypoints> {
    if !options.relative {
        return Ok(kp_driving.clone());
    }
    let scale = if options.adapt_scale {
        adapt_movement_scale(kp_source, kp_reference)?
    } else {
        1.0
    };
    // torch multiplies the float32 tensor by the Python float: effectively in float32.
    let diff = ((&kp_driving.value - &kp_reference.value)? * (scale as f32) as f64)?;
    let value = (diff + &kp_source.value)?;
    let jacobian = match (
        &kp_driving.jacobian,
        &kp_reference.jacobian,
        &kp_source.jacobian,
    ) {
        (Some(jd), Some(jr), Some(js)) if options.relative_jacobian => {
            Some(jd.matmul(&inverse_2x2(jr)?)?.matmul(js)?)
        }
        _ => kp_driving.jacobian.clone(),
    };
    Ok(Keypoints { value, jacobian })
}

/// Relative motion transfer with its reference frame D_1 as state. The first frame after
/// creation or [`MotionTransfer::recalibrate`] becomes the reference (the live app's hotkey).
#[derive(Debug, Clone, Default)]
pub struct MotionTransfer {
    /// How the keypoints are transferred.
    pub options: TransferOptions,
    reference: Option<Keypoints>,
}

impl MotionTransfer {
    /// Not calibrated: the first driving frame will be the reference.
    pub fn new(options: TransferOptions) -> Self {
        Self {
            options,
            reference: None,
        }
    }

    /// Forget D_1: the next driving frame becomes the new reference.
    pub fn recalibrate(&mut self) {
        self.reference = None;
    }

    /// Use these keypoints as D_1.
    pub fn set_reference(&mut self, kp: Keypoints) {
        self.reference = Some(kp);
    }

    /// The reference keypoints kp(D_1), once set.
    pub fn reference(&self) -> Option<&Keypoints> {
        self.reference.as_ref()
    }

    /// Whether a reference is set.
    pub fn is_calibrated(&self) -> bool {
        self.reference.is_some()
    }

    /// The keypoints to render for `kp_driving`; sets the reference first if there is none.
    pub fn transfer(&mut self, kp_source: &Keypoints, kp_driving: &Keypoints) -> Result<Keypoints> {
        let reference = match &self.reference {
            Some(r) => r,
            None => self.reference.insert(kp_driving.clone()),
        };
        normalize_kp(kp_source, kp_driving, reference, self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_area_of_unit_square_with_inner_points() {
        let pts = [
            [0.0, 0.0],
            [1.0, 0.0],
            [1.0, 1.0],
            [0.0, 1.0],
            [0.5, 0.5],
            [0.2, 0.7],
        ];
        assert!((convex_hull_area(&pts) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hull_area_of_collinear_points_is_zero() {
        let pts = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]];
        assert_eq!(convex_hull_area(&pts), 0.0);
    }

    #[test]
    fn inverse_of_known_matrix() -> Result<()> {
        let m = Tensor::from_vec(
            vec![4f32, 7., 2., 6.],
            (1, 1, 2, 2),
            &candle_core::Device::Cpu,
        )?;
        let inv = inverse_2x2(&m)?.flatten_all()?.to_vec1::<f32>()?;
        let expect = [0.6f32, -0.7, -0.2, 0.4];
        for (a, b) in inv.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{inv:?}");
        }
        Ok(())
    }
}
