//! Checks the f32 convolution kernels (Winograd in every schedule, im2col, the direct heads)
//! against an f64 direct convolution and against candle's conv2d.
//!
//! Error measure: max |y - reference| / max |reference| over the compared outputs. Bounds:
//! * Winograd path vs the f64 reference: 2e-6 relative (f32 accumulation over up to
//!   9 * 256 terms: candle's own im2col + gemm conv lands around 2e-7..1e-6 on these data).
//! * Winograd path vs candle's conv2d: 3e-6 relative (both are f32 approximations of the same sum).

use candle_core::{DType, Device, IndexOp, Tensor};
use fomm::ops::conv::{ConvLayer, DirectIsa, Family, Plan, Schedule, conv2d_direct_with};
use fomm::ops::precision::Precision;

/// A 3x3 / padding 1 layer at f32.
fn conv3x3(w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<ConvLayer> {
    ConvLayer::new(w, b, 1, Precision::F32)
}

/// `family` at f32 with `schedule`.
fn forced(family: Family, schedule: Schedule) -> Plan {
    Plan {
        family,
        precision: Precision::F32,
        schedule,
        upsample_first: false,
    }
}

/// Deterministic pseudo-random values in [lo, hi) (xorshift64*), so failures are reproducible.
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 random bits
        lo + (hi - lo) * (r as f32 / (1u64 << 24) as f32)
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32(lo, hi)).collect()
    }
}

/// Direct 3x3, stride 1, padding 1 convolution in f64 for the listed output channels.
/// Returns (N, channels.len(), H, W) flattened.
#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[f32],
    (n, ci, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    bias: Option<&[f32]>,
    channels: &[usize],
) -> Vec<f64> {
    let mut out = vec![0f64; n * channels.len() * h * w];
    for b in 0..n {
        for (oi, &co) in channels.iter().enumerate() {
            for y in 0..h {
                for xx in 0..w {
                    let mut acc = bias.map_or(0.0, |bv| f64::from(bv[co]));
                    for c in 0..ci {
                        for ky in 0..3 {
                            let iy = y as isize + ky as isize - 1;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..3 {
                                let ix = xx as isize + kx as isize - 1;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * ci + c) * h + iy as usize) * w + ix as usize];
                                let wv = wt[((co * ci + c) * 3 + ky) * 3 + kx];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    out[((b * channels.len() + oi) * h + y) * w + xx] = acc;
                }
            }
        }
    }
    out
}

/// max |a - b| / max |b|.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared buffers differ in length");
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((f64::from(x) - y).abs()));
    diff / scale
}

struct Case {
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    bias: bool,
    /// Input value range (post-ReLU activations are all positive).
    lo: f32,
    hi: f32,
}

