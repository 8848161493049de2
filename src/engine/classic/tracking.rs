//! Tracking: the reference frame's points and anchors, pyramidal Lucas-Kanade from the reference
//! frame into each driving frame, the local affine fits around the anchors, the backward maps, and
//! re-detection when too few points survive.

use super::*;

impl ClassicEngine {
    /// D1's points, templates and anchors; `None` when it has too little texture to track.
    pub(super) fn calibrate(&self, pyramid: Pyramid) -> Option<Reference> {
        let (corners, texture) = self.detect(&pyramid, &[]);
        let points: Vec<RefPoint> = corners
            .par_iter()
            .filter_map(|c| {
                let origin = [c.x, c.y];
                Template::new(&pyramid, origin, &self.track).map(|template| RefPoint {
                    origin,
                    template,
                    last: Some(origin),
                    lost: 0,
                })
            })
            .collect();
        if points.len() < self.params.min_points {
            return None;
        }
        let origins: Vec<[f64; 2]> = points
            .iter()
            .map(|p| [p.origin[0] as f64, p.origin[1] as f64])
            .collect();
        let (anchors, spacing) = affine::anchor_grid(
            &origins,
            self.params.anchor_rows,
            self.params.anchor_cols,
            4.0,
        )?;
        Some(Reference {
            initial_points: points.len(),
            points,
            pyramid,
            anchors,
            spacing,
            texture,
            forward: None,
            frames_since_redetect: 0,
        })
    }

    /// Corner detection thresholds for `img`, with the absolute floor raised above its noise.
    pub(super) fn detect_params(&self, img: &GrayImage) -> DetectParams {
        let sigma = features::noise_sigma(img);
        DetectParams {
            min_score: self
                .detect
                .min_score
                .max(CORNER_NOISE_FACTOR * sigma * sigma),
            ..self.detect
        }
    }

    pub(super) fn fit_params(&self, reference: &Reference) -> LocalFitParams {
        LocalFitParams {
            sigma: reference.spacing * self.params.fit_sigma,
            blend_sigma: reference.spacing * self.params.blend_sigma,
            ridge: self.params.ridge,
            robust_iterations: self.params.robust_iterations,
            refine_iterations: self.params.refine_iterations,
            min_residual_scale: 0.25,
        }
    }

