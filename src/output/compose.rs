//! Puts the square avatar on a frame of the virtual camera's size: scaled to the frame's height,
//! centred, never stretched; the margins (left and right, or above and below for an avatar wider
//! than the frame) are filled with the avatar's own edge colours, darkened, so the background
//! follows the portrait instead of showing black bars.

use rayon::prelude::*;

use crate::frame::{Frame, Size};

/// How much the edge colours are darkened in the margins (0..=256, 256 = unchanged).
const MARGIN_SHADE: u32 = 150;

/// Renders `avatar` (any size, normally square) into a new frame of `out` size with the same
/// sequence number and capture time. `marked` draws an amber border around the avatar: the
/// "not calibrated yet" mark.
pub fn compose(avatar: &Frame, out: Size, marked: bool) -> Frame {
    let mut rgb = vec![0u8; out.pixels() * 3];
    compose_into(avatar, out, marked, &mut rgb);
    Frame {
        seq: avatar.seq,
        captured_at: avatar.captured_at,
        size: out,
        rgb: std::sync::Arc::new(rgb),
    }
}

/// Where the avatar lands: (left, top, side) in output pixels.
pub fn avatar_rect(avatar: Size, out: Size) -> (u32, u32, u32) {
    let aspect = avatar.width.max(1) as f64 / avatar.height.max(1) as f64;
    let side_h = out.height;
    let side_w = ((side_h as f64) * aspect).round() as u32;
    let (w, h) = if side_w <= out.width {
        (side_w, side_h)
    } else {
        (out.width, (out.width as f64 / aspect).round() as u32)
    };
    ((out.width - w) / 2, (out.height - h) / 2, w.max(h))
}

/// [`compose`] into `dst`, RGB8 of `out` size; nothing is written when `dst` is smaller than that
/// or the avatar or the output is empty.
pub fn compose_into(avatar: &Frame, out: Size, marked: bool, dst: &mut [u8]) {
    let ow = out.width as usize;
    let oh = out.height as usize;
    let Some(layout) = Layout::new(avatar, out, marked) else {
        return;
    };
    if dst.len() < ow * oh * 3 {
        return;
    }
    dst[..ow * oh * 3]
        .par_chunks_mut(ow * 3)
        .enumerate()
        .for_each(|(y, line)| layout.row(y, line));
}

/// The avatar composed straight into YUYV or I420 bytes of `out` size: the same bytes as
/// [`compose_into`] followed by [`super::convert::convert`], one row (or row pair) at a time, so the
/// full RGB frame is never written to memory and margins are converted once per row.
pub fn compose_convert(
    avatar: &Frame,
    out: Size,
    marked: bool,
    format: super::convert::PixelFormat,
    dst: &mut Vec<u8>,
) {
    use super::convert::{PixelFormat, i420_row_pair, yuyv_row};
    let (w, h) = (out.width as usize, out.height as usize);
    dst.resize(format.frame_bytes(out), 0);
    let Some(layout) = Layout::new(avatar, out, marked) else {
        dst.iter_mut().for_each(|v| *v = 0);
        return;
    };
    match format {
        PixelFormat::Yuyv => {
            dst.par_chunks_mut(w * 2).enumerate().for_each_init(
                || vec![0u8; w * 3],
                |rgb, (y, line)| {
                    layout.row(y, rgb);
                    yuyv_row(rgb, w, line);
                },
            );
        }
        PixelFormat::I420 => {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let (y_plane, chroma) = dst.split_at_mut(w * h);
            let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
            y_plane
                .par_chunks_mut(w * 2)
                .zip(u_plane.par_chunks_mut(cw))
                .zip(v_plane.par_chunks_mut(cw))
                .enumerate()
                .for_each_init(
                    || (vec![0u8; w * 3], vec![0u8; w * 3]),
                    |(r0, r1), (cy, ((ys, us), vs))| {
                        let y0 = cy * 2;
                        layout.row(y0, r0);
                        if y0 + 1 < h {
                            layout.row(y0 + 1, r1);
                        } else {
                            r1.copy_from_slice(r0);
                        }
                        i420_row_pair(r0, r1, w, ys, us, vs);
                    },
                );
        }
    }
}