/// Runs one case through the Winograd path (several band sizes), `forward`, and candle.
fn check(case: &Case, seed: u64) {
    let Case {
        n,
        ci,
        co,
        h,
        w,
        bias,
        lo,
        hi,
    } = *case;
    let dev = Device::Cpu;
    let mut rng = Rng(seed);
    let x = rng.vec(n * ci * h * w, lo, hi);
    // Kaiming-like scale, as in trained FOMM layers.
    let s = (2.0 / (9.0 * ci as f32)).sqrt() * 1.7;
    let wt = rng.vec(co * ci * 9, -s, s);
    let bv = rng.vec(co, -0.5, 0.5);
    let xt = Tensor::from_vec(x.clone(), (n, ci, h, w), &dev).unwrap();
    let wtt = Tensor::from_vec(wt.clone(), (co, ci, 3, 3), &dev).unwrap();
    let bt = Tensor::from_vec(bv.clone(), co, &dev).unwrap();
    let conv = conv3x3(&wtt, bias.then_some(&bt)).unwrap();

    // f64 reference on a subset of output channels for the big layers (keeps the test quick).
    let step = if ci * co > 4096 { co / 8 } else { 1 };
    let channels: Vec<usize> = (0..co).step_by(step.max(1)).collect();
    let refv = reference(
        &x,
        (n, ci, h, w),
        &wt,
        bias.then_some(bv.as_slice()),
        &channels,
    );
    let pick = |y: &Tensor| -> Vec<f32> {
        let idx =
            Tensor::new(channels.iter().map(|&c| c as u32).collect::<Vec<_>>(), &dev).unwrap();
        y.index_select(&idx, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };

    let candle_y = conv.forward_candle(&xt).unwrap();
    let e_candle = rel_err(&pick(&candle_y), &refv);
    let candle_all: Vec<f64> = candle_y
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();

    let tiles_w = w.div_ceil(2);
    let winograd = |schedule| forced(Family::Winograd, schedule);
    for plan in [
        winograd(Schedule::Bands(1)),
        winograd(Schedule::Bands(tiles_w)),
        winograd(Schedule::Bands(3 * tiles_w + 1)),
        winograd(Schedule::Bands(usize::MAX / 4)),
        winograd(Schedule::Whole),
        forced(Family::Im2col, Schedule::Single),
    ] {
        let y = conv.forward_planned(&xt, plan).unwrap();
        assert_eq!(y.dims(), &[n, co, h, w]);
        let e_ref = rel_err(&pick(&y), &refv);
        let e_vs_candle = rel_err(
            &y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            &candle_all,
        );
        eprintln!(
            "n{n} {ci}->{co} {h}x{w} bias={bias} {:?} {:?}: ours vs f64 {e_ref:.2e}, \
             candle vs f64 {e_candle:.2e}, ours vs candle {e_vs_candle:.2e}",
            plan.family, plan.schedule
        );
        assert!(e_ref <= 2e-6, "{plan:?} vs f64 reference: {e_ref:e}");
        assert!(e_vs_candle <= 3e-6, "{plan:?} vs candle: {e_vs_candle:e}");
    }
    // The planner's own choice agrees as well.
    let y = conv.forward(&xt).unwrap();
    let e = rel_err(&pick(&y), &refv);
    assert!(e <= 2e-6, "forward vs f64 reference: {e:e}");
}

#[test]
fn odd_and_tiny_sizes() {
    for (i, &(h, w)) in [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (3, 3),
        (5, 7),
        (7, 5),
        (4, 6),
        (9, 1),
        (1, 9),
    ]
    .iter()
    .enumerate()
    {
        check(
            &Case {
                n: 1,
                ci: 3,
                co: 16,
                h,
                w,
                bias: true,
                lo: -1.0,
                hi: 1.0,
            },
            11 + i as u64,
        );
        check(
            &Case {
                n: 2,
                ci: 5,
                co: 4,
                h,
                w,
                bias: false,
                lo: 0.0,
                hi: 2.0,
            },
            101 + i as u64,
        );
    }
}

/// Deep hourglass maps (8x8 and smaller, many channels: one im2col product at f32) with more
/// output channels than one job's block of rows, and a batch of two.
#[test]
fn small_maps_with_many_channels() {
    for (i, &(n, ci, co, h, w)) in [(1, 40, 130, 4, 4), (2, 33, 70, 8, 8), (1, 64, 200, 2, 2)]
        .iter()
        .enumerate()
    {
        check(
            &Case {
                n,
                ci,
                co,
                h,
                w,
                bias: true,
                lo: -1.0,
                hi: 1.0,
            },
            700 + i as u64,
        );
    }
}

#[test]
fn kp_encoder_first_layer() {
    // Keypoint detector hourglass input: 3 (RGB) -> 64 channels at 64x64 (FOMM vox-256).
    check(
        &Case {
            n: 1,
            ci: 3,
            co: 64,
            h: 64,
            w: 64,
            bias: true,
            lo: 0.0,
            hi: 1.0,
        },
        7,
    );
}

#[test]
fn dense_motion_first_layer_batch2() {
    // Dense motion encoder input: 44 channels (11 x (3 + 1) for 10 keypoints) -> 128 at 64x64.
    check(
        &Case {
            n: 2,
            ci: 44,
            co: 128,
            h: 64,
            w: 64,
            bias: true,
            lo: -1.0,
            hi: 1.0,
        },
        3,
    );
}

#[test]
fn resblock_256() {
    // Generator bottleneck ResBlock conv: 256 -> 256 at 64x64, on post-ReLU (positive) input.
    check(
        &Case {
            n: 1,
            ci: 256,
            co: 256,
            h: 64,
            w: 64,
            bias: true,
            lo: 0.0,
            hi: 3.0,
        },
        5,
    );
}

#[test]
fn offset_inputs_and_odd_map() {
    // A large common offset (DC component) with small variations, odd map size, 33 channels.
    check(
        &Case {
            n: 1,
            ci: 33,
            co: 17,
            h: 13,
            w: 31,
            bias: true,
            lo: 50.0,
            hi: 51.0,
        },
        9,
    );
}

#[test]
fn strided_input_view_is_handled() {
    let dev = Device::Cpu;
    let mut rng = Rng(21);
    let (ci, co, h, w) = (6, 5, 12, 10);
    let wt = Tensor::from_vec(rng.vec(co * ci * 9, -0.3, 0.3), (co, ci, 3, 3), &dev).unwrap();
    let b = Tensor::from_vec(rng.vec(co, -0.3, 0.3), co, &dev).unwrap();
    let conv = conv3x3(&wt, Some(&b)).unwrap();
    // (1, ci, w, h) transposed to (1, ci, h, w): a non-contiguous input.
    let base = Tensor::from_vec(rng.vec(ci * h * w, -1.0, 1.0), (1, ci, w, h), &dev).unwrap();
    let x = base.transpose(2, 3).unwrap();
    let a = conv.forward(&x).unwrap();
    let r = conv.forward_candle(&x.contiguous().unwrap()).unwrap();
    let diff = (a - r)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 2e-6, "strided input differs from candle by {diff}");
    // Narrowed batch view (non-zero storage offset).
    let big = Tensor::from_vec(rng.vec(3 * ci * h * w, -1.0, 1.0), (3, ci, h, w), &dev).unwrap();
    let x = big.i(1..3).unwrap();
    let a = conv.forward(&x).unwrap();
    let r = conv.forward_candle(&x).unwrap();
    let diff = (a - r)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 2e-6, "offset input differs from candle by {diff}");
}

