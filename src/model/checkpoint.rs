//! TEMPORARY placeholder while the real reader is written (safetensors only).
use std::collections::BTreeMap;
use std::path::Path;
use candle_core::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Other(String),
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat { LegacyPickle, ZipPickle, Safetensors }
pub struct Checkpoint { pub format: CheckpointFormat, pub tensors: BTreeMap<String, Tensor> }
impl Checkpoint {
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| CheckpointError::Other(e.to_string()))?;
        Ok(Checkpoint { format: CheckpointFormat::Safetensors, tensors: t.into_iter().collect() })
    }
    pub fn save_safetensors(&self, path: &Path) -> Result<(), CheckpointError> {
        candle_core::safetensors::save(&self.tensors.clone().into_iter().collect(), path).map_err(|e| CheckpointError::Other(e.to_string()))
    }
}
