//! Shared test helpers: the fixtures and tensor comparisons of the `fomm` crate's tests, and the
//! live-loop helpers.
#![allow(dead_code)]

pub mod live;
pub mod netem;
pub mod scenes;

#[path = "../../crates/fomm/tests/common/mod.rs"]
mod fixtures;
#[allow(unused_imports)]
pub use fixtures::*;

/// RGB8 pixels of a `width` x `height` frame with marionette's invisible mark (the payload of
/// `engine`) taken off again; a pixel the mark pushed against 0 or 255 comes back within 2 levels.
pub fn without_mark(
    pixels: &[u8],
    width: u32,
    height: u32,
    engine: marionette::watermark::MarkEngine,
) -> Vec<u8> {
    use marionette::watermark::{Marker, Payload};
    let mut delta = vec![128u8; pixels.len()];
    Marker::new(Payload::new(engine)).mark_rgb(&mut delta, width, height);
    pixels
        .iter()
        .zip(&delta)
        .map(|(v, d)| (i16::from(*v) - (i16::from(*d) - 128)).clamp(0, 255) as u8)
        .collect()
}
