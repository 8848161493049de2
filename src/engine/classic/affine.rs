//! Local affine motions from point correspondences: FOMM's first-order motion representation (a keypoint
//! and a 2x2 Jacobian, Siarohin et al. 2019, Sec. 3.1) estimated by weighted least squares instead of a
//! network.
//!
//! Around each anchor `a_k`, `y ~ A_k x + b_k` is fitted to the correspondences (x in D1, y in D_t) with
//! Gaussian weights `exp(-|x - a_k|^2 / (2 sigma^2))` times a per-point robustness weight, and a small ridge
//! pulling `A_k` towards the global fit so that an anchor with little or collinear support stays sane.
//! On noise-free correspondences of one affine map every fit is that map exactly (the global fit is exact,
//! so the ridge pulls towards the truth). Robustness: iteratively reweighted least squares with Tukey's
//! biweight on the residuals of the blended motion.

use super::flow::Blend;

/// y = a x + b, `a` row-major.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub a: [[f64; 2]; 2],
    pub b: [f64; 2],
}

impl Affine {
    pub const IDENTITY: Affine = Affine {
        a: [[1.0, 0.0], [0.0, 1.0]],
        b: [0.0, 0.0],
    };

    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a[0][0] * p[0] + self.a[0][1] * p[1] + self.b[0],
            self.a[1][0] * p[0] + self.a[1][1] * p[1] + self.b[1],
        ]
    }

    pub fn det(&self) -> f64 {
        self.a[0][0] * self.a[1][1] - self.a[0][1] * self.a[1][0]
    }

    /// The inverse map; `None` when `a` is (nearly) singular or not finite.
    pub fn inverse(&self) -> Option<Affine> {
        let inv = invert2(self.a)?;
        let b = [
            -(inv[0][0] * self.b[0] + inv[0][1] * self.b[1]),
            -(inv[1][0] * self.b[0] + inv[1][1] * self.b[1]),
        ];
        let out = Affine { a: inv, b };
        out.is_finite().then_some(out)
    }

    pub fn is_finite(&self) -> bool {
        self.a
            .iter()
            .flatten()
            .chain(&self.b)
            .all(|v| v.is_finite())
    }
}

/// Inverse of a 2x2 matrix; `None` when its determinant is tiny relative to its entries or not finite.
pub fn invert2(a: [[f64; 2]; 2]) -> Option<[[f64; 2]; 2]> {
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    let scale: f64 = a.iter().flatten().map(|v| v * v).sum();
    if !(det.is_finite() && scale.is_finite()) || det.abs() <= 1e-12 * scale.max(1e-300) {
        return None;
    }
    Some([
        [a[1][1] / det, -a[0][1] / det],
        [-a[1][0] / det, a[0][0] / det],
    ])
}

/// A ridge term `strength * |A - a|_F^2` added to a fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub a: [[f64; 2]; 2],
    pub strength: f64,
}

