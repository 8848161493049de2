//! The First Order Motion Model (Siarohin et al., NeurIPS 2019) in Candle, one file per class
//! group of the original `modules/` with the original checkpoint key names.

pub mod anti_alias;
pub(crate) mod blocks;
pub mod checkpoint;
pub mod config;
pub mod conv;
pub mod dense_motion;
pub mod fomm;
pub mod generator;
pub mod grid_sample;
pub(crate) mod hourglass;
pub mod interpolate;
pub mod keypoint_detector;
pub mod motion_transfer;
// Public (hidden from the docs) for the fuzz targets in tests/fuzz.
#[doc(hidden)]
pub mod pickle;
pub mod precision;
pub mod presets;
pub mod quality;
pub mod util;
pub mod weights;
