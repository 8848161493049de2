//! Bilinear resize as PyTorch's `F.interpolate(x, size=(h, w), mode="bilinear")` with `align_corners` left
//! unspecified (= False since torch 0.4.0): the call form of FOMM generator.py lines 55 and 83, which resize the
//! dense-motion deformation and occlusion map to the feature resolution (up or down, any ratio, no antialias).
//!
//! PyTorch semantics (`area_pixel_compute_source_index`, align_corners = False): `scale = in / out`,
//! `src = max(scale * (dst + 0.5) - 0.5, 0)`, `i0 = floor(src)`, `i1 = min(i0 + 1, in - 1)`,
//! `lambda = src - i0`. Candle's own `Tensor::upsample_bilinear2d(h, w, false)` implements exactly this
//! (computing in f64 and rounding once, so it agrees with PyTorch's f32 arithmetic to about 1e-7 on the
//! `ops.safetensors` fixtures), on CPU and CUDA, so this module is a thin wrapper around it that adds input
//! checks and avoids one candle quirk (see [`interpolate_bilinear`]).

use candle_core::Tensor;

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
}

impl From<InterpolateError> for candle_core::Error {
    fn from(e: InterpolateError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// Resizes `input` (N, C, H, W) to (N, C, `out_h`, `out_w`) bilinearly with PyTorch's
/// `F.interpolate(input, size=(out_h, out_w), mode="bilinear")` semantics (align_corners = False, no antialias).
///
/// When the size does not change the input is returned as is: PyTorch's result equals the input then, and
/// candle's kernel has a shortcut for that case which copies the raw storage without honouring strides or
/// offsets (wrong for a strided or narrowed input).
pub fn interpolate_bilinear(input: &Tensor, out_h: usize, out_w: usize) -> candle_core::Result<Tensor> {
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
        return Ok(input.clone());
    }
    input.upsample_bilinear2d(out_h, out_w, false)
}

/// Times [`interpolate_bilinear`] on the FOMM resize sizes: the (1, 2, 64, 64) deformation to 256x256
/// (tiny / vox-256 `deformed`), and 64x64 -> 16x16 (tiny2's downsampling). Returns `(case name, median ms)`.
pub fn bench_interpolate(iters: usize) -> candle_core::Result<Vec<(String, f64)>> {
    let cases = [(1usize, 2usize, 64usize, 64usize, 256usize, 256usize), (1, 2, 64, 64, 16, 16)];
    let mut results = Vec::new();
    for &(n, c, h, w, oh, ow) in &cases {
        let len = n * c * h * w;
        let data: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let input = Tensor::from_vec(data, (n, c, h, w), &candle_core::Device::Cpu)?;
        interpolate_bilinear(&input, oh, ow)?;
        let mut times = Vec::with_capacity(iters.max(1));
        for _ in 0..iters.max(1) {
            let t = std::time::Instant::now();
            interpolate_bilinear(&input, oh, ow)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        results.push((
            format!("interpolate_bilinear ({n},{c},{h},{w}) -> {oh}x{ow}"),
            times[times.len() / 2],
        ));
    }
    Ok(results)
}
