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
    /// The id of the portrait in use.
    current_id: Option<u64>,
}

impl Portraits {
    pub(super) fn new(side: u32) -> Self {
        Self {
            side,
            cache: PortraitCache::default(),
            current_id: None,
        }
    }

    /// Makes `id` current, preparing `image` (cropped to a centred square, resized) if it is new.
    pub(super) fn select(
        &mut self,
        id: u64,
        image: &image::RgbImage,
    ) -> Result<&Portrait, EngineError> {
        let side = self.side;
        let p = self.cache.select(id, || prepare(image, side))?;
        self.current_id = Some(id);
        Ok(p)
    }

    /// The portrait in use.
    pub(super) fn current(&self) -> Option<&Portrait> {
        self.cache.current()
    }

    /// The portrait in use with its id.
    pub(super) fn current_with_id(&self) -> Option<(u64, &Portrait)> {
        Some((self.current_id?, self.cache.current()?))
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
