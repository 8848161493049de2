//! FOMM's `UpBlock2d` convolution: nearest 2x upsampling followed by a 3x3 / padding 1
//! convolution, computed on the low-resolution map without making the upsampled one, at f32 or
//! bf16.
//!
//! On a nearest-upsampled map, output pixel `(2i + a, 2j + b)` (phase `(a, b)`) sees only a 2x2
//! window of the low-resolution input: along one axis, phase 0 reads rows `i - 1, i` with the
//! taps `(w0, w1 + w2)` and phase 1 rows `i, i + 1` with `(w0 + w1, w2)` (zero padding of the
//! big map is zero padding of the small one). Each phase is a 2x2 convolution, computed with
//! Winograd F(2x2, 2x2) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! CVPR 2016, arXiv:1509.09308, section 4; the 1-D F(2, 2) from points 0, -1 and infinity):
//!
//! ```text
//! d = (d0, d1, d2), g = (g0, g1):   V = (d0 - d1, d1, d2 - d1),   U = (g0, g0 + g1, g1),
//! y0 = m0 + m1,  y1 = m1 + m2   with  m = U (.) V
//! ```
//!
//! For a 2x2 tile of low-resolution positions the two row phases read the four rows
//! `2ty - 1 .. 2ty + 2`, so one 4x4 window of the input gives all 36 transformed values (6 per
//! axis: 3 per phase); the weights fold the phase taps into `U` in f64. Per output pixel that is
//! 36 / 16 = 2.25 products instead of the 4 of F(2x2, 3x3) on the upsampled map (1.78x fewer)
//! and 9 of a direct convolution, and the activations only ever meet `+-1`, so the rounding of
//! `V` to bf16 costs no more than in [`super::winograd_bf16`].
//!
//! The 36 products `M_k = U_k V_k` run on `gemm` at f32 (the transforms add and subtract only, so
//! the result is as close to the direct convolution as the 3x3 Winograd path's) or on the bf16
//! kernel of [`super::bf16`] with `V` rounded to bf16. Large maps are cut
//! into bands of whole tile rows, one rayon job each (input transform, products, output
//! transform on one core, like [`super::winograd`]); small ones run as one band with the 36
//! products in parallel.

use rayon::prelude::*;

use super::bf16::{self, LANES, PackedA, pair};
use super::plan::{Schedule, UP_MIN_TILES, band_rows};
use super::scratch::{OutPtr, with_pairs, with_values};
use super::winograd::gemm1;
use super::{ConvError, err};
use crate::ops::precision::Precision;

/// Transformed values per tile: 6 per axis (two phases of 3).
const K: usize = super::plan::UP_VALUES;

/// The folded phase taps followed by F(2, 2)'s weight transform, per phase: `T_a = G R_a` with
/// `R_0 = [[1, 0, 0], [0, 1, 1]]` and `R_1 = [[1, 1, 0], [0, 0, 1]]` (the taps phase `a` applies
/// to the rows it reads) and `G = [[1, 0], [1, 1], [0, 1]]`. Rows 0-2: phase 0, rows 3-5: phase 1.
const T: [[f64; 3]; 6] = [
    [1.0, 0.0, 0.0],
    [1.0, 1.0, 1.0],
    [0.0, 1.0, 1.0],
    [1.0, 1.0, 0.0],
    [1.0, 1.0, 1.0],
    [0.0, 0.0, 1.0],
];

/// Nearest 2x upsampling and a 3x3 / padding 1 convolution, weights prepared once.
#[derive(Debug, Clone)]
pub struct UpConv {
    u: Weights,
    bias: Vec<f32>,
    c_out: usize,
    c_in: usize,
}

/// The transformed weights `U_k`, (Cout, Cin) each, for the chosen precision.
#[derive(Debug, Clone)]
enum Weights {
    /// f32, (36, Cout, Cin) row-major.
    F32(Vec<f32>),
    /// One packed bf16 matrix per k.
    Bf16(Vec<PackedA>),
}

