//! Points worth tracking: Shi-Tomasi "good features to track" (Shi & Tomasi, CVPR 1994), the smaller
//! eigenvalue of the local structure tensor, picked one per grid cell so that they spread over the frame.
//!
//! Written here rather than taken from `imageproc`: its corner module has FAST and Harris-like detectors
//! on u8 images only, and the tracker needs the f32 response map anyway (also for the texture cloud that
//! sizes the portrait against the reference frame).

use super::pyramid::GrayImage;

/// A detected corner, in level-0 pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Corner {
    /// Column, pixels.
    pub x: f32,
    /// Row, pixels.
    pub y: f32,
    /// The smaller eigenvalue of the mean structure tensor, in (intensity / pixel)^2.
    pub score: f32,
}

/// How corners are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectParams {
    /// At most this many corners; the frame is cut into about this many square cells, one corner each.
    pub max_corners: usize,
    /// A corner's score must be at least this fraction of the best score in the image (OpenCV's
    /// `qualityLevel`; 0.01 is its documented typical value).
    pub quality: f32,
    /// ... and at least this absolute score, so that a blank or noise-only frame yields nothing.
    pub min_score: f32,
    /// Corners closer than this to the image border (pixels) are skipped.
    pub margin: usize,
    /// Radius of the box over which the structure tensor is averaged (a (2r+1)^2 block).
    pub block_radius: usize,
}

/// The Shi-Tomasi response of every pixel: the smaller eigenvalue of the structure tensor averaged over
/// a (2r+1)^2 box (clipped at the border), with central-difference gradients.
pub fn min_eigen_map(img: &GrayImage, block_radius: usize) -> Vec<f32> {
    let (w, h) = (img.width(), img.height());
    let n = w * h;
    let mut gxx = vec![0f32; n];
    let mut gxy = vec![0f32; n];
    let mut gyy = vec![0f32; n];
    for y in 0..h {
        for x in 0..w {
            let (xi, yi) = (x as isize, y as isize);
            let gx = 0.5 * (img.at(xi + 1, yi) - img.at(xi - 1, yi));
            let gy = 0.5 * (img.at(xi, yi + 1) - img.at(xi, yi - 1));
            let i = y * w + x;
            gxx[i] = gx * gx;
            gxy[i] = gx * gy;
            gyy[i] = gy * gy;
        }
    }
    let sxx = box_mean(&gxx, w, h, block_radius);
    let sxy = box_mean(&gxy, w, h, block_radius);
    let syy = box_mean(&gyy, w, h, block_radius);
    sxx.iter()
        .zip(&sxy)
        .zip(&syy)
        .map(|((&a, &b), &c)| min_eigen(a, b, c))
        .collect()
}

/// Standard deviation of the image's noise, by Immerkaer's estimator ("Fast noise variance estimation",
/// CVIU 1996): the mean absolute response to the mask [1 -2 1; -2 4 -2; 1 -2 1], which cancels smooth image
/// content, times sqrt(pi / 2) / 6. Image structure (edges) makes it an over-estimate, never an under-estimate.
pub fn noise_sigma(img: &GrayImage) -> f32 {
    let (w, h) = (img.width(), img.height());
    if w < 3 || h < 3 {
        return 0.0;
    }
    let d = img.data();
    let mut sum = 0f64;
    for y in 1..h - 1 {
        let (Some(up), Some(mid), Some(down)) = (
            d.get((y - 1) * w..y * w),
            d.get(y * w..(y + 1) * w),
            d.get((y + 1) * w..(y + 2) * w),
        ) else {
            continue;
        };
        for x in 1..w - 1 {
            let v = (up[x - 1] + up[x + 1] + down[x - 1] + down[x + 1])
                - 2.0 * (up[x] + down[x] + mid[x - 1] + mid[x + 1])
                + 4.0 * mid[x];
            sum += v.abs() as f64;
        }
    }
    let count = ((w - 2) * (h - 2)) as f64;
    ((std::f64::consts::FRAC_PI_2).sqrt() / 6.0 * sum / count) as f32
}

/// Smaller eigenvalue of the symmetric matrix [[a, b], [b, c]].
#[inline]
pub fn min_eigen(a: f32, b: f32, c: f32) -> f32 {
    let half_trace = 0.5 * (a + c);
    let half_diff = 0.5 * (a - c);
    (half_trace - (half_diff * half_diff + b * b).sqrt()).max(0.0)
}

