//! Engines turn driving frames into animated portraits. Every engine takes and returns
//! (1, 3, H, W) float tensors in [0, 1] at its own frame size.

pub mod classic;
pub mod fomm;
pub mod idle;
pub mod select;

use candle_core::Tensor;

use crate::model::fomm::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("no portrait is set: choose a source image first")]
    NoSource,
    #[error("the {engine} engine does not support {what}")]
    Unsupported { engine: String, what: String },
}

/// Keypoints of the last animated frame in FOMM's normalised coordinates ((x, y) in [-1, 1],
/// -1/+1 the centres of the first/last pixel): where they are in the driving frame, and where they
/// were moved to on the portrait. For the keypoint overlay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeypointView {
    pub driving: Vec<[f32; 2]>,
    pub portrait: Vec<[f32; 2]>,
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Model(ModelError::Candle(e))
    }
}

/// One interface for every way of animating a portrait.
pub trait Animator {
    /// Short name for messages ("fomm", "classic").
    fn name(&self) -> &str;
    /// (height, width) of the frames it takes and renders.
    fn frame_size(&self) -> (usize, usize);
    /// Sets the portrait to animate; everything about it is computed here, once.
    fn set_source(&mut self, source: &Tensor) -> Result<(), EngineError>;
    /// The next driving frame becomes the reference frame D_1.
    fn recalibrate(&mut self);
    /// Whether a reference frame is set.
    fn is_calibrated(&self) -> bool;
    /// The portrait moved as `driving` moved relative to the reference frame.
    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError>;
    /// The portrait in the idle-motion pose at `t` seconds (no driving frame).
    fn animate_idle(&mut self, t: f64) -> Result<Tensor, EngineError>;
    /// Selects portrait `id`, computing its cached state from `source` only the first time:
    /// switching back to a portrait seen before costs no re-encoding.
    fn select_portrait(&mut self, id: u64, source: &Tensor) -> Result<(), EngineError>;
    /// Relative or absolute motion transfer and adapt scale (FOMM's demo options). Engines with
    /// relative motion only refuse `relative = false`.
    fn set_transfer(&mut self, relative: bool, adapt_scale: bool) -> Result<(), EngineError> {
        let _ = adapt_scale;
        if relative {
            Ok(())
        } else {
            Err(EngineError::Unsupported {
                engine: self.name().to_string(),
                what: "absolute motion transfer".into(),
            })
        }
    }
    /// The keypoints of the last animated frame, when the engine has any.
    fn keypoint_view(&self) -> Option<KeypointView> {
        None
    }
}

impl From<classic::ClassicError> for EngineError {
    fn from(e: classic::ClassicError) -> Self {
        EngineError::Model(ModelError::Input(e.to_string()))
    }
}

/// The weight-free engine behind the same interface.
impl Animator for classic::ClassicEngine {
    fn name(&self) -> &str {
        "classic"
    }
    fn frame_size(&self) -> (usize, usize) {
        classic::ClassicEngine::frame_size(self)
    }
    fn set_source(&mut self, source: &Tensor) -> Result<(), EngineError> {
        Ok(classic::ClassicEngine::set_source(self, source)?)
    }
    fn recalibrate(&mut self) {
        classic::ClassicEngine::recalibrate(self)
    }
    fn is_calibrated(&self) -> bool {
        classic::ClassicEngine::is_calibrated(self)
    }
    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        Ok(classic::ClassicEngine::animate(self, driving)?)
    }
    fn animate_idle(&mut self, t: f64) -> Result<Tensor, EngineError> {
        Ok(classic::ClassicEngine::animate_idle(self, t)?)
    }
    fn select_portrait(&mut self, id: u64, source: &Tensor) -> Result<(), EngineError> {
        Ok(classic::ClassicEngine::select_portrait(self, id, source)?)
    }
    fn set_transfer(&mut self, relative: bool, adapt_scale: bool) -> Result<(), EngineError> {
        if !relative {
            return Err(EngineError::Unsupported {
                engine: "classic".into(),
                what: "absolute motion transfer (it has no learned keypoints to place as they are)"
                    .into(),
            });
        }
        self.set_adapt_scale(adapt_scale);
        Ok(())
    }
    fn keypoint_view(&self) -> Option<KeypointView> {
        self.motion().map(|m| KeypointView {
            driving: m.keypoints.clone(),
            portrait: m.transferred.clone(),
        })
    }
}
