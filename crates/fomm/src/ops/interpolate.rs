//! Bilinear resize as PyTorch's `F.interpolate(x, size=(h, w), mode="bilinear")` with `align_corners` left
//! unspecified (= False since torch 0.4.0): the call form of FOMM generator.py lines 55 and 83, which resize the
//! dense-motion deformation and occlusion map to the feature / image resolution (up or down, any ratio, no
//! antialias).
//!
//! PyTorch semantics (`aten/src/ATen/native/UpSample.h`: `area_pixel_compute_scale`,
//! `area_pixel_compute_source_index`, `guard_index_and_lambda`), in the input's precision:
//! `scale = in / out`, `src = max(scale * (dst + 0.5) - 0.5, 0)`, `i0 = min(floor(src), in - 1)`,
//! `i1 = min(i0 + 1, in - 1)`, `l1 = clamp(src - i0, 0, 1)`, `l0 = 1 - l1`.
//!
//! Why not candle's `Tensor::upsample_bilinear2d(h, w, false)`: it implements the same formula but in f64,
//! which agrees with PyTorch's float32 output only to ~4e-7. That is small, but a resized *deformation* is
//! then scaled by (size - 1) / 2 = 127.5 inside `grid_sample`, so FOMM's `deformed` image ends up ~3e-5 off.
//! This kernel reproduces PyTorch's float32 rounding exactly (bit-identical on every fixture), including the
//! fused multiply-adds that GCC forms in PyTorch's x86 build, and the choice between PyTorch's two CPU kernels
//! (`aten/src/ATen/native/cpu/UpSampleKernel.cpp`, `upsample_bilinear2d_kernel_impl_float`):
//!
//! * out_h + out_w <= 128 ("channels-last" kernel, `_use_vectorized_kernel_cond_2d`): weights `k = lh * lw`,
//!   `out = fma(x11, k11, fma(x10, k10, fma(x00, k00, x01 * k01)))`;
//! * otherwise (generic `Interpolate<2>`): `t0 = fma(x00, lw0, x01 * lw1)`, `t1 = fma(x10, lw0, x11 * lw1)`,
//!   `out = fma(t0, lh0, t1 * lh1)`;
//! * source index: `src = fma(scale, dst + 0.5, -0.5)`.
//!
//! (PyTorch also takes the channels-last kernel for a channels-last input with more than 3 channels, in
//! vectorised form; FOMM never resizes one, and candle tensors carry no memory format, so that case is not
//! mirrored.) CPU F32/F64 use this kernel; other dtypes and devices use candle's `upsample_bilinear2d`
//! (same formula, not bit-matched).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Why an `interpolate_bilinear` call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpolateError {
    /// The input is not (N, C, H, W).
    #[error(
        "interpolate_bilinear: input must be 4-D (N, C, H, W), got shape {0:?}; reshape it (e.g. unsqueeze a batch dim) first"
    )]
    InputRank(Vec<usize>),
    /// An input or output spatial size is zero (PyTorch refuses these too).
    #[error(
        "interpolate_bilinear: sizes must be greater than 0, got input {in_h}x{in_w} -> output {out_h}x{out_w}"
    )]
    EmptySize {
        /// Input height.
        in_h: usize,
        /// Input width.
        in_w: usize,
        /// Requested output height.
        out_h: usize,
        /// Requested output width.
        out_w: usize,
    },
    /// The kernel was reached with a dtype it does not implement (the public function routes those to candle).
    #[error(
        "interpolate_bilinear: dtype {0:?} is not supported by the CPU kernel; convert to F32 or F64"
    )]
    UnsupportedDType(DType),
    /// A storage reached the kernel with a strided layout (the public function makes it contiguous first).
    #[error("interpolate_bilinear: input is not contiguous; call `.contiguous()` on it first")]
    NotContiguous,
}

