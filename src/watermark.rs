//! An invisible mark in every frame marionette generates, and its detector (`marionette verify`).
//!
//! It is a label that survives what a video call does to a picture (a low bit rate codec,
//! scaling, a small crop, brightness and contrast, the self-view mirror), so that anyone can
//! check that a video was made by marionette; it is not protection against a forger who wants it
//! gone (blurring or re-rendering the frames removes it). Hand-written: the open watermarkers
//! (Video Seal, TrustMark) are neural networks that need weights; this is a classic design.
//!
//! # The mark
//! A 32-bit payload ([`Payload`]: "MRN" in 24 bits, the format version, the engine) makes a grid
//! of [`GRID_X`] x [`GRID_Y`] chips, each +1 or -1: the top 24 bits seed independent fair coins
//! (splitmix64), and the low byte flips the sign of 12-chip groups (scattered over the frame)
//! where its row of the 256 x 256 Walsh-Hadamard matrix is -1. Every payload's chips are thus
//! still independent fair coins, and the detector gets all 256 low bytes' scores from one pass
//! and one fast transform. The chips are interpolated smoothly (a raised cosine between chip
//! centres) over the whole frame in coordinates relative to its size, scaled by [`AMPLITUDE`] luma
//! levels, rounded, and added to R, G and B alike: a luma-only pattern of at most 2 levels,
//! about 44 dB PSNR. The same pattern is in every frame; it is spread in space only, since a
//! codec skips blocks whose change it thinks too small, and a pattern that changed in time would
//! be lost there.
//!
//! # The detector
//! For each geometry it considers (the mark over the whole frame, or over the centred square a
//! virtual camera puts the portrait in on a 4:3 or 16:9 frame; a symmetric crop of 0 to 10 % per
//! side in steps of 0.5 %; mirrored or not), it measures each chip: the mean luma of a box half a
//! chip wide at the chip's centre, minus the mean of its 8 neighbours' (the picture's content
//! varies slowly, the chips do not), weighted by the inverse of the local variance of those
//! differences (edges and texture are noise, flat regions carry the mark). The weighted measures
//! are summed over all frames into one vector `g`; then, for each of the 256 payloads under the
//! magic and each geometry, `z = sum(c_i g_i) / sqrt(sum(g_i^2))`.
//!
//! # The threshold
//! In a video that does not carry a payload's chips `c`, `g` does not depend on them, so `z` is a
//! Rademacher sum normalised by its own spread, and Hoeffding's inequality bounds its tail for any
//! content, any number of frames and any correlation between them:
//! `P(z >= t) <= exp(-t^2 / 2)`. The detector tests [`HYPOTHESES`] payload-geometry pairs and
//! keeps the best, so by the union bound the chance that an unmarked video reaches `t` is at most
//! `HYPOTHESES * exp(-t^2 / 2)`: that figure is the reported `p_false`, and a video is called
//! marked when it is at most [`P_FALSE_MAX`] (one in a million): `t` = 7.0.

use std::f32::consts::PI;

/// Chips across the frame.
pub const GRID_X: usize = 64;
/// Chips down the frame.
pub const GRID_Y: usize = 48;
/// The pattern's peak, in luma levels (0-255).
pub const AMPLITUDE: f32 = 2.0;
/// The format version this build writes.
pub const VERSION: u8 = 1;
/// The most a reported `p_false` may be for a video to be called marked.
pub const P_FALSE_MAX: f64 = 1e-6;
/// "MRN", the payload's top 24 bits.
const MAGIC: u32 = 0x004D_524E;
/// Symmetric crops tried, per side: 0 to 10 % in steps of 0.5 %.
const CROPS: usize = 21;
const CROP_STEP: f32 = 0.005;
/// The widths, as a fraction of the frame's, of the region the mark may have been written over,
/// centred: the whole frame, or the square a virtual camera puts the portrait in on a 4:3 or a
/// 16:9 frame (a fraction that stays when a call scales the frame to another shape).
const REGIONS: [f32; 3] = [1.0, 0.75, 0.5625];
/// Geometries: regions x crops x (as is, mirrored).
const GEOMETRIES: usize = REGIONS.len() * CROPS * 2;
/// Payloads the detector knows: every version and engine under the magic.
const PAYLOADS: usize = 256;
/// Payload-geometry pairs tested.
pub const HYPOTHESES: usize = GEOMETRIES * PAYLOADS;

