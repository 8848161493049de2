//! A smooth dense motion from K local maps (affine, or with second-order terms: [`LocalMap`]), and the
//! sampling grid that warps the portrait with it.
//!
//! `T(z) = z + sum_k w_k(z) (M_k(z) - z)`, with `M_k` the local map of anchor k and
//! `w_k(z) = g_k(z) / (S(z)^4 + c^4)^(1/4)`, `g_k(z) = exp(-|z - centre_k|^2 / (2 sigma^2))`, `S = sum_k g_k`.
//! Where the anchors cover the image (S >> c) the weights sum to 1, so a motion that is the same affine
//! map at every anchor is reproduced exactly; far from all anchors (S << c) the weights vanish and T falls
//! back to the identity. FOMM's dense motion blends its local motions with a network-predicted softmax
//! mask that includes a background (identity) channel (dense_motion.py); this is a fixed, weight-free
//! stand-in with the same two properties.

use rayon::prelude::*;

use super::maps::Affine;
use super::maps::LocalMap;

/// K local maps blended by Gaussian weights around their centres, falling back to the identity.
#[derive(Debug, Clone)]
pub struct Blend {
    maps: Vec<LocalMap>,
    inv_two_sigma2: f64,
    falloff4: f64,
}

impl Blend {
    /// `locals`: (centre, map) pairs; `sigma`: Gaussian radius (pixels); `falloff`: the value `c` of the
    /// summed Gaussian weight below which the motion fades to the identity (0 = never).
    pub fn new(locals: Vec<([f64; 2], Affine)>, sigma: f64, falloff: f64) -> Self {
        Self::from_maps(
            locals
                .into_iter()
                .map(|(c, m)| LocalMap::affine(c, m))
                .collect(),
            sigma,
            falloff,
        )
    }

    /// As [`Blend::new`] for maps with second-order terms, each weighted around its own centre.
    pub fn from_maps(maps: Vec<LocalMap>, sigma: f64, falloff: f64) -> Self {
        let maps = maps.into_iter().filter(LocalMap::is_finite).collect();
        let sigma = if sigma.is_finite() && sigma > 0.0 {
            sigma
        } else {
            1.0
        };
        let falloff = if falloff.is_finite() {
            falloff.max(0.0)
        } else {
            0.0
        };
        Self {
            maps,
            inv_two_sigma2: 1.0 / (2.0 * sigma * sigma),
            falloff4: falloff.powi(4),
        }
    }

    /// The unnormalised Gaussian weights `g_k(z)` into `out` (one per map); returns their sum.
    #[inline]
    fn gaussians(&self, z: [f64; 2], out: &mut Vec<f64>) -> f64 {
        out.clear();
        out.extend(self.maps.iter().map(|m| {
            let d2 = (z[0] - m.centre[0]).powi(2) + (z[1] - m.centre[1]).powi(2);
            (-d2 * self.inv_two_sigma2).exp()
        }));
        out.iter().sum()
    }

    /// `1 / (S^4 + c^4)^(1/4)` for weights summing to `sum`: what turns Gaussians into weights;
    /// `None` where it is not finite (no map near, and no falloff).
    #[inline]
    fn normaliser(&self, sum: f64) -> Option<f64> {
        let denom = (sum.powi(4) + self.falloff4).sqrt().sqrt();
        (denom > 0.0 && denom.is_finite()).then(|| 1.0 / denom)
    }

    /// Normalised weights at `z` into `out` (one per map).
    #[inline]
    fn weights(&self, z: [f64; 2], out: &mut Vec<f64>) {
        match self.normaliser(self.gaussians(z, out)) {
            Some(inv) => out.iter_mut().for_each(|w| *w *= inv),
            None => out.iter_mut().for_each(|w| *w = 0.0),
        }
    }

    /// T(z).
    pub fn apply(&self, z: [f64; 2]) -> [f64; 2] {
        let mut g = Vec::with_capacity(self.maps.len());
        let sum = self.gaussians(z, &mut g);
        self.blend_at(z, &g, sum)
    }

    /// T at every node of the grid `xs` x `ys`, row by row (`ys` outer), as [`Blend::apply`] gives
    /// it up to rounding: a Gaussian weight is the product of a factor of x and a factor of y, so
    /// the exponentials are taken once per map and coordinate instead of once per map and node
    /// (36 maps on a 65 x 65 grid: 4,680 instead of 152,100). Rows in parallel.
    pub fn apply_grid(&self, xs: &[f64], ys: &[f64]) -> Vec<[f64; 2]> {
        let factors = |coords: &[f64], axis: usize| -> Vec<f64> {
            self.maps
                .iter()
                .flat_map(|m| {
                    coords
                        .iter()
                        .map(move |v| (-(v - m.centre[axis]).powi(2) * self.inv_two_sigma2).exp())
                })
                .collect()
        };
        let (fx, fy) = (factors(xs, 0), factors(ys, 1));
        let (nx, ny) = (xs.len(), ys.len());
        ys.par_iter()
            .enumerate()
            .flat_map_iter(|(j, &y)| {
                let mut g = vec![0f64; self.maps.len()];
                let (fx, fy) = (&fx, &fy);
                xs.iter().enumerate().map(move |(i, &x)| {
                    let z = [x, y];
                    let mut sum = 0f64;
                    for (k, gk) in g.iter_mut().enumerate() {
                        *gk = fx.get(k * nx + i).copied().unwrap_or(0.0)
                            * fy.get(k * ny + j).copied().unwrap_or(0.0);
                        sum += *gk;
                    }
                    self.blend_at(z, &g, sum)
                })
            })
            .collect()
    }

