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
//! Scheduling: on big feature maps the tiles are cut into bands of whole tile rows; each band
//! is one rayon job doing input transform, the 16 products and output transform on its thread,
//! so its matrices stay in that core's caches. Each rayon thread keeps its band buffers (about
//! `BAND_BYTES`, 8 MiB, for FOMM's layers) between calls, so they are not allocated and
//! page-faulted in again on every convolution. Small maps (fewer than `MIN_BAND_TILES` = 64
//! tiles per image) run each phase parallel on its own instead (the 16 products split across
//! threads).
//!
//! [`Conv3x3::forward`] falls back to candle's own `conv2d` for inputs that are not f32 on the
//! CPU. There is no size-based fallback: on this machine the Winograd path was faster than
//! candle's conv2d for every FOMM shape measured, down to 2x2 maps (candle re-lays-out the
//! weight on every call, which dominates small maps with many channels).

use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

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

/// Scratch budget per band job, in bytes, for V (16, Cin, tiles) plus M (16, Cout, tiles):
/// the band size follows from it, clamped to [`MIN_BAND_TILES`, `MAX_BAND_TILES`]. 8 MiB gave
/// the best or near-best times for the FOMM vox-256 shapes on a 2-core AMD EPYC (measured
/// with band sizes of 128..1024 tiles, `examples/bench_conv.rs`).
const BAND_BYTES: usize = 8 << 20;
/// Smallest band (tiles); images with fewer tiles run the whole-image schedule.
const MIN_BAND_TILES: usize = 64;
/// Largest band (tiles).
const MAX_BAND_TILES: usize = 1024;

/// A 3x3, stride 1, padding 1 convolution with its weights prepared once.
#[derive(Debug, Clone)]
pub struct Conv3x3 {
    weight: Tensor,
    bias: Option<Tensor>,
    c_out: usize,
    c_in: usize,
    /// Winograd-domain weights `U_k = G g G^T`, (16, Cout, Cin) row-major; `None` when the
    /// weight (or bias) is not an f32 CPU tensor, and then `forward` always uses candle.
    u: Option<Vec<f32>>,
    /// Bias values for the fast path (zeros when there is no bias).
    bias_values: Vec<f32>,
}

