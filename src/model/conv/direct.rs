//! Direct convolution for layers with few output channels (FOMM's 7x7 heads).

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

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
