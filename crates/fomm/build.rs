//! Build script: with the `cuda` feature, compiles the GPU kernels in `src/ops/*.cu` to PTX with
//! `nvcc` (which that feature needs anyway, for candle's own kernels); the PTX is embedded in the
//! binary and loaded by the driver at run time. Without the feature it does nothing.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/ops/grid_sample.cu");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The PTX targets the compute capability candle's kernels are built for (CUDA_COMPUTE_CAP, as
    // candle-kernels reads it), else 7.0 (Volta): the driver compiles PTX for newer GPUs itself.
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(70);
    let nvcc = std::env::var_os("NVCC").unwrap_or_else(|| "nvcc".into());
    let ptx = out.join("grid_sample.ptx");
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "--fmad=false"])
        .arg(format!("--gpu-architecture=compute_{cap}"))
        .arg("src/ops/grid_sample.cu")
        .arg("-o")
        .arg(&ptx)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("nvcc failed ({s}) compiling src/ops/grid_sample.cu"),
        Err(e) => panic!(
            "the cuda feature needs nvcc on PATH (or NVCC=path): {e}. See the README's GPU section"
        ),
    }
}
