//! The neural engine: FOMM with the portrait cached and relative motion transfer as state.

use candle_core::Tensor;

use super::smoothing::{FrameClock, MotionFilter, Smoothing};
use super::{
    Animator, EngineError, EngineId, FrameInfo, FrameView, KeypointView, PortraitCache,
    motion_mismatch,
};
use crate::motion::{FrameMotion, KeypointSet, MotionEngine, MotionSource, ReferenceMotion};
use fomm::keypoint_detector::Keypoints;
use fomm::model::{Fomm, PreparedSource};
use fomm::motion_transfer::{MotionTransfer, TransferOptions};

/// FOMM as an [`Animator`].
pub struct FommAnimator {
    model: Fomm,
    portraits: PortraitCache<PreparedSource>,
    transfer: MotionTransfer,
    /// The last frame's driving and rendered keypoints (tensors: read only when asked for).
    last: Option<(Keypoints, Keypoints)>,
    /// Smoothing of the driving keypoints and Jacobians, before the motion transfer.
    filter: MotionFilter,
    clock: FrameClock,
    /// Where the reference frame lay in the camera's picture: driving keypoints are moved into
    /// its coordinates, so a crop change does not move the portrait.
    reference_view: FrameView,
    /// The last driving frame's keypoints as measured, in the reference frame's view and before
    /// smoothing: what a motion file records.
    measured: Option<Keypoints>,
    /// The checkpoint's file name, for motion files.
    checkpoint: Option<String>,
}

/// How much FOMM's driving keypoints move from frame to frame on a still face with sensor noise
/// (Gaussian, sigma 2.5 levels, 1 % exposure flicker), normalised units: 0.0145 measured on the
/// tiny fixture (`tests/steady.rs` prints it). It sets the smoothing's `beta`
/// ([`crate::engine::smoothing::BETA_TIMES_JITTER`]).
pub const KEYPOINT_JITTER: f64 = 0.0145;

/// How far a keypoint's Jacobian moves the picture, normalised units: the filter's speed counts
/// a Jacobian change times this. A keypoint's region in FOMM spans about a fifth of the frame
/// (its heatmap's spread), so 0.2.
const JACOBIAN_REACH: f64 = 0.2;

impl FommAnimator {
    /// The engine around a loaded model, with the given motion transfer.
    pub fn new(model: Fomm, options: TransferOptions) -> Self {
        Self {
            model,
            portraits: PortraitCache::default(),
            transfer: MotionTransfer::new(options),
            last: None,
            // Off until asked for ([`Animator::set_smoothing`]): offline results stay the
            // original's.
            filter: MotionFilter::new(
                Smoothing::OFF,
                KEYPOINT_JITTER,
                vec![
                    1.0,
                    1.0,
                    JACOBIAN_REACH,
                    JACOBIAN_REACH,
                    JACOBIAN_REACH,
                    JACOBIAN_REACH,
                ],
            ),
            clock: FrameClock::default(),
            reference_view: FrameView::IDENTITY,
            measured: None,
            checkpoint: None,
        }
    }

    /// Names the checkpoint the weights came from (recorded in motion files: keypoints are the
    /// detector's own and mean nothing to another checkpoint's generator).
    pub fn with_checkpoint_name(mut self, name: impl Into<String>) -> Self {
        self.checkpoint = Some(name.into());
        self
    }

    /// Recorded keypoints as tensors on the model's device, after checking they fit the model.
    fn recorded_keypoints(&self, kp: &KeypointSet) -> Result<Keypoints, EngineError> {
        let common = &self.model.config.model.common_params;
        let why = if kp.points.len() != common.num_kp {
            Some(format!(
                "it has {} keypoints and this model ({}) has {}; use the checkpoint and config it \
                 was captured with",
                kp.points.len(),
                self.model.config.name,
                common.num_kp
            ))
        } else if kp.jacobians.is_some() != common.estimate_jacobian {
            Some(format!(
                "it {} Jacobians and this model ({}) {}; use the checkpoint and config it was \
                 captured with",
                if kp.jacobians.is_some() {
                    "has"
                } else {
                    "has no"
                },
                self.model.config.name,
                if common.estimate_jacobian {
                    "needs them"
                } else {
                    "has none"
                }
            ))
        } else {
            None
        };
        match why {
            Some(why) => Err(EngineError::MotionMismatch {
                motion: MotionEngine::Fomm,
                engine: "fomm",
                why,
            }),
            None => Ok(kp.to_keypoints(self.model.device())?),
        }
    }

