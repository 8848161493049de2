//! Folders of numbered pictures: reading driving frames from one, writing results into one.

use std::cmp::Ordering;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::error::{DecodingError, ImageError, ImageFormatHint};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use super::budget::check_declared_size;
pub use super::budget::decode_budget;
use super::{MediaError, jpeg};

/// Picture extensions [`list_image_files`] picks up (lower case; matched case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff"];

/// The pictures in `dir` (not its sub-folders), in natural name order: digit runs compare by their
/// numeric value, so `frame2.png` comes before `frame10.png`, and zero-padded names keep their plain
/// order. An empty result is an error ([`MediaError::NoImages`]).
pub fn list_image_files(dir: &Path) -> Result<Vec<PathBuf>, MediaError> {
    let io_err = |action, e| MediaError::Io {
        action,
        path: dir.to_path_buf(),
        source: e,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("list the folder", e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list the folder", e))?;
        let path = entry.path();
        let known = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        // `is_file` follows symbolic links; folders named `x.png` are skipped.
        if known && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(MediaError::NoImages {
            dir: dir.to_path_buf(),
            extensions: IMAGE_EXTENSIONS.join(", "),
        });
    }
    files.sort_by(|a, b| {
        let an = a.file_name().unwrap_or_default();
        let bn = b.file_name().unwrap_or_default();
        natural_cmp(&an.to_string_lossy(), &bn.to_string_lossy()).then_with(|| an.cmp(bn))
    });
    Ok(files)
}

/// Natural ("numeric-aware") comparison: runs of ASCII digits compare by value (then by length, so
/// `01` < `1` is decided consistently), everything else by character.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_digits(a);
                let (db, rb) = split_digits(b);
                let ta = trim_zeros(da);
                let tb = trim_zeros(db);
                // Longer significant part = larger number; equal length: digit by digit.
                let ord = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| da.len().cmp(&db.len()));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = ra;
                b = rb;
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

/// Decode any supported picture file (format from its content, not its name).
///
/// JPEG files (content starting `FF D8 FF`) are decoded by libjpeg-turbo exactly as Pillow decodes
/// them (see [`crate::media::jpeg`]): grey ones come back as [`DynamicImage::ImageLuma8`], CMYK ones
/// already converted to RGB as Pillow's `convert("RGB")` does, all others as
/// [`DynamicImage::ImageRgb8`]. Other formats go through the `image` crate.
pub fn load_image(path: &Path) -> Result<DynamicImage, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::Io {
        action: "read the image",
        path: path.to_path_buf(),
        source: e,
    })?;
    decode_image(&bytes, path)
}

