//! Resampling ops against the PyTorch reference data in `ops.safetensors` (see the fixtures README,
//! section "ops.safetensors - op-level checks"), plus property and error checks.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::values;
use fomm::ops::grid_sample::grid_sample;
use fomm::ops::interpolate::interpolate_bilinear;

fn ops() -> HashMap<String, Tensor> {
    let path = common::fixtures_dir().join("ops.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn get(map: &HashMap<String, Tensor>, key: &str) -> Tensor {
    map.get(key)
        .unwrap_or_else(|| panic!("ops.safetensors has no tensor {key}"))
        .clone()
}

/// max |a - b|, after checking the shapes agree.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    common::diff(a, b).0
}

/// Deterministic values in [lo, hi) from a 64-bit LCG.
fn lcg(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Identity sampling grid (1, h, w, 2). `centres = false`: -1 / 1 at the first / last pixel centre
/// (FOMM's make_coordinate_grid, the identity for align_corners = true). `centres = true`: pixel j at
/// (2j + 1) / w - 1, the identity for align_corners = false.
fn identity_grid(h: usize, w: usize, centres: bool) -> Tensor {
    let coord = |i: usize, n: usize| -> f32 {
        if centres {
            (2 * i + 1) as f32 / n as f32 - 1.0
        } else {
            2.0 * (i as f32 / (n - 1) as f32) - 1.0
        }
    };
    let mut data = Vec::with_capacity(h * w * 2);
    for i in 0..h {
        for j in 0..w {
            data.push(coord(j, w));
            data.push(coord(i, h));
        }
    }
    Tensor::from_vec(data, (1, h, w, 2), &Device::Cpu).unwrap()
}

/// Straightforward f64 bilinear grid_sample with zero padding, written from PyTorch's documented
/// semantics, to check the optimised kernel on shapes larger than the fixture.
fn reference_grid_sample(input: &Tensor, grid: &Tensor, align_corners: bool) -> Tensor {
    let (n, c, h, w) = input.dims4().unwrap();
    let (_, ho, wo, _) = grid.dims4().unwrap();
    let inp = values(input);
    let g = values(grid);
    let unnorm = |v: f64, size: usize| {
        if align_corners {
            (v + 1.0) / 2.0 * (size as f64 - 1.0)
        } else {
            ((v + 1.0) * size as f64 - 1.0) / 2.0
        }
    };
    let mut out = vec![0f64; n * c * ho * wo];
    for b in 0..n {
        for i in 0..ho {
            for j in 0..wo {
                let gi = ((b * ho + i) * wo + j) * 2;
                let x = unnorm(g[gi], w);
                let y = unnorm(g[gi + 1], h);
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                for ch in 0..c {
                    let mut acc = 0.0;
                    for (dy, wy) in [(0.0, 1.0 - fy), (1.0, fy)] {
                        for (dx, wx) in [(0.0, 1.0 - fx), (1.0, fx)] {
                            let (xx, yy) = (x0 + dx, y0 + dy);
                            if xx >= 0.0 && xx < w as f64 && yy >= 0.0 && yy < h as f64 {
                                let idx = ((b * c + ch) * h + yy as usize) * w + xx as usize;
                                acc += inp[idx] * wx * wy;
                            }
                        }
                    }
                    out[((b * c + ch) * ho + i) * wo + j] = acc;
                }
            }
        }
    }
    Tensor::from_vec(out, (n, c, ho, wo), &Device::Cpu).unwrap()
}

// ---------------------------------------------------------------- grid_sample vs PyTorch

/// Op-level tolerance asked for float32 grid_sample (the README suggests <= 1e-5 for key point level data).
const GRID_SAMPLE_TOL: f64 = 1e-5;

#[test]
fn grid_sample_matches_pytorch_align_corners_true() {
    let m = ops();
    let out = grid_sample(
        &get(&m, "grid_sample.input"),
        &get(&m, "grid_sample.grid"),
        true,
    )
    .unwrap();
    let want = get(&m, "grid_sample.out_align_true");
    let d = max_abs_diff(&out, &want);
    println!("grid_sample align_corners=true: max abs diff {d:e}");
    assert!(
        d <= GRID_SAMPLE_TOL,
        "max abs diff {d:e} > {GRID_SAMPLE_TOL:e}"
    );
    // Stronger: the kernel mirrors PyTorch's float32 arithmetic including its fmas, so it is bit-identical.
    assert_eq!(d, 0.0, "not bit-identical to PyTorch");
}

#[test]
fn grid_sample_matches_pytorch_align_corners_false() {
    let m = ops();
    let out = grid_sample(
        &get(&m, "grid_sample.input"),
        &get(&m, "grid_sample.grid"),
        false,
    )
    .unwrap();
    let want = get(&m, "grid_sample.out_align_false");
    let d = max_abs_diff(&out, &want);
    println!("grid_sample align_corners=false: max abs diff {d:e}");
    assert!(
        d <= GRID_SAMPLE_TOL,
        "max abs diff {d:e} > {GRID_SAMPLE_TOL:e}"
    );
    // Stronger: the kernel mirrors PyTorch's float32 arithmetic including its fmas, so it is bit-identical.
    assert_eq!(d, 0.0, "not bit-identical to PyTorch");
}

#[test]
fn grid_sample_fixture_really_exercises_both_settings_and_padding() {
    // Guards the two tests above against a fixture that could not tell the settings apart.
    let m = ops();
    let t = get(&m, "grid_sample.out_align_true");
    let f = get(&m, "grid_sample.out_align_false");
    assert!(max_abs_diff(&t, &f) > 1e-2);
    let zeros = t
        .eq(0f32)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .sum_all()
        .unwrap();
    assert!(
        zeros.to_scalar::<f32>().unwrap() > 0.0,
        "fixture has no fully padded output"
    );
}

#[test]
fn grid_sample_f64_matches_pytorch() {
    let m = ops();
    let input = get(&m, "grid_sample.input").to_dtype(DType::F64).unwrap();
    let grid = get(&m, "grid_sample.grid").to_dtype(DType::F64).unwrap();
    for (ac, key) in [
        (true, "grid_sample.out_align_true"),
        (false, "grid_sample.out_align_false"),
    ] {
        let out = grid_sample(&input, &grid, ac).unwrap();
        assert_eq!(out.dtype(), DType::F64);
        let d = max_abs_diff(&out, &get(&m, key));
        assert!(
            d <= GRID_SAMPLE_TOL,
            "f64 align_corners={ac}: max abs diff {d:e}"
        );
    }
}

#[test]
fn grid_sample_strided_inputs_give_the_same_result() {
    let m = ops();
    let input = get(&m, "grid_sample.input");
    let grid = get(&m, "grid_sample.grid");
    let want = grid_sample(&input, &grid, true).unwrap();
    // Same values, transposed storage: (N, C, W, H) contiguous, viewed as (N, C, H, W).
    let input_t = input
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    assert!(!input_t.is_contiguous());
    // Grid with (x, y) stored in separate planes, viewed channels-last.
    let grid_t = grid
        .permute((0, 3, 1, 2))
        .unwrap()
        .contiguous()
        .unwrap()
        .permute((0, 2, 3, 1))
        .unwrap();
    assert!(!grid_t.is_contiguous());
    let got = grid_sample(&input_t, &grid_t, true).unwrap();
    assert_eq!(max_abs_diff(&got, &want), 0.0);
}

// ---------------------------------------------------------------- grid_sample properties

#[test]
fn grid_sample_identity_grid_returns_input() {
    let (h, w) = (9, 11);
    // Image-range values: the grid itself is rounded to f32, so the sampled position is off by up to
    // ~1e-7 px, times the neighbour difference (< 1 here).
    let input =
        Tensor::from_vec(lcg(2 * 3 * h * w, 7, 0.0, 1.0), (2, 3, h, w), &Device::Cpu).unwrap();
    let ident = |centres| {
        let g = identity_grid(h, w, centres);
        Tensor::cat(&[&g, &g], 0).unwrap()
    };
    let out = grid_sample(&input, &ident(false), true).unwrap();
    let d = max_abs_diff(&out, &input);
    assert!(d <= 1e-6, "align_corners=true identity: max abs diff {d:e}");
    let out = grid_sample(&input, &ident(true), false).unwrap();
    let d = max_abs_diff(&out, &input);
    assert!(
        d <= 1e-6,
        "align_corners=false identity (pixel-centre grid): max abs diff {d:e}"
    );
}

#[test]
fn grid_sample_grid_outside_gives_zeros() {
    let input =
        Tensor::from_vec(lcg(2 * 4 * 5 * 6, 3, 0.5, 1.0), (2, 4, 5, 6), &Device::Cpu).unwrap();
    // Every point at least one pixel beyond the border (or absurdly far), in every direction.
    let pts: [f32; 10] = [-1.6, 1.6, -3.0, 2.5, 1e30, -1e30, 7.0, -7.0, 1.6, -2.0];
    let mut data = Vec::new();
    for i in 0..5 {
        for j in 0..6 {
            data.push(pts[(i + j) % 10]);
            data.push(pts[(i * 3 + j + 1) % 10]);
        }
    }
    let g = Tensor::from_vec(data, (1, 5, 6, 2), &Device::Cpu).unwrap();
    let grid = Tensor::cat(&[&g, &g], 0).unwrap();
    for ac in [true, false] {
        let out = grid_sample(&input, &grid, ac).unwrap();
        assert_eq!(out.dims(), &[2, 4, 5, 6]);
        let max = out
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(max, 0.0, "align_corners={ac}");
    }
    // Just inside the border (half a pixel out with align_corners=false) is NOT zero.
    let edge = Tensor::from_vec(vec![1.0f32, 1.0], (1, 1, 1, 2), &Device::Cpu).unwrap();
    let edge = Tensor::cat(&[&edge, &edge], 0).unwrap();
    let out = grid_sample(&input, &edge, false).unwrap();
    let want = input
        .i((.., .., 4..5, 5..6))
        .unwrap()
        .affine(0.25, 0.0)
        .unwrap();
    assert!(max_abs_diff(&out, &want) <= 1e-7);
}

#[test]
fn grid_sample_matches_reference_on_large_many_channel_input() {
    // Large enough to split into several row blocks and channel groups (4900 output pixels, 20 channels).
    let (n, c, h, w, ho, wo) = (2, 20, 37, 53, 70, 70);
    let input = Tensor::from_vec(
        lcg(n * c * h * w, 11, -1.0, 1.0),
        (n, c, h, w),
        &Device::Cpu,
    )
    .unwrap();
    let grid = Tensor::from_vec(
        lcg(n * ho * wo * 2, 5, -1.2, 1.2),
        (n, ho, wo, 2),
        &Device::Cpu,
    )
    .unwrap();
    for ac in [true, false] {
        let want = reference_grid_sample(&input, &grid, ac);
        // F64: same formula, only rounding differs, so the kernel's indexing and weights must agree tightly.
        let got64 = grid_sample(
            &input.to_dtype(DType::F64).unwrap(),
            &grid.to_dtype(DType::F64).unwrap(),
            ac,
        )
        .unwrap();
        let d64 = max_abs_diff(&got64, &want);
        assert!(d64 <= 1e-12, "f64 align_corners={ac}: max abs diff {d64:e}");
        // F32: pixel coordinates up to ~55 carry ~4e-6 px of f32 rounding, times neighbour differences up
        // to 2, so the fixture tolerance applies.
        let got = grid_sample(&input, &grid, ac).unwrap();
        let d = max_abs_diff(&got, &want);
        println!("large f32 vs f64 reference, align_corners={ac}: max abs diff {d:e}");
        assert!(
            d <= GRID_SAMPLE_TOL,
            "f32 align_corners={ac}: max abs diff {d:e}"
        );
    }
}

#[test]
fn grid_sample_result_does_not_depend_on_thread_count() {
    let (n, c, h, w, ho, wo) = (1, 33, 64, 64, 80, 80);
    let input =
        Tensor::from_vec(lcg(n * c * h * w, 13, 0.0, 1.0), (n, c, h, w), &Device::Cpu).unwrap();
    let grid = Tensor::from_vec(
        lcg(n * ho * wo * 2, 17, -1.1, 1.1),
        (n, ho, wo, 2),
        &Device::Cpu,
    )
    .unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| grid_sample(&input, &grid, true).unwrap())
    };
    let one = run(1);
    let three = run(3);
    assert_eq!(max_abs_diff(&one, &three), 0.0);
}