/// Where and how the avatar lands in the output, and the tables for scaling it.
struct Layout {
    /// Each avatar row scaled to the output width `w`, times 256 (u16: at most 255 * 256).
    hrows: Vec<u16>,
    ah: usize,
    ow: usize,
    left: usize,
    top: usize,
    w: usize,
    h: usize,
    border: usize,
    marked: bool,
}

impl Layout {
    fn new(avatar: &Frame, out: Size, marked: bool) -> Option<Self> {
        let (ow, oh) = (out.width as usize, out.height as usize);
        let (aw, ah) = (avatar.size.width as usize, avatar.size.height as usize);
        if ow == 0 || oh == 0 || aw == 0 || ah == 0 || avatar.rgb.len() < aw * ah * 3 {
            return None;
        }
        let aspect = aw as f64 / ah as f64;
        let (mut w, mut h) = (((oh as f64) * aspect).round() as usize, oh);
        if w > ow {
            w = ow;
            h = ((ow as f64) / aspect).round() as usize;
        }
        let (left, top) = ((ow - w) / 2, (oh - h) / 2);
        // Bilinear taps for the enlargement (256 -> 480/720).
        let xs: Vec<(usize, usize, u32)> = (0..w)
            .map(|x| {
                let s = ((x as f64 + 0.5) * aw as f64 / w as f64 - 0.5).clamp(0.0, (aw - 1) as f64);
                let x0 = s.floor() as usize;
                (x0, (x0 + 1).min(aw - 1), ((s - x0 as f64) * 256.0) as u32)
            })
            .collect();
        // The horizontal half of the bilinear enlargement, once per avatar row.
        let src = avatar.rgb.as_slice();
        let mut hrows = vec![0u16; ah * w * 3];
        hrows
            .par_chunks_mut(w * 3)
            .enumerate()
            .for_each(|(y, out)| {
                let r = &src[y * aw * 3..(y + 1) * aw * 3];
                for (o, &(x0, x1, fx)) in out.chunks_exact_mut(3).zip(&xs) {
                    for c in 0..3 {
                        o[c] =
                            (r[x0 * 3 + c] as u32 * (256 - fx) + r[x1 * 3 + c] as u32 * fx) as u16;
                    }
                }
            });
        Some(Self {
            hrows,
            ah,
            ow,
            left,
            top,
            w,
            h,
            border: (oh / 80).max(2),
            marked,
        })
    }

