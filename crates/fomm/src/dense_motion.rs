//! `DenseMotionNetwork` of `modules/dense_motion.py`: from K local affine motions to one dense
//! backward flow ("deformation") and an occlusion map (paper Sec. 3.2-3.3).
//!
//! The source-only parts (downscaled source, source keypoint Gaussians) are computed once per
//! portrait in [`DenseMotionSource`]; per driving frame only the rest runs.

use candle_core::{Module, Result, Tensor};

use crate::blocks::{Conv2d, Layers, softmax_dim1};
use crate::hourglass::Hourglass;
use crate::keypoint_detector::Keypoints;
use crate::load::config::DenseMotionParams;
use crate::motion_transfer::inverse_2x2;
use crate::ops::anti_alias::AntiAliasInterpolation2d;
use crate::ops::grid_sample::grid_sample;
use crate::util::{kp2gaussian, make_coordinate_grid};

/// Per-portrait inputs of the dense motion network.
#[derive(Debug, Clone)]
pub struct DenseMotionSource {
    /// The source image at dense-motion resolution (B, C, h, w).
    pub source_down: Tensor,
    /// kp2gaussian(kp_source) at that resolution (B, K, h, w).
    pub gaussian_source: Tensor,
}

/// Outputs of one forward pass (names as in the original's output dict).
#[derive(Debug, Clone)]
pub struct DenseMotionOutput {
    /// (B, K+1, 1, h, w): zeros, then gaussian(kp_driving) - gaussian(kp_source) (Eq. 6).
    pub heatmap_representation: Tensor,
    /// (B, K+1, h, w, 2): identity, then T_{S<-D} per keypoint (Eq. 4).
    pub sparse_motion: Tensor,
    /// (B, K+1, C, h, w): the source warped by each sparse motion.
    pub sparse_deformed: Tensor,
    /// (B, K+1, h, w): softmax weights of the sparse motions.
    pub mask: Tensor,
    /// (B, h, w, 2): the dense backward flow, sampling grid layout.
    pub deformation: Tensor,
    /// (B, 1, h, w) in (0, 1), when the model estimates occlusion.
    pub occlusion_map: Option<Tensor>,
}

/// `DenseMotionNetwork`: an hourglass over the heatmaps and deformed sources, with the mask and
/// (optional) occlusion heads.
#[derive(Debug, Clone)]
pub struct DenseMotionNetwork {
    down: Option<AntiAliasInterpolation2d>,
    hourglass: Hourglass,
    mask: Conv2d,
    occlusion: Option<Conv2d>,
    num_kp: usize,
    kp_variance: f64,
}

impl DenseMotionNetwork {
    /// Loads `hourglass`, `mask`, `occlusion` (if the config estimates it) and `down`.
    pub fn new(
        layers: &Layers,
        p: &DenseMotionParams,
        num_kp: usize,
        num_channels: usize,
        estimate_occlusion_map: bool,
    ) -> Result<Self> {
        let hourglass = Hourglass::new(
            &layers.pp("hourglass"),
            p.block_expansion,
            (num_kp + 1) * (num_channels + 1),
            p.num_blocks,
            p.max_features,
        )?;
        let feats = hourglass.out_filters();
        let mask = Conv2d::new(&layers.pp("mask"), feats, num_kp + 1, 7, 3)?;
        let occlusion = if estimate_occlusion_map {
            Some(Conv2d::new(&layers.pp("occlusion"), feats, 1, 7, 3)?)
        } else {
            None
        };
        let down = if p.scale_factor != 1.0 {
            Some(AntiAliasInterpolation2d::new(
                layers.vb().pp("down"),
                num_channels,
                p.scale_factor,
            )?)
        } else {
            None
        };
        Ok(Self {
            down,
            hourglass,
            mask,
            occlusion,
            num_kp,
            kp_variance: p.kp_variance,
        })
    }