/// What a mark says: made by marionette, the format version, the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Payload(pub u32);

/// Which engine made a frame, as the payload says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkEngine {
    /// Not said.
    Other = 0,
    /// The First Order Motion Model.
    Fomm = 1,
    /// The weight-free classic engine.
    Classic = 2,
}

impl Payload {
    /// This build's payload for `engine`.
    pub fn new(engine: MarkEngine) -> Self {
        Self((MAGIC << 8) | (u32::from(VERSION) << 4) | engine as u32)
    }

    /// The format version.
    pub fn version(self) -> u8 {
        ((self.0 >> 4) & 0xF) as u8
    }

    /// The engine, in words.
    pub fn engine(self) -> &'static str {
        match self.0 & 0xF {
            1 => "FOMM",
            2 => "classic",
            0 => "not said",
            _ => "unknown",
        }
    }

    /// The payload's chips, row-major, +1 or -1: the magic's chips, each sign flipped where the
    /// low byte's Walsh-Hadamard row is -1 over the chip's group (see the module doc).
    fn chips(self) -> Vec<f32> {
        let base = base_chips(self.0 >> 8);
        let groups = chip_groups();
        let low = self.0 & 0xFF;
        base.iter()
            .zip(groups)
            .map(|(b, &k)| {
                if (low & u32::from(k)).count_ones().is_multiple_of(2) {
                    *b
                } else {
                    -*b
                }
            })
            .collect()
    }
}

/// A splitmix64 stream (Steele, Lea and Flood 2014): independent fair bits for any seed.
fn splitmix(seed: u64) -> impl Iterator<Item = u64> {
    let mut state = seed ^ 0x6D61_7269_6F6E_6574;
    std::iter::repeat_with(move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// The chips of a payload's top 24 bits, +1 or -1.
fn base_chips(high: u32) -> Vec<f32> {
    splitmix(u64::from(high))
        .take(GRID_X * GRID_Y)
        .map(|z| if z >> 63 == 1 { 1.0 } else { -1.0 })
        .collect()
}

/// Each chip's group (0-255): 12 chips a group, scattered over the frame by a fixed shuffle.
fn chip_groups() -> &'static [u8] {
    static GROUPS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    GROUPS.get_or_init(|| {
        let n = GRID_X * GRID_Y;
        let mut order: Vec<usize> = (0..n).collect();
        let mut bits = splitmix(0x6772_6F75_7073);
        // Fisher-Yates.
        for i in (1..n).rev() {
            let j = (bits.next().unwrap_or(0) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut groups = vec![0u8; n];
        for (position, &chip) in order.iter().enumerate() {
            groups[chip] = (position % PAYLOADS) as u8;
        }
        groups
    })
}

/// The Walsh-Hadamard transform of `s` in place: `s[p]` becomes the sum over `k` of
/// `(-1)^popcount(p & k) * s[k]`.
fn walsh_hadamard(s: &mut [f32; PAYLOADS]) {
    let mut h = 1;
    while h < PAYLOADS {
        for i in (0..PAYLOADS).step_by(2 * h) {
            for j in i..i + h {
                let (a, b) = (s[j], s[j + h]);
                s[j] = a + b;
                s[j + h] = a - b;
            }
        }
        h *= 2;
    }
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:08x} (made by marionette, format {}, engine {})",
            self.0,
            self.version(),
            self.engine()
        )
    }
}

/// Adds the mark to frames; the pattern is made once per frame size.
#[derive(Debug, Clone)]
pub struct Marker {
    payload: Payload,
    /// (width, height, the change of each byte of an RGB8 frame).
    pattern: Option<(u32, u32, Vec<i8>)>,
}

impl Marker {
    /// A marker writing `payload`.
    pub fn new(payload: Payload) -> Self {
        Self {
            payload,
            pattern: None,
        }
    }

