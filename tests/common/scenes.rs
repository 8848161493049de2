//! Synthetic scenes for the live-path tests: a deterministic noise source, noisy copies of a photo,
//! a room with a portrait pasted in, and the measures the steadiness, framing and border tests
//! take of the results.
#![allow(dead_code)]

use image::RgbImage;

/// A small deterministic random source (xorshift64*), so synthetic videos are the same every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A source started from `seed` (0 is taken as 1).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// A webcam's still picture of `photo`: per-frame sensor noise (Gaussian, `sigma` levels of 255 per
/// channel and pixel) and exposure flicker (the whole frame's gain varies by a Gaussian factor of
/// standard deviation `flicker`, e.g. 0.01 for 1 %). Frame `i` of a still driving video.
pub fn noisy_frame(photo: &RgbImage, sigma: f64, flicker: f64, rng: &mut Rng) -> RgbImage {
    let gain = 1.0 + flicker * rng.normal();
    let mut out = photo.clone();
    for v in out.iter_mut() {
        let x = f64::from(*v) * gain + sigma * rng.normal();
        *v = x.round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// The mean absolute change between successive frames (units of 1.0 = 255 levels), over all
/// pixels and channels: how much a video shakes. 0 for fewer than two frames.
pub fn mean_frame_change(frames: &[RgbImage]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0usize;
    for pair in frames.windows(2) {
        if let [a, b] = pair
            && a.dimensions() == b.dimensions()
        {
            let d: u64 = a
                .as_raw()
                .iter()
                .zip(b.as_raw())
                .map(|(&p, &q)| u64::from(p.abs_diff(q)))
                .sum();
            sum += d as f64 / (a.as_raw().len().max(1) as f64 * 255.0);
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// How much darker the edges of `out` are than those of `reference` (the picture at rest), in
/// units of 1.0: for each of the four sides, the mean brightness of the outermost `band` rows or
/// columns of `reference` minus that of `out`; the largest of the four (negative: lighter). A
/// warp that pads with zeros shows a black band on the side the picture moved away from.
pub fn edge_darkening(out: &RgbImage, reference: &RgbImage, band: u32) -> f64 {
    if out.dimensions() != reference.dimensions() {
        return f64::INFINITY;
    }
    let (w, h) = out.dimensions();
    let band = band.clamp(1, w.min(h));
    let mean = |img: &RgbImage, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>| {
        let mut s = 0u64;
        let mut n = 0u64;
        for y in ys {
            for x in xs.clone() {
                let p = img.get_pixel(x, y).0;
                s += u64::from(p[0]) + u64::from(p[1]) + u64::from(p[2]);
                n += 3;
            }
        }
        s as f64 / (n.max(1) as f64 * 255.0)
    };
    let sides = [
        (0..w, 0..band),
        (0..w, h - band..h),
        (0..band, 0..h),
        (w - band..w, 0..h),
    ];
    sides
        .into_iter()
        .map(|(xs, ys)| mean(reference, xs.clone(), ys.clone()) - mean(out, xs, ys))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// A plain room seen by a webcam, `width` x `height`: a wall with a soft light gradient, a window,
/// a door frame, a shelf with books and a floor, all with some texture, so that a face pasted on it
/// has a background like a real one (and the face detector has things to reject).
pub fn room(width: u32, height: u32, rng: &mut Rng) -> RgbImage {
    let (w, h) = (f64::from(width), f64::from(height));
    let mut img = RgbImage::new(width, height);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (fx, fy) = (f64::from(x) / w, f64::from(y) / h);
        // Wall: warm grey, lit from the left.
        let light = 0.75 + 0.25 * (1.0 - fx);
        let mut c = [196.0 * light, 186.0 * light, 170.0 * light];
        if fy > 0.78 {
            // Floor: wooden boards.
            let seam = (fx * 14.0 + (fy * 40.0).floor() * 0.37).fract() < 0.04;
            let board = if seam { 1.0 } else { 0.0 };
            c = [
                120.0 - 40.0 * board,
                84.0 - 30.0 * board,
                52.0 - 20.0 * board,
            ];
        } else if (0.06..0.26).contains(&fx) && (0.12..0.50).contains(&fy) {
            // Window: sky and a cross bar.
            let bar = (fx - 0.16).abs() < 0.006 || (fy - 0.31).abs() < 0.008;
            c = if bar {
                [235.0, 235.0, 230.0]
            } else {
                [150.0 + 60.0 * fy, 190.0 + 30.0 * fy, 235.0]
            };
        } else if (0.80..0.92).contains(&fx) && fy > 0.20 {
            // A door with its frame.
            let frame = !(0.81..=0.91).contains(&fx) || fy < 0.215;
            c = if frame {
                [240.0, 238.0, 230.0]
            } else {
                [150.0, 110.0, 75.0]
            };
        } else if (0.30..0.72).contains(&fx) && (0.18..0.36).contains(&fy) {
            // A shelf of books of varied colours.
            let book = (fx * 60.0).floor();
            let hue = (book * 0.618).fract();
            let top = 0.18 + 0.05 * ((book * 0.37).fract());
            if fy > top && fy < 0.345 {
                c = [
                    60.0 + 150.0 * hue,
                    50.0 + 120.0 * (1.0 - hue),
                    40.0 + 100.0 * (hue * 3.0).fract(),
                ];
            } else if fy >= 0.345 {
                c = [110.0, 80.0, 50.0];
            }
        }
        let grain = 6.0 * rng.normal();
        *p = image::Rgb(c.map(|v| (v + grain).round().clamp(0.0, 255.0) as u8));
    }
    img
}

/// `portrait` pasted on `background` with its top-left corner at (`x`, `y`) (may be partly
/// outside), scaled to `side` x `side` and blended in with a soft elliptical mask, so the pasted
/// picture has no hard square edge.
pub fn paste_portrait(
    background: &RgbImage,
    portrait: &RgbImage,
    x: f64,
    y: f64,
    side: u32,
) -> RgbImage {
    let scaled = image::imageops::resize(
        portrait,
        side.max(1),
        side.max(1),
        image::imageops::FilterType::Triangle,
    );
    let mut out = background.clone();
    let (bw, bh) = background.dimensions();
    let s = f64::from(side.max(1));
    for (px, py, p) in scaled.enumerate_pixels() {
        let (u, v) = (
            (f64::from(px) + 0.5) / s - 0.5,
            (f64::from(py) + 0.5) / s - 0.5,
        );
        // An ellipse a little taller than wide, fading over its outer tenth.
        let r = ((u / 0.48).powi(2) + (v / 0.5).powi(2)).sqrt();
        let alpha = ((1.0 - r) / 0.1).clamp(0.0, 1.0);
        if alpha <= 0.0 {
            continue;
        }
        let (tx, ty) = ((x + f64::from(px)).round(), (y + f64::from(py)).round());
        if tx < 0.0 || ty < 0.0 || tx >= f64::from(bw) || ty >= f64::from(bh) {
            continue;
        }
        let q = out.get_pixel_mut(tx as u32, ty as u32);
        for c in 0..3 {
            q.0[c] = (alpha * f64::from(p.0[c]) + (1.0 - alpha) * f64::from(q.0[c])).round() as u8;
        }
    }
    out
}
