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
}