    /// Tracks D1's points into `frame` and fits the local affine maps (one per anchor); `None` when too
    /// few points were tracked.
    pub(super) fn step(&self, reference: &mut Reference, frame: &Pyramid) -> Option<Fits> {
        // 1. Every point, from its last position (or the last motion's prediction).
        let requests: Vec<TrackRequest<'_>> = reference
            .points
            .iter()
            .map(|p| track_request(reference.forward.as_ref(), p))
            .collect();
        let results = tracker::track(&reference.pyramid, frame, &requests, &self.track);
        drop(requests);
        for (p, r) in reference.points.iter_mut().zip(&results) {
            p.last = r.map(|t| t.position);
            p.lost = if r.is_some() {
                0
            } else {
                p.lost.saturating_add(1)
            };
        }
        let mut fits = self.fit(reference);

        // 2. Retry from the motion just estimated: the lost points, or all of them when the local
        //    Jacobians moved far from the prediction the windows were pre-warped with (a sudden turn);
        //    after a sudden turn, again while the estimate keeps moving.
        let mut prior = reference.forward.clone();
        for round in 0..RETRACK_ROUNDS {
            let Some(Fits { maps: f, .. }) = &fits else {
                break;
            };
            let blend = Blend::new(
                reference
                    .anchors
                    .iter()
                    .copied()
                    .zip(f.iter().copied())
                    .collect(),
                reference.spacing * self.params.blend_sigma,
                0.0,
            );
            let jumped = reference.anchors.iter().zip(f).any(|(anchor, fit)| {
                let predicted = prior
                    .as_ref()
                    .map_or([[1.0, 0.0], [0.0, 1.0]], |b| b.linear_part(*anchor));
                let d2: f64 = predicted
                    .iter()
                    .flatten()
                    .zip(fit.a.iter().flatten())
                    .map(|(p, q)| (p - q).powi(2))
                    .sum();
                d2 > RETRACK_JACOBIAN_CHANGE * RETRACK_JACOBIAN_CHANGE
            });
            if round > 0 && !jumped {
                break;
            }
            let retry: Vec<usize> = (0..reference.points.len())
                .filter(|&i| {
                    reference
                        .points
                        .get(i)
                        .is_some_and(|p| jumped || p.last.is_none())
                })
                .collect();
            if retry.is_empty() {
                break;
            }
            let requests: Vec<TrackRequest<'_>> = retry
                .iter()
                .filter_map(|&i| reference.points.get(i))
                .map(|p| track_request(Some(&blend), p))
                .collect();
            let results = tracker::track(&reference.pyramid, frame, &requests, &self.track);
            drop(requests);
            let mut found = 0;
            for (&i, r) in retry.iter().zip(&results) {
                // A point tracked before keeps that result if the retry fails.
                if let (Some(p), Some(t)) = (reference.points.get_mut(i), r) {
                    p.last = Some(t.position);
                    p.lost = 0;
                    found += 1;
                }
            }
            if found > 0 {
                fits = self.fit(reference).or(fits);
            }
            prior = Some(blend);
        }

        // 3. Too few left: detect new corners on this frame and map them back into D1.
        let tracked = reference.points.iter().filter(|p| p.last.is_some()).count();
        reference.frames_since_redetect = reference.frames_since_redetect.saturating_add(1);
        if (tracked as f32) < self.params.redetect_below * reference.initial_points as f32
            && reference.frames_since_redetect >= REDETECT_COOLDOWN
            && let Some(f) = &fits
        {
            reference.frames_since_redetect = 0;
            if self.redetect(reference, frame, &f.maps) > 0 {
                fits = self.fit(reference).or(fits);
            }
        }

        reference.forward = fits.as_ref().map(|f| {
            Blend::new(
                reference
                    .anchors
                    .iter()
                    .copied()
                    .zip(f.maps.iter().copied())
                    .collect(),
                reference.spacing * self.params.blend_sigma,
                0.0,
            )
        });
        fits
    }

    /// The local affine fits over the points tracked in this frame.
    pub(super) fn fit(&self, reference: &Reference) -> Option<Fits> {
        let (src, dst) = Self::correspondences(reference);
        if src.len() < self.params.min_points {
            return None;
        }
        affine::fit_local_affines(&src, &dst, &reference.anchors, &self.fit_params(reference))
            .map(|(maps, robust)| Fits { maps, robust })
    }

