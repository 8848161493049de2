//! The app's integration tests, in one binary: each module is one behaviour area (the file of
//! the same name). One binary links the window, camera and FFmpeg stack once instead of once per
//! file; `cargo test --test app <module>::` runs one area. `pipeline_memory` stays a process of
//! its own, so that no other test's allocations show in its measurement.

mod classic_support;
mod common;

mod animate_cli;
mod app_data;
mod borders;
mod camera_loss;
mod classic;
mod engine;
mod engine_choice;
mod framing;
mod fuzz;
mod install_layout;
mod keyframes;
mod layering;
mod live_vm;
mod media;
mod models_cli;
mod motion;
mod motion_cli;
mod pipeline;
mod pipeline_controls;
mod precision_fallback;
mod recording;
mod remote;
mod run_cli;
mod slow_machine;
mod steady;
mod synth;
mod ui_panels;
mod watermark;
mod window_xvfb;