    /// The model.
    pub fn model(&self) -> &Fomm {
        &self.model
    }

    /// The portrait in use, prepared.
    pub fn source(&self) -> Option<&PreparedSource> {
        self.portraits.current()
    }

    /// Renders the portrait in the idle-motion pose at `t` seconds (no driving frame needed):
    /// the source keypoints moved by the pose, rendered as absolute driving keypoints.
    pub fn render_idle(&mut self, t: f64) -> Result<Tensor, EngineError> {
        let source = self.portraits.current().ok_or(EngineError::NoSource)?;
        let kp = idle_keypoints(&source.keypoints, &crate::idle::pose_at(t))?;
        Ok(self.model.render(source, &kp, false)?.prediction)
    }

    /// The keypoints to render `driving` with: detected, moved into the reference frame's view
    /// (relative motion) and smoothed; with them, the keypoints as measured (moved but not
    /// smoothed) where they differ. The first frame after a recalibration sets the reference
    /// frame's view.
    fn prepare_keypoints(
        &mut self,
        driving: &Tensor,
        info: &FrameInfo,
    ) -> Result<(Keypoints, Option<Keypoints>), EngineError> {
        let t = self.clock.tick(info.time);
        let kp = self.model.detect(driving)?;
        if !self.transfer.is_calibrated() {
            self.reference_view = info.view;
            self.filter.reset();
        }
        let relative = self.transfer.options.relative;
        let moved = relative && !info.view.same_as(&self.reference_view);
        if !moved && !self.filter.is_on() {
            return Ok((kp, None));
        }
        let mut rows = keypoint_rows(&kp)?;
        let measured = if moved {
            into_reference(&mut rows, &info.view, &self.reference_view);
            keypoints_from_rows(&rows, &kp)?
        } else {
            kp
        };
        self.filter.filter(t, &mut rows);
        let smoothed = keypoints_from_rows(&rows, &measured)?;
        Ok((smoothed, Some(measured)))
    }

    /// Renders from driving keypoints already detected (relative to the current reference),
    /// without smoothing them.
    pub fn animate_keypoints(&mut self, kp_driving: &Keypoints) -> Result<Tensor, EngineError> {
        let source = self.portraits.current().ok_or(EngineError::NoSource)?;
        let kp = self.transfer.transfer(&source.keypoints, kp_driving)?;
        let prediction = self.model.render(source, &kp, false)?.prediction;
        self.measured = Some(kp_driving.clone());
        self.last = Some((kp_driving.clone(), kp));
        Ok(prediction)
    }
}

/// Keypoints (batch element 0) as rows of (x, y, J00, J01, J10, J11) (the identity where there
/// is no Jacobian).
fn keypoint_rows(kp: &Keypoints) -> Result<Vec<f64>, EngineError> {
    use candle_core::DType;
    let pts = kp.value.get(0)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let jacs = match &kp.jacobian {
        Some(j) => Some(
            j.get(0)?
                .to_dtype(DType::F64)?
                .flatten_from(1)?
                .to_vec2::<f64>()?,
        ),
        None => None,
    };
    let mut rows = Vec::with_capacity(pts.len() * 6);
    for (i, p) in pts.iter().enumerate() {
        rows.push(p.first().copied().unwrap_or(0.0));
        rows.push(p.get(1).copied().unwrap_or(0.0));
        match jacs.as_ref().and_then(|j| j.get(i)) {
            Some(m) => rows.extend((0..4).map(|c| m.get(c).copied().unwrap_or(0.0))),
            None => rows.extend([1.0, 0.0, 0.0, 1.0]),
        }
    }
    Ok(rows)
}

/// [`keypoint_rows`] back into keypoints shaped, typed and placed like `like`.
fn keypoints_from_rows(rows: &[f64], like: &Keypoints) -> Result<Keypoints, EngineError> {
    let k = rows.len() / 6;
    let device = like.value.device();
    let value: Vec<f64> = rows.chunks_exact(6).flat_map(|r| [r[0], r[1]]).collect();
    let value = Tensor::from_vec(value, (1, k, 2), device)?.to_dtype(like.value.dtype())?;
    let jacobian = match &like.jacobian {
        Some(j) => {
            let m: Vec<f64> = rows
                .chunks_exact(6)
                .flat_map(|r| [r[2], r[3], r[4], r[5]])
                .collect();
            Some(Tensor::from_vec(m, (1, k, 2, 2), device)?.to_dtype(j.dtype())?)
        }
        None => None,
    };
    Ok(Keypoints { value, jacobian })
}

