//! `AntiAliasInterpolation2d` of `modules/util.py`: Gaussian blur then keep every n-th pixel.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Band-limited downsampling by `scale` (0.25 keeps every 4th pixel after a 13x13 Gaussian).
#[derive(Debug, Clone)]
pub struct AntiAliasInterpolation2d {
    /// (1, 1, k, k) Gaussian kernel, the same for every channel.
    kernel: Tensor,
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
        Ok(Self {
            kernel,
            padding: size / 2,
            stride: stride.max(1),
        })
    }
}

impl Module for AntiAliasInterpolation2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        // A depthwise conv with the same kernel for all channels is one conv over (B*C, 1, H, W);
        // a strided conv computes exactly the pixels that `out[:, :, ::s, ::s]` keeps.
        let planes = x.reshape((b * c, 1, h, w))?;
        let out = planes.conv2d(&self.kernel, self.padding, self.stride, 1, 1)?;
        let (_, _, oh, ow) = out.dims4()?;
        out.reshape((b, c, oh, ow))
    }
}
