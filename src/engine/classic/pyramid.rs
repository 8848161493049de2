//! Grayscale f32 images and their Gaussian pyramids: what the tracker and the corner detector read.
//!
//! Coordinates are in pixels with pixel centres at integers (0 is the centre of the first pixel), the
//! align_corners = true convention of the rest of the engine. Level `l` of a pyramid halves level `l - 1`
//! by keeping its even pixels after a binomial blur, so a point at `x` on level 0 is at `x / 2^l` on level `l`.

/// Smallest side a pyramid level may have: a level smaller than this carries too little image to track on.
pub const MIN_LEVEL_SIDE: usize = 16;

/// A single-channel f32 image, row-major, at least 2x2.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    width: usize,
    height: usize,
    max_x: f32,
    max_y: f32,
    data: Vec<f32>,
}

impl GrayImage {
    /// Wraps row-major `data`; `None` unless `data.len() == width * height` and both sides are at least 2.
    pub fn from_vec(width: usize, height: usize, data: Vec<f32>) -> Option<Self> {
        if width < 2 || height < 2 || width.checked_mul(height) != Some(data.len()) {
            return None;
        }
        Some(Self {
            width,
            height,
            max_x: (width - 1) as f32,
            max_y: (height - 1) as f32,
            data,
        })
    }

    /// Luma of a planar RGB image (3 planes of `width * height`, as a (3, H, W) tensor's data), with the
    /// ITU-R BT.601 weights (0.299, 0.587, 0.114). Non-finite values count as 0 so that nothing downstream
    /// sees a NaN.
    pub fn from_planar_rgb(rgb: &[f32], width: usize, height: usize) -> Option<Self> {
        let plane = width.checked_mul(height)?;
        if rgb.len() != plane.checked_mul(3)? {
            return None;
        }
        let (r, rest) = rgb.split_at(plane);
        let (g, b) = rest.split_at(plane);
        let finite = |v: f32| if v.is_finite() { v } else { 0.0 };
        let data = r
            .iter()
            .zip(g)
            .zip(b)
            .map(|((&r, &g), &b)| 0.299 * finite(r) + 0.587 * finite(g) + 0.114 * finite(b))
            .collect();
        Self::from_vec(width, height, data)
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Row-major pixel values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Pixel (x, y) with coordinates clamped into the image (replicated border).
    #[inline]
    pub fn at(&self, x: isize, y: isize) -> f32 {
        let x = x.clamp(0, self.width as isize - 1) as usize;
        let y = y.clamp(0, self.height as isize - 1) as usize;
        self.data.get(y * self.width + x).copied().unwrap_or(0.0)
    }

    /// Samples the window `centre + a d`, `d` in [-r, r]^2, row by row (`d`'s y outer, x inner)
    /// into `out` ((2r+1)^2 values; `out` shorter takes the first rows), as [`GrayImage::sample`]
    /// would. Where the processor has AVX2 and FMA (and `MARIONETTE_CPU` allows them) eight
    /// samples are taken at once; the results differ from [`GrayImage::sample`]'s only by the
    /// rounding of fused multiply-adds.
    pub fn sample_window(
        &self,
        centre: [f32; 2],
        a: [[f32; 2]; 2],
        radius: usize,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            let f = fomm::ops::cpu::features();
            if f.avx2 && f.fma {
                // SAFETY: AVX2 and FMA were detected on this processor.
                unsafe { simd::sample_window(self, centre, a, radius, out) };
                return;
            }
        }
        self.sample_window_scalar(centre, a, radius, out);
    }

    /// [`GrayImage::sample_window`] one sample at a time.
    fn sample_window_scalar(
        &self,
        centre: [f32; 2],
        a: [[f32; 2]; 2],
        radius: usize,
        out: &mut [f32],
    ) {
        let r = radius as isize;
        for (row, dy) in out.chunks_mut(2 * radius + 1).zip(-r..=r) {
            let fy = dy as f32;
            let row_x = centre[0] + a[0][1] * fy;
            let row_y = centre[1] + a[1][1] * fy;
            for (v, dx) in row.iter_mut().zip(-r..=r) {
                let fx = dx as f32;
                *v = self.sample(row_x + a[0][0] * fx, row_y + a[1][0] * fx);
            }
        }
    }

