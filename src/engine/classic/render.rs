//! From tracked motion to the animated portrait: FOMM's relative transfer of the anchors'
//! keypoints and Jacobians onto the portrait, the blended backward flow, and the warp.

use super::*;

impl ClassicEngine {
    /// The tracked motion in the form motion files keep: per anchor its map D1 -> D_t and the
    /// backward map fitted around its position in D_t.
    pub(super) fn frame_motion(&self, reference: &Reference, fits: Option<&Fits>) -> ClassicFrame {
        let points = (
            reference.points.iter().filter(|p| p.last.is_some()).count(),
            reference.points.len(),
        );
        let Some(fits) = fits else {
            return ClassicFrame {
                anchors: None,
                points,
            };
        };
        let backward = self.fit_backward(reference, fits);
        let anchors = reference
            .anchors
            .iter()
            .zip(&fits.maps)
            .enumerate()
            .map(|(i, (anchor, fit))| {
                let position = fit.apply(*anchor);
                if !(position[0].is_finite() && position[1].is_finite()) {
                    // Such a map would be dropped from the blend.
                    return None;
                }
                let back = backward
                    .as_ref()
                    .and_then(|b| b.get(i))
                    .filter(|m| m.affine.det() > 0.0);
                if back.is_some_and(|m| !m.is_finite()) {
                    // The blend drops a non-finite map, and the anchor with it.
                    return None;
                }
                let back = back.map(|m| BackwardMap {
                    a: m.affine.a,
                    b: m.affine.b,
                    q: m.q,
                });
                let jacobian = if fit.a.iter().flatten().all(|v| v.is_finite()) {
                    fit.a
                } else {
                    [[1.0, 0.0], [0.0, 1.0]]
                };
                Some(AnchorMotion {
                    position,
                    jacobian,
                    backward: back,
                })
            })
            .collect();
        ClassicFrame {
            anchors: Some(anchors),
            points,
        }
    }

    /// The backward flow of a frame's motion moved onto the portrait (`None`: the identity), and
    /// the motion as FOMM keypoints.
    pub(super) fn blend(
        &self,
        anchors: &[[f64; 2]],
        spacing: f64,
        frame: &ClassicFrame,
    ) -> (Option<Blend>, Motion) {
        let (tracked_points, total_points) = frame.points;
        let Some(maps) = &frame.anchors else {
            let kp: Vec<[f32; 2]> = anchors.iter().map(|a| self.normalise(*a)).collect();
            let motion = Motion {
                reference: kp.clone(),
                keypoints: kp.clone(),
                jacobians: vec![[[1.0, 0.0], [0.0, 1.0]]; kp.len()],
                transferred: kp,
                tracked_points,
                total_points,
            };
            return (None, motion);
        };
        let Framing {
            reference: c1,
            portrait: cs,
            scale,
        } = self.framing;
        let mut locals = Vec::with_capacity(maps.len());
        let mut motion = Motion {
            reference: Vec::with_capacity(maps.len()),
            keypoints: Vec::with_capacity(maps.len()),
            jacobians: Vec::with_capacity(maps.len()),
            transferred: Vec::with_capacity(maps.len()),
            tracked_points,
            total_points,
        };
        for (anchor, m) in anchors.iter().zip(maps) {
            let Some(m) = m else {
                continue;
            };
            let kp_t = m.position;
            // Without a usable Jacobian the anchor moves rigidly.
            let (a, inv) = match maps::invert2(m.jacobian) {
                Some(inv) if det2(&m.jacobian) > 0.0 => (m.jacobian, inv),
                _ => ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]),
            };
            // normalize_kp: kp_new = kp_s + scale (kp_t - kp_1); kp_s is the anchor placed on the portrait.
            let kp_s = [
                cs[0] + scale * (anchor[0] - c1[0]),
                cs[1] + scale * (anchor[1] - c1[1]),
            ];
            let kp_new = [
                kp_s[0] + scale * (kp_t[0] - anchor[0]),
                kp_s[1] + scale * (kp_t[1] - anchor[1]),
            ];
            // Backward map of the output pixel z into the portrait: the fitted backward map M moved
            // onto the portrait, z -> P(M(P^-1 z)) with P(x) = cs + scale (x - c1) (its second-order
            // terms scale by 1 / scale), or FOMM's kp_s + J^-1 (z - kp_new) where there is none.
            let map = match m.backward {
                Some(BackwardMap { a: ma, b: mb, q }) if det2(&ma) > 0.0 => {
                    let t = [
                        cs[0] + scale * (ma[0][0] * c1[0] + ma[0][1] * c1[1] + mb[0] - c1[0]),
                        cs[1] + scale * (ma[1][0] * c1[0] + ma[1][1] * c1[1] + mb[1] - c1[1]),
                    ];
                    LocalMap {
                        centre: kp_new,
                        affine: Affine {
                            a: ma,
                            b: [
                                t[0] - (ma[0][0] * cs[0] + ma[0][1] * cs[1]),
                                t[1] - (ma[1][0] * cs[0] + ma[1][1] * cs[1]),
                            ],
                        },
                        q: q.map(|row| row.map(|v| v / scale)),
                    }
                }
                _ => LocalMap::affine(
                    kp_new,
                    Affine {
                        a: inv,
                        b: [
                            kp_s[0] - (inv[0][0] * kp_new[0] + inv[0][1] * kp_new[1]),
                            kp_s[1] - (inv[1][0] * kp_new[0] + inv[1][1] * kp_new[1]),
                        ],
                    },
                ),
            };
            locals.push(map);
            motion.reference.push(self.normalise(*anchor));
            motion.keypoints.push(self.normalise(kp_t));
            motion.jacobians.push(self.normalise_jacobian(a));
            motion.transferred.push(self.normalise(kp_new));
        }
        let blend = Blend::from_maps(
            locals,
            scale * spacing * self.params.blend_sigma,
            self.params.falloff,
        );
        (Some(blend), motion)
    }

    /// The portrait warped by `blend` (`None`: the portrait itself), on the portrait's device.
    pub(super) fn output(&self, blend: Option<&Blend>) -> Result<Tensor, ClassicError> {
        let source = self.portraits.current().ok_or(ClassicError::NoSource)?;
        let out = match blend {
            None => source.image.clone(),
            Some(blend) => {
                let size = (self.height, self.width);
                let mut grid = flow::sampling_grid(blend, size, size, self.params.flow_stride);
                // Border padding: where the motion samples outside the picture, the picture's edge
                // pixel is used (PyTorch's padding_mode="border": with align_corners = true, -1 and
                // 1 are the edge pixels' centres), never the zeros FOMM's grid_sample pads with,
                // which show as black bands along the edges when the face sways or zooms out.
                grid.iter_mut().for_each(|g| *g = g.clamp(-1.0, 1.0));
                let grid = Tensor::from_vec(grid, (1, self.height, self.width, 2), &Device::Cpu)?;
                grid_sample(&source.image, &grid, true)?
            }
        };
        Ok(out.to_device(&source.device)?)
    }

    /// Pixel position -> [-1, 1] (align_corners = true).
    pub(super) fn normalise(&self, p: [f64; 2]) -> [f32; 2] {
        crate::motion::normalise_point(p, (self.height, self.width))
    }

    /// A pixel-space Jacobian in normalised coordinates: D A D^-1 with D = diag(2/(W-1), 2/(H-1)).
    pub(super) fn normalise_jacobian(&self, a: [[f64; 2]; 2]) -> [[f32; 2]; 2] {
        crate::motion::normalise_jacobian(a, (self.height, self.width))
    }
}
