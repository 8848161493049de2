//! The GPU path (`--features cuda`, run on a machine with an NVIDIA GPU): the CUDA grid_sample kernel
//! gives the CPU kernel's results bit for bit. The parity tests run on the GPU with
//! `MARIONETTE_TEST_DEVICE=cuda cargo test --features cuda --test parity`.
#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device, Tensor};
use common::load_tensors;
use fomm::ops::grid_sample::grid_sample;

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA GPU (these tests run only in a --features cuda build)")
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("f32 values")
            .iter()
            .map(|v| v.to_bits() as u64)
            .collect(),
        _ => t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f64>())
            .expect("f64 values")
            .iter()
            .map(|v| v.to_bits())
            .collect(),
    }
}

fn same_on_both(input: &Tensor, grid: &Tensor, what: &str) {
    let dev = gpu();
    for align_corners in [true, false] {
        let cpu = grid_sample(input, grid, align_corners).expect("cpu");
        let on_gpu = grid_sample(
            &input.to_device(&dev).expect("to gpu"),
            &grid.to_device(&dev).expect("to gpu"),
            align_corners,
        )
        .expect("gpu grid_sample");
        assert_eq!(on_gpu.dims(), cpu.dims());
        let (a, b) = (bits(&cpu), bits(&on_gpu));
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(
            differ,
            0,
            "{what}, align_corners={align_corners}: {differ} of {} values differ from the CPU kernel",
            a.len()
        );
    }
}

#[test]
fn cuda_grid_sample_matches_the_cpu_kernel_bit_for_bit() {
    let m = load_tensors("ops.safetensors");
    let input = m.get("grid_sample.input").expect("fixture input");
    let grid = m.get("grid_sample.grid").expect("fixture grid");
    same_on_both(input, grid, "ops fixture");
    // FOMM's shapes, grids partly outside [-1, 1], f32 and f64, batch 2.
    for dtype in [DType::F32, DType::F64] {
        let input = Tensor::rand(-1f32, 1.0, (2, 35, 64, 64), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("input");
        let grid = Tensor::rand(-1.3f32, 1.3, (2, 64, 64, 2), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("grid");
        same_on_both(&input, &grid, &format!("random {dtype:?}"));
        let image = Tensor::rand(0f32, 1.0, (1, 3, 256, 256), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("image");
        let grid = Tensor::rand(-1.1f32, 1.1, (1, 256, 256, 2), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("grid");
        same_on_both(&image, &grid, &format!("image {dtype:?}"));
    }
}
