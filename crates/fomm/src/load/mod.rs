//! Reading what the authors published: checkpoints (PyTorch legacy and zip pickles without
//! executing them, and safetensors), strict key and shape checks, the original YAML configs and
//! the eight published presets.

pub mod checkpoint;
pub mod config;
// Public (hidden from the docs) for the fuzz targets.
#[doc(hidden)]
pub mod pickle;
pub mod presets;
pub mod weights;
