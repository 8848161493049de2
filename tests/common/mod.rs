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

/// Held by the tests whose checks on timing need the machine's two cores to themselves: the VM
/// tests (QEMU's emulated processor takes both) and the CPU-quota test (5 % of one core, which a
/// VM beside it starves). One of them runs at a time; the other tests go on beside them.
pub static MACHINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`MACHINE`] (a test that failed holding it does not keep the others from it).
pub fn whole_machine() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}

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