/// [`load_image`] for a file already in memory; `path` names it in errors. The size a picture
/// declares is checked against its file size ([`decode_budget`]) before any pixel memory is
/// reserved.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<DynamicImage, MediaError> {
    let image_err = |source| MediaError::Image {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    if jpeg::is_jpeg(bytes) {
        return jpeg::decode_jpeg_like_pillow(bytes).map_err(image_err);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::Io {
            action: "read the image",
            path: path.to_path_buf(),
            source: e,
        })?;
    let format = reader.format();
    if format == Some(image::ImageFormat::Tiff)
        && let Some(message) = check_tiff_directories(bytes)
    {
        return Err(image_err(ImageError::Decoding(DecodingError::new(
            ImageFormatHint::Exact(image::ImageFormat::Tiff),
            message,
        ))));
    }
    let mut decoder = reader.into_decoder().map_err(image_err)?;
    let (w, h) = decoder.dimensions();
    if let Some(message) = check_declared_size(
        u64::from(w),
        u64::from(h),
        decoder.total_bytes(),
        bytes.len(),
    ) {
        let hint = format.map_or(ImageFormatHint::Unknown, ImageFormatHint::Exact);
        return Err(image_err(ImageError::Decoding(DecodingError::new(
            hint, message,
        ))));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(decode_budget(bytes.len()));
    decoder.set_limits(limits).map_err(image_err)?;
    DynamicImage::from_decoder(decoder).map_err(image_err)
}

/// Checks the entries of a TIFF file's directories before the `tiff` crate reads them: its
/// decoder reserves memory for as many values as an entry declares before reading them (up to
/// 256 MiB, whatever the file's size), so an entry whose values would lie beyond the end of the
/// file is refused here. Returns the message for such an entry; `None` when every entry fits, or
/// when the structure is too broken to walk (the decoder then reports it).
fn check_tiff_directories(bytes: &[u8]) -> Option<String> {
    let le = match bytes.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let uint = |at: usize, n: usize| -> Option<u64> {
        let b = bytes.get(at..at.checked_add(n)?)?;
        Some(b.iter().enumerate().fold(0u64, |v, (i, &x)| {
            let shift = if le { 8 * i } else { 8 * (n - 1 - i) };
            v | (u64::from(x) << shift)
        }))
    };
    let big = match uint(2, 2)? {
        42 => false,
        43 => true,
        _ => return None,
    };
    // Classic TIFF: 2-byte entry count, 12-byte entries, 4-byte counts and offsets; BigTIFF: 8,
    // 20, 8.
    let (count_len, entry_len, word) = if big { (8, 20, 8) } else { (2, 12, 4) };
    let mut ifd = uint(if big { 8 } else { 4 }, word)?;
    // Directories are chained; a loop in the chain ends after 64.
    for _ in 0..64 {
        if ifd == 0 {
            return None;
        }
        let at = usize::try_from(ifd).ok()?;
        let entries = uint(at, count_len)?;
        let first = at.checked_add(count_len)?;
        let mut k = 0u64;
        while k < entries {
            let e = first.checked_add(usize::try_from(k).ok()?.checked_mul(entry_len)?)?;
            let tag = uint(e, 2)?;
            let value_size = match uint(e + 2, 2)? {
                1 | 2 | 6 | 7 => 1,
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 | 16..=18 => 8,
                _ => 0, // a type the decoder ignores
            };
            let count = uint(e + 4, word)?;
            let needed = count.saturating_mul(value_size);
            if needed > word as u64 {
                let offset = uint(e + 4 + word, word)?;
                if offset.saturating_add(needed) > bytes.len() as u64 {
                    return Some(format!(
                        "the TIFF entry for tag {tag} declares {count} values ({needed} bytes) \
                         beyond the end of the {}-byte file: the file is damaged",
                        bytes.len()
                    ));
                }
            }
            k += 1;
        }
        let next = first.checked_add(usize::try_from(entries).ok()?.checked_mul(entry_len)?)?;
        ifd = uint(next, word)?;
    }
    None
}

/// Decode a picture as 8-bit RGB, the way the original demo's input ends up (imageio + Pillow, then
/// `[..., :3]`): an alpha channel is dropped (not blended), grey is replicated into R, G and B (the
/// original demo fails on grey pictures; see [`crate::media::resize`]), and 16-bit samples keep their
/// high byte, as Pillow's 16-bit PNG decoding does. Float pictures are clamped to `[0, 1]` and rounded.
/// EXIF orientation is not applied (neither imageio nor Pillow applies it by default). JPEG files
/// decode to Pillow's exact pixels, CMYK ones converted as Pillow's `convert("RGB")` does.
pub fn load_rgb(path: &Path) -> Result<RgbImage, MediaError> {
    Ok(to_rgb8_like_pillow(load_image(path)?))
}

/// The conversion of [`load_rgb`].
pub fn to_rgb8_like_pillow(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let from_fn =
        |f: &dyn Fn(u32, u32) -> [u8; 3]| RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    match img {
        DynamicImage::ImageRgb8(i) => i,
        DynamicImage::ImageRgba8(i) => from_fn(&|x, y| {
            let p = i.get_pixel(x, y).0;
            [p[0], p[1], p[2]]
        }),
        DynamicImage::ImageLuma8(i) => from_fn(&|x, y| [i.get_pixel(x, y).0[0]; 3]),
        DynamicImage::ImageLumaA8(i) => from_fn(&|x, y| [i.get_pixel(x, y).0[0]; 3]),
        DynamicImage::ImageRgb16(i) => from_fn(&|x, y| {
            let p = i.get_pixel(x, y).0;
            [hi(p[0]), hi(p[1]), hi(p[2])]
        }),
        DynamicImage::ImageRgba16(i) => from_fn(&|x, y| {
            let p = i.get_pixel(x, y).0;
            [hi(p[0]), hi(p[1]), hi(p[2])]
        }),
        DynamicImage::ImageLuma16(i) => from_fn(&|x, y| [hi(i.get_pixel(x, y).0[0]); 3]),
        DynamicImage::ImageLumaA16(i) => from_fn(&|x, y| [hi(i.get_pixel(x, y).0[0]); 3]),
        other => other.to_rgb8(),
    }
}

fn hi(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Text a PNG carries besides its pixels: `tEXt` chunks (keyword, Latin-1 text) and `iTXt`
/// chunks (keyword, UTF-8 text), e.g. [`crate::provenance::Provenance`]'s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PngText {
    /// `tEXt` chunks.
    pub text: Vec<(String, String)>,
    /// `iTXt` chunks.
    pub itxt: Vec<(String, String)>,
}

impl PngText {
    /// The chunks that say a picture is a synthetic animation, and what made it.
    pub fn provenance(p: &crate::provenance::Provenance) -> Self {
        Self {
            text: p.png_text(),
            itxt: vec![("XML:com.adobe.xmp".into(), p.xmp())],
        }
    }
}

/// Writes `img` as a PNG with `text`'s chunks (the same compression and filters as the `image`
/// crate's default PNG encoder).
pub fn write_png(path: &Path, img: &RgbImage, text: &PngText) -> Result<(), MediaError> {
    let io = |e: std::io::Error| MediaError::Io {
        action: "write the image",
        path: path.to_path_buf(),
        source: e,
    };
    let png = |e: png::EncodingError| io(std::io::Error::other(e));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), img.width(), img.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    encoder.set_filter(png::Filter::Adaptive);
    for (k, v) in &text.text {
        encoder.add_text_chunk(k.clone(), v.clone()).map_err(png)?;
    }
    for (k, v) in &text.itxt {
        encoder.add_itxt_chunk(k.clone(), v.clone()).map_err(png)?;
    }
    let mut writer = encoder.write_header().map_err(png)?;
    writer.write_image_data(img.as_raw()).map_err(png)?;
    writer.finish().map_err(png)
}

