//! The f32 Winograd F(2x2, 3x3) kernel family for 3x3 / stride 1 / padding 1 convolutions:
//! weight transform, input and output transforms, the 16 products through the `gemm` crate, and
//! the two thread schedules (bands of tile rows, or whole images for small maps). The transforms
//! are shared with the bf16 family ([`super::winograd_bf16`]).
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
//! Candle's own conv2d is (the crate's `tests/conv.rs`). F(4x4, 3x3) saves 1.8x more products
//! but multiplies activations by constants such as 4, 5 and 8: tried in f32, it had 2.5x the
//! error of F(2x2, 3x3) and, with its bigger transforms, was no faster on two cores.
//!
//! The matrix products call the `gemm` crate directly (the version candle's CPU matmul uses, so
//! it adds nothing to the build): unlike `Tensor::matmul` it writes into reused buffers and
//! runs single-threaded inside per-band jobs (measured: 256->256 at 64x64 took 17.7 ms with
//! `Tensor::matmul`, 11.3 ms so).
//!
//! Scheduling: on big feature maps the tiles are cut into bands of whole tile
//! rows; each band is one rayon job doing input transform, the 16 products and output transform
//! on its thread, so its matrices stay in that core's caches. Small maps (fewer than 64 tiles
//! per image) run each phase parallel on its own instead.

use rayon::prelude::*;

use super::plan::band_rows;
use super::scratch::{OutPtr, with_values};
use super::{ConvError, err};

/// Sizes of one convolution call.
pub(super) struct Geometry {
    pub(super) n: usize,
    pub(super) c_in: usize,
    pub(super) c_out: usize,
    pub(super) h: usize,
    pub(super) w: usize,
}

impl Geometry {
    pub(super) fn tiles_h(&self) -> usize {
        self.h.div_ceil(2)
    }
    pub(super) fn tiles_w(&self) -> usize {
        self.w.div_ceil(2)
    }
    pub(super) fn plane(&self) -> usize {
        self.h * self.w
    }

    /// All tile rows of image `img`, its tiles in columns `img * tiles ..` of matrices with
    /// row stride `ld` (the whole-image schedules).
    pub(super) fn whole_band(&self, img: usize, ld: usize) -> Band {
        Band {
            h: self.h,
            w: self.w,
            tiles_w: self.tiles_w(),
            ty0: 0,
            ty1: self.tiles_h(),
            ld,
            col0: img * self.tiles_h() * self.tiles_w(),
        }
    }
}

/// Tile rows `ty0..ty1` of one image, whose transformed tiles sit in columns
/// `col0 .. col0 + tiles()` of matrices with row stride `ld`.
pub(super) struct Band {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) tiles_w: usize,
    pub(super) ty0: usize,
    pub(super) ty1: usize,
    pub(super) ld: usize,
    pub(super) col0: usize,
}

impl Band {
    pub(super) fn tiles(&self) -> usize {
        (self.ty1 - self.ty0) * self.tiles_w
    }
}

/// Banded schedule: each band of tile rows of each image is one job running all three phases.
pub(super) fn banded(
    data: &[f32],
    u: &[f32],
    bias: &[f32],
    geo: &Geometry,
    band_tiles: usize,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    for_each_band(
        data,
        bias,
        geo,
        band_tiles,
        |nt| nt,
        out,
        |img_data, band, emit| {
            let nt = band.tiles();
            with_values(16 * (c_in + c_out) * nt, |buf| {
                let (v, m) = buf.split_at_mut(16 * c_in * nt);
                input_transform(img_data, c_in, band, v)?;
                gemm16(u, v, m, c_out, c_in, nt)?;
                emit(m)
            })
        },
    )
}

