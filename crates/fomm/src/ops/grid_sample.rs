//! Bilinear `grid_sample` with zero padding, as PyTorch's
//! `F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=...)`.
//!
//! FOMM warps the source image and the encoded source features with it (dense_motion.py line 77,
//! generator.py line 57). Candle has no such op, so this is a CPU kernel behind a [`CustomOp2`].
//!
//! The arithmetic follows PyTorch's vectorised CPU kernel (`aten/src/ATen/native/cpu/GridSamplerKernel.cpp`,
//! `ComputeLocationBase::unnormalize` and `ApplyGridSample<.., Bilinear, ..>::forward`), in the input's own
//! precision, including the fused multiply-adds that the compiler forms in PyTorch's x86 build (GCC contracts
//! `a * b + c` by default). With them the float32 output is bit-identical to PyTorch's on the fixtures
//! (`ops.safetensors` grid_sample, and FOMM's `deformed` / `bottleneck_in` / `sparse_deformed`); without them it
//! differs by a few ulp, which the 127.5x coordinate scale of a 256-pixel image turns into ~1e-5 differences:
//!
//! * unnormalise: `align_corners = true`: `x = (g + 1) * ((W - 1) / 2)`;
//!   `align_corners = false`: `x = fma(g + 1, W / 2, -0.5)` (same for y with H);
//! * `w = x - floor(x)`, `e = 1 - w`, `n = y - floor(y)`, `s = 1 - n`;
//!   weights `nw = s*e`, `ne = s*w`, `sw = n*e`, `se = n*w`;
//! * `out = fma(se_val, se, fma(sw_val, sw, fma(ne_val, ne, nw_val * nw)))`, where a corner outside the image
//!   contributes nothing.
//!
//! `f32::mul_add` is a single-rounding fused multiply-add on every platform, so results do not depend on the
//! CPU; on x86_64 the hot loop is compiled a second time with the `fma` target feature and picked at run time
//! (without it, `mul_add` is a slow library call).
//!
//! Here an outside corner gets weight 0 and reads a valid in-image element instead of PyTorch's masked 0 value;
//! for finite inputs the result is the same (at most the sign of an exact zero differs).
//!
//! Work split: the output is cut into units of (batch item, block of output rows, group of channels). Each unit
//! computes the four corner offsets and weights of its output pixels once (a small table that stays in cache)
//! and reuses them for every channel of its group. Units run in parallel with rayon; each output value is
//! computed the same way whatever the split, so results do not depend on the thread count.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Why a `grid_sample` call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GridSampleError {
    /// The input is not (N, C, H, W).
    #[error(
        "grid_sample: input must be 4-D (N, C, H, W), got shape {0:?}; reshape it (e.g. unsqueeze a batch dim) first"
    )]
    InputRank(Vec<usize>),
    /// The grid is not (N, Ho, Wo, 2).
    #[error(
        "grid_sample: grid must be 4-D (N, Ho, Wo, 2) with (x, y) last, got shape {0:?}; permute a (N, 2, Ho, Wo) flow to channels-last first"
    )]
    GridShape(Vec<usize>),
    /// Input and grid disagree on the batch size.
    #[error(
        "grid_sample: batch sizes differ: input has N = {input}, grid has N = {grid}; pass one grid per input item"
    )]
    BatchMismatch {
        /// N of the input.
        input: usize,
        /// N of the grid.
        grid: usize,
    },
    /// Input and grid have different dtypes.
    #[error(
        "grid_sample: input is {input:?} but grid is {grid:?}; convert both to the same dtype (F32 or F64)"
    )]
    DTypeMismatch {
        /// dtype of the input.
        input: DType,
        /// dtype of the grid.
        grid: DType,
    },
    /// Only F32 and F64 are implemented.
    #[error(
        "grid_sample: dtype {0:?} is not supported; convert to F32 (or F64) with `to_dtype` first"
    )]
    UnsupportedDType(DType),
    /// One input plane has more elements than a `u32` offset can address.
    #[error(
        "grid_sample: input plane {h}x{w} has more than 2^32 elements; this kernel indexes planes with 32-bit offsets"
    )]
    PlaneTooLarge {
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
    },
    /// A storage reached the kernel with a strided layout (the public function makes both contiguous first).
    #[error("grid_sample: {0} is not contiguous; call `.contiguous()` on it first")]
    NotContiguous(&'static str),
}