    /// The payload written.
    pub fn payload(&self) -> Payload {
        self.payload
    }

    /// Writes `payload` from now on.
    pub fn set_payload(&mut self, payload: Payload) {
        if payload != self.payload {
            self.payload = payload;
            self.pattern = None;
        }
    }

    /// Marks an RGB8 frame of `width` x `height` in place (nothing for a buffer of another size).
    pub fn mark_rgb(&mut self, rgb: &mut [u8], width: u32, height: u32) {
        if rgb.len() != width as usize * height as usize * 3 {
            return;
        }
        // One saturating add per byte, no branch: the compiler vectorises it.
        let delta = self.pattern(width, height);
        for (v, &d) in rgb.iter_mut().zip(delta) {
            *v = v.saturating_add_signed(d);
        }
    }

    /// The change per byte (R, G and B alike) for a frame of this size, made once.
    fn pattern(&mut self, width: u32, height: u32) -> &[i8] {
        let fresh = !matches!(&self.pattern, Some((w, h, _)) if *w == width && *h == height);
        if fresh {
            let per_pixel = field(self.payload, width, height);
            let per_byte = per_pixel.iter().flat_map(|&d| [d, d, d]).collect();
            self.pattern = Some((width, height, per_byte));
        }
        self.pattern
            .as_ref()
            .map(|(_, _, p)| p.as_slice())
            .unwrap_or(&[])
    }
}

/// Raised-cosine interpolation taps along one axis: (lower chip, upper chip, upper weight).
fn taps(n: usize, chips: usize) -> Vec<(usize, usize, f32)> {
    (0..n)
        .map(|i| {
            let t =
                ((i as f32 + 0.5) / n as f32 * chips as f32 - 0.5).clamp(0.0, (chips - 1) as f32);
            let i0 = t.floor() as usize;
            let f = t - i0 as f32;
            (i0, (i0 + 1).min(chips - 1), (1.0 - (PI * f).cos()) / 2.0)
        })
        .collect()
}

/// The luma change per pixel for `payload` on a `width` x `height` frame.
fn field(payload: Payload, width: u32, height: u32) -> Vec<i8> {
    let (w, h) = (width as usize, height as usize);
    let chips = payload.chips();
    let xs = taps(w, GRID_X);
    let ys = taps(h, GRID_Y);
    let mut out = Vec::with_capacity(w * h);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let top = chips[y0 * GRID_X + x0] * (1.0 - fx) + chips[y0 * GRID_X + x1] * fx;
            let bottom = chips[y1 * GRID_X + x0] * (1.0 - fx) + chips[y1 * GRID_X + x1] * fx;
            let v = AMPLITUDE * (top * (1.0 - fy) + bottom * fy);
            out.push(v.round() as i8);
        }
    }
    out
}

/// What [`Detector::verdict`] found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// Whether the mark is there: `p_false` at most [`P_FALSE_MAX`].
    pub marked: bool,
    /// The chance that a video without the mark would score as high (an upper bound).
    pub p_false: f64,
    /// The best payload's score (see the module doc).
    pub z: f64,
    /// The payload found, when marked.
    pub payload: Option<Payload>,
    /// Frames looked at.
    pub frames: usize,
}

/// Sums the chips' measures over frames, for every geometry.
#[derive(Debug, Clone)]
pub struct Detector {
    /// Per geometry, the weighted chip measures summed over frames.
    sums: Vec<Vec<f32>>,
    frames: usize,
}

impl Default for Detector {
    fn default() -> Self {
        Self {
            sums: vec![vec![0.0; GRID_X * GRID_Y]; GEOMETRIES],
            frames: 0,
        }
    }
}

/// Where the mark may be: the region it was written over and how it was cropped and flipped.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// The region's width as a fraction of the frame's.
    region: f32,
    crop: f32,
    mirrored: bool,
}

fn geometry(i: usize) -> Geometry {
    Geometry {
        region: REGIONS[i / (CROPS * 2)],
        crop: ((i / 2) % CROPS) as f32 * CROP_STEP,
        mirrored: i % 2 == 1,
    }
}