impl Conv3x3 {
    /// Prepares a convolution from a (Cout, Cin, 3, 3) weight and an optional (Cout) bias.
    ///
    /// The Winograd weights are computed here (in f64, rounded once to f32) when the weight
    /// and bias are f32 tensors on the CPU.
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
        let (u, bias_values) = if is_cpu_f32(weight) && bias.is_none_or(is_cpu_f32) {
            let g = weight.flatten_all()?.to_vec1::<f32>()?;
            let bias_values = match bias {
                Some(b) => b.to_vec1::<f32>()?,
                None => vec![0.0; c_out],
            };
            (Some(winograd_weights(&g, c_out, c_in)?), bias_values)
        } else {
            (None, Vec::new())
        };
        Ok(Self {
            weight: weight.clone(),
            bias: bias.cloned(),
            c_out,
            c_in,
            u,
            bias_values,
        })
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
        let u = match &self.u {
            Some(u) if x.device().is_cpu() && x.dtype() == DType::F32 => u.as_slice(),
            _ => return self.forward_candle(x),
        };
        if n == 0 || h == 0 || w == 0 {
            return Tensor::zeros((n, self.c_out, h, w), DType::F32, &Device::Cpu);
        }
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let data: &[f32] = match &*storage {
            Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
            _ => {
                return Err(err(Conv3x3Error::Internal(
                    "CPU tensor without CPU storage",
                )));
            }
        };
        let start = layout.start_offset();
        let data =
            data.get(start..start + n * self.c_in * h * w)
                .ok_or(err(Conv3x3Error::Internal(
                    "input storage shorter than its shape",
                )))?;
        let mut out = vec![0f32; n * self.c_out * h * w];
        let geo = Geometry {
            n,
            c_in: self.c_in,
            c_out: self.c_out,
            h,
            w,
        };
        let tiles = geo.tiles_h() * geo.tiles_w();
        let schedule = match schedule {
            Schedule::Auto if tiles < MIN_BAND_TILES => Schedule::Whole,
            Schedule::Auto => {
                let per_tile = 16 * (self.c_in + self.c_out) * std::mem::size_of::<f32>();
                Schedule::Bands((BAND_BYTES / per_tile).clamp(MIN_BAND_TILES, MAX_BAND_TILES))
            }
            s => s,
        };
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

/// How the Winograd work is split across threads.
#[derive(Debug, Clone, Copy)]
enum Schedule {
    /// Choose from the feature-map size.
    Auto,
    /// Bands of about this many tiles, one rayon job each.
    Bands(usize),
    /// Whole images (the batch at once), each phase parallel on its own.
    Whole,
}

/// Sizes of one convolution call.
struct Geometry {
    n: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
}

impl Geometry {
    fn tiles_h(&self) -> usize {
        self.h.div_ceil(2)
    }
    fn tiles_w(&self) -> usize {
        self.w.div_ceil(2)
    }
    fn plane(&self) -> usize {
        self.h * self.w
    }
}

/// Tile rows `ty0..ty1` of one image, whose transformed tiles sit in columns
/// `col0 .. col0 + tiles()` of matrices with row stride `ld`.
struct Band {
    h: usize,
    w: usize,
    tiles_w: usize,
    ty0: usize,
    ty1: usize,
    ld: usize,
    col0: usize,
}

impl Band {
    fn tiles(&self) -> usize {
        (self.ty1 - self.ty0) * self.tiles_w
    }
}

/// Banded schedule: each band of tile rows of each image is one job running all three phases.
fn banded(
    data: &[f32],
    u: &[f32],
    bias: &[f32],
    geo: &Geometry,
    band_tiles: usize,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let Geometry {
        n,
        c_in,
        c_out,
        h,
        w,
    } = *geo;
    let (tiles_h, tiles_w, plane) = (geo.tiles_h(), geo.tiles_w(), geo.plane());
    // With fewer images than threads, round the band count up to a multiple of the thread
    // count so both cores get equal work.
    let threads = rayon::current_num_threads().max(1);
    let mut bands = (tiles_h * tiles_w).div_ceil(band_tiles);
    if n < threads {
        bands = bands.div_ceil(threads) * threads;
    }
    let band_rows = tiles_h.div_ceil(bands.clamp(1, tiles_h.max(1)));
    let bands = tiles_h.div_ceil(band_rows);
    if data.len() != n * c_in * plane || out.len() != n * c_out * plane {
        return Err(err(Conv3x3Error::Internal(
            "buffers do not match the input shape",
        )));
    }
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..n * bands).into_par_iter().try_for_each(|job| {
        let (img, band) = (job / bands, job % bands);
        let ty0 = band * band_rows;
        let ty1 = (ty0 + band_rows).min(tiles_h);
        let nt = (ty1 - ty0) * tiles_w;
        let geo = Band {
            h,
            w,
            tiles_w,
            ty0,
            ty1,
            ld: nt,
            col0: 0,
        };
        let img_data = data
            .get(img * c_in * plane..(img + 1) * c_in * plane)
            .ok_or(err(Conv3x3Error::Internal("image outside the input")))?;
        // Output rows of this band: 2 ty0 .. min(2 ty1, h) of every channel plane.
        let (y0, y1) = (2 * ty0, (2 * ty1).min(h));
        with_scratch(16 * (c_in + c_out) * nt, |buf| {
            let (v, m) = buf.split_at_mut(16 * c_in * nt);
            input_transform(img_data, c_in, &geo, v)?;
            gemm16(u, v, m, c_out, c_in, nt)?;
            for (co, &b) in bias.iter().enumerate().take(c_out) {
                let off = (img * c_out + co) * plane + y0 * w;
                // SAFETY: `img < n`, `co < c_out` and `y1 <= h`, so `off + (y1 - y0) * w <=
                // n * c_out * plane == out.len()` (checked above): the slice lies inside `out`,
                // which outlives this parallel loop and is not otherwise accessed during it.
                // Jobs cover disjoint (image, row range) pairs and a job holds one such slice
                // at a time, so no two live mutable slices overlap.
                let rows = unsafe {
                    std::slice::from_raw_parts_mut(out_ptr.get().add(off), (y1 - y0) * w)
                };
                output_transform(m, c_out, co, b, &geo, rows)?;
            }
            Ok(())
        })
    })
}

