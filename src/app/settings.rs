//! What the window remembers between runs, as TOML in the XDG config dir
//! (`$XDG_CONFIG_HOME/marionette/settings.toml`, usually `~/.config/marionette/settings.toml`).
//! Missing fields take their defaults, so files from older versions keep working; a file that
//! cannot be read is reported and replaced by defaults, never fatal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pipeline::framing::Crop;

/// Why the settings could not be found, read or written.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file exists but could not be read or is not valid settings TOML.
    #[error("settings file {path}: {message}")]
    Read {
        /// The settings file.
        path: PathBuf,
        /// The read or parse error.
        message: String,
    },
    /// Creating the folder, or writing or renaming the file, failed.
    #[error("writing settings file {path}: {source}")]
    Write {
        /// The settings file.
        path: PathBuf,
        /// The error (a TOML serialisation error arrives as `InvalidData`).
        #[source]
        source: std::io::Error,
    },
    /// No config directory is known (neither `XDG_CONFIG_HOME` nor `HOME` is set).
    #[error("no config directory: set XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
}

/// Where the driving frames come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceSetting {
    /// A webcam by device path (e.g. /dev/video0).
    Camera(String),
    /// The built-in test pattern: the selected portrait moving by itself on a neutral background.
    TestPattern,
    /// No source: the portrait moves by itself.
    Idle,
    /// A video file or a folder of pictures, looped at its rate (chosen on the command line).
    File(String),
}

impl SourceSetting {
    /// The source this setting describes (a camera string that does not parse, such as an empty
    /// one, means the first camera).
    pub fn spec(&self) -> crate::capture::SourceSpec {
        use crate::capture::SourceSpec;
        use crate::capture::webcam::CameraSelector;
        match self {
            SourceSetting::Camera(dev) => {
                SourceSpec::Camera(dev.parse().unwrap_or(CameraSelector::Index(0)))
            }
            SourceSetting::TestPattern => SourceSpec::TestPattern,
            SourceSetting::Idle => SourceSpec::Idle,
            SourceSetting::File(path) => SourceSpec::File {
                path: path.into(),
                fps: 30.0,
            },
        }
    }
}

/// The crop of the camera frame, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CropSetting {
    /// [`Crop::zoom`].
    pub zoom: f64,
    /// [`Crop::pan_x`].
    pub pan_x: f64,
    /// [`Crop::pan_y`].
    pub pan_y: f64,
}

impl Default for CropSetting {
    fn default() -> Self {
        let c = Crop::default();
        Self {
            zoom: c.zoom,
            pan_x: c.pan_x,
            pan_y: c.pan_y,
        }
    }
}

impl CropSetting {
    /// The crop, clamped into range and not mirrored.
    pub fn to_crop(self) -> Crop {
        Crop {
            zoom: self.zoom,
            pan_x: self.pan_x,
            pan_y: self.pan_y,
            mirror: false,
        }
        .clamped()
    }

    /// The stored part of a crop (its mirroring is a separate setting).
    pub fn from_crop(c: &Crop) -> Self {
        Self {
            zoom: c.zoom,
            pan_x: c.pan_x,
            pan_y: c.pan_y,
        }
    }
}

/// The virtual camera output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VcamSetting {
    /// `auto` (the v4l2loopback device found), `none`, or a device path.
    pub device: String,
    /// yuyv or i420.
    pub format: String,
    /// 640x480 or 1280x720.
    pub size: String,
}

impl Default for VcamSetting {
    fn default() -> Self {
        Self {
            device: "auto".into(),
            format: "yuyv".into(),
            size: "640x480".into(),
        }
    }
}

/// Everything the window remembers between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The selected portrait's gallery key (`bundled:NAME` or the file's path).
    pub avatar: Option<String>,
    /// None: the first webcam, else idle motion.
    pub source: Option<SourceSetting>,
    /// The crop of the camera frame.
    pub crop: CropSetting,
    /// The portrait drawn over the camera crop, to line the face up with it.
    pub overlay: bool,
    /// Its opacity, 0..=1.
    pub overlay_opacity: f32,
    /// Mirror the window's camera pane (a selfie view); the model sees the camera as it is.
    pub mirror_preview: bool,
    /// Mirror what the virtual camera and recorder get.
    pub mirror_output: bool,
    /// The "AI ANIMATED" badge on what the virtual camera gets.
    pub badge: bool,
    /// Send the camera crop instead of the portrait.
    pub passthrough: bool,
    /// Relative motion (the default); false: absolute.
    pub relative: bool,
    /// Scale the motion to the portrait's face size. None: the engine's default (on for FOMM,
    /// as the original demo recommends; off for the classic engine, where it was measured to
    /// follow noise without a face detector).
    pub adapt_scale: Option<bool>,
    /// Draw the motion keypoints.
    pub keypoints: bool,
    /// Show the statistics grid.
    pub stats: bool,
    /// The virtual camera output.
    pub vcam: VcamSetting,
    /// Model keyframes with motion in between (auto: while the model is slower than the camera).
    pub keyframes: crate::pipeline::KeyframeMode,
    /// Smoothing of the driving motion: 0 (off) to 1 (strongest).
    pub smoothing: f64,
    /// The model's crop: around the face (auto) or zoom and pan by hand (manual).
    pub framing: crate::pipeline::framing::FramingMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            avatar: None,
            source: None,
            crop: CropSetting::default(),
            overlay: false,
            overlay_opacity: 0.4,
            mirror_preview: true,
            mirror_output: false,
            badge: false,
            passthrough: false,
            relative: true,
            adapt_scale: None,
            keypoints: false,
            stats: false,
            keyframes: crate::pipeline::KeyframeMode::Auto,
            vcam: VcamSetting::default(),
            smoothing: crate::engine::smoothing::DEFAULT_STRENGTH,
            framing: crate::pipeline::framing::FramingMode::Auto,
        }
    }
}

impl Settings {
    /// `$XDG_CONFIG_HOME/marionette/settings.toml`.
    pub fn default_path() -> Result<PathBuf, SettingsError> {
        dirs::config_dir()
            .map(|d| d.join("marionette").join("settings.toml"))
            .ok_or(SettingsError::NoConfigDir)
    }

    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(SettingsError::Read {
                    path: path.into(),
                    message: e.to_string(),
                });
            }
        };
        Self::from_toml(&text, path)
    }

    /// Parses the text of a settings file; `path` names it in errors. Values out of range are
    /// brought into range.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, SettingsError> {
        let mut s: Settings = toml::from_str(text).map_err(|e| SettingsError::Read {
            path: path.into(),
            message: format!("{e} (delete the file to start from the defaults)"),
        })?;
        s.overlay_opacity = if s.overlay_opacity.is_finite() {
            s.overlay_opacity.clamp(0.0, 1.0)
        } else {
            0.4
        };
        s.crop = CropSetting::from_crop(&s.crop.to_crop());
        s.smoothing = crate::engine::smoothing::Smoothing::new(s.smoothing).strength();
        Ok(s)
    }

    /// Writes atomically (a temporary file renamed over the old one), creating the folder.
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let write = |source| SettingsError::Write {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let text = toml::to_string_pretty(self).map_err(|e| {
            write(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            ))
        })?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(write)?;
        std::fs::rename(&tmp, path).map_err(write)
    }
}
