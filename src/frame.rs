//! The frame every stage passes on: an RGB image with its sequence number and capture time, so
//! glass-to-output latency is measured, not guessed. Depends on nothing else in the crate.

use std::sync::Arc;
use std::time::Instant;

/// Width and height in pixels, named so they are never swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Size {
    /// `width` x `height`.
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    /// Number of pixels, width times height.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

/// A size that is not `WIDTHxHEIGHT` with a positive, even width and a positive height (the
/// even width is what YUYV and I420 frames need).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("size {0:?} must look like 640x480: a positive, even width and a positive height")]
pub struct SizeParseError(pub String);

impl std::str::FromStr for Size {
    type Err = SizeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SizeParseError(s.to_string());
        let (w, h) = s.split_once('x').ok_or_else(bad)?;
        let size = Size::new(
            w.trim().parse().map_err(|_| bad())?,
            h.trim().parse().map_err(|_| bad())?,
        );
        if size.width == 0 || size.height == 0 || size.width % 2 == 1 {
            return Err(bad());
        }
        Ok(size)
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// An RGB8 frame (row-major, 3 bytes per pixel). The pixels are shared, so passing a frame to
/// several sinks copies nothing.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Position in its stream, counting from 0 at the source.
    pub seq: u64,
    /// When the source produced it (camera read, file decode, pattern render).
    pub captured_at: Instant,
    /// Its size.
    pub size: Size,
    /// The pixels: `size.pixels() * 3` bytes when made by [`Frame::new`] or
    /// [`Frame::from_image`].
    pub rgb: Arc<Vec<u8>>,
}

/// A frame whose buffer does not match its size.
#[derive(Debug, thiserror::Error)]
#[error("frame buffer has {got} bytes, a {size} RGB frame needs {want}")]
pub struct FrameSizeError {
    /// The frame's size.
    pub size: Size,
    /// Bytes in the buffer.
    pub got: usize,
    /// Bytes the size needs (width * height * 3).
    pub want: usize,
}

impl Frame {
    /// A frame of `size` from an RGB8 buffer, which must hold exactly `size.pixels() * 3` bytes.
    pub fn new(
        seq: u64,
        captured_at: Instant,
        size: Size,
        rgb: Vec<u8>,
    ) -> Result<Self, FrameSizeError> {
        let want = size.pixels() * 3;
        if rgb.len() != want {
            return Err(FrameSizeError {
                size,
                got: rgb.len(),
                want,
            });
        }
        Ok(Self {
            seq,
            captured_at,
            size,
            rgb: Arc::new(rgb),
        })
    }

    /// From an `image` RGB buffer.
    pub fn from_image(seq: u64, captured_at: Instant, img: image::RgbImage) -> Self {
        let size = Size::new(img.width(), img.height());
        Self {
            seq,
            captured_at,
            size,
            rgb: Arc::new(img.into_raw()),
        }
    }

    /// The pixel at (x, y); black outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        if x >= self.size.width || y >= self.size.height {
            return [0; 3];
        }
        let i = (y as usize * self.size.width as usize + x as usize) * 3;
        match self.rgb.get(i..i + 3) {
            Some(p) => [p[0], p[1], p[2]],
            None => [0; 3],
        }
    }

    /// A copy as an `image` buffer (`None` when the buffer is too small for the size).
    pub fn to_image(&self) -> Option<image::RgbImage> {
        image::RgbImage::from_raw(self.size.width, self.size.height, self.rgb.as_ref().clone())
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_are_refused() {
        assert_eq!("640x480".parse::<Size>(), Ok(Size::new(640, 480)));
        assert_eq!("1280x720".parse::<Size>(), Ok(Size::new(1280, 720)));
        for bad in ["", "640", "641x480", "0x480", "640x0", "axb", "640x480x3"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }
}