    /// `z + sum_k w_k (M_k(z) - z)` with the weights `g` (unnormalised Gaussians) summing to `sum`.
    #[inline]
    fn blend_at(&self, z: [f64; 2], g: &[f64], sum: f64) -> [f64; 2] {
        let Some(inv) = self.normaliser(sum) else {
            return z;
        };
        let mut out = z;
        for (gk, m) in g.iter().zip(&self.maps) {
            let p = m.apply(z);
            let wk = gk * inv;
            out[0] += wk * (p[0] - z[0]);
            out[1] += wk * (p[1] - z[1]);
        }
        out
    }

    /// The blend of the maps' derivatives at z, `I + sum_k w_k (DM_k(z) - I)` (the Jacobian of T without
    /// the weights' own gradients): the local Jacobian used to pre-warp tracking windows.
    pub fn linear_part(&self, z: [f64; 2]) -> [[f64; 2]; 2] {
        let mut w = Vec::with_capacity(self.maps.len());
        self.weights(z, &mut w);
        let mut a = [[1.0, 0.0], [0.0, 1.0]];
        for (wk, m) in w.iter().zip(&self.maps) {
            let j = m.jacobian(z);
            for (r, row) in a.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    let id = if r == c { 1.0 } else { 0.0 };
                    *v += wk * (j[r][c] - id);
                }
            }
        }
        a
    }
}