    /// Bilinear sample at (x, y); outside the image the border is replicated. A NaN coordinate gives NaN.
    #[inline]
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        let xc = x.clamp(0.0, self.max_x);
        let yc = y.clamp(0.0, self.max_y);
        // `as usize` saturates (NaN -> 0), and the min keeps x0 + 1 inside the row.
        let x0 = (xc as usize).min(self.width - 2);
        let y0 = (yc as usize).min(self.height - 2);
        let fx = xc - x0 as f32;
        let fy = yc - y0 as f32;
        let i = y0 * self.width + x0;
        let (Some(top), Some(bottom)) = (
            self.data.get(i..i + 2),
            self.data.get(i + self.width..i + self.width + 2),
        ) else {
            return 0.0;
        };
        let t = top[0] + fx * (top[1] - top[0]);
        let b = bottom[0] + fx * (bottom[1] - bottom[0]);
        t + fy * (b - t)
    }

    /// Half-size image: a separable [1, 4, 6, 4, 1] / 16 binomial blur (a Gaussian of sigma ~1, the usual
    /// pyramid kernel, Burt & Adelson 1983) with replicated borders, keeping the even pixels.
    /// `None` when a side would drop below 2.
    pub fn downsample(&self) -> Option<Self> {
        let (w, h) = (self.width, self.height);
        let (w2, h2) = (w.div_ceil(2), h.div_ceil(2));
        if w2 < 2 || h2 < 2 {
            return None;
        }
        let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
        // Horizontal pass on the even columns only.
        let mut tmp = vec![0f32; h * w2];
        for (src, dst) in self.data.chunks_exact(w).zip(tmp.chunks_exact_mut(w2)) {
            for (j, out) in dst.iter_mut().enumerate() {
                let x = 2 * j as isize;
                let v = |dx: isize| src.get(clamp(x + dx, w)).copied().unwrap_or(0.0);
                *out = (v(-2) + v(2) + 4.0 * (v(-1) + v(1)) + 6.0 * v(0)) * (1.0 / 16.0);
            }
        }
        // Vertical pass on the even rows.
        let mut data = vec![0f32; h2 * w2];
        for (i, dst) in data.chunks_exact_mut(w2).enumerate() {
            let y = 2 * i as isize;
            let row = |dy: isize| {
                let r = clamp(y + dy, h) * w2;
                tmp.get(r..r + w2).unwrap_or(&[])
            };
            let (a, b, c, d, e) = (row(-2), row(-1), row(0), row(1), row(2));
            for (j, out) in dst.iter_mut().enumerate() {
                let g = |s: &[f32]| s.get(j).copied().unwrap_or(0.0);
                *out = (g(a) + g(e) + 4.0 * (g(b) + g(d)) + 6.0 * g(c)) * (1.0 / 16.0);
            }
        }
        Self::from_vec(w2, h2, data)
    }
}

/// Level 0 is the image itself; each further level is half the size of the one before.
#[derive(Debug, Clone, PartialEq)]
pub struct Pyramid {
    levels: Vec<GrayImage>,
}

impl Pyramid {
    /// Up to `levels` levels (at least one), stopping before a side would drop below [`MIN_LEVEL_SIDE`].
    pub fn build(base: GrayImage, levels: usize) -> Self {
        let mut out = vec![base];
        while out.len() < levels.max(1) {
            let Some(next) = out.last().and_then(GrayImage::downsample) else {
                break;
            };
            if next.width < MIN_LEVEL_SIDE || next.height < MIN_LEVEL_SIDE {
                break;
            }
            out.push(next);
        }
        Self { levels: out }
    }

    /// The levels, full resolution first.
    pub fn levels(&self) -> &[GrayImage] {
        &self.levels
    }

    /// Level 0, the full-resolution image.
    pub fn base(&self) -> &GrayImage {
        // `build` always keeps the base level.
        &self.levels[0]
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Whether there are no levels (never, for a built pyramid).
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}

/// The window sampler with AVX2 and FMA: eight bilinear samples a step, their four neighbours
/// gathered. Hand-written because the compiler does not turn the scalar loop's clamped, checked
/// reads into gathers (measured: the tracker spent about 8 ns a sample in it).
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::GrayImage;

