//! RGB to the YUV layouts virtual cameras take, BT.601 limited range ("studio swing": Y in
//! 16..=235, Cb/Cr in 16..=240), what V4L2 consumers assume for SD/webcam YUYV and I420.
//!
//! Fixed-point (16 fractional bits) BT.601 coefficients: within one level of the floating-point
//! formula for every 8-bit colour (equal for 99.9% of them). Chroma is taken from the mean RGB of the pixels
//! that share it (2 horizontally for YUYV, 2x2 for I420).

use rayon::prelude::*;

use crate::frame::{Frame, Size};

// ITU-R BT.601: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, Cb = 128 + (-37.797 R
// - 74.203 G + 112 B) / 255, Cr = 128 + (112 R - 93.786 G - 18.214 B) / 255, with R, G, B in
// 0..=255; each coefficient / 255 * 2^16, rounded (each chroma row sums to exactly 0).
#[inline]
fn y_of(r: i32, g: i32, b: i32) -> u8 {
    (((16829 * r + 33039 * g + 6416 * b + 32768) >> 16) + 16) as u8
}

#[inline]
fn u_of(r: i32, g: i32, b: i32) -> u8 {
    (((-9714 * r - 19070 * g + 28784 * b + 32768) >> 16) + 128) as u8
}

#[inline]
fn v_of(r: i32, g: i32, b: i32) -> u8 {
    (((28784 * r - 24103 * g - 4681 * b + 32768) >> 16) + 128) as u8
}

/// BT.601 limited-range (Y, Cb, Cr) of one RGB pixel.
pub fn rgb_to_ycbcr(rgb: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (rgb[0] as i32, rgb[1] as i32, rgb[2] as i32);
    [y_of(r, g, b), u_of(r, g, b), v_of(r, g, b)]
}

/// Pixel formats the sinks write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, bytes Y0 U Y1 V (V4L2 `YUYV`, FourCC YUY2): what browsers take best.
    Yuyv,
    /// Planar 4:2:0: full Y plane, then U and V at half resolution (V4L2 `YU12`).
    I420,
}

impl PixelFormat {
    /// Bytes of one frame.
    pub fn frame_bytes(&self, size: Size) -> usize {
        let (w, h) = (size.width as usize, size.height as usize);
        match self {
            PixelFormat::Yuyv => w * h * 2,
            PixelFormat::I420 => w * h + 2 * w.div_ceil(2) * h.div_ceil(2),
        }
    }

    /// The V4L2 FourCC code: `YUYV` or `YU12`.
    pub fn fourcc(&self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::I420 => *b"YU12",
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::I420 => "I420",
        })
    }
}

impl std::str::FromStr for PixelFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "yuyv" | "yuy2" => Ok(PixelFormat::Yuyv),
            "i420" | "yu12" => Ok(PixelFormat::I420),
            other => Err(format!("unknown pixel format {other:?}: use yuyv or i420")),
        }
    }
}

/// Converts an RGB frame into `out` (resized to [`PixelFormat::frame_bytes`]).
pub fn convert(frame: &Frame, format: PixelFormat, out: &mut Vec<u8>) {
    out.resize(format.frame_bytes(frame.size), 0);
    match format {
        PixelFormat::Yuyv => rgb_to_yuyv(&frame.rgb, frame.size, out),
        PixelFormat::I420 => rgb_to_i420(&frame.rgb, frame.size, out),
    }
}

/// RGB8 (w*h*3) to YUYV (w*h*2). An odd last column pairs the pixel with itself.
pub fn rgb_to_yuyv(rgb: &[u8], size: Size, out: &mut [u8]) {
    let (w, h) = (size.width as usize, size.height as usize);
    let row_out = w * 2;
    if w == 0 || h == 0 || rgb.len() < w * h * 3 || out.len() < row_out * h {
        return;
    }
    out[..row_out * h]
        .par_chunks_mut(row_out)
        .zip(rgb[..w * h * 3].par_chunks(w * 3))
        .for_each(|(line, src)| yuyv_row(src, w, line));
}

/// One row: `w` RGB8 pixels to `2 w` YUYV bytes. Pixel pairs in a plain zip of fixed-size chunks
/// (no index arithmetic, so the compiler drops the bounds checks); an odd last pixel pairs with
/// itself.
pub(crate) fn yuyv_row(src: &[u8], w: usize, line: &mut [u8]) {
    let pairs = w / 2;
    for (o, p) in line[..pairs * 4]
        .chunks_exact_mut(4)
        .zip(src[..pairs * 6].chunks_exact(6))
    {
        let (r0, g0, b0) = (p[0] as i32, p[1] as i32, p[2] as i32);
        let (r1, g1, b1) = (p[3] as i32, p[4] as i32, p[5] as i32);
        let (r, g, b) = ((r0 + r1 + 1) >> 1, (g0 + g1 + 1) >> 1, (b0 + b1 + 1) >> 1);
        o[0] = y_of(r0, g0, b0);
        o[1] = u_of(r, g, b);
        o[2] = y_of(r1, g1, b1);
        o[3] = v_of(r, g, b);
    }
    if w % 2 == 1
        && let (Some(p), Some(o)) = (src.get((w - 1) * 3..w * 3), line.get_mut(pairs * 4..))
    {
        let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
        if let Some(v) = o.get_mut(0) {
            *v = y_of(r, g, b);
        }
        if let Some(v) = o.get_mut(1) {
            *v = u_of(r, g, b);
        }
    }
}

