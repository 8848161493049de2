//! What this processor can run: the one place every kernel asks.
//!
//! The optional instructions are detected once per process. `MARIONETTE_CPU` caps them, so that
//! every kernel path can be run (and tested) on a processor that has more:
//!
//! | `MARIONETTE_CPU` | what the kernels may use |
//! |---|---|
//! | unset or `native` | everything the processor has |
//! | `avx512-bf16` | AVX2, FMA, AVX-512F, AVX512_BF16 (an AMD Zen 4, or an Intel Xeon without AMX) |
//! | `avx512` | AVX2, FMA, AVX-512F (Intel Skylake-SP to Ice Lake servers) |
//! | `avx2` | AVX2 and FMA (most laptops) |
//! | `baseline` | none: plain x86-64 (SSE2) |
//!
//! A cap never adds what the processor lacks. An unknown value is reported once in the log and
//! read as `native`.

use std::sync::OnceLock;

/// The optional instructions the kernels may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// 256-bit integer and float vectors.
    pub avx2: bool,
    /// Fused multiply-add (paired with AVX2 on every processor that has both).
    pub fma: bool,
    /// 512-bit vectors.
    pub avx512f: bool,
    /// `VDPBF16PS`: bf16 pair dot products into f32.
    pub avx512_bf16: bool,
}

/// How far `MARIONETTE_CPU` lets the kernels go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cap {
    /// No optional instruction.
    Baseline,
    /// AVX2 and FMA.
    Avx2,
    /// Also AVX-512F.
    Avx512,
    /// Also AVX512_BF16.
    Avx512Bf16,
    /// Whatever the processor has.
    Native,
}

impl Cap {
    /// The cap `MARIONETTE_CPU` names (`None` for an unknown value).
    pub fn parse(value: &str) -> Option<Cap> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "native" => Some(Cap::Native),
            "avx512-bf16" | "avx512_bf16" | "avx512bf16" => Some(Cap::Avx512Bf16),
            "avx512" | "avx512f" => Some(Cap::Avx512),
            "avx2" => Some(Cap::Avx2),
            "baseline" | "none" => Some(Cap::Baseline),
            _ => None,
        }
    }

    /// The name `MARIONETTE_CPU` takes for it.
    pub fn name(self) -> &'static str {
        match self {
            Cap::Baseline => "baseline",
            Cap::Avx2 => "avx2",
            Cap::Avx512 => "avx512",
            Cap::Avx512Bf16 => "avx512-bf16",
            Cap::Native => "native",
        }
    }

    /// `present` with everything above this cap removed.
    pub fn apply(self, present: Features) -> Features {
        Features {
            avx2: present.avx2 && self >= Cap::Avx2,
            fma: present.fma && self >= Cap::Avx2,
            avx512f: present.avx512f && self >= Cap::Avx512,
            avx512_bf16: present.avx512_bf16 && present.avx512f && self >= Cap::Avx512Bf16,
        }
    }
}

/// The cap in force (`MARIONETTE_CPU`, read once).
pub fn cap() -> Cap {
    static CAP: OnceLock<Cap> = OnceLock::new();
    *CAP.get_or_init(|| match std::env::var("MARIONETTE_CPU") {
        Err(_) => Cap::Native,
        Ok(v) => Cap::parse(&v).unwrap_or_else(|| {
            tracing::warn!(
                "MARIONETTE_CPU={v} is not one of native, avx512-bf16, avx512, avx2, baseline: \
                 using every instruction this processor has"
            );
            Cap::Native
        }),
    })
}

/// What the processor has, whatever the cap.
pub fn present() -> Features {
    static PRESENT: OnceLock<Features> = OnceLock::new();
    *PRESENT.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Features {
    Features {
        avx2: std::arch::is_x86_feature_detected!("avx2"),
        fma: std::arch::is_x86_feature_detected!("fma"),
        avx512f: std::arch::is_x86_feature_detected!("avx512f"),
        avx512_bf16: std::arch::is_x86_feature_detected!("avx512bf16"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Features {
    Features::default()
}

/// What the kernels may use: [`present`] under [`cap`].
pub fn features() -> Features {
    static USABLE: OnceLock<Features> = OnceLock::new();
    *USABLE.get_or_init(|| cap().apply(present()))
}

/// AVX2 and FMA may be used.
pub fn has_avx2_fma() -> bool {
    let f = features();
    f.avx2 && f.fma
}

/// FMA may be used.
pub fn has_fma() -> bool {
    features().fma
}

/// AVX-512F may be used.
pub fn has_avx512f() -> bool {
    features().avx512f
}

/// AVX-512F and AVX512_BF16 may be used.
pub fn has_avx512_bf16() -> bool {
    let f = features();
    f.avx512f && f.avx512_bf16
}

/// The optional instructions this processor has, in words, and what the cap leaves of them.
pub fn summary() -> String {
    if !cfg!(target_arch = "x86_64") {
        return format!(
            "{} (no vector kernels for this architecture yet)",
            std::env::consts::ARCH
        );
    }
    let p = present();
    let names = [
        ("avx2", p.avx2),
        ("fma", p.fma),
        ("avx512f", p.avx512f),
        ("avx512_bf16", p.avx512_bf16),
    ];
    let have: Vec<&str> = names
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    let mut s = if have.is_empty() {
        "x86_64 without AVX2".to_string()
    } else {
        format!("x86_64 with {}", have.join(", "))
    };
    if cap() != Cap::Native {
        s.push_str(&format!(" (capped by MARIONETTE_CPU={})", cap().name()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Features = Features {
        avx2: true,
        fma: true,
        avx512f: true,
        avx512_bf16: true,
    };

    #[test]
    fn caps_remove_what_is_above_them() {
        assert_eq!(Cap::Baseline.apply(ALL), Features::default());
        let avx2 = Cap::Avx2.apply(ALL);
        assert!(avx2.avx2 && avx2.fma && !avx2.avx512f && !avx2.avx512_bf16);
        let avx512 = Cap::Avx512.apply(ALL);
        assert!(avx512.avx512f && !avx512.avx512_bf16);
        assert_eq!(Cap::Avx512Bf16.apply(ALL), ALL);
        assert_eq!(Cap::Native.apply(ALL), ALL);
    }

    #[test]
    fn caps_never_add() {
        let laptop = Features {
            avx2: true,
            fma: true,
            ..Features::default()
        };
        assert_eq!(Cap::Native.apply(laptop), laptop);
        assert_eq!(Cap::Avx512Bf16.apply(laptop), laptop);
        // AVX512_BF16 without AVX-512F is not usable.
        let odd = Features {
            avx512_bf16: true,
            ..Features::default()
        };
        assert!(!Cap::Native.apply(odd).avx512_bf16);
    }

    #[test]
    fn names_round_trip() {
        for c in [
            Cap::Baseline,
            Cap::Avx2,
            Cap::Avx512,
            Cap::Avx512Bf16,
            Cap::Native,
        ] {
            assert_eq!(Cap::parse(c.name()), Some(c));
        }
        assert_eq!(Cap::parse("BASELINE"), Some(Cap::Baseline));
        assert_eq!(Cap::parse("sse9"), None);
    }
}