impl UpConv {
    /// Prepares the layer from its (Cout, Cin, 3, 3) weight `g` and its bias, for products at
    /// `precision`.
    pub fn new(
        g: &[f32],
        c_out: usize,
        c_in: usize,
        bias: &[f32],
        precision: Precision,
    ) -> candle_core::Result<Self> {
        if g.len() != c_out * c_in * 9 || bias.len() != c_out || c_out == 0 || c_in == 0 {
            return Err(err(ConvError::Internal(
                "upsampling convolution weights do not match their shape",
            )));
        }
        // U[k] for k = 6 ri + ci, ri / ci = 3 * phase + index, in f64, rounded once.
        let mut u = vec![0f32; K * c_out * c_in];
        for (oc, filter) in g.chunks_exact(9).enumerate() {
            let f = |p: usize, q: usize| f64::from(filter[3 * p + q]);
            for (ri, tr) in T.iter().enumerate() {
                for (ci, tc) in T.iter().enumerate() {
                    let mut s = 0.0;
                    for (p, &tp) in tr.iter().enumerate() {
                        for (q, &tq) in tc.iter().enumerate() {
                            s += tp * f(p, q) * tq;
                        }
                    }
                    u[(6 * ri + ci) * c_out * c_in + oc] = s as f32;
                }
            }
        }
        let u = match precision {
            Precision::F32 => Weights::F32(u),
            Precision::Bf16 => Weights::Bf16(
                u.chunks_exact(c_out * c_in)
                    .map(|uk| PackedA::new(c_out, c_in, |r, c| uk[r * c_in + c]))
                    .collect(),
            ),
        };
        Ok(Self {
            u,
            bias: bias.to_vec(),
            c_out,
            c_in,
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.c_out
    }

    /// Whether this layer takes a map of `h x w` (smaller ones suit the plain path better: their
    /// products would be mostly padding).
    pub fn suits(h: usize, w: usize) -> bool {
        h.div_ceil(2) * w.div_ceil(2) >= UP_MIN_TILES
    }

    /// Upsamples `data` (N, Cin, h, w) by 2 and convolves it: (N, Cout, 2h, 2w). `schedule`:
    /// bands of about that many tiles as parallel jobs, or one band per image with its products
    /// in parallel ([`Schedule::Whole`] or [`Schedule::Single`]).
    pub fn forward(
        &self,
        data: &[f32],
        (n, h, w): (usize, usize, usize),
        schedule: Schedule,
    ) -> candle_core::Result<Vec<f32>> {
        let (c_in, c_out) = (self.c_in, self.c_out);
        if data.len() != n * c_in * h * w {
            return Err(err(ConvError::Internal(
                "upsampling convolution input does not match its shape",
            )));
        }
        let (ho, wo) = (2 * h, 2 * w);
        let mut out = vec![0f32; n * c_out * ho * wo];
        if n == 0 || h == 0 || w == 0 {
            return Ok(out);
        }
        let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
        let (small, band_rows) = match schedule {
            Schedule::Bands(band_tiles) => (false, band_rows(n, th, tw, band_tiles)),
            Schedule::Whole | Schedule::Single => (true, th),
        };
        let bands = th.div_ceil(band_rows);
        let out_ptr = OutPtr(out.as_mut_ptr());
        let job = |job: usize| -> candle_core::Result<()> {
            let (img, band) = (job / bands, job % bands);
            let ty0 = band * band_rows;
            let ty1 = (ty0 + band_rows).min(th);
            let nt = (ty1 - ty0) * tw;
            let img_data = &data[img * c_in * h * w..(img + 1) * c_in * h * w];
            let tiles = Tiles {
                hw: (h, w),
                rows: (ty0, ty1),
            };
            // Output rows 4 ty0 .. min(4 ty1, ho) of every channel of this image.
            let (y0, y1) = (4 * ty0, (4 * ty1).min(ho));
            let emit = |m: &[f32], ld: usize| {
                let write = |co: usize| {
                    let off = ((img * c_out + co) * ho + y0) * wo;
                    // SAFETY: `img < n`, `co < c_out`, `y1 <= ho`: the slice lies inside
                    // `out` (n * c_out * ho * wo values), which outlives the jobs and is
                    // not otherwise touched meanwhile. Jobs cover disjoint (image, row
                    // range) pairs and each (job, co) builds its slice once, so no two
                    // live mutable slices overlap.
                    let rows = unsafe {
                        std::slice::from_raw_parts_mut(out_ptr.get().add(off), (y1 - y0) * wo)
                    };
                    output_transform(m, (c_out, co, ld), self.bias[co], (ty0, ty1, tw), wo, rows);
                };
                if small {
                    (0..c_out).into_par_iter().for_each(write);
                } else {
                    (0..c_out).for_each(write);
                }
            };
            match &self.u {
                Weights::F32(u) => {
                    let ld = nt;
                    with_values(K * (c_in + c_out) * ld, |buf| {
                        let (v, m) = buf.split_at_mut(K * c_in * ld);
                        input_transform_f32(img_data, c_in, &tiles, v);
                        let product = |((uk, vk), mk): ((&[f32], &[f32]), &mut [f32])| {
                            gemm1(uk, vk, mk, c_out, c_in, ld)
                        };
                        if small {
                            u.par_chunks_exact(c_out * c_in)
                                .zip(v.par_chunks_exact(c_in * ld))
                                .zip(m.par_chunks_exact_mut(c_out * ld))
                                .try_for_each(product)?;
                        } else {
                            u.chunks_exact(c_out * c_in)
                                .zip(v.chunks_exact(c_in * ld))
                                .zip(m.chunks_exact_mut(c_out * ld))
                                .try_for_each(product)?;
                        }
                        emit(m, ld);
                        Ok(())
                    })
                }
                Weights::Bf16(u) => {
                    let ld = nt.div_ceil(LANES) * LANES;
                    let kp = c_in.div_ceil(2);
                    with_pairs(K * kp * ld, |vb| {
                        input_transform_pairs(img_data, c_in, &tiles, ld, vb);
                        with_values(K * c_out * ld, |m| {
                            let product = |(k, (uk, mk)): (usize, (&PackedA, &mut [f32]))| {
                                let vk = &vb[k * kp * ld..(k + 1) * kp * ld];
                                bf16::gemm(uk, 0..uk.row_blocks(), vk, ld, mk, ld, ld)
                            };
                            if small {
                                u.par_iter()
                                    .zip(m.par_chunks_mut(c_out * ld))
                                    .enumerate()
                                    .try_for_each(product)?;
                            } else {
                                u.iter()
                                    .zip(m.chunks_mut(c_out * ld))
                                    .enumerate()
                                    .try_for_each(product)?;
                            }
                            emit(m, ld);
                            Ok(())
                        })
                    })
                }
            }
        };
        if small {
            (0..n * bands).try_for_each(job)?;
        } else {
            (0..n * bands).into_par_iter().try_for_each(job)?;
        }
        Ok(out)
    }
}

/// Tile rows `rows.0 .. rows.1` of an image of `hw` (height, width) low-resolution pixels.
struct Tiles {
    hw: (usize, usize),
    rows: (usize, usize),
}

/// The input transform of one channel: for each tile row of `tiles`, the 36 transformed values
/// of every tile, passed to `store(ty, values)` as (36, tw).
fn transform_channel(plane: &[f32], tiles: &Tiles, mut store: impl FnMut(usize, &[f32])) {
    let (h, w) = tiles.hw;
    let tw = w.div_ceil(2);
    // The rows of one tile row, padded: columns -1 .. 2 tw + 1 (width 2 tw + 2).
    let wp = 2 * tw + 2;
    let mut d = vec![0f32; 4 * wp];
    let mut r = vec![0f32; 6 * wp];
    let mut dst = vec![0f32; K * tw];
    for ty in tiles.rows.0..tiles.rows.1 {
        // Rows 2 ty - 1 .. 2 ty + 2, zero outside the map.
        for (i, row) in d.chunks_exact_mut(wp).enumerate() {
            row.fill(0.0);
            let y = (2 * ty + i).wrapping_sub(1);
            if y < h {
                row[1..=w].copy_from_slice(&plane[y * w..(y + 1) * w]);
            }
        }
        // Along the rows: phase 0 (d0 - d1, d1, d2 - d1), phase 1 (d1 - d2, d2, d3 - d2).
        let (d0, rest) = d.split_at(wp);
        let (d1, rest) = rest.split_at(wp);
        let (d2, d3) = rest.split_at(wp);
        for (ri, out) in r.chunks_exact_mut(wp).enumerate() {
            for x in 0..wp {
                out[x] = match ri {
                    0 => d0[x] - d1[x],
                    1 => d1[x],
                    2 => d2[x] - d1[x],
                    3 => d1[x] - d2[x],
                    4 => d2[x],
                    _ => d3[x] - d2[x],
                };
            }
        }
        // Along the columns, the same for each tile's four columns 2 tx - 1 .. 2 tx + 2.
        for (ri, row) in r.chunks_exact(wp).enumerate() {
            for tx in 0..tw {
                let x = &row[2 * tx..2 * tx + 4];
                let v = [
                    x[0] - x[1],
                    x[1],
                    x[2] - x[1],
                    x[1] - x[2],
                    x[2],
                    x[3] - x[2],
                ];
                for (ci, &val) in v.iter().enumerate() {
                    dst[(6 * ri + ci) * tw + tx] = val;
                }
            }
        }
        store(ty, &dst);
    }
}

/// The transform of `tiles` of one image `img` (Cin, h, w) in f32: `v` is (36, Cin, nt), the
/// band's tile `t` in column `t`.
fn input_transform_f32(img: &[f32], c_in: usize, tiles: &Tiles, v: &mut [f32]) {
    let (h, w) = tiles.hw;
    let tw = w.div_ceil(2);
    let nt = (tiles.rows.1 - tiles.rows.0) * tw;
    for (c, plane) in img.chunks_exact(h * w).take(c_in).enumerate() {
        transform_channel(plane, tiles, |ty, vals| {
            let off = (ty - tiles.rows.0) * tw;
            for (k, src) in vals.chunks_exact(tw).enumerate() {
                let at = (k * c_in + c) * nt + off;
                v[at..at + tw].copy_from_slice(src);
            }
        });
    }
}

/// The transform of `tiles` of one image `img` (Cin, h, w), rounded to bf16 and packed in
/// channel pairs: `vb` is (36, ceil(Cin / 2), ld) pairs, the band's tile `t` in column `t`,
/// zeros past the last tile and the last channel.
fn input_transform_pairs(img: &[f32], c_in: usize, tiles: &Tiles, ld: usize, vb: &mut [u32]) {
    let (h, w) = tiles.hw;
    let tw = w.div_ceil(2);
    let kp = c_in.div_ceil(2);
    let nt = (tiles.rows.1 - tiles.rows.0) * tw;
    // The low channel of each pair is stored alone first, then paired with the high one.
    for p in 0..kp {
        let plane_lo = &img[2 * p * h * w..(2 * p + 1) * h * w];
        transform_channel(plane_lo, tiles, |ty, vals| {
            let off = (ty - tiles.rows.0) * tw;
            for (k, a) in vals.chunks_exact(tw).enumerate() {
                let row = &mut vb[(k * kp + p) * ld..(k * kp + p + 1) * ld];
                for (o, &x) in row[off..off + tw].iter_mut().zip(a) {
                    *o = pair(x, 0.0);
                }
            }
        });
        if let Some(plane_hi) = img.get((2 * p + 1) * h * w..(2 * p + 2) * h * w) {
            transform_channel(plane_hi, tiles, |ty, vals| {
                let off = (ty - tiles.rows.0) * tw;
                for (k, b) in vals.chunks_exact(tw).enumerate() {
                    let row = &mut vb[(k * kp + p) * ld..(k * kp + p + 1) * ld];
                    for (o, &y) in row[off..off + tw].iter_mut().zip(b) {
                        *o = (*o & 0xffff) | (u32::from(bf16::to_bf16(y)) << 16);
                    }
                }
            });
        }
    }
    for row in vb.chunks_exact_mut(ld) {
        row[nt..].fill(0);
    }
}

/// The output transform of channel `co` over tile rows `ty0..ty1`: `m` is (36, Cout, ld);
/// `rows` holds output rows `4 ty0 .. min(4 ty1, ho)` (width `wo`) of that channel.
fn output_transform(
    m: &[f32],
    (c_out, co, ld): (usize, usize, usize),
    bias: f32,
    (ty0, ty1, tw): (usize, usize, usize),
    wo: usize,
    rows: &mut [f32],
) {
    let mk = |k: usize, t: usize| m[(k * c_out + co) * ld + t];
    let lines = rows.len() / wo;
    let mut line = vec![0f32; 4 * tw];
    for ty in ty0..ty1 {
        let base = (ty - ty0) * tw;
        // Output row 4 ty + 2 r + a: low row 2 ty + r, row phase a.
        for (r, a) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let y = 4 * (ty - ty0) + 2 * r + a;
            if y >= lines {
                continue;
            }
            for tx in 0..tw {
                let t = base + tx;
                for (c, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    // y = A^T M A for phase (a, b): the 2x2 sum of M at (r.., c..).
                    let (i, j) = (3 * a + r, 3 * b + c);
                    let s = mk(6 * i + j, t)
                        + mk(6 * i + j + 1, t)
                        + mk(6 * (i + 1) + j, t)
                        + mk(6 * (i + 1) + j + 1, t);
                    line[4 * tx + 2 * c + b] = s + bias;
                }
            }
            rows[y * wo..(y + 1) * wo].copy_from_slice(&line[..wo]);
        }
    }
}
