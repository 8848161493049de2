//! Pyramidal Lucas-Kanade point tracking from the reference frame D1 into a driving frame, with a
//! forward-backward check (Kalal, Mikolajczyk & Matas, ICPR 2010).
//!
//! Written here, not taken from a crate: the one maintained Rust LK crate we found (`optical-flow-lk`)
//! tracks u8 images frame to frame; this engine tracks every frame against the same reference, so each
//! point's reference window (values and gradients at every level) is computed once at calibration, the
//! window is pre-warped by the local affine motion expected at the point (so rotated or scaled faces still
//! match), and brightness offsets (webcam auto-exposure) are eliminated in closed form.
//!
//! The step at one pyramid level (Bouguet's pyramidal LK with the reference window's gradients): find `p`
//! with `J(p + A d) ~ T(d) + beta` over window offsets `d`, `T` the reference window, `A` the predicted
//! local Jacobian and `beta` a brightness offset. With `g(d)` the reference gradients minus their window
//! mean (which removes `beta`) and `G = sum g g^T`, the Gauss-Newton update is
//! `p += A G^-1 sum g(d) (T(d) - J(p + A d))`, because `grad J ~ A^-T grad T` on a matching window.

use rayon::prelude::*;

use super::pyramid::{GrayImage, Pyramid};

/// Settings of the tracker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackParams {
    /// Window half-size: windows are (2r+1)^2 pixels at every level.
    pub window_radius: usize,
    /// Gauss-Newton iterations per level at most.
    pub max_iterations: usize,
    /// Stop iterating at a level once a step is shorter than this (pixels of that level).
    pub epsilon: f32,
    /// Drop a point whose forward-backward error (pixels of level 0) exceeds this.
    pub fb_threshold: f32,
    /// A window is trackable when the smaller eigenvalue of its mean (centred) gradient tensor is at
    /// least this, in (intensity / pixel)^2.
    pub min_eigen: f32,
}

/// Centred gradients of one window at one level, and what the update needs from them.
#[derive(Debug, Clone)]
struct LevelWindow {
    gx: Vec<f32>,
    gy: Vec<f32>,
    /// sum g(d) T(d).
    c0: [f32; 2],
    /// G^-1 as (xx, xy, yy).
    inv: [f32; 3],
}

/// A point's reference window at every pyramid level, computed once.
#[derive(Debug, Clone)]
pub struct Template {
    /// One per level; `None` where that level's window is too flat to track on.
    levels: Vec<Option<LevelWindow>>,
}

/// Values of the (2r+3)^2 window around `centre` (offsets pre-warped by `a`), then centred central-difference
/// gradients on the inner (2r+1)^2 window, `c0` and `G^-1`. `None` for a flat window.
fn window_at(
    img: &GrayImage,
    centre: [f32; 2],
    a: [[f32; 2]; 2],
    radius: usize,
    min_eigen: f32,
) -> Option<(LevelWindow, Vec<f32>)> {
    let outer = 2 * radius + 3;
    let mut vals = vec![0.0; outer * outer];
    img.sample_window(centre, a, radius + 1, &mut vals);
    let inner = 2 * radius + 1;
    let n = inner * inner;
    let (mut gx, mut gy, mut t) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in 1..=inner {
        for col in 1..=inner {
            let v = |rr: usize, cc: usize| vals.get(rr * outer + cc).copied().unwrap_or(0.0);
            gx.push(0.5 * (v(row, col + 1) - v(row, col - 1)));
            gy.push(0.5 * (v(row + 1, col) - v(row - 1, col)));
            t.push(v(row, col));
        }
    }
    let inv_n = 1.0 / n as f32;
    let mx = gx.iter().sum::<f32>() * inv_n;
    let my = gy.iter().sum::<f32>() * inv_n;
    let (mut sxx, mut sxy, mut syy) = (0f32, 0f32, 0f32);
    for (x, y) in gx.iter_mut().zip(gy.iter_mut()) {
        *x -= mx;
        *y -= my;
        sxx += *x * *x;
        sxy += *x * *y;
        syy += *y * *y;
    }
    if super::features::min_eigen(sxx * inv_n, sxy * inv_n, syy * inv_n) < min_eigen {
        return None;
    }
    let det = sxx * syy - sxy * sxy;
    if !(det.is_finite() && det > 0.0) {
        return None;
    }
    let inv = [syy / det, -sxy / det, sxx / det];
    let c0 = dot_window(&gx, &gy, &t);
    Some((LevelWindow { gx, gy, c0, inv }, t))
}

