//! Direct convolution for layers that are not 3x3: FOMM's 7x7 heads (`final`: 64 -> 3 at
//! 256x256, the largest; `kp` and `jacobian` of the keypoint detector; `mask` and `occlusion`
//! of the dense motion network).
//!
//! Candle's im2col would build a (H*W) x (C*k*k) matrix (822 MB for `final`); here every output
//! value is accumulated in place from shifted input rows, so memory stays at the output's size.
//!
//! Every path computes the same sums in the same order, bias first, then input channel, kernel
//! row and kernel column, each product rounded and then added (no fused multiply-add), so the
//! results are the same on every processor (up to the sign of an exact zero):
//! * the vector kernels (AVX-512F, else AVX2) keep a block of up to [`CB`] output channels x one
//!   run of output pixels in registers for the whole sum: each input vector loaded serves every
//!   channel of the block, where the plain loop loads and stores its sums for every product.
//!   Padding columns are read as zeros (adding a zero product changes nothing);
//! * the plain loop ([`scalar`]) runs elsewhere and under `MARIONETTE_CPU=baseline`.
//!
//! Hand-written because this shape (few output channels, 7x7, f32, stride 1) is what matrix
//! crates do worst: as a product it is (Cout=1..40) x (Cin*49) x (H*W), too few rows for
//! `gemm`'s micro-kernels, and an im2col copy is 49 times the input.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::scratch::OutPtr;

/// Output channels per vector-kernel block (and the packed weights' channel stride).
const CB: usize = 4;
/// Largest kernel the vector kernels take (a zero-padded edge run lives on the stack).
const MAX_KERNEL: usize = 15;

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub enum DirectIsa {
    /// The plain loop (any processor).
    Scalar,
    /// 256-bit vectors: 2 x 8 output pixels x [`CB`] channels per block.
    Avx2,
    /// 512-bit vectors: 4 x 16 output pixels x [`CB`] channels per block.
    Avx512,
}

impl DirectIsa {
    /// The fastest kernel this processor runs (`Scalar` under `MARIONETTE_CPU=baseline`).
    pub fn detect() -> Self {
        [DirectIsa::Avx512, DirectIsa::Avx2]
            .into_iter()
            .find(|isa| isa.supported())
            .unwrap_or(DirectIsa::Scalar)
    }

    /// Whether this processor runs the kernel (and `MARIONETTE_CPU=baseline` does not forbid it).
    pub fn supported(self) -> bool {
        use crate::ops::cpu;
        match self {
            DirectIsa::Scalar => true,
            DirectIsa::Avx2 => cpu::features().avx2,
            DirectIsa::Avx512 => cpu::has_avx512f(),
        }
    }

