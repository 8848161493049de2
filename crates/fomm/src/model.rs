//! The whole model: keypoint detector + occlusion-aware generator, built from a config and a
//! checkpoint with strict key checks, and the per-portrait / per-frame split used everywhere.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use crate::blocks::Layers;
use crate::generator::{EncodedSource, GeneratorOutput, OcclusionAwareGenerator};
use crate::keypoint_detector::{Keypoints, KpDetector, KpDetectorOutput};
use crate::load::checkpoint::{Checkpoint, CheckpointError};
use crate::load::config::{ConfigError, FommConfig};
use crate::load::weights::{KeyProblem, WeightSource};
use crate::ops::precision::PrecisionPlan;

/// Errors building or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint's keys or shapes are not those the config implies.
    #[error(
        "checkpoint {checkpoint} does not fit config {config}:\n  {}\n{suggestion}",
        problems.iter().take(12).map(|p| p.to_string()).collect::<Vec<_>>().join("\n  ")
            + &if problems.len() > 12 { format!("\n  ... and {} more", problems.len() - 12) } else { String::new() }
    )]
    Mismatch {
        /// Where the checkpoint came from.
        checkpoint: String,
        /// The config's name.
        config: String,
        /// Every missing, unexpected or misshaped key (the message shows the first 12).
        problems: Vec<KeyProblem>,
        /// `model_params` read back from the checkpoint's shapes ([`suggest_model_params`]).
        suggestion: String,
    },
    /// An input is unusable (an image tensor of the wrong shape, for example).
    #[error("bad input image: {0}")]
    Input(String),
    /// A tensor operation failed.
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Options that change the numbers the model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// grid_sample convention. `true` (default) is what torch 1.0 did, which the published weights
    /// were trained with; `false` is what the unmodified code does on torch >= 1.3.
    pub align_corners: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            align_corners: true,
        }
    }
}

/// A portrait prepared for animation: everything that does not depend on the driving frame.
#[derive(Debug, Clone)]
pub struct PreparedSource {
    /// The portrait's keypoints kp(S).
    pub keypoints: Keypoints,
    /// The generator's encoding of the portrait.
    pub encoded: EncodedSource,
}

/// The FOMM networks, ready for inference.
#[derive(Debug, Clone)]
pub struct Fomm {
    /// The config the networks were built from.
    pub config: FommConfig,
    kp_detector: KpDetector,
    generator: OcclusionAwareGenerator,
    /// Options that change the numbers computed (settable after loading).
    pub options: RunOptions,
    device: Device,
    precision: PrecisionPlan,
}

impl Fomm {
    /// Builds the model from a checkpoint, checking that its keys and shapes are exactly those the
    /// config implies (the discriminator and optimizer states of `.pth.tar` files are ignored),
    /// each network's convolutions at the precision `plan` gives it.
    pub fn from_checkpoint(
        config: &FommConfig,
        checkpoint: &Checkpoint,
        origin: &str,
        device: &Device,
        plan: PrecisionPlan,
    ) -> Result<Self, ModelError> {
        let source = WeightSource::from_tensors(checkpoint.tensors.clone());
        let model = Self::build(config, &source, device, plan)?;
        let problems = source.problems("");
        if !problems.is_empty() {
            return Err(ModelError::Mismatch {
                checkpoint: origin.to_string(),
                config: config.name.clone(),
                problems,
                suggestion: suggest_model_params(&checkpoint.tensors),
            });
        }
        Ok(model)
    }

    /// The model with random weights (benchmarks; nothing meaningful is rendered).
    pub fn random(
        config: &FommConfig,
        device: &Device,
        plan: PrecisionPlan,
    ) -> Result<Self, ModelError> {
        Self::build(config, &WeightSource::random(), device, plan)
    }