/// (sum gx v, sum gy v), in a fixed order so that identical inputs give identical sums: eight
/// running sums a lane, added at the end, so that the additions do not wait on one another.
#[inline]
fn dot_window(gx: &[f32], gy: &[f32], v: &[f32]) -> [f32; 2] {
    const LANES: usize = 8;
    let n = v.len().min(gx.len()).min(gy.len());
    let (gx, gy, v) = (&gx[..n], &gy[..n], &v[..n]);
    let (mut sx, mut sy) = ([0f32; LANES], [0f32; LANES]);
    let (mut cx, mut cy, mut cv) = (
        gx.chunks_exact(LANES),
        gy.chunks_exact(LANES),
        v.chunks_exact(LANES),
    );
    for ((x, y), w) in cx.by_ref().zip(cy.by_ref()).zip(cv.by_ref()) {
        for l in 0..LANES {
            sx[l] += x[l] * w[l];
            sy[l] += y[l] * w[l];
        }
    }
    let (mut tx, mut ty) = (0f32, 0f32);
    for ((x, y), w) in cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .zip(cv.remainder())
    {
        tx += x * w;
        ty += y * w;
    }
    [sx.iter().sum::<f32>() + tx, sy.iter().sum::<f32>() + ty]
}

const IDENTITY: [[f32; 2]; 2] = [[1.0, 0.0], [0.0, 1.0]];

impl Template {
    /// The reference window of the point at `origin` (level-0 pixels) of `reference`; `None` when the
    /// level-0 window is too flat to track.
    pub fn new(reference: &Pyramid, origin: [f32; 2], params: &TrackParams) -> Option<Self> {
        let mut levels = Vec::with_capacity(reference.len());
        for (l, img) in reference.levels().iter().enumerate() {
            let s = 1.0 / (1u32 << l) as f32;
            let centre = [origin[0] * s, origin[1] * s];
            levels.push(
                window_at(
                    img,
                    centre,
                    IDENTITY,
                    params.window_radius,
                    params.min_eigen,
                )
                .map(|(w, _)| w),
            );
        }
        levels
            .first()
            .is_some_and(Option::is_some)
            .then_some(Self { levels })
    }
}

/// Most samples a window has on the stack (radius 7; the default is 5): larger windows, up to
/// the radius 15 that [`super::ClassicParams`] allows, go on the heap.
const STACK_WINDOW: usize = 15 * 15;

/// sum g(d) J(p + A d) over the window.
#[inline]
fn warped_dot(
    img: &GrayImage,
    win: &LevelWindow,
    p: [f32; 2],
    a: [[f32; 2]; 2],
    radius: usize,
) -> [f32; 2] {
    let inner = 2 * radius + 1;
    let n = inner * inner;
    let mut stack = [0f32; STACK_WINDOW];
    let mut heap = Vec::new();
    let vals: &mut [f32] = if n <= STACK_WINDOW {
        &mut stack[..n]
    } else {
        heap.resize(n, 0.0);
        &mut heap
    };
    img.sample_window(p, a, radius, vals);
    dot_window(&win.gx, &win.gy, vals)
}

