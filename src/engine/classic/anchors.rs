//! The anchors' motion in the reference frame's view of the camera, and its smoothing: the
//! One Euro filter runs on each anchor's keypoint, Jacobian and backward map, measured in pixels of
//! the reference view so that a moving crop does not move the portrait.

use super::*;

impl ClassicEngine {
    /// The reference anchors and their spacing (live or recorded reference).
    pub(super) fn reference_anchors(&self) -> Option<(Vec<[f64; 2]>, f64)> {
        match (&self.reference, &self.replay) {
            (Some(r), _) => Some((r.anchors.clone(), r.spacing)),
            (None, Some(r)) => Some((r.anchors.clone(), r.spacing)),
            (None, None) => None,
        }
    }

    /// A new smoothing filter for the reference's anchors, at rest on the identity motion at `t`.
    pub(super) fn restart_filter(&mut self, anchors: &[[f64; 2]], spacing: f64, t: f64) {
        // A Jacobian change dJ moves the picture one anchor spacing away by spacing * dJ pixels:
        // its weight in the filter's speed, in normalised units.
        let reach = spacing * 2.0 / (self.width.max(self.height) - 1).max(1) as f64;
        let mut weights = vec![0.0; ANCHOR_VALUES];
        weights[0] = 1.0;
        weights[1] = 1.0;
        weights[2..6].iter_mut().for_each(|w| *w = reach);
        self.filter = MotionFilter::new(self.smoothing, ANCHOR_JITTER, weights);
        let mut rows = Vec::with_capacity(anchors.len() * ANCHOR_VALUES);
        for &a in anchors {
            rows.extend(self.anchor_rows(a, &Self::identity_anchor(a)));
        }
        self.filter.seed(t, &rows);
    }

    /// The motion of an anchor that did not move.
    pub(super) fn identity_anchor(anchor: [f64; 2]) -> AnchorMotion {
        AnchorMotion {
            position: anchor,
            jacobian: [[1.0, 0.0], [0.0, 1.0]],
            backward: Some(BackwardMap {
                a: [[1.0, 0.0], [0.0, 1.0]],
                b: [0.0, 0.0],
                q: [[0.0; 3]; 2],
            }),
        }
    }

    /// `frame`'s motion smoothed over time (the One Euro filter on every anchor's values, at
    /// time `t`). A frame without motion (the reference frame, or the motion lost) restarts the
    /// filter at rest on the identity it shows. Smoothed, every anchor has a backward map (where
    /// none was fitted, FOMM's `kp_1 + J^-1 (z - kp_t)`, which the blend would use anyway); an
    /// anchor lost in this frame stays lost, and the filter holds its last value.
    pub(super) fn smooth(&mut self, frame: ClassicFrame, t: f64) -> ClassicFrame {
        let Some((anchors, spacing)) = self.reference_anchors() else {
            return frame;
        };
        let Some(maps) = &frame.anchors else {
            self.restart_filter(&anchors, spacing, t);
            return frame;
        };
        if !self.filter.is_on() || maps.len() != anchors.len() {
            return frame;
        }
        let previous = self.filter.last().map(<[f64]>::to_vec);
        let mut rows = Vec::with_capacity(anchors.len() * ANCHOR_VALUES);
        for (i, (&anchor, m)) in anchors.iter().zip(maps).enumerate() {
            let held = previous
                .as_ref()
                .and_then(|p| p.get(i * ANCHOR_VALUES..(i + 1) * ANCHOR_VALUES));
            match (m, held) {
                (Some(m), _) => rows.extend(self.anchor_rows(anchor, m)),
                (None, Some(held)) => rows.extend_from_slice(held),
                (None, None) => {
                    rows.extend(self.anchor_rows(anchor, &Self::identity_anchor(anchor)))
                }
            }
        }
        self.filter.filter(t, &mut rows);
        let anchors = maps
            .iter()
            .zip(rows.chunks_exact(ANCHOR_VALUES))
            .map(|(m, r)| m.as_ref().map(|_| self.anchor_from_row(r)))
            .collect();
        ClassicFrame {
            anchors: Some(anchors),
            points: frame.points,
        }
    }

    /// Pixels -> normalised units (align_corners = true), in f64.
    pub(super) fn to_unit(&self, p: [f64; 2]) -> [f64; 2] {
        [
            2.0 * p[0] / (self.width - 1) as f64 - 1.0,
            2.0 * p[1] / (self.height - 1) as f64 - 1.0,
        ]
    }

