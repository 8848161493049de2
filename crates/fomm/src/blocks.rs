//! The building blocks of `modules/util.py`: ResBlock2d, UpBlock2d, DownBlock2d, SameBlock2d,
//! plus the convolution and inference-mode batch norm they are made of.
//!
//! Batch norm in eval mode is an affine map per channel (sync_batchnorm/batchnorm.py lines 48-53:
//! `F.batch_norm` with the running statistics, eps 1e-5). Where a batch norm directly follows a
//! convolution (Up/Down/SameBlock2d) it is folded into the convolution's weights at load time,
//! which saves a full pass over the activations per block.

use candle_core::{DType, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;

use crate::ops::conv::ConvLayer;
use crate::ops::precision::Precision;

/// `nn.BatchNorm2d` / `SynchronizedBatchNorm2d` default eps.
const BN_EPS: f64 = 1e-5;

/// Where a module's weights come from and the precision its convolutions compute at: Candle's
/// `VarBuilder` with the precision beside it, handed down the module tree the way Candle hands
/// down a dtype. `pp` names sub-modules with the original's attribute names.
#[derive(Clone)]
pub struct Layers<'a> {
    vb: VarBuilder<'a>,
    precision: Precision,
}

impl<'a> Layers<'a> {
    /// Modules under `vb` at `precision`.
    pub fn new(vb: VarBuilder<'a>, precision: Precision) -> Self {
        Self { vb, precision }
    }

    /// The sub-module called `name`.
    pub fn pp(&self, name: impl ToString) -> Self {
        Self {
            vb: self.vb.pp(name),
            precision: self.precision,
        }
    }

    /// The tensor `name` of this module, of shape `shape`.
    pub fn get(&self, shape: impl Into<Shape>, name: &str) -> Result<Tensor> {
        self.vb.get(shape, name)
    }

    /// The underlying `VarBuilder`.
    pub fn vb(&self) -> &VarBuilder<'a> {
        &self.vb
    }

    /// The precision of the convolutions built from here.
    pub fn precision(&self) -> Precision {
        self.precision
    }
}

/// A 2-D convolution with bias (`nn.Conv2d`, square, stride 1, symmetric padding). The kernel
/// each call runs is chosen by [`crate::ops::conv`]'s planner.
#[derive(Debug, Clone)]
pub struct Conv2d {
    layer: ConvLayer,
}

impl Conv2d {
    /// Loads `weight` (out, in, k, k) and `bias` (out).
    pub fn new(
        layers: &Layers,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = layers.get((c_out, c_in, kernel, kernel), "weight")?;
        let bias = layers.get(c_out, "bias")?;
        Self::from_parts(&weight, &bias, padding, layers.precision())
    }

    fn from_parts(weight: &Tensor, bias: &Tensor, padding: usize, p: Precision) -> Result<Self> {
        Ok(Self {
            layer: ConvLayer::new(weight, Some(bias), padding, p)?,
        })
    }

    /// Nearest 2x upsampling, then this convolution (fused into one kernel where it pays).
    pub fn forward_upsampled(&self, x: &Tensor) -> Result<Tensor> {
        self.layer.forward_upsampled(x)
    }

    /// Folds a following inference batch norm `y = x * scale + shift` into this convolution.
    fn fold(self, bn: &BatchNorm) -> Result<Self> {
        let weight = self
            .layer
            .weight()
            .broadcast_mul(&bn.scale.reshape(((), 1, 1, 1))?)?;
        let bias = ((self.layer.bias() * &bn.scale.flatten_all()?)? + bn.shift.flatten_all()?)?;
        let shape = self.layer.shape();
        Self::from_parts(&weight, &bias, shape.padding, self.layer.precision())
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layer.forward(x)
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
    /// Loads `weight`, `bias`, `running_mean` and `running_var` (C each).
    pub fn new(layers: &Layers, channels: usize) -> Result<Self> {
        let vb = layers.vb();
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
    layers: &Layers,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    padding: usize,
) -> Result<Conv2d> {
    let conv = Conv2d::new(&layers.pp("conv"), c_in, c_out, kernel, padding)?;
    let norm = BatchNorm::new(&layers.pp("norm"), c_out)?;
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
    /// Loads `norm1`, `conv1`, `norm2`, `conv2`.
    pub fn new(layers: &Layers, features: usize, kernel: usize, padding: usize) -> Result<Self> {
        // conv1 -> norm2 is conv-then-norm and folds; norm1 and conv2 stay as they are.
        let conv1 = Conv2d::new(&layers.pp("conv1"), features, features, kernel, padding)?;
        let norm2 = BatchNorm::new(&layers.pp("norm2"), features)?;
        Ok(Self {
            norm1: BatchNorm::new(&layers.pp("norm1"), features)?,
            conv1: conv1.fold(&norm2)?,
            conv2: Conv2d::new(&layers.pp("conv2"), features, features, kernel, padding)?,
        })
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
}

impl UpBlock2d {
    /// Loads `conv` and `norm`.
    pub fn new(
        layers: &Layers,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv_bn(layers, c_in, c_out, kernel, padding)?,
        })
    }
}

impl Module for UpBlock2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // F.interpolate(x, scale_factor=2), mode 'nearest' (util.py UpBlock2d.forward), then
        // the convolution: one kernel on the small map where the planner finds it pays.
        self.conv.forward_upsampled(x)?.relu()
    }
}

/// `DownBlock2d`: conv, batch norm, relu, 2x2 average pooling.
#[derive(Debug, Clone)]
pub struct DownBlock2d {
    conv: Conv2d,
}

impl DownBlock2d {
    /// Loads `conv` and `norm`.
    pub fn new(
        layers: &Layers,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv_bn(layers, c_in, c_out, kernel, padding)?,
        })
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
    /// Loads `conv` and `norm`.
    pub fn new(
        layers: &Layers,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv_bn(layers, c_in, c_out, kernel, padding)?,
        })
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
