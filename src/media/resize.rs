//! Picture preprocessing that reproduces the original FOMM demo exactly.
//!
//! The original `demo.py` (github.com/AliaksandrSiarohin/first-order-model, lines 145-146) prepares every
//! picture with `skimage.transform.resize(frame, (256, 256))[..., :3]` on the `uint8` image that imageio
//! read, then casts to `float32`; it turns predictions back into pixels with `skimage.img_as_ubyte`
//! (line 159). This module re-implements both, following the source of scikit-image 0.26.0 and
//! SciPy 1.17.1 (the versions the reference data was made with):
//!
//! * `resize` with its defaults (`order=1`, `mode='reflect'`, `clip=True`, `preserve_range=False`,
//!   anti-aliasing on when any axis shrinks):
//!   1. `img_as_float`: `u8 * (1.0 / 255.0)` in `f64` (a multiplication by the rounded reciprocal, not a
//!      division: the two differ in the last bit for some values).
//!   2. Anti-aliasing: `scipy.ndimage.gaussian_filter` with `sigma = max(0, (factor - 1) / 2)` per axis
//!      (`factor = input / output`), `truncate = 4.0` (radius `int(4 * sigma + 0.5)`), axes filtered in
//!      order rows then columns, axes with `sigma <= 1e-15` skipped; skimage's `'reflect'` is ndimage's
//!      `'mirror'` (`d c b | a b c d | c b a`, edge not repeated). The kernel is `exp(-0.5 / sigma^2 * x^2)`
//!      normalised by its NumPy (pairwise) sum, applied with ndimage's symmetric-kernel loop
//!      (`centre * w0`, then `(left + right) * w_k` from the outermost tap inwards).
//!   3. `scipy.ndimage.zoom(order=1, mode='mirror', grid_mode=True)`: the input coordinate of output
//!      index `k` is `(k + 0.5) * (in / out) - 0.5`, mapped into the image by ndimage's mirror rule, then
//!      linear weights `1 - t`, `t`; the 2x2 neighbourhood is summed in ndimage's order. Equal input and
//!      output sizes take SciPy's early exit (a plain copy).
//!   4. Clip to `[min, max]` of the whole float input picture.
//! * `img_as_ubyte` on a `float32` array: multiply by `255` in `float32`, round half to even (`np.rint`),
//!   clip to `[0, 255]`; values below `-1` or above `1` are an error in skimage, and here too.
//!
//! The arithmetic is done in `f64` in the same order as SciPy's C loops, so results agree with scikit-image
//! to within an ulp or two in `f64` (exactly, after the cast to `f32`, in the reference tests).
//!
//! Channel conventions (see also [`crate::media::frames::load_rgb`]): `[..., :3]` after `resize` only drops
//! an alpha channel; resizing is per channel, so resizing the RGB channels alone gives the same values,
//! except that skimage's clip range then also covers the alpha values, a difference of at most one ulp
//! (the reference tests check an RGBA case). A grey picture makes the original demo fail (imageio returns a
//! 2-D array, and `[..., :3]` then cuts columns); we replicate grey into R, G and B, which gives exactly
//! what resizing the grey picture and replicating it would.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use super::MediaError;

/// `truncate` of `scipy.ndimage.gaussian_filter` (its default, which `skimage.transform.resize` keeps).
const GAUSSIAN_TRUNCATE: f64 = 4.0;
/// `gaussian_filter` skips an axis whose sigma is at most this (`scipy/ndimage/_filters.py`).
const SIGMA_SKIP: f64 = 1e-15;
/// Largest picture side we accept (guards the index arithmetic; 64 Ki pixels).
const MAX_SIDE: usize = 1 << 16;

/// Resize an 8-bit RGB picture exactly like `skimage.transform.resize(img, (out_height, out_width))`
/// with its defaults. Returns `out_height * out_width * 3` values in `[0, 1]`, row-major HWC.
pub fn resize_like_skimage(
    img: &RgbImage,
    out_width: u32,
    out_height: u32,
) -> Result<Vec<f64>, MediaError> {
    // skimage's img_as_float for uint8: `np.multiply(image, 1.0 / 255, dtype=float64)`
    // (skimage/util/dtype.py, `_convert`).
    let scale = 1.0 / 255.0;
    let src: Vec<f64> = img.as_raw().iter().map(|&v| f64::from(v) * scale).collect();
    resize_hwc_f64(
        &src,
        img.width() as usize,
        img.height() as usize,
        3,
        out_width as usize,
        out_height as usize,
    )
}