    /// The tracked points' positions in D1 and in this frame, in the order of [`Fits::robust`].
    pub(super) fn correspondences(reference: &Reference) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
        reference
            .points
            .iter()
            .filter_map(|p| {
                let q = p.last?;
                Some((
                    [p.origin[0] as f64, p.origin[1] as f64],
                    [q[0] as f64, q[1] as f64],
                ))
            })
            .unzip()
    }

    /// The backward maps D_t -> D1 around the anchors' positions in D_t, fitted to the same tracked
    /// points with the forward fit's robustness weights (see [`affine::fit_local_quadratics`]).
    /// Fitting the motion the flow needs directly, rather than inverting the forward maps, makes the
    /// rendered flow agree with the tracked points, and the second-order terms follow motion that curves
    /// between anchors (a head turning in front of a still background). `None` when the fit fails.
    pub(super) fn fit_backward(&self, reference: &Reference, fits: &Fits) -> Option<Vec<LocalMap>> {
        let (src, dst) = Self::correspondences(reference);
        if src.len() != fits.robust.len() {
            return None;
        }
        let centres: Vec<[f64; 2]> = reference
            .anchors
            .iter()
            .zip(&fits.maps)
            .map(|(a, f)| f.apply(*a))
            .collect();
        // The outliers were found by the forward fit: no robust rounds of its own.
        let params = LocalFitParams {
            robust_iterations: 0,
            ..self.fit_params(reference)
        };
        affine::fit_local_quadratics(
            &dst,
            &src,
            &centres,
            &params,
            self.params.quadratic_ridge,
            Some(&fits.robust),
        )
        .map(|(maps, _)| maps)
    }

    /// Detects corners on `frame` away from the tracked points, maps them into D1 through the inverse of
    /// the current motion, and adds those that track back and forth. Returns how many were added.
    pub(super) fn redetect(
        &self,
        reference: &mut Reference,
        frame: &Pyramid,
        fits: &[Affine],
    ) -> usize {
        let tracked: Vec<[f32; 2]> = reference.points.iter().filter_map(|p| p.last).collect();
        let room = self.params.max_points.saturating_sub(tracked.len());
        if room == 0 {
            return 0;
        }
        let (corners, _) = self.detect(frame, &tracked);
        // Inverse motion D_t -> D1: each local map inverted, centred on the anchor's position in D_t.
        let inverse = Blend::new(
            reference
                .anchors
                .iter()
                .zip(fits)
                .filter_map(|(a, f)| Some((f.apply(*a), f.inverse()?)))
                .collect(),
            reference.spacing * self.params.blend_sigma,
            0.0,
        );
        let (w, h) = (self.width as f32, self.height as f32);
        let candidates: Vec<([f32; 2], [f32; 2], Template)> = corners
            .par_iter()
            .take(room)
            .filter_map(|c| {
                let o = inverse.apply([c.x as f64, c.y as f64]);
                let origin = [o[0] as f32, o[1] as f32];
                if !(origin[0] >= 0.0
                    && origin[0] <= w - 1.0
                    && origin[1] >= 0.0
                    && origin[1] <= h - 1.0)
                {
                    return None;
                }
                let t = Template::new(&reference.pyramid, origin, &self.track)?;
                Some((origin, [c.x, c.y], t))
            })
            .collect();
        let forward = Blend::new(
            reference
                .anchors
                .iter()
                .copied()
                .zip(fits.iter().copied())
                .collect(),
            reference.spacing * self.params.blend_sigma,
            0.0,
        );
        let requests: Vec<TrackRequest<'_>> = candidates
            .iter()
            .map(|(origin, at, template)| {
                let a = forward.linear_part([origin[0] as f64, origin[1] as f64]);
                TrackRequest {
                    template,
                    origin: *origin,
                    guess: *at,
                    jacobian: a.map(|row| row.map(|v| v as f32)),
                }
            })
            .collect();
        let results = tracker::track(&reference.pyramid, frame, &requests, &self.track);
        drop(requests);
        let new: Vec<RefPoint> = candidates
            .into_iter()
            .zip(results)
            .filter_map(|((origin, _, template), r)| {
                r.map(|t| RefPoint {
                    origin,
                    template,
                    last: Some(t.position),
                    lost: 0,
                })
            })
            .collect();
        let added = new.len();
        // Make room by dropping the points lost the longest.
        let excess = (reference.points.len() + added).saturating_sub(self.params.max_points);
        if excess > 0 {
            let mut order: Vec<usize> = (0..reference.points.len()).collect();
            order
                .sort_by_key(|&i| std::cmp::Reverse(reference.points.get(i).map_or(0, |p| p.lost)));
            let mut drop_flags = vec![false; reference.points.len()];
            for &i in order.iter().take(excess) {
                if reference.points.get(i).is_some_and(|p| p.lost > 0)
                    && let Some(f) = drop_flags.get_mut(i)
                {
                    *f = true;
                }
            }
            let mut flags = drop_flags.into_iter();
            reference.points.retain(|_| !flags.next().unwrap_or(false));
        }
        reference.points.extend(new);
        added
    }
}
