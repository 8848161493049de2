//! The CPU operators under the paper's modules: `F.grid_sample` ([`grid_sample`]), bilinear
//! resize ([`interpolate`]), the anti-aliased downscaling ([`anti_alias`]), the convolutions
//! ([`conv`]: one planner picks each layer's kernel), the precision they run at ([`precision`]),
//! and what this processor can run ([`cpu`]).

pub mod anti_alias;
pub mod conv;
pub mod cpu;
pub mod grid_sample;
pub mod interpolate;
pub mod precision;
pub mod rates;