impl From<InterpolateError> for candle_core::Error {
    fn from(e: InterpolateError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// PyTorch takes its "channels-last" kernel when out_h + out_w is at most this (`_use_vectorized_kernel_cond_2d`
/// in `aten/src/ATen/native/cpu/UpSampleKernel.cpp`; "the current 128 threshold was determined through
/// benchmarks").
const PYTORCH_SMALL_OUTPUT_SUM: usize = 128;

/// Resizes `input` (N, C, H, W) to (N, C, `out_h`, `out_w`) bilinearly with PyTorch's
/// `F.interpolate(input, size=(out_h, out_w), mode="bilinear")` semantics (align_corners = False, no antialias),
/// bit-identical to PyTorch's CPU float32 result. When the size does not change the input is returned as is
/// (PyTorch copies it unchanged then).
pub fn interpolate_bilinear(
    input: &Tensor,
    out_h: usize,
    out_w: usize,
) -> candle_core::Result<Tensor> {
    let (in_h, in_w) = match *input.dims() {
        [_, _, h, w] => (h, w),
        _ => return Err(InterpolateError::InputRank(input.dims().to_vec()).into()),
    };
    if in_h == 0 || in_w == 0 || out_h == 0 || out_w == 0 {
        return Err(InterpolateError::EmptySize {
            in_h,
            in_w,
            out_h,
            out_w,
        }
        .into());
    }
    if (in_h, in_w) == (out_h, out_w) {
        // Also avoids candle's own shortcut for this case, which copies the raw storage without honouring
        // strides or offsets.
        return Ok(input.clone());
    }
    let own_kernel = input.device().is_cpu() && matches!(input.dtype(), DType::F32 | DType::F64);
    if own_kernel {
        input
            .contiguous()?
            .apply_op1_no_bwd(&BilinearOp { out_h, out_w })
    } else {
        input.upsample_bilinear2d(out_h, out_w, false)
    }
}

struct BilinearOp {
    out_h: usize,
    out_w: usize,
}

impl CustomOp1 for BilinearOp {
    fn name(&self) -> &'static str {
        "interpolate_bilinear_pytorch"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match storage {
            CpuStorage::F32(src) => {
                let (out, shape) = resize_cpu::<f32>(src, layout, self.out_h, self.out_w)?;
                Ok((CpuStorage::F32(out), shape))
            }
            CpuStorage::F64(src) => {
                let (out, shape) = resize_cpu::<f64>(src, layout, self.out_h, self.out_w)?;
                Ok((CpuStorage::F64(out), shape))
            }
            other => Err(InterpolateError::UnsupportedDType(other.dtype()).into()),
        }
    }
}

/// The float types the kernel runs in (PyTorch's opmath type equals the input type for f32 and f64).
trait Float:
    WithDType
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
{
    fn floor(self) -> Self;
    fn fma(self, a: Self, b: Self) -> Self;
}

impl Float for f32 {
    #[inline(always)]
    fn floor(self) -> Self {
        f32::floor(self)
    }
    #[inline(always)]
    fn fma(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
}

impl Float for f64 {
    #[inline(always)]
    fn floor(self) -> Self {
        f64::floor(self)
    }
    #[inline(always)]
    fn fma(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
}

/// Source indices and weights of one output row or column.
#[derive(Clone, Copy)]
struct Tap<T> {
    i0: usize,
    i1: usize,
    l0: T,
    l1: T,
}

/// PyTorch `compute_source_index_and_lambda` (align_corners = False) for every output index.
fn taps<T: Float>(in_size: usize, out_size: usize) -> Vec<Tap<T>> {
    let zero = T::from_f64(0.0);
    let one = T::from_f64(1.0);
    let half = T::from_f64(0.5);
    let neg_half = T::from_f64(-0.5);
    // area_pixel_compute_scale: static_cast<opmath_t>(input_size) / output_size.
    let scale = T::from_f64(in_size as f64) / T::from_f64(out_size as f64);
    let last = in_size.saturating_sub(1);
    (0..out_size)
        .map(|dst| {
            // area_pixel_compute_source_index: scale * (dst + 0.5) - 0.5 (contracted to an fma), clamped at 0.
            let src = scale.fma(T::from_f64(dst as f64) + half, neg_half);
            let src = if src < zero { zero } else { src };
            // guard_index_and_lambda: the index is capped at in - 1, lambda clamped to [0, 1].
            let i0 = (src.floor().to_f64() as usize).min(last);
            let l = src - T::from_f64(i0 as f64);
            let l1 = if l < zero {
                zero
            } else if l > one {
                one
            } else {
                l
            };
            Tap {
                i0,
                i1: if i0 < last { i0 + 1 } else { i0 },
                l0: one - l1,
                l1,
            }
        })
        .collect()
}

fn resize_cpu<T: Float>(
    src: &[T],
    layout: &Layout,
    out_h: usize,
    out_w: usize,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let (n, c, h, w) = match *layout.dims() {
        [n, c, h, w] => (n, c, h, w),
        _ => return Err(InterpolateError::InputRank(layout.dims().to_vec()).into()),
    };
    let src = match layout.contiguous_offsets() {
        Some((start, end)) => &src[start..end],
        None => return Err(InterpolateError::NotContiguous.into()),
    };
    let shape = Shape::from((n, c, out_h, out_w));
    let mut out = vec![T::from_f64(0.0); shape.elem_count()];
    if out.is_empty() {
        return Ok((out, shape));
    }
    if h == 0 || w == 0 {
        return Err(InterpolateError::EmptySize {
            in_h: h,
            in_w: w,
            out_h,
            out_w,
        }
        .into());
    }
    let ctx = Ctx {
        th: taps::<T>(h, out_h),
        tw: taps::<T>(w, out_w),
        w,
        plane_in: h * w,
        out_h,
        small_output: out_h + out_w <= PYTORCH_SMALL_OUTPUT_SUM,
    };
    let fma = crate::ops::cpu::has_fma();
    out.par_chunks_mut(out_w)
        .enumerate()
        .for_each(|(row, dst)| row_dispatch(fma, &ctx, src, row, dst));
    Ok((out, shape))
}

struct Ctx<T> {
    th: Vec<Tap<T>>,
    tw: Vec<Tap<T>>,
    w: usize,
    plane_in: usize,
    out_h: usize,
    small_output: bool,
}

fn row_dispatch<T: Float>(fma: bool, ctx: &Ctx<T>, src: &[T], row: usize, dst: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: `row_fma` only requires the `fma` target feature, which `cpu::has_fma` detected on this CPU.
        unsafe { row_fma(ctx, src, row, dst) };
        return;
    }
    let _ = fma;
    row_kernel(ctx, src, row, dst);
}

/// [`row_kernel`] compiled with hardware FMA (same results, `mul_add` becomes one instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn row_fma<T: Float>(ctx: &Ctx<T>, src: &[T], row: usize, dst: &mut [T]) {
    row_kernel(ctx, src, row, dst);
}

/// Computes output row `row` (counted over all planes) into `dst`.
#[inline(always)]
fn row_kernel<T: Float>(ctx: &Ctx<T>, src: &[T], row: usize, dst: &mut [T]) {
    let plane = row / ctx.out_h;
    let th = ctx.th[row % ctx.out_h];
    let p = &src[plane * ctx.plane_in..(plane + 1) * ctx.plane_in];
    let r0 = &p[th.i0 * ctx.w..(th.i0 + 1) * ctx.w];
    let r1 = &p[th.i1 * ctx.w..(th.i1 + 1) * ctx.w];
    if ctx.small_output {
        for (o, tw) in dst.iter_mut().zip(ctx.tw.iter()) {
            let (k00, k01) = (th.l0 * tw.l0, th.l0 * tw.l1);
            let (k10, k11) = (th.l1 * tw.l0, th.l1 * tw.l1);
            let acc = r0[tw.i0].fma(k00, r0[tw.i1] * k01);
            *o = r1[tw.i1].fma(k11, r1[tw.i0].fma(k10, acc));
        }
    } else {
        for (o, tw) in dst.iter_mut().zip(ctx.tw.iter()) {
            let t0 = r0[tw.i0].fma(tw.l0, r0[tw.i1] * tw.l1);
            let t1 = r1[tw.i0].fma(tw.l0, r1[tw.i1] * tw.l1);
            *o = t0.fma(th.l0, t1 * th.l1);
        }
    }
}