impl Detector {
    /// Adds an RGB8 frame of `width` x `height` (nothing for a buffer of another size).
    pub fn add_rgb(&mut self, rgb: &[u8], width: u32, height: u32) {
        let (w, h) = (width as usize, height as usize);
        if w < 2 || h < 2 || rgb.len() != w * h * 3 {
            return;
        }
        // Summed-area tables of luma (BT.601) for box means.
        let mut sat = vec![0f64; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = 0f64;
            for x in 0..w {
                let p = &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
                row += 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
                sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
            }
        }
        for (i, sum) in self.sums.iter_mut().enumerate() {
            let m = chip_means(&sat, w, h, geometry(i));
            add_weighted(sum, &m);
        }
        self.frames += 1;
    }

    /// Frames added.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The best payload over every geometry, and whether it is significant.
    pub fn verdict(&self) -> Verdict {
        let base = base_chips(MAGIC);
        let groups = chip_groups();
        let mut best = (f64::NEG_INFINITY, 0u32);
        for g in &self.sums {
            let norm = g.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
            if norm == 0.0 {
                continue;
            }
            // Every payload's dot product with `g` at once: per group, the magic's chips times
            // `g`, then the Walsh-Hadamard transform over the groups.
            let mut s = [0f32; PAYLOADS];
            for ((b, v), &k) in base.iter().zip(g).zip(groups) {
                s[usize::from(k)] += b * v;
            }
            walsh_hadamard(&mut s);
            for (low, dot) in s.iter().enumerate() {
                let z = f64::from(*dot) / norm;
                if z > best.0 {
                    best = (z, low as u32);
                }
            }
        }
        let z = best.0.max(0.0);
        let p_false = (HYPOTHESES as f64 * (-z * z / 2.0).exp()).min(1.0);
        let marked = self.frames > 0 && p_false <= P_FALSE_MAX;
        Verdict {
            marked,
            p_false,
            z,
            payload: marked.then_some(Payload((MAGIC << 8) | best.1)),
            frames: self.frames,
        }
    }
}

/// Each chip's mean luma under geometry `g` (NaN for a chip outside the picture).
fn chip_means(sat: &[f64], w: usize, h: usize, g: Geometry) -> Vec<f32> {
    // The region the mark was written over, in this picture's pixels.
    let rw = w as f32 * g.region;
    let (rx, ry, rh) = ((w as f32 - rw) / 2.0, 0.0, h as f32);
    let scale = 1.0 - 2.0 * g.crop;
    // Half a chip, in pixels.
    let bw = (rw / GRID_X as f32 / scale / 2.0).max(1.0);
    let bh = (rh / GRID_Y as f32 / scale / 2.0).max(1.0);
    let area = |x0: usize, y0: usize, x1: usize, y1: usize| {
        sat[y1 * (w + 1) + x1] - sat[y0 * (w + 1) + x1] - sat[y1 * (w + 1) + x0]
            + sat[y0 * (w + 1) + x0]
    };
    let mut out = Vec::with_capacity(GRID_X * GRID_Y);
    for j in 0..GRID_Y {
        let v = ((j as f32 + 0.5) / GRID_Y as f32 - g.crop) / scale;
        for i in 0..GRID_X {
            let mut u = (i as f32 + 0.5) / GRID_X as f32;
            if g.mirrored {
                u = 1.0 - u;
            }
            let u = (u - g.crop) / scale;
            if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
                out.push(f32::NAN);
                continue;
            }
            let cx = rx + u * rw;
            let cy = ry + v * rh;
            let x0 = ((cx - bw / 2.0).max(0.0) as usize).min(w - 1);
            let y0 = ((cy - bh / 2.0).max(0.0) as usize).min(h - 1);
            let x1 = ((x0 as f32 + bw).round() as usize).clamp(x0 + 1, w);
            let y1 = ((y0 as f32 + bh).round() as usize).clamp(y0 + 1, h);
            let n = ((x1 - x0) * (y1 - y0)) as f64;
            out.push((area(x0, y0, x1, y1) / n) as f32);
        }
    }
    out
}