/// Weighted least-squares affine map from `src` to `dst`: minimises
/// `sum_i w_i |A x_i + b - y_i|^2 (+ prior.strength |A - prior.a|^2)`.
/// Works on centred coordinates, so it is exact in f64 up to rounding on noise-free data. `None` when
/// the inputs differ in length, the weights sum to zero, or the points are degenerate (collinear) and no
/// prior makes the problem well-posed. Non-finite points or weights are skipped.
pub fn fit_affine_weighted(
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    weights: &[f64],
    prior: Option<Prior>,
) -> Option<Affine> {
    if src.len() != dst.len() || src.len() != weights.len() {
        return None;
    }
    let valid = |x: &[f64; 2], y: &[f64; 2], w: f64| {
        w.is_finite() && w > 0.0 && x.iter().chain(y).all(|v| v.is_finite())
    };
    let (mut sw, mut mx, mut my) = (0f64, [0f64; 2], [0f64; 2]);
    for ((x, y), &w) in src.iter().zip(dst).zip(weights) {
        if valid(x, y, w) {
            sw += w;
            mx = [mx[0] + w * x[0], mx[1] + w * x[1]];
            my = [my[0] + w * y[0], my[1] + w * y[1]];
        }
    }
    if !(sw > 0.0 && sw.is_finite()) {
        return None;
    }
    mx = [mx[0] / sw, mx[1] / sw];
    my = [my[0] / sw, my[1] / sw];
    // sxx = sum w X X^T, syx = sum w Y X^T on centred coordinates.
    let mut sxx = [[0f64; 2]; 2];
    let mut syx = [[0f64; 2]; 2];
    for ((x, y), &w) in src.iter().zip(dst).zip(weights) {
        if !valid(x, y, w) {
            continue;
        }
        let cx = [x[0] - mx[0], x[1] - mx[1]];
        let cy = [y[0] - my[0], y[1] - my[1]];
        for r in 0..2 {
            for c in 0..2 {
                sxx[r][c] += w * cx[r] * cx[c];
                syx[r][c] += w * cy[r] * cx[c];
            }
        }
    }
    if let Some(p) = prior.filter(|p| p.strength.is_finite() && p.strength > 0.0) {
        sxx[0][0] += p.strength;
        sxx[1][1] += p.strength;
        for (row, prior_row) in syx.iter_mut().zip(&p.a) {
            for (v, q) in row.iter_mut().zip(prior_row) {
                *v += p.strength * q;
            }
        }
    }
    let inv = invert2(sxx)?;
    let mut a = [[0f64; 2]; 2];
    for r in 0..2 {
        for c in 0..2 {
            a[r][c] = syx[r][0] * inv[0][c] + syx[r][1] * inv[1][c];
        }
    }
    let b = [
        my[0] - (a[0][0] * mx[0] + a[0][1] * mx[1]),
        my[1] - (a[1][0] * mx[0] + a[1][1] * mx[1]),
    ];
    let out = Affine { a, b };
    out.is_finite().then_some(out)
}

/// Settings of the local fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalFitParams {
    /// Gaussian radius of each anchor's neighbourhood (pixels).
    pub sigma: f64,
    /// Gaussian radius of the blend used for the residuals (see [`Blend`]).
    pub blend_sigma: f64,
    /// Ridge towards the global fit, relative: `strength = ridge * sigma^2 * (1 + sum of weights)`, so an
    /// anchor with plenty of support moves by about `ridge` of the way and one with none follows the global fit.
    pub ridge: f64,
    /// Reweighting rounds after the first fit (0 = plain weighted least squares).
    pub robust_iterations: usize,
    /// Rounds of refitting the residuals after the robust rounds (see [`fit_local_affines`]).
    pub refine_iterations: usize,
    /// Residual scale floor (pixels) for the robust weights, so that near-exact data is not over-trimmed.
    pub min_residual_scale: f64,
}

/// The local affine maps around `anchors` (D1 pixels), one per anchor, and the robust weight each
/// correspondence ended with. `None` when even the global fit is impossible (fewer than 3 usable,
/// non-collinear points).
///
/// After the robust rounds, `refine_iterations` rounds fit the residuals of the blended motion the same
/// way and add them to the maps ("twicing", Tukey 1977): Gaussian-weighted fits flatten motion that
/// curves within an anchor's neighbourhood, and fitting what is left restores most of it. Residuals of
/// an exactly affine motion are zero, so exactness is kept.
pub fn fit_local_affines(
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    anchors: &[[f64; 2]],
    params: &LocalFitParams,
) -> Option<(Vec<Affine>, Vec<f64>)> {
    let n = src.len();
    if dst.len() != n
        || n < 3
        || params.sigma.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
    {
        return None;
    }
    let mut robust = vec![1f64; n];
    let mut fits = Vec::new();
    for round in 0..=params.robust_iterations {
        let global = fit_affine_weighted(src, dst, &robust, None)?;
        fits = fit_round(src, dst, &robust, anchors, params, global);
        if round == params.robust_iterations {
            break;
        }
        // Residuals of the blended motion, Tukey biweight with c = 4.685 (95% efficiency under Gaussian
        // noise; Holland & Welsch 1977) times a MAD scale estimate (1.4826 makes MAD consistent for sigma).
        let residuals: Vec<f64> = blend_residuals(src, dst, anchors, &fits, params)
            .iter()
            .map(|r| (r[0] * r[0] + r[1] * r[1]).sqrt())
            .collect();
        let scale = (1.4826 * median(&residuals)).max(params.min_residual_scale);
        let c = 4.685 * scale;
        for (w, r) in robust.iter_mut().zip(&residuals) {
            let u = r / c;
            *w = if u < 1.0 { (1.0 - u * u).powi(2) } else { 0.0 };
        }
    }
    let zero = Affine {
        a: [[0.0; 2]; 2],
        b: [0.0; 2],
    };
    for _ in 0..params.refine_iterations {
        let residuals = blend_residuals(src, dst, anchors, &fits, params);
        let corrections = fit_round(src, &residuals, &robust, anchors, params, zero);
        for (f, c) in fits.iter_mut().zip(corrections) {
            for r in 0..2 {
                for k in 0..2 {
                    f.a[r][k] += c.a[r][k];
                }
                f.b[r] += c.b[r];
            }
        }
    }
    Some((fits, robust))
}

