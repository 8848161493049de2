//! FOMM's convolutions on the CPU: one layer type, [`ConvLayer`], one planner ([`plan`]) that
//! picks each call's kernel family from the layer's shape, its precision and the map, and the
//! families themselves, one file each:
//!
//! | family | file | runs |
//! |---|---|---|
//! | Winograd F(2x2, 3x3) | `winograd.rs` (f32), `winograd_bf16.rs` (bf16) | 3x3 layers on maps of 16x16 and more (bf16: 8x8) |
//! | im2col | `im2col.rs` (f32, 3x3), `im2col_bf16.rs` (bf16, any kernel) | the deepest maps, where reading the weights dominates; the wider heads at bf16 |
//! | fused up block | `upconv.rs` (both) | nearest 2x upsampling + 3x3 convolution on the small map |
//! | direct | `direct.rs` (f32) | the 7x7 heads, in vector registers |
//! | Candle | (Candle's `conv2d`) | tensors that are not f32 on the CPU |
//!
//! `bf16.rs` is the bf16 micro-kernel the bf16 families share, `scratch.rs` the per-thread
//! buffers, `plan.rs` every threshold and the band-size rule.
//!
//! A layer's precision is fixed when it is built (as Candle fixes a tensor's dtype); its families'
//! weights (Winograd's, the fused up block's, the packed bf16 ones) are made on the first call
//! that needs them, so layers that only see small maps never hold Winograd weights. At f32 every
//! family computes the same convolution as the original's to f32 rounding (the parity tests);
//! at bf16 the products take bf16 operands with f32 sums, activations stay f32 between layers.
//! Bias is added by the kernels.

mod bf16;
mod direct;
mod im2col;
mod im2col_bf16;
pub mod plan;
mod scratch;
mod upconv;
mod winograd;
mod winograd_bf16;

use std::sync::OnceLock;

use candle_core::{DType, Device, Storage, Tensor};

pub use bf16::{from_bf16, to_bf16};
pub use direct::{DirectIsa, conv2d_direct, conv2d_direct_with};
pub use im2col_bf16::ConvBf16;
pub use plan::{Family, LayerShape, Plan, Schedule};
pub use upconv::UpConv;

use crate::ops::precision::Precision;

/// Errors from building or running a [`ConvLayer`]; returned wrapped in a `candle_core::Error`.
#[derive(Debug, thiserror::Error)]
pub enum ConvError {
    /// The weight tensor is not (Cout, Cin, k, k).
    #[error(
        "convolution weight has shape {0:?}, expected (out_channels, in_channels, k, k): \
         check that the checkpoint entry belongs to a square convolution"
    )]
    BadWeightShape(Vec<usize>),
    /// The bias does not hold one value per output channel.
    #[error(
        "convolution bias has shape {got:?}, expected ({out_channels}): \
         check that the bias belongs to the same layer as the weight"
    )]
    BadBiasShape {
        /// Shape of the given bias.
        got: Vec<usize>,
        /// Number of output channels of the weight.
        out_channels: usize,
    },
    /// The weight has a zero-sized dimension.
    #[error(
        "convolution weight has an empty dimension {0:?}: a layer needs at least one input and one output channel"
    )]
    EmptyWeight(Vec<usize>),
    /// The input is not (N, Cin, H, W) with the layer's Cin.
    #[error(
        "convolution input has shape {got:?}, expected (batch, {in_channels}, height, width): \
         the previous layer's output does not match this layer's input channels"
    )]
    BadInputShape {
        /// Shape of the given input.
        got: Vec<usize>,
        /// Input channels the layer was built for.
        in_channels: usize,
    },
    /// The padded input is smaller than the kernel.
    #[error(
        "convolution input of {}x{} pixels is smaller than the {kernel}x{kernel} kernel with \
         padding {padding}: the image given to the model is too small",
        got.0, got.1
    )]
    InputSmallerThanKernel {
        /// (height, width) of the input.
        got: (usize, usize),
        /// The layer's kernel side.
        kernel: usize,
        /// The layer's padding.
        padding: usize,
    },
    /// A plan forced on a layer it does not fit (a test asking for Winograd on a 7x7 layer).
    #[error(
        "the {family:?} kernel does not take a {kernel}x{kernel} convolution with padding {padding}"
    )]
    PlanDoesNotFit {
        /// The family asked for.
        family: Family,
        /// The layer's kernel side.
        kernel: usize,
        /// The layer's padding.
        padding: usize,
    },
    /// A buffer had an unexpected size (an internal inconsistency, reported instead of panicking).
    #[error("convolution internal error: {0}; please report this as a bug")]
    Internal(&'static str),
}