/// The resize of [`resize_like_skimage`] on any float picture: `src` holds `height * width * channels`
/// values, row-major HWC. Every channel is resized on its own (skimage's channel axis has factor 1:
/// no smoothing, identity interpolation); the clip range is the min / max over all of `src`.
pub fn resize_hwc_f64(
    src: &[f64],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
) -> Result<Vec<f64>, MediaError> {
    for (what, v) in [
        ("input width", width),
        ("input height", height),
        ("output width", out_width),
        ("output height", out_height),
    ] {
        if v == 0 || v > MAX_SIDE {
            return Err(MediaError::InvalidArgument(format!(
                "cannot resize: the {what} is {v}; it must be between 1 and {MAX_SIDE}"
            )));
        }
    }
    if channels == 0 || channels > 16 {
        return Err(MediaError::InvalidArgument(format!(
            "cannot resize a picture with {channels} channels (1 to 16 supported)"
        )));
    }
    let expected = width * height * channels;
    if src.len() != expected {
        return Err(MediaError::InvalidArgument(format!(
            "cannot resize: a {width}x{height} picture with {channels} channels needs {expected} values, got {}",
            src.len()
        )));
    }

    // Clip range: min / max of the float input (skimage `_clip_warp_output`, NaN-ignoring).
    let (lo, hi) = src
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });

    // SciPy's zoom returns a copy when every zoom factor is 1 (`ndimage.zoom`, "early exit for
    // gh-20999"); no axis shrinks, so skimage applies no smoothing either.
    if width == out_width && height == out_height {
        return Ok(src.iter().map(|&v| v.clamp(lo, hi)).collect());
    }

    let taps_y = zoom_taps(height, out_height);
    let taps_x = zoom_taps(width, out_width);

    // Anti-aliasing (skimage `resize`): on when any axis shrinks; sigma per axis from its factor.
    let anti_aliasing = out_height < height || out_width < width;
    let kernel = |len: usize, out_len: usize| -> Option<Vec<f64>> {
        if !anti_aliasing {
            return None;
        }
        let factor = len as f64 / out_len as f64;
        let sigma = ((factor - 1.0) / 2.0).max(0.0);
        (sigma > SIGMA_SKIP).then(|| gaussian_kernel(sigma))
    };
    let kernel_y = kernel(height, out_height);
    let kernel_x = kernel(width, out_width);

    // Only the input rows / columns the interpolation reads are needed; filtering just those gives the
    // same values as filtering everything (each filtered value depends only on the input).
    let rows = needed_indices(&taps_y, height);
    let cols = needed_indices(&taps_x, width);
    let row_slot = slot_table(&rows, height);
    let col_slot = slot_table(&cols, width);

    let row_len = width * channels;
    // Pass 1 (axis 0, rows): full filtered rows for every needed row.
    let filtered_rows: Vec<Vec<f64>> = rows
        .par_iter()
        .map(|&y| match &kernel_y {
            Some(k) => filter_column_direction(src, width * channels, height, y, k),
            None => src[y * row_len..(y + 1) * row_len].to_vec(),
        })
        .collect();
    // Pass 2 (axis 1, columns): only the needed columns of each needed row, as [slot][col_slot * c + ch].
    let filtered: Vec<Vec<f64>> = filtered_rows
        .par_iter()
        .map(|row| {
            let mut out = Vec::with_capacity(cols.len() * channels);
            for &x in &cols {
                for ch in 0..channels {
                    out.push(match &kernel_x {
                        Some(k) => filter_row_direction(row, width, channels, x, ch, k),
                        None => row[x * channels + ch],
                    });
                }
            }
            out
        })
        .collect();

    // Zoom (order 1) and clip.
    let mut out = vec![0.0f64; out_height * out_width * channels];
    out.par_chunks_mut(out_width * channels)
        .zip(taps_y.par_iter())
        .for_each(|(out_row, ty)| {
            let r0 = &filtered[row_slot[ty.i0]];
            let r1 = &filtered[row_slot[ty.i1]];
            for (ox, tx) in taps_x.iter().enumerate() {
                let c0 = col_slot[tx.i0] * channels;
                let c1 = col_slot[tx.i1] * channels;
                for ch in 0..channels {
                    // NI_ZoomShift sums the filter footprint with the last axis fastest and multiplies
                    // each value by the row weight, then the column weight. (For an HWC array the
                    // channel axis adds exact zeros, which change nothing.)
                    let mut t = 0.0f64;
                    t += r0[c0 + ch] * ty.w0 * tx.w0;
                    t += r0[c1 + ch] * ty.w0 * tx.w1;
                    t += r1[c0 + ch] * ty.w1 * tx.w0;
                    t += r1[c1 + ch] * ty.w1 * tx.w1;
                    out_row[ox * channels + ch] = t.clamp(lo, hi);
                }
            }
        });
    Ok(out)
}

