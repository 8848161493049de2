//! Coordinate grids and keypoint Gaussians of `modules/util.py` (`make_coordinate_grid`,
//! `kp2gaussian`).

use candle_core::{Device, Result, Tensor};

/// `make_coordinate_grid((h, w))`: (h, w, 2) with [..., 0] = x in [-1, 1] along the width and
/// [..., 1] = y along the height; -1 and +1 are the centres of the first and last pixel.
/// Computed in f32 in the same order as the original: `2 * (i / (n - 1)) - 1`.
pub fn coordinate_grid_values(h: usize, w: usize) -> Vec<f32> {
    let axis = |n: usize| -> Vec<f32> {
        let d = (n.max(2) - 1) as f32;
        (0..n)
            .map(|i| {
                if n == 1 {
                    -1.0
                } else {
                    2.0 * (i as f32 / d) - 1.0
                }
            })
            .collect()
    };
    let xs = axis(w);
    let ys = axis(h);
    let mut out = Vec::with_capacity(h * w * 2);
    for y in &ys {
        for x in &xs {
            out.push(*x);
            out.push(*y);
        }
    }
    out
}

/// `make_coordinate_grid` as a (h, w, 2) f32 tensor.
pub fn make_coordinate_grid(h: usize, w: usize, device: &Device) -> Result<Tensor> {
    Tensor::from_vec(coordinate_grid_values(h, w), (h, w, 2), device)
}

/// `kp2gaussian(kp, (h, w), kp_variance)`: for keypoints `value` (B, K, 2) returns (B, K, h, w)
/// with exp(-0.5 * |z - kp|^2 / variance).
pub fn kp2gaussian(value: &Tensor, h: usize, w: usize, kp_variance: f64) -> Result<Tensor> {
    let (b, k, _) = value.dims3()?;
    let grid = make_coordinate_grid(h, w, value.device())?.reshape((1, 1, h, w, 2))?;
    let mean = value.reshape((b, k, 1, 1, 2))?;
    let diff = grid.broadcast_sub(&mean)?;
    let sq = diff.sqr()?.sum(4)?;
    ((sq * -0.5)? / kp_variance)?.exp()
}
