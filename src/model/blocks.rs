//! The building blocks of `modules/util.py`: ResBlock2d, UpBlock2d, DownBlock2d, SameBlock2d,
//! plus the convolution and inference-mode batch norm they are made of.
//!
//! Batch norm in eval mode is an affine map per channel (sync_batchnorm/batchnorm.py lines 48-53:
//! `F.batch_norm` with the running statistics, eps 1e-5). Where a batch norm directly follows a
//! convolution (Up/Down/SameBlock2d) it is folded into the convolution's weights at load time,
//! which saves a full pass over the activations per block.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use std::sync::{Arc, OnceLock};

use super::conv::{Conv3x3, ConvBf16, UpConv};
use super::precision::Precision;

/// `nn.BatchNorm2d` / `SynchronizedBatchNorm2d` default eps.
const BN_EPS: f64 = 1e-5;

/// A 2-D convolution with bias (`nn.Conv2d`, square stride 1, symmetric padding). 3x3 kernels
/// with padding 1, most of FOMM's work, run through the Winograd kernel of [`super::conv`].
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    fast: Option<Conv3x3>,
    /// The bf16 product for other kernel sizes (heads), when the precision is bf16.
    bf16: Option<Arc<ConvBf16>>,
}

impl Conv2d {
    /// Loads `weight` (out, in, k, k) and `bias` (out) under `vb`.
    pub fn new(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = vb.get((c_out, c_in, kernel, kernel), "weight")?;
        let bias = vb.get(c_out, "bias")?;
        Self::from_parts(weight, bias, padding)
    }

    fn from_parts(weight: Tensor, bias: Tensor, padding: usize) -> Result<Self> {
        let fast = match weight.dims() {
            [_, _, 3, 3] if padding == 1 => Some(Conv3x3::new(&weight, Some(&bias))?),
            _ => None,
        };
        Ok(Self {
            weight,
            bias,
            padding,
            fast,
            bf16: None,
        })
    }

    /// Sets the precision of this convolution's products. Heads with fewer than
    /// [`BF16_MIN_HEAD_CHANNELS`] outputs stay at f32: the bf16 kernel computes 8 output
    /// channels at a time, so for them it would do mostly wasted work.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if let Some(fast) = &mut self.fast {
            return fast.set_precision(precision);
        }
        let cpu_f32 = self.weight.device().is_cpu() && self.weight.dtype() == DType::F32;
        self.bf16 = match precision {
            Precision::Bf16 if cpu_f32 && self.out_channels() >= BF16_MIN_HEAD_CHANNELS => {
                let (c_out, c_in, k, _) = self.weight.dims4()?;
                Some(Arc::new(ConvBf16::new(
                    &self.weight.flatten_all()?.to_vec1::<f32>()?,
                    (c_out, c_in, k),
                    &self.bias.to_vec1::<f32>()?,
                    self.padding,
                )?))
            }
            _ => None,
        };
        Ok(())
    }

    pub fn out_channels(&self) -> usize {
        self.bias.dims1().unwrap_or(0)
    }

    /// Folds a following inference batch norm `y = x * scale + shift` into this convolution.
    fn fold(self, bn: &BatchNorm) -> Result<Self> {
        let weight = self
            .weight
            .broadcast_mul(&bn.scale.reshape(((), 1, 1, 1))?)?;
        let bias = ((&self.bias * &bn.scale.flatten_all()?)? + bn.shift.flatten_all()?)?;
        Self::from_parts(weight, bias, self.padding)
    }
}

/// Layers other than 3x3 / padding 1 with at most this many output channels run the direct
/// kernel at f32 (every FOMM head); wider ones candle's convolution.
const DIRECT_MAX_CHANNELS: usize = 64;

