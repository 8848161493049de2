//! The desktop window (`marionette` with no arguments): pick a portrait, line your face up with
//! it, calibrate, and appear animated in the preview and in the virtual camera.
//!
//! * [`settings`]: what is remembered between runs (TOML in the XDG config dir);
//! * [`gallery`]: the bundled and the user's portraits;
//! * [`ui`], `add_dialog`, `weights_dialog` and `remote_dialog`: the panels, hotkeys and dialogs
//!   (egui, over plain data);
//! * `video`: the video panes on the GPU (`shaders/video.wgsl`);
//! * [`window`]: winit + wgpu + the live pipeline.

pub(crate) mod add_dialog;
pub mod gallery;
pub mod remote_dialog;
pub mod settings;
pub mod ui;
pub(crate) mod video;
pub(crate) mod weights_dialog;
pub mod window;

use crate::capture::SourceFactory;
use settings::SourceSetting;

/// The factory for a driving source picked in the window (opened on the capture thread); `None`
/// for idle motion. `face`: the portrait the test pattern moves around.
pub fn source_factory(setting: &SourceSetting, face: image::RgbImage) -> Option<SourceFactory> {
    setting.spec().factory(face)
}