/// Iterates the LK update at one level from `p`; `None` if it diverges (non-finite or far off the image).
fn iterate_level(
    img: &GrayImage,
    win: &LevelWindow,
    mut p: [f32; 2],
    step_map: [[f32; 2]; 2],
    sample_map: [[f32; 2]; 2],
    params: &TrackParams,
) -> Option<[f32; 2]> {
    let limit_x = 2.0 * img.width() as f32;
    let limit_y = 2.0 * img.height() as f32;
    for _ in 0..params.max_iterations.max(1) {
        let s = warped_dot(img, win, p, sample_map, params.window_radius);
        let bx = win.c0[0] - s[0];
        let by = win.c0[1] - s[1];
        let ux = win.inv[0] * bx + win.inv[1] * by;
        let uy = win.inv[1] * bx + win.inv[2] * by;
        let dx = step_map[0][0] * ux + step_map[0][1] * uy;
        let dy = step_map[1][0] * ux + step_map[1][1] * uy;
        p = [p[0] + dx, p[1] + dy];
        if !(p[0].is_finite() && p[1].is_finite()) || p[0].abs() > limit_x || p[1].abs() > limit_y {
            return None;
        }
        if dx * dx + dy * dy < params.epsilon * params.epsilon {
            break;
        }
    }
    Some(p)
}

/// Tracks one point's template into `target`, coarse to fine from `guess` (level-0 pixels), with the
/// window pre-warped by `a`. Returns the level-0 position.
fn track_forward(
    template: &Template,
    target: &Pyramid,
    guess: [f32; 2],
    a: [[f32; 2]; 2],
    params: &TrackParams,
) -> Option<[f32; 2]> {
    let top = template.levels.len().min(target.len()).checked_sub(1)?;
    let s = 1.0 / (1u32 << top) as f32;
    let mut p = [guess[0] * s, guess[1] * s];
    for l in (0..=top).rev() {
        if l < top {
            p = [2.0 * p[0], 2.0 * p[1]];
        }
        let (Some(Some(win)), Some(img)) = (template.levels.get(l), target.levels().get(l)) else {
            continue;
        };
        p = iterate_level(img, win, p, a, a, params)?;
    }
    Some(p)
}

/// Tracks the target window at `position` (pre-warped by `a`) back into the reference, starting from
/// `guess`. Returns the level-0 position in the reference.
fn track_backward(
    reference: &Pyramid,
    target: &Pyramid,
    position: [f32; 2],
    guess: [f32; 2],
    a: [[f32; 2]; 2],
    params: &TrackParams,
) -> Option<[f32; 2]> {
    let top = reference.len().min(target.len()).checked_sub(1)?;
    let s = 1.0 / (1u32 << top) as f32;
    let mut q = [guess[0] * s, guess[1] * s];
    for l in (0..=top).rev() {
        if l < top {
            q = [2.0 * q[0], 2.0 * q[1]];
        }
        let (Some(ref_img), Some(tgt_img)) = (reference.levels().get(l), target.levels().get(l))
        else {
            continue;
        };
        let sl = 1.0 / (1u32 << l) as f32;
        let centre = [position[0] * sl, position[1] * sl];
        match window_at(tgt_img, centre, a, params.window_radius, params.min_eigen) {
            Some((win, _)) => q = iterate_level(ref_img, &win, q, IDENTITY, IDENTITY, params)?,
            None if l == 0 => return None,
            None => {}
        }
    }
    Some(q)
}

/// What to track for one point.
#[derive(Debug, Clone, Copy)]
pub struct TrackRequest<'a> {
    /// The point's reference windows.
    pub template: &'a Template,
    /// The point in the reference frame (level-0 pixels).
    pub origin: [f32; 2],
    /// Where it is expected in the target frame.
    pub guess: [f32; 2],
    /// The expected local Jacobian of the reference-to-target motion at the point (row-major).
    pub jacobian: [[f32; 2]; 2],
}

/// A point found in the target frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Track {
    /// Where the point is in the target frame (level-0 pixels).
    pub position: [f32; 2],
    /// Distance between the origin and where the target window tracks back to (level-0 pixels).
    pub fb_error: f32,
}