/// Heads with at least this many output channels use the bf16 product at bf16 precision.
pub const BF16_MIN_HEAD_CHANNELS: usize = 8;

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(fast) = &self.fast {
            return fast.forward(x);
        }
        if let Some(k) = &self.bf16
            && x.device().is_cpu()
            && x.dtype() == DType::F32
        {
            let (n, _, h, w) = x.dims4()?;
            let data = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
            if let Some((y, ho, wo)) = k.forward(&data, (n, h, w))? {
                return Tensor::from_vec(y, (n, k.out_channels(), ho, wo), x.device());
            }
        }
        // The 7x7 heads (at most 40 output channels in FOMM): the direct kernel beats
        // candle's im2col by far and needs no (H*W) x (C*49) matrix.
        if self.bias.dims1()? <= DIRECT_MAX_CHANNELS
            && let Some(y) = super::conv::conv2d_direct(x, &self.weight, &self.bias, self.padding)?
        {
            return Ok(y);
        }
        let y = x.conv2d(&self.weight, self.padding, 1, 1, 1)?;
        y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)
    }
}

/// Inference batch norm as a per-channel affine map, with the statistics of the checkpoint.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// weight / sqrt(running_var + eps), shaped (1, C, 1, 1).
    scale: Tensor,
    /// bias - running_mean * scale, shaped (1, C, 1, 1).
    shift: Tensor,
}

impl BatchNorm {
    pub fn new(vb: VarBuilder, channels: usize) -> Result<Self> {
        let weight = vb.get(channels, "weight")?;
        let bias = vb.get(channels, "bias")?;
        let mean = vb.get(channels, "running_mean")?;
        let var = vb.get(channels, "running_var")?;
        // Present in every state_dict of the original; unused in eval mode.
        let _ = vb.get_with_hints_dtype(
            (),
            "num_batches_tracked",
            candle_nn::Init::Const(0.),
            DType::I64,
        )?;
        // Computed in f64 so that folding adds no rounding of its own beyond the final cast.
        let w64 = weight.to_dtype(DType::F64)?;
        let inv_std = ((var.to_dtype(DType::F64)? + BN_EPS)?.sqrt()?.recip())?;
        let scale64 = (w64 * &inv_std)?;
        let shift64 = (bias.to_dtype(DType::F64)? - (mean.to_dtype(DType::F64)? * &scale64)?)?;
        let dtype = weight.dtype();
        Ok(Self {
            scale: scale64.to_dtype(dtype)?.reshape((1, channels, 1, 1))?,
            shift: shift64.to_dtype(dtype)?.reshape((1, channels, 1, 1))?,
        })
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)
    }
}

/// Conv followed by batch norm, folded into one convolution.
fn conv_bn(
    vb: &VarBuilder,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    padding: usize,
) -> Result<Conv2d> {
    let conv = Conv2d::new(vb.pp("conv"), c_in, c_out, kernel, padding)?;
    let norm = BatchNorm::new(vb.pp("norm"), c_out)?;
    conv.fold(&norm)
}

/// `ResBlock2d`: x + conv2(relu(norm2(conv1(relu(norm1(x)))))), resolution preserved.
#[derive(Debug, Clone)]
pub struct ResBlock2d {
    norm1: BatchNorm,
    /// conv1 with norm2 folded in.
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResBlock2d {
    pub fn new(vb: VarBuilder, features: usize, kernel: usize, padding: usize) -> Result<Self> {
        // conv1 -> norm2 is conv-then-norm and folds; norm1 and conv2 stay as they are.
        let conv1 = Conv2d::new(vb.pp("conv1"), features, features, kernel, padding)?;
        let norm2 = BatchNorm::new(vb.pp("norm2"), features)?;
        Ok(Self {
            norm1: BatchNorm::new(vb.pp("norm1"), features)?,
            conv1: conv1.fold(&norm2)?,
            conv2: Conv2d::new(vb.pp("conv2"), features, features, kernel, padding)?,
        })
    }
}

impl ResBlock2d {
    /// Sets the precision of both convolutions.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.conv1.set_precision(precision)?;
        self.conv2.set_precision(precision)
    }
}

impl Module for ResBlock2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.norm1.forward(x)?.relu()?;
        // conv1 already includes norm2 (folded).
        let out = self.conv1.forward(&out)?.relu()?;
        let out = self.conv2.forward(&out)?;
        out + x
    }
}