/// Adds to `sum` each chip's mean minus its neighbours', weighted by the inverse of the local
/// variance of those differences (chips outside the picture add nothing).
fn add_weighted(sum: &mut [f32], means: &[f32]) {
    let at = |x: isize, y: isize| -> Option<f32> {
        if x < 0 || y < 0 || x >= GRID_X as isize || y >= GRID_Y as isize {
            return None;
        }
        let v = means[y as usize * GRID_X + x as usize];
        (!v.is_nan()).then_some(v)
    };
    let mut diff = vec![f32::NAN; GRID_X * GRID_Y];
    for y in 0..GRID_Y as isize {
        for x in 0..GRID_X as isize {
            let Some(c) = at(x, y) else { continue };
            let (mut s, mut n) = (0.0, 0);
            for (dx, dy) in NEIGHBOURS {
                if let Some(v) = at(x + dx, y + dy) {
                    s += v;
                    n += 1;
                }
            }
            if n > 0 {
                diff[y as usize * GRID_X + x as usize] = c - s / n as f32;
            }
        }
    }
    for y in 0..GRID_Y as isize {
        for x in 0..GRID_X as isize {
            let d = diff[y as usize * GRID_X + x as usize];
            if d.is_nan() {
                continue;
            }
            let (mut s, mut n) = (d * d, 1);
            for (dx, dy) in NEIGHBOURS {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= GRID_X as isize || ny >= GRID_Y as isize {
                    continue;
                }
                let v = diff[ny as usize * GRID_X + nx as usize];
                if !v.is_nan() {
                    s += v * v;
                    n += 1;
                }
            }
            // A floor of a quarter level squared keeps flat, noiseless regions from dividing by 0.
            sum[y as usize * GRID_X + x as usize] += d / (0.25 + s / n as f32);
        }
    }
}

const NEIGHBOURS: [(isize, isize); 8] = [
    (-1, -1),
    (0, -1),
    (1, -1),
    (-1, 0),
    (1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: u32, h: u32, seed: u32) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                let v = 128.0
                    + 50.0 * ((x * 0.05 + seed as f32).sin() * (y * 0.031).cos())
                    + 20.0 * ((x * 0.31 + y * 0.17).sin());
                let v = v.clamp(0.0, 255.0) as u8;
                [v, v.saturating_sub(20), v / 2]
            })
            .collect()
    }

    #[test]
    fn a_marked_frame_is_found_with_its_payload_and_an_unmarked_one_is_not() {
        let (w, h) = (320, 240);
        let plain = textured(w, h, 1);
        let mut marked = plain.clone();
        let payload = Payload::new(MarkEngine::Classic);
        Marker::new(payload).mark_rgb(&mut marked, w, h);
        let mut d = Detector::default();
        d.add_rgb(&marked, w, h);
        let v = d.verdict();
        assert!(v.marked, "{v:?}");
        assert_eq!(v.payload, Some(payload));
        assert_eq!(v.payload.map(|p| p.engine()), Some("classic"));
        let mut d = Detector::default();
        d.add_rgb(&plain, w, h);
        let v = d.verdict();
        assert!(!v.marked, "{v:?}");
        assert!(v.p_false > 1e-3, "{v:?}");
    }

    #[test]
    fn the_mark_changes_no_pixel_by_more_than_two_levels() {
        let (w, h) = (64, 48);
        let plain = textured(w, h, 2);
        let mut marked = plain.clone();
        Marker::new(Payload::new(MarkEngine::Fomm)).mark_rgb(&mut marked, w, h);
        let most = plain
            .iter()
            .zip(&marked)
            .map(|(a, b)| (i16::from(*a) - i16::from(*b)).abs())
            .max();
        assert_eq!(most, Some(2));
    }

    #[test]
    fn the_threshold_is_one_in_a_million_over_every_hypothesis() {
        // HYPOTHESES * exp(-t^2 / 2) = 1e-6 at t = 7.0.
        let t = (2.0 * (HYPOTHESES as f64 / P_FALSE_MAX).ln()).sqrt();
        assert!((6.9..7.1).contains(&t), "{t}");
    }
}