/// Rows of (x, y, J) seen through `view` moved into `reference`'s coordinates: `u' = k u + d`,
/// `J' = diag(k) J` (the driving frame's coordinates scale, the canonical frame's do not).
fn into_reference(rows: &mut [f64], view: &FrameView, reference: &FrameView) {
    let Some((k, d)) = view.into_view(reference) else {
        return;
    };
    for r in rows.chunks_exact_mut(6) {
        r[0] = k[0] * r[0] + d[0];
        r[1] = k[1] * r[1] + d[1];
        r[2] *= k[0];
        r[3] *= k[0];
        r[4] *= k[1];
        r[5] *= k[1];
    }
}

/// Keypoints (batch element 0) moved by an idle pose about their centre.
pub fn idle_keypoints(
    kp: &Keypoints,
    pose: &crate::idle::IdlePose,
) -> Result<Keypoints, EngineError> {
    use candle_core::DType;
    let device = kp.value.device();
    let (_, k, _) = kp.value.dims3()?;
    let pts: Vec<[f64; 2]> = kp
        .value
        .get(0)?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?
        .iter()
        .map(|p| [p[0], p[1]])
        .collect();
    let jacs: Vec<[[f64; 2]; 2]> = match &kp.jacobian {
        Some(j) => j
            .get(0)?
            .to_dtype(DType::F64)?
            .flatten_from(1)?
            .to_vec2::<f64>()?
            .iter()
            .map(|m| [[m[0], m[1]], [m[2], m[3]]])
            .collect(),
        None => vec![[[1.0, 0.0], [0.0, 1.0]]; k],
    };
    let n = pts.len().max(1) as f64;
    let centre = pts
        .iter()
        .fold([0.0, 0.0], |c, p| [c[0] + p[0] / n, c[1] + p[1] / n]);
    let (moved, moved_j) = pose.apply(centre, &pts, &jacs);
    let value = Tensor::from_vec(
        moved
            .iter()
            .flat_map(|p| [p[0] as f32, p[1] as f32])
            .collect::<Vec<_>>(),
        (1, k, 2),
        device,
    )?;
    let jacobian = match &kp.jacobian {
        Some(_) => Some(Tensor::from_vec(
            moved_j
                .iter()
                .flat_map(|m| {
                    [
                        m[0][0] as f32,
                        m[0][1] as f32,
                        m[1][0] as f32,
                        m[1][1] as f32,
                    ]
                })
                .collect::<Vec<_>>(),
            (1, k, 2, 2),
            device,
        )?),
        None => None,
    };
    Ok(Keypoints { value, jacobian })
}

