//! The bf16 Winograd F(2x2, 3x3) kernel family: the same transforms as the f32
//! path (computed in f32), with the 16 products `M_k = U_k V_k` taken in bf16 with f32 sums
//! ([`super::bf16`]).
//!
//! Why F(2x2, 3x3) and not F(4x4, 3x3), which has 1.8x fewer products: rounding the transformed
//! operands to bf16 costs accuracy in proportion to the transform's constants. Measured on a
//! 128 -> 32 channel layer of ReLU inputs with He-normal weights (relative RMS error against an
//! f64 direct convolution): both operands of a direct convolution in bf16 (what PyTorch's bf16
//! autocast does) 0.0023; F(2x2) with bf16 U and V 0.0035; F(3x3) 0.012; F(4x2) 0.0068; F(4x4)
//! 0.014 with its best interpolation points (0, +-1, 2, -1/2) and 0.022 with the usual
//! (0, +-1, +-2). Only F(2x2) stays near PyTorch's own bf16 error.

use super::bf16::{self, LANES, PackedA, pair};
use rayon::prelude::*;

use super::bf16::MR;
use super::scratch::{with_pairs, with_values};
use super::winograd::{Band, Geometry, TileRows, for_each_band, output_whole};
use super::{ConvError, err};

/// The 16 Winograd-domain weight matrices `U_k` (Cout x Cin) packed as bf16.
#[derive(Debug, Clone)]
pub(super) struct Weights {
    u: Vec<PackedA>,
    c_out: usize,
    c_in: usize,
}

impl Weights {
    /// Packs `u` (16, Cout, Cin), the f32 Winograd weights.
    pub(super) fn new(u: &[f32], c_out: usize, c_in: usize) -> candle_core::Result<Self> {
        if u.len() != 16 * c_out * c_in {
            return Err(err(ConvError::Internal(
                "winograd weights do not match their shape",
            )));
        }
        let u = u
            .chunks_exact(c_out * c_in)
            .map(|uk| PackedA::new(c_out, c_in, |r, c| uk[r * c_in + c]))
            .collect();
        Ok(Self { u, c_out, c_in })
    }
}

/// The banded bf16 convolution: per band, the f32 input transform, V rounded and packed in
/// channel pairs, the 16 bf16 products, the f32 output transform.
pub(super) fn banded(
    data: &[f32],
    weights: &Weights,
    bias: &[f32],
    geo: &Geometry,
    band_tiles: usize,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    if weights.c_in != c_in || weights.c_out != c_out || weights.u.len() != 16 {
        return Err(err(ConvError::Internal(
            "bf16 winograd weights do not match the layer",
        )));
    }
    let kp = c_in.div_ceil(2);
    let ld_of = |nt: usize| nt.div_ceil(LANES) * LANES;
    for_each_band(
        data,
        bias,
        geo,
        band_tiles,
        ld_of,
        out,
        |img_data, band, emit| {
            let ldb = band.ld;
            with_values(16 * c_out * ldb, |m| {
                with_pairs(16 * kp * ldb, |vb| {
                    input_transform_pairs(img_data, c_in, band, vb)?;
                    zero_tail(vb, ldb, band.tiles());
                    for (k, uk) in weights.u.iter().enumerate() {
                        let vk = &vb[k * kp * ldb..(k + 1) * kp * ldb];
                        let mk = &mut m[k * c_out * ldb..(k + 1) * c_out * ldb];
                        bf16::gemm(uk, 0..uk.row_blocks(), vk, ldb, mk, ldb, ldb)?;
                    }
                    Ok::<(), candle_core::Error>(())
                })?;
                emit(m)
            })
        },
    )
}