#[test]
fn fallback_for_other_dtypes() {
    let dev = Device::Cpu;
    let mut rng = Rng(5);
    let wt = Tensor::from_vec(rng.vec(4 * 3 * 9, -0.3, 0.3), (4, 3, 3, 3), &dev).unwrap();
    let conv = conv3x3(&wt, None).unwrap();
    let x = Tensor::from_vec(rng.vec(3 * 16 * 16, -1.0, 1.0), (1, 3, 16, 16), &dev).unwrap();
    let y32 = conv.forward(&x).unwrap();
    // An f64 input goes through candle: candle rejects the f32 weight with an error, no panic.
    let x64 = x.to_dtype(DType::F64).unwrap();
    assert!(conv.forward(&x64).is_err());
    // f64 weights: the layer is built (fallback only) and computes in f64.
    let conv64 = conv3x3(&wt.to_dtype(DType::F64).unwrap(), None).unwrap();
    let y64 = conv64.forward(&x64).unwrap().to_dtype(DType::F32).unwrap();
    let diff = (y64 - y32)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff < 1e-5,
        "f64 fallback differs from the f32 fast path by {diff}"
    );
}

#[test]
fn bad_shapes_are_errors() {
    let dev = Device::Cpu;
    let w = Tensor::zeros((8, 4, 3, 3), DType::F32, &dev).unwrap();
    assert!(
        conv3x3(
            &Tensor::zeros((8, 4, 3, 5), DType::F32, &dev).unwrap(),
            None
        )
        .is_err()
    );
    // A plan that does not fit the layer is an error: Winograd on a 5x5 kernel.
    let five = ConvLayer::new(
        &Tensor::zeros((8, 4, 5, 5), DType::F32, &dev).unwrap(),
        None,
        2,
        Precision::F32,
    )
    .unwrap();
    let x = Tensor::zeros((1, 4, 8, 8), DType::F32, &dev).unwrap();
    let e = five
        .forward_planned(&x, forced(Family::Winograd, Schedule::Whole))
        .unwrap_err();
    assert!(e.to_string().contains("does not take"), "{e}");
    assert_eq!(five.forward(&x).unwrap().dims(), &[1, 8, 8, 8]);
    assert!(conv3x3(&Tensor::zeros((8, 4, 3), DType::F32, &dev).unwrap(), None).is_err());
    assert!(
        conv3x3(
            &Tensor::zeros((0, 4, 3, 3), DType::F32, &dev).unwrap(),
            None
        )
        .is_err()
    );
    let bad_bias = Tensor::zeros(7, DType::F32, &dev).unwrap();
    let e = conv3x3(&w, Some(&bad_bias)).unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    let conv = conv3x3(&w, None).unwrap();
    assert!(
        conv.forward(&Tensor::zeros((1, 3, 8, 8), DType::F32, &dev).unwrap())
            .is_err()
    );
    assert!(
        conv.forward(&Tensor::zeros((4, 8, 8), DType::F32, &dev).unwrap())
            .is_err()
    );
    // Empty batch and empty maps do not panic.
    let y = conv.forward(&Tensor::zeros((0, 4, 8, 8), DType::F32, &dev).unwrap());
    if let Ok(y) = y {
        assert_eq!(y.dims(), &[0, 8, 8, 8]);
    }
    let _ = conv.forward(&Tensor::zeros((1, 4, 0, 8), DType::F32, &dev).unwrap());
}

