//! Framing: the square of the camera frame the model sees. Centred by default; zoom and pan move
//! it, mirror flips it. Also the fast resampling used on the live path (area-averaged bilinear,
//! so a 720p crop shrinks to 256x256 without aliasing and in well under a millisecond).

use rayon::prelude::*;

use crate::frame::{Frame, Size};

/// Where the square crop sits in the camera frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    /// 1.0: the largest centred square; 2.0: half its side.
    pub zoom: f64,
    /// Offset of the crop centre as a fraction of the free room on each side (-1..=1); positive
    /// moves right.
    pub pan_x: f64,
    /// The same vertically; positive moves down.
    pub pan_y: f64,
    /// Mirror horizontally (what people expect of a selfie view).
    pub mirror: bool,
}

impl Default for Crop {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            pan_x: 0.0,
            pan_y: 0.0,
            mirror: false,
        }
    }
}

/// Zoom limits: from the whole short side to a tenth of it.
pub const MIN_ZOOM: f64 = 1.0;
/// See [`MIN_ZOOM`].
pub const MAX_ZOOM: f64 = 10.0;

impl Crop {
    /// Clamps every field into its range.
    pub fn clamped(self) -> Self {
        Self {
            zoom: if self.zoom.is_finite() {
                self.zoom.clamp(MIN_ZOOM, MAX_ZOOM)
            } else {
                1.0
            },
            pan_x: if self.pan_x.is_finite() {
                self.pan_x.clamp(-1.0, 1.0)
            } else {
                0.0
            },
            pan_y: if self.pan_y.is_finite() {
                self.pan_y.clamp(-1.0, 1.0)
            } else {
                0.0
            },
            mirror: self.mirror,
        }
    }

    /// The crop square in source pixels: (left, top, side), as floats.
    pub fn square(&self, size: Size) -> (f64, f64, f64) {
        let c = self.clamped();
        let (w, h) = (size.width as f64, size.height as f64);
        let side = w.min(h) / c.zoom;
        let room_x = (w - side) / 2.0;
        let room_y = (h - side) / 2.0;
        let left = room_x + c.pan_x * room_x;
        let top = room_y + c.pan_y * room_y;
        (left, top, side)
    }
}

/// Crops `frame` with `crop` and resamples the square to `out` x `out` pixels (RGB8).
pub fn crop_resize(frame: &Frame, crop: &Crop, out: u32) -> Vec<u8> {
    let (left, top, side) = crop.square(frame.size);
    let mut dst = vec![0u8; out as usize * out as usize * 3];
    resample(
        &frame.rgb,
        frame.size,
        (left, top, side, side),
        Size::new(out, out),
        crop.mirror,
        &mut dst,
    );
    dst
}

/// Resamples the rectangle `(left, top, width, height)` of `src` into `dst` (`out` size, RGB8).
/// Each output pixel averages a grid of bilinear samples covering its footprint (area-like
/// filtering when shrinking, plain bilinear when enlarging). `mirror` flips horizontally.
///
/// The average of bilinear samples on a grid is separable, so it runs as two passes with
/// precomputed taps: each output row first blends the source rows it needs (over the columns the
/// rectangle covers), then each output pixel blends columns of that blended row. About 10 MACs per
/// output value instead of 36 for sampling each grid point directly.
pub fn resample(
    src: &[u8],
    size: Size,
    rect: (f64, f64, f64, f64),
    out: Size,
    mirror: bool,
    dst: &mut [u8],
) {
    let (sw, sh) = (size.width as usize, size.height as usize);
    let (ow, oh) = (out.width as usize, out.height as usize);
    if sw == 0
        || sh == 0
        || ow == 0
        || oh == 0
        || src.len() < sw * sh * 3
        || dst.len() < ow * oh * 3
    {
        return;
    }
    let (left, top, rw, rh) = rect;
    let sx = rw / ow as f64;
    let sy = rh / oh as f64;
    // Samples per axis: enough to cover the footprint at about one sample per source pixel.
    let nx = (sx.ceil() as usize).clamp(1, 8);
    let ny = (sy.ceil() as usize).clamp(1, 8);
    let xs = axis_taps(ow, nx, left, sx, sw);
    let ys = axis_taps(oh, ny, top, sy, sh);
    // The source columns any tap reads.
    let x_lo = xs.iter().flatten().map(|t| t.0).min().unwrap_or(0);
    let x_hi = xs.iter().flatten().map(|t| t.0).max().unwrap_or(0);
    let span = x_hi + 1 - x_lo;
    let cols: Vec<Vec<(usize, f32)>> = (0..ow)
        .map(|ox| {
            let col = if mirror { ow - 1 - ox } else { ox };
            xs.get(col)
                .map(|t| t.iter().map(|&(x, w)| (x - x_lo, w)).collect())
                .unwrap_or_default()
        })
        .collect();
    dst[..ow * oh * 3]
        .par_chunks_mut(ow * 3)
        .zip(ys.par_iter())
        .for_each_init(
            || vec![0f32; span * 3],
            |row, (line, taps)| {
                row.iter_mut().for_each(|v| *v = 0.0);
                for &(y, w) in taps {
                    let s = &src[(y * sw + x_lo) * 3..(y * sw + x_hi + 1) * 3];
                    for (acc, &v) in row.iter_mut().zip(s) {
                        *acc += w * v as f32;
                    }
                }
                for (px, taps) in line.chunks_exact_mut(3).zip(&cols) {
                    let mut rgb = [0f32; 3];
                    for &(x, w) in taps {
                        let p = &row[x * 3..x * 3 + 3];
                        rgb[0] += w * p[0];
                        rgb[1] += w * p[1];
                        rgb[2] += w * p[2];
                    }
                    for (o, v) in px.iter_mut().zip(rgb) {
                        *o = v.round().clamp(0.0, 255.0) as u8;
                    }
                }
            },
        );
}