/// Whole-image schedule for small maps: the tiles of all images form one set of matrices
/// (V (16, Cin, N tiles), M (16, Cout, N tiles)); the input transform runs over images, the
/// 16 products in parallel over k, the output transform in parallel over output planes.
fn whole_images(
    data: &[f32],
    u: &[f32],
    bias: &[f32],
    geo: &Geometry,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let Geometry {
        n,
        c_in,
        c_out,
        h,
        w,
    } = *geo;
    let (tiles_h, tiles_w, plane) = (geo.tiles_h(), geo.tiles_w(), geo.plane());
    let per_img = tiles_h * tiles_w;
    let nt = n * per_img;
    let band = |img: usize| Band {
        h,
        w,
        tiles_w,
        ty0: 0,
        ty1: tiles_h,
        ld: nt,
        col0: img * per_img,
    };
    let mut v = vec![0f32; 16 * c_in * nt];
    let mut m = vec![0f32; 16 * c_out * nt];
    for (img, img_data) in data.chunks_exact(c_in * plane).enumerate() {
        input_transform(img_data, c_in, &band(img), &mut v)?;
    }
    if u.len() != 16 * c_out * c_in {
        return Err(err(Conv3x3Error::Internal(
            "weight buffer does not match its shape",
        )));
    }
    m.par_chunks_mut(c_out * nt)
        .zip(u.par_chunks(c_out * c_in))
        .zip(v.par_chunks(c_in * nt))
        .try_for_each(|((mk, uk), vk)| gemm1(uk, vk, mk, c_out, c_in, nt))?;
    out.par_chunks_mut(plane)
        .enumerate()
        .try_for_each(|(idx, rows)| {
            let (img, co) = (idx / c_out, idx % c_out);
            let b = bias.get(co).copied().unwrap_or(0.0);
            output_transform(&m, c_out, co, b, &band(img), rows)
        })
}

/// The output buffer's base pointer, shared by the band jobs (each writes disjoint rows).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only used to build non-overlapping slices (see `banded`).
unsafe impl Send for OutPtr {}
// SAFETY: as above; the jobs never write the same element.
unsafe impl Sync for OutPtr {}
impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Per-thread V and M buffers, kept between calls so big buffers are not page-faulted in
    /// on every convolution.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch buffer of `len` values (contents unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Re-entered on this thread (cannot happen with the current call graph): use a fresh buffer.
        Err(_) => f(&mut vec![0f32; len]),
    })
}

/// The 16 products `M_k = U_k V_k`: U (16, Cout, Cin), V (16, Cin, nt), M (16, Cout, nt).
fn gemm16(
    u: &[f32],
    v: &[f32],
    m: &mut [f32],
    c_out: usize,
    c_in: usize,
    nt: usize,
) -> candle_core::Result<()> {
    if u.len() != 16 * c_out * c_in || v.len() != 16 * c_in * nt || m.len() != 16 * c_out * nt {
        return Err(err(Conv3x3Error::Internal(
            "matrix buffers do not match their shapes",
        )));
    }
    for ((uk, vk), mk) in u
        .chunks_exact(c_out * c_in)
        .zip(v.chunks_exact(c_in * nt))
        .zip(m.chunks_exact_mut(c_out * nt))
    {
        gemm1(uk, vk, mk, c_out, c_in, nt)?;
    }
    Ok(())
}

