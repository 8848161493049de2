//! The neural engine: FOMM with the portrait cached and relative motion transfer as state.

use candle_core::Tensor;

use super::{Animator, EngineError};
use crate::model::fomm::{Fomm, PreparedSource};
use crate::model::keypoint_detector::Keypoints;
use crate::model::motion_transfer::{MotionTransfer, TransferOptions};

/// FOMM as an [`Animator`].
pub struct FommAnimator {
    model: Fomm,
    source: Option<PreparedSource>,
    transfer: MotionTransfer,
}

impl FommAnimator {
    pub fn new(model: Fomm, options: TransferOptions) -> Self {
        Self {
            model,
            source: None,
            transfer: MotionTransfer::new(options),
        }
    }

    pub fn model(&self) -> &Fomm {
        &self.model
    }

    pub fn source(&self) -> Option<&PreparedSource> {
        self.source.as_ref()
    }

    /// Uses an already prepared portrait (switching portraits without re-encoding).
    pub fn set_prepared_source(&mut self, prepared: PreparedSource) {
        self.source = Some(prepared);
    }

    pub fn transfer_mut(&mut self) -> &mut MotionTransfer {
        &mut self.transfer
    }

    /// Keypoints of a driving frame.
    pub fn keypoints(&self, frame: &Tensor) -> Result<Keypoints, EngineError> {
        Ok(self.model.detect(frame)?)
    }

    /// Renders from driving keypoints already detected (relative to the current reference).
    pub fn animate_keypoints(&mut self, kp_driving: &Keypoints) -> Result<Tensor, EngineError> {
        let source = self.source.as_ref().ok_or(EngineError::NoSource)?;
        let kp = self.transfer.transfer(&source.keypoints, kp_driving)?;
        Ok(self.model.render(source, &kp, false)?.prediction)
    }
}

impl Animator for FommAnimator {
    fn name(&self) -> &str {
        "fomm"
    }

    fn frame_size(&self) -> (usize, usize) {
        self.model.config.frame_size
    }

    fn set_source(&mut self, source: &Tensor) -> Result<(), EngineError> {
        self.source = Some(self.model.prepare_source(source)?);
        Ok(())
    }

    fn recalibrate(&mut self) {
        self.transfer.recalibrate();
    }

    fn is_calibrated(&self) -> bool {
        self.transfer.is_calibrated()
    }

    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        let kp = self.keypoints(driving)?;
        self.animate_keypoints(&kp)
    }
}