/// Mean over the (2r+1)^2 box around each pixel, clipped to the image, by separable sums in f64
/// (so that long rows and columns do not drift): each row's box sums from its prefix sums, then a
/// running sum of those rows down the image, a whole row at a time (contiguous, unlike a pass down
/// each column).
fn box_mean(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let mut out = vec![0f32; w * h];
    if w == 0 || h == 0 || src.len() != w * h {
        return out;
    }
    // The clipped box's extent along each axis.
    let span = |i: usize, n: usize| (i + r + 1).min(n) - i.saturating_sub(r);
    let inv_cols: Vec<f64> = (0..w).map(|x| 1.0 / span(x, w) as f64).collect();
    let mut rows = vec![0f64; w * h];
    let mut prefix = vec![0f64; w + 1];
    for (s, d) in src.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
        let mut acc = 0f64;
        for (p, &v) in prefix.iter_mut().skip(1).zip(s) {
            acc += v as f64;
            *p = acc;
        }
        for (x, d) in d.iter_mut().enumerate() {
            let (lo, hi) = (x.saturating_sub(r), (x + r + 1).min(w));
            *d = prefix[hi] - prefix[lo];
        }
    }
    let row = |y: usize| &rows[y * w..(y + 1) * w];
    let mut acc = vec![0f64; w];
    for y in 0..=r.min(h - 1) {
        acc.iter_mut().zip(row(y)).for_each(|(a, v)| *a += v);
    }
    for (y, o) in out.chunks_exact_mut(w).enumerate() {
        if y > 0 {
            if y + r < h {
                acc.iter_mut().zip(row(y + r)).for_each(|(a, v)| *a += v);
            }
            if y > r {
                acc.iter_mut()
                    .zip(row(y - r - 1))
                    .for_each(|(a, v)| *a -= v);
            }
        }
        let inv_rows = 1.0 / span(y, h) as f64;
        for ((o, a), c) in o.iter_mut().zip(&acc).zip(&inv_cols) {
            *o = (a * c * inv_rows) as f32;
        }
    }
    out
}

/// Up to `params.max_corners` corners from a response map of `img`'s size: the best pixel of each grid cell,
/// if it passes the quality and absolute thresholds, strongest first, at least half a cell apart from each
/// other and from every point in `exclude`.
pub fn detect_corners(
    response: &[f32],
    width: usize,
    height: usize,
    params: &DetectParams,
    exclude: &[[f32; 2]],
) -> Vec<Corner> {
    if response.len() != width * height || params.max_corners == 0 {
        return Vec::new();
    }
    let best = response.iter().copied().fold(0f32, f32::max);
    let threshold = (params.quality * best).max(params.min_score);
    if best.is_nan() || best < threshold || best <= 0.0 {
        return Vec::new();
    }
    let cell = (((width * height) as f64 / params.max_corners as f64)
        .sqrt()
        .ceil() as usize)
        .max(2);
    let (x_lo, x_hi) = (params.margin, width.saturating_sub(params.margin));
    let (y_lo, y_hi) = (params.margin, height.saturating_sub(params.margin));
    let mut candidates = Vec::new();
    for cy in (y_lo..y_hi).step_by(cell) {
        for cx in (x_lo..x_hi).step_by(cell) {
            let mut top: Option<Corner> = None;
            for y in cy..(cy + cell).min(y_hi) {
                for x in cx..(cx + cell).min(x_hi) {
                    let s = response.get(y * width + x).copied().unwrap_or(0.0);
                    if s >= threshold && top.is_none_or(|t| s > t.score) {
                        top = Some(Corner {
                            x: x as f32,
                            y: y as f32,
                            score: s,
                        });
                    }
                }
            }
            candidates.extend(top);
        }
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let min_d2 = (0.5 * cell as f32).powi(2);
    let mut chosen: Vec<Corner> = Vec::with_capacity(params.max_corners.min(candidates.len()));
    for c in candidates {
        if chosen.len() >= params.max_corners {
            break;
        }
        let far = |p: [f32; 2]| (p[0] - c.x).powi(2) + (p[1] - c.y).powi(2) >= min_d2;
        if chosen.iter().all(|o| far([o.x, o.y])) && exclude.iter().all(|&p| far(p)) {
            chosen.push(c);
        }
    }
    chosen
}

/// Where the texture of an image is and how far it spreads: the centroid and size of the response map
/// restricted to pixels of at least `quality` times the best response, weighted by response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cloud {
    /// Response-weighted mean position (x, y), pixels.
    pub centroid: [f64; 2],
    /// Geometric mean of the two standard deviations, det(cov)^(1/4), in pixels.
    pub size: f64,
}

