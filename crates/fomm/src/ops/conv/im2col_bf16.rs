//! Any stride-1 convolution as one bf16 matrix product (im2col): `Y (Cout x HoWo) = W (Cout x
//! Cin k k) X`, where column `n` of `X` holds the `Cin k k` input values under output pixel `n`.
//! Used at bf16 precision for what the Winograd path does not suit: 3x3 layers on small maps
//! (there the weights dominate the cost, and im2col reads them once where Winograd reads 16/9 as
//! much), and the larger heads (FOMM's 7x7 `jacobian` and `mask` convolutions).
//!
//! `X` is built in bf16 channel pairs straight from the f32 input. Large outputs are cut into
//! column chunks that are built and multiplied by one job each, so `X` never exists whole (for
//! FOMM's `final` layer it would take 400 MB); small outputs build `X` once and split the rows.

use rayon::prelude::*;

use super::bf16::{self, LANES, MR, NR, PackedA, pair};
use super::scratch::with_pairs;
use super::{ConvError, err};

/// Bytes of `X` per column chunk: about an L2 cache's worth.
const CHUNK_BYTES: usize = 1 << 20;

/// A stride-1 convolution with zero padding, weights packed as bf16.
#[derive(Debug, Clone)]
pub struct ConvBf16 {
    a: PackedA,
    bias: Vec<f32>,
    c_out: usize,
    c_in: usize,
    kernel: usize,
    padding: usize,
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Shape {
    c_in: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    kernel: usize,
    padding: usize,
}

impl ConvBf16 {
    /// Packs a (Cout, Cin, k, k) weight given row-major as `weight`, with one bias per output.
    pub fn new(
        weight: &[f32],
        (c_out, c_in, kernel): (usize, usize, usize),
        bias: &[f32],
        padding: usize,
    ) -> candle_core::Result<Self> {
        let k_len = c_in * kernel * kernel;
        if weight.len() != c_out * k_len || bias.len() != c_out || kernel == 0 {
            return Err(err(ConvError::Internal(
                "bf16 convolution weights do not match their shape",
            )));
        }
        let a = PackedA::new(c_out, k_len, |r, c| weight[r * k_len + c]);
        Ok(Self {
            a,
            bias: bias.to_vec(),
            c_out,
            c_in,
            kernel,
            padding,
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.c_out
    }

    /// Applies the convolution to `data`, (n, Cin, h, w) row-major; returns (n, Cout, ho, wo)
    /// and (ho, wo), or `None` when the kernel does not fit inside the padded input.
    pub fn forward(
        &self,
        data: &[f32],
        (n, h, w): (usize, usize, usize),
    ) -> candle_core::Result<Option<(Vec<f32>, usize, usize)>> {
        let (k, p) = (self.kernel, self.padding);
        if h + 2 * p < k || w + 2 * p < k {
            return Ok(None);
        }
        let (ho, wo) = (h + 2 * p - k + 1, w + 2 * p - k + 1);
        let plane_in = self.c_in * h * w;
        if data.len() != n * plane_in {
            return Err(err(ConvError::Internal(
                "bf16 convolution input does not match its shape",
            )));
        }
        let shape = Shape {
            c_in: self.c_in,
            h,
            w,
            ho,
            wo,
            kernel: k,
            padding: p,
        };
        let mut out = vec![0f32; n * self.c_out * ho * wo];
        for (img, y) in data
            .chunks_exact(plane_in.max(1))
            .zip(out.chunks_exact_mut((self.c_out * ho * wo).max(1)))
        {
            self.forward_image(img, &shape, y)?;
        }
        Ok(Some((out, ho, wo)))
    }

    fn forward_image(&self, x: &[f32], s: &Shape, y: &mut [f32]) -> candle_core::Result<()> {
        let n_cols = s.ho * s.wo;
        let kp = self.a.kp();
        let chunk = ((CHUNK_BYTES / (4 * kp.max(1))) / NR).max(1) * NR;
        let ldb = n_cols.div_ceil(LANES) * LANES;
        let chunks = ldb.div_ceil(chunk);
        let rows = self.a.row_blocks() * MR;
        // C as (chunk, rows, chunk columns): each job's part is contiguous.
        let mut c = vec![0f32; chunks * rows * chunk];
        let threads = rayon::current_num_threads().max(1);
        if chunks >= 2 * threads {
            c.par_chunks_mut(rows * chunk)
                .enumerate()
                .try_for_each(|(ci, cc)| {
                    let n0 = ci * chunk;
                    let cols = chunk.min(ldb - n0);
                    with_pairs(kp * cols, |b| {
                        build_columns(x, s, n0, cols, b);
                        bf16::gemm(&self.a, 0..self.a.row_blocks(), b, cols, cc, chunk, cols)
                    })
                })?;
        } else {
            // Few columns: build X whole (it is small), then split the rows across jobs.
            let mut b = vec![0u32; kp * ldb];
            b.par_chunks_mut(kp.div_ceil(threads).max(1) * ldb)
                .enumerate()
                .for_each(|(i, part)| {
                    let p0 = i * kp.div_ceil(threads).max(1);
                    build_pair_rows(x, s, p0, 0, ldb, part);
                });
            let blocks = self.a.row_blocks();
            c.par_chunks_mut(MR * chunk)
                .enumerate()
                .try_for_each(|(job, cc)| {
                    let (ci, blk) = (job / blocks, job % blocks);
                    let n0 = ci * chunk;
                    let cols = chunk.min(ldb - n0);
                    bf16::gemm(&self.a, blk..blk + 1, &b[n0..], ldb, cc, chunk, cols)
                })?;
        }
        // Scatter into (Cout, ho, wo) with the bias.
        y.par_chunks_mut(n_cols.max(1))
            .enumerate()
            .for_each(|(co, plane)| {
                let b = self.bias.get(co).copied().unwrap_or(0.0);
                for (ci, part) in plane.chunks_mut(chunk).enumerate() {
                    let src = &c[(ci * rows + co) * chunk..][..part.len()];
                    for (o, &v) in part.iter_mut().zip(src) {
                        *o = v + b;
                    }
                }
            });
        Ok(())
    }
}

/// Columns `n0 .. n0 + cols` of X (all pair rows) into `b` with row stride `cols`.
fn build_columns(x: &[f32], s: &Shape, n0: usize, cols: usize, b: &mut [u32]) {
    build_pair_rows(x, s, 0, n0, cols, b);
}

/// Pair rows `p0 ..` of X (as many as `out` holds, at stride `ld`), columns `n0 .. n0 + ld`
/// (columns past the output are zeros).
fn build_pair_rows(x: &[f32], s: &Shape, p0: usize, n0: usize, ld: usize, out: &mut [u32]) {
    let k_len = s.c_in * s.kernel * s.kernel;
    let mut lo = vec![0f32; ld];
    let mut hi = vec![0f32; ld];
    for (i, row) in out.chunks_exact_mut(ld).enumerate() {
        let p = p0 + i;
        fill_row(x, s, 2 * p, k_len, n0, &mut lo);
        fill_row(x, s, 2 * p + 1, k_len, n0, &mut hi);
        for ((o, &a), &b) in row.iter_mut().zip(&lo).zip(&hi) {
            *o = pair(a, b);
        }
    }
}

/// Row `r` of X (input channel `c`, kernel offset `(ky, kx)`), columns `n0 .. n0 + dst.len()`:
/// the input shifted by the offset, zero where it falls in the padding or past the output.
fn fill_row(x: &[f32], s: &Shape, r: usize, k_len: usize, n0: usize, dst: &mut [f32]) {
    dst.fill(0.0);
    if r >= k_len {
        return;
    }
    let kk = s.kernel * s.kernel;
    let (c, ky, kx) = (r / kk, (r % kk) / s.kernel, r % s.kernel);
    let plane = &x[c * s.h * s.w..(c + 1) * s.h * s.w];
    let n1 = (n0 + dst.len()).min(s.ho * s.wo);
    let mut n = n0;
    while n < n1 {
        let (oy, ox0) = (n / s.wo, n % s.wo);
        let run = (s.wo - ox0).min(n1 - n);
        let iy = oy + ky;
        if iy >= s.padding && iy - s.padding < s.h {
            let in_row = &plane[(iy - s.padding) * s.w..(iy - s.padding + 1) * s.w];
            let d = &mut dst[n - n0..n - n0 + run];
            // Output column ox reads input column ox + kx - padding.
            for (j, v) in d.iter_mut().enumerate() {
                let ix = ox0 + j + kx;
                if ix >= s.padding && ix - s.padding < s.w {
                    *v = in_row[ix - s.padding];
                }
            }
        }
        n += run;
    }
}
