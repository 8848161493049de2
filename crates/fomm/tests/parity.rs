//! Parity with the original PyTorch FOMM on the reference fixtures (`../shared/fixtures/fomm`),
//! at the tolerances of the fixtures' README ("Numerical tolerance guidance"): key point values,
//! Jacobians and heatmaps <= 1e-5; masks, occlusion, deformation, sparse_* <= 2e-4; feature maps
//! <= 1e-4; bottleneck_in <= 3e-3; deformed and prediction max <= 3e-3 and mean <= 1e-4.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::{assert_close, fixture, load_tensors, load_tensors_on_test_device, test_device};
use fomm::keypoint_detector::Keypoints;
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::model::{Fomm, RunOptions};
use fomm::motion_transfer::{
    MotionTransfer, TransferOptions, adapt_movement_scale, convex_hull_area,
};

const KP: f64 = 1e-5;
const MOTION: f64 = 2e-4;
const FEATURES: f64 = 1e-4;
const BOTTLENECK: f64 = 3e-3;
const IMAGE_MAX: f64 = 3e-3;
const IMAGE_MEAN: f64 = 1e-4;

fn model(name: &str, align_corners: bool) -> Fomm {
    let config = FommConfig::from_yaml_file(&fixture(&format!("{name}.yaml"))).expect("config");
    let ckpt = Checkpoint::load(&fixture(&format!("{name}.safetensors"))).expect("checkpoint");
    let mut m = Fomm::from_checkpoint(&config, &ckpt, name, &test_device(), Default::default())
        .expect("model");
    m.options = RunOptions { align_corners };
    m
}

fn get<'a>(t: &'a std::collections::HashMap<String, Tensor>, k: &str) -> &'a Tensor {
    t.get(k)
        .unwrap_or_else(|| panic!("fixture tensor {k} missing"))
}

fn check_keypoints(
    what: &str,
    got: &Keypoints,
    out: &std::collections::HashMap<String, Tensor>,
    prefix: &str,
) {
    assert_close(
        &format!("{what} {prefix}.value"),
        &got.value,
        get(out, &format!("{prefix}.value")),
        KP,
        None,
    );
    let jac = got.jacobian.as_ref().expect("jacobian");
    assert_close(
        &format!("{what} {prefix}.jacobian"),
        jac,
        get(out, &format!("{prefix}.jacobian")),
        KP,
        None,
    );
}