impl Animator for FommAnimator {
    fn name(&self) -> &'static str {
        "fomm"
    }

    fn id(&self) -> EngineId {
        EngineId::Fomm
    }

    fn frame_size(&self) -> (usize, usize) {
        self.model.config.frame_size
    }

    fn select_portrait(&mut self, id: u64, source: &Tensor) -> Result<(), EngineError> {
        let model = &self.model;
        self.portraits.select(id, || model.prepare_source(source))?;
        Ok(())
    }

    fn recalibrate(&mut self) {
        self.transfer.recalibrate();
        self.filter.reset();
    }

    fn is_calibrated(&self) -> bool {
        self.transfer.is_calibrated()
    }

    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        self.animate_with(driving, &FrameInfo::default())
    }

    /// Detects the driving keypoints, moves them into the reference frame's view (relative
    /// motion), smooths them, then transfers them: the smoothing acts on the driving motion
    /// before the relative transfer, as the paper's keypoints and Jacobians.
    fn animate_with(&mut self, driving: &Tensor, info: &FrameInfo) -> Result<Tensor, EngineError> {
        let (kp, measured) = self.prepare_keypoints(driving, info)?;
        let frame = self.animate_keypoints(&kp)?;
        if let Some(m) = measured {
            self.measured = Some(m);
        }
        Ok(frame)
    }

    fn driving_keypoints(
        &mut self,
        driving: &Tensor,
        info: &FrameInfo,
    ) -> Result<Option<(KeypointSet, bool)>, EngineError> {
        let calibrating = !self.transfer.is_calibrated();
        let (kp, measured) = self.prepare_keypoints(driving, info)?;
        if calibrating {
            self.transfer.set_reference(kp.clone());
        }
        let set = KeypointSet::from_keypoints(&kp)?;
        self.measured = Some(measured.unwrap_or(kp));
        Ok(Some((set, calibrating)))
    }

    fn set_smoothing(&mut self, smoothing: Smoothing) {
        self.filter.set_smoothing(smoothing);
    }

    fn animate_idle(&mut self, t: f64) -> Result<Tensor, EngineError> {
        self.render_idle(t)
    }

    fn calibrate_on(&mut self, driving: &Tensor) -> Result<(), EngineError> {
        let kp = self.model.detect(driving)?;
        self.transfer.set_reference(kp);
        self.reference_view = FrameView::IDENTITY;
        self.filter.reset();
        Ok(())
    }

    fn detect(&self, driving: &Tensor) -> Result<Option<Keypoints>, EngineError> {
        Ok(Some(self.model.detect(driving)?))
    }

    fn supports_absolute(&self) -> bool {
        true
    }

    fn portrait_keypoints(&self) -> Option<&Keypoints> {
        self.portraits.current().map(|s| &s.keypoints)
    }

    fn set_transfer(&mut self, relative: bool, adapt_scale: bool) -> Result<(), EngineError> {
        self.transfer.options.relative = relative;
        self.transfer.options.adapt_scale = adapt_scale;
        Ok(())
    }

    fn motion_source(&self) -> Option<MotionSource> {
        let config = &self.model.config;
        let common = &config.model.common_params;
        // A config given as a file is named by its file name.
        let name = std::path::Path::new(&config.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| config.name.clone());
        Some(MotionSource {
            engine: MotionEngine::Fomm,
            config: Some(name),
            checkpoint: self.checkpoint.clone(),
            frame_size: config.frame_size,
            keypoints: common.num_kp,
            jacobians: common.estimate_jacobian,
        })
    }

    fn capture(&mut self, driving: &Tensor) -> Result<Option<FrameMotion>, EngineError> {
        let kp = self.model.detect(driving)?;
        if !self.transfer.is_calibrated() {
            self.transfer.set_reference(kp.clone());
        }
        Ok(Some(FrameMotion::Fomm(KeypointSet::from_keypoints(&kp)?)))
    }

    /// The last driving frame's keypoints as measured: moved into the reference frame's view
    /// (a crop change is geometry, not motion) but before smoothing, so that a recording keeps
    /// the motion itself and a replay can smooth it or not.
    fn last_motion(&self) -> Option<FrameMotion> {
        let driving = self.measured.as_ref()?;
        KeypointSet::from_keypoints(driving)
            .ok()
            .map(FrameMotion::Fomm)
    }

    fn reference_motion(&self) -> Option<ReferenceMotion> {
        KeypointSet::from_keypoints(self.transfer.reference()?)
            .ok()
            .map(ReferenceMotion::Fomm)
    }

    fn fresh(&self) -> Option<Box<dyn Animator + Send>> {
        let mut e = Self::new(self.model.clone(), self.transfer.options);
        e.checkpoint = self.checkpoint.clone();
        Some(Box::new(e))
    }

    fn set_reference_motion(&mut self, reference: &ReferenceMotion) -> Result<(), EngineError> {
        match reference {
            ReferenceMotion::Fomm(kp) => {
                let kp = self.recorded_keypoints(kp)?;
                self.transfer.set_reference(kp);
                self.reference_view = FrameView::IDENTITY;
                self.filter.reset();
                Ok(())
            }
            other => Err(motion_mismatch(other.engine(), self.name())),
        }
    }

    fn animate_motion(&mut self, motion: &FrameMotion) -> Result<Tensor, EngineError> {
        match motion {
            FrameMotion::Fomm(kp) => {
                let kp = self.recorded_keypoints(kp)?;
                self.animate_keypoints(&kp)
            }
            other => Err(motion_mismatch(other.engine(), self.name())),
        }
    }

    fn keypoint_view(&self) -> Option<KeypointView> {
        let (driving, portrait) = self.last.as_ref()?;
        let points = |kp: &Keypoints| -> Option<Vec<[f32; 2]>> {
            let v = kp
                .value
                .get(0)
                .ok()?
                .to_dtype(candle_core::DType::F32)
                .ok()?
                .to_vec2::<f32>()
                .ok()?;
            Some(v.iter().map(|p| [p[0], p[1]]).collect())
        };
        Some(KeypointView {
            driving: points(driving)?,
            portrait: points(portrait)?,
        })
    }
}