/// One product `M_k = U_k V_k`, row-major (Cout x Cin) @ (Cin x nt) -> (Cout x nt), on the
/// calling thread.
fn gemm1(
    uk: &[f32],
    vk: &[f32],
    mk: &mut [f32],
    c_out: usize,
    c_in: usize,
    nt: usize,
) -> candle_core::Result<()> {
    if uk.len() != c_out * c_in || vk.len() != c_in * nt || mk.len() != c_out * nt {
        return Err(err(Conv3x3Error::Internal(
            "matrix buffers do not match their shapes",
        )));
    }
    // SAFETY: the three slices have exactly the lengths of the row-major matrices described
    // by the sizes and strides (checked above), so every access stays inside them, and `mk`
    // is borrowed mutably while the inputs are shared: no aliasing.
    unsafe {
        gemm::gemm(
            c_out,
            nt,
            c_in,
            mk.as_mut_ptr(),
            1,
            nt as isize,
            false,
            uk.as_ptr(),
            1,
            c_in as isize,
            vk.as_ptr(),
            1,
            nt as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

/// `U = G g G^T` for every (out, in) channel pair, computed in f64; returns (16, Cout, Cin).
fn winograd_weights(g: &[f32], c_out: usize, c_in: usize) -> candle_core::Result<Vec<f32>> {
    if g.len() != c_out * c_in * 9 {
        return Err(err(Conv3x3Error::Internal(
            "weight length does not match its shape",
        )));
    }
    // G from Lavin & Gray (2016), eq. 7.
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let mut u = vec![0f32; 16 * c_out * c_in];
    for (pair, k) in g.chunks_exact(9).enumerate() {
        // t = G g (4x3), then U = t G^T (4x4).
        let mut t = [[0f64; 3]; 4];
        for (ti, gi) in t.iter_mut().zip(G.iter()) {
            for (j, tij) in ti.iter_mut().enumerate() {
                *tij = (0..3).map(|r| gi[r] * f64::from(k[3 * r + j])).sum();
            }
        }
        for (i, ti) in t.iter().enumerate() {
            for (j, gj) in G.iter().enumerate() {
                let val: f64 = (0..3).map(|r| ti[r] * gj[r]).sum();
                u[(4 * i + j) * c_out * c_in + pair] = val as f32;
            }
        }
    }
    Ok(u)
}

/// Input transform `V = B^T d B` of one band of one image, all input channels.
///
/// `img` is (Cin, h, w); `v` is (16, Cin, ld), the band's tiles in columns `col0..`. Tile
/// (ty, tx) reads input rows `2ty-1 ..= 2ty+2` and columns `2tx-1 ..= 2tx+2`, zero outside
/// the image (the padding of 1).
fn input_transform(img: &[f32], c_in: usize, geo: &Band, v: &mut [f32]) -> candle_core::Result<()> {
    let (h, w, tw, ld) = (geo.h, geo.w, geo.tiles_w, geo.ld);
    if img.len() != c_in * h * w || v.len() != 16 * c_in * ld || geo.col0 + geo.tiles() > ld {
        return Err(err(Conv3x3Error::Internal(
            "input transform buffers do not match",
        )));
    }
    // Each padded input row is split into even and odd padded columns:
    // even[j] = x[2j - 1], odd[j] = x[2j], so tile tx uses even[tx], odd[tx], even[tx+1], odd[tx+1].
    let len = tw + 1;
    let mut ev: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0f32; len]);
    let mut od: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0f32; len]);
    let mut re: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0f32; len]);
    let mut ro: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0f32; len]);
    for (c, plane) in img.chunks_exact(h * w).take(c_in).enumerate() {
        for ty in geo.ty0..geo.ty1 {
            for (i, (e, o)) in ev.iter_mut().zip(od.iter_mut()).enumerate() {
                let y = (2 * ty + i).checked_sub(1).filter(|&y| y < h);
                e.fill(0.0);
                o.fill(0.0);
                if let Some(row) = y.and_then(|y| plane.get(y * w..(y + 1) * w)) {
                    // Input columns 2j, 2j + 1 are padded columns 2j + 1 (odd[j]) and
                    // 2j + 2 (even[j + 1]).
                    let (_, e_tail) = e.split_at_mut(1);
                    for ((pair, oj), ej) in row.chunks(2).zip(o.iter_mut()).zip(e_tail.iter_mut()) {
                        if let Some(&a) = pair.first() {
                            *oj = a;
                        }
                        if let Some(&b) = pair.get(1) {
                            *ej = b;
                        }
                    }
                }
            }
            // Rows: B^T d.
            for (src, dst) in [(&ev, &mut re), (&od, &mut ro)] {
                let [d0, d1, d2, d3] = src;
                let [r0, r1, r2, r3] = dst;
                for ((((r0, r1), r2), r3), (((&a, &b), &c), &d)) in r0
                    .iter_mut()
                    .zip(r1.iter_mut())
                    .zip(r2.iter_mut())
                    .zip(r3.iter_mut())
                    .zip(d0.iter().zip(d1.iter()).zip(d2.iter()).zip(d3.iter()))
                {
                    *r0 = a - c;
                    *r1 = b + c;
                    *r2 = c - b;
                    *r3 = b - d;
                }
            }
            // Columns: (B^T d) B, written to V[4i + j][c][tile].
            let off = c * ld + geo.col0 + (ty - geo.ty0) * tw;
            for (i, (e, o)) in re.iter().zip(ro.iter()).enumerate() {
                let mut outs = v
                    .chunks_exact_mut(c_in * ld)
                    .skip(4 * i)
                    .map(|vk| vk.get_mut(off..off + tw));
                let (Some(Some(v0)), Some(Some(v1)), Some(Some(v2)), Some(Some(v3))) =
                    (outs.next(), outs.next(), outs.next(), outs.next())
                else {
                    return Err(err(Conv3x3Error::Internal("tile outside V")));
                };
                let (e0, e1) = (&e[..tw], &e[1..=tw]);
                let (o0, o1) = (&o[..tw], &o[1..=tw]);
                let outs = v0
                    .iter_mut()
                    .zip(v1.iter_mut())
                    .zip(v2.iter_mut())
                    .zip(v3.iter_mut());
                let ins = e0.iter().zip(e1.iter()).zip(o0.iter()).zip(o1.iter());
                for ((((v0, v1), v2), v3), (((&ea, &eb), &oa), &ob)) in outs.zip(ins) {
                    *v0 = ea - eb;
                    *v1 = oa + eb;
                    *v2 = eb - oa;
                    *v3 = oa - ob;
                }
            }
        }
    }
    Ok(())
}