/// Resize like the original demo and lay the result out as a model input: a `(1, 3, out_height,
/// out_width)` `f32` tensor on the CPU (demo.py: `resize(...)[..., :3]`, then `.astype(np.float32)` and
/// `permute(0, 3, 1, 2)`).
pub fn to_model_tensor(
    img: &RgbImage,
    out_width: u32,
    out_height: u32,
) -> Result<Tensor, MediaError> {
    let hwc = resize_like_skimage(img, out_width, out_height)?;
    hwc_to_nchw_tensor(&hwc, out_width as usize, out_height as usize)
}

/// `(1, 3, height, width)` `f32` CPU tensor from packed RGB8 pixels scaled to `[0, 1]` (no resize:
/// the live loop's frames are already at the model's size).
pub fn rgb8_to_tensor(rgb: &[u8], width: usize, height: usize) -> Result<Tensor, MediaError> {
    let plane = width * height;
    if rgb.len() != plane * 3 {
        return Err(MediaError::InvalidArgument(format!(
            "a {width}x{height} RGB picture needs {} bytes, got {}",
            plane * 3,
            rgb.len()
        )));
    }
    let mut chw = vec![0.0f32; plane * 3];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * plane + i] = v as f32 / 255.0;
        }
    }
    Ok(Tensor::from_vec(chw, (1, 3, height, width), &Device::Cpu)?)
}

/// `(1, 3, height, width)` `f32` CPU tensor from RGB HWC `f64` values (round to nearest `f32`).
pub fn hwc_to_nchw_tensor(hwc: &[f64], width: usize, height: usize) -> Result<Tensor, MediaError> {
    let plane = width * height;
    if hwc.len() != plane * 3 {
        return Err(MediaError::InvalidArgument(format!(
            "a {width}x{height} RGB picture needs {} values, got {}",
            plane * 3,
            hwc.len()
        )));
    }
    let mut chw = vec![0.0f32; plane * 3];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * plane + i] = v as f32;
        }
    }
    Ok(Tensor::from_vec(chw, (1, 3, height, width), &Device::Cpu)?)
}

/// Turn a `(1, 3, H, W)` or `(3, H, W)` tensor with values in `[0, 1]` into an 8-bit picture exactly like
/// `skimage.img_as_ubyte` (scikit-image 0.26 `util/dtype.py`, `_convert`, float -> uint8):
/// `rint(x * 255)` computed in the tensor's float type (`f32` for the model's output; `f64` for `f64`;
/// `f16` / `bf16` are widened to `f32` first), rounding half to even, then clipped to `[0, 255]`.
/// Like skimage, values below `-1` or above `1` are rejected; unlike skimage (which would produce
/// arbitrary bytes), so are NaN and infinities.
pub fn tensor_to_rgb8(t: &Tensor) -> Result<RgbImage, MediaError> {
    let (h, w) = match t.dims() {
        &[1, 3, h, w] | &[3, h, w] => (h, w),
        other => {
            return Err(MediaError::InvalidArgument(format!(
                "expected a (1, 3, H, W) or (3, H, W) image tensor, got shape {other:?}"
            )));
        }
    };
    let (wu, hu) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(wu), Ok(hu)) if w > 0 && h > 0 => (wu, hu),
        _ => {
            return Err(MediaError::InvalidArgument(format!(
                "cannot make a {w}x{h} picture"
            )));
        }
    };
    let t = t.to_device(&Device::Cpu)?.flatten_all()?;
    let bytes: Vec<u8> = match t.dtype() {
        DType::F64 => {
            let v = t.to_vec1::<f64>()?;
            check_unit_range(v.iter().copied())?;
            v.iter()
                .map(|&x| (x * 255.0).round_ties_even().clamp(0.0, 255.0) as u8)
                .collect()
        }
        _ => {
            let v = t.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            check_unit_range(v.iter().map(|&x| f64::from(x)))?;
            v.iter()
                .map(|&x| (x * 255.0f32).round_ties_even().clamp(0.0, 255.0) as u8)
                .collect()
        }
    };
    // CHW -> HWC.
    let plane = w * h;
    let mut hwc = vec![0u8; plane * 3];
    for ch in 0..3 {
        for (i, &b) in bytes[ch * plane..(ch + 1) * plane].iter().enumerate() {
            hwc[i * 3 + ch] = b;
        }
    }
    RgbImage::from_raw(wu, hu, hwc)
        .ok_or_else(|| MediaError::InvalidArgument(format!("could not build a {w}x{h} picture")))
}