fn full_parity(name: &str, frames: usize) {
    let m = model(name, true);
    let inputs = load_tensors_on_test_device(&format!("{name}-inputs.safetensors"));
    let out = load_tensors(&format!("{name}-outputs-ac-true.safetensors"));
    let source = get(&inputs, "source");

    check_source_detector(name, &m, source, &out);

    // Per-portrait cache.
    let prepared = m.prepare_source(source).expect("prepare");
    assert_close(
        "generator.encoded",
        &prepared.encoded.features,
        get(&out, "generator.encoded"),
        FEATURES,
        None,
    );
    let dm_source = prepared
        .encoded
        .dense_motion
        .as_ref()
        .expect("dense motion source");
    assert_close(
        "dense_motion.source_down",
        &dm_source.source_down,
        get(&out, "dense_motion.source_down"),
        KP,
        None,
    );

    // Driving key points.
    let kp_driving: Vec<Keypoints> = (0..frames)
        .map(|n| {
            let frame = get(&inputs, &format!("driving.{n}"));
            let d = m.detect_detailed(frame).expect("detect driving");
            assert_close(
                &format!("kp_driving.{n}.heatmap"),
                &d.heatmap,
                get(&out, &format!("kp_driving.{n}.heatmap")),
                KP,
                None,
            );
            check_keypoints(name, &d.keypoints, &out, &format!("kp_driving.{n}"));
            d.keypoints
        })
        .collect();

    check_movement_scale(&prepared.keypoints, &kp_driving[0], &out);

    // Relative animation: driving.0 is the reference frame.
    let mut transfer = MotionTransfer::new(TransferOptions::default());
    for (n, kp) in kp_driving.iter().enumerate() {
        let kp_norm = transfer
            .transfer(&prepared.keypoints, kp)
            .expect("transfer");
        check_keypoints(name, &kp_norm, &out, &format!("kp_norm.{n}"));
        let g = m.render(&prepared, &kp_norm, true).expect("render");
        let dm = g.dense_motion.as_ref().expect("dense motion");
        let p = format!("relative.{n}");
        let checks: [(&str, &Tensor, f64, Option<f64>); 9] = [
            (
                "heatmap_representation",
                &dm.heatmap_representation,
                MOTION,
                None,
            ),
            ("sparse_motion", &dm.sparse_motion, MOTION, None),
            ("sparse_deformed", &dm.sparse_deformed, MOTION, None),
            ("mask", &dm.mask, MOTION, None),
            ("deformation", &dm.deformation, MOTION, None),
            (
                "occlusion_map",
                dm.occlusion_map.as_ref().expect("occlusion"),
                MOTION,
                None,
            ),
            ("bottleneck_in", &g.bottleneck_in, BOTTLENECK, None),
            (
                "deformed",
                g.deformed.as_ref().expect("deformed"),
                IMAGE_MAX,
                Some(IMAGE_MEAN),
            ),
            ("prediction", &g.prediction, IMAGE_MAX, Some(IMAGE_MEAN)),
        ];
        check_all(&p, &checks, &out);
    }

    // Absolute animation: the raw driving key points.
    let mut absolute = MotionTransfer::new(TransferOptions::absolute());
    for (n, kp) in kp_driving.iter().enumerate() {
        let kp_abs = absolute
            .transfer(&prepared.keypoints, kp)
            .expect("transfer");
        let g = m.render(&prepared, &kp_abs, false).expect("render");
        let dm = g.dense_motion.as_ref().expect("dense motion");
        let p = format!("absolute.{n}");
        let checks: [(&str, &Tensor, f64, Option<f64>); 3] = [
            ("deformation", &dm.deformation, MOTION, None),
            (
                "occlusion_map",
                dm.occlusion_map.as_ref().expect("occlusion"),
                MOTION,
                None,
            ),
            ("prediction", &g.prediction, IMAGE_MAX, Some(IMAGE_MEAN)),
        ];
        check_all(&p, &checks, &out);
    }
}

/// The key point detector on the source, every intermediate.
fn check_source_detector(name: &str, m: &Fomm, source: &Tensor, out: &HashMap<String, Tensor>) {
    let det = m.detect_detailed(source).expect("detect");
    check_keypoints(name, &det.keypoints, out, "kp_source");
    assert_close(
        "kp_source.down",
        det.down.as_ref().expect("down"),
        get(out, "kp_source.down"),
        KP,
        None,
    );
    assert_close(
        "kp_source.feature_map",
        &det.feature_map,
        get(out, "kp_source.feature_map"),
        FEATURES,
        None,
    );
    assert_close(
        "kp_source.kp_logits",
        &det.kp_logits,
        get(out, "kp_source.kp_logits"),
        FEATURES,
        None,
    );
    assert_close(
        "kp_source.heatmap",
        &det.heatmap,
        get(out, "kp_source.heatmap"),
        KP,
        None,
    );
    assert_close(
        "kp_source.jacobian_map",
        det.jacobian_map.as_ref().expect("jacobian_map"),
        get(out, "kp_source.jacobian_map"),
        FEATURES,
        None,
    );
}