    /// Output pixels per block.
    fn run(self) -> usize {
        match self {
            DirectIsa::Scalar => 0,
            DirectIsa::Avx2 => 16,
            DirectIsa::Avx512 => 64,
        }
    }
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Shape {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

/// Direct convolution (stride 1, symmetric zero padding): `x` (N, C, H, W), `weight` (O, C, k,
/// k), `bias` (O). Returns `None` when not applicable (not CPU f32, or the kernel does not fit
/// the padded input), so the caller falls back to candle.
pub fn conv2d_direct(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    padding: usize,
) -> candle_core::Result<Option<Tensor>> {
    conv2d_direct_with(DirectIsa::detect(), x, weight, bias, padding)
}

/// [`conv2d_direct`] on a chosen kernel (for tests: every kernel must give the same values).
/// A kernel this processor lacks is replaced by the scalar loop.
#[doc(hidden)]
pub fn conv2d_direct_with(
    isa: DirectIsa,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    padding: usize,
) -> candle_core::Result<Option<Tensor>> {
    if !matches!(x.device(), Device::Cpu)
        || x.dtype() != DType::F32
        || weight.dtype() != DType::F32
        || bias.dtype() != DType::F32
    {
        return Ok(None);
    }
    let (n, c, h, w) = x.dims4()?;
    let (o, wc, kh, kw) = weight.dims4()?;
    if wc != c || kh != kw || bias.dims1()? != o || h + 2 * padding < kh || w + 2 * padding < kw {
        return Ok(None);
    }
    let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let ws = weight.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let bs = bias.to_vec1::<f32>()?;
    let (out, ho, wo) = conv(isa, &xs, &ws, &bs, (n, c, h, w), (o, kh), padding);
    Ok(Some(Tensor::from_vec(out, (n, o, ho, wo), x.device())?))
}

/// The direct convolution on slices: `xs` (n, c, h, w), `ws` (o, c, k, k), `bs` (o), all
/// row-major, with `padding`; the kernel must fit the padded input. Returns (n, o, ho, wo) and
/// (ho, wo). A kernel this processor lacks is replaced by the scalar loop.
pub(super) fn conv(
    isa: DirectIsa,
    xs: &[f32],
    ws: &[f32],
    bs: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (o, k): (usize, usize),
    padding: usize,
) -> (Vec<f32>, usize, usize) {
    let s = Shape {
        c,
        h,
        w,
        o,
        k,
        pad: padding,
        ho: h + 2 * padding - k + 1,
        wo: w + 2 * padding - k + 1,
    };
    let mut out = vec![0f32; n * o * s.ho * s.wo];
    let isa = if isa.supported() {
        isa
    } else {
        DirectIsa::Scalar
    };
    if isa == DirectIsa::Scalar || k > MAX_KERNEL || c == 0 {
        scalar(xs, ws, bs, &s, &mut out);
    } else {
        vector(isa, xs, ws, bs, &s, &mut out);
    }
    (out, s.ho, s.wo)
}

/// The plain loop: every output row accumulated from shifted input rows, padding skipped.
fn scalar(xs: &[f32], ws: &[f32], bs: &[f32], s: &Shape, out: &mut [f32]) {
    let Shape {
        c,
        h,
        w,
        o,
        k,
        pad: padding,
        ho,
        wo,
    } = *s;
    out.par_chunks_mut(wo).enumerate().for_each(|(row, acc)| {
        let y = row % ho;
        let oc = (row / ho) % o;
        let b = row / (ho * o);
        acc.fill(bs[oc]);
        for ci in 0..c {
            let plane = &xs[(b * c + ci) * h * w..(b * c + ci + 1) * h * w];
            let wbase = (oc * c + ci) * k * k;
            for ky in 0..k {
                let iy = y as isize + ky as isize - padding as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let in_row = &plane[iy as usize * w..(iy as usize + 1) * w];
                for kx in 0..k {
                    let wv = ws[wbase + ky * k + kx];
                    // Output columns whose input column ox + kx - padding lies inside the row.
                    let lo = padding.saturating_sub(kx);
                    let hi = (w + padding).saturating_sub(kx).min(wo);
                    if lo >= hi {
                        continue;
                    }
                    let shift = lo + kx - padding;
                    let src = &in_row[shift..shift + (hi - lo)];
                    for (a, s) in acc[lo..hi].iter_mut().zip(src) {
                        *a += wv * s;
                    }
                }
            }
        }
    });
}

/// What a vector block computes: output row `y`, pixels `x0 ..` of channels `blk * CB ..`.
struct Block<'a> {
    /// The image, (C, H, W).
    img: &'a [f32],
    /// This channel block's weights, (C, k, k, CB).
    w: &'a [f32],
    /// This block's biases (zeros past the layer's channels).
    bias: [f32; CB],
    y: usize,
    x0: usize,
}

/// The vector kernels' driver: one job per (image, output row), every channel block and pixel
/// run of the row inside it.
fn vector(isa: DirectIsa, xs: &[f32], ws: &[f32], bs: &[f32], s: &Shape, out: &mut [f32]) {
    let (c, k, o) = (s.c, s.k, s.o);
    let blocks = o.div_ceil(CB);
    // Weights as (block, C, k, k, CB), zeros past the last channel.
    let per_block = c * k * k * CB;
    let mut packed = vec![0f32; blocks * per_block];
    for (oc, filt) in ws.chunks_exact(c * k * k).enumerate() {
        let (blk, lane) = (oc / CB, oc % CB);
        for (i, &v) in filt.iter().enumerate() {
            packed[blk * per_block + i * CB + lane] = v;
        }
    }
    let run = isa.run();
    let runs = s.wo.div_ceil(run);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let plane_in = c * s.h * s.w;
    let n = xs.len() / plane_in.max(1);
    (0..n * s.ho).into_par_iter().for_each(|job| {
        let (b, y) = (job / s.ho, job % s.ho);
        let img = &xs[b * plane_in..(b + 1) * plane_in];
        let mut vals = [0f32; CB * 64];
        for blk in 0..blocks {
            let bias = std::array::from_fn(|i| bs.get(blk * CB + i).copied().unwrap_or(0.0));
            let lanes = (o - blk * CB).min(CB);
            for r in 0..runs {
                let block = Block {
                    img,
                    w: &packed[blk * per_block..(blk + 1) * per_block],
                    bias,
                    y,
                    x0: r * run,
                };
                run_block(isa, &block, s, &mut vals);
                let len = run.min(s.wo - r * run);
                for (lane, vals) in vals.chunks_exact(run).take(lanes).enumerate() {
                    let oc = blk * CB + lane;
                    let off = ((b * o + oc) * s.ho + y) * s.wo + r * run;
                    // SAFETY: b < n, oc < o, y < ho and r * run + len <= wo, so the range lies
                    // inside `out` (n * o * ho * wo values), which outlives this loop and is not
                    // otherwise accessed during it. Each job writes only row y of image b, so no
                    // two jobs write the same values.
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(off), len) };
                    dst.copy_from_slice(&vals[..len]);
                }
            }
        }
    });
}