fn err(e: ConvError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// A square, stride 1, zero-padded convolution with bias (`nn.Conv2d` as FOMM uses it), its
/// precision fixed at construction and its kernels' weights made on first use.
#[derive(Debug)]
pub struct ConvLayer {
    /// (Cout, Cin, k, k), contiguous.
    weight: Tensor,
    bias: Tensor,
    shape: LayerShape,
    precision: Precision,
    /// The weight and bias are f32 tensors on the CPU (otherwise everything runs on Candle).
    cpu_f32: bool,
    bias_values: Vec<f32>,
    /// Winograd-domain weights `U_k = G g G^T`, (16, Cout, Cin) row-major.
    winograd_f32: OnceLock<Vec<f32>>,
    winograd_bf16: OnceLock<winograd_bf16::Weights>,
    im2col_bf16: OnceLock<ConvBf16>,
    up: OnceLock<UpConv>,
}

impl Clone for ConvLayer {
    /// A copy with the same weights; its kernels' weights are made again on first use.
    fn clone(&self) -> Self {
        Self {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            shape: self.shape,
            precision: self.precision,
            cpu_f32: self.cpu_f32,
            bias_values: self.bias_values.clone(),
            winograd_f32: OnceLock::new(),
            winograd_bf16: OnceLock::new(),
            im2col_bf16: OnceLock::new(),
            up: OnceLock::new(),
        }
    }
}

/// The value of `cell`, made by `make` on the first call (a failure leaves it empty).
fn made<T>(
    cell: &OnceLock<T>,
    make: impl FnOnce() -> candle_core::Result<T>,
) -> candle_core::Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = make()?;
    Ok(cell.get_or_init(|| v))
}

impl ConvLayer {
    /// A layer from a (Cout, Cin, k, k) weight, an optional (Cout) bias (zeros without), its
    /// padding and the precision its products run at.
    pub fn new(
        weight: &Tensor,
        bias: Option<&Tensor>,
        padding: usize,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        let dims = weight.dims().to_vec();
        let (c_out, c_in, kernel) = match dims.as_slice() {
            &[co, ci, k, k2] if k == k2 => (co, ci, k),
            _ => return Err(err(ConvError::BadWeightShape(dims))),
        };
        if c_out == 0 || c_in == 0 || kernel == 0 {
            return Err(err(ConvError::EmptyWeight(dims)));
        }
        let bias = match bias {
            Some(b) if b.dims() != [c_out] => {
                return Err(err(ConvError::BadBiasShape {
                    got: b.dims().to_vec(),
                    out_channels: c_out,
                }));
            }
            Some(b) => b.clone(),
            None => Tensor::zeros(c_out, weight.dtype(), weight.device())?,
        };
        let is_cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        let cpu_f32 = is_cpu_f32(weight) && is_cpu_f32(&bias);
        let bias_values = if cpu_f32 {
            bias.to_vec1::<f32>()?
        } else {
            Vec::new()
        };
        Ok(Self {
            weight: weight.contiguous()?,
            bias,
            shape: LayerShape {
                c_out,
                c_in,
                kernel,
                padding,
            },
            precision,
            cpu_f32,
            bias_values,
            winograd_f32: OnceLock::new(),
            winograd_bf16: OnceLock::new(),
            im2col_bf16: OnceLock::new(),
            up: OnceLock::new(),
        })
    }