#[test]
fn grid_sample_empty_shapes() {
    // Empty image: all corners outside, zeros.
    let input = Tensor::zeros((1, 2, 0, 4), DType::F32, &Device::Cpu).unwrap();
    let grid = Tensor::zeros((1, 3, 3, 2), DType::F32, &Device::Cpu).unwrap();
    let out = grid_sample(&input, &grid, true).unwrap();
    assert_eq!(out.dims(), &[1, 2, 3, 3]);
    assert_eq!(
        out.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    // Empty grid: empty output.
    let input = Tensor::ones((1, 2, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let grid = Tensor::zeros((1, 0, 3, 2), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        grid_sample(&input, &grid, false).unwrap().dims(),
        &[1, 2, 0, 3]
    );
}

// ---------------------------------------------------------------- grid_sample errors

fn err_text(r: candle_core::Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got a tensor of shape {:?}", t.dims()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn grid_sample_rejects_bad_inputs() {
    let dev = Device::Cpu;
    let input = Tensor::zeros((1, 3, 8, 8), DType::F32, &dev).unwrap();
    let grid = Tensor::zeros((1, 4, 4, 2), DType::F32, &dev).unwrap();

    let e = err_text(grid_sample(&input.squeeze(0).unwrap(), &grid, true));
    assert!(e.contains("input must be 4-D"), "{e}");
    let e = err_text(grid_sample(&input, &grid.squeeze(0).unwrap(), true));
    assert!(e.contains("grid must be 4-D"), "{e}");
    let bad_last = Tensor::zeros((1, 4, 4, 3), DType::F32, &dev).unwrap();
    let e = err_text(grid_sample(&input, &bad_last, true));
    assert!(e.contains("grid must be 4-D (N, Ho, Wo, 2)"), "{e}");
    let grid2 = Tensor::zeros((2, 4, 4, 2), DType::F32, &dev).unwrap();
    let e = err_text(grid_sample(&input, &grid2, true));
    assert!(e.contains("batch sizes differ"), "{e}");
    let e = err_text(grid_sample(
        &input,
        &grid.to_dtype(DType::F64).unwrap(),
        true,
    ));
    assert!(e.contains("F32 but grid is F64"), "{e}");
    for dt in [DType::F16, DType::BF16, DType::U8] {
        let e = err_text(grid_sample(
            &input.to_dtype(dt).unwrap(),
            &grid.to_dtype(dt).unwrap(),
            true,
        ));
        assert!(e.contains("is not supported"), "{dt:?}: {e}");
    }
}

// ---------------------------------------------------------------- interpolate vs PyTorch

/// Bilinear resize tolerance for the F64 path and candle's own op (both differ from PyTorch's float32 only by
/// rounding); the F32 kernel itself must be bit-identical.
const INTERP_TOL: f64 = 1e-6;

fn check_interp(m: &HashMap<String, Tensor>, input_key: &str, out_key: &str) {
    let input = get(m, input_key);
    let want = get(m, out_key);
    let (_, _, oh, ow) = want.dims4().unwrap();
    let out = interpolate_bilinear(&input, oh, ow).unwrap();
    let d = max_abs_diff(&out, &want);
    println!("{out_key}: max abs diff {d:e}");
    // The kernel mirrors PyTorch's float32 arithmetic (including its fmas), so it is bit-identical.
    assert_eq!(
        d, 0.0,
        "{out_key}: not bit-identical to PyTorch (max abs diff {d:e})"
    );
    // F64 path: same formula in double precision.
    let out64 = interpolate_bilinear(&input.to_dtype(DType::F64).unwrap(), oh, ow).unwrap();
    assert_eq!(out64.dtype(), DType::F64);
    let d64 = max_abs_diff(&out64, &want);
    assert!(d64 <= INTERP_TOL, "{out_key} f64: max abs diff {d64:e}");
    // Candle's own upsample_bilinear2d (what non-CPU devices fall back to) agrees to float32 rounding.
    let theirs = input.upsample_bilinear2d(oh, ow, false).unwrap();
    let dc = max_abs_diff(&theirs, &want);
    println!("{out_key}: candle upsample_bilinear2d max abs diff {dc:e}");
    assert!(
        dc <= INTERP_TOL,
        "{out_key}: candle's op max abs diff {dc:e}"
    );
}

#[test]
fn interpolate_bilinear_up_matches_pytorch() {
    check_interp(
        &ops(),
        "interp_bilinear_up.input",
        "interp_bilinear_up.out_64x64",
    );
}

#[test]
fn interpolate_bilinear_down_matches_pytorch() {
    let m = ops();
    check_interp(
        &m,
        "interp_bilinear_down.input",
        "interp_bilinear_down.out_32x32",
    );
    check_interp(
        &m,
        "interp_bilinear_down.input",
        "interp_bilinear_down.out_16x16",
    );
}

#[test]
fn interpolate_bilinear_odd_ratio_matches_pytorch() {
    check_interp(
        &ops(),
        "interp_bilinear_odd.input",
        "interp_bilinear_odd.out_29x23",
    );
}

#[test]
fn interpolate_bilinear_strided_and_same_size_inputs() {
    let m = ops();
    let input = get(&m, "interp_bilinear_odd.input"); // (1, 2, 13, 17)
    let want = get(&m, "interp_bilinear_odd.out_29x23");
    let strided = input
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    assert!(!strided.is_contiguous());
    let out = interpolate_bilinear(&strided, 29, 23).unwrap();
    assert_eq!(max_abs_diff(&out, &want), 0.0);
    // Same size on a strided / offset view: must return that view's values (candle's own shortcut would
    // copy the raw storage).
    let same = interpolate_bilinear(&strided, 13, 17).unwrap();
    assert_eq!(max_abs_diff(&same, &input), 0.0);
    let narrowed = input.narrow(2, 2, 5).unwrap();
    let big = Tensor::cat(&[&narrowed, &narrowed], 1)
        .unwrap()
        .narrow(1, 1, 2)
        .unwrap();
    let same = interpolate_bilinear(&big, 5, 17).unwrap();
    assert_eq!(max_abs_diff(&same, &big.contiguous().unwrap()), 0.0);
}

#[test]
fn interpolate_bilinear_other_dtypes_use_candles_op() {
    let m = ops();
    let input = get(&m, "interp_bilinear_up.input");
    let want = get(&m, "interp_bilinear_up.out_64x64");
    let out = interpolate_bilinear(&input.to_dtype(DType::BF16).unwrap(), 64, 64).unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    // bf16 has 8 significant bits: values in [0, 1] round by up to 2^-9, twice (input and output).
    let d = max_abs_diff(&out, &want);
    assert!(d <= 4e-3, "bf16 max abs diff {d:e}");
}

#[test]
fn interpolate_bilinear_rejects_bad_inputs() {
    let x = Tensor::zeros((2, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let e = err_text(interpolate_bilinear(&x, 4, 4));
    assert!(e.contains("must be 4-D"), "{e}");
    let x = Tensor::zeros((1, 2, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let e = err_text(interpolate_bilinear(&x, 0, 4));
    assert!(e.contains("greater than 0"), "{e}");
}

// ---------------------------------------------------------------- candle ops FOMM uses as they are

#[test]
fn candle_upsample_nearest2d_matches_pytorch_scale_factor_2() {
    // UpBlock2d: F.interpolate(x, scale_factor=2) (util.py line 90); nearest copies, so exact.
    let m = ops();
    let input = get(&m, "interp_nearest_x2.input");
    let want = get(&m, "interp_nearest_x2.out");
    let (_, _, h, w) = input.dims4().unwrap();
    let out = input.upsample_nearest2d(2 * h, 2 * w).unwrap();
    assert_eq!(max_abs_diff(&out, &want), 0.0);
}

#[test]
fn candle_avg_pool2d_matches_pytorch_kernel_2() {
    // DownBlock2d: nn.AvgPool2d(kernel_size=(2, 2)).
    let m = ops();
    let input = get(&m, "avg_pool2.input");
    let want = get(&m, "avg_pool2.out");
    let out = input.avg_pool2d(2).unwrap();
    let d = max_abs_diff(&out, &want);
    println!("avg_pool2: max abs diff {d:e}");
    assert!(d <= 1e-7, "max abs diff {d:e}");
}

// ---------------------------------------------------------------- both ops on real FOMM tensors

fn load(name: &str) -> HashMap<String, Tensor> {
    let path = common::fixtures_dir().join(name);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// generator.py `deform_input`: resize the (B, h, w, 2) deformation to the input's size if needed, then
/// grid_sample (align_corners = true in the `*-outputs-ac-true` files).
fn deform_input(inp: &Tensor, deformation: &Tensor) -> Tensor {
    let (_, h_old, w_old, _) = deformation.dims4().unwrap();
    let (_, _, h, w) = inp.dims4().unwrap();
    let deformation = if (h_old, w_old) != (h, w) {
        let d = deformation.permute((0, 3, 1, 2)).unwrap();
        interpolate_bilinear(&d, h, w)
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap()
    } else {
        deformation.clone()
    };
    grid_sample(inp, &deformation, true).unwrap()
}

/// Feeds PyTorch's own intermediates (deformation, occlusion map, encoded features, sparse motions) through
/// the two ops and compares with PyTorch's results for every stored frame of `tiny` (features 64x64 = motion
/// size; image 256: 64 -> 256 upsampling) and `tiny2` (features 16x16: 64 -> 16 downsampling; image 128).
/// Both ops mirror PyTorch's float32 arithmetic, so the results must be bit-identical. (With a merely
/// accurate resize, e.g. candle's f64 `upsample_bilinear2d`, `deformed` is ~3e-5 off: the resized deformation is
/// scaled by 127.5 to pixel units, so one ulp in it moves the sample by ~1.5e-5 px.)
#[test]
fn generator_warping_matches_pytorch_on_model_fixtures() {
    for set in ["tiny", "tiny2"] {
        let inputs = load(&format!("{set}-inputs.safetensors"));
        let outs = load(&format!("{set}-outputs-ac-true.safetensors"));
        let source = get(&inputs, "source");
        let encoded = get(&outs, "generator.encoded");
        let source_down = get(&outs, "dense_motion.source_down");
        let mut frames = 0;
        for f in 0.. {
            let key = |k: &str| format!("relative.{f}.{k}");
            let Some(deformation) = outs.get(&key("deformation")) else {
                break;
            };
            frames += 1;

            let deformed = deform_input(&source, deformation);
            let d = max_abs_diff(&deformed, &get(&outs, &key("deformed")));
            println!("{set} frame {f}: deformed max abs diff {d:e}");
            assert_eq!(
                d, 0.0,
                "{set} frame {f}: deformed not bit-identical (max abs diff {d:e})"
            );

            let (_, _, fh, fw) = encoded.dims4().unwrap();
            let occlusion = get(&outs, &key("occlusion_map"));
            let occlusion = interpolate_bilinear(&occlusion, fh, fw).unwrap();
            let bottleneck_in = deform_input(&encoded, deformation)
                .broadcast_mul(&occlusion)
                .unwrap();
            let d = max_abs_diff(&bottleneck_in, &get(&outs, &key("bottleneck_in")));
            println!("{set} frame {f}: bottleneck_in max abs diff {d:e}");
            assert_eq!(
                d, 0.0,
                "{set} frame {f}: bottleneck_in not bit-identical (max abs diff {d:e})"
            );

            // dense_motion.py create_deformed_source_image: batch of K+1 copies of source_down.
            let sparse_motion = get(&outs, &key("sparse_motion"));
            let (b, k1, h, w, _) = sparse_motion.dims5().unwrap();
            let (_, c, sh, sw) = source_down.dims4().unwrap();
            let repeated = source_down
                .unsqueeze(1)
                .unwrap()
                .broadcast_as((b, k1, c, sh, sw))
                .unwrap()
                .reshape((b * k1, c, sh, sw))
                .unwrap();
            let grids = sparse_motion.reshape((b * k1, h, w, 2)).unwrap();
            let sparse_deformed = grid_sample(&repeated, &grids, true)
                .unwrap()
                .reshape((b, k1, c, h, w))
                .unwrap();
            let d = max_abs_diff(&sparse_deformed, &get(&outs, &key("sparse_deformed")));
            println!("{set} frame {f}: sparse_deformed max abs diff {d:e}");
            assert_eq!(
                d, 0.0,
                "{set} frame {f}: sparse_deformed not bit-identical (max abs diff {d:e})"
            );
        }
        assert!(
            frames >= 2,
            "{set}: expected at least two relative frames, found {frames}"
        );
    }
}
