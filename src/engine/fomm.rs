//! The neural engine: FOMM with the portrait cached and relative motion transfer as state.

use candle_core::Tensor;

use super::{Animator, EngineError, EngineId, KeypointView, PortraitCache, motion_mismatch};
use crate::model::fomm::{Fomm, PreparedSource};
use crate::model::keypoint_detector::Keypoints;
use crate::model::motion_transfer::{MotionTransfer, TransferOptions};
use crate::motion::{FrameMotion, KeypointSet, MotionEngine, MotionSource, ReferenceMotion};

/// FOMM as an [`Animator`].
pub struct FommAnimator {
    model: Fomm,
    portraits: PortraitCache<PreparedSource>,
    transfer: MotionTransfer,
    /// The last frame's driving and rendered keypoints (tensors: read only when asked for).
    last: Option<(Keypoints, Keypoints)>,
    /// The checkpoint's file name, for motion files.
    checkpoint: Option<String>,
}

impl FommAnimator {
    /// The engine around a loaded model, with the given motion transfer.
    pub fn new(model: Fomm, options: TransferOptions) -> Self {
        Self {
            model,
            portraits: PortraitCache::default(),
            transfer: MotionTransfer::new(options),
            last: None,
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

    /// Renders from driving keypoints already detected (relative to the current reference).
    pub fn animate_keypoints(&mut self, kp_driving: &Keypoints) -> Result<Tensor, EngineError> {
        let source = self.portraits.current().ok_or(EngineError::NoSource)?;
        let kp = self.transfer.transfer(&source.keypoints, kp_driving)?;
        let prediction = self.model.render(source, &kp, false)?.prediction;
        self.last = Some((kp_driving.clone(), kp));
        Ok(prediction)
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
    }

    fn is_calibrated(&self) -> bool {
        self.transfer.is_calibrated()
    }

    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        let kp = self.model.detect(driving)?;
        self.animate_keypoints(&kp)
    }

    fn animate_idle(&mut self, t: f64) -> Result<Tensor, EngineError> {
        self.render_idle(t)
    }

    fn calibrate_on(&mut self, driving: &Tensor) -> Result<(), EngineError> {
        let kp = self.model.detect(driving)?;
        self.transfer.set_reference(kp);
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

    fn last_motion(&self) -> Option<FrameMotion> {
        let (driving, _) = self.last.as_ref()?;
        KeypointSet::from_keypoints(driving)
            .ok()
            .map(FrameMotion::Fomm)
    }

    fn reference_motion(&self) -> Option<ReferenceMotion> {
        KeypointSet::from_keypoints(self.transfer.reference()?)
            .ok()
            .map(ReferenceMotion::Fomm)
    }

    fn set_reference_motion(&mut self, reference: &ReferenceMotion) -> Result<(), EngineError> {
        match reference {
            ReferenceMotion::Fomm(kp) => {
                let kp = self.recorded_keypoints(kp)?;
                self.transfer.set_reference(kp);
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