/// Writes numbered PNG frames (`frame_000000.png`, ...) into a folder.
pub struct FrameFolderWriter {
    dir: PathBuf,
    digits: usize,
    next_index: u64,
    text: PngText,
}

/// File-name prefix of written frames.
const FRAME_PREFIX: &str = "frame_";

impl FrameFolderWriter {
    /// Create `dir` if needed. Names are zero-padded to at least 6 digits, more when `expected_count`
    /// frames need more, so that plain name order is frame order. A folder that already holds
    /// `frame_<digits>.png` files from an earlier run is refused (stale frames would mix in).
    pub fn create(dir: &Path, expected_count: u64) -> Result<Self, MediaError> {
        std::fs::create_dir_all(dir).map_err(|e| MediaError::Io {
            action: "create the folder",
            path: dir.to_path_buf(),
            source: e,
        })?;
        let entries = std::fs::read_dir(dir).map_err(|e| MediaError::Io {
            action: "list the folder",
            path: dir.to_path_buf(),
            source: e,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if is_frame_name(&name.to_string_lossy()) {
                return Err(MediaError::OutputFolderNotEmpty {
                    dir: dir.to_path_buf(),
                    example: entry.path(),
                });
            }
        }
        let digits = expected_count.saturating_sub(1).to_string().len().max(6);
        Ok(Self {
            dir: dir.to_path_buf(),
            digits,
            next_index: 0,
            text: PngText::default(),
        })
    }

    /// Every frame carries these text chunks.
    pub fn with_text(mut self, text: PngText) -> Self {
        self.text = text;
        self
    }

    /// Path the next frame will be written to.
    pub fn next_path(&self) -> PathBuf {
        self.dir.join(format!(
            "{FRAME_PREFIX}{:0width$}.png",
            self.next_index,
            width = self.digits
        ))
    }

    /// Write one frame as PNG; returns its path.
    pub fn write(&mut self, frame: &RgbImage) -> Result<PathBuf, MediaError> {
        let path = self.next_path();
        write_png(&path, frame, &self.text)?;
        self.next_index += 1;
        Ok(path)
    }

    /// Number of frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.next_index
    }

    /// The folder written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn is_frame_name(name: &str) -> bool {
    name.strip_prefix(FRAME_PREFIX)
        .and_then(|rest| rest.strip_suffix(".png"))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec![
            "10.png",
            "2.png",
            "1.png",
            "frame10.png",
            "frame2.png",
            "a.png",
            "01.png",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            vec![
                "1.png",
                "01.png",
                "2.png",
                "10.png",
                "a.png",
                "frame2.png",
                "frame10.png"
            ]
        );
        // Zero-padded names: same as plain byte order.
        let mut padded: Vec<String> = (0..1200).map(|i| format!("f_{i:05}.png")).collect();
        let plain = padded.clone();
        padded.reverse();
        padded.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(padded, plain);
        // Numbers longer than any integer type.
        assert_eq!(
            natural_cmp("x123456789012345678901234567890", "x99"),
            Ordering::Greater
        );
    }

    fn png(img: &RgbImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("encode");
        out.into_inner()
    }

    #[test]
    fn a_flat_4k_picture_in_a_small_file_decodes() {
        let flat = RgbImage::from_pixel(3840, 2160, image::Rgb([40, 90, 200]));
        let bytes = png(&flat);
        assert!(bytes.len() < 200_000, "{} bytes", bytes.len());
        let img = decode_image(&bytes, Path::new("flat.png")).expect("decodes");
        assert_eq!((img.width(), img.height()), (3840, 2160));
    }

    #[test]
    fn a_picture_declaring_more_than_its_file_can_hold_is_refused() {
        // A valid PNG header (IHDR with its CRC) for 20000x20000 RGB, and no pixel data.
        let mut bytes = png(&RgbImage::new(1, 1));
        bytes[16..20].copy_from_slice(&20000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&20000u32.to_be_bytes());
        let crc = {
            let mut c = 0xffff_ffffu32;
            for &b in &bytes[12..29] {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        (c >> 1) ^ 0xedb8_8320
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        };
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_image(&bytes, Path::new("bomb.png")).unwrap_err();
        assert!(err.to_string().contains("more than a"), "{err}");
        use crate::media::budget::{DECODE_FLOOR_BYTES, DECODE_MAX_BYTES};
        assert_eq!(decode_budget(0), DECODE_FLOOR_BYTES);
        assert_eq!(decode_budget(usize::MAX), DECODE_MAX_BYTES);
    }

    #[test]
    fn frame_names() {
        assert!(is_frame_name("frame_000001.png"));
        assert!(!is_frame_name("frame_.png"));
        assert!(!is_frame_name("frame_01.jpg"));
        assert!(!is_frame_name("my_frame_01.png"));
    }
}