/// The centred square of side `min(width, height)`; the offsets are rounded down.
/// Returns `(x, y, side)`.
pub fn center_square_rect(width: u32, height: u32) -> (u32, u32, u32) {
    let side = width.min(height);
    ((width - side) / 2, (height - side) / 2, side)
}

/// Crop the centred square of side `min(width, height)` (a plain integer crop, no resampling).
pub fn center_square_crop(img: &RgbImage) -> RgbImage {
    let (x, y, side) = center_square_rect(img.width(), img.height());
    image::imageops::crop_imm(img, x, y, side, side).to_image()
}

fn check_unit_range(values: impl Iterator<Item = f64>) -> Result<(), MediaError> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in values {
        if !v.is_finite() {
            return Err(MediaError::InvalidPixels(format!(
                "the image tensor holds a non-finite value ({v}); expected values in [0, 1]"
            )));
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo < -1.0 || hi > 1.0 {
        return Err(MediaError::InvalidPixels(format!(
            "the image tensor holds values from {lo} to {hi}; float images must be between -1 and 1 \
             (expected [0, 1]) to become 8-bit pixels"
        )));
    }
    Ok(())
}

/// Interpolation taps of one output index along one axis.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f64,
    w1: f64,
}

/// `map_coordinate` of SciPy's `ni_interpolation.c` for mode `NI_EXTEND_MIRROR`, kept operation for
/// operation (including its `f64` arithmetic) so coordinates land in the same place.
fn map_coordinate_mirror(mut x: f64, len: usize) -> f64 {
    let len_f = len as f64;
    if x < 0.0 {
        if len <= 1 {
            x = 0.0;
        } else {
            let sz2 = 2 * len as i64 - 2;
            x = (sz2 * ((-x / sz2 as f64) as i64)) as f64 + x;
            x = if x <= 1.0 - len_f { x + sz2 as f64 } else { -x };
        }
    } else if x > len_f - 1.0 {
        if len <= 1 {
            x = 0.0;
        } else {
            let sz2 = 2 * len as i64 - 2;
            x -= (sz2 * ((x / sz2 as f64) as i64)) as f64;
            if x >= len_f {
                x = sz2 as f64 - x;
            }
        }
    }
    x
}

/// Integer index after mirror extension (valid for any integer, any `len >= 1`).
fn mirror_index(i: i64, len: usize) -> usize {
    if len <= 1 {
        return 0;
    }
    let period = 2 * (len as i64 - 1);
    let j = i.rem_euclid(period);
    let j = if j >= len as i64 { period - j } else { j };
    j as usize
}

/// Linear (order 1) zoom taps for every output index of one axis, as `NI_ZoomShift` computes them with
/// `grid_mode=True` and mode `mirror`.
fn zoom_taps(in_len: usize, out_len: usize) -> Vec<Tap> {
    // ndimage.zoom: zoom = input_shape / output_shape (grid_mode=True), as f64.
    let zoom = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|k| {
            let mut cc = k as f64;
            cc += 0.5;
            cc *= zoom;
            cc -= 0.5;
            let cc = map_coordinate_mirror(cc, in_len);
            let fl = cc.floor();
            let start = fl as i64;
            // get_spline_interpolation_weights, order 1.
            let t = cc - fl;
            let w0 = 1.0 - t;
            let w1 = 1.0 - w0;
            // Edge taps go through map_coordinate (spline boundary mode `mirror`), which for integer
            // positions is the plain mirror index.
            Tap {
                i0: mirror_index(start, in_len),
                i1: mirror_index(start + 1, in_len),
                w0,
                w1,
            }
        })
        .collect()
}

/// Sorted, deduplicated input indices the taps read.
fn needed_indices(taps: &[Tap], len: usize) -> Vec<usize> {
    let mut used = vec![false; len];
    for t in taps {
        used[t.i0] = true;
        used[t.i1] = true;
    }
    (0..len).filter(|&i| used[i]).collect()
}

/// For each input index, its position in `indices` (unused positions hold 0 and are never read).
fn slot_table(indices: &[usize], len: usize) -> Vec<usize> {
    let mut slot = vec![0usize; len];
    for (s, &i) in indices.iter().enumerate() {
        slot[i] = s;
    }
    slot
}

