//! Arithmetic precision of the model's convolutions, and which ones this processor runs fast.
//!
//! * [`Precision::F32`]: the faithful path, bit for bit what the parity tests check against the
//!   original PyTorch code. Every machine has it.
//! * [`Precision::Bf16`]: the convolutions' operands (weights and input activations) rounded to
//!   bfloat16, products summed in f32, activations between layers kept in f32. Fast where the
//!   processor has AVX512_BF16 (the `VDPBF16PS` dot product).
//!
//! [`PrecisionChoice::Auto`] picks bf16 where this processor runs it natively *and* its bf16 dot
//! product measures clearly faster than its f32 FMA ([`bf16_pays`]), f32 elsewhere.
//! `MARIONETTE_CPU` caps the instructions ([`crate::ops::cpu`]; `baseline` leaves bf16 nowhere),
//! and `MARIONETTE_AUTO_PRECISION=f32|bf16` overrides the measured rule where bf16 is native, so
//! that both of auto's branches can be run on any such processor.

use std::fmt;
use std::str::FromStr;

use crate::ops::cpu;
use crate::ops::rates::KernelRates;

/// A precision the convolutions run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 throughout (the original's arithmetic).
    F32,
    /// bf16 operands, f32 sums and activations.
    Bf16,
}

impl Precision {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this processor has the instructions that make this precision fast.
    pub fn is_native(self) -> bool {
        match self {
            Precision::F32 => true,
            Precision::Bf16 => cpu::has_avx512_bf16(),
        }
    }

    /// The precisions this processor runs natively (f32 first).
    pub fn native() -> Vec<Precision> {
        [Precision::F32, Precision::Bf16]
            .into_iter()
            .filter(|p| p.is_native())
            .collect()
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The precision of each of FOMM's three networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrecisionPlan {
    /// The keypoint detector (run on every driving frame).
    pub kp_detector: Precision,
    /// The dense motion network.
    pub dense_motion: Precision,
    /// The generator (encoder, bottleneck, decoder).
    pub generator: Precision,
}

impl PrecisionPlan {
    /// Every network at `p`.
    pub fn uniform(p: Precision) -> Self {
        Self {
            kp_detector: p,
            dense_motion: p,
            generator: p,
        }
    }

    /// The plan a user-facing precision stands for. At bf16 the keypoint detector stays f32:
    /// its keypoints steer everything downstream, and with bf16 convolutions they moved by up to
    /// 0.016 (normalised units) on the tiny fixture, more than under PyTorch's own bf16 autocast,
    /// while the dense motion network and the generator in bf16 stay far inside PyTorch's error
    /// (tests/precision_quality.rs). The detector is a small share of the per-frame work.
    pub fn for_precision(p: Precision) -> Self {
        Self {
            kp_detector: Precision::F32,
            ..Self::uniform(p)
        }
    }

    /// The lowest precision in the plan (what a status line names).
    pub fn headline(&self) -> Precision {
        if [self.kp_detector, self.dense_motion, self.generator].contains(&Precision::Bf16) {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }
}

impl Default for PrecisionPlan {
    fn default() -> Self {
        Self::uniform(Precision::F32)
    }
}

/// What the user asked for: a precision, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PrecisionChoice {
    /// bf16 where this processor's bf16 dot product is clearly faster than its f32 FMA, else f32
    /// (see [`bf16_pays`]).
    #[default]
    Auto,
    /// Exactly this precision.
    Exact(Precision),
}

/// A precision that this processor cannot run fast.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "--precision {precision} needs {needs}, which this processor lacks ({cpu}); \
     use --precision auto or f32"
)]
pub struct UnsupportedPrecision {
    /// What was asked for.
    pub precision: Precision,
    /// The instruction set it needs.
    pub needs: &'static str,
    /// What this processor has, in words.
    pub cpu: String,
}

impl PrecisionChoice {
    /// The precision this choice means on this processor.
    pub fn resolve(self) -> Result<Precision, UnsupportedPrecision> {
        match self {
            PrecisionChoice::Auto if Precision::Bf16.is_native() && bf16_pays() => {
                Ok(Precision::Bf16)
            }
            PrecisionChoice::Auto => Ok(Precision::F32),
            PrecisionChoice::Exact(p) if p.is_native() => Ok(p),
            PrecisionChoice::Exact(p) => Err(UnsupportedPrecision {
                precision: p,
                needs: "AVX512_BF16 (AMD Zen 4 or later, Intel Sapphire Rapids or later)",
                cpu: cpu::summary(),
            }),
        }
    }
}

impl fmt::Display for PrecisionChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrecisionChoice::Auto => f.write_str("auto"),
            PrecisionChoice::Exact(p) => p.fmt(f),
        }
    }
}

/// A `--precision` value that is none of the known ones.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown precision '{0}': expected auto, f32 or bf16")]
pub struct ParsePrecisionError(String);

impl FromStr for PrecisionChoice {
    type Err = ParsePrecisionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(PrecisionChoice::Auto),
            "f32" | "fp32" | "float32" => Ok(PrecisionChoice::Exact(Precision::F32)),
            "bf16" | "bfloat16" => Ok(PrecisionChoice::Exact(Precision::Bf16)),
            _ => Err(ParsePrecisionError(s.to_string())),
        }
    }
}

/// `auto` takes bf16 only where its dot product multiplies at least this much faster than f32
/// FMAs on this core: bf16 also pays for rounding and pairing its operands, so a bare win is no
/// win (the bf16 step measured 1.36x faster than f32 on AMD EPYC (Zen 4) machines,
/// whose bf16 matrix products ran at about 2x f32; on Intel Emerald Rapids bf16 measured 0.5x
/// and the f32 step was the faster).
pub const BF16_MIN_GAIN: f64 = 1.5;

/// The measured rates of this core's bf16 and f32 instructions (once per process); `None`
/// where bf16 does not run natively.
pub fn kernel_rates() -> Option<KernelRates> {
    static RATES: std::sync::OnceLock<Option<KernelRates>> = std::sync::OnceLock::new();
    *RATES.get_or_init(|| {
        let rates = crate::ops::rates::measure();
        if let Some(r) = rates {
            tracing::info!(
                "bf16 dot products {:.0} G multiply-adds/s per core, f32 FMA {:.0}: auto takes {}",
                r.bf16,
                r.f32,
                if r.bf16_gain() >= BF16_MIN_GAIN {
                    "bf16"
                } else {
                    "f32"
                }
            );
        }
        rates
    })
}

/// Whether bf16 is worth it on this core (see [`BF16_MIN_GAIN`]), unless
/// `MARIONETTE_AUTO_PRECISION` says which branch to take.
pub fn bf16_pays() -> bool {
    match auto_override() {
        Some(p) => p == Precision::Bf16,
        None => kernel_rates().is_some_and(|r| r.bf16_gain() >= BF16_MIN_GAIN),
    }
}

/// `MARIONETTE_AUTO_PRECISION=f32|bf16`: the precision auto takes where bf16 is native, instead
/// of the measured rule (read once; anything else is reported and ignored).
pub fn auto_override() -> Option<Precision> {
    static OVERRIDE: std::sync::OnceLock<Option<Precision>> = std::sync::OnceLock::new();
    *OVERRIDE.get_or_init(|| {
        let v = std::env::var("MARIONETTE_AUTO_PRECISION").ok()?;
        match v.parse::<PrecisionChoice>() {
            Ok(PrecisionChoice::Exact(p)) => Some(p),
            _ => {
                tracing::warn!("MARIONETTE_AUTO_PRECISION={v} is neither f32 nor bf16: ignored");
                None
            }
        }
    })
}