/// The convex hulls and the movement scale (float64 in the original).
fn check_movement_scale(source: &Keypoints, driving: &Keypoints, out: &HashMap<String, Tensor>) {
    let scalar = |k: &str| {
        get(out, k)
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let scale = adapt_movement_scale(source, driving).expect("scale");
    assert!(
        (scale - scalar("normalize.adapt_movement_scale")).abs() < 1e-5,
        "adapt scale {scale}"
    );
    let pts = |kp: &Keypoints| -> Vec<[f64; 2]> {
        kp.value
            .get(0)
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap()
            .iter()
            .map(|p| [p[0], p[1]])
            .collect()
    };
    assert!((convex_hull_area(&pts(source)) - scalar("normalize.source_hull_area")).abs() < 1e-5);
    assert!(
        (convex_hull_area(&pts(driving)) - scalar("normalize.driving_initial_hull_area")).abs()
            < 1e-5
    );
}

/// Compares each (name, tensor, max tolerance, mean tolerance) with `{prefix}.{name}`.
fn check_all(
    prefix: &str,
    checks: &[(&str, &Tensor, f64, Option<f64>)],
    out: &std::collections::HashMap<String, Tensor>,
) {
    for (name, got, tol, mean) in checks {
        let key = format!("{prefix}.{name}");
        assert_close(&key, got, get(out, &key), *tol, *mean);
    }
}

fn align_false_parity(name: &str, frames: usize) {
    let m = model(name, false);
    let inputs = load_tensors_on_test_device(&format!("{name}-inputs.safetensors"));
    let out = load_tensors(&format!("{name}-outputs-ac-false.safetensors"));
    let prepared = m.prepare_source(get(&inputs, "source")).expect("prepare");
    let mut relative = MotionTransfer::new(TransferOptions::default());
    let mut absolute = MotionTransfer::new(TransferOptions::absolute());
    for n in 0..frames {
        let kp = m
            .detect(get(&inputs, &format!("driving.{n}")))
            .expect("detect");
        for (mode, transfer) in [("relative", &mut relative), ("absolute", &mut absolute)] {
            let kp_new = transfer
                .transfer(&prepared.keypoints, &kp)
                .expect("transfer");
            let g = m.render(&prepared, &kp_new, false).expect("render");
            let key = format!("{mode}.{n}.prediction");
            assert_close(
                &format!("{name} ac=false {key}"),
                &g.prediction,
                get(&out, &key),
                IMAGE_MAX,
                Some(IMAGE_MEAN),
            );
        }
    }
}

#[test]
fn tiny_matches_original_align_corners_true() {
    full_parity("tiny", 3);
}

#[test]
fn tiny2_matches_original_align_corners_true() {
    full_parity("tiny2", 2);
}

#[test]
fn tiny_matches_original_align_corners_false() {
    align_false_parity("tiny", 3);
}

#[test]
fn tiny2_matches_original_align_corners_false() {
    align_false_parity("tiny2", 2);
}

/// Per-portrait caching must not change a single number: the cached source features and the
/// source keypoints computed inside `prepare_source` equal a fresh computation per frame.
#[test]
fn cached_source_gives_the_same_prediction_as_recomputing() {
    let m = model("tiny", true);
    let inputs = load_tensors_on_test_device("tiny-inputs.safetensors");
    let source = get(&inputs, "source");
    let cached = m.prepare_source(source).expect("prepare");
    let mut transfer = MotionTransfer::new(TransferOptions::default());
    for n in 0..3 {
        let kp = m
            .detect(get(&inputs, &format!("driving.{n}")))
            .expect("detect");
        let kp_new = transfer.transfer(&cached.keypoints, &kp).expect("transfer");
        let from_cache = m
            .render(&cached, &kp_new, false)
            .expect("render")
            .prediction;
        let fresh = m.prepare_source(source).expect("prepare again");
        let recomputed = m.render(&fresh, &kp_new, false).expect("render").prediction;
        let (max, _) = common::diff(&from_cache, &recomputed);
        assert_eq!(
            max, 0.0,
            "frame {n}: cached and uncached predictions differ by {max}"
        );
    }
}

/// Recalibration makes the next frame the reference: with frame 1 as reference, frame 1 itself
/// maps to the source's own keypoints.
#[test]
fn recalibrate_resets_the_reference_frame() {
    let m = model("tiny", true);
    let inputs = load_tensors_on_test_device("tiny-inputs.safetensors");
    let prepared = m.prepare_source(get(&inputs, "source")).expect("prepare");
    let kp0 = m.detect(get(&inputs, "driving.0")).expect("detect");
    let kp1 = m.detect(get(&inputs, "driving.1")).expect("detect");
    let mut transfer = MotionTransfer::new(TransferOptions::default());
    transfer
        .transfer(&prepared.keypoints, &kp0)
        .expect("transfer");
    let moved = transfer
        .transfer(&prepared.keypoints, &kp1)
        .expect("transfer");
    let (d, _) = common::diff(&moved.value, &prepared.keypoints.value);
    assert!(d > 1e-3, "frame 1 should move relative to frame 0");
    transfer.recalibrate();
    let still = transfer
        .transfer(&prepared.keypoints, &kp1)
        .expect("transfer");
    let (d, _) = common::diff(&still.value, &prepared.keypoints.value);
    assert!(
        d < 1e-6,
        "after recalibration the reference frame maps to the source keypoints ({d})"
    );
}

/// The remaining op-level checks of `ops.safetensors` (grid_sample, interpolate, nearest and
/// average pooling are in tests/ops.rs).
#[test]
fn ops_antialias_kernels_coordinate_grid_gaussians_and_hull_match_original() {
    use fomm::load::weights::WeightSource;
    use fomm::ops::anti_alias::{AntiAliasInterpolation2d, gaussian_kernel};
    use fomm::util::{kp2gaussian, make_coordinate_grid};
    let ops = load_tensors("ops.safetensors");
    let input = get(&ops, "antialias.input");
    for (tag, scale, size) in [("0p25", 0.25, 13usize), ("0p5", 0.5, 5)] {
        let weight = get(&ops, &format!("antialias.scale_{tag}.weight"));
        // The kernel recomputed from the constructor's rule agrees with the registered buffer.
        let ours =
            Tensor::from_vec(gaussian_kernel(scale), (1, 1, size, size), &Device::Cpu).unwrap();
        let theirs = weight.narrow(0, 0, 1).unwrap();
        assert_close(
            &format!("antialias {tag} kernel"),
            &ours,
            &theirs,
            3e-7,
            None,
        );
        // The module, loaded from the buffer as a checkpoint would hold it.
        let mut map = std::collections::BTreeMap::new();
        map.insert("down.weight".to_string(), weight.clone());
        let source = WeightSource::from_tensors(map);
        let down =
            AntiAliasInterpolation2d::new(source.var_builder(&Device::Cpu).pp("down"), 3, scale)
                .unwrap();
        let out = candle_core::Module::forward(&down, input).unwrap();
        assert_close(
            &format!("antialias {tag} out"),
            &out,
            get(&ops, &format!("antialias.scale_{tag}.out")),
            1e-6,
            None,
        );
    }
    let grid = make_coordinate_grid(5, 7, &Device::Cpu).unwrap();
    assert_close(
        "make_coordinate_grid 5x7",
        &grid,
        get(&ops, "make_coordinate_grid.5x7"),
        0.0,
        None,
    );
    let g = kp2gaussian(get(&ops, "kp2gaussian.kp_value"), 16, 12, 0.01).unwrap();
    assert_close(
        "kp2gaussian 16x12",
        &g,
        get(&ops, "kp2gaussian.out_16x12"),
        1e-6,
        None,
    );
    let pts: Vec<[f64; 2]> = get(&ops, "convex_hull.points")
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap()
        .iter()
        .map(|p| [p[0], p[1]])
        .collect();
    let want = get(&ops, "convex_hull.area").to_scalar::<f64>().unwrap();
    assert!(
        (convex_hull_area(&pts) - want).abs() < 1e-12,
        "hull area {} vs {want}",
        convex_hull_area(&pts)
    );
}
