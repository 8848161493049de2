//! The built-in test pattern: a portrait that moves by itself (the idle motion, larger), on a
//! neutral background, at 640x480 and a steady rate. It exercises the whole live path without a
//! camera, and the animated avatar visibly follows it.

use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;

use super::{CaptureError, FrameSource, Pacer};
use crate::frame::{Frame, Size};
use crate::idle::pose_at;

/// The neutral grey around the portrait.
const BACKGROUND: [u8; 3] = [96, 104, 112];

/// The test pattern as a [`FrameSource`], paced at its frame rate.
pub struct TestPattern {
    face: RgbImage,
    size: Size,
    pacer: Pacer,
    fps: f64,
    seq: u64,
    /// Motion amplitude relative to the idle motion.
    gain: f64,
}

impl TestPattern {
    /// `face`: the picture that moves (a square portrait works best).
    pub fn new(face: RgbImage, size: Size, fps: f64) -> Self {
        Self {
            face,
            size,
            pacer: Pacer::new(fps),
            fps,
            seq: 0,
            gain: 3.0,
        }
    }

    /// Renders frame `seq` (time seq / fps) into a new frame, without waiting.
    pub fn render(&self, seq: u64) -> Frame {
        let t = seq as f64 / self.fps;
        let p = pose_at(t);
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        let side = h.min(w) as f64 * 0.9;
        let (fw, fh) = (self.face.width() as f64, self.face.height() as f64);
        // Forward map: face pixel -> centre + R S (p - c) + shift; sample with its inverse.
        let angle = self.gain * p.roll;
        let scale = (1.0 + self.gain * p.zoom) * side / fw.max(fh);
        let (sin, cos) = angle.sin_cos();
        let shift_x = self.gain * (p.turn + p.sway) * w as f64 / 2.0;
        let shift_y = self.gain * p.nod * h as f64 / 2.0;
        let (cx, cy) = (w as f64 / 2.0 + shift_x, h as f64 / 2.0 + shift_y);
        // Face pixel (u, v) of output pixel (x, y): the inverse rotation and scale, which moves
        // by a constant step along a row.
        let (du, dv) = (cos / scale, -sin / scale);
        let stride = self.face.width() as usize * 3;
        let src = self.face.as_raw();
        let mut rgb = vec![0u8; w * h * 3];
        rgb.par_chunks_mut(w * 3).enumerate().for_each(|(y, line)| {
            let dy = y as f64 - cy;
            let mut u = (-cos * cx + sin * dy) / scale + fw / 2.0;
            let mut v = (sin * cx + cos * dy) / scale + fh / 2.0;
            for px in line.chunks_exact_mut(3) {
                if u >= 0.0 && v >= 0.0 && u < fw - 1.0 && v < fh - 1.0 {
                    // Non-negative: truncation is the floor.
                    let (x0, y0) = (u as usize, v as usize);
                    let (ax, ay) = ((u - x0 as f64) as f32, (v - y0 as f64) as f32);
                    let i = y0 * stride + x0 * 3;
                    let (top, bottom) = (&src[i..i + 6], &src[i + stride..i + stride + 6]);
                    for k in 0..3 {
                        let lerp = |p: &[u8]| p[k] as f32 + (p[k + 3] as f32 - p[k] as f32) * ax;
                        let (t, b) = (lerp(top), lerp(bottom));
                        // Rounded: the values are non-negative and at most 255.
                        px[k] = (t + (b - t) * ay + 0.5) as u8;
                    }
                } else {
                    px.copy_from_slice(&BACKGROUND);
                }
                u += du;
                v += dv;
            }
        });
        Frame {
            seq,
            captured_at: Instant::now(),
            size: self.size,
            rgb: std::sync::Arc::new(rgb),
        }
    }
}

impl FrameSource for TestPattern {
    fn name(&self) -> String {
        "test-pattern".into()
    }

    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        self.pacer.wait();
        let frame = self.render(self.seq);
        self.seq += 1;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face whose columns get brighter to the right.
    fn gradient(side: u32) -> RgbImage {
        RgbImage::from_fn(side, side, |x, _| {
            let g = (x * 255 / (side - 1)) as u8;
            image::Rgb([g, g, 255 - g])
        })
    }

    #[test]
    fn the_first_frame_shows_the_face_upright_and_centred_on_grey() {
        let size = Size::new(640, 480);
        let frame = TestPattern::new(gradient(64), size, 30.0).render(0);
        let px = |x: usize, y: usize| {
            let i = (y * 640 + x) * 3;
            [frame.rgb[i], frame.rgb[i + 1], frame.rgb[i + 2]]
        };
        // The idle motion starts at rest: the face fills 90 % of the height, centred.
        for (x, y) in [(0, 0), (639, 479), (80, 240), (560, 240), (320, 5)] {
            assert_eq!(px(x, y), BACKGROUND, "({x}, {y})");
        }
        let row: Vec<[u8; 3]> = (112..528).map(|x| px(x, 240)).collect();
        assert!(
            row.windows(2)
                .all(|w| w[0][0] <= w[1][0] && w[0][2] >= w[1][2])
        );
        assert!(
            row[0][0] < 10 && row[row.len() - 1][0] > 245,
            "{:?}",
            (row[0], row.last())
        );
        // Upright: a column shows one colour from top to bottom.
        let column: Vec<[u8; 3]> = (40..440).map(|y| px(320, y)).collect();
        assert!(column.iter().all(|p| *p == column[0]), "{column:?}");
    }

    #[test]
    fn later_frames_move() {
        let pattern = TestPattern::new(gradient(64), Size::new(640, 480), 30.0);
        let (a, b) = (pattern.render(30), pattern.render(45));
        assert_ne!(a.rgb, b.rgb);
    }
}