/// One Gaussian-weighted fit per anchor of `src -> dst`, ridged towards `global` (and equal to it where
/// an anchor has no usable support).
fn fit_round(
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    robust: &[f64],
    anchors: &[[f64; 2]],
    params: &LocalFitParams,
    global: Affine,
) -> Vec<Affine> {
    let inv_2s2 = 1.0 / (2.0 * params.sigma * params.sigma);
    let mut weights = vec![0f64; src.len()];
    anchors
        .iter()
        .map(|anchor| {
            let mut sum = 0f64;
            for (w, (x, r)) in weights.iter_mut().zip(src.iter().zip(robust)) {
                let d2 = (x[0] - anchor[0]).powi(2) + (x[1] - anchor[1]).powi(2);
                *w = (-d2 * inv_2s2).exp() * r;
                sum += *w;
            }
            let prior = Prior {
                a: global.a,
                strength: params.ridge * params.sigma * params.sigma * (1.0 + sum),
            };
            fit_affine_weighted(src, dst, &weights, Some(prior)).unwrap_or(global)
        })
        .collect()
}

/// `dst - F(src)` for the blend F of `fits` around `anchors`.
fn blend_residuals(
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    anchors: &[[f64; 2]],
    fits: &[Affine],
    params: &LocalFitParams,
) -> Vec<[f64; 2]> {
    // No identity fallback here: it belongs to rendering, and the fits must see the maps' own residuals.
    let blend = Blend::new(
        anchors.iter().copied().zip(fits.iter().copied()).collect(),
        params.blend_sigma,
        0.0,
    );
    src.iter()
        .zip(dst)
        .map(|(x, y)| {
            let p = blend.apply(*x);
            [y[0] - p[0], y[1] - p[1]]
        })
        .collect()
}

/// Median of finite values (0 for none).
fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

/// Anchors on a `rows` x `cols` grid of cell centres over the central part of the points' extent
/// (the 2nd to 98th percentile on each axis), and the grid spacing (mean of the two axes, at least
/// `min_spacing`). `None` for an empty grid or no points.
pub fn anchor_grid(
    points: &[[f64; 2]],
    rows: usize,
    cols: usize,
    min_spacing: f64,
) -> Option<(Vec<[f64; 2]>, f64)> {
    if rows == 0 || cols == 0 || points.is_empty() {
        return None;
    }
    let range = |axis: usize| {
        let mut v: Vec<f64> = points
            .iter()
            .map(|p| p[axis])
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((v.len().saturating_sub(1)) as f64 * q).round() as usize;
            v.get(i).copied()
        };
        Some((at(0.02)?, at(0.98)?))
    };
    let (x0, x1) = range(0)?;
    let (y0, y1) = range(1)?;
    let dx = ((x1 - x0) / cols as f64).max(min_spacing);
    let dy = ((y1 - y0) / rows as f64).max(min_spacing);
    let (cx, cy) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
    let mut anchors = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            anchors.push([
                cx + (c as f64 - 0.5 * (cols as f64 - 1.0)) * dx,
                cy + (r as f64 - 0.5 * (rows as f64 - 1.0)) * dy,
            ]);
        }
    }
    Some((anchors, 0.5 * (dx + dy)))
}
