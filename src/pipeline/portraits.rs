//! The portraits the inference thread knows, by id: each as the engine's input tensor and as the
//! still frame (marked as not calibrated) shown while waiting, both made once.

use std::time::Instant;

use candle_core::Tensor;

use crate::engine::{EngineError, PortraitCache};
use crate::frame::Frame;
use crate::media::resize::{center_square_crop, rgb8_to_tensor};
use crate::output::compose::compose;

/// A portrait as the engine takes it and as the still shown before calibration.
#[derive(Clone)]
pub(super) struct Portrait {
    pub(super) tensor: Tensor,
    pub(super) still: Frame,
}

/// The portraits by id, at the engine's square frame side.
pub(super) struct Portraits {
    side: u32,
    cache: PortraitCache<Portrait>,
}

impl Portraits {
    pub(super) fn new(side: u32) -> Self {
        Self {
            side,
            cache: PortraitCache::default(),
        }
    }

    /// Makes `id` current, preparing `image` (cropped to a centred square, resized) if it is new.
    pub(super) fn select(
        &mut self,
        id: u64,
        image: &image::RgbImage,
    ) -> Result<&Portrait, EngineError> {
        let side = self.side;
        self.cache.select(id, || prepare(image, side))
    }

    /// The portrait in use.
    pub(super) fn current(&self) -> Option<&Portrait> {
        self.cache.current()
    }
}

fn prepare(image: &image::RgbImage, side: u32) -> Result<Portrait, EngineError> {
    let resized;
    let image = if image.width() == side && image.height() == side {
        image
    } else {
        let square = center_square_crop(image);
        resized =
            image::imageops::resize(&square, side, side, image::imageops::FilterType::Triangle);
        &resized
    };
    let side = side as usize;
    let tensor = rgb8_to_tensor(image.as_raw(), side, side)?;
    let f = Frame::from_image(0, Instant::now(), image.clone());
    Ok(Portrait {
        tensor,
        still: compose(&f, f.size, true),
    })
}
