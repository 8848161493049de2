//! The built-in test pattern: a portrait that moves by itself (the idle motion, larger), on a
//! neutral background, at 640x480 and a steady rate. It exercises the whole live path without a
//! camera, and the animated avatar visibly follows it.

use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;

use super::{CaptureError, FrameSource, Pacer};
use crate::frame::{Frame, Size};
use crate::idle::pose_at;

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
        let face = &self.face;
        let mut rgb = vec![0u8; w * h * 3];
        rgb.par_chunks_mut(w * 3).enumerate().for_each(|(y, line)| {
            for x in 0..w {
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                // Inverse rotation and scale into face coordinates.
                let u = (cos * dx + sin * dy) / scale + fw / 2.0;
                let v = (-sin * dx + cos * dy) / scale + fh / 2.0;
                let px = if u >= 0.0 && v >= 0.0 && u < fw - 1.0 && v < fh - 1.0 {
                    let (x0, y0) = (u.floor() as u32, v.floor() as u32);
                    let (ax, ay) = (u - x0 as f64, v - y0 as f64);
                    let s = |xx: u32, yy: u32| face.get_pixel(xx, yy).0;
                    let (a, b, c, d) = (s(x0, y0), s(x0 + 1, y0), s(x0, y0 + 1), s(x0 + 1, y0 + 1));
                    let mut o = [0u8; 3];
                    for k in 0..3 {
                        let top = a[k] as f64 * (1.0 - ax) + b[k] as f64 * ax;
                        let bot = c[k] as f64 * (1.0 - ax) + d[k] as f64 * ax;
                        o[k] = (top * (1.0 - ay) + bot * ay).round() as u8;
                    }
                    o
                } else {
                    [96, 104, 112]
                };
                line[x * 3..x * 3 + 3].copy_from_slice(&px);
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