impl From<GridSampleError> for candle_core::Error {
    fn from(e: GridSampleError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// Bilinear sampling of `input` (N, C, H, W) at the points of `grid` (N, Ho, Wo, 2), zero padding outside the
/// image; returns (N, C, Ho, Wo). `grid[..., 0]` is x (along the width), `grid[..., 1]` is y, both normalised to
/// [-1, 1]. With `align_corners = true`, -1 and 1 are the centres of the corner pixels (torch <= 1.2 behaviour,
/// what the released FOMM checkpoints were trained with); with `false` they are the outer edges of the corner
/// pixels (torch >= 1.3 default).
///
/// F32 and F64 are supported (input and grid of the same dtype); strided tensors are made contiguous first.
/// On the CPU and, with the `cuda` feature, on NVIDIA GPUs (`grid_sample.cu`, the same arithmetic).
pub fn grid_sample(
    input: &Tensor,
    grid: &Tensor,
    align_corners: bool,
) -> candle_core::Result<Tensor> {
    let (n, _c, h, w) = match *input.dims() {
        [n, c, h, w] => (n, c, h, w),
        _ => return Err(GridSampleError::InputRank(input.dims().to_vec()).into()),
    };
    let gn = match *grid.dims() {
        [gn, _, _, 2] => gn,
        _ => return Err(GridSampleError::GridShape(grid.dims().to_vec()).into()),
    };
    if gn != n {
        return Err(GridSampleError::BatchMismatch { input: n, grid: gn }.into());
    }
    if input.dtype() != grid.dtype() {
        return Err(GridSampleError::DTypeMismatch {
            input: input.dtype(),
            grid: grid.dtype(),
        }
        .into());
    }
    match input.dtype() {
        DType::F32 | DType::F64 => {}
        other => return Err(GridSampleError::UnsupportedDType(other).into()),
    }
    check_plane_size(h, w)?;
    let input = input.contiguous()?;
    let grid = grid.contiguous()?;
    input.apply_op2_no_bwd(&grid, &GridSampleOp { align_corners })
}

fn check_plane_size(h: usize, w: usize) -> Result<(), GridSampleError> {
    match h.checked_mul(w) {
        Some(hw) if hw <= u32::MAX as usize => Ok(()),
        _ => Err(GridSampleError::PlaneTooLarge { h, w }),
    }
}

struct GridSampleOp {
    align_corners: bool,
}

impl CustomOp2 for GridSampleOp {
    fn name(&self) -> &'static str {
        "grid_sample_bilinear_zeros"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(input), CpuStorage::F32(grid)) => {
                let (out, shape) = sample_cpu::<f32>(input, l1, grid, l2, self.align_corners)?;
                Ok((CpuStorage::F32(out), shape))
            }
            (CpuStorage::F64(input), CpuStorage::F64(grid)) => {
                let (out, shape) = sample_cpu::<f64>(input, l1, grid, l2, self.align_corners)?;
                Ok((CpuStorage::F64(out), shape))
            }
            _ if s1.dtype() != s2.dtype() => Err(GridSampleError::DTypeMismatch {
                input: s1.dtype(),
                grid: s2.dtype(),
            }
            .into()),
            _ => Err(GridSampleError::UnsupportedDType(s1.dtype()).into()),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.cuda(s1, l1, s2, l2)
    }
}

/// PTX of `grid_sample.cu`, compiled by build.rs with nvcc.
#[cfg(feature = "cuda")]
const GRID_SAMPLE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/grid_sample.ptx"));

