//! Idle motion: the portrait moved by the idle pose ([`crate::idle`]) with no driving frame.

use super::*;

impl ClassicEngine {
    /// The portrait in the idle-motion pose at `t` seconds ([`crate::idle`]), with no driving
    /// frame: a grid of anchors over the portrait's textured region (the face, for a portrait) moves as
    /// FOMM keypoints with Jacobians would (each anchor moved by the pose about the region's centre, its
    /// Jacobian the pose's linear part), and the blended flow fades to the identity beyond it, so the head
    /// moves in front of a still background.
    pub fn animate_idle(&mut self, t: f64) -> Result<Tensor, ClassicError> {
        let source = self.portraits.current().ok_or(ClassicError::NoSource)?;
        let (w, h) = (self.width as f64, self.height as f64);
        let side = w.min(h);
        // The head region: the portrait's texture cloud (centroid, spread), its half-extent two spreads,
        // kept between 20% and 30% of the frame; the frame's central 60% when the portrait is blank.
        let (centre, half) = self
            .texture_of(source)
            .and_then(|t| t.cloud(t.floor))
            .map(|c| (c.centroid, (2.0 * c.size).clamp(0.2 * side, 0.3 * side)))
            .unwrap_or(([(w - 1.0) / 2.0, (h - 1.0) / 2.0], 0.3 * side));
        const GRID: usize = IDLE_ANCHOR_GRID;
        let spacing = 2.0 * half / (GRID - 1) as f64;
        let anchors: Vec<[f64; 2]> = (0..GRID * GRID)
            .map(|i| {
                [
                    centre[0] - half + (i % GRID) as f64 * spacing,
                    centre[1] - half + (i / GRID) as f64 * spacing,
                ]
            })
            .collect();
        // The pose is defined in FOMM's normalised coordinates ([-1, 1] across the frame).
        let to_norm = |p: &[f64; 2]| [2.0 * p[0] / (w - 1.0) - 1.0, 2.0 * p[1] / (h - 1.0) - 1.0];
        let to_px = |p: &[f64; 2]| {
            [
                (p[0] + 1.0) * (w - 1.0) / 2.0,
                (p[1] + 1.0) * (h - 1.0) / 2.0,
            ]
        };
        let norm: Vec<[f64; 2]> = anchors.iter().map(to_norm).collect();
        let identity = vec![[[1.0, 0.0], [0.0, 1.0]]; norm.len()];
        let pose = crate::idle::pose_at(t);
        let (moved, jacobians) = pose.apply(to_norm(&centre), &norm, &identity);
        // A normalised Jacobian in pixels: D^-1 A D with D = diag(2/(W-1), 2/(H-1)).
        let ratio = (h - 1.0) / (w - 1.0);
        let mut locals = Vec::with_capacity(anchors.len());
        let mut motion = Motion {
            reference: Vec::with_capacity(anchors.len()),
            keypoints: Vec::with_capacity(anchors.len()),
            jacobians: Vec::with_capacity(anchors.len()),
            transferred: Vec::with_capacity(anchors.len()),
            tracked_points: 0,
            total_points: 0,
        };
        for ((kp_s, m), j) in anchors.iter().zip(&moved).zip(&jacobians) {
            let kp_new = to_px(m);
            let a = [[j[0][0], j[0][1] / ratio], [j[1][0] * ratio, j[1][1]]];
            let Some(inv) = maps::invert2(a) else {
                continue;
            };
            let map = Affine {
                a: inv,
                b: [
                    kp_s[0] - (inv[0][0] * kp_new[0] + inv[0][1] * kp_new[1]),
                    kp_s[1] - (inv[1][0] * kp_new[0] + inv[1][1] * kp_new[1]),
                ],
            };
            locals.push((kp_new, map));
            motion.reference.push(self.normalise(*kp_s));
            motion.keypoints.push(self.normalise(kp_new));
            motion.jacobians.push(self.normalise_jacobian(a));
            motion.transferred.push(self.normalise(kp_new));
        }
        let blend = Blend::new(
            locals,
            spacing * self.params.blend_sigma,
            self.params.falloff,
        );
        self.motion = Some(motion);
        self.last_frame = None;
        self.output(Some(&blend))
    }
}
