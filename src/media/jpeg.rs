//! JPEG decoding that gives the same pixels as the original FOMM demo.
//!
//! The demo reads pictures with `imageio`, which decodes JPEG through Pillow, and Pillow decodes
//! through libjpeg-turbo with libjpeg's default settings (Pillow's `JpegDecode.c` changes the DCT
//! method and the upsampling only in its "draft" mode, which imageio does not use): the accurate
//! integer inverse DCT (`JDCT_ISLOW`) and "fancy" (triangle-filter) chroma upsampling. Other JPEG
//! decoders round differently (the `image` crate's decoder differs from Pillow by up to 4 levels on
//! a typical photo), so JPEG files are decoded here with libjpeg-turbo's decoder too, through the
//! `mozjpeg` crate (a libjpeg-turbo fork; its decoder is libjpeg-turbo's), with the same settings.
//! The tests check the output byte for byte against Pillow (`tests/data/jpeg/`).
//!
//! Colour handling follows Pillow's `JpegImagePlugin`, which picks the mode from the number of
//! components: 1 is grey (`L`), 3 is RGB (libjpeg converts from YCbCr or keeps RGB, as the JFIF
//! and Adobe markers say), 4 is CMYK, read with Adobe's inverted convention (`CMYK;I`) for every
//! four-component file; [`decode_jpeg_like_pillow`] returns such a file already converted the way
//! Pillow's `.convert("RGB")` does. Like Pillow, a file that ends before its end-of-image marker is
//! an error ("image file is truncated"), while damaged data inside a complete file is decoded as
//! well as libjpeg can, silently.
//!
//! libjpeg reports fatal errors through a callback that must not return; the `mozjpeg` crate's
//! callback unwinds with `std::panic::resume_unwind` (which does not run the panic hook, so nothing
//! is printed), and this module catches that with `catch_unwind` and returns an ordinary error.
//! This needs the default `panic = "unwind"`: with `panic = "abort"` a corrupt JPEG file would
//! end the process.

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use image::error::{DecodingError, ImageError, ImageFormatHint};
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use mozjpeg::{ColorSpace, DctMethod, Decompress};

/// Every JPEG file starts with the start-of-image marker `FF D8` followed by the next marker's
/// `FF` (ITU-T T.81, B.2.1); the `image` crate and libmagic sniff the same three bytes.
const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Pillow refuses pictures with more than `2 * Image.MAX_IMAGE_PIXELS` pixels
/// (`DecompressionBombError`); `MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3` in Pillow's
/// `PIL/Image.py`. Checked before any pixel memory is allocated.
pub const MAX_PIXELS: u64 = 2 * (1024 * 1024 * 1024 / 4 / 3);

/// Rows decoded between two checks for a truncated file.
const ROWS_PER_CHUNK: usize = 16;

/// Whether `bytes` start like a JPEG file (`FF D8 FF`).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&JPEG_MAGIC)
}

/// Decode a JPEG file held in memory exactly as Pillow does (see the module documentation).
///
/// Returns [`DynamicImage::ImageLuma8`] for grey files and [`DynamicImage::ImageRgb8`] for the
/// others (CMYK files converted to RGB as Pillow's `convert("RGB")` does). Errors are
/// [`ImageError::Decoding`] naming JPEG as the format; no input makes this panic or abort.
pub fn decode_jpeg_like_pillow(bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    let hit_end = Rc::new(Cell::new(false));
    // The `mozjpeg` crate turns libjpeg's fatal errors into an unwind carrying the message.
    let result = catch_unwind(AssertUnwindSafe(|| decode(bytes, &hit_end)));
    // Running out of data comes first: libjpeg's own complaint is then only a consequence (it
    // reads a fake end marker where the rest of a segment should be).
    if hit_end.get() {
        return Err(truncated());
    }
    match result {
        Ok(decoded) => decoded,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("libjpeg stopped with an unknown error");
            let msg = msg.strip_prefix("libjpeg fatal error: ").unwrap_or(msg);
            Err(jpeg_error(format!(
                "the JPEG data is invalid ({msg}); the file is damaged or not really a JPEG picture"
            )))
        }
    }
}

