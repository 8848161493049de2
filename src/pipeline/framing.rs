//! Framing: the square of the camera frame the model sees. Centred by default; zoom and pan move
//! it, mirror flips it; with automatic framing ([`AutoFraming`]) it is placed around the face the
//! way FOMM's training crops were and follows slow drifts. Also the fast resampling used on the
//! live path (area-averaged bilinear, so a 720p crop shrinks to 256x256 without aliasing and in
//! well under a millisecond).

use rayon::prelude::*;

use crate::engine::FrameView;
use crate::face::FaceBox;
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

impl Crop {
    /// The crop whose square is centred on `centre` with side `side` (source pixels), as near as
    /// the frame allows: the zoom is kept in range and the square inside the frame.
    pub fn around(size: Size, centre: [f64; 2], side: f64, mirror: bool) -> Self {
        let (w, h) = (size.width as f64, size.height as f64);
        let short = w.min(h);
        let zoom = if side.is_finite() && side > 0.0 {
            (short / side).clamp(MIN_ZOOM, MAX_ZOOM)
        } else {
            1.0
        };
        let side = short / zoom;
        let pan = |c: f64, len: f64| {
            let room = (len - side) / 2.0;
            if room > 1e-9 && c.is_finite() {
                ((c - side / 2.0 - room) / room).clamp(-1.0, 1.0)
            } else {
                0.0
            }
        };
        Crop {
            zoom,
            pan_x: pan(centre[0], w),
            pan_y: pan(centre[1], h),
            mirror,
        }
    }

    /// The square's centre and side in source pixels.
    pub fn centre_side(&self, size: Size) -> ([f64; 2], f64) {
        let (left, top, side) = self.square(size);
        ([left + side / 2.0, top + side / 2.0], side)
    }

    /// Where the `out` x `out` picture this crop makes lies in the camera frame, for the engines
    /// ([`FrameView`], camera pixels): output pixel `i` samples the source at `left + (i + 0.5)
    /// side / out - 0.5` ([`resample`]), and the normalised coordinate of pixel `i` is
    /// `2 i / (out - 1) - 1`, so `x = centre + u side (out - 1) / (2 out)`, flipped when mirrored.
    pub fn view(&self, size: Size, out: u32) -> FrameView {
        let (left, top, side) = self.square(size);
        let n = out.max(2) as f64;
        let half = side * (n - 1.0) / (2.0 * n);
        FrameView {
            scale: [if self.mirror { -half } else { half }, half],
            offset: [left + side / 2.0 - 0.5, top + side / 2.0 - 0.5],
        }
    }
}

/// How the crop is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FramingMode {
    /// Around the face found in the camera frame, following slow drifts.
    #[default]
    Auto,
    /// Where the user put it (zoom and pan).
    Manual,
}

/// A `--framing` value that is neither `auto` nor `manual`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown framing '{0}': expected auto or manual")]
pub struct ParseFramingModeError(String);

impl std::str::FromStr for FramingMode {
    type Err = ParseFramingModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(FramingMode::Auto),
            "manual" => Ok(FramingMode::Manual),
            _ => Err(ParseFramingModeError(s.to_string())),
        }
    }
}

/// The crop's side over the face box's larger side. The original's `crop-video.py` (and
/// `crop_vox.py`, which made the vox-256 training crops) grows a box by `--increase 0.1` (its
/// default) on every side, widened to a square (`width_increase = max(0.1, (1.2 h - w) / 2w)`,
/// likewise for the height): `1.2` times the box. But the box it grows is a clip's "tube", the
/// union of S3FD's face boxes over 64 to 1024 frames while they overlap the first by an IoU of
/// at least 0.25, so it takes in the head's sway over the clip; and SeetaFace's box is tight
/// (eyebrows to chin: on the bundled portraits the head with its hair is about 1.6 times the box's
/// height). 1.2 times one SeetaFace box cut the forehead off and let the face leave the crop
/// inside the dead zone; marionette takes `1.2 * 1.5`, the factor 1.5 an estimate of the tube's
/// growth over one tight box (not measured on the original's crops: no VoxCeleb data here). With
/// it the face box stays inside the crop while its centre is within `(1 - 1 / 1.8) / 2 = 0.22` of
/// the side from the crop's centre, more than the [`DEAD_ZONE`].
pub const FACE_CROP_SCALE: f64 = 1.8;

