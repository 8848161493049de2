//! How fast this core multiplies at bf16 against f32, measured: the answer differs by processor
//! in a way no feature flag tells. AVX512_BF16's `VDPBF16PS` does 32 multiply-adds per 512-bit
//! instruction against 16 for an f32 FMA, but the rates per cycle differ. On AMD EPYC (Zen 4)
//! machines bf16 was the faster (PyTorch's bf16 matrix products ran at 2.1x
//! its f32, 202 against 96 GFLOP/s, and our bf16 step was 1.36x our f32 one; this probe was not
//! run there). On an Intel Emerald Rapids Xeon (no AMX exposed) the probe measured 43 G
//! multiply-adds/s per core for `VDPBF16PS` against 88 for f32 FMA: the dot product issues at
//! half the rate of the two FMA ports, so f32 is twice as fast there.
//!
//! [`measure`] times both instructions on independent accumulators (throughput, not latency)
//! for a few hundred microseconds and keeps the best of several alternated tries, so a busy
//! machine slows both alike.

use std::time::Instant;

/// Multiply-add rates of one core, in G multiply-adds per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelRates {
    /// `VDPBF16PS` on 512-bit vectors.
    pub bf16: f64,
    /// f32 FMA on 512-bit vectors.
    pub f32: f64,
}

impl KernelRates {
    /// bf16's rate over f32's.
    pub fn bf16_gain(&self) -> f64 {
        self.bf16 / self.f32.max(f64::MIN_POSITIVE)
    }
}

/// Loop trips per timed try (24 instructions each: about 50 k instructions, 20-60 us).
const TRIPS: usize = 2048;
/// Alternated tries of each instruction; the best of each is kept.
const TRIES: usize = 9;

/// Measures both rates on this core; `None` without AVX512F and AVX512_BF16 (or under
/// `MARIONETTE_CPU=baseline`).
pub fn measure() -> Option<KernelRates> {
    if !crate::ops::cpu::has_avx512_bf16() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let macs = |per_instr: usize| (TRIPS * 24 * per_instr) as f64;
        let time = |f: &dyn Fn() -> f32| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64().max(1e-9)
        };
        // SAFETY (both closures): the processor has AVX512F and AVX512_BF16 (checked above).
        let bf16 = || unsafe { probe::dot_bf16(TRIPS) };
        let fma = || unsafe { probe::fma_f32(TRIPS) };
        // Warm-up: wide vector units may start at a lower rate.
        for _ in 0..4 {
            time(&bf16);
            time(&fma);
        }
        let (mut best_bf16, mut best_f32) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..TRIES {
            best_bf16 = best_bf16.min(time(&bf16));
            best_f32 = best_f32.min(time(&fma));
        }
        Some(KernelRates {
            bf16: macs(32) / best_bf16 / 1e9,
            f32: macs(16) / best_f32 / 1e9,
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
mod probe {
    use std::arch::x86_64::*;

    /// `trips` x 24 independent `VDPBF16PS`; returns a sum so the work is not optimised away.
    ///
    /// # Safety
    /// The processor must have AVX512F and AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dot_bf16(trips: usize) -> f32 {
        // 1.0 in bf16 in both halves of every lane.
        let one = _mm512_set1_epi32(0x3f80_3f80);
        // SAFETY: same-size reinterpretation of a vector of integers as bf16 pairs.
        let (a, b) = unsafe {
            (
                std::mem::transmute::<__m512i, __m512bh>(one),
                std::mem::transmute::<__m512i, __m512bh>(std::hint::black_box(one)),
            )
        };
        let mut acc = [_mm512_setzero_ps(); 24];
        for _ in 0..trips {
            for x in acc.iter_mut() {
                *x = _mm512_dpbf16_ps(*x, a, b);
            }
        }
        acc.iter()
            .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x))
            .lane_sum()
    }

    /// `trips` x 24 independent 512-bit f32 FMAs; returns a sum.
    ///
    /// # Safety
    /// The processor must have AVX512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_f32(trips: usize) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.5));
        let b = _mm512_set1_ps(std::hint::black_box(0.25));
        let mut acc = [_mm512_setzero_ps(); 24];
        for _ in 0..trips {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(a, b, *x);
            }
        }
        acc.iter()
            .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x))
            .lane_sum()
    }

    /// Horizontal sum of a vector.
    trait Sum {
        fn lane_sum(self) -> f32;
    }

    impl Sum for __m512 {
        fn lane_sum(self) -> f32 {
            // SAFETY: same-size reinterpretation of 16 f32 lanes as an array.
            let lanes: [f32; 16] = unsafe { std::mem::transmute::<__m512, [f32; 16]>(self) };
            lanes.iter().sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_measured_where_bf16_is_native() {
        match measure() {
            Some(r) => {
                // A core does between 1 and 1000 G multiply-adds per second with either.
                for rate in [r.bf16, r.f32] {
                    assert!(rate.is_finite() && (1.0..1000.0).contains(&rate), "{r:?}");
                }
            }
            None => assert!(!crate::ops::cpu::has_avx512_bf16()),
        }
    }
}
