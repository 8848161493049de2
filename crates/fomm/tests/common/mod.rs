//! Shared test helpers: where the reference fixtures live and how to compare tensors.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// `$MARIONETTE_FIXTURES`, or `shared/fixtures/fomm` in the first folder above the crate that
/// holds one (the repository sits beside `shared/`).
pub fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MARIONETTE_FIXTURES") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let found = manifest
        .ancestors()
        .map(|a| a.join("shared/fixtures/fomm"))
        .find(|d| d.join("README.md").exists());
    match found {
        Some(dir) => dir,
        None => panic!(
            "FOMM fixtures not found in shared/fixtures/fomm above {}: set MARIONETTE_FIXTURES",
            manifest.display()
        ),
    }
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// The device model tests run on: the CPU, or with the `cuda` feature and
/// `MARIONETTE_TEST_DEVICE=cuda` the first NVIDIA GPU (so the same parity tests check the GPU).
pub fn test_device() -> Device {
    match std::env::var("MARIONETTE_TEST_DEVICE").as_deref() {
        #[cfg(feature = "cuda")]
        Ok("cuda") => Device::new_cuda(0).expect("MARIONETTE_TEST_DEVICE=cuda but no usable GPU"),
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok(other) => panic!(
            "MARIONETTE_TEST_DEVICE={other}: use cpu, or cuda in a build with --features cuda"
        ),
    }
}

/// Fixture tensors on [`test_device`].
pub fn load_tensors_on_test_device(name: &str) -> HashMap<String, Tensor> {
    let device = test_device();
    load_tensors(name)
        .into_iter()
        .map(|(k, v)| {
            let v = v.to_device(&device).expect("copy to the test device");
            (k, v)
        })
        .collect()
}

pub fn load_tensors(name: &str) -> HashMap<String, Tensor> {
    let path = fixture(name);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// All values of a tensor (any device, any float dtype) as f64, in row-major order.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("tensor values")
}

/// (max abs diff, mean abs diff) between two tensors of the same shape.
pub fn diff(a: &Tensor, b: &Tensor) -> (f64, f64) {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let (a, b) = (values(a), values(b));
    let mut max = 0f64;
    let mut sum = 0f64;
    for (x, y) in a.iter().zip(&b) {
        let d = (x - y).abs();
        assert!(!d.is_nan(), "NaN in comparison");
        max = max.max(d);
        sum += d;
    }
    (max, sum / a.len().max(1) as f64)
}

/// Asserts max abs diff <= `max_tol` (and mean <= `mean_tol` when given), naming the tensor.
pub fn assert_close(name: &str, got: &Tensor, want: &Tensor, max_tol: f64, mean_tol: Option<f64>) {
    assert_eq!(
        got.dims(),
        want.dims(),
        "{name}: shape {:?} vs reference {:?}",
        got.dims(),
        want.dims()
    );
    let (max, mean) = diff(got, want);
    assert!(
        max <= max_tol,
        "{name}: max abs diff {max:e} > {max_tol:e} (mean {mean:e})"
    );
    if let Some(mt) = mean_tol {
        assert!(
            mean <= mt,
            "{name}: mean abs diff {mean:e} > {mt:e} (max {max:e})"
        );
    }
}
