//! The First Order Motion Model (A. Siarohin et al., "First Order Motion Model for Image
//! Animation", NeurIPS 2019) in Candle.
//!
//! Three rooms, read top down:
//!
//! * the paper, one module per class group of the original `modules/` with its checkpoint key
//!   names: [`keypoint_detector`] (`KPDetector`), [`dense_motion`] (`DenseMotionNetwork`),
//!   [`generator`] (`OcclusionAwareGenerator`), [`hourglass`] and [`blocks`] (`util.py`'s
//!   building blocks), [`util`] (coordinate grids, Gaussians), [`motion_transfer`] (the demo's
//!   `normalize_kp`), and [`model`], the two networks together with the portrait cached;
//! * [`load`]: PyTorch checkpoints (legacy and zip, read without executing anything),
//!   safetensors, the original YAML configs and the published presets;
//! * [`ops`]: the CPU operators under the paper: `grid_sample`, bilinear resize, the
//!   anti-aliased downscaling, the convolution kernels and the planner that picks one per layer,
//!   and [`ops::cpu`], what this processor can run.
//!
//! ```no_run
//! use candle_core::Device;
//! use fomm::load::{checkpoint::Checkpoint, presets::resolve_config};
//! use fomm::model::Fomm;
//! use fomm::ops::precision::PrecisionPlan;
//!
//! let config = resolve_config("vox-256")?;
//! let weights = Checkpoint::load("vox-cpk.pth.tar".as_ref())?;
//! let model = Fomm::from_checkpoint(&config, &weights, "vox-cpk", &Device::Cpu, PrecisionPlan::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod blocks;
pub mod dense_motion;
pub mod generator;
pub mod hourglass;
pub mod keypoint_detector;
pub mod load;
pub mod model;
pub mod motion_transfer;
pub mod ops;
pub mod quality;
pub mod util;

pub use model::Fomm;
