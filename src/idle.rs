//! Idle motion: gentle, natural head motion for when no driving frames are available (no webcam,
//! or `--idle`). The motion is a small similarity-like transform around the portrait's keypoint
//! centre (roll, nod, turn, sway, a little breathing zoom), expressed in FOMM's own motion
//! representation: every source keypoint is moved and every Jacobian is multiplied by the local
//! linear part, so both engines render it the same way they render a driving frame.
//!
//! Each pose parameter is a sum of a few slow sinusoids with incommensurate periods (3.7 s to
//! 23 s), so the motion never visibly repeats, is smooth (bounded velocity) and stays within
//! fixed bounds for any length of time.

use std::f64::consts::TAU;

/// One pose of the idle motion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdlePose {
    /// In-plane head tilt in radians (positive: counter-clockwise on screen).
    pub roll: f64,
    /// Horizontal shift in normalised units ([-1, 1] spans the frame), standing in for a turn.
    pub turn: f64,
    /// Vertical shift (positive: down), standing in for a nod.
    pub nod: f64,
    /// Horizontal sway of the whole head.
    pub sway: f64,
    /// Relative scale change (breathing, leaning in).
    pub zoom: f64,
}

/// (amplitude, period in seconds, phase in turns) of each component. Amplitudes are small:
/// roll at most 0.07 rad (4 degrees), shifts at most ~3% of the frame, zoom at most 2%.
const ROLL: [(f64, f64, f64); 3] = [(0.035, 7.3, 0.10), (0.02, 3.7, 0.55), (0.015, 17.9, 0.30)];
const TURN: [(f64, f64, f64); 3] = [(0.018, 9.1, 0.00), (0.008, 4.3, 0.70), (0.006, 23.0, 0.20)];
const NOD: [(f64, f64, f64); 3] = [(0.012, 5.9, 0.25), (0.006, 2.9, 0.60), (0.004, 13.3, 0.85)];
const SWAY: [(f64, f64, f64); 2] = [(0.010, 11.7, 0.40), (0.005, 6.1, 0.90)];
const ZOOM: [(f64, f64, f64); 2] = [(0.012, 4.1, 0.15), (0.008, 19.3, 0.65)];

fn wave(components: &[(f64, f64, f64)], t: f64) -> f64 {
    components
        .iter()
        .map(|(a, period, phase)| a * (TAU * (t / period + phase)).sin())
        .sum()
}

/// The largest absolute value each parameter can take (sum of amplitudes).
pub fn pose_bounds() -> IdlePose {
    let bound = |c: &[(f64, f64, f64)]| c.iter().map(|(a, _, _)| a.abs()).sum();
    IdlePose {
        roll: bound(&ROLL),
        turn: bound(&TURN),
        nod: bound(&NOD),
        sway: bound(&SWAY),
        zoom: bound(&ZOOM),
    }
}

/// The pose at `t` seconds: exactly the rest pose at t = 0 (so starting idle motion does not
/// jump away from the still portrait), then eased in over the first second; smooth for all t.
pub fn pose_at(t: f64) -> IdlePose {
    let ease = (t.clamp(0.0, 1.0) * std::f64::consts::FRAC_PI_2)
        .sin()
        .powi(2);
    IdlePose {
        roll: ease * wave(&ROLL, t),
        turn: ease * wave(&TURN, t),
        nod: ease * wave(&NOD, t),
        sway: ease * wave(&SWAY, t),
        zoom: ease * wave(&ZOOM, t),
    }
}

impl IdlePose {
    /// The 2x2 linear part (rotation times scale), row-major.
    pub fn linear(&self) -> [[f64; 2]; 2] {
        let s = 1.0 + self.zoom;
        // Screen coordinates have y down: a counter-clockwise turn on screen is a clockwise one
        // in (x, y) with y down.
        let (sin, cos) = (-self.roll).sin_cos();
        [[s * cos, -s * sin], [s * sin, s * cos]]
    }