    /// The per-portrait part: downscaled source and source keypoint Gaussians.
    pub fn prepare_source(
        &self,
        source: &Tensor,
        kp_source: &Keypoints,
    ) -> Result<DenseMotionSource> {
        let source_down = match &self.down {
            Some(d) => d.forward(source)?,
            None => source.clone(),
        };
        let (_, _, h, w) = source_down.dims4()?;
        let gaussian_source = kp2gaussian(&kp_source.value, h, w, self.kp_variance)?;
        Ok(DenseMotionSource {
            source_down,
            gaussian_source,
        })
    }

    /// `create_sparse_motions`: for each keypoint the first-order approximation of the backward
    /// map, z -> J_s J_d^-1 (z - kp_d) + kp_s (paper Eq. 4), plus the identity for the background.
    pub fn sparse_motions(
        &self,
        h: usize,
        w: usize,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
    ) -> Result<Tensor> {
        let (b, k, _) = kp_driving.value.dims3()?;
        let device = kp_driving.value.device();
        let identity = make_coordinate_grid(h, w, device)?.reshape((1, 1, h * w, 2))?;
        let mut coords = identity.broadcast_sub(&kp_driving.value.reshape((b, k, 1, 2))?)?;
        if let (Some(jd), Some(js)) = (&kp_driving.jacobian, &kp_source.jacobian) {
            let jac = js.matmul(&inverse_2x2(jd)?)?;
            // (J c) for row vectors c: c J^T.
            coords = coords.matmul(&jac.transpose(2, 3)?.contiguous()?)?;
        }
        let driving_to_source = coords.broadcast_add(&kp_source.value.reshape((b, k, 1, 2))?)?;
        let identity = identity.broadcast_as((b, 1, h * w, 2))?;
        Tensor::cat(&[&identity, &driving_to_source], 1)?.reshape((b, k + 1, h, w, 2))
    }

    /// One driving frame: heatmaps, sparse motions, deformed sources, mask, dense deformation
    /// and occlusion map.
    pub fn forward(
        &self,
        source: &DenseMotionSource,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
        align_corners: bool,
    ) -> Result<DenseMotionOutput> {
        let (b, c, h, w) = source.source_down.dims4()?;
        let k = self.num_kp;
        // create_heatmap_representations (Eq. 6).
        let gaussian_driving = kp2gaussian(&kp_driving.value, h, w, self.kp_variance)?;
        let heat = (gaussian_driving - &source.gaussian_source)?;
        let zeros = Tensor::zeros((b, 1, h, w), heat.dtype(), heat.device())?;
        let heatmap_representation = Tensor::cat(&[&zeros, &heat], 1)?.unsqueeze(2)?;

        let sparse_motion = self.sparse_motions(h, w, kp_driving, kp_source)?;

        // create_deformed_source_image: the source warped by each of the K+1 motions.
        let repeated = source
            .source_down
            .unsqueeze(1)?
            .broadcast_as((b, k + 1, c, h, w))?
            .reshape((b * (k + 1), c, h, w))?;
        let grids = sparse_motion.reshape((b * (k + 1), h, w, 2))?;
        let sparse_deformed =
            grid_sample(&repeated, &grids, align_corners)?.reshape((b, k + 1, c, h, w))?;

        let input = Tensor::cat(&[&heatmap_representation, &sparse_deformed], 2)?.reshape((
            b,
            (k + 1) * (c + 1),
            h,
            w,
        ))?;
        let prediction = self.hourglass.forward(&input)?;

        let mask = softmax_dim1(&self.mask.forward(&prediction)?)?;
        // deformation = sum_k mask_k * sparse_motion_k, in (B, h, w, 2) layout.
        let weights = mask.unsqueeze(4)?;
        let deformation = sparse_motion.broadcast_mul(&weights)?.sum(1)?;
        let occlusion_map = match &self.occlusion {
            Some(conv) => Some(candle_nn::ops::sigmoid(&conv.forward(&prediction)?)?),
            None => None,
        };
        Ok(DenseMotionOutput {
            heatmap_representation,
            sparse_motion,
            sparse_deformed,
            mask,
            deformation,
            occlusion_map,
        })
    }
}
