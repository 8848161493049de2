//! bf16 matrix products with f32 accumulation, `C = A B`, for the reduced-precision
//! convolutions: A (the weights, prepared once) and B (activations, packed per call) are rounded
//! to bfloat16 (8 significant bits, f32's exponent range), every product and sum is f32.
//!
//! Hand-written because no crate of the field offers it for our layout: `gemm` 0.19 has f32,
//! f64 and f16 (on x86 its f16 converts to f32 and multiplies in f32, so it is no faster), no
//! bf16; `pulp` gives portable SIMD types but no bf16 dot product; rten's quantised kernels are
//! int8 and own their packing. The instruction that makes bf16 worth it, `VDPBF16PS`
//! (AVX512_BF16: AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids and later), takes
//! pairs of bf16 values per 32-bit lane and adds both products to an f32 accumulator: 32
//! multiply-adds per 512-bit instruction, twice the f32 FMA's 16. Its stable `std::arch`
//! intrinsic (`_mm512_dpbf16_ps`, stable since Rust 1.89) is all the kernel needs.
//!
//! Layouts (k runs over the reduction dimension, taken in pairs):
//! * [`PackedA`]: `rows x k`, cut into blocks of [`MR`] rows; within a block, for each pair
//!   `p`, the `MR` rows' pairs `(A[r][2p], A[r][2p+1])` as one `u32` each (low half first).
//!   Missing rows and an odd `k`'s last half are zeros.
//! * B: `kp = ceil(k / 2)` rows of `u32` pairs `(B[2p][n], B[2p+1][n])`, row stride `ldb`.
//! * C: f32, row stride `ldc`; columns are computed in blocks of [`NR`].
//!
//! The micro-kernel keeps an `MR x NR` (8 x 48) block of C in 24 of the 32 vector registers;
//! per pair it loads 3 vectors of B and broadcasts 8 pairs of A: 24 `VDPBF16PS` per 11 loads.
//! Without AVX512_BF16 a scalar kernel computes the same sums (products of bf16 values are
//! exact in f32, so both differ only in the order of f32 additions); it exists for tests and
//! for machines that lack the instruction, where `--precision auto` never picks bf16.

use std::ops::Range;

use super::{ConvError, err};

/// Rows of C per micro-kernel call.
pub const MR: usize = 8;
/// Columns of C per micro-kernel call (three 16-lane vectors); the last block of a row may be
/// one or two vectors wide.
pub const NR: usize = 48;
/// Column granularity: B's and C's column counts are multiples of one vector's lanes.
pub const LANES: usize = 16;
/// Pairs of k per pass over C: a (KC x 48) block of B (48 KiB) stays in the L1/L2 caches while
/// every row block of A passes over it; C is re-read once per pass.
const KC: usize = 256;

/// Rounds to the nearest bfloat16, ties to even (what `VCVTNEPS2BF16` does for finite values;
/// the model has no NaNs or infinities).
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// The f32 value of a bfloat16.
#[inline]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Two bf16 values as one 32-bit lane, `lo` in the low half (the pair order `VDPBF16PS` uses).
#[inline]
pub fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(to_bf16(lo)) | (u32::from(to_bf16(hi)) << 16)
}

/// Whether this processor runs the AVX512_BF16 kernel (and `MARIONETTE_CPU=baseline` does not
/// forbid it).
pub fn has_native_kernel() -> bool {
    crate::ops::cpu::has_avx512_bf16()
}

/// `A` (rows x k) rounded to bf16 and packed for the micro-kernel.
#[derive(Debug, Clone)]
pub struct PackedA {
    rows: usize,
    k: usize,
    data: Vec<u32>,
}