    /// Moves keypoints (x, y) about `centre` and updates their Jacobians: the driving keypoints
    /// the engines render for this pose.
    pub fn apply(
        &self,
        centre: [f64; 2],
        points: &[[f64; 2]],
        jacobians: &[[[f64; 2]; 2]],
    ) -> (Vec<[f64; 2]>, Vec<[[f64; 2]; 2]>) {
        let m = self.linear();
        let shift = [self.turn + self.sway, self.nod];
        let pts = points
            .iter()
            .map(|p| {
                let d = [p[0] - centre[0], p[1] - centre[1]];
                [
                    centre[0] + m[0][0] * d[0] + m[0][1] * d[1] + shift[0],
                    centre[1] + m[1][0] * d[0] + m[1][1] * d[1] + shift[1],
                ]
            })
            .collect();
        let jacs = jacobians
            .iter()
            .map(|j| {
                let mut out = [[0.0; 2]; 2];
                for (r, row) in out.iter_mut().enumerate() {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = m[r][0] * j[0][c] + m[r][1] * j[1][c];
                    }
                }
                out
            })
            .collect();
        (pts, jacs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten minutes at 30 fps: every parameter stays within its bound and changes by little
    /// between frames (no jumps), and the motion is not frozen.
    #[test]
    fn idle_motion_is_smooth_bounded_and_alive_for_ten_minutes() {
        let bounds = pose_bounds();
        assert!(
            bounds.roll <= 0.08
                && bounds.turn <= 0.04
                && bounds.nod <= 0.03
                && bounds.zoom <= 0.025
        );
        let fps = 30.0;
        let mut prev = pose_at(0.0);
        let mut max_step = 0f64;
        let (mut min_roll, mut max_roll) = (f64::MAX, f64::MIN);
        for i in 1..(10 * 60 * 30) {
            let p = pose_at(i as f64 / fps);
            for (v, b) in [
                (p.roll, bounds.roll),
                (p.turn, bounds.turn),
                (p.nod, bounds.nod),
                (p.sway, bounds.sway),
                (p.zoom, bounds.zoom),
            ] {
                assert!(
                    v.abs() <= b + 1e-12,
                    "pose out of bounds at frame {i}: {p:?}"
                );
            }
            let step = [
                (p.roll - prev.roll),
                (p.turn - prev.turn),
                (p.nod - prev.nod),
                (p.sway - prev.sway),
                (p.zoom - prev.zoom),
            ]
            .iter()
            .fold(0f64, |m, d| m.max(d.abs()));
            max_step = max_step.max(step);
            min_roll = min_roll.min(p.roll);
            max_roll = max_roll.max(p.roll);
            prev = p;
        }
        // 0.004 rad is 0.23 degrees per frame at most.
        assert!(max_step < 0.004, "largest frame-to-frame change {max_step}");
        assert!(max_roll - min_roll > 0.05, "the head should actually move");
    }

    #[test]
    fn rest_pose_keeps_keypoints_and_jacobians_near_identity() {
        let p = IdlePose {
            roll: 0.0,
            turn: 0.0,
            nod: 0.0,
            sway: 0.0,
            zoom: 0.0,
        };
        let (pts, jacs) = p.apply([0.1, -0.2], &[[0.3, 0.4]], &[[[1.0, 0.5], [0.0, 2.0]]]);
        assert!((pts[0][0] - 0.3).abs() < 1e-12 && (pts[0][1] - 0.4).abs() < 1e-12);
        assert_eq!(jacs[0], [[1.0, 0.5], [0.0, 2.0]]);
    }

    #[test]
    fn jacobians_follow_the_linear_part() {
        let p = IdlePose {
            roll: 0.05,
            turn: 0.0,
            nod: 0.0,
            sway: 0.0,
            zoom: 0.01,
        };
        let m = p.linear();
        let (_, jacs) = p.apply([0.0, 0.0], &[[0.0, 0.0]], &[[[1.0, 0.0], [0.0, 1.0]]]);
        assert_eq!(jacs[0], m);
        // det = scale^2
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        assert!((det - 1.01f64.powi(2)).abs() < 1e-12);
    }
}
