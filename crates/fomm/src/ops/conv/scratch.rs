//! Per-thread scratch buffers for the kernels, kept between calls so that big buffers are not
//! page-faulted in on every convolution: one of f32 values (transformed inputs, products) and one
//! of bf16 pairs (packed operands). A kernel may hold one of each at a time. And [`OutPtr`], the
//! output buffer shared by parallel jobs that write disjoint parts of it.

use std::cell::RefCell;

thread_local! {
    static VALUES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PAIRS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's buffer from `cell`, grown to at least `len` (contents unspecified).
fn with_buffer<T: Copy + Default, R>(
    cell: &RefCell<Vec<T>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, T::default());
            }
            f(&mut buf[..len])
        }
        // Re-entered on this thread (a kernel holding two of a kind): a fresh buffer.
        Err(_) => f(&mut vec![T::default(); len]),
    }
}

/// Runs `f` on `len` f32 values of scratch.
pub(super) fn with_values<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    VALUES.with(|cell| with_buffer(cell, len, f))
}

/// Runs `f` on `len` bf16 pairs of scratch.
pub(super) fn with_pairs<R>(len: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    PAIRS.with(|cell| with_buffer(cell, len, f))
}

/// The output buffer's base pointer, shared by the band jobs (each writes disjoint rows).
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: the pointer is only used to build non-overlapping slices (see `banded`).
unsafe impl Send for OutPtr {}
// SAFETY: as above; the jobs never write the same element.
unsafe impl Sync for OutPtr {}
impl OutPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}