/// SciPy's `_gaussian_kernel1d(sigma, 0, radius)` with `radius = int(truncate * sigma + 0.5)`.
/// The kernel is exactly symmetric, so the reversal `gaussian_filter1d` applies changes nothing.
fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let radius = (GAUSSIAN_TRUNCATE * sigma + 0.5) as i64;
    let sigma2 = sigma * sigma;
    let a = -0.5 / sigma2;
    let phi: Vec<f64> = (-radius..=radius)
        .map(|x| (a * (x * x) as f64).exp())
        .collect();
    let sum = numpy_pairwise_sum(&phi);
    phi.iter().map(|&p| p / sum).collect()
}

/// NumPy's pairwise summation of a contiguous `float64` array (`pairwise_sum` in
/// `numpy/_core/src/umath/loops_utils.h.src`; block size 128, 8 accumulators).
fn numpy_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_pairwise_sum(&a[..n2]) + numpy_pairwise_sum(&a[n2..])
    }
}

/// Row `y` of the picture filtered along axis 0 (down the columns), every column and channel.
/// `row_len = width * channels`. Same loop as `NI_Correlate1D` for a symmetric kernel.
fn filter_column_direction(
    src: &[f64],
    row_len: usize,
    height: usize,
    y: usize,
    kernel: &[f64],
) -> Vec<f64> {
    let r = kernel.len() / 2;
    let w0 = kernel[r];
    let row = |i: i64| {
        let yy = mirror_index(i, height);
        &src[yy * row_len..(yy + 1) * row_len]
    };
    let centre = row(y as i64);
    let mut out: Vec<f64> = centre.iter().map(|&v| v * w0).collect();
    // jj = -r .. -1: the outermost pair first.
    for k in (1..=r).rev() {
        let wk = kernel[r - k];
        let left = row(y as i64 - k as i64);
        let right = row(y as i64 + k as i64);
        for ((o, &l), &rt) in out.iter_mut().zip(left).zip(right) {
            *o += (l + rt) * wk;
        }
    }
    out
}

/// Value at column `x`, channel `ch` of one row filtered along axis 1.
fn filter_row_direction(
    row: &[f64],
    width: usize,
    channels: usize,
    x: usize,
    ch: usize,
    kernel: &[f64],
) -> f64 {
    let r = kernel.len() / 2;
    let at = |i: i64| row[mirror_index(i, width) * channels + ch];
    let mut t = at(x as i64) * kernel[r];
    for k in (1..=r).rev() {
        t += (at(x as i64 - k as i64) + at(x as i64 + k as i64)) * kernel[r - k];
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_index_matches_ndimage_extension() {
        // ndimage 'mirror' of [a b c d]: ... d c b | a b c d | c b a b c d c ...
        let got: Vec<usize> = (-7..11).map(|i| mirror_index(i, 4)).collect();
        assert_eq!(
            got,
            vec![1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
        );
        assert_eq!(mirror_index(-5, 1), 0);
        assert_eq!(mirror_index(7, 1), 0);
    }

    #[test]
    fn map_coordinate_agrees_with_mirror_index_on_integers() {
        for len in 1..7usize {
            for i in -20i64..20 {
                let m = map_coordinate_mirror(i as f64, len);
                assert_eq!(m, mirror_index(i, len) as f64, "len {len} i {i}");
            }
        }
    }

    #[test]
    fn pairwise_sum_handles_all_lengths() {
        for n in [0usize, 1, 7, 8, 9, 16, 127, 128, 129, 300] {
            let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let want = (n * n.saturating_sub(1) / 2) as f64;
            assert_eq!(numpy_pairwise_sum(&a), want, "n {n}");
        }
    }

    #[test]
    fn gaussian_kernel_radius_and_normalisation() {
        // sigma 0.5 (factor 2): radius int(4 * 0.5 + 0.5) = 2.
        let k = gaussian_kernel(0.5);
        assert_eq!(k.len(), 5);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert_eq!(k[0], k[4]);
        // sigma 1.125 (factor 3.25): radius int(5.0) = 5.
        assert_eq!(gaussian_kernel(1.125).len(), 11);
    }

    #[test]
    fn rejects_bad_sizes() {
        let img = RgbImage::new(4, 4);
        assert!(resize_like_skimage(&img, 0, 4).is_err());
        assert!(resize_hwc_f64(&[0.0; 10], 2, 2, 3, 2, 2).is_err());
    }

    #[test]
    fn center_square_offsets_round_down() {
        assert_eq!(center_square_rect(7, 4), (1, 0, 4));
        assert_eq!(center_square_rect(4, 9), (0, 2, 4));
        assert_eq!(center_square_rect(5, 5), (0, 0, 5));
    }
}
