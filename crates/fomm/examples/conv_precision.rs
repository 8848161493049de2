//! Times one 3x3 convolution per FOMM vox-256 shape at each precision this processor runs
//! (median of repeated calls): `cargo run --release -p fomm --example conv_precision`.
//!
//! `CPU_TIME=1` reports the process's CPU time per call instead of wall time: on a busy shared
//! machine that is steadier (run it with RAYON_NUM_THREADS=1 to get one core's work).

use std::time::Instant;

use candle_core::{Device, Tensor};
use fomm::ops::conv::ConvLayer;
use fomm::ops::precision::Precision;

fn main() -> candle_core::Result<()> {
    // (name, Cin, Cout, map side)
    let shapes = [
        ("bottleneck 256->256 @64", 256, 256, 64),
        ("up0 256->128 @128", 256, 128, 128),
        ("up1 128->64 @256", 128, 64, 256),
        ("dm enc0 44->128 @64", 44, 128, 64),
        ("dm dec 2048->512 @8", 2048, 512, 8),
        ("dm dec 512->128 @32", 512, 128, 32),
        ("dm dec 256->64 @64", 256, 64, 64),
        ("kp enc 512->1024 @4", 512, 1024, 4),
        ("kp dec 256->64 @32", 256, 64, 32),
        ("kp dec 128->32 @64", 128, 32, 64),
    ];
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let cpu_time = std::env::var("CPU_TIME").is_ok();
    let only = std::env::var("SHAPE").unwrap_or_default();
    for (name, ci, co, side) in shapes.into_iter().filter(|s| s.0.contains(only.as_str())) {
        let w = (Tensor::randn(0f32, 1.0, (co, ci, 3, 3), &Device::Cpu)?
            * (2.0 / (9.0 * ci as f64)).sqrt())?;
        let b = Tensor::zeros(co, candle_core::DType::F32, &Device::Cpu)?;
        let x = Tensor::randn(0f32, 1.0, (1, ci, side, side), &Device::Cpu)?.relu()?;
        let mut line = format!("{name:<26}");
        let gmac = (ci * co * 9 * side * side) as f64 / 1e9;
        for p in Precision::native() {
            let conv = ConvLayer::new(&w, Some(&b), 1, p)?;
            conv.forward(&x)?;
            let mut t: Vec<f64> = (0..iters)
                .map(|_| {
                    let (s, c) = (Instant::now(), cpu_ms());
                    let _ = conv.forward(&x);
                    if cpu_time {
                        cpu_ms() - c
                    } else {
                        s.elapsed().as_secs_f64() * 1e3
                    }
                })
                .collect();
            t.sort_by(f64::total_cmp);
            let ms = t[t.len() / 2];
            line += &format!("  {p}: {ms:7.2} ms ({:5.1} direct-GMAC/s)", gmac / ms * 1e3);
        }
        println!("{line}");
    }
    Ok(())
}

/// CPU time of this process so far, in milliseconds.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}