/// Automatic framing follows the face only once its box's centre is this far from the crop's
/// centre (a fraction of the crop's side), or its crop size differs by [`SIZE_DEAD_ZONE`]: head
/// motion within it drives the portrait and leaves the crop where it is.
pub const DEAD_ZONE: f64 = 0.12;
/// The size dead zone: a ratio of crop sides (20 % nearer or further).
pub const SIZE_DEAD_ZONE: f64 = 1.2;
/// Once following, the crop moves until it is this close to the face's crop (fraction of its side;
/// for the size, this ratio minus one).
const SETTLED: f64 = 0.02;
/// Time constant of the crop's approach to the face's crop, seconds: the crop covers 63 % of the
/// way in this time, so a drift is followed with a lag of a quarter second (plus the face search's
/// fifth of a second) and no single frame moves the crop far (at 30 fps, 13 % of the way).
pub const FOLLOW_TAU: f64 = 0.25;
/// A face not seen for this long (seconds) is not followed any more: the crop stays where it is.
const FACE_TIMEOUT: f64 = 2.0;

/// The square crop automatic framing asks for around `face`: [`FACE_CROP_SCALE`] times its larger
/// side, on its centre (source pixels).
pub fn face_square(face: &FaceBox) -> ([f64; 2], f64) {
    (face.centre(), FACE_CROP_SCALE * face.width.max(face.height))
}

/// Automatic framing: the crop placed around the face when it is first seen, then moved towards
/// the face's crop only when the face leaves a dead zone, smoothly ([`FOLLOW_TAU`]), until settled.
#[derive(Debug, Clone, Default)]
pub struct AutoFraming {
    /// The face's crop (centre, side) from the latest sighting and when it was seen.
    target: Option<([f64; 2], f64, f64)>,
    /// The crop now (centre, side).
    current: Option<([f64; 2], f64)>,
    following: bool,
    last_t: Option<f64>,
}

impl AutoFraming {
    /// A face seen at `t` seconds (its box in camera pixels).
    pub fn observe(&mut self, face: &FaceBox, t: f64) {
        let (c, side) = face_square(face);
        if c.iter().all(|v| v.is_finite()) && side.is_finite() && side > 0.0 {
            self.target = Some((c, side, t));
        }
    }

    /// Whether a face has been seen.
    pub fn has_face(&self) -> bool {
        self.target.is_some()
    }

    /// The crop is placed on the face at once (at start, and on recalibration, when a jump of the
    /// crop costs nothing).
    pub fn snap(&mut self) {
        if let Some((c, side, _)) = self.target {
            self.current = Some((c, side));
            self.following = false;
        }
    }

    /// Forgets the face and the crop (a new source).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The crop at `t` seconds for frames of `size`: `None` until a face was seen.
    pub fn step(&mut self, t: f64, size: Size, mirror: bool) -> Option<Crop> {
        let dt = match self.last_t {
            Some(l) if t > l => (t - l).min(1.0),
            _ => 0.0,
        };
        self.last_t = Some(t);
        if self.current.is_none() {
            self.snap();
        }
        let (mut c, mut side) = self.current?;
        if let Some((tc, tside, seen)) = self.target
            && t - seen <= FACE_TIMEOUT
        {
            let off = ((tc[0] - c[0]).powi(2) + (tc[1] - c[1]).powi(2)).sqrt() / side;
            let ratio = (tside / side).max(side / tside);
            if !self.following && (off > DEAD_ZONE || ratio > SIZE_DEAD_ZONE) {
                self.following = true;
            }
            if self.following {
                let k = 1.0 - (-dt / FOLLOW_TAU).exp();
                c = [c[0] + k * (tc[0] - c[0]), c[1] + k * (tc[1] - c[1])];
                side *= (tside / side).powf(k);
                let off = ((tc[0] - c[0]).powi(2) + (tc[1] - c[1]).powi(2)).sqrt() / side;
                if off < SETTLED && (tside / side).max(side / tside) < 1.0 + SETTLED {
                    self.following = false;
                }
            }
        }
        // Kept to what the frame allows, so the crop does not wander outside it.
        let crop = Crop::around(size, c, side, mirror);
        self.current = Some(crop.centre_side(size));
        Some(crop)
    }
}

