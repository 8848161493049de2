//! The bf16 convolution kernels against an f64 direct convolution, on shapes chosen to hit every
//! edge: odd map sizes, channel counts that are not a multiple of the 16-lane vectors or of the
//! 8-row blocks (1, 3, 5, 17, 33, 44), maps from 1x1 to 70x70 (im2col, whole-image Winograd and
//! banded Winograd), 7x7 heads with padding 0 and 3, batches of 2.
//!
//! Error measure: RMS and max of |y - reference| over max |reference|. Bounds, from the
//! arithmetic: each operand is rounded to bf16 (relative error at most 2^-9 = 0.00195), products
//! and sums are f32. A direct (im2col) product then lands near 2^-9 / sqrt(3) RMS relative to the
//! output's scale; Winograd F(2x2, 3x3) rounds transformed operands that are sums of up to 4
//! inputs (and 1/2-weighted filter taps), which measured 1.5x the direct error. Bounds: RMS 4e-3
//! and max 2.5e-2 of max |reference| (im2col), RMS 6e-3 and max 4e-2 (Winograd). For scale, the
//! f32 path lands at 2e-6. The fused upsampling convolution (F(2x2, 2x2) per phase) rounds
//! transformed inputs that are differences of two values, and its filter transform sums up to 9
//! taps: bounded like Winograd.

use candle_core::{Device, Tensor};
use fomm::ops::conv::{ConvBf16, ConvLayer, Schedule, UpConv, plan};
use fomm::ops::precision::Precision;

struct Rng(u64);
impl Rng {
    fn next_f32(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        lo + (hi - lo) * (r as f32 / (1u64 << 24) as f32)
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32(lo, hi)).collect()
    }
}

/// Direct stride-1 convolution with zero padding, in f64: x (n, ci, h, w), wt (co, ci, k, k).
#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[f32],
    (n, ci, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    co: usize,
    k: usize,
    pad: usize,
    bias: &[f32],
) -> (Vec<f64>, usize, usize) {
    let (ho, wo) = (h + 2 * pad - k + 1, w + 2 * pad - k + 1);
    let mut out = vec![0f64; n * co * ho * wo];
    for b in 0..n {
        for o in 0..co {
            for y in 0..ho {
                for xx in 0..wo {
                    let mut acc = f64::from(bias[o]);
                    for c in 0..ci {
                        for ky in 0..k {
                            let iy = (y + ky) as isize - pad as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..k {
                                let ix = (xx + kx) as isize - pad as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * ci + c) * h + iy as usize) * w + ix as usize];
                                let wv = wt[((o * ci + c) * k + ky) * k + kx];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    out[((b * co + o) * ho + y) * wo + xx] = acc;
                }
            }
        }
    }
    (out, ho, wo)
}

/// (RMS error, max error) relative to max |reference|.
fn errors(got: &[f32], want: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    let (mut sq, mut max) = (0f64, 0f64);
    for (&g, &r) in got.iter().zip(want) {
        let d = (f64::from(g) - r).abs();
        sq += d * d;
        max = max.max(d);
    }
    ((sq / got.len() as f64).sqrt() / scale, max / scale)
}

struct Layer {
    x: Vec<f32>,
    wt: Vec<f32>,
    bias: Vec<f32>,
}

/// ReLU-like inputs in [0, 1) with an offset channel pattern, He-scaled weights, small biases.
fn layer(rng: &mut Rng, (n, ci, h, w): (usize, usize, usize, usize), co: usize, k: usize) -> Layer {
    let x = rng.vec(n * ci * h * w, 0.0, 1.0);
    let s = (6.0 / (ci * k * k) as f32).sqrt();
    Layer {
        x,
        wt: rng.vec(co * ci * k * k, -s, s),
        bias: rng.vec(co, -0.1, 0.1),
    }
}

/// A 3x3 layer at bf16 on (n, ci, h, w) -> co, checked against the reference.
fn check_3x3(seed: u64, dims: (usize, usize, usize, usize), co: usize) -> (f64, f64) {
    let mut rng = Rng(seed);
    let (n, ci, h, w) = dims;
    let l = layer(&mut rng, dims, co, 3);
    let dev = Device::Cpu;
    let wt = Tensor::from_vec(l.wt.clone(), (co, ci, 3, 3), &dev).unwrap();
    let bias = Tensor::from_vec(l.bias.clone(), co, &dev).unwrap();
    let x = Tensor::from_vec(l.x.clone(), (n, ci, h, w), &dev).unwrap();
    let conv = ConvLayer::new(&wt, Some(&bias), 1, Precision::Bf16).unwrap();
    assert_eq!(conv.precision(), Precision::Bf16);
    let tiles = h.div_ceil(2) * w.div_ceil(2);
    let planned = conv.plan_for(&x, false).unwrap();
    assert_eq!(planned.precision, Precision::Bf16);
    let want_family = if tiles >= plan::BF16_MIN_WINOGRAD_TILES {
        plan::Family::Winograd
    } else {
        plan::Family::Im2col
    };
    assert_eq!(planned.family, want_family, "{dims:?}");
    let y = conv.forward(&x).unwrap();
    assert_eq!(y.dims(), &[n, co, h, w]);
    let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // Deterministic: the same input gives the same bits.
    let again = conv.forward(&x).unwrap().flatten_all().unwrap();
    assert_eq!(
        got,
        again.to_vec1::<f32>().unwrap(),
        "{dims:?} -> {co}: not deterministic"
    );
    let (want, _, _) = reference(&l.x, dims, &l.wt, co, 3, 1, &l.bias);
    errors(&got, &want)
}