fn truncated() -> ImageError {
    jpeg_error(
        "the JPEG file ends before the picture is complete (it is truncated); \
         get a complete copy of the file"
            .to_string(),
    )
}

/// The component layouts Pillow knows (`JpegImagePlugin.SOF`).
#[derive(Clone, Copy)]
enum Layout {
    Grey,
    Rgb,
    Cmyk,
}

impl Layout {
    fn channels(self) -> usize {
        match self {
            Layout::Grey => 1,
            Layout::Rgb => 3,
            Layout::Cmyk => 4,
        }
    }

    /// What Pillow asks libjpeg to output (`JpegDecode.c`: rawmode `L`, `RGB`, `CMYK;I`).
    fn out_color_space(self) -> ColorSpace {
        match self {
            Layout::Grey => ColorSpace::JCS_GRAYSCALE,
            Layout::Rgb => ColorSpace::JCS_RGB,
            Layout::Cmyk => ColorSpace::JCS_CMYK,
        }
    }
}

/// Decodes; sets `hit_end` when the data ran out (the caller turns that into the error).
fn decode(bytes: &[u8], hit_end: &Rc<Cell<bool>>) -> Result<DynamicImage, ImageError> {
    let reader = EndWatch {
        rest: bytes,
        hit_end: Rc::clone(hit_end),
    };

    let mut dec = Decompress::builder()
        .from_reader(reader)
        .map_err(|e| jpeg_error(format!("the JPEG header could not be read: {e}")))?;
    if hit_end.get() {
        return Err(truncated());
    }
    // Pillow's settings: libjpeg's defaults, which `JpegDecode.c` leaves alone outside draft mode.
    dec.dct_method(DctMethod::IntegerSlow);
    dec.do_fancy_upsampling(true);

    let layout = match dec.components().len() {
        1 => Layout::Grey,
        3 => Layout::Rgb,
        4 => Layout::Cmyk,
        n => {
            return Err(jpeg_error(format!(
                "the JPEG file has {n} colour components; only grey (1), RGB/YCbCr (3) and CMYK (4) \
                 pictures are supported: convert it to an ordinary RGB picture"
            )));
        }
    };
    let (width, height) = dec.size();
    let pixels = (width as u64).saturating_mul(height as u64);
    if pixels > MAX_PIXELS {
        return Err(jpeg_error(format!(
            "the JPEG picture is {width}x{height} ({pixels} pixels), more than the {MAX_PIXELS} \
             pixels Pillow accepts: scale it down first"
        )));
    }
    // Before libjpeg reserves its buffers (a progressive file's coefficients) and before ours.
    let decoded = pixels.saturating_mul(layout.channels() as u64);
    if let Some(message) =
        super::budget::check_declared_size(width as u64, height as u64, decoded, bytes.len())
    {
        return Err(jpeg_error(message));
    }
    let (Ok(w32), Ok(h32)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(jpeg_error(format!(
            "the JPEG picture size {width}x{height} is out of range"
        )));
    };

    let mut started = dec
        .to_colorspace(layout.out_color_space())
        .map_err(|e| jpeg_error(format!("the JPEG decoder could not start: {e}")))?;
    // Multi-scan (progressive) files are read completely by this point.
    if hit_end.get() {
        return Err(truncated());
    }
    if (started.width(), started.height()) != (width, height) {
        return Err(jpeg_error(format!(
            "the JPEG decoder produced {}x{} pixels for a {width}x{height} picture",
            started.width(),
            started.height()
        )));
    }

    let row_len = width * layout.channels();
    let total = row_len
        .checked_mul(height)
        .ok_or_else(|| jpeg_error(format!("the JPEG picture {width}x{height} is too large")))?;
    let mut data = Vec::new();
    data.try_reserve_exact(total).map_err(|_| {
        jpeg_error(format!(
            "not enough memory for the {width}x{height} JPEG picture ({total} bytes)"
        ))
    })?;
    data.resize(total, 0u8);
    if row_len > 0 {
        for chunk in data.chunks_mut(row_len * ROWS_PER_CHUNK) {
            started
                .read_scanlines_into(chunk)
                .map_err(|e| jpeg_error(format!("the JPEG pixel data could not be read: {e}")))?;
            if hit_end.get() {
                return Err(truncated());
            }
        }
    }
    // Reads on to the end-of-image marker, which Pillow also insists on.
    started
        .finish()
        .map_err(|e| jpeg_error(format!("the end of the JPEG data could not be read: {e}")))?;
    if hit_end.get() {
        return Err(truncated());
    }

    let bad_size = || jpeg_error(format!("the decoded JPEG does not fill {width}x{height}"));
    Ok(match layout {
        Layout::Grey => {
            DynamicImage::ImageLuma8(GrayImage::from_raw(w32, h32, data).ok_or_else(bad_size)?)
        }
        Layout::Rgb => {
            DynamicImage::ImageRgb8(RgbImage::from_raw(w32, h32, data).ok_or_else(bad_size)?)
        }
        Layout::Cmyk => {
            let rgb = data
                .chunks_exact(4)
                .flat_map(|p| inverted_cmyk_to_rgb([p[0], p[1], p[2], p[3]]))
                .collect();
            DynamicImage::ImageRgb8(RgbImage::from_raw(w32, h32, rgb).ok_or_else(bad_size)?)
        }
    })
}

