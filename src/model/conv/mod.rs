//! Fast CPU 3x3 / stride 1 / padding 1 convolution (NCHW, f32) through Winograd F(2x2, 3x3).
//!
//! Reference: A. Lavin and S. Gray, "Fast Algorithms for Convolutional Neural Networks",
//! CVPR 2016 (arXiv:1509.09308), section 4.1. Each 2x2 output tile `Y` is computed from the
//! 4x4 input tile `d` around it and the 3x3 filter `g` as
//!
//! ```text
//! Y = A^T [ (G g G^T) (.) (B^T d B) ] A
//! ```
//!
//! where `(.)` is an element-wise product. Summed over input channels, the element-wise
//! product becomes 16 independent matrix products `M_k = U_k V_k` with `U_k` of shape
//! (Cout, Cin) and `V_k` of shape (Cin, tiles): 16 multiplies per 2x2 outputs instead of 36,
//! so 2.25x fewer multiply-adds than a direct convolution. The transform matrices (eq. 7):
//!
//! ```text
//! B^T = [1  0 -1  0]    G = [ 1    0    0 ]    A^T = [1 1  1  0]
//!       [0  1  1  0]        [1/2  1/2  1/2]          [0 1 -1 -1]
//!       [0 -1  1  0]        [1/2 -1/2  1/2]
//!       [0  1  0 -1]        [ 0    0    1 ]
//! ```
//!
//! Only additions and subtractions touch the activations (the 1/2 factors live in the weight
//! transform, done once in f64), so results stay as close to a direct f32 convolution as
//! candle's own conv2d is (see tests/conv.rs). F(4x4, 3x3) would save 1.8x more products but
//! multiplies activations by constants such as 4, 5 and 8 and is known to be much less
//! accurate in f32; it was not tried.
//!
//! The matrix products call the `gemm` crate directly (the version candle's CPU matmul uses, so
//! it adds nothing to the build): unlike `Tensor::matmul` it writes into reused buffers and
//! runs single-threaded inside per-band jobs (measured: 256->256 at 64x64 took 17.7 ms with
//! `Tensor::matmul`, 11.3 ms so).
//!
//! Scheduling (`winograd`): on big feature maps the tiles are cut into bands of whole tile
//! rows; each band is one rayon job doing input transform, the 16 products and output transform
//! on its thread, so its matrices stay in that core's caches. Small maps (fewer than 64 tiles
//! per image) run each phase parallel on its own instead.
//!
//! Precision ([`crate::model::precision`]): at f32 (the default) the path above runs, bit for
//! bit as the parity tests check. At bf16 ([`Conv3x3::set_precision`]) the products take bf16
//! operands with f32 sums on the AVX512_BF16 kernel of `bf16`: maps of at least
//! [`BF16_MIN_WINOGRAD_TILES`] tiles through the same Winograd transforms
//! (`winograd_bf16`, banded from 64 tiles on, whole images below), smaller maps as one im2col
//! product (`im2col_bf16`).
//!
//! At f32, maps of at most [`F32_IM2COL_MAX_PIXELS`] pixels (the hourglasses' deepest, with up to
//! 1024 channels) run as one im2col product on the plain weights (`im2col`): there reading the
//! weights dominates. [`Conv3x3::forward`] falls back to candle's own `conv2d` for inputs that
//! are not f32 on the CPU (candle re-lays-out the weight on every call, which made it slower than
//! either path for every FOMM shape measured).

mod bf16;
mod direct;
mod im2col;
mod im2col_bf16;
pub mod rates;
mod upconv;
mod winograd;
mod winograd_bf16;

use std::sync::Arc;

pub use bf16::{from_bf16, to_bf16};
pub use direct::{DirectIsa, conv2d_direct, conv2d_direct_with};
pub use im2col_bf16::ConvBf16;
pub use upconv::UpConv;

use crate::model::precision::Precision;
use winograd::{
    BAND_BYTES, Geometry, MAX_BAND_TILES, MIN_BAND_TILES, Schedule, banded, whole_images,
    winograd_weights,
};

/// At f32, maps of at most this many pixels (8x8) run as one im2col product instead of Winograd:
/// there reading the weights dominates, and Winograd's are 16/9 as large. Measured on the
/// keypoint detector (Intel Xeon, 2 threads): 512->1024 at 4x4 3.8 -> 1.6 ms, 1024->512 at 4x4
/// 3.1 -> 1.9 ms, 256->512 at 8x8 1.5 -> 1.0 ms; at 16x16 Winograd was as fast.
pub const F32_IM2COL_MAX_PIXELS: usize = 64;

/// At bf16, maps with at least this many 2x2 tiles per image take the Winograd path; smaller
/// ones the im2col product. At 8x8 (16 tiles) Winograd's 2.25x fewer products win; at 4x4 (4
/// tiles) its products would be 16-column blocks three quarters empty.
pub const BF16_MIN_WINOGRAD_TILES: usize = 16;

use candle_core::{DType, Device, Storage, Tensor};