    /// Normalised units -> pixels.
    pub(super) fn to_pixels(&self, u: [f64; 2]) -> [f64; 2] {
        [
            (u[0] + 1.0) * (self.width - 1) as f64 / 2.0,
            (u[1] + 1.0) * (self.height - 1) as f64 / 2.0,
        ]
    }

    /// An anchor's motion as the smoothing filter's row ([`ANCHOR_VALUES`] values; positions in
    /// normalised units). Without a fitted backward map, FOMM's `kp_1 + J^-1 (z - kp_t)`.
    pub(super) fn anchor_rows(&self, anchor: [f64; 2], m: &AnchorMotion) -> [f64; ANCHOR_VALUES] {
        let p = m.position;
        let (a, value, q) = match m.backward {
            Some(b) => (
                b.a,
                [
                    b.a[0][0] * p[0] + b.a[0][1] * p[1] + b.b[0],
                    b.a[1][0] * p[0] + b.a[1][1] * p[1] + b.b[1],
                ],
                b.q,
            ),
            None => {
                let inv = match maps::invert2(m.jacobian) {
                    Some(inv) if det2(&m.jacobian) > 0.0 => inv,
                    _ => [[1.0, 0.0], [0.0, 1.0]],
                };
                (inv, anchor, [[0.0; 3]; 2])
            }
        };
        let kp = self.to_unit(p);
        let value = self.to_unit(value);
        let j = m.jacobian;
        [
            kp[0], kp[1], j[0][0], j[0][1], j[1][0], j[1][1], value[0], value[1], a[0][0], a[0][1],
            a[1][0], a[1][1], q[0][0], q[0][1], q[0][2], q[1][0], q[1][1], q[1][2],
        ]
    }

    /// [`ClassicEngine::anchor_rows`] back into a motion.
    pub(super) fn anchor_from_row(&self, r: &[f64]) -> AnchorMotion {
        let position = self.to_pixels([r[0], r[1]]);
        let value = self.to_pixels([r[6], r[7]]);
        let a = [[r[8], r[9]], [r[10], r[11]]];
        AnchorMotion {
            position,
            jacobian: [[r[2], r[3]], [r[4], r[5]]],
            backward: Some(BackwardMap {
                a,
                b: [
                    value[0] - (a[0][0] * position[0] + a[0][1] * position[1]),
                    value[1] - (a[1][0] * position[0] + a[1][1] * position[1]),
                ],
                q: [[r[12], r[13], r[14]], [r[15], r[16], r[17]]],
            }),
        }
    }

    /// A frame's motion seen through `view` moved into the reference frame's view: with `T` the
    /// map from this frame's pixels into the reference frame's (`T(p) = k p + c` per axis), the
    /// forward maps become `T o F` and the backward maps `M o T^-1`.
    pub(super) fn to_reference_view(&self, frame: &mut ClassicFrame, view: &FrameView) {
        if view.same_as(&self.reference_view) {
            return;
        }
        let Some((k, d)) = view.into_view(&self.reference_view) else {
            return;
        };
        let Some(anchors) = frame.anchors.as_mut() else {
            return;
        };
        // u = 2 p / (n - 1) - 1 per axis, so T(p) = k p + (n - 1) / 2 (1 - k + d).
        let n = [(self.width - 1) as f64, (self.height - 1) as f64];
        let c = [
            n[0] / 2.0 * (1.0 - k[0] + d[0]),
            n[1] / 2.0 * (1.0 - k[1] + d[1]),
        ];
        let t = |p: [f64; 2]| [k[0] * p[0] + c[0], k[1] * p[1] + c[1]];
        for m in anchors.iter_mut().flatten() {
            let old = m.position;
            m.position = t(old);
            for (r, row) in m.jacobian.iter_mut().enumerate() {
                row.iter_mut().for_each(|v| *v *= k[r]);
            }
            if let Some(b) = m.backward.as_mut() {
                // M(z) = a z + b + q m(z - position): its value at the position stays, z scales.
                let value = [
                    b.a[0][0] * old[0] + b.a[0][1] * old[1] + b.b[0],
                    b.a[1][0] * old[0] + b.a[1][1] * old[1] + b.b[1],
                ];
                for row in b.a.iter_mut() {
                    row[0] /= k[0];
                    row[1] /= k[1];
                }
                for row in b.q.iter_mut() {
                    row[0] /= k[0] * k[0];
                    row[1] /= k[0] * k[1];
                    row[2] /= k[1] * k[1];
                }
                let (a, p) = (b.a, m.position);
                b.b = [
                    value[0] - (a[0][0] * p[0] + a[0][1] * p[1]),
                    value[1] - (a[1][0] * p[0] + a[1][1] * p[1]),
                ];
            }
        }
    }
}