/// Output transform `Y = A^T m A` (plus bias) of output channel `co` over one band.
///
/// `m` is (16, Cout, ld), the band's tiles in columns `col0..`; `rows` holds output rows
/// `2 ty0 .. min(2 ty1, h)` of channel `co`.
fn output_transform(
    m: &[f32],
    c_out: usize,
    co: usize,
    bias: f32,
    geo: &Band,
    rows: &mut [f32],
) -> candle_core::Result<()> {
    let (tw, w, ld) = (geo.tiles_w, geo.w, geo.ld);
    let internal = || {
        err(Conv3x3Error::Internal(
            "output transform buffers do not match",
        ))
    };
    if rows.len() != ((2 * geo.ty1).min(geo.h) - 2 * geo.ty0) * w {
        return Err(internal());
    }
    let mut s0 = [
        vec![0f32; tw],
        vec![0f32; tw],
        vec![0f32; tw],
        vec![0f32; tw],
    ];
    let mut s1 = [
        vec![0f32; tw],
        vec![0f32; tw],
        vec![0f32; tw],
        vec![0f32; tw],
    ];
    let mut top = [vec![0f32; tw], vec![0f32; tw]];
    let mut bot = [vec![0f32; tw], vec![0f32; tw]];
    for ty in geo.ty0..geo.ty1 {
        let base = (ty - geo.ty0) * tw;
        let mut mk: [&[f32]; 16] = [&[]; 16];
        for (k, slot) in mk.iter_mut().enumerate() {
            let off = (k * c_out + co) * ld + geo.col0 + base;
            *slot = m.get(off..off + tw).ok_or_else(internal)?;
        }
        // Rows: A^T m, for each column j.
        for (j, (s0j, s1j)) in s0.iter_mut().zip(s1.iter_mut()).enumerate() {
            let (a, b, c, d) = (mk[j], mk[4 + j], mk[8 + j], mk[12 + j]);
            let ins = a.iter().zip(b.iter()).zip(c.iter()).zip(d.iter());
            for ((x0, x1), (((&a, &b), &c), &d)) in s0j.iter_mut().zip(s1j.iter_mut()).zip(ins) {
                *x0 = a + b + c;
                *x1 = b - c - d;
            }
        }
        // Columns: (A^T m) A.
        for (s, out) in [(&s0, &mut top), (&s1, &mut bot)] {
            let [a, b, c, d] = s;
            let [o0, o1] = out;
            let ins = a.iter().zip(b.iter()).zip(c.iter()).zip(d.iter());
            for ((y0, y1), (((&a, &b), &c), &d)) in o0.iter_mut().zip(o1.iter_mut()).zip(ins) {
                *y0 = a + b + c + bias;
                *y1 = b - c - d + bias;
            }
        }
        for (dy, vals) in [(0, &top), (1, &bot)] {
            let y = 2 * ty + dy;
            if y >= geo.h {
                continue;
            }
            let ly = y - 2 * geo.ty0;
            let row = rows.get_mut(ly * w..(ly + 1) * w).ok_or_else(internal)?;
            let [o0, o1] = vals;
            let mut pairs = row.chunks_exact_mut(2);
            for ((p, &a), &b) in (&mut pairs).zip(o0.iter()).zip(o1.iter()) {
                p[0] = a;
                p[1] = b;
            }
            if let (Some(last), Some(&a)) = (pairs.into_remainder().first_mut(), o0.last()) {
                *last = a;
            }
        }
    }
    Ok(())
}

/// Direct convolution (stride 1, symmetric zero padding) for layers with few output channels,
/// such as FOMM's 7x7 heads (`final`: 64 -> 3 at 256x256; `mask`, `occlusion`, `kp`). Candle's
/// im2col would build a (H*W) x (C*k*k) matrix (822 MB for `final`); here every output row is
/// accumulated in place from shifted input rows, so memory stays at the output's size.
/// `x`: (N, C, H, W), `weight`: (O, C, k, k), `bias`: (O). Returns `None` when not applicable
/// (not CPU f32), so the caller falls back to candle.
pub fn conv2d_direct(
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
    let k = kh;
    let (ho, wo) = (h + 2 * padding - k + 1, w + 2 * padding - k + 1);
    let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let ws = weight.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let bs = bias.to_vec1::<f32>()?;
    let mut out = vec![0f32; n * o * ho * wo];
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
    Ok(Some(Tensor::from_vec(out, (n, o, ho, wo), x.device())?))
}
