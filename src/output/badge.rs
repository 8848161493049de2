//! The visible "AI ANIMATED" badge: a small label in the bottom-right corner of recordings and of
//! the virtual camera, drawn from a built-in 5x7 pixel font (no font files, no dependency). Pixel
//! sizes grow with the frame (1 font pixel per 256 frame pixels); frames too narrow for the label
//! get "AI" alone.

use crate::frame::Frame;

/// Glyph rows, top to bottom; bit 4 is the leftmost pixel.
const GLYPH_ROWS: usize = 7;
const GLYPH_COLS: usize = 5;

fn glyph(c: char) -> [u8; GLYPH_ROWS] {
    match c {
        'A' => [
            0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
        'D' => [
            0b11110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11110,
        ],
        'E' => [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111,
        ],
        'I' => [
            0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
        'M' => [
            0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001,
        ],
        'N' => [
            0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0b10001,
        ],
        'T' => [
            0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100,
        ],
        _ => [0; GLYPH_ROWS],
    }
}

/// The label in full, and the short one for narrow frames.
pub const LABEL: &str = "AI ANIMATED";
const SHORT_LABEL: &str = "AI";

/// (left, top, width, height, font pixel size, label).
pub type BadgeRect = (usize, usize, usize, usize, usize, &'static str);

/// Where the badge goes in a frame of `width` x `height`: (left, top, width, height, scale,
/// label); `None` when even the short label does not fit.
pub fn badge_rect(width: usize, height: usize) -> Option<BadgeRect> {
    let scale = (width.min(height) / 256).max(1);
    let pad = 2 * scale;
    let margin = 3 * scale;
    let size = |label: &str| {
        let n = label.chars().count();
        (
            (n * (GLYPH_COLS + 1) - 1) * scale + 2 * pad,
            GLYPH_ROWS * scale + 2 * pad,
        )
    };
    for label in [LABEL, SHORT_LABEL] {
        let (w, h) = size(label);
        // The full label takes at most a third of the width.
        let room = if label == LABEL { width / 3 } else { width };
        if w <= room && w + 2 * margin <= width && h + 2 * margin <= height {
            return Some((width - margin - w, height - margin - h, w, h, scale, label));
        }
    }
    None
}

/// Draws the badge into packed RGB pixels of `width` x `height` (rows without padding): white
/// letters on a dark, 75% opaque box. Does nothing when the buffer is not that size or the frame
/// is too small.
pub fn draw_badge(rgb: &mut [u8], width: usize, height: usize) {
    if rgb.len() != width * height * 3 {
        return;
    }
    let Some((left, top, w, h, scale, label)) = badge_rect(width, height) else {
        return;
    };
    // The box: 3/4 dark grey over 1/4 of the picture.
    for y in top..top + h {
        let row = &mut rgb[(y * width + left) * 3..(y * width + left + w) * 3];
        for v in row.iter_mut() {
            *v = ((*v as u32 + 3 * 24) / 4) as u8;
        }
    }
    let pad = 2 * scale;
    for (i, c) in label.chars().enumerate() {
        let g = glyph(c);
        let x0 = left + pad + i * (GLYPH_COLS + 1) * scale;
        for (gy, bits) in g.iter().enumerate() {
            for gx in 0..GLYPH_COLS {
                if bits & (1 << (GLYPH_COLS - 1 - gx)) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    let y = top + pad + gy * scale + dy;
                    let start = (y * width + x0 + gx * scale) * 3;
                    for px in rgb[start..start + scale * 3].iter_mut() {
                        *px = 255;
                    }
                }
            }
        }
    }
}

/// `frame` with the badge drawn on its pixels (copied first only where they are shared: a frame
/// just mirrored is drawn on in place).
pub fn badged(mut frame: Frame) -> Frame {
    let (w, h) = (frame.size.width as usize, frame.size.height as usize);
    let rgb: &mut Vec<u8> = std::sync::Arc::make_mut(&mut frame.rgb);
    draw_badge(rgb, w, h);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_sits_in_the_bottom_right_corner() {
        let (w, h) = (256, 256);
        let mut rgb = vec![128u8; w * h * 3];
        draw_badge(&mut rgb, w, h);
        let changed: Vec<(usize, usize)> = (0..w * h)
            .filter(|&i| rgb[i * 3] != 128)
            .map(|i| (i % w, i / w))
            .collect();
        assert!(!changed.is_empty());
        assert!(changed.iter().all(|&(x, y)| x > w / 2 && y > h * 7 / 8));
        // White letters on the box.
        assert!(rgb.chunks(3).any(|p| p == [255, 255, 255]));
        let (_, _, bw, _, _, label) = badge_rect(w, h).unwrap();
        assert_eq!(label, LABEL);
        assert!(bw <= w / 3);
    }

    #[test]
    fn small_frames_get_the_short_label_or_none() {
        assert_eq!(badge_rect(64, 64).map(|r| r.5), Some("AI"));
        assert_eq!(badge_rect(8, 8), None);
        let mut rgb = vec![0u8; 8 * 8 * 3];
        draw_badge(&mut rgb, 8, 8);
        assert!(rgb.iter().all(|&v| v == 0));
        // A wrong-sized buffer is left alone.
        let mut short = vec![7u8; 10];
        draw_badge(&mut short, 256, 256);
        assert!(short.iter().all(|&v| v == 7));
    }

    #[test]
    fn scales_with_the_frame() {
        let small = badge_rect(256, 256).unwrap();
        let large = badge_rect(1024, 1024).unwrap();
        assert_eq!((small.4, large.4), (1, 4));
        assert_eq!(large.2, small.2 * 4);
    }
}