/// Runs one block on `isa`'s kernel, writing `CB` runs of `isa.run()` values to `vals`.
fn run_block(isa: DirectIsa, block: &Block, s: &Shape, vals: &mut [f32; CB * 64]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `vector` only runs with a kernel `DirectIsa::detect` found on this processor, and
    // the kernels read inside `block.img` and `block.w` (their sizes follow from `s`).
    unsafe {
        match isa {
            DirectIsa::Avx512 => avx512::block(block, s, vals),
            DirectIsa::Avx2 => avx2::block(block, s, vals),
            DirectIsa::Scalar => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, block, s, vals);
}

/// Generates one vector kernel: `$vectors` vectors of `$lanes` f32 per channel of the block.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_kernel {
    ($module:ident, $feature:literal, $lanes:literal, $vectors:literal, $vec:ty,
     $set1:ident, $loadu:ident, $storeu:ident, $add:ident, $mul:ident) => {
        mod $module {
            use std::arch::x86_64::*;

            use super::{Block, CB, MAX_KERNEL, Shape};

            const RUN: usize = $lanes * $vectors;

            /// One block: sums of `CB` channels over `RUN` output pixels.
            ///
            /// # Safety
            /// The processor must have the module's instructions; `block.img` must hold (C, H,
            /// W) and `block.w` (C, k, k, CB) values for `s`, with `s.k <= MAX_KERNEL`.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn block(block: &Block, s: &Shape, vals: &mut [f32; CB * 64]) {
                let mut acc: [[$vec; $vectors]; CB] =
                    std::array::from_fn(|i| [$set1(block.bias[i]); $vectors]);
                let k = s.k;
                // Input columns this run reads: x0 - pad .. x0 - pad + RUN + k - 1.
                let ix0 = block.x0 as isize - s.pad as isize;
                let span = RUN + k - 1;
                let inside = ix0 >= 0 && ix0 as usize + span <= s.w;
                let mut edge = [0f32; RUN + MAX_KERNEL];
                for ci in 0..s.c {
                    for ky in 0..k {
                        let Some(iy) = (block.y + ky).checked_sub(s.pad).filter(|&r| r < s.h)
                        else {
                            continue;
                        };
                        let row = &block.img[(ci * s.h + iy) * s.w..][..s.w];
                        let src: &[f32] = if inside {
                            &row[ix0 as usize..ix0 as usize + span]
                        } else {
                            // An edge run: the row's part under the run, zeros around it.
                            edge.fill(0.0);
                            for (j, v) in edge.iter_mut().take(span).enumerate() {
                                let ix = ix0 + j as isize;
                                if ix >= 0 && (ix as usize) < s.w {
                                    *v = row[ix as usize];
                                }
                            }
                            &edge[..span]
                        };
                        let taps = &block.w[(ci * k + ky) * k * CB..][..k * CB];
                        for (kx, wk) in taps.chunks_exact(CB).enumerate() {
                            let wv: [$vec; CB] = std::array::from_fn(|i| $set1(wk[i]));
                            // SAFETY: kx + RUN <= span = src.len(), so every vector load
                            // (kx + $lanes * v .. + $lanes, v < $vectors) is inside `src`.
                            let xv: [$vec; $vectors] = std::array::from_fn(|v| unsafe {
                                $loadu(src.as_ptr().add(kx + $lanes * v))
                            });
                            for (a, wc) in acc.iter_mut().zip(wv.iter()) {
                                for (av, xvv) in a.iter_mut().zip(xv.iter()) {
                                    // Product rounded, then added: the scalar loop's order.
                                    *av = $add(*av, $mul(*wc, *xvv));
                                }
                            }
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    for (v, av) in a.iter().enumerate() {
                        // SAFETY: i * RUN + $lanes * (v + 1) <= CB * RUN <= CB * 64 = vals.len().
                        unsafe { $storeu(vals.as_mut_ptr().add(i * RUN + $lanes * v), *av) };
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
vector_kernel!(
    avx512,
    "avx512f",
    16,
    4,
    __m512,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_add_ps,
    _mm512_mul_ps
);

#[cfg(target_arch = "x86_64")]
vector_kernel!(
    avx2,
    "avx2",
    8,
    2,
    __m256,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_add_ps,
    _mm256_mul_ps
);
