//! How many bytes a picture file may decode to: the check every decoder makes before it reserves
//! pixel memory, so that a damaged or hostile file cannot exhaust memory.

/// Whatever its file size, a picture may decode to this many bytes (a 2900x2900 RGBA picture, or
/// a flat 4K frame that compresses to almost nothing).
pub const DECODE_FLOOR_BYTES: u64 = 32 << 20;

/// Beyond [`DECODE_FLOOR_BYTES`], a picture may decode to at most this many bytes per byte of its
/// file. Deflate (PNG, TIFF, zip) cannot expand data more than about 1032:1, and photos compress
/// 5:1 to 50:1; a file that declares more pixels than that is damaged or built to exhaust memory,
/// and is refused before its pixel buffer is reserved.
pub const DECODE_BYTES_PER_FILE_BYTE: u64 = 2048;

/// No picture decodes to more than 1 GiB (Pillow's limit of 178 million pixels is 537 MB as RGB).
pub const DECODE_MAX_BYTES: u64 = 1 << 30;

/// The most bytes a picture file of `file_len` bytes may decode to (see [`DECODE_FLOOR_BYTES`]).
pub fn decode_budget(file_len: usize) -> u64 {
    (file_len as u64)
        .saturating_mul(DECODE_BYTES_PER_FILE_BYTE)
        .clamp(DECODE_FLOOR_BYTES, DECODE_MAX_BYTES)
}

/// The message for a picture that declares more pixels than its file can hold, or `None` when
/// `decoded_bytes` fits [`decode_budget`].
pub fn check_declared_size(
    width: u64,
    height: u64,
    decoded_bytes: u64,
    file_len: usize,
) -> Option<String> {
    let budget = decode_budget(file_len);
    (decoded_bytes > budget).then(|| {
        format!(
            "the picture declares {width}x{height} pixels ({decoded_bytes} bytes decoded), more \
             than a {file_len}-byte file can hold (at most {budget} bytes): the file is damaged"
        )
    })
}