    /// Output row `y` (RGB8, `ow` pixels).
    fn row(&self, y: usize, line: &mut [u8]) {
        let Self {
            ah,
            ow,
            left,
            top,
            w,
            h,
            border,
            ..
        } = *self;
        // Rows above or below the avatar (an avatar wider than the output) repeat its nearest row,
        // darkened like the side margins: no margin is ever left unfilled.
        let outside = y < top || y >= top + h;
        let yy = y.saturating_sub(top).min(h.saturating_sub(1));
        let s = ((yy as f64 + 0.5) * ah as f64 / h as f64 - 0.5).clamp(0.0, (ah - 1) as f64);
        let y0 = s.floor() as usize;
        let y1 = (y0 + 1).min(ah - 1);
        let fy = ((s - y0 as f64) * 256.0) as u32;
        let r0 = &self.hrows[y0 * w * 3..(y0 + 1) * w * 3];
        let r1 = &self.hrows[y1 * w * 3..(y1 + 1) * w * 3];
        for ((o, &a), &b) in line[left * 3..(left + w) * 3].iter_mut().zip(r0).zip(r1) {
            *o = ((a as u32 * (256 - fy) + b as u32 * fy + (1 << 15)) >> 16) as u8;
        }
        // Margins: the row's edge colour, darkened.
        let (l_edge, r_edge) = ([line[left * 3], line[left * 3 + 1], line[left * 3 + 2]], {
            let o = (left + w - 1) * 3;
            [line[o], line[o + 1], line[o + 2]]
        });
        for x in 0..left {
            for c in 0..3 {
                line[x * 3 + c] = ((l_edge[c] as u32 * MARGIN_SHADE) >> 8) as u8;
            }
        }
        for x in left + w..ow {
            for c in 0..3 {
                line[x * 3 + c] = ((r_edge[c] as u32 * MARGIN_SHADE) >> 8) as u8;
            }
        }
        if outside {
            for v in line[left * 3..(left + w) * 3].iter_mut() {
                *v = ((*v as u32 * MARGIN_SHADE) >> 8) as u8;
            }
            return;
        }
        if self.marked {
            let amber = [255u8, 176, 0];
            let near_top_or_bottom = yy < border || yy >= h - border;
            for x in 0..w {
                if near_top_or_bottom || x < border || x >= w - border {
                    line[(left + x) * 3..(left + x) * 3 + 3].copy_from_slice(&amber);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn square_avatar_is_centred_at_full_height_with_filled_margins() {
        let avatar = Frame::new(
            3,
            Instant::now(),
            Size::new(4, 4),
            [200u8, 100, 50].repeat(16),
        )
        .unwrap();
        let out = compose(&avatar, Size::new(16, 8), false);
        assert_eq!(out.seq, 3);
        assert_eq!(avatar_rect(avatar.size, out.size), (4, 0, 8));
        // Inside: the avatar colour; margins: darkened edge colour, not black and not stretched.
        assert_eq!(out.pixel(8, 4), [200, 100, 50]);
        let m = out.pixel(1, 4);
        assert_eq!(
            m,
            [
                (200 * 150 / 256) as u8,
                (100 * 150 / 256) as u8,
                (50 * 150 / 256) as u8
            ]
        );
    }

    /// The fused path gives the same bytes as composing and then converting, for both formats,
    /// even and odd sizes, marked or not.
    #[test]
    fn compose_convert_matches_compose_then_convert() {
        use crate::output::convert::{PixelFormat, convert};
        let mut rgb = Vec::new();
        for y in 0..37u32 {
            for x in 0..37u32 {
                rgb.extend_from_slice(&[(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]);
            }
        }
        let avatar = Frame::new(0, Instant::now(), Size::new(37, 37), rgb).unwrap();
        for out in [Size::new(64, 48), Size::new(33, 21), Size::new(1280, 720)] {
            for format in [PixelFormat::Yuyv, PixelFormat::I420] {
                for marked in [false, true] {
                    let mut want = Vec::new();
                    convert(&compose(&avatar, out, marked), format, &mut want);
                    let mut got = Vec::new();
                    compose_convert(&avatar, out, marked, format, &mut got);
                    assert!(got == want, "{out} {format:?} marked={marked}");
                }
            }
        }
    }

    #[test]
    fn no_margin_is_left_unfilled() {
        // A wide avatar in a tall frame: the rows above and below repeat its edge rows, darkened.
        let avatar = Frame::new(
            0,
            Instant::now(),
            Size::new(8, 4),
            [90u8, 180, 30].repeat(32),
        )
        .unwrap();
        let out = compose(&avatar, Size::new(8, 16), false);
        let shade = |v: u32| (v * 150 / 256) as u8;
        assert_eq!(out.pixel(3, 0), [shade(90), shade(180), shade(30)]);
        assert_eq!(out.pixel(3, 15), [shade(90), shade(180), shade(30)]);
        assert_eq!(out.pixel(3, 8), [90, 180, 30]);
    }

    #[test]
    fn mark_draws_a_border() {
        let avatar = Frame::new(0, Instant::now(), Size::new(4, 4), vec![0; 48]).unwrap();
        let out = compose(&avatar, Size::new(640, 480), true);
        let (l, _, _) = avatar_rect(avatar.size, out.size);
        assert_eq!(out.pixel(l, 0), [255, 176, 0]);
        assert_eq!(out.pixel(320, 240), [0, 0, 0]);
    }
}