#[cfg(feature = "cuda")]
impl GridSampleOp {
    /// The GPU kernel (`grid_sample.cu`): the CPU kernel's arithmetic, one thread per output pixel.
    fn cuda(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::cuda_backend::WrapErr;
        use candle_core::cuda_backend::cudarc::driver::{
            CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
        };
        use candle_core::{CudaDevice, CudaStorage};

        let (n, c, h, w) = match *l1.dims() {
            [n, c, h, w] => (n, c, h, w),
            _ => return Err(GridSampleError::InputRank(l1.dims().to_vec()).into()),
        };
        let (gn, ho, wo) = match *l2.dims() {
            [gn, ho, wo, 2] => (gn, ho, wo),
            _ => return Err(GridSampleError::GridShape(l2.dims().to_vec()).into()),
        };
        if gn != n {
            return Err(GridSampleError::BatchMismatch { input: n, grid: gn }.into());
        }
        check_plane_size(h, w)?;
        let shape = Shape::from((n, c, ho, wo));
        let (Some((i0, i1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            return Err(GridSampleError::NotContiguous("input or grid").into());
        };
        let dims32 = [n, c, h, w, ho, wo].map(|v| u32::try_from(v).ok());
        let [
            Some(n32),
            Some(c32),
            Some(h32),
            Some(w32),
            Some(ho32),
            Some(wo32),
        ] = dims32
        else {
            return Err(GridSampleError::PlaneTooLarge { h, w }.into());
        };
        let pixels = n * ho * wo;
        let dev = s1.device().clone();

        /// What one launch computes.
        struct Job {
            /// n, c, h, w, ho, wo.
            dims: [u32; 6],
            align_corners: bool,
            pixels: usize,
            elems: usize,
            plane_in: usize,
        }

        fn run<T: DeviceRepr + ValidAsZeroBits + Float>(
            dev: &CudaDevice,
            kernel: &str,
            input: &CudaView<'_, T>,
            grid: &CudaView<'_, T>,
            job: &Job,
        ) -> candle_core::Result<CudaSlice<T>> {
            let Job {
                dims,
                align_corners,
                pixels,
                elems,
                plane_in,
            } = *job;
            if elems == 0 || plane_in == 0 {
                // Nothing to sample, or every corner outside an empty image: zeros, as on the CPU.
                return dev.alloc_zeros::<T>(elems);
            }
            let [n, c, h, w, ho, wo] = dims;
            let ax = Axis::<T>::new(w as usize, align_corners);
            let ay = Axis::<T>::new(h as usize, align_corners);
            let func =
                dev.get_or_load_custom_func(kernel, "marionette_grid_sample", GRID_SAMPLE_PTX)?;
            // SAFETY: every element is written by the kernel (one thread per output pixel, all channels).
            let out = unsafe { dev.alloc::<T>(elems)? };
            let ac = u32::from(align_corners);
            let blocks = u32::try_from(pixels.div_ceil(256)).map_err(|_| {
                GridSampleError::PlaneTooLarge {
                    h: h as usize,
                    w: w as usize,
                }
            })?;
            let cfg = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = func.builder();
            b.arg(input);
            b.arg(grid);
            b.arg(&out);
            b.arg(&n);
            b.arg(&c);
            b.arg(&h);
            b.arg(&w);
            b.arg(&ho);
            b.arg(&wo);
            b.arg(&ac);
            b.arg(&ax.scale);
            b.arg(&ay.scale);
            // SAFETY: the argument list matches `grid_sample.cu`'s signature; `input` holds N*C*H*W and
            // `grid` N*Ho*Wo*2 contiguous elements, `out` N*C*Ho*Wo.
            unsafe { b.launch(cfg) }.w()?;
            Ok(out)
        }

        let job = Job {
            dims: [n32, c32, h32, w32, ho32, wo32],
            align_corners: self.align_corners,
            pixels,
            elems: shape.elem_count(),
            plane_in: h * w,
        };
        let slice = match (&s1.slice, &s2.slice) {
            (
                candle_core::cuda_backend::CudaStorageSlice::F32(a),
                candle_core::cuda_backend::CudaStorageSlice::F32(g),
            ) => candle_core::cuda_backend::CudaStorageSlice::F32(run::<f32>(
                &dev,
                "grid_sample_f32",
                &a.slice(i0..i1),
                &g.slice(g0..g1),
                &job,
            )?),
            (
                candle_core::cuda_backend::CudaStorageSlice::F64(a),
                candle_core::cuda_backend::CudaStorageSlice::F64(g),
            ) => candle_core::cuda_backend::CudaStorageSlice::F64(run::<f64>(
                &dev,
                "grid_sample_f64",
                &a.slice(i0..i1),
                &g.slice(g0..g1),
                &job,
            )?),
            _ if s1.dtype() != s2.dtype() => {
                return Err(GridSampleError::DTypeMismatch {
                    input: s1.dtype(),
                    grid: s2.dtype(),
                }
                .into());
            }
            _ => return Err(GridSampleError::UnsupportedDType(s1.dtype()).into()),
        };
        Ok((CudaStorage { slice, device: dev }, shape))
    }
}

/// The float types the kernel runs in (the input's own precision, as PyTorch's CPU kernel does).
trait Float:
    WithDType
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
{
    fn floor(self) -> Self;
    /// `self` (an integral value) as i64, saturating; NaN gives 0.
    fn to_i64(self) -> i64;
    /// `self * a + b` with a single rounding.
    fn fma(self, a: Self, b: Self) -> Self;
}

impl Float for f32 {
    #[inline(always)]
    fn floor(self) -> Self {
        f32::floor(self)
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
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
    fn to_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn fma(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
}

/// The four corners one output pixel reads: offsets into the input plane and bilinear weights,
/// in PyTorch's order nw, ne, sw, se. Corners outside the image have weight 0 and offset 0.
#[derive(Clone, Copy)]
struct Taps<T> {
    off: [u32; 4],
    w: [T; 4],
}

/// Maps normalised coordinates to input pixel coordinates along one axis (PyTorch `ComputeLocationBase`).
#[derive(Clone, Copy)]
struct Axis<T> {
    scale: T,
    neg_half: T,
    one: T,
    align_corners: bool,
    size: i64,
}

impl<T: Float> Axis<T> {
    fn new(size: usize, align_corners: bool) -> Self {
        // PyTorch: scaling_factor = (size - 1) / 2 (align_corners) or size / 2, computed in scalar_t.
        let scale = if align_corners {
            T::from_f64(size.saturating_sub(1) as f64) / T::from_f64(2.0)
        } else {
            T::from_f64(size as f64) / T::from_f64(2.0)
        };
        Self {
            scale,
            neg_half: T::from_f64(-0.5),
            one: T::from_f64(1.0),
            align_corners,
            size: i64::try_from(size).unwrap_or(i64::MAX),
        }
    }

    #[inline(always)]
    fn unnormalize(&self, g: T) -> T {
        if self.align_corners {
            (g + self.one) * self.scale
        } else {
            // PyTorch: (in + 1) * scaling_factor - 0.5, contracted to one fma by the compiler.
            (g + self.one).fma(self.scale, self.neg_half)
        }
    }
}

/// Computes the taps of one output pixel from its grid point (gx, gy).
#[inline(always)]
fn taps_for<T: Float>(gx: T, gy: T, ax: &Axis<T>, ay: &Axis<T>, zero: T) -> Taps<T> {
    let x = ax.unnormalize(gx);
    let y = ay.unnormalize(gy);
    let x_w = x.floor();
    let y_n = y.floor();
    let w = x - x_w;
    let e = ax.one - w;
    let n = y - y_n;
    let s = ax.one - n;
    let weights = [s * e, s * w, n * e, n * w];

    let ix_w = x_w.to_i64();
    let iy_n = y_n.to_i64();
    let ix_e = ix_w.saturating_add(1);
    let iy_s = iy_n.saturating_add(1);
    let in_x = |i: i64| (0..ax.size).contains(&i);
    let in_y = |i: i64| (0..ay.size).contains(&i);
    let corners = [(ix_w, iy_n), (ix_e, iy_n), (ix_w, iy_s), (ix_e, iy_s)];

    let mut taps = Taps {
        off: [0; 4],
        w: [zero; 4],
    };
    for (k, &(ix, iy)) in corners.iter().enumerate() {
        if in_x(ix) && in_y(iy) {
            // In range: 0 <= iy * W + ix < H * W <= u32::MAX (checked before the kernel runs).
            taps.off[k] = (iy * ax.size + ix) as u32;
            taps.w[k] = weights[k];
        }
    }
    taps
}

/// Output pixels per tap table: 4096 pixels make 128 KiB of f32 taps, which stay in L2 while every channel
/// of a group is sampled.
const PIXELS_PER_BLOCK: usize = 4096;
/// Smallest channel group worth a tap table of its own (recomputing taps costs about one channel's work).
const MIN_CHANNELS_PER_GROUP: usize = 8;

/// One piece of parallel work: output rows `row0..row0 + rows` of batch item `n`, for channels `c0..`,
/// one output slice per channel (each `rows * Wo` long).
struct Unit<'a, T> {
    n: usize,
    row0: usize,
    rows: usize,
    c0: usize,
    outs: Vec<&'a mut [T]>,
}

fn sample_cpu<T: Float>(
    input: &[T],
    l_in: &Layout,
    grid: &[T],
    l_grid: &Layout,
    align_corners: bool,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let (n, c, h, w) = match *l_in.dims() {
        [n, c, h, w] => (n, c, h, w),
        _ => return Err(GridSampleError::InputRank(l_in.dims().to_vec()).into()),
    };
    let (gn, ho, wo) = match *l_grid.dims() {
        [gn, ho, wo, 2] => (gn, ho, wo),
        _ => return Err(GridSampleError::GridShape(l_grid.dims().to_vec()).into()),
    };
    if gn != n {
        return Err(GridSampleError::BatchMismatch { input: n, grid: gn }.into());
    }
    check_plane_size(h, w)?;
    let input = match l_in.contiguous_offsets() {
        Some((start, end)) => &input[start..end],
        None => return Err(GridSampleError::NotContiguous("input").into()),
    };
    let grid = match l_grid.contiguous_offsets() {
        Some((start, end)) => &grid[start..end],
        None => return Err(GridSampleError::NotContiguous("grid").into()),
    };

    let shape = Shape::from((n, c, ho, wo));
    let zero = T::from_f64(0.0);
    let plane_out = ho * wo;
    let plane_in = h * w;
    let mut out = vec![zero; shape.elem_count()];
    if out.is_empty() || plane_in == 0 {
        // Nothing to compute, or an empty image: every corner is outside, so the output is all zeros.
        return Ok((out, shape));
    }

    let rows_per_block = (PIXELS_PER_BLOCK / wo).clamp(1, ho);
    let blocks_per_plane = ho.div_ceil(rows_per_block);
    // Enough units to keep every thread busy, without splitting channels finer than needed.
    let wanted_units = 4 * rayon::current_num_threads();
    let max_groups = c.div_ceil(MIN_CHANNELS_PER_GROUP).max(1);
    let groups = wanted_units
        .div_ceil(n * blocks_per_plane)
        .clamp(1, max_groups);
    let channels_per_group = c.div_ceil(groups);

    // Hand every unit the output blocks it writes: disjoint slices, split off in the output's own order.
    let mut units: Vec<Unit<'_, T>> = Vec::new();
    for (bn, out_n) in out.chunks_mut(c * plane_out).enumerate() {
        let first_unit = units.len();
        for (ci, plane) in out_n.chunks_mut(plane_out).enumerate() {
            for (bi, block) in plane.chunks_mut(rows_per_block * wo).enumerate() {
                let gi = ci / channels_per_group;
                if ci % channels_per_group == 0 && bi == 0 {
                    // First channel of group gi: open this group's units (one per row block).
                    for b in 0..blocks_per_plane {
                        let row0 = b * rows_per_block;
                        units.push(Unit {
                            n: bn,
                            row0,
                            rows: rows_per_block.min(ho - row0),
                            c0: ci,
                            outs: Vec::with_capacity(channels_per_group),
                        });
                    }
                }
                if let Some(unit) = units.get_mut(first_unit + gi * blocks_per_plane + bi) {
                    unit.outs.push(block);
                }
            }
        }
    }

    let ctx = Ctx {
        ax: Axis::<T>::new(w, align_corners),
        ay: Axis::<T>::new(h, align_corners),
        zero,
        c,
        ho,
        wo,
        plane_in,
    };
    let fma = crate::ops::cpu::has_fma();
    units
        .into_par_iter()
        .for_each_init(Vec::new, |taps: &mut Vec<Taps<T>>, unit| {
            run_unit_dispatch(fma, &ctx, unit, taps, input, grid)
        });
    Ok((out, shape))
}

/// Sizes and coordinate maps shared by every unit of one call.
struct Ctx<T> {
    ax: Axis<T>,
    ay: Axis<T>,
    zero: T,
    c: usize,
    ho: usize,
    wo: usize,
    plane_in: usize,
}

fn run_unit_dispatch<T: Float>(
    fma: bool,
    ctx: &Ctx<T>,
    unit: Unit<'_, T>,
    taps: &mut Vec<Taps<T>>,
    input: &[T],
    grid: &[T],
) {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: `run_unit_fma` only requires the `fma` target feature, which `cpu::has_fma` detected on this CPU.
        unsafe { run_unit_fma(ctx, unit, taps, input, grid) };
        return;
    }
    let _ = fma;
    run_unit(ctx, unit, taps, input, grid);
}

/// [`run_unit`] compiled with hardware FMA (same results, `mul_add` becomes one instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn run_unit_fma<T: Float>(
    ctx: &Ctx<T>,
    unit: Unit<'_, T>,
    taps: &mut Vec<Taps<T>>,
    input: &[T],
    grid: &[T],
) {
    run_unit(ctx, unit, taps, input, grid);
}

/// Samples one unit: computes the taps of its output pixels once, then applies them to each channel.
#[inline(always)]
fn run_unit<T: Float>(
    ctx: &Ctx<T>,
    unit: Unit<'_, T>,
    taps: &mut Vec<Taps<T>>,
    input: &[T],
    grid: &[T],
) {
    // Grid points of this unit's rows: (x, y) pairs, row-major.
    let g0 = (unit.n * ctx.ho + unit.row0) * ctx.wo * 2;
    let g = &grid[g0..g0 + unit.rows * ctx.wo * 2];
    taps.clear();
    taps.extend(
        g.chunks_exact(2)
            .map(|p| taps_for(p[0], p[1], &ctx.ax, &ctx.ay, ctx.zero)),
    );
    for (k, dst) in unit.outs.into_iter().enumerate() {
        let p = (unit.n * ctx.c + unit.c0 + k) * ctx.plane_in;
        let src = &input[p..p + ctx.plane_in];
        for (o, t) in dst.iter_mut().zip(taps.iter()) {
            // PyTorch: nw_val*nw + ne_val*ne + sw_val*sw + se_val*se, contracted to a chain of fmas.
            let nw = src[t.off[0] as usize] * t.w[0];
            let ne = src[t.off[1] as usize].fma(t.w[1], nw);
            let sw = src[t.off[2] as usize].fma(t.w[2], ne);
            *o = src[t.off[3] as usize].fma(t.w[3], sw);
        }
    }
}