#[test]
fn conv3x3_small_maps_take_im2col() {
    // Fewer than 16 tiles: the im2col product.
    for (i, (dims, co)) in [
        ((1, 1, 1, 1), 1),
        ((1, 3, 2, 2), 5),
        ((1, 17, 3, 5), 9),
        ((2, 33, 4, 4), 17),
        ((1, 64, 5, 7), 40),
    ]
    .into_iter()
    .enumerate()
    {
        let (rms, max) = check_3x3(11 + i as u64, dims, co);
        assert!(
            rms < 4e-3 && max < 2.5e-2,
            "{dims:?} -> {co}: rms {rms:.2e} max {max:.2e}"
        );
    }
}

#[test]
fn conv3x3_winograd_whole_and_banded() {
    // 16..63 tiles per image: whole images; 64 and more: bands of tile rows.
    for (i, (dims, co)) in [
        ((1, 5, 8, 8), 8),
        ((2, 44, 9, 11), 24),
        ((1, 33, 15, 15), 17),
        ((1, 17, 16, 16), 33),
        ((2, 3, 31, 17), 8),
        ((1, 70, 33, 33), 40),
        ((1, 64, 70, 64), 64),
    ]
    .into_iter()
    .enumerate()
    {
        let (rms, max) = check_3x3(101 + i as u64, dims, co);
        assert!(
            rms < 6e-3 && max < 4e-2,
            "{dims:?} -> {co}: rms {rms:.2e} max {max:.2e}"
        );
    }
}

#[test]
fn deep_reduction_crosses_several_passes() {
    // Cin 1100: 4950 pairs of k through im2col (many 256-pair passes), 550 through Winograd.
    let (rms, max) = check_3x3(7, (1, 1100, 4, 4), 24);
    assert!(
        rms < 4e-3 && max < 2.5e-2,
        "im2col: rms {rms:.2e} max {max:.2e}"
    );
    let (rms, max) = check_3x3(8, (1, 1100, 9, 9), 16);
    assert!(
        rms < 6e-3 && max < 4e-2,
        "winograd: rms {rms:.2e} max {max:.2e}"
    );
}

/// Nearest 2x upsampling of x (n, ci, h, w).
fn upsampled(x: &[f32], (n, ci, h, w): (usize, usize, usize, usize)) -> Vec<f32> {
    let mut out = vec![0f32; n * ci * 4 * h * w];
    for (plane, big) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(4 * h * w)) {
        for (y, row) in big.chunks_exact_mut(2 * w).enumerate() {
            for (xx, v) in row.iter_mut().enumerate() {
                *v = plane[(y / 2) * w + xx / 2];
            }
        }
    }
    out
}