/// The (Ho, Wo, 2) grid for `grid_sample` (align_corners = true): for each output pixel z, T(z) in the
/// source image's normalised coordinates ([-1, 1], -1 and 1 the centres of the border pixels).
/// T is evaluated exactly on every `stride`-th row and column (and the last ones) and interpolated
/// bilinearly in between, which is exact for an affine T and far below a pixel for the smooth blends
/// used here (anchor spacing >> stride).
pub fn sampling_grid(
    blend: &Blend,
    out_size: (usize, usize),
    src_size: (usize, usize),
    stride: usize,
) -> Vec<f32> {
    let (ho, wo) = out_size;
    let (hs, ws) = src_size;
    if ho == 0 || wo == 0 {
        return Vec::new();
    }
    let nodes = |n: usize| {
        let mut v: Vec<usize> = (0..n).step_by(stride.max(1)).collect();
        if v.last() != Some(&(n - 1)) {
            v.push(n - 1);
        }
        v
    };
    let (ny, nx) = (nodes(ho), nodes(wo));
    let to_f64 = |v: &[usize]| v.iter().map(|&i| i as f64).collect::<Vec<_>>();
    let coarse = blend.apply_grid(&to_f64(&nx), &to_f64(&ny));
    // For each output column/row: the coarse interval it falls in and the fraction along it.
    let interval = |nodes: &[usize], n: usize| -> Vec<(usize, f64)> {
        let mut out = Vec::with_capacity(n);
        let mut k = 0;
        for i in 0..n {
            while k + 2 < nodes.len() && nodes.get(k + 1).is_some_and(|&b| b <= i) {
                k += 1;
            }
            let a = nodes.get(k).copied().unwrap_or(0);
            let b = nodes.get(k + 1).copied().unwrap_or(a);
            let f = if b > a {
                (i - a) as f64 / (b - a) as f64
            } else {
                0.0
            };
            out.push((k, f));
        }
        out
    };
    let (iy, ix) = (interval(&ny, ho), interval(&nx, wo));
    let sx = if ws > 1 { 2.0 / (ws - 1) as f64 } else { 0.0 };
    let sy = if hs > 1 { 2.0 / (hs - 1) as f64 } else { 0.0 };
    let cols = nx.len();
    let node = |r: usize, c: usize| coarse.get(r * cols + c).copied().unwrap_or([0.0, 0.0]);
    let mut grid = vec![0f32; ho * wo * 2];
    grid.par_chunks_mut(wo * 2)
        .zip(iy.par_iter())
        .for_each(|(row, &(ky, fy))| {
            let single_row = ny.len() < 2;
            for (px, &(kx, fx)) in row.chunks_exact_mut(2).zip(&ix) {
                let single_col = nx.len() < 2;
                let c00 = node(ky, kx);
                let c01 = if single_col { c00 } else { node(ky, kx + 1) };
                let (c10, c11) = if single_row {
                    (c00, c01)
                } else {
                    (
                        node(ky + 1, kx),
                        if single_col {
                            node(ky + 1, kx)
                        } else {
                            node(ky + 1, kx + 1)
                        },
                    )
                };
                for (d, out) in px.iter_mut().enumerate() {
                    let top = c00[d] + fx * (c01[d] - c00[d]);
                    let bottom = c10[d] + fx * (c11[d] - c10[d]);
                    let v = top + fy * (bottom - top);
                    let s = if d == 0 { sx } else { sy };
                    let g = v * s - 1.0;
                    *out = if g.is_finite() { g as f32 } else { -2.0 };
                }
            }
        });
    grid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(deg: f64, centre: [f64; 2], shift: [f64; 2]) -> Affine {
        let (s, c) = deg.to_radians().sin_cos();
        let a = [[c, -s], [s, c]];
        let b = [
            centre[0] - (a[0][0] * centre[0] + a[0][1] * centre[1]) + shift[0],
            centre[1] - (a[1][0] * centre[0] + a[1][1] * centre[1]) + shift[1],
        ];
        Affine { a, b }
    }

    #[test]
    fn one_affine_everywhere_is_reproduced_inside_and_fades_outside() {
        let m = rotation(8.0, [50.0, 50.0], [3.0, -2.0]);
        let locals = (0..3)
            .flat_map(|r| {
                (0..3).map(move |c| ([30.0 + 20.0 * c as f64, 30.0 + 20.0 * r as f64], m))
            })
            .collect();
        let blend = Blend::new(locals, 20.0, 0.1);
        let z = [47.0, 55.0];
        let (t, want) = (blend.apply(z), m.apply(z));
        assert!((t[0] - want[0]).abs() < 1e-6 && (t[1] - want[1]).abs() < 1e-6);
        let far = [500.0, -400.0];
        let t = blend.apply(far);
        assert!((t[0] - far[0]).abs() < 1e-9 && (t[1] - far[1]).abs() < 1e-9);
    }

    #[test]
    fn local_map_jacobian_is_its_derivative() {
        let m = LocalMap {
            centre: [40.0, 60.0],
            affine: rotation(-7.0, [50.0, 50.0], [2.0, 1.0]),
            q: [[0.002, -0.001, 0.0005], [-0.0015, 0.003, 0.001]],
        };
        let z = [71.0, 38.0];
        let j = m.jacobian(z);
        let h = 1e-4;
        for c in 0..2 {
            let mut zp = z;
            let mut zm = z;
            zp[c] += h;
            zm[c] -= h;
            let (p, q) = (m.apply(zp), m.apply(zm));
            for r in 0..2 {
                let numeric = (p[r] - q[r]) / (2.0 * h);
                assert!(
                    (numeric - j[r][c]).abs() < 1e-8,
                    "{r}{c}: {numeric} vs {}",
                    j[r][c]
                );
            }
        }
        // At the centre the second-order terms vanish.
        let (at, want) = (m.apply(m.centre), m.affine.apply(m.centre));
        assert!((at[0] - want[0]).abs() < 1e-12 && (at[1] - want[1]).abs() < 1e-12);
    }

    #[test]
    fn identity_grid_is_the_pixel_grid() {
        let blend = Blend::new(vec![([10.0, 10.0], Affine::IDENTITY)], 5.0, 0.1);
        let grid = sampling_grid(&blend, (7, 9), (7, 9), 4);
        for y in 0..7 {
            for x in 0..9 {
                let i = 2 * (y * 9 + x);
                assert!((grid[i] - (x as f32 / 4.0 - 1.0)).abs() < 1e-7);
                assert!((grid[i + 1] - (y as f32 / 3.0 - 1.0)).abs() < 1e-7);
            }
        }
    }

    /// The grid's separable weights give T as the node-by-node blend does: different maps per
    /// anchor, second-order terms, nodes near and far from the anchors.
    #[test]
    fn apply_grid_is_apply_at_every_node() {
        let maps: Vec<LocalMap> = (0..4)
            .flat_map(|r| {
                (0..3).map(move |c| {
                    let centre = [20.0 + 30.0 * c as f64, 15.0 + 25.0 * r as f64];
                    let mut m = LocalMap::affine(
                        centre,
                        rotation(3.0 * (r * 3 + c) as f64, centre, [c as f64, -(r as f64)]),
                    );
                    m.q = [
                        [1e-3 * r as f64, -2e-3, 5e-4],
                        [0.0, 1e-3 * c as f64, -1e-3],
                    ];
                    m
                })
            })
            .collect();
        let blend = Blend::from_maps(maps, 18.0, 0.2);
        let xs: Vec<f64> = (0..9).map(|i| -40.0 + 20.0 * i as f64).collect();
        let ys: Vec<f64> = (0..7).map(|j| -30.0 + 25.0 * j as f64).collect();
        let grid = blend.apply_grid(&xs, &ys);
        assert_eq!(grid.len(), xs.len() * ys.len());
        for (j, &y) in ys.iter().enumerate() {
            for (i, &x) in xs.iter().enumerate() {
                let (got, want) = (grid[j * xs.len() + i], blend.apply([x, y]));
                for d in 0..2 {
                    assert!(
                        (got[d] - want[d]).abs() <= 1e-9 * want[d].abs().max(1.0),
                        "node ({x}, {y}): {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