    /// The exact state-dict keys and shapes a config implies (`kp_detector.*`, `generator.*`).
    pub fn expected_keys(config: &FommConfig) -> Result<BTreeMap<String, Vec<usize>>, ModelError> {
        let source = WeightSource::random();
        // Building on the CPU with random values costs a moment even for vox-256 (60M params).
        Self::build(config, &source, &Device::Cpu, PrecisionPlan::default())?;
        Ok(source
            .requested()
            .into_iter()
            .map(|(k, v)| (k, v.shape))
            .collect())
    }

    fn build(
        config: &FommConfig,
        source: &WeightSource,
        device: &Device,
        plan: PrecisionPlan,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let vb = source.var_builder(device);
        let m = &config.model;
        let kp_detector = KpDetector::new(
            &Layers::new(vb.pp("kp_detector"), plan.kp_detector),
            &m.common_params,
            &m.kp_detector_params,
        )?;
        let generator = OcclusionAwareGenerator::new(
            &Layers::new(vb.pp("generator"), plan.generator),
            &m.common_params,
            &m.generator_params,
            plan.dense_motion,
        )?;
        Ok(Self {
            config: config.clone(),
            kp_detector,
            generator,
            options: RunOptions::default(),
            device: device.clone(),
            precision: plan,
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The generator (the dense motion network inside it), for timing its stages on their own.
    pub fn generator(&self) -> &OcclusionAwareGenerator {
        &self.generator
    }

    /// The precision plan in use.
    pub fn precision(&self) -> PrecisionPlan {
        self.precision
    }

    /// Checks a (1, C, H, W) image tensor against the config and moves it to the model's device.
    pub fn check_image(&self, image: &Tensor) -> Result<Tensor, ModelError> {
        let (h, w) = self.config.frame_size;
        let c = self.config.model.common_params.num_channels;
        match image.dims() {
            [_, ch, ih, iw] if *ch == c && *ih == h && *iw == w => {
                Ok(image.to_device(&self.device)?.to_dtype(DType::F32)?)
            }
            dims => Err(ModelError::Input(format!(
                "expected an image tensor of shape (B, {c}, {h}, {w}) for config {}, got {dims:?}",
                self.config.name
            ))),
        }
    }

    /// Keypoints of an image.
    pub fn detect(&self, image: &Tensor) -> Result<Keypoints, ModelError> {
        Ok(self.kp_detector.detect(&self.check_image(image)?)?)
    }

    /// Keypoints with every intermediate of the detector.
    pub fn detect_detailed(&self, image: &Tensor) -> Result<KpDetectorOutput, ModelError> {
        Ok(self
            .kp_detector
            .forward_detailed(&self.check_image(image)?)?)
    }

    /// Everything about a portrait that does not change from frame to frame.
    pub fn prepare_source(&self, source: &Tensor) -> Result<PreparedSource, ModelError> {
        let source = self.check_image(source)?;
        let keypoints = self.kp_detector.detect(&source)?;
        let encoded = self.generator.encode_source(&source, &keypoints)?;
        Ok(PreparedSource { keypoints, encoded })
    }

    /// Renders the portrait with the given (already transferred) driving keypoints.
    pub fn render(
        &self,
        source: &PreparedSource,
        kp_driving: &Keypoints,
        with_deformed: bool,
    ) -> Result<GeneratorOutput, ModelError> {
        Ok(self.generator.decode(
            &source.encoded,
            &source.keypoints,
            kp_driving,
            self.options.align_corners,
            with_deformed,
        )?)
    }
}

fn count_indexed(tensors: &BTreeMap<String, Tensor>, prefix: &str) -> usize {
    let mut n = 0;
    while tensors
        .keys()
        .any(|k| k.starts_with(&format!("{prefix}{n}.")))
    {
        n += 1;
    }
    n
}

fn dim(tensors: &BTreeMap<String, Tensor>, key: &str, i: usize) -> Option<usize> {
    tensors.get(key).and_then(|t| t.dims().get(i).copied())
}

fn max_out_channels(tensors: &BTreeMap<String, Tensor>, prefix: &str) -> Option<usize> {
    tensors
        .iter()
        .filter(|(k, t)| k.starts_with(prefix) && k.ends_with(".conv.weight") && t.rank() == 4)
        .filter_map(|(_, t)| t.dims().first().copied())
        .max()
}

/// The inverse of `AntiAliasInterpolation2d`'s kernel rule (size 13 <-> 0.25, 5 <-> 0.5).
fn scale_from_kernel(size: Option<usize>) -> f64 {
    match size {
        None => 1.0,
        Some(k) => {
            for n in 2..=16usize {
                let scale = 1.0 / n as f64;
                if crate::ops::anti_alias::kernel_geometry(scale).0 == k {
                    return scale;
                }
            }
            1.0
        }
    }
}

/// Reads the structure back from a checkpoint's shapes and writes it as `model_params` YAML, so a
/// mismatch error can say which config would fit. Parameters that leave no trace in the weights
/// (`temperature`, `pad`) are marked as such.
pub fn suggest_model_params(t: &BTreeMap<String, Tensor>) -> String {
    let Some(num_kp) = dim(t, "kp_detector.kp.weight", 0) else {
        return "The checkpoint has no `kp_detector.kp.weight`: it is not a FOMM checkpoint (or not its \
                kp_detector/generator part)."
            .to_string();
    };
    let num_channels = dim(
        t,
        "kp_detector.predictor.encoder.down_blocks.0.conv.weight",
        1,
    )
    .unwrap_or(3);
    let kp_feats = dim(t, "kp_detector.kp.weight", 1).unwrap_or(num_channels);
    let kp_be = kp_feats.saturating_sub(num_channels);
    let kp_blocks = count_indexed(t, "kp_detector.predictor.encoder.down_blocks.");
    let kp_max = max_out_channels(t, "kp_detector.predictor.encoder.").unwrap_or(0);
    let jac = dim(t, "kp_detector.jacobian.weight", 0);
    let kp_scale = scale_from_kernel(dim(t, "kp_detector.down.weight", 2));
    let g_be = dim(t, "generator.first.conv.weight", 0).unwrap_or(0);
    let g_down = count_indexed(t, "generator.down_blocks.");
    let g_bottleneck = count_indexed(t, "generator.bottleneck.r");
    let g_max = max_out_channels(t, "generator.down_blocks.").unwrap_or(g_be);
    let occlusion = t.contains_key("generator.dense_motion_network.occlusion.weight");
    let dm = "generator.dense_motion_network.";
    let dm_text = match dim(t, &format!("{dm}mask.weight"), 1) {
        Some(feats) => format!(
            "    dense_motion_params:\n      block_expansion: {}\n      max_features: {}\n      num_blocks: {}\n      scale_factor: {}\n",
            feats.saturating_sub((num_kp + 1) * (num_channels + 1)),
            max_out_channels(t, &format!("{dm}hourglass.encoder.")).unwrap_or(0),
            count_indexed(t, &format!("{dm}hourglass.encoder.down_blocks.")),
            scale_from_kernel(dim(t, &format!("{dm}down.weight"), 2)),
        ),
        None => String::new(),
    };
    format!(
        "model_params that fit this checkpoint (max_features is the largest width seen: any value \
         at least that large and below the next doubling fits; temperature and pad cannot be read \
         from weights):\n  common_params:\n    num_kp: {num_kp}\n    num_channels: {num_channels}\n    \
         estimate_jacobian: {}\n  kp_detector_params:\n    block_expansion: {kp_be}\n    max_features: {kp_max}\n    \
         num_blocks: {kp_blocks}\n    scale_factor: {kp_scale}\n    single_jacobian_map: {}\n  generator_params:\n    \
         block_expansion: {g_be}\n    max_features: {g_max}\n    num_down_blocks: {g_down}\n    \
         num_bottleneck_blocks: {g_bottleneck}\n    estimate_occlusion_map: {occlusion}\n{dm_text}",
        jac.is_some(),
        jac == Some(4) && num_kp != 1,
    )
}
