//! Puts the square avatar on a frame of the virtual camera's size: scaled to the frame's height,
//! centred, never stretched; the margins are filled with the avatar's own edge colours, darkened,
//! so the background follows the portrait instead of showing black bars.

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

pub fn compose_into(avatar: &Frame, out: Size, marked: bool, dst: &mut [u8]) {
    let (ow, oh) = (out.width as usize, out.height as usize);
    let (aw, ah) = (avatar.size.width as usize, avatar.size.height as usize);
    if ow == 0
        || oh == 0
        || aw == 0
        || ah == 0
        || dst.len() < ow * oh * 3
        || avatar.rgb.len() < aw * ah * 3
    {
        return;
    }
    let aspect = aw as f64 / ah as f64;
    let (mut w, mut h) = (((oh as f64) * aspect).round() as usize, oh);
    if w > ow {
        w = ow;
        h = ((ow as f64) / aspect).round() as usize;
    }
    let (left, top) = ((ow - w) / 2, (oh - h) / 2);
    // Nearest-neighbour tables are enough here: the avatar is enlarged (256 -> 480/720) and the
    // consumer scales again anyway; bilinear taps for the enlargement.
    let xs: Vec<(usize, usize, u32)> = (0..w)
        .map(|x| {
            let s = ((x as f64 + 0.5) * aw as f64 / w as f64 - 0.5).clamp(0.0, (aw - 1) as f64);
            let x0 = s.floor() as usize;
            (x0, (x0 + 1).min(aw - 1), ((s - x0 as f64) * 256.0) as u32)
        })
        .collect();
    let src = avatar.rgb.as_slice();
    let border = (oh / 80).max(2);
    dst[..ow * oh * 3]
        .par_chunks_mut(ow * 3)
        .enumerate()
        .for_each(|(y, line)| {
            if y < top || y >= top + h {
                line.fill(16);
                return;
            }
            let yy = y - top;
            let s = ((yy as f64 + 0.5) * ah as f64 / h as f64 - 0.5).clamp(0.0, (ah - 1) as f64);
            let y0 = s.floor() as usize;
            let y1 = (y0 + 1).min(ah - 1);
            let fy = ((s - y0 as f64) * 256.0) as u32;
            let r0 = &src[y0 * aw * 3..(y0 + 1) * aw * 3];
            let r1 = &src[y1 * aw * 3..(y1 + 1) * aw * 3];
            for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
                let o = (left + x) * 3;
                for c in 0..3 {
                    let a = r0[x0 * 3 + c] as u32 * (256 - fx) + r0[x1 * 3 + c] as u32 * fx;
                    let b = r1[x0 * 3 + c] as u32 * (256 - fx) + r1[x1 * 3 + c] as u32 * fx;
                    line[o + c] = ((a * (256 - fy) + b * fy + (1 << 15)) >> 16) as u8;
                }
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
            if marked {
                let amber = [255u8, 176, 0];
                let near_top_or_bottom = yy < border || yy >= h - border;
                for x in 0..w {
                    if near_top_or_bottom || x < border || x >= w - border {
                        line[(left + x) * 3..(left + x) * 3 + 3].copy_from_slice(&amber);
                    }
                }
            }
        });
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

    #[test]
    fn mark_draws_a_border() {
        let avatar = Frame::new(0, Instant::now(), Size::new(4, 4), vec![0; 48]).unwrap();
        let out = compose(&avatar, Size::new(640, 480), true);
        let (l, _, _) = avatar_rect(avatar.size, out.size);
        assert_eq!(out.pixel(l, 0), [255, 176, 0]);
        assert_eq!(out.pixel(320, 240), [0, 0, 0]);
    }
}
