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
}