/// The direct kernel's vector paths give the plain loop's values exactly (same products, same
/// order of additions, no fused multiply-add): on shapes with partial channel blocks, pixel runs
/// cut by the row's end, runs that span both edges, no padding and more padding than the
/// kernel's half width. A kernel this processor lacks (or `MARIONETTE_CPU` caps) is skipped, and
/// the test says so.
#[test]
fn direct_vector_kernels_equal_the_plain_loop() {
    let isas: Vec<DirectIsa> = [DirectIsa::Avx2, DirectIsa::Avx512]
        .into_iter()
        .filter(|isa| {
            let on = isa.supported();
            if !on {
                eprintln!("{isa:?}: not on this processor (or capped by MARIONETTE_CPU): skipped");
            }
            on
        })
        .collect();
    eprintln!("comparing {isas:?} with the plain loop");
    for (n, c, o, h, w, k, pad) in [
        (1usize, 64usize, 3usize, 19usize, 150usize, 7usize, 3usize),
        (2, 35, 10, 20, 21, 7, 0),
        (1, 35, 40, 64, 64, 7, 0),
        (1, 9, 7, 5, 70, 5, 4),
        (2, 3, 1, 9, 6, 3, 1),
        (1, 1, 5, 8, 17, 1, 0),
    ] {
        let x = Tensor::randn(0f32, 1.0, (n, c, h, w), &Device::Cpu).unwrap();
        let wt = Tensor::randn(0f32, 0.1, (o, c, k, k), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 0.1, o, &Device::Cpu).unwrap();
        let run = |isa| {
            conv2d_direct_with(isa, &x, &wt, &b, pad)
                .unwrap()
                .expect("applicable")
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let plain = run(DirectIsa::Scalar);
        for &isa in &isas {
            let ours = run(isa);
            assert_eq!(ours.len(), plain.len());
            let differing = ours.iter().zip(&plain).filter(|(a, b)| a != b).count();
            assert_eq!(
                differing, 0,
                "{isa:?} {c}->{o} {h}x{w} k{k} p{pad}: {differing} values differ"
            );
        }
    }
}

/// The direct kernel for few-output-channel layers (FOMM's 7x7 heads) against candle's conv2d.
#[test]
fn direct_small_cout_conv_matches_candle() {
    use candle_core::{Device, Tensor};
    use fomm::ops::conv::conv2d_direct;
    for (c, o, h, w, k, pad) in [
        (64usize, 3usize, 37usize, 29usize, 7usize, 3usize),
        (35, 10, 20, 20, 7, 0),
        (5, 1, 9, 6, 3, 1),
    ] {
        let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &Device::Cpu).unwrap();
        let wt = Tensor::randn(0f32, 0.1, (o, c, k, k), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 0.1, o, &Device::Cpu).unwrap();
        let ours = conv2d_direct(&x, &wt, &b, pad)
            .unwrap()
            .expect("applicable");
        let theirs = x
            .conv2d(&wt, pad, 1, 1, 1)
            .unwrap()
            .broadcast_add(&b.reshape((1, o, 1, 1)).unwrap())
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let d = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-4, "{c}->{o} {h}x{w} k{k} p{pad}: max diff {d}");
    }
}