impl PackedA {
    /// Packs `A[r][c] = get(r, c)` for `r < rows`, `c < k`.
    pub fn new(rows: usize, k: usize, get: impl Fn(usize, usize) -> f32) -> Self {
        let kp = k.div_ceil(2);
        let blocks = rows.div_ceil(MR);
        let mut data = vec![0u32; blocks * kp * MR];
        let at = |r: usize, c: usize| if r < rows && c < k { get(r, c) } else { 0.0 };
        for (b, block) in data.chunks_exact_mut(kp * MR).enumerate() {
            for (p, lanes) in block.chunks_exact_mut(MR).enumerate() {
                for (i, lane) in lanes.iter_mut().enumerate() {
                    let r = b * MR + i;
                    *lane = pair(at(r, 2 * p), at(r, 2 * p + 1));
                }
            }
        }
        Self { rows, k, data }
    }

    /// Pairs along k.
    pub fn kp(&self) -> usize {
        self.k.div_ceil(2)
    }

    /// Blocks of [`MR`] rows.
    pub fn row_blocks(&self) -> usize {
        self.rows.div_ceil(MR)
    }
}

/// `C = A B` for the row blocks `blocks` of A and `cols` columns (a multiple of [`LANES`]).
///
/// `b` starts at the first column: pair row `p` is `b[p * ldb ..][..cols]`. `c` starts at the
/// first row of the first block and the first column: row `r` (counted from
/// `blocks.start * MR`) is `c[r * ldc ..][..cols]`; rows past `a.rows()` are not written.
pub fn gemm(
    a: &PackedA,
    blocks: Range<usize>,
    b: &[u32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    cols: usize,
) -> candle_core::Result<()> {
    let kp = a.kp();
    let internal = |what| err(ConvError::Internal(what));
    if !cols.is_multiple_of(LANES) || cols > ldb || cols > ldc {
        return Err(internal("bf16 gemm: columns not a whole number of blocks"));
    }
    if blocks.end > a.row_blocks() || blocks.start > blocks.end {
        return Err(internal("bf16 gemm: row blocks outside A"));
    }
    if kp > 0 && b.len() < (kp - 1) * ldb + cols {
        return Err(internal("bf16 gemm: B shorter than its shape"));
    }
    let first_row = blocks.start * MR;
    let last_row = (blocks.end * MR).min(a.rows);
    let rows_here = last_row.saturating_sub(first_row);
    if rows_here > 0 && c.len() < (rows_here - 1) * ldc + cols {
        return Err(internal("bf16 gemm: C shorter than its shape"));
    }
    if cols == 0 || rows_here == 0 {
        return Ok(());
    }
    let native = has_native_kernel();
    for k0 in (0..kp).step_by(KC) {
        let kc = KC.min(kp - k0);
        let accumulate = k0 > 0;
        let b_pass = &b[k0 * ldb..];
        for blk in blocks.clone() {
            let panel = &a.data[(blk * kp + k0) * MR..(blk * kp + k0 + kc) * MR];
            let r0 = blk * MR - first_row;
            let rows = (a.rows - blk * MR).min(MR);
            let mut n0 = 0;
            while n0 < cols {
                let width = NR.min(cols - n0);
                let c_block = &mut c[r0 * ldc + n0..];
                let b_block = &b_pass[n0..];
                let call = Call {
                    kc,
                    ldb,
                    ldc,
                    rows,
                    accumulate,
                };
                if native {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU has AVX512F and AVX512_BF16 (checked by
                    // `has_native_kernel`). `panel` holds kc * MR values; `b_block` holds at
                    // least (kc - 1) * ldb + width values (b.len() >= (kp - 1) * ldb + cols,
                    // k0 + kc <= kp and n0 + width <= cols); `c_block` holds at least
                    // (rows - 1) * ldc + width values (checked against rows_here above, and
                    // r0 + rows <= rows_here). The kernel reads and writes nothing else.
                    unsafe {
                        avx512::kernel(
                            width / LANES,
                            &call,
                            panel.as_ptr(),
                            b_block.as_ptr(),
                            c_block.as_mut_ptr(),
                        );
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    scalar_kernel(width, &call, panel, b_block, c_block);
                } else {
                    scalar_kernel(width, &call, panel, b_block, c_block);
                }
                n0 += width;
            }
        }
    }
    Ok(())
}

/// Sizes of one micro-kernel call.
struct Call {
    /// Pairs of k.
    kc: usize,
    ldb: usize,
    ldc: usize,
    /// Rows of C to store (at most [`MR`]).
    rows: usize,
    /// Add to C instead of overwriting it.
    accumulate: bool,
}

/// The portable micro-kernel: the same sums as the AVX512 one, one column at a time.
fn scalar_kernel(width: usize, call: &Call, panel: &[u32], b: &[u32], c: &mut [f32]) {
    let halves = |v: u32| (from_bf16(v as u16), from_bf16((v >> 16) as u16));
    for r in 0..call.rows {
        for n in 0..width {
            let slot = &mut c[r * call.ldc + n];
            let mut acc = if call.accumulate { *slot } else { 0.0 };
            for p in 0..call.kc {
                let (a0, a1) = halves(panel[p * MR + r]);
                let (b0, b1) = halves(b[p * call.ldb + n]);
                acc += a0 * b0 + a1 * b1;
            }
            *slot = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Call, MR};

    /// One `MR x (16 vectors)` block of C over `call.kc` pairs, `vectors` in 1..=3.
    ///
    /// # Safety
    /// The CPU must have AVX512F and AVX512_BF16. `a` must point to `kc * MR` values, `b` to
    /// `(kc - 1) * ldb + 16 * vectors` values, and `c` to `(rows - 1) * ldc + 16 * vectors`
    /// writable values, with `rows <= MR`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn kernel(
        vectors: usize,
        call: &Call,
        a: *const u32,
        b: *const u32,
        c: *mut f32,
    ) {
        // SAFETY: forwarded from the caller; each width reads and writes only its own columns.
        unsafe {
            match vectors {
                1 => block::<1>(call, a, b, c),
                2 => block::<2>(call, a, b, c),
                _ => block::<3>(call, a, b, c),
            }
        }
    }

    /// [`kernel`] for a fixed number of vectors.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn block<const NRV: usize>(call: &Call, a: *const u32, b: *const u32, c: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); NRV]; MR];
        if call.accumulate {
            for (m, row) in acc.iter_mut().enumerate() {
                if m < call.rows {
                    for (j, v) in row.iter_mut().enumerate() {
                        // SAFETY: m < rows and 16 * j + 16 <= 16 * NRV, inside the C block.
                        *v = unsafe { _mm512_loadu_ps(c.add(m * call.ldc + 16 * j)) };
                    }
                }
            }
        }
        for p in 0..call.kc {
            // SAFETY (whole loop body): p < kc, so b + p * ldb + 16 * j + 16 <= b + (kc - 1) *
            // ldb + 16 * NRV and a + p * MR + m < a + kc * MR, inside the caller's buffers.
            unsafe {
                let bp = b.add(p * call.ldb);
                let bv: [__m512bh; NRV] = std::array::from_fn(|j| {
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        bp.add(16 * j).cast::<__m512i>(),
                    ))
                });
                let ap = a.add(p * MR);
                for (m, row) in acc.iter_mut().enumerate() {
                    let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                        *ap.add(m) as i32,
                    ));
                    for (slot, &bj) in row.iter_mut().zip(bv.iter()) {
                        *slot = _mm512_dpbf16_ps(*slot, av, bj);
                    }
                }
            }
        }
        for (m, row) in acc.iter().enumerate() {
            if m < call.rows {
                for (j, v) in row.iter().enumerate() {
                    // SAFETY: m < rows and 16 * j + 16 <= 16 * NRV, inside the C block.
                    unsafe { _mm512_storeu_ps(c.add(m * call.ldc + 16 * j), *v) };
                }
            }
        }
    }
}