/// The input transform of one band, rounded to bf16 and packed in channel pairs: `vb` is (16,
/// ceil(Cin/2), band.ld) pairs, tile `t` of the band in column `t`, zeros past the band's tiles
/// and past the last channel. The f32 arithmetic is the f32 path's ([`TileRows`]).
fn input_transform_pairs(
    img: &[f32],
    c_in: usize,
    band: &Band,
    vb: &mut [u32],
) -> candle_core::Result<()> {
    let (h, w, tw, ldb) = (band.h, band.w, band.tiles_w, band.ld);
    let (kp, nt) = (c_in.div_ceil(2), band.tiles());
    if img.len() != c_in * h * w || vb.len() != 16 * kp * ldb || band.col0 + nt > ldb {
        return Err(err(ConvError::Internal(
            "bf16 input transform buffers do not match",
        )));
    }
    let mut rows = TileRows::new(tw);
    // The 16 transformed rows of the two channels of a pair, for one tile row.
    let mut lo = vec![0f32; 16 * tw];
    let mut hi = vec![0f32; 16 * tw];
    let transform = |rows: &mut TileRows, plane: &[f32], ty: usize, dst: &mut [f32]| {
        rows.load(plane, h, w, ty);
        for (i, quad) in dst.chunks_exact_mut(4 * tw).enumerate() {
            let mut q = quad.chunks_exact_mut(tw);
            if let (Some(a), Some(b), Some(c), Some(d)) = (q.next(), q.next(), q.next(), q.next()) {
                rows.columns(i, [a, b, c, d]);
            }
        }
    };
    for p in 0..kp {
        let plane_lo = &img[2 * p * h * w..(2 * p + 1) * h * w];
        let plane_hi = img.get((2 * p + 1) * h * w..(2 * p + 2) * h * w);
        if plane_hi.is_none() {
            hi.fill(0.0);
        }
        for ty in band.ty0..band.ty1 {
            transform(&mut rows, plane_lo, ty, &mut lo);
            if let Some(plane) = plane_hi {
                transform(&mut rows, plane, ty, &mut hi);
            }
            let off = band.col0 + (ty - band.ty0) * tw;
            for (k, (a, b)) in lo.chunks_exact(tw).zip(hi.chunks_exact(tw)).enumerate() {
                let row = &mut vb[(k * kp + p) * ldb..(k * kp + p + 1) * ldb];
                for ((o, &x), &y) in row[off..off + tw].iter_mut().zip(a).zip(b) {
                    *o = pair(x, y);
                }
            }
        }
    }
    Ok(())
}

/// Zeroes the columns of `vb` (rows of `ld` pairs) from `from` on: padding the products read.
fn zero_tail(vb: &mut [u32], ld: usize, from: usize) {
    for row in vb.chunks_exact_mut(ld) {
        row[from..].fill(0);
    }
}

/// The whole-image schedule for small maps: the tiles of all images form one set of matrices;
/// the 16 products run in parallel over (k, block of output channels), the output transform in
/// parallel over output planes.
pub(super) fn whole_images(
    data: &[f32],
    weights: &Weights,
    bias: &[f32],
    geo: &Geometry,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let (c_in, c_out) = (geo.c_in, geo.c_out);
    if weights.c_in != c_in || weights.c_out != c_out || weights.u.len() != 16 {
        return Err(err(ConvError::Internal(
            "bf16 winograd weights do not match the layer",
        )));
    }
    let kp = c_in.div_ceil(2);
    let nt = geo.n * geo.tiles_h() * geo.tiles_w();
    let ldb = nt.div_ceil(LANES) * LANES;
    let mut vb = vec![0u32; 16 * kp * ldb];
    for (img, img_data) in data.chunks_exact(c_in * geo.plane()).enumerate() {
        input_transform_pairs(img_data, c_in, &geo.whole_band(img, ldb), &mut vb)?;
    }
    zero_tail(&mut vb, ldb, nt);
    let mut m = vec![0f32; 16 * c_out * ldb];
    m.par_chunks_mut(c_out * ldb)
        .zip(weights.u.par_iter())
        .zip(vb.par_chunks(kp * ldb))
        .try_for_each(|((mk, uk), vk)| {
            mk.par_chunks_mut(MR * ldb)
                .enumerate()
                .try_for_each(|(blk, rows)| bf16::gemm(uk, blk..blk + 1, vk, ldb, rows, ldb, ldb))
        })?;
    output_whole(&m, bias, geo, ldb, out)
}
