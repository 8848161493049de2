//! The f32 3x3 convolution of small maps as one matrix product (im2col): `Y (Cout x HW) = W
//! (Cout x 9 Cin) X`, column `n` of `X` holding the 9 Cin input values under output pixel `n`.
//!
//! On the hourglasses' deepest maps (8x8 and smaller, up to 1024 channels) the work is dominated
//! by reading the weights, not by multiplying: Winograd's transformed weights are 16/9 as large
//! as the plain ones, and its 16 products have only a handful of columns each. Here the weights
//! are read once, in their checkpoint layout, straight from the tensor.

use rayon::prelude::*;

use super::winograd::gemm1;
use super::{ConvError, err};

/// Rows of `W` (output channels) per job; a multiple of the AVX-512 micro-kernel's 16 rows.
const ROWS_PER_JOB: usize = 64;

/// `out` (N, Cout, h, w) = 3x3 / padding 1 convolution of `data` (N, Cin, h, w) with `weight`
/// (Cout, Cin, 3, 3) row-major, plus `bias`.
pub(super) fn conv3x3(
    data: &[f32],
    weight: &[f32],
    bias: &[f32],
    (n, c_in, h, w): (usize, usize, usize, usize),
    out: &mut [f32],
) -> candle_core::Result<()> {
    let (c_out, hw, k) = (bias.len(), h * w, 9 * c_in);
    if data.len() != n * c_in * hw || weight.len() != c_out * k || out.len() != n * c_out * hw {
        return Err(err(ConvError::Internal(
            "im2col buffers do not match the shapes",
        )));
    }
    let mut x = vec![0f32; k * hw];
    for (img, y) in data
        .chunks_exact(c_in * hw)
        .zip(out.chunks_exact_mut(c_out * hw))
    {
        build_columns(img, (c_in, h, w), &mut x);
        y.par_chunks_mut(ROWS_PER_JOB * hw)
            .zip(weight.par_chunks(ROWS_PER_JOB * k))
            .zip(bias.par_chunks(ROWS_PER_JOB))
            .try_for_each(|((yc, wc), bc)| {
                gemm1(wc, &x, yc, bc.len(), k, hw)?;
                for (row, &b) in yc.chunks_exact_mut(hw).zip(bc) {
                    for v in row {
                        *v += b;
                    }
                }
                Ok::<(), candle_core::Error>(())
            })?;
    }
    Ok(())
}

/// `x` (9 Cin, h w): row `9 c + 3 ky + kx` is channel `c` shifted by `(ky - 1, kx - 1)`, zeros
/// in the padding.
fn build_columns(img: &[f32], (c_in, h, w): (usize, usize, usize), x: &mut [f32]) {
    x.par_chunks_mut(9 * h * w)
        .zip(img.par_chunks(h * w))
        .take(c_in)
        .for_each(|(rows, plane)| {
            for (r, row) in rows.chunks_exact_mut(h * w).enumerate() {
                let (ky, kx) = (r / 3, r % 3);
                for (oy, out_row) in row.chunks_exact_mut(w).enumerate() {
                    let Some(iy) = (oy + ky).checked_sub(1).filter(|&y| y < h) else {
                        out_row.fill(0.0);
                        continue;
                    };
                    let in_row = &plane[iy * w..(iy + 1) * w];
                    for (ox, v) in out_row.iter_mut().enumerate() {
                        *v = (ox + kx)
                            .checked_sub(1)
                            .and_then(|ix| in_row.get(ix))
                            .copied()
                            .unwrap_or(0.0);
                    }
                }
            }
        });
}