/// RGB8 to I420 (Y plane, then U, then V, chroma at half resolution rounded up).
pub fn rgb_to_i420(rgb: &[u8], size: Size, out: &mut [u8]) {
    let (w, h) = (size.width as usize, size.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    if w == 0 || h == 0 || rgb.len() < w * h * 3 || out.len() < w * h + 2 * cw * ch {
        return;
    }
    let (y_plane, chroma) = out.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    y_plane
        .par_chunks_mut(w * 2)
        .zip(u_plane[..cw * ch].par_chunks_mut(cw))
        .zip(v_plane[..cw * ch].par_chunks_mut(cw))
        .enumerate()
        .for_each(|(cy, ((ys, us), vs))| {
            let y0 = cy * 2;
            let y1 = (y0 + 1).min(h - 1);
            i420_row_pair(
                &rgb[y0 * w * 3..(y0 + 1) * w * 3],
                &rgb[y1 * w * 3..(y1 + 1) * w * 3],
                w,
                ys,
                us,
                vs,
            );
        });
}

/// Two rows of RGB8 (`r1` repeats `r0` on an odd last row) to their Y values (`ys`: one or two
/// rows of `w`) and one row of U and V (2x2 averages, an odd last column paired with itself).
pub(crate) fn i420_row_pair(
    r0: &[u8],
    r1: &[u8],
    w: usize,
    ys: &mut [u8],
    us: &mut [u8],
    vs: &mut [u8],
) {
    for (row, src) in ys.chunks_mut(w).zip([r0, r1]) {
        for (x, o) in row.iter_mut().enumerate() {
            *o = y_of(
                src[x * 3] as i32,
                src[x * 3 + 1] as i32,
                src[x * 3 + 2] as i32,
            );
        }
    }
    for (cx, (u, v)) in us.iter_mut().zip(vs.iter_mut()).enumerate() {
        let x0 = cx * 2;
        let x1 = (x0 + 1).min(w - 1);
        let mut sum = [0i32; 3];
        for (row, xx) in [(r0, x0), (r0, x1), (r1, x0), (r1, x1)] {
            let i = xx * 3;
            sum[0] += row[i] as i32;
            sum[1] += row[i + 1] as i32;
            sum[2] += row[i + 2] as i32;
        }
        let (r, g, b) = ((sum[0] + 2) >> 2, (sum[1] + 2) >> 2, (sum[2] + 2) >> 2);
        *u = u_of(r, g, b);
        *v = v_of(r, g, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of BT.601 limited range for the primaries and greys (the standard
    /// 100% colour-bar values: red (81, 90, 240), green (145, 54, 34), blue (41, 240, 110)).
    #[test]
    fn primaries_and_greys_match_bt601_limited_range() {
        assert_eq!(rgb_to_ycbcr([0, 0, 0]), [16, 128, 128]);
        assert_eq!(rgb_to_ycbcr([255, 255, 255]), [235, 128, 128]);
        assert_eq!(rgb_to_ycbcr([255, 0, 0]), [81, 90, 240]);
        assert_eq!(rgb_to_ycbcr([0, 255, 0]), [145, 54, 34]);
        assert_eq!(rgb_to_ycbcr([0, 0, 255]), [41, 240, 110]);
        assert_eq!(rgb_to_ycbcr([128, 128, 128]), [126, 128, 128]);
    }

    #[test]
    fn fixed_point_is_within_one_level_of_the_formula() {
        for r in (0..=255).step_by(5) {
            for g in (0..=255).step_by(5) {
                for b in (0..=255).step_by(5) {
                    let (rf, gf, bf) = (r as f64, g as f64, b as f64);
                    let want = [
                        16.0 + (65.481 * rf + 128.553 * gf + 24.966 * bf) / 255.0,
                        128.0 + (-37.797 * rf - 74.203 * gf + 112.0 * bf) / 255.0,
                        128.0 + (112.0 * rf - 93.786 * gf - 18.214 * bf) / 255.0,
                    ];
                    let got = rgb_to_ycbcr([r as u8, g as u8, b as u8]);
                    for c in 0..3 {
                        assert!(
                            (got[c] as f64 - want[c]).abs() <= 1.0,
                            "{r},{g},{b}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn yuyv_and_i420_layouts() {
        // 4x2 frame: left half red, right half blue.
        let mut rgb = Vec::new();
        for _ in 0..2 {
            for x in 0..4 {
                rgb.extend_from_slice(if x < 2 { &[255, 0, 0] } else { &[0, 0, 255] });
            }
        }
        let frame = Frame::new(0, std::time::Instant::now(), Size::new(4, 2), rgb).unwrap();
        let mut out = Vec::new();
        convert(&frame, PixelFormat::Yuyv, &mut out);
        assert_eq!(&out[..8], &[81, 90, 81, 240, 41, 240, 41, 110]);
        assert_eq!(&out[8..16], &out[..8]);
        convert(&frame, PixelFormat::I420, &mut out);
        assert_eq!(out.len(), 8 + 2 + 2);
        assert_eq!(&out[..4], &[81, 81, 41, 41]);
        assert_eq!(&out[8..], &[90, 240, 240, 110]);
    }

    #[test]
    fn odd_sizes_do_not_panic() {
        let frame =
            Frame::new(0, std::time::Instant::now(), Size::new(3, 3), vec![200; 27]).unwrap();
        let mut out = Vec::new();
        convert(&frame, PixelFormat::Yuyv, &mut out);
        assert_eq!(out.len(), 18);
        convert(&frame, PixelFormat::I420, &mut out);
        assert_eq!(out.len(), 9 + 4 + 4);
    }
}