/// The texture cloud of a response map, counting pixels of at least `quality` times the best response
/// and at least `min_score`; `None` for a blank map or one whose texture lies on a line.
pub fn texture_cloud(
    response: &[f32],
    width: usize,
    height: usize,
    quality: f32,
    min_score: f32,
) -> Option<Cloud> {
    if response.len() != width * height {
        return None;
    }
    let best = response.iter().copied().fold(0f32, f32::max);
    if best.is_nan() || best <= 0.0 {
        return None;
    }
    let threshold = (quality * best).max(min_score);
    let (mut sw, mut sx, mut sy, mut sxx, mut sxy, mut syy) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for (i, &r) in response.iter().enumerate() {
        if r >= threshold {
            let (x, y, r) = ((i % width) as f64, (i / width) as f64, r as f64);
            sw += r;
            sx += r * x;
            sy += r * y;
            sxx += r * x * x;
            sxy += r * x * y;
            syy += r * y * y;
        }
    }
    if sw.is_nan() || sw <= 0.0 {
        return None;
    }
    let (mx, my) = (sx / sw, sy / sw);
    let (vxx, vxy, vyy) = (sxx / sw - mx * mx, sxy / sw - mx * my, syy / sw - my * my);
    let det = vxx * vyy - vxy * vxy;
    let size = det.max(0.0).sqrt().sqrt();
    (size.is_finite() && size > 1.0).then_some(Cloud {
        centroid: [mx, my],
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(w: usize, h: usize, period: usize) -> GrayImage {
        let data = (0..w * h)
            .map(|i| (((i % w) / period + (i / w) / period) % 2) as f32)
            .collect();
        GrayImage::from_vec(w, h, data).unwrap()
    }

    #[test]
    fn corners_of_a_checkerboard_are_found_and_spread() {
        let img = checker(64, 64, 8);
        let map = min_eigen_map(&img, 2);
        let params = DetectParams {
            max_corners: 64,
            quality: 0.1,
            min_score: 1e-4,
            margin: 4,
            block_radius: 2,
        };
        let corners = detect_corners(&map, 64, 64, &params, &[]);
        assert!(corners.len() >= 30, "{}", corners.len());
        // Every corner sits at a checker junction (multiples of 8, minus half a pixel), up to the
        // plateau of the 5x5 block: pixels 6..=9 around the junction at 7.5 all see both gradient columns.
        for c in &corners {
            let off = |v: f32| ((v + 0.5) / 8.0 - ((v + 0.5) / 8.0).round()).abs() * 8.0;
            assert!(off(c.x) <= 1.5 && off(c.y) <= 1.5, "{c:?}");
        }
    }

    #[test]
    fn noise_estimate_is_close_for_white_noise() {
        let mut state = 12345u64;
        let data: Vec<f32> = (0..128 * 128)
            .map(|_| {
                // Sum of 12 uniforms - 6: approximately N(0, 1).
                let mut acc = 0f32;
                for _ in 0..12 {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    acc += (state >> 40) as f32 / (1u64 << 24) as f32;
                }
                0.5 + 0.02 * (acc - 6.0)
            })
            .collect();
        let img = GrayImage::from_vec(128, 128, data).unwrap();
        let s = noise_sigma(&img);
        assert!((s - 0.02).abs() < 0.002, "{s}");
    }

    #[test]
    fn a_blank_image_has_no_corners_and_no_cloud() {
        let img = GrayImage::from_vec(32, 32, vec![0.0; 1024]).unwrap();
        assert_eq!(noise_sigma(&img), 0.0);
        let map = min_eigen_map(&img, 2);
        let params = DetectParams {
            max_corners: 64,
            quality: 0.01,
            min_score: 1e-4,
            margin: 2,
            block_radius: 2,
        };
        assert!(detect_corners(&map, 32, 32, &params, &[]).is_empty());
        assert!(texture_cloud(&map, 32, 32, 0.05, 0.0).is_none());
    }

    /// The separable running sums give the mean of each clipped box, as summing the box does.
    #[test]
    fn box_mean_is_the_mean_of_each_clipped_box() {
        for (w, h, r) in [(9, 7, 2), (5, 11, 4), (3, 3, 6), (16, 1, 1), (1, 6, 2)] {
            let src: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 23) as f32 / 7.0).collect();
            let got = box_mean(&src, w, h, r);
            for y in 0..h {
                for x in 0..w {
                    let (mut sum, mut n) = (0f64, 0);
                    for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                        for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                            sum += src[yy * w + xx] as f64;
                            n += 1;
                        }
                    }
                    let want = (sum / n as f64) as f32;
                    let g = got[y * w + x];
                    assert!(
                        (g - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "{w}x{h} r {r} at ({x}, {y}): {g} vs {want}"
                    );
                }
            }
        }
    }
}