/// Errors from building or running a [`Conv3x3`]; returned wrapped in a `candle_core::Error`.
#[derive(Debug, thiserror::Error)]
pub enum Conv3x3Error {
    /// The weight tensor is not (Cout, Cin, 3, 3).
    #[error(
        "3x3 convolution weight has shape {0:?}, expected (out_channels, in_channels, 3, 3): \
         check that the checkpoint entry belongs to a 3x3 convolution"
    )]
    BadWeightShape(Vec<usize>),
    /// The bias does not hold one value per output channel.
    #[error(
        "3x3 convolution bias has shape {got:?}, expected ({out_channels}): \
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
        "3x3 convolution weight has an empty dimension {0:?}: a layer needs at least one input and one output channel"
    )]
    EmptyWeight(Vec<usize>),
    /// The input is not (N, Cin, H, W) with the layer's Cin.
    #[error(
        "3x3 convolution input has shape {got:?}, expected (batch, {in_channels}, height, width): \
         the previous layer's output does not match this layer's input channels"
    )]
    BadInputShape {
        /// Shape of the given input.
        got: Vec<usize>,
        /// Input channels the layer was built for.
        in_channels: usize,
    },
    /// A buffer had an unexpected size (an internal inconsistency, reported instead of panicking).
    #[error("3x3 convolution internal error: {0}; please report this as a bug")]
    Internal(&'static str),
}

fn err(e: Conv3x3Error) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// A 3x3, stride 1, padding 1 convolution with its weights prepared once.
#[derive(Debug, Clone)]
pub struct Conv3x3 {
    weight: Tensor,
    bias: Option<Tensor>,
    c_out: usize,
    c_in: usize,
    /// Whether the weight (and bias) are f32 CPU tensors; if not, `forward` always uses candle.
    fast: bool,
    /// Winograd-domain weights `U_k = G g G^T`, (16, Cout, Cin) row-major, made on the first
    /// map that runs Winograd (layers that only see small maps never need them: up to 33 MB
    /// each for the hourglasses' deepest).
    u: std::sync::OnceLock<Vec<f32>>,
    /// Bias values for the fast path (zeros when there is no bias).
    bias_values: Vec<f32>,
    /// The bf16 kernels' weights, when the precision is bf16.
    bf16: Option<Arc<Bf16Kernels>>,
}

/// What the bf16 path keeps per layer.
#[derive(Debug)]
struct Bf16Kernels {
    winograd: winograd_bf16::Weights,
    im2col: ConvBf16,
}

