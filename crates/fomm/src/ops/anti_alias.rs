//! `AntiAliasInterpolation2d` of `modules/util.py`: Gaussian blur then keep every n-th pixel.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// Band-limited downsampling by `scale` (0.25 keeps every 4th pixel after a 13x13 Gaussian).
#[derive(Debug, Clone)]
pub struct AntiAliasInterpolation2d {
    /// (1, 1, k, k) Gaussian kernel, the same for every channel.
    kernel: Tensor,
    /// The kernel's values, row-major, when it is an f32 tensor on the CPU (the direct path).
    taps: Option<Vec<f32>>,
    padding: usize,
    stride: usize,
}

/// Kernel size and sigma used by the original for `scale` (util.py AntiAliasInterpolation2d:
/// sigma = (1/scale - 1)/2, size = 2*round(4*sigma) + 1).
pub fn kernel_geometry(scale: f64) -> (usize, f64) {
    let sigma = (1.0 / scale - 1.0) / 2.0;
    // Python's round() rounds half to even.
    let size = 2 * (sigma * 4.0).round_ties_even() as usize + 1;
    (size, sigma)
}

/// The normalised 2-D Gaussian kernel of the original, computed in f32 like torch does.
pub fn gaussian_kernel(scale: f64) -> Vec<f32> {
    let (size, sigma) = kernel_geometry(scale);
    let mean = (size as f32 - 1.0) / 2.0;
    let denom = (2.0 * sigma * sigma) as f32;
    let g: Vec<f32> = (0..size)
        .map(|i| {
            let d = i as f32 - mean;
            (-(d * d) / denom).exp()
        })
        .collect();
    let mut k = Vec::with_capacity(size * size);
    for gy in &g {
        for gx in &g {
            k.push(gy * gx);
        }
    }
    let sum: f32 = k.iter().sum();
    k.iter().map(|v| v / sum).collect()
}

impl AntiAliasInterpolation2d {
    /// Loads the registered buffer `weight` (channels, 1, k, k) under `vb` (`down.weight` in the
    /// checkpoints). The original fills every channel with the same kernel; channel 0's is used.
    pub fn new(vb: VarBuilder, channels: usize, scale: f64) -> Result<Self> {
        let (size, _) = kernel_geometry(scale);
        let weight = vb.get((channels, 1, size, size), "weight")?;
        let kernel = weight.narrow(0, 0, 1)?.contiguous()?;
        // int(1 / scale) in the original.
        let stride = (1.0 / scale) as usize;
        let taps = if kernel.device().is_cpu() && kernel.dtype() == DType::F32 {
            Some(kernel.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        Ok(Self {
            kernel,
            taps,
            padding: size / 2,
            stride: stride.max(1),
        })
    }
}

impl AntiAliasInterpolation2d {
    /// The blur computed directly at the kept pixels only, for f32 CPU tensors (candle's strided
    /// convolution builds an im2col matrix first: 6.7 ms for a 256x256 frame at scale 0.25,
    /// against well under 1 ms here; 2 M multiply-adds). `None` when not applicable.
    fn forward_direct(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Some(taps) = &self.taps else {
            return Ok(None);
        };
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            return Ok(None);
        }
        let (b, c, h, w) = x.dims4()?;
        let (size, pad, s) = (self.kernel.dim(3)?, self.padding, self.stride);
        if h + 2 * pad < size || w + 2 * pad < size {
            return Ok(None);
        }
        let (oh, ow) = ((h + 2 * pad - size) / s + 1, (w + 2 * pad - size) / s + 1);
        let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(ow).enumerate().for_each(|(row, acc)| {
            let (plane, oy) = (row / oh, row % oh);
            let img = &xs[plane * h * w..(plane + 1) * h * w];
            for (ky, k_row) in taps.chunks_exact(size).enumerate() {
                // Input row oy * s + ky - pad, skipped in the zero padding.
                let Some(iy) = (oy * s + ky).checked_sub(pad).filter(|&y| y < h) else {
                    continue;
                };
                let in_row = &img[iy * w..(iy + 1) * w];
                for (kx, &k) in k_row.iter().enumerate() {
                    for (ox, a) in acc.iter_mut().enumerate() {
                        if let Some(&v) =
                            (ox * s + kx).checked_sub(pad).and_then(|ix| in_row.get(ix))
                        {
                            *a += k * v;
                        }
                    }
                }
            }
        });
        Ok(Some(Tensor::from_vec(out, (b, c, oh, ow), x.device())?))
    }
}

impl Module for AntiAliasInterpolation2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.forward_direct(x)? {
            return Ok(y);
        }
        let (b, c, h, w) = x.dims4()?;
        // A depthwise conv with the same kernel for all channels is one conv over (B*C, 1, H, W);
        // a strided conv computes exactly the pixels that `out[:, :, ::s, ::s]` keeps.
        let planes = x.reshape((b * c, 1, h, w))?;
        let out = planes.conv2d(&self.kernel, self.padding, self.stride, 1, 1)?;
        let (_, _, oh, ow) = out.dims4()?;
        out.reshape((b, c, oh, ow))
    }
}