#[test]
fn upsampling_convolution_matches_upsample_then_convolve() {
    // FOMM's UpBlock2d shapes in small: odd maps (the last tile half outside), channel counts off
    // the vector width, one band with parallel products (under 128 tiles), several bands.
    for (i, (dims, co)) in [
        ((1, 3, 1, 1), 5),
        ((1, 17, 3, 5), 9),
        ((2, 44, 8, 8), 24),
        ((1, 33, 9, 7), 17),
        ((1, 64, 24, 26), 40),
        ((2, 5, 31, 17), 8),
        ((1, 20, 40, 33), 12),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng(500 + i as u64);
        let (n, ci, h, w) = dims;
        let l = layer(&mut rng, dims, co, 3);
        let big = upsampled(&l.x, dims);
        let (want, ho, wo) = reference(&big, (n, ci, 2 * h, 2 * w), &l.wt, co, 3, 1, &l.bias);
        assert_eq!((ho, wo), (2 * h, 2 * w));
        // bf16: the Winograd path's bound; f32: sums of f32 products, transforms of +-1 only
        // (about 1e-7 RMS measured).
        // Both schedules on every shape: one band per image with the products in parallel, and
        // bands of a few tile rows (several per image from 16 tiles on).
        let schedules = [Schedule::Whole, Schedule::Bands(plan::MIN_BAND_TILES / 4)];
        for (p, rms_bound, max_bound) in
            [(Precision::Bf16, 6e-3, 4e-2), (Precision::F32, 2e-6, 2e-5)]
        {
            let conv = UpConv::new(&l.wt, co, ci, &l.bias, p).unwrap();
            let whole = conv.forward(&l.x, (n, h, w), schedules[0]).unwrap();
            for schedule in schedules {
                let got = conv.forward(&l.x, (n, h, w), schedule).unwrap();
                let again = conv.forward(&l.x, (n, h, w), schedule).unwrap();
                assert_eq!(got, again, "{p} {dims:?} -> {co}: not deterministic");
                // Each output comes from the same sums whichever way the work is cut.
                assert_eq!(got, whole, "{p} {dims:?} -> {co}: {schedule:?} differs");
                let (rms, max) = errors(&got, &want);
                eprintln!("{p} {schedule:?} {dims:?} -> {co}: rms {rms:.2e} max {max:.2e}");
                assert!(
                    rms < rms_bound && max < max_bound,
                    "{p} {dims:?} -> {co}: rms {rms:.2e} max {max:.2e}"
                );
            }
        }
    }
    // A shape that does not match is an error, not a panic.
    let conv = UpConv::new(&[0.0; 9], 1, 1, &[0.0], Precision::Bf16).unwrap();
    assert!(conv.forward(&[0.0; 5], (1, 2, 2), Schedule::Whole).is_err());
    assert!(UpConv::new(&[0.0; 8], 1, 1, &[0.0], Precision::Bf16).is_err());
}

#[test]
fn heads_7x7_with_and_without_padding() {
    // FOMM's heads: kp/jacobian (pad 0 in vox, 3 in mgif), dense-motion mask (pad 3).
    for (i, (dims, co, pad)) in [
        ((1, 35, 20, 20), 40, 0),
        ((1, 35, 16, 16), 10, 3),
        ((2, 12, 13, 9), 11, 3),
        ((1, 3, 7, 7), 8, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng(300 + i as u64);
        let (n, ci, h, w) = dims;
        let l = layer(&mut rng, dims, co, 7);
        let conv = ConvBf16::new(&l.wt, (co, ci, 7), &l.bias, pad).unwrap();
        let (got, ho, wo) = conv.forward(&l.x, (n, h, w)).unwrap().unwrap();
        let (want, rh, rw) = reference(&l.x, dims, &l.wt, co, 7, pad, &l.bias);
        assert_eq!((ho, wo), (rh, rw));
        let (rms, max) = errors(&got, &want);
        assert!(
            rms < 4e-3 && max < 2.5e-2,
            "{dims:?} -> {co} pad {pad}: rms {rms:.2e} max {max:.2e}"
        );
    }
    // A kernel larger than the padded input is reported as not applicable.
    let conv = ConvBf16::new(&[0.0; 49], (1, 1, 7), &[0.0], 0).unwrap();
    assert!(conv.forward(&[0.0; 25], (1, 5, 5)).unwrap().is_none());
}

#[test]
fn bf16_is_really_reduced_and_f32_is_untouched() {
    // The same weights as an f32 layer and a bf16 layer: f32 stays exact, bf16 really rounds.
    let mut rng = Rng(5);
    let dims = (1, 32, 20, 20);
    let l = layer(&mut rng, dims, 16, 3);
    let dev = Device::Cpu;
    let wt = Tensor::from_vec(l.wt.clone(), (16, 32, 3, 3), &dev).unwrap();
    let bias = Tensor::from_vec(l.bias.clone(), 16, &dev).unwrap();
    let x = Tensor::from_vec(l.x.clone(), (1, 32, 20, 20), &dev).unwrap();
    let bits = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let f32_layer = ConvLayer::new(&wt, Some(&bias), 1, Precision::F32).unwrap();
    let bf16_layer = ConvLayer::new(&wt, Some(&bias), 1, Precision::Bf16).unwrap();
    let f32_before = bits(f32_layer.forward(&x).unwrap());
    let reduced = bits(bf16_layer.forward(&x).unwrap());
    assert_eq!(f32_before, bits(f32_layer.forward(&x).unwrap()));
    let (want, _, _) = reference(&l.x, dims, &l.wt, 16, 3, 1, &l.bias);
    let (f32_rms, _) = errors(&f32_before, &want);
    let (bf16_rms, _) = errors(&reduced, &want);
    assert!(f32_rms < 1e-6, "f32 rms {f32_rms:.2e}");
    assert!(
        bf16_rms > 1e-4,
        "bf16 rms {bf16_rms:.2e}: the bf16 path did not run"
    );
}