impl Conv3x3 {
    /// Prepares a convolution from a (Cout, Cin, 3, 3) weight and an optional (Cout) bias.
    ///
    /// The Winograd weights are computed on first use (in f64, rounded once to f32).
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let dims = weight.dims().to_vec();
        let (c_out, c_in) = match dims.as_slice() {
            &[co, ci, 3, 3] => (co, ci),
            _ => return Err(err(Conv3x3Error::BadWeightShape(dims))),
        };
        if c_out == 0 || c_in == 0 {
            return Err(err(Conv3x3Error::EmptyWeight(dims)));
        }
        if let Some(b) = bias
            && b.dims() != [c_out]
        {
            return Err(err(Conv3x3Error::BadBiasShape {
                got: b.dims().to_vec(),
                out_channels: c_out,
            }));
        }
        let is_cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        let fast = is_cpu_f32(weight) && bias.is_none_or(is_cpu_f32);
        let bias_values = match bias {
            Some(b) if fast => b.to_vec1::<f32>()?,
            _ => vec![0.0; c_out],
        };
        Ok(Self {
            weight: weight.contiguous()?,
            bias: bias.cloned(),
            c_out,
            c_in,
            fast,
            u: std::sync::OnceLock::new(),
            bias_values,
            bf16: None,
        })
    }

    /// The Winograd weights, made on the first call (the layer must be `fast`).
    fn winograd_u(&self) -> candle_core::Result<&[f32]> {
        if let Some(u) = self.u.get() {
            return Ok(u);
        }
        let g = self.weight.flatten_all()?.to_vec1::<f32>()?;
        let u = winograd_weights(&g, self.c_out, self.c_in)?;
        Ok(self.u.get_or_init(|| u))
    }

    /// Sets the precision of the products. At [`Precision::Bf16`] the bf16 weights are prepared
    /// (once; switching back to f32 drops them). Layers whose weights are not f32 CPU tensors
    /// stay on candle's path whatever the precision.
    pub fn set_precision(&mut self, precision: Precision) -> candle_core::Result<()> {
        match (precision, self.fast, &self.bf16) {
            (Precision::F32, _, _) => self.bf16 = None,
            (Precision::Bf16, true, None) => {
                let g = self.weight.flatten_all()?.to_vec1::<f32>()?;
                let u = winograd_weights(&g, self.c_out, self.c_in)?;
                self.bf16 = Some(Arc::new(Bf16Kernels {
                    winograd: winograd_bf16::Weights::new(&u, self.c_out, self.c_in)?,
                    im2col: ConvBf16::new(&g, (self.c_out, self.c_in, 3), &self.bias_values, 1)?,
                }));
            }
            (Precision::Bf16, _, _) => {}
        }
        Ok(())
    }

    /// The precision `forward` computes at.
    pub fn precision(&self) -> Precision {
        if self.bf16.is_some() {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.c_out
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.c_in
    }

    /// Applies the convolution to an (N, Cin, H, W) tensor, giving (N, Cout, H, W).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_scheduled(x, Schedule::Auto)
    }

    /// Candle's own convolution plus bias: the fallback path (public for comparisons).
    pub fn forward_candle(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.conv2d(&self.weight, 1, 1, 1, 1)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, self.c_out, 1, 1))?),
            None => Ok(y),
        }
    }

    /// The Winograd path with a forced schedule, for tests and tuning (`forward` chooses):
    /// `Some(tiles)` runs bands of about that many tiles as parallel jobs, `None` runs whole
    /// images with each phase parallel on its own. Falls back to candle like `forward`.
    #[doc(hidden)]
    pub fn forward_winograd_with(
        &self,
        x: &Tensor,
        band_tiles: Option<usize>,
    ) -> candle_core::Result<Tensor> {
        let schedule = match band_tiles {
            Some(t) => Schedule::Bands(t.max(1)),
            None => Schedule::Whole,
        };
        self.forward_scheduled(x, schedule)
    }

    fn forward_scheduled(&self, x: &Tensor, schedule: Schedule) -> candle_core::Result<Tensor> {
        let (n, h, w) = match x.dims() {
            &[n, c, h, w] if c == self.c_in => (n, h, w),
            d => {
                return Err(err(Conv3x3Error::BadInputShape {
                    got: d.to_vec(),
                    in_channels: self.c_in,
                }));
            }
        };
        if !self.fast || !x.device().is_cpu() || x.dtype() != DType::F32 {
            return self.forward_candle(x);
        }
        if n == 0 || h == 0 || w == 0 {
            return Tensor::zeros((n, self.c_out, h, w), DType::F32, &Device::Cpu);
        }
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let data = cpu_slice(&storage, layout.start_offset(), n * self.c_in * h * w)?;
        let mut out = vec![0f32; n * self.c_out * h * w];
        let geo = Geometry {
            n,
            c_in: self.c_in,
            c_out: self.c_out,
            h,
            w,
        };
        let tiles = geo.tiles_h() * geo.tiles_w();
        if let Some(k) = &self.bf16 {
            if tiles >= MIN_BAND_TILES {
                let per_tile = 16 * (self.c_in + self.c_out) * std::mem::size_of::<f32>();
                let band = (BAND_BYTES / per_tile).clamp(MIN_BAND_TILES, MAX_BAND_TILES);
                winograd_bf16::banded(data, &k.winograd, &self.bias_values, &geo, band, &mut out)?;
            } else if tiles >= BF16_MIN_WINOGRAD_TILES {
                winograd_bf16::whole_images(data, &k.winograd, &self.bias_values, &geo, &mut out)?;
            } else if let Some((y, _, _)) = k.im2col.forward(data, (n, h, w))? {
                out = y;
            } else {
                return Err(err(Conv3x3Error::Internal(
                    "3x3 kernel larger than its padded input",
                )));
            }
            drop(storage);
            return Tensor::from_vec(out, (n, self.c_out, h, w), &Device::Cpu);
        }
        if matches!(schedule, Schedule::Auto) && h * w <= F32_IM2COL_MAX_PIXELS {
            // `new` made the weight contiguous, so its storage is (Cout, Cin, 3, 3) row-major.
            let (wstore, wlayout) = self.weight.storage_and_layout();
            let weight = cpu_slice(&wstore, wlayout.start_offset(), self.c_out * self.c_in * 9)?;
            im2col::conv3x3(
                data,
                weight,
                &self.bias_values,
                (n, self.c_in, h, w),
                &mut out,
            )?;
            drop(storage);
            drop(wstore);
            return Tensor::from_vec(out, (n, self.c_out, h, w), &Device::Cpu);
        }
        let schedule = match schedule {
            Schedule::Auto if tiles < MIN_BAND_TILES => Schedule::Whole,
            Schedule::Auto => {
                let per_tile = 16 * (self.c_in + self.c_out) * std::mem::size_of::<f32>();
                Schedule::Bands((BAND_BYTES / per_tile).clamp(MIN_BAND_TILES, MAX_BAND_TILES))
            }
            s => s,
        };
        let u = self.winograd_u()?;
        match schedule {
            Schedule::Bands(band_tiles) => {
                banded(data, u, &self.bias_values, &geo, band_tiles, &mut out)?
            }
            _ => whole_images(data, u, &self.bias_values, &geo, &mut out)?,
        }
        drop(storage);
        Tensor::from_vec(out, (n, self.c_out, h, w), &Device::Cpu)
    }
}

/// `len` f32 values from `start` of a CPU storage.
fn cpu_slice(storage: &Storage, start: usize, len: usize) -> candle_core::Result<&[f32]> {
    let all: &[f32] = match storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
        _ => {
            return Err(err(Conv3x3Error::Internal(
                "CPU tensor without CPU storage",
            )));
        }
    };
    all.get(start..start + len)
        .ok_or(err(Conv3x3Error::Internal(
            "storage shorter than its shape",
        )))
}