    /// [`GrayImage::sample_window`]: the same clamping to the border as [`GrayImage::sample`],
    /// NaN for a NaN coordinate.
    ///
    /// # Safety
    /// The processor must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sample_window(
        img: &GrayImage,
        centre: [f32; 2],
        a: [[f32; 2]; 2],
        radius: usize,
        out: &mut [f32],
    ) {
        let side = 2 * radius + 1;
        let (w, h) = (img.width as i32, img.height as i32);
        let data = img.data.as_ptr();
        let (zero_f, max_x, max_y) = (
            _mm256_setzero_ps(),
            _mm256_set1_ps(img.max_x),
            _mm256_set1_ps(img.max_y),
        );
        // Integer clamps keep every read inside the image whatever the floats hold: the top-left
        // neighbour at column <= w - 2 and row <= h - 2, so the bottom-right one at most at
        // w * h - 1 (data holds width * height values, at least 2x2).
        let (zero, max_col, max_row) = (
            _mm256_setzero_si256(),
            _mm256_set1_epi32(w - 2),
            _mm256_set1_epi32(h - 2),
        );
        let (width, one) = (_mm256_set1_epi32(w), _mm256_set1_epi32(1));
        let nan = _mm256_set1_ps(f32::NAN);
        let lanes = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
        let (a00, a10) = (_mm256_set1_ps(a[0][0]), _mm256_set1_ps(a[1][0]));
        let r = radius as f32;
        for (row, dy) in out.chunks_mut(side).zip(0..side) {
            let fy = dy as f32 - r;
            let row_x = _mm256_set1_ps(centre[0] + a[0][1] * fy);
            let row_y = _mm256_set1_ps(centre[1] + a[1][1] * fy);
            for (chunk, k) in row.chunks_mut(8).zip(0..) {
                let d = _mm256_add_ps(lanes, _mm256_set1_ps(-r + (8 * k) as f32));
                let x = _mm256_fmadd_ps(a00, d, row_x);
                let y = _mm256_fmadd_ps(a10, d, row_y);
                let missing = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, y);
                let xc = _mm256_min_ps(_mm256_max_ps(x, zero_f), max_x);
                let yc = _mm256_min_ps(_mm256_max_ps(y, zero_f), max_y);
                // xc, yc >= 0: truncation is the floor.
                let xi = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(xc), zero), max_col);
                let yi = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(yc), zero), max_row);
                let wx = _mm256_sub_ps(xc, _mm256_cvtepi32_ps(xi));
                let wy = _mm256_sub_ps(yc, _mm256_cvtepi32_ps(yi));
                let i = _mm256_add_epi32(_mm256_mullo_epi32(yi, width), xi);
                let j = _mm256_add_epi32(i, width);
                // SAFETY: i, i + 1, j, j + 1 are inside `data` (the clamps above).
                let (t0, t1, b0, b1) = unsafe {
                    (
                        _mm256_i32gather_ps::<4>(data, i),
                        _mm256_i32gather_ps::<4>(data, _mm256_add_epi32(i, one)),
                        _mm256_i32gather_ps::<4>(data, j),
                        _mm256_i32gather_ps::<4>(data, _mm256_add_epi32(j, one)),
                    )
                };
                let t = _mm256_fmadd_ps(wx, _mm256_sub_ps(t1, t0), t0);
                let b = _mm256_fmadd_ps(wx, _mm256_sub_ps(b1, b0), b0);
                let v = _mm256_fmadd_ps(wy, _mm256_sub_ps(b, t), t);
                let v = _mm256_blendv_ps(v, nan, missing);
                if chunk.len() == 8 {
                    // SAFETY: `chunk` holds 8 values.
                    unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), v) };
                } else {
                    // The row's last samples: the lanes past its end were computed and are dropped.
                    let mut all = [0f32; 8];
                    // SAFETY: `all` holds 8 values.
                    unsafe { _mm256_storeu_ps(all.as_mut_ptr(), v) };
                    chunk.copy_from_slice(&all[..chunk.len()]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_sample_interpolates_and_clamps() {
        let img = GrayImage::from_vec(2, 2, vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(img.sample(0.5, 0.5), 1.5);
        assert_eq!(img.sample(1.0, 1.0), 3.0);
        assert_eq!(img.sample(-5.0, 0.0), 0.0);
        assert_eq!(img.sample(9.0, 9.0), 3.0);
        assert!(img.sample(f32::NAN, 0.0).is_nan());
    }

    #[test]
    fn downsample_keeps_constants_and_halves_size() {
        let img = GrayImage::from_vec(33, 20, vec![0.25; 33 * 20]).unwrap();
        let half = img.downsample().unwrap();
        assert_eq!((half.width(), half.height()), (17, 10));
        assert!(half.data().iter().all(|&v| (v - 0.25).abs() < 1e-7));
        let pyr = Pyramid::build(img, 6);
        assert_eq!(pyr.len(), 1, "a 17x10 level is below MIN_LEVEL_SIDE");
    }

    /// The eight-at-once sampler gives the one-at-a-time sampler's values: windows inside, across
    /// the border and far outside, turned and scaled, rows longer and shorter than eight, NaN.
    #[test]
    fn window_sampler_matches_the_scalar_one() {
        let (w, h) = (37, 29);
        let data = (0..w * h)
            .map(|i| ((i * 7919) % 101) as f32 / 100.0)
            .collect();
        let img = GrayImage::from_vec(w, h, data).unwrap();
        let maps = [
            [[1.0, 0.0], [0.0, 1.0]],
            [[0.9, -0.4], [0.35, 1.1]],
            [[1.7, 0.2], [-0.3, 0.6]],
        ];
        let centres = [
            [18.3, 14.7],
            [0.2, 3.9],
            [36.0, 28.0],
            [-9.5, 40.25],
            [5.0, f32::NAN],
        ];
        let mut checked = 0;
        for radius in [3, 5, 6] {
            let n = (2 * radius + 1) * (2 * radius + 1);
            for a in maps {
                for c in centres {
                    let (mut fast, mut slow) = (vec![0.0; n], vec![0.0; n]);
                    img.sample_window(c, a, radius, &mut fast);
                    img.sample_window_scalar(c, a, radius, &mut slow);
                    for (k, (f, s)) in fast.iter().zip(&slow).enumerate() {
                        let same = (f.is_nan() && s.is_nan()) || (f - s).abs() <= 1e-5;
                        assert!(
                            same,
                            "radius {radius}, map {a:?}, centre {c:?}, sample {k}: {f} vs {s}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 15 * (49 + 121 + 169));
    }
}