/// For each of `n` output positions along one axis: the source indices and weights (summing to
/// 1) of the average of `k` bilinear samples spread over its footprint `[start + i*step,
/// start + (i+1)*step)`, sample positions clamped to the `len` source pixels.
fn axis_taps(n: usize, k: usize, start: f64, step: f64, len: usize) -> Vec<Vec<(usize, f32)>> {
    let last = (len - 1) as f64;
    (0..n)
        .map(|i| {
            let mut taps: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
            let mut add = |idx: usize, w: f32| match taps.iter_mut().find(|t| t.0 == idx) {
                Some(t) => t.1 += w,
                None => taps.push((idx, w)),
            };
            for j in 0..k {
                let p = start + (i as f64 + (j as f64 + 0.5) / k as f64) * step - 0.5;
                let p = p.clamp(0.0, last);
                let p0 = p.floor() as usize;
                let p1 = (p0 + 1).min(len - 1);
                let f = (p - p0 as f64) as f32;
                add(p0, (1.0 - f) / k as f32);
                add(p1, f / k as f32);
            }
            taps
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn frame(w: u32, h: u32) -> Frame {
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, 77]);
            }
        }
        Frame::new(0, Instant::now(), Size::new(w, h), rgb).unwrap()
    }

    #[test]
    fn default_crop_is_the_centred_square() {
        let (l, t, s) = Crop::default().square(Size::new(1280, 720));
        assert_eq!((l, t, s), (280.0, 0.0, 720.0));
        let (l, t, s) = Crop {
            zoom: 2.0,
            pan_x: 1.0,
            pan_y: -1.0,
            mirror: false,
        }
        .square(Size::new(1280, 720));
        assert_eq!((l, t, s), (1280.0 - 360.0, 0.0, 360.0));
    }

    #[test]
    fn crop_samples_the_right_region_and_mirrors() {
        let f = frame(200, 100);
        let out = crop_resize(&f, &Crop::default(), 100);
        // Identity scale: pixel (0, 0) of the output is source (50, 0).
        assert_eq!(&out[..3], &[50, 0, 77]);
        let m = crop_resize(
            &f,
            &Crop {
                mirror: true,
                ..Crop::default()
            },
            100,
        );
        assert_eq!(&m[..3], &[149, 0, 77]);
    }

    #[test]
    fn shrinking_averages_the_footprint() {
        // A 1-pixel checkerboard shrunk 4x becomes flat grey, not aliased stripes.
        let (w, h) = (64u32, 64u32);
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let v = if (x + y) % 2 == 0 { 255 } else { 0 };
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        let f = Frame::new(0, Instant::now(), Size::new(w, h), rgb).unwrap();
        let out = crop_resize(&f, &Crop::default(), 16);
        assert!(
            out.iter().all(|&v| (120..=135).contains(&v)),
            "{:?}",
            &out[..12]
        );
    }

    #[test]
    fn bad_values_are_clamped() {
        let c = Crop {
            zoom: f64::NAN,
            pan_x: 5.0,
            pan_y: -9.0,
            mirror: false,
        }
        .clamped();
        assert_eq!((c.zoom, c.pan_x, c.pan_y), (1.0, 1.0, -1.0));
    }
}