/// Tracks each request from `reference` into `target`: `Some` for points that converged, stayed inside
/// the target frame and passed the forward-backward check. Runs in parallel over points.
pub fn track(
    reference: &Pyramid,
    target: &Pyramid,
    requests: &[TrackRequest<'_>],
    params: &TrackParams,
) -> Vec<Option<Track>> {
    requests
        .par_iter()
        .map(|req| track_one(reference, target, req, params))
        .collect()
}

fn track_one(
    reference: &Pyramid,
    target: &Pyramid,
    req: &TrackRequest<'_>,
    params: &TrackParams,
) -> Option<Track> {
    let a = sanitize_jacobian(req.jacobian);
    let p = track_forward(req.template, target, req.guess, a, params)?;
    let base = target.base();
    let inside = |v: f32, n: usize| (0.0..=(n - 1) as f32).contains(&v);
    if !(inside(p[0], base.width()) && inside(p[1], base.height())) {
        return None;
    }
    // Start the backward pass where the prior motion maps the forward result back, so that a point that
    // moved as predicted starts at its origin; its own pyramid search must then bring it home.
    let inv = invert(a)?;
    let off = [p[0] - req.guess[0], p[1] - req.guess[1]];
    let back_guess = [
        req.origin[0] + inv[0][0] * off[0] + inv[0][1] * off[1],
        req.origin[1] + inv[1][0] * off[0] + inv[1][1] * off[1],
    ];
    let q = track_backward(reference, target, p, back_guess, a, params)?;
    let fb_error = ((q[0] - req.origin[0]).powi(2) + (q[1] - req.origin[1]).powi(2)).sqrt();
    (fb_error <= params.fb_threshold).then_some(Track {
        position: p,
        fb_error,
    })
}

/// The Jacobian to pre-warp windows with: identity unless finite with singular values in [1/3, 3]
/// (a face does not shrink or grow threefold between two frames of a webcam).
fn sanitize_jacobian(a: [[f32; 2]; 2]) -> [[f32; 2]; 2] {
    let finite = a.iter().flatten().all(|v| v.is_finite());
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    let frob2: f32 = a.iter().flatten().map(|v| v * v).sum();
    // Singular values s1, s2: s1 s2 = |det|, s1^2 + s2^2 = frob2.
    let ok = finite && det > 0.0 && {
        let disc = (frob2 * frob2 - 4.0 * det * det).max(0.0).sqrt();
        let s_max = (0.5 * (frob2 + disc)).sqrt();
        let s_min = det / s_max.max(f32::MIN_POSITIVE);
        s_max <= 3.0 && s_min >= 1.0 / 3.0
    };
    if ok { a } else { IDENTITY }
}

fn invert(a: [[f32; 2]; 2]) -> Option<[[f32; 2]; 2]> {
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    if !(det.is_finite() && det.abs() > 1e-12) {
        return None;
    }
    Some([
        [a[1][1] / det, -a[0][1] / det],
        [-a[1][0] / det, a[0][0] / det],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth random-ish texture: a sum of sinusoids.
    fn texture(w: usize, h: usize, shift: [f32; 2]) -> GrayImage {
        let data = (0..w * h)
            .map(|i| {
                let x = (i % w) as f32 - shift[0];
                let y = (i / w) as f32 - shift[1];
                0.5 + 0.2 * (0.31 * x + 0.17 * y).sin()
                    + 0.15 * (0.11 * x - 0.29 * y).cos()
                    + 0.1 * (0.05 * x * 0.9 + 0.23 * y).sin()
            })
            .collect();
        GrayImage::from_vec(w, h, data).unwrap()
    }

    #[test]
    fn recovers_a_subpixel_shift_of_a_smooth_texture() {
        let params = TrackParams {
            window_radius: 5,
            max_iterations: 20,
            epsilon: 1e-4,
            fb_threshold: 0.5,
            min_eigen: 1e-6,
        };
        let reference = Pyramid::build(texture(96, 96, [0.0, 0.0]), 3);
        let target = Pyramid::build(texture(96, 96, [3.3, -2.6]), 3);
        let origin = [48.0, 40.0];
        let template = Template::new(&reference, origin, &params).unwrap();
        let req = TrackRequest {
            template: &template,
            origin,
            guess: origin,
            jacobian: IDENTITY,
        };
        let t = track(&reference, &target, &[req], &params)[0].unwrap();
        assert!((t.position[0] - 51.3).abs() < 0.05, "{t:?}");
        assert!((t.position[1] - 37.4).abs() < 0.05, "{t:?}");
    }
}