/// `UpBlock2d`: nearest x2 upsampling, conv, batch norm, relu.
#[derive(Debug, Clone)]
pub struct UpBlock2d {
    conv: Conv2d,
    precision: Precision,
    /// On a CPU: the upsampling and the convolution in one, on the small map, at `precision`;
    /// made on the first input that suits it (`None` inside for weights elsewhere). Made lazily
    /// because the hourglasses' deepest blocks never see such a map, and their kernels would
    /// cost up to 75 MB each and load time.
    fused: OnceLock<Option<Arc<UpConv>>>,
}

impl UpBlock2d {
    pub fn new(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv_bn(&vb, c_in, c_out, kernel, padding)?,
            precision: Precision::F32,
            fused: OnceLock::new(),
        })
    }

    /// Sets the precision of the convolution (and of the fused kernel, made on first use).
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.conv.set_precision(precision)?;
        if precision != self.precision {
            self.precision = precision;
            self.fused = OnceLock::new();
        }
        Ok(())
    }

    /// The fused kernel for a 3x3 / padding 1 convolution with f32 CPU weights.
    fn fused(&self) -> Result<Option<Arc<UpConv>>> {
        if let Some(f) = self.fused.get() {
            return Ok(f.clone());
        }
        let w = &self.conv.weight;
        let made = match w.dims() {
            &[c_out, c_in, 3, 3]
                if self.conv.padding == 1 && w.device().is_cpu() && w.dtype() == DType::F32 =>
            {
                Some(Arc::new(UpConv::new(
                    &w.flatten_all()?.to_vec1::<f32>()?,
                    c_out,
                    c_in,
                    &self.conv.bias.to_vec1::<f32>()?,
                    self.precision,
                )?))
            }
            _ => None,
        };
        Ok(self.fused.get_or_init(|| made).clone())
    }
}

impl Module for UpBlock2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        if x.device().is_cpu()
            && x.dtype() == DType::F32
            && UpConv::suits(h, w)
            && let Some(fused) = self.fused()?
        {
            let data = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
            let y = fused.forward(&data, (n, h, w))?;
            return Tensor::from_vec(y, (n, fused.out_channels(), 2 * h, 2 * w), x.device())?
                .relu();
        }
        // F.interpolate(x, scale_factor=2), mode 'nearest' (util.py UpBlock2d.forward).
        let up = x.upsample_nearest2d(2 * h, 2 * w)?;
        self.conv.forward(&up)?.relu()
    }
}

/// `DownBlock2d`: conv, batch norm, relu, 2x2 average pooling.
#[derive(Debug, Clone)]
pub struct DownBlock2d {
    conv: Conv2d,
}

impl DownBlock2d {
    pub fn new(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv_bn(&vb, c_in, c_out, kernel, padding)?,
        })
    }
}

impl DownBlock2d {
    /// Sets the precision of the convolution.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.conv.set_precision(precision)
    }
}

impl Module for DownBlock2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)?.relu()?.avg_pool2d(2)
    }
}

/// `SameBlock2d`: conv, batch norm, relu, resolution preserved.
#[derive(Debug, Clone)]
pub struct SameBlock2d {
    conv: Conv2d,
}

impl SameBlock2d {
    pub fn new(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv_bn(&vb, c_in, c_out, kernel, padding)?,
        })
    }
}

impl SameBlock2d {
    /// Sets the precision of the convolution.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.conv.set_precision(precision)
    }
}

impl Module for SameBlock2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)?.relu()
    }
}

/// Channel widths follow one rule in the original: `min(max_features, block_expansion * 2**i)`.
pub fn width(block_expansion: usize, max_features: usize, i: usize) -> usize {
    max_features.min(block_expansion.saturating_mul(1usize << i.min(40)))
}

/// Softmax over dimension 1 of a (B, C, H, W) tensor, numerically stable.
pub fn softmax_dim1(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(1)?;
    e.broadcast_div(&sum)
}