/// Time constant (seconds) of each of the two stages with which the reference view re-centres on
/// the crop after the crop moved ([`ViewStabiliser`]). Two cascaded first-order stages (a
/// critically damped follower) start with zero slope: a crop move of half a second shows as about
/// 3 % of its size on the portrait by its end (one stage of twice the time constant would show
/// 11 %), and after a drift the portrait returns to its rest pose within a few seconds (mean delay
/// `2 RECENTRE_TAU`) instead of staying displaced (or leaving the picture after a long drift).
pub const RECENTRE_TAU: f64 = 1.0;

/// The views handed to the engines, so that a crop change does not move the portrait: the
/// engines measure motion in their reference frame's view ([`FrameView`]); this makes that
/// reference follow the crop slowly (two stages of [`RECENTRE_TAU`]) instead of never. With the reference view
/// `R0` (at calibration) and the slowly following one `R(t)`, a frame's view `V(t)` (`c = S u +
/// O`) is handed on as `V'` with `S' = S S0 / SR` and `O' = O0 + (O - OR) S0 / SR`, so that the
/// engines' map into `R0`'s coordinates is the map into `R(t)`'s. While the crop stands still
/// `R(t)` reaches it and the motion is the face's in the crop; when the crop moves (automatic
/// framing following a drift, or the user panning) the move is taken out of the motion, and
/// given back only gradually.
#[derive(Debug, Clone, Default)]
pub struct ViewStabiliser {
    /// `R0`, the first stage of the follower, `R(t)` (its second stage), and the last frame's
    /// time.
    state: Option<(FrameView, FrameView, FrameView, f64)>,
}

impl ViewStabiliser {
    /// Starts again at the next frame (a new reference frame).
    pub fn reset(&mut self) {
        self.state = None;
    }

    /// The view to hand the engines for a frame seen through `view` at `t` seconds; `calibrate`:
    /// this frame becomes the reference frame.
    pub fn view(&mut self, view: FrameView, t: f64, calibrate: bool) -> FrameView {
        let flipped = |a: &FrameView, b: &FrameView| {
            (a.scale[0] < 0.0) != (b.scale[0] < 0.0) || (a.scale[1] < 0.0) != (b.scale[1] < 0.0)
        };
        let (origin, mut first, mut leaky, last) = match self.state {
            Some((o, f, r, last)) if !calibrate && !flipped(&o, &view) => (o, f, r, last),
            _ => {
                self.state = Some((view, view, view, t));
                return view;
            }
        };
        let dt = if t > last { (t - last).min(10.0) } else { 0.0 };
        let k = 1.0 - (-dt / RECENTRE_TAU).exp();
        let approach = |from: &mut FrameView, to: &FrameView| {
            for i in 0..2 {
                from.offset[i] += k * (to.offset[i] - from.offset[i]);
                // Scales approach geometrically (zoom is a ratio); signs agree (checked above).
                let ratio = to.scale[i] / from.scale[i];
                if ratio.is_finite() && ratio > 0.0 {
                    from.scale[i] *= ratio.powf(k);
                }
            }
        };
        approach(&mut first, &view);
        approach(&mut leaky, &first);
        self.state = Some((origin, first, leaky, t));
        let mut out = view;
        for i in 0..2 {
            let s = origin.scale[i] / leaky.scale[i];
            out.scale[i] = view.scale[i] * s;
            out.offset[i] = origin.offset[i] + (view.offset[i] - leaky.offset[i]) * s;
        }
        if out.scale.iter().chain(&out.offset).all(|v| v.is_finite()) {
            out
        } else {
            view
        }
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