/// The banded schedule's driver, shared by the f32 and bf16 paths: cuts every image into bands
/// of whole tile rows (about `band_tiles` tiles each, and at least one band per thread), runs
/// one rayon job per (image, band), and writes the band's output rows.
///
/// `compute(image, band, emit)` must compute the band's Winograd-domain products M (16, Cout,
/// band.ld) for the band's tiles (columns `0..band.tiles()`) and pass them to `emit`, which runs
/// the output transform (plus bias) into the output. `ld_of(tiles)` gives the row stride of M.
pub(super) fn for_each_band<C>(
    data: &[f32],
    bias: &[f32],
    geo: &Geometry,
    band_tiles: usize,
    ld_of: impl Fn(usize) -> usize + Sync,
    out: &mut [f32],
    compute: C,
) -> candle_core::Result<()>
where
    C: Fn(
            &[f32],
            &Band,
            &mut dyn FnMut(&[f32]) -> candle_core::Result<()>,
        ) -> candle_core::Result<()>
        + Sync,
{
    let Geometry {
        n,
        c_in,
        c_out,
        h,
        w,
    } = *geo;
    let (tiles_h, tiles_w, plane) = (geo.tiles_h(), geo.tiles_w(), geo.plane());
    let band_rows = band_rows(n, tiles_h, tiles_w, band_tiles);
    let bands = tiles_h.div_ceil(band_rows);
    if data.len() != n * c_in * plane || out.len() != n * c_out * plane {
        return Err(err(ConvError::Internal(
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
            ld: ld_of(nt),
            col0: 0,
        };
        let img_data = data
            .get(img * c_in * plane..(img + 1) * c_in * plane)
            .ok_or(err(ConvError::Internal("image outside the input")))?;
        // Output rows of this band: 2 ty0 .. min(2 ty1, h) of every channel plane.
        let (y0, y1) = (2 * ty0, (2 * ty1).min(h));
        let mut emit = |m: &[f32]| -> candle_core::Result<()> {
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
        };
        compute(img_data, &geo, &mut emit)
    })
}

/// Whole-image schedule for small maps: the tiles of all images form one set of matrices
/// (V (16, Cin, N tiles), M (16, Cout, N tiles)); the input transform runs over images, the
/// 16 products in parallel over k, the output transform in parallel over output planes.
pub(super) fn whole_images(
    data: &[f32],
    u: &[f32],
    bias: &[f32],
    geo: &Geometry,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let Geometry { n, c_in, c_out, .. } = *geo;
    let (tiles_h, tiles_w, plane) = (geo.tiles_h(), geo.tiles_w(), geo.plane());
    let nt = n * tiles_h * tiles_w;
    let band = |img: usize| geo.whole_band(img, nt);
    let mut v = vec![0f32; 16 * c_in * nt];
    let mut m = vec![0f32; 16 * c_out * nt];
    for (img, img_data) in data.chunks_exact(c_in * plane).enumerate() {
        input_transform(img_data, c_in, &band(img), &mut v)?;
    }
    if u.len() != 16 * c_out * c_in {
        return Err(err(ConvError::Internal(
            "weight buffer does not match its shape",
        )));
    }
    m.par_chunks_mut(c_out * nt)
        .zip(u.par_chunks(c_out * c_in))
        .zip(v.par_chunks(c_in * nt))
        .try_for_each(|((mk, uk), vk)| gemm1(uk, vk, mk, c_out, c_in, nt))?;
    output_whole(&m, bias, geo, nt, out)
}

/// The whole-image schedule's output transform: `m` is (16, Cout, ld) with image `i`'s tiles in
/// columns `i * tiles ..`; runs in parallel over output planes.
pub(super) fn output_whole(
    m: &[f32],
    bias: &[f32],
    geo: &Geometry,
    ld: usize,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let (c_out, plane) = (geo.c_out, geo.plane());
    out.par_chunks_mut(plane)
        .enumerate()
        .try_for_each(|(idx, rows)| {
            let (img, co) = (idx / c_out, idx % c_out);
            let b = bias.get(co).copied().unwrap_or(0.0);
            output_transform(m, c_out, co, b, &geo.whole_band(img, ld), rows)
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
        return Err(err(ConvError::Internal(
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
pub(super) fn gemm1(
    uk: &[f32],
    vk: &[f32],
    mk: &mut [f32],
    c_out: usize,
    c_in: usize,
    nt: usize,
) -> candle_core::Result<()> {
    if uk.len() != c_out * c_in || vk.len() != c_in * nt || mk.len() != c_out * nt {
        return Err(err(ConvError::Internal(
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
pub(super) fn winograd_weights(
    g: &[f32],
    c_out: usize,
    c_in: usize,
) -> candle_core::Result<Vec<f32>> {
    if g.len() != c_out * c_in * 9 {
        return Err(err(ConvError::Internal(
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
pub(super) fn input_transform(
    img: &[f32],
    c_in: usize,
    geo: &Band,
    v: &mut [f32],
) -> candle_core::Result<()> {
    let (h, w, tw, ld) = (geo.h, geo.w, geo.tiles_w, geo.ld);
    if img.len() != c_in * h * w || v.len() != 16 * c_in * ld || geo.col0 + geo.tiles() > ld {
        return Err(err(ConvError::Internal(
            "input transform buffers do not match",
        )));
    }
    let mut rows = TileRows::new(tw);
    for (c, plane) in img.chunks_exact(h * w).take(c_in).enumerate() {
        for ty in geo.ty0..geo.ty1 {
            rows.load(plane, h, w, ty);
            // Columns: (B^T d) B, written to V[4i + j][c][tile].
            let off = c * ld + geo.col0 + (ty - geo.ty0) * tw;
            for i in 0..4 {
                let mut outs = v
                    .chunks_exact_mut(c_in * ld)
                    .skip(4 * i)
                    .map(|vk| vk.get_mut(off..off + tw));
                let (Some(Some(v0)), Some(Some(v1)), Some(Some(v2)), Some(Some(v3))) =
                    (outs.next(), outs.next(), outs.next(), outs.next())
                else {
                    return Err(err(ConvError::Internal("tile outside V")));
                };
                rows.columns(i, [v0, v1, v2, v3]);
            }
        }
    }
    Ok(())
}

/// One tile row of one channel after the row half of the input transform (`B^T d`), ready for
/// the column half. Each padded input row is split into even and odd padded columns:
/// even[j] = x[2j - 1], odd[j] = x[2j], so tile tx uses even[tx], odd[tx], even[tx+1],
/// odd[tx+1].
pub(super) struct TileRows {
    tw: usize,
    ev: [Vec<f32>; 4],
    od: [Vec<f32>; 4],
    re: [Vec<f32>; 4],
    ro: [Vec<f32>; 4],
}

impl TileRows {
    /// Buffers for `tw` tiles per row.
    pub(super) fn new(tw: usize) -> Self {
        let len = tw + 1;
        let buf = || -> [Vec<f32>; 4] { std::array::from_fn(|_| vec![0f32; len]) };
        Self {
            tw,
            ev: buf(),
            od: buf(),
            re: buf(),
            ro: buf(),
        }
    }

    /// Reads tile row `ty` of `plane` (h x w) and applies `B^T` down the rows.
    pub(super) fn load(&mut self, plane: &[f32], h: usize, w: usize, ty: usize) {
        for (i, (e, o)) in self.ev.iter_mut().zip(self.od.iter_mut()).enumerate() {
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
        for (src, dst) in [(&self.ev, &mut self.re), (&self.od, &mut self.ro)] {
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
    }

    /// The column half for row `i` of `B^T d`: writes `V[4i + j]` of every tile of the row to
    /// `out[j]` (each `tw` long).
    pub(super) fn columns(&self, i: usize, out: [&mut [f32]; 4]) {
        let tw = self.tw;
        let (e, o) = (&self.re[i], &self.ro[i]);
        let (e0, e1) = (&e[..tw], &e[1..=tw]);
        let (o0, o1) = (&o[..tw], &o[1..=tw]);
        let [v0, v1, v2, v3] = out;
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

/// Output transform `Y = A^T m A` (plus bias) of output channel `co` over one band.
///
/// `m` is (16, Cout, ld), the band's tiles in columns `col0..`; `rows` holds output rows
/// `2 ty0 .. min(2 ty1, h)` of channel `co`.
pub(super) fn output_transform(
    m: &[f32],
    c_out: usize,
    co: usize,
    bias: f32,
    geo: &Band,
    rows: &mut [f32],
) -> candle_core::Result<()> {
    let (tw, w, ld) = (geo.tiles_w, geo.w, geo.ld);
    let internal = || err(ConvError::Internal("output transform buffers do not match"));
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
