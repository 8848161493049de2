//! The original FOMM YAML configs (`config/*.yaml` of the authors' repository) as typed structs.
//!
//! Only what inference needs is read: `model_params` and `dataset_params.frame_shape`. Training,
//! reconstruction, visualisation and discriminator sections are ignored, so the published config
//! files load as they are. Field defaults are the constructor defaults of the original modules
//! (`modules/keypoint_detector.py`, `modules/dense_motion.py`, `modules/generator.py`).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors reading or validating a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The config file.
        path: String,
        /// The error from reading it.
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config {path} is not a FOMM config: {source}. Use one of the original config/*.yaml files \
         (see models/README.md)"
    )]
    /// The text is not YAML, or `model_params` is missing or has the wrong fields.
    Yaml {
        /// The config file or name.
        path: String,
        /// The YAML parser's error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A value is out of range ([`FommConfig::validate`]) or `frame_shape` has fewer than two
    /// entries.
    #[error("config {path}: {message}")]
    Invalid {
        /// The config file or name.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// `model_params.common_params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommonParams {
    /// Number of self-supervised keypoints K (10 in every published config).
    pub num_kp: usize,
    /// Image channels (3, RGB).
    pub num_channels: usize,
    /// First-order model (keypoint + Jacobian) when true, zero-order (keypoints only) when false.
    #[serde(default)]
    pub estimate_jacobian: bool,
}

/// `model_params.kp_detector_params` (arguments of `KPDetector.__init__`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpDetectorParams {
    /// Softmax temperature of the keypoint heatmaps.
    pub temperature: f64,
    /// The hourglass's width unit: down block i outputs `min(max_features, block_expansion *
    /// 2^(i+1))` channels; the decoder ends at `block_expansion` (plus the input, concatenated).
    pub block_expansion: usize,
    /// Upper bound on the hourglass's channels.
    pub max_features: usize,
    /// Down (and up) blocks of the hourglass.
    pub num_blocks: usize,
    /// Input downscaling before the hourglass (0.25: 256x256 -> 64x64).
    #[serde(default = "one")]
    pub scale_factor: f64,
    /// One Jacobian map shared by every keypoint (config/mgif-256.yaml).
    #[serde(default)]
    pub single_jacobian_map: bool,
    /// Padding of the 7x7 `kp` / `jacobian` convolutions (0 shrinks 64x64 to 58x58).
    #[serde(default)]
    pub pad: usize,
}

/// `model_params.generator_params.dense_motion_params` (arguments of `DenseMotionNetwork.__init__`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseMotionParams {
    /// The hourglass's width unit: down block i outputs `min(max_features, block_expansion *
    /// 2^(i+1))` channels; the decoder ends at `block_expansion` (plus the input, concatenated).
    pub block_expansion: usize,
    /// Upper bound on the hourglass's channels.
    pub max_features: usize,
    /// Down (and up) blocks of the hourglass.
    pub num_blocks: usize,
    /// Downscaling of the source and the motion before the hourglass (0.25: 256x256 -> 64x64);
    /// the dense motion is estimated at this resolution.
    #[serde(default = "one")]
    pub scale_factor: f64,
    /// Variance of the keypoint Gaussians (dense_motion.py default 0.01).
    #[serde(default = "default_kp_variance")]
    pub kp_variance: f64,
}

/// `model_params.generator_params` (arguments of `OcclusionAwareGenerator.__init__`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorParams {
    /// Channels after the first 7x7 block; down block i outputs `min(max_features,
    /// block_expansion * 2^(i+1))`.
    pub block_expansion: usize,
    /// Upper bound on the encoder's and decoder's channels.
    pub max_features: usize,
    /// Down (and up) blocks: the features are `2^num_down_blocks` times smaller than the frame.
    pub num_down_blocks: usize,
    /// Residual blocks between encoder and decoder.
    pub num_bottleneck_blocks: usize,
    /// Whether the dense motion network also predicts an occlusion map that masks the warped
    /// features.
    #[serde(default)]
    pub estimate_occlusion_map: bool,
    /// `None` builds a generator without a dense motion network (the original allows it).
    #[serde(default)]
    pub dense_motion_params: Option<DenseMotionParams>,
}

/// `model_params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    /// Shared by the keypoint detector and the generator.
    pub common_params: CommonParams,
    /// The keypoint detector's.
    pub kp_detector_params: KpDetectorParams,
    /// The generator's (and its dense motion network's).
    pub generator_params: GeneratorParams,
}

/// `animate_params.normalization_params` of the original configs (defaults of `normalize_kp`
/// in the published configs: all true).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormalizationParams {
    /// Scale the driving motion by sqrt(area(hull kp(S))) / sqrt(area(hull kp(D_1))), the
    /// source's keypoint spread over the reference driving frame's.
    #[serde(default = "yes")]
    pub adapt_movement_scale: bool,
    /// Move the source keypoints by the driving keypoints' displacement from the first driving
    /// frame, instead of taking the driving keypoints as they are.
    #[serde(default = "yes")]
    pub use_relative_movement: bool,
    /// With relative movement, also relative Jacobians: J(D_t) J(D_1)^-1 J(S).
    #[serde(default = "yes")]
    pub use_relative_jacobian: bool,
}

impl Default for NormalizationParams {
    fn default() -> Self {
        Self {
            adapt_movement_scale: true,
            use_relative_movement: true,
            use_relative_jacobian: true,
        }
    }
}

/// What marionette needs from a config: the model structure and the frame size it was trained on.
#[derive(Debug, Clone, PartialEq)]
pub struct FommConfig {
    /// Where it came from (a path or a preset name), for messages.
    pub name: String,
    /// `model_params`.
    pub model: ModelParams,
    /// Frame (height, width) the model works at: `dataset_params.frame_shape[:2]`.
    pub frame_size: (usize, usize),
    /// `animate_params.normalization_params` (all true when absent).
    pub normalization: NormalizationParams,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_kp_variance() -> f64 {
    // dense_motion.py: DenseMotionNetwork(..., kp_variance=0.01)
    0.01
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    dataset_params: Option<RawDataset>,
    model_params: ModelParams,
    #[serde(default)]
    animate_params: Option<RawAnimate>,
}

#[derive(Deserialize)]
struct RawDataset {
    #[serde(default)]
    frame_shape: Option<Vec<usize>>,
}

#[derive(Deserialize)]
struct RawAnimate {
    #[serde(default)]
    normalization_params: Option<NormalizationParams>,
}

impl FommConfig {
    /// Reads an original FOMM YAML config file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml_str(&text, &path.display().to_string())
    }

    /// Parses YAML text in the original layout; `name` is used in messages.
    pub fn from_yaml_str(text: &str, name: &str) -> Result<Self, ConfigError> {
        let raw: RawFile = serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml {
            path: name.to_string(),
            source,
        })?;
        let frame_size = match raw.dataset_params.and_then(|d| d.frame_shape) {
            Some(shape) if shape.len() >= 2 => (shape[0], shape[1]),
            Some(shape) => {
                return Err(ConfigError::Invalid {
                    path: name.to_string(),
                    message: format!(
                        "dataset_params.frame_shape must be [height, width, channels], got {shape:?}"
                    ),
                });
            }
            // Every published config says [256, 256, 3].
            None => (256, 256),
        };
        let config = FommConfig {
            name: name.to_string(),
            model: raw.model_params,
            frame_size,
            normalization: raw
                .animate_params
                .and_then(|a| a.normalization_params)
                .unwrap_or_default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// The structure of the published `config/vox-256.yaml` (also vox-adv, bair, nemo, fashion,
    /// taichi: they share model_params; mgif adds `single_jacobian_map`).
    pub fn vox_256() -> Self {
        FommConfig {
            name: "vox-256".to_string(),
            model: ModelParams {
                common_params: CommonParams {
                    num_kp: 10,
                    num_channels: 3,
                    estimate_jacobian: true,
                },
                kp_detector_params: KpDetectorParams {
                    temperature: 0.1,
                    block_expansion: 32,
                    max_features: 1024,
                    num_blocks: 5,
                    scale_factor: 0.25,
                    single_jacobian_map: false,
                    pad: 0,
                },
                generator_params: GeneratorParams {
                    block_expansion: 64,
                    max_features: 512,
                    num_down_blocks: 2,
                    num_bottleneck_blocks: 6,
                    estimate_occlusion_map: true,
                    dense_motion_params: Some(DenseMotionParams {
                        block_expansion: 64,
                        max_features: 1024,
                        num_blocks: 5,
                        scale_factor: 0.25,
                        kp_variance: 0.01,
                    }),
                },
            },
            frame_size: (256, 256),
            normalization: NormalizationParams::default(),
        }
    }

    /// Checks what the original would only discover as a crash or a silently wrong shape.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: self.name.clone(),
            message,
        };
        let m = &self.model;
        if m.common_params.num_kp == 0 || m.common_params.num_channels == 0 {
            return Err(invalid("num_kp and num_channels must be positive".into()));
        }
        let kp = &m.kp_detector_params;
        if kp.temperature <= 0.0 || kp.temperature.is_nan() {
            return Err(invalid(format!(
                "kp_detector_params.temperature must be positive, got {}",
                kp.temperature
            )));
        }
        check_scale(kp.scale_factor, "kp_detector_params.scale_factor").map_err(invalid)?;
        if kp.block_expansion == 0 || kp.max_features == 0 {
            return Err(invalid(
                "kp_detector_params block_expansion and max_features must be positive".into(),
            ));
        }
        let g = &m.generator_params;
        if g.block_expansion == 0 || g.max_features == 0 {
            return Err(invalid(
                "generator_params block_expansion and max_features must be positive".into(),
            ));
        }
        if let Some(dm) = &g.dense_motion_params {
            check_scale(dm.scale_factor, "dense_motion_params.scale_factor").map_err(invalid)?;
            if dm.kp_variance <= 0.0 || dm.kp_variance.is_nan() {
                return Err(invalid(
                    "dense_motion_params.kp_variance must be positive".into(),
                ));
            }
        }
        let (h, w) = self.frame_size;
        let down = 1usize << g.num_down_blocks.min(16);
        if h == 0 || w == 0 || h % down != 0 || w % down != 0 {
            return Err(invalid(format!(
                "frame_shape {h}x{w} must be a positive multiple of 2^num_down_blocks = {down}"
            )));
        }
        Ok(())
    }
}

fn check_scale(scale: f64, what: &str) -> Result<(), String> {
    // AntiAliasInterpolation2d keeps every int(1/scale)-th pixel (util.py), so only 1/n makes sense.
    if !(scale > 0.0 && scale <= 1.0) {
        return Err(format!("{what} must be in (0, 1], got {scale}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_yaml_is_a_clear_error() {
        let err = FommConfig::from_yaml_str("model_params: [1, 2]", "x.yaml").unwrap_err();
        assert!(err.to_string().contains("x.yaml"), "{err}");
    }

    #[test]
    fn zero_temperature_is_rejected() {
        let mut c = FommConfig::vox_256();
        c.model.kp_detector_params.temperature = 0.0;
        assert!(c.validate().is_err());
    }
}