/// One pixel of a four-component JPEG as libjpeg outputs it, to RGB as Pillow gives it: Pillow
/// reads every such file as Adobe-style inverted CMYK (rawmode `CMYK;I`: each value `v` becomes
/// `255 - v`), then `convert("RGB")` applies `cmyk2rgb` (Pillow's `libImaging/Convert.c`):
/// `nk = 255 - K`, `out = clip(nk - MULDIV255(ink, nk))` with
/// `MULDIV255(a, b) = (t + (t >> 8)) >> 8, t = a * b + 128` (`libImaging/ImagingUtils.h`).
/// `tests/data/jpeg/make_reference.py` checks this formula against Pillow for all inputs.
pub fn inverted_cmyk_to_rgb(raw: [u8; 4]) -> [u8; 3] {
    // After the inversion K is 255 - raw[3], so nk = 255 - K = raw[3].
    let nk = i32::from(raw[3]);
    let channel = |raw_ink: u8| {
        let ink = 255 - i32::from(raw_ink);
        let t = ink * nk + 128;
        (nk - (((t >> 8) + t) >> 8)).clamp(0, 255) as u8
    };
    [channel(raw[0]), channel(raw[1]), channel(raw[2])]
}

fn jpeg_error(message: String) -> ImageError {
    ImageError::Decoding(DecodingError::new(
        ImageFormatHint::Exact(ImageFormat::Jpeg),
        message,
    ))
}

/// The file's bytes, noting whether the decoder ever asked for more after the last one. libjpeg
/// stops reading at the end-of-image marker, so asking for more means the file is cut short (the
/// `mozjpeg` crate then feeds libjpeg a fake end marker and only a suppressed warning says so).
struct EndWatch<'a> {
    rest: &'a [u8],
    hit_end: Rc<Cell<bool>>,
}

impl Read for EndWatch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.rest.len().min(buf.len());
        if n == 0 && !buf.is_empty() {
            self.hit_end.set(true);
        }
        let (head, tail) = self.rest.split_at(n);
        if let Some(dst) = buf.get_mut(..n) {
            dst.copy_from_slice(head);
        }
        self.rest = tail;
        Ok(n)
    }
}

impl BufRead for EndWatch<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.rest.is_empty() {
            self.hit_end.set(true);
        }
        Ok(self.rest)
    }

    fn consume(&mut self, amt: usize) {
        self.rest = self.rest.get(amt..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic() {
        assert!(is_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(!is_jpeg(&[0xFF, 0xD8]));
        assert!(!is_jpeg(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn cmyk_conversion_matches_pillow_formula() {
        // Raw (not yet inverted) values: K raw 255 means no black ink.
        assert_eq!(inverted_cmyk_to_rgb([255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(inverted_cmyk_to_rgb([0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(inverted_cmyk_to_rgb([10, 128, 250, 0]), [0, 0, 0]);
        // ink = 255 - 55 = 200, nk = 100: t = 20128, MULDIV255 = (78 + 20128) >> 8 = 78.
        assert_eq!(inverted_cmyk_to_rgb([55, 55, 55, 100])[0], 22);
    }
}
