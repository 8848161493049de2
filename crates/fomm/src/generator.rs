//! `OcclusionAwareGenerator` of `modules/generator.py`, split at the point where the driving frame
//! first matters: `OcclusionAwareGenerator::encode_source` runs once per portrait (the encoder:
//! `first` and `down_blocks`, plus the dense-motion network's source inputs), and
//! `OcclusionAwareGenerator::decode` runs per driving frame (dense motion, warping the encoded
//! features, occlusion masking, bottleneck, `up_blocks`, `final`). Together they compute exactly
//! the original's `forward`.

use candle_core::{Module, Result, Tensor};

use crate::blocks::{Conv2d, DownBlock2d, Layers, ResBlock2d, SameBlock2d, UpBlock2d, width};
use crate::dense_motion::{DenseMotionNetwork, DenseMotionOutput, DenseMotionSource};
use crate::keypoint_detector::Keypoints;
use crate::load::config::{CommonParams, GeneratorParams};
use crate::ops::grid_sample::grid_sample;
use crate::ops::interpolate::interpolate_bilinear;
use crate::ops::precision::Precision;

/// What the generator keeps about a portrait between frames.
#[derive(Debug, Clone)]
pub struct EncodedSource {
    /// The source image (B, C, H, W), for the optional `deformed` visualisation.
    pub image: Tensor,
    /// Encoder output (B, F, H / 2^n, W / 2^n).
    pub features: Tensor,
    /// The dense-motion network's per-portrait inputs.
    pub dense_motion: Option<DenseMotionSource>,
}

/// What one decode step produced.
#[derive(Debug, Clone)]
pub struct GeneratorOutput {
    /// The animated frame (B, C, H, W), sigmoid output in (0, 1).
    pub prediction: Tensor,
    /// The dense motion network's outputs (`None` without one).
    pub dense_motion: Option<DenseMotionOutput>,
    /// Input of the bottleneck: warped features times the occlusion map.
    pub bottleneck_in: Tensor,
    /// The source warped by the deformation at image resolution (only when asked for).
    pub deformed: Option<Tensor>,
}

/// `OcclusionAwareGenerator`: encoder, optional dense motion network, bottleneck and decoder.
#[derive(Debug, Clone)]
pub struct OcclusionAwareGenerator {
    dense_motion_network: Option<DenseMotionNetwork>,
    first: SameBlock2d,
    down_blocks: Vec<DownBlock2d>,
    up_blocks: Vec<UpBlock2d>,
    bottleneck: Vec<ResBlock2d>,
    final_conv: Conv2d,
}