    /// The layer's shape.
    pub fn shape(&self) -> LayerShape {
        self.shape
    }

    /// The precision the layer was built for.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.shape.c_out
    }

    /// The (Cout, Cin, k, k) weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The (Cout) bias.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The plan for an input `x` (`upsample`: the input is first upsampled 2x, as in an up block).
    pub fn plan_for(&self, x: &Tensor, upsample: bool) -> candle_core::Result<Plan> {
        let (_, h, w) = self.check_input(x)?;
        let cpu_f32 = self.cpu_f32 && x.device().is_cpu() && x.dtype() == DType::F32;
        Ok(plan::plan(
            &self.shape,
            self.precision,
            cpu_f32,
            (h, w),
            upsample,
        ))
    }

    /// Applies the convolution to an (N, Cin, H, W) tensor.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let plan = self.plan_for(x, false)?;
        self.forward_planned(x, plan)
    }

    /// Nearest 2x upsampling, then the convolution (`UpBlock2d`'s `F.interpolate` + conv).
    pub fn forward_upsampled(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let plan = self.plan_for(x, true)?;
        self.forward_planned(x, plan)
    }

    /// Candle's own convolution plus bias (the reference the kernels are compared with).
    pub fn forward_candle(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.conv2d(&self.weight, self.shape.padding, 1, 1, 1)?;
        y.broadcast_add(&self.bias.reshape((1, self.shape.c_out, 1, 1))?)
    }

    /// Runs `plan` on `x` (what `forward` and `forward_upsampled` do with the planner's choice;
    /// tests force the families with it). A plan for the Up family upsamples inside the kernel.
    pub fn forward_planned(&self, x: &Tensor, plan: Plan) -> candle_core::Result<Tensor> {
        let (n, h, w) = self.check_input(x)?;
        if plan.upsample_first {
            let up = x.upsample_nearest2d(2 * h, 2 * w)?;
            return self.forward_planned(
                &up,
                Plan {
                    upsample_first: false,
                    ..plan
                },
            );
        }
        let LayerShape {
            c_out,
            c_in,
            kernel: k,
            padding: p,
        } = self.shape;
        let (ho, wo) = match plan.family {
            Family::Up => (2 * h, 2 * w),
            _ => (
                (h + 2 * p + 1).saturating_sub(k),
                (w + 2 * p + 1).saturating_sub(k),
            ),
        };
        if n == 0 || h == 0 || w == 0 {
            return Tensor::zeros((n, c_out, ho, wo), x.dtype(), x.device());
        }
        if h + 2 * p < k || w + 2 * p < k {
            return Err(err(ConvError::InputSmallerThanKernel {
                got: (h, w),
                kernel: k,
                padding: p,
            }));
        }
        let cpu_f32 = self.cpu_f32 && x.device().is_cpu() && x.dtype() == DType::F32;
        if plan.family == Family::Candle || !cpu_f32 {
            return self.forward_candle(x);
        }
        let fits = match plan.family {
            Family::Winograd | Family::Up => self.shape.is_3x3_same(),
            Family::Im2col => plan.precision == Precision::Bf16 || self.shape.is_3x3_same(),
            Family::Direct(_) | Family::Candle => true,
        };
        if !fits {
            return Err(err(ConvError::PlanDoesNotFit {
                family: plan.family,
                kernel: k,
                padding: p,
            }));
        }
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let data = cpu_slice(&storage, layout.start_offset(), n * c_in * h * w)?;
        let out = self.run(&plan, data, (n, h, w))?;
        drop(storage);
        Tensor::from_vec(out, (n, c_out, ho, wo), &Device::Cpu)
    }

    /// The kernel family of `plan` on `data` (n, Cin, h, w): the output values.
    fn run(
        &self,
        plan: &Plan,
        data: &[f32],
        (n, h, w): (usize, usize, usize),
    ) -> candle_core::Result<Vec<f32>> {
        let LayerShape {
            c_out,
            c_in,
            kernel: k,
            padding: p,
        } = self.shape;
        let bias = &self.bias_values;
        let geo = winograd::Geometry {
            n,
            c_in,
            c_out,
            h,
            w,
        };
        let plane_out = (h + 2 * p - k + 1) * (w + 2 * p - k + 1);
        match (plan.family, plan.precision) {
            (Family::Winograd, Precision::F32) => {
                let u = made(&self.winograd_f32, || {
                    self.with_weight(|g| winograd::winograd_weights(g, c_out, c_in))
                })?;
                let mut out = vec![0f32; n * c_out * plane_out];
                match plan.schedule {
                    Schedule::Bands(t) => winograd::banded(data, u, bias, &geo, t, &mut out)?,
                    _ => winograd::whole_images(data, u, bias, &geo, &mut out)?,
                }
                Ok(out)
            }
            (Family::Winograd, Precision::Bf16) => {
                let wts = made(&self.winograd_bf16, || {
                    let u = self.with_weight(|g| winograd::winograd_weights(g, c_out, c_in))?;
                    winograd_bf16::Weights::new(&u, c_out, c_in)
                })?;
                let mut out = vec![0f32; n * c_out * plane_out];
                match plan.schedule {
                    Schedule::Bands(t) => {
                        winograd_bf16::banded(data, wts, bias, &geo, t, &mut out)?
                    }
                    _ => winograd_bf16::whole_images(data, wts, bias, &geo, &mut out)?,
                }
                Ok(out)
            }
            (Family::Im2col, Precision::F32) => {
                let mut out = vec![0f32; n * c_out * plane_out];
                self.with_weight(|g| im2col::conv3x3(data, g, bias, (n, c_in, h, w), &mut out))?;
                Ok(out)
            }
            (Family::Im2col, Precision::Bf16) => {
                let kernel = made(&self.im2col_bf16, || {
                    self.with_weight(|g| ConvBf16::new(g, (c_out, c_in, k), bias, p))
                })?;
                match kernel.forward(data, (n, h, w))? {
                    Some((out, _, _)) => Ok(out),
                    None => Err(err(ConvError::Internal(
                        "kernel larger than its padded input",
                    ))),
                }
            }
            (Family::Up, precision) => {
                let up = made(&self.up, || {
                    self.with_weight(|g| UpConv::new(g, c_out, c_in, bias, precision))
                })?;
                up.forward(data, (n, h, w), plan.schedule)
            }
            (Family::Direct(isa), _) => self.with_weight(|g| {
                Ok(direct::conv(isa, data, g, bias, (n, c_in, h, w), (c_out, k), p).0)
            }),
            (Family::Candle, _) => Err(err(ConvError::Internal(
                "Candle's convolution reached the CPU kernels",
            ))),
        }
    }

    /// Runs `f` on the weight's values, (Cout, Cin, k, k) row-major (the layer must be `cpu_f32`;
    /// `new` made the weight contiguous).
    fn with_weight<R>(
        &self,
        f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let (storage, layout) = self.weight.storage_and_layout();
        let len = self.weight.elem_count();
        f(cpu_slice(&storage, layout.start_offset(), len)?)
    }

    /// (n, h, w) of an input, checked against the layer.
    fn check_input(&self, x: &Tensor) -> candle_core::Result<(usize, usize, usize)> {
        match x.dims() {
            &[n, c, h, w] if c == self.shape.c_in => Ok((n, h, w)),
            d => Err(err(ConvError::BadInputShape {
                got: d.to_vec(),
                in_channels: self.shape.c_in,
            })),
        }
    }
}

/// `len` f32 values from `start` of a CPU storage.
fn cpu_slice(storage: &Storage, start: usize, len: usize) -> candle_core::Result<&[f32]> {
    let all: &[f32] = match storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
        _ => {
            return Err(err(ConvError::Internal("CPU tensor without CPU storage")));
        }
    };
    all.get(start..start + len)
        .ok_or(err(ConvError::Internal("storage shorter than its shape")))
}
