//! `Encoder`, `Decoder` and `Hourglass` of `modules/util.py`: the U-Net used by the keypoint
//! detector and the dense motion network.

use candle_core::{Module, Result, Tensor};

use crate::blocks::{DownBlock2d, Layers, UpBlock2d, width};

/// `Encoder`: `num_blocks` DownBlock2d (3x3, pad 1); returns the input and every block's output.
#[derive(Debug, Clone)]
pub struct Encoder {
    down_blocks: Vec<DownBlock2d>,
}

impl Encoder {
    /// Loads `down_blocks.{i}`.
    pub fn new(
        layers: &Layers,
        block_expansion: usize,
        in_features: usize,
        num_blocks: usize,
        max_features: usize,
    ) -> Result<Self> {
        let layers = layers.pp("down_blocks");
        let mut down_blocks = Vec::with_capacity(num_blocks);
        for i in 0..num_blocks {
            let c_in = if i == 0 {
                in_features
            } else {
                width(block_expansion, max_features, i)
            };
            let c_out = width(block_expansion, max_features, i + 1);
            down_blocks.push(DownBlock2d::new(&layers.pp(i), c_in, c_out, 3, 1)?);
        }
        Ok(Self { down_blocks })
    }

    /// `[x, down_0(x), down_1(down_0(x)), ...]`
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut outs = Vec::with_capacity(self.down_blocks.len() + 1);
        outs.push(x.clone());
        for block in &self.down_blocks {
            let next = match outs.last() {
                Some(prev) => block.forward(prev)?,
                None => block.forward(x)?,
            };
            outs.push(next);
        }
        Ok(outs)
    }
}

/// `Decoder`: UpBlock2d from the deepest features back up, concatenating the encoder's skips.
#[derive(Debug, Clone)]
pub struct Decoder {
    up_blocks: Vec<UpBlock2d>,
    out_filters: usize,
}

impl Decoder {
    /// Loads `up_blocks.{j}`.
    pub fn new(
        layers: &Layers,
        block_expansion: usize,
        in_features: usize,
        num_blocks: usize,
        max_features: usize,
    ) -> Result<Self> {
        let layers = layers.pp("up_blocks");
        let mut up_blocks = Vec::with_capacity(num_blocks);
        // Module index j counts up while i runs over reversed(range(num_blocks)).
        for (j, i) in (0..num_blocks).rev().enumerate() {
            let factor = if i == num_blocks - 1 { 1 } else { 2 };
            let c_in = factor * width(block_expansion, max_features, i + 1);
            let c_out = width(block_expansion, max_features, i);
            up_blocks.push(UpBlock2d::new(&layers.pp(j), c_in, c_out, 3, 1)?);
        }
        Ok(Self {
            up_blocks,
            out_filters: block_expansion + in_features,
        })
    }

    /// Channels of the output: `block_expansion + in_features`.
    pub fn out_filters(&self) -> usize {
        self.out_filters
    }

    /// Consumes the encoder's outputs (deepest last).
    pub fn forward(&self, mut skips: Vec<Tensor>) -> Result<Tensor> {
        let mut out = skips
            .pop()
            .ok_or_else(|| candle_core::Error::Msg("decoder given no features".into()))?;
        for block in &self.up_blocks {
            out = block.forward(&out)?;
            let skip = skips.pop().ok_or_else(|| {
                candle_core::Error::Msg("decoder ran out of skip connections".into())
            })?;
            out = Tensor::cat(&[&out, &skip], 1)?;
        }
        Ok(out)
    }
}

/// `Hourglass`: Encoder then Decoder; output has `block_expansion + in_features` channels.
#[derive(Debug, Clone)]
pub struct Hourglass {
    encoder: Encoder,
    decoder: Decoder,
}

impl Hourglass {
    /// Loads `encoder` and `decoder`.
    pub fn new(
        layers: &Layers,
        block_expansion: usize,
        in_features: usize,
        num_blocks: usize,
        max_features: usize,
    ) -> Result<Self> {
        Ok(Self {
            encoder: Encoder::new(
                &layers.pp("encoder"),
                block_expansion,
                in_features,
                num_blocks,
                max_features,
            )?,
            decoder: Decoder::new(
                &layers.pp("decoder"),
                block_expansion,
                in_features,
                num_blocks,
                max_features,
            )?,
        })
    }

    /// Channels of the output: `block_expansion + in_features`.
    pub fn out_filters(&self) -> usize {
        self.decoder.out_filters()
    }
}

impl Module for Hourglass {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.decoder.forward(self.encoder.forward(x)?)
    }
}