impl OcclusionAwareGenerator {
    /// Loads the generator under `layers` (its own convolutions at `layers`' precision) with its
    /// dense motion network at `dense_motion`.
    pub fn new(
        layers: &Layers,
        common: &CommonParams,
        p: &GeneratorParams,
        dense_motion: Precision,
    ) -> Result<Self> {
        let dense_motion_network = match &p.dense_motion_params {
            Some(dm) => Some(DenseMotionNetwork::new(
                &Layers::new(layers.vb().pp("dense_motion_network"), dense_motion),
                dm,
                common.num_kp,
                common.num_channels,
                p.estimate_occlusion_map,
            )?),
            None => None,
        };
        let (be, mf, n) = (p.block_expansion, p.max_features, p.num_down_blocks);
        let first = SameBlock2d::new(&layers.pp("first"), common.num_channels, be, 7, 3)?;
        let down_blocks = (0..n)
            .map(|i| {
                DownBlock2d::new(
                    &layers.pp("down_blocks").pp(i),
                    width(be, mf, i),
                    width(be, mf, i + 1),
                    3,
                    1,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let up_blocks = (0..n)
            .map(|i| {
                UpBlock2d::new(
                    &layers.pp("up_blocks").pp(i),
                    width(be, mf, n - i),
                    width(be, mf, n - i - 1),
                    3,
                    1,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let bottleneck_features = width(be, mf, n);
        let bottleneck = (0..p.num_bottleneck_blocks)
            .map(|i| {
                ResBlock2d::new(
                    &layers.pp("bottleneck").pp(format!("r{i}")),
                    bottleneck_features,
                    3,
                    1,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        // `final` is a Rust keyword: field final_conv, checkpoint key `final`.
        let final_conv = Conv2d::new(&layers.pp("final"), be, common.num_channels, 7, 3)?;
        Ok(Self {
            dense_motion_network,
            first,
            down_blocks,
            up_blocks,
            bottleneck,
            final_conv,
        })
    }

    /// The per-portrait half: encoder features and the dense-motion network's source inputs.
    pub fn encode_source(&self, source: &Tensor, kp_source: &Keypoints) -> Result<EncodedSource> {
        let mut out = self.first.forward(source)?;
        for block in &self.down_blocks {
            out = block.forward(&out)?;
        }
        let dense_motion = match &self.dense_motion_network {
            Some(net) => Some(net.prepare_source(source, kp_source)?),
            None => None,
        };
        Ok(EncodedSource {
            image: source.clone(),
            features: out,
            dense_motion,
        })
    }

    /// Dense motion for one driving frame (`None` without a dense motion network).
    pub fn dense_motion(
        &self,
        source: &EncodedSource,
        kp_source: &Keypoints,
        kp_driving: &Keypoints,
        align_corners: bool,
    ) -> Result<Option<DenseMotionOutput>> {
        match (&self.dense_motion_network, &source.dense_motion) {
            (Some(net), Some(dm_source)) => Ok(Some(net.forward(
                dm_source,
                kp_driving,
                kp_source,
                align_corners,
            )?)),
            _ => Ok(None),
        }
    }

    /// The per-frame half: dense motion then [`Self::decode_with_motion`]. `with_deformed` also
    /// renders the warped source (visualisation only).
    pub fn decode(
        &self,
        source: &EncodedSource,
        kp_source: &Keypoints,
        kp_driving: &Keypoints,
        align_corners: bool,
        with_deformed: bool,
    ) -> Result<GeneratorOutput> {
        let dense_motion = self.dense_motion(source, kp_source, kp_driving, align_corners)?;
        self.decode_with_motion(source, dense_motion, align_corners, with_deformed)
    }

    /// Warps the cached features with the dense motion, masks occluded parts, and decodes.
    pub fn decode_with_motion(
        &self,
        source: &EncodedSource,
        dense_motion: Option<DenseMotionOutput>,
        align_corners: bool,
        with_deformed: bool,
    ) -> Result<GeneratorOutput> {
        let mut out = source.features.clone();
        let mut deformed = None;
        if let Some(dm) = &dense_motion {
            out = deform_input(&out, &dm.deformation, align_corners)?;
            if let Some(occlusion) = &dm.occlusion_map {
                let (_, _, h, w) = out.dims4()?;
                let (_, _, oh, ow) = occlusion.dims4()?;
                let occlusion = if (oh, ow) != (h, w) {
                    interpolate_bilinear(occlusion, h, w)?
                } else {
                    occlusion.clone()
                };
                out = out.broadcast_mul(&occlusion)?;
            }
            if with_deformed {
                deformed = Some(deform_input(&source.image, &dm.deformation, align_corners)?);
            }
        }
        let bottleneck_in = out.clone();
        for block in &self.bottleneck {
            out = block.forward(&out)?;
        }
        for block in &self.up_blocks {
            out = block.forward(&out)?;
        }
        let prediction = candle_nn::ops::sigmoid(&self.final_conv.forward(&out)?)?;
        Ok(GeneratorOutput {
            prediction,
            dense_motion,
            bottleneck_in,
            deformed,
        })
    }
}

/// `deform_input`: warps `input` with `deformation` (B, h, w, 2), first resizing the deformation
/// bilinearly to the input's size when they differ (generator.py lines 53-56).
pub fn deform_input(input: &Tensor, deformation: &Tensor, align_corners: bool) -> Result<Tensor> {
    let (_, h_old, w_old, _) = deformation.dims4()?;
    let (_, _, h, w) = input.dims4()?;
    let grid = if (h_old, w_old) != (h, w) {
        let chw = deformation.permute((0, 3, 1, 2))?.contiguous()?;
        interpolate_bilinear(&chw, h, w)?
            .permute((0, 2, 3, 1))?
            .contiguous()?
    } else {
        deformation.clone()
    };
    grid_sample(input, &grid, align_corners)
}
