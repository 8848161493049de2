//! `KPDetector` of `modules/keypoint_detector.py`: an hourglass predicts K heatmaps; keypoints are
//! their expected coordinates (paper Sec. 3.1) and, for the first-order model, each keypoint's 2x2
//! Jacobian is the heatmap-weighted mean of 4 predicted channels.

use candle_core::{D, Module, Result, Tensor};

use crate::blocks::{Conv2d, Layers};
use crate::hourglass::Hourglass;
use crate::load::config::{CommonParams, KpDetectorParams};
use crate::ops::anti_alias::AntiAliasInterpolation2d;
use crate::util::make_coordinate_grid;

/// Keypoints of one image: positions and optional local affine Jacobians.
#[derive(Debug, Clone)]
pub struct Keypoints {
    /// (B, K, 2) holding (x, y) in [-1, 1], x along the width.
    pub value: Tensor,
    /// (B, K, 2, 2), row-major; `None` for a zero-order model (`estimate_jacobian: false`).
    pub jacobian: Option<Tensor>,
}

/// Everything the detector computes, for inspection and parity tests.
#[derive(Debug, Clone)]
pub struct KpDetectorOutput {
    /// The keypoints (and Jacobians) the detector returns.
    pub keypoints: Keypoints,
    /// The anti-aliased input of the hourglass (`None` when scale_factor is 1).
    pub down: Option<Tensor>,
    /// Hourglass output (B, block_expansion + C, h, w).
    pub feature_map: Tensor,
    /// Raw `kp` conv output (B, K, h', w').
    pub kp_logits: Tensor,
    /// softmax(kp_logits / temperature) over space (B, K, h', w').
    pub heatmap: Tensor,
    /// Raw `jacobian` conv output (B, 4 * maps, h', w').
    pub jacobian_map: Option<Tensor>,
}

/// `KPDetector`: optional anti-aliased downscaling, an hourglass, and the `kp` and `jacobian`
/// 7x7 heads.
#[derive(Debug, Clone)]
pub struct KpDetector {
    down: Option<AntiAliasInterpolation2d>,
    predictor: Hourglass,
    kp: Conv2d,
    jacobian: Option<Conv2d>,
    num_jacobian_maps: usize,
    temperature: f64,
}

impl KpDetector {
    /// Loads `predictor`, `kp`, `jacobian` (if the config estimates it) and `down`.
    pub fn new(layers: &Layers, common: &CommonParams, p: &KpDetectorParams) -> Result<Self> {
        let predictor = Hourglass::new(
            &layers.pp("predictor"),
            p.block_expansion,
            common.num_channels,
            p.num_blocks,
            p.max_features,
        )?;
        let feats = predictor.out_filters();
        let kp = Conv2d::new(&layers.pp("kp"), feats, common.num_kp, 7, p.pad)?;
        let num_jacobian_maps = if p.single_jacobian_map {
            1
        } else {
            common.num_kp
        };
        let jacobian = if common.estimate_jacobian {
            Some(Conv2d::new(
                &layers.pp("jacobian"),
                feats,
                4 * num_jacobian_maps,
                7,
                p.pad,
            )?)
        } else {
            None
        };
        let down = if p.scale_factor != 1.0 {
            Some(AntiAliasInterpolation2d::new(
                layers.vb().pp("down"),
                common.num_channels,
                p.scale_factor,
            )?)
        } else {
            None
        };
        Ok(Self {
            down,
            predictor,
            kp,
            jacobian,
            num_jacobian_maps,
            temperature: p.temperature,
        })
    }

    /// Keypoints of `x` (B, C, H, W) in [0, 1].
    pub fn detect(&self, x: &Tensor) -> Result<Keypoints> {
        Ok(self.forward_detailed(x)?.keypoints)
    }

    /// Keypoints of `x` with every intermediate.
    pub fn forward_detailed(&self, x: &Tensor) -> Result<KpDetectorOutput> {
        let down = match &self.down {
            Some(d) => Some(d.forward(x)?),
            None => None,
        };
        let input = down.as_ref().unwrap_or(x);
        let feature_map = self.predictor.forward(input)?;
        let kp_logits = self.kp.forward(&feature_map)?;
        let (b, k, h, w) = kp_logits.dims4()?;
        let flat = (kp_logits.reshape((b, k, h * w))? / self.temperature)?;
        let heatmap_flat = candle_nn::ops::softmax_last_dim(&flat)?;
        // gaussian2kp: expected coordinates under the heatmap.
        let grid = make_coordinate_grid(h, w, x.device())?.reshape((1, h * w, 2))?;
        let value = heatmap_flat.broadcast_matmul(&grid)?;
        let (jacobian, jacobian_map) = match &self.jacobian {
            Some(conv) => {
                let jmap = conv.forward(&feature_map)?;
                let maps = jmap.reshape((b, self.num_jacobian_maps, 4, h * w))?;
                let weights = heatmap_flat.reshape((b, k, 1, h * w))?;
                let jac = maps.broadcast_mul(&weights)?.sum(D::Minus1)?;
                (Some(jac.reshape((b, k, 2, 2))?), Some(jmap))
            }
            None => (None, None),
        };
        Ok(KpDetectorOutput {
            keypoints: Keypoints { value, jacobian },
            down,
            feature_map,
            kp_logits,
            heatmap: heatmap_flat.reshape((b, k, h, w))?,
            jacobian_map,
        })
    }
}
