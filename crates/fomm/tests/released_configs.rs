//! Models built from each published config expect exactly the state-dict keys and shapes that the
//! original classes produce (`fomm-released-configs-state-dicts.json`), so the published
//! checkpoints load without renaming.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use fomm::load::config::FommConfig;
use fomm::model::Fomm;

const RELEASED: [&str; 8] = [
    "vox-256",
    "vox-adv-256",
    "taichi-256",
    "taichi-adv-256",
    "bair-256",
    "nemo-256",
    "mgif-256",
    "fashion-256",
];

fn reference() -> serde_json::Value {
    let path = common::fixture("fomm-released-configs-state-dicts.json");
    let text = std::fs::read_to_string(&path).expect("json fixture");
    serde_json::from_str(&text).expect("valid json")
}

fn reference_keys(
    json: &serde_json::Value,
    config: &str,
    net: &str,
) -> BTreeMap<String, Vec<usize>> {
    let keys = json[config][net]["keys"]
        .as_object()
        .unwrap_or_else(|| panic!("{config}.{net}.keys"));
    keys.iter()
        .map(|(k, v)| {
            let shape = v[0]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            (format!("{net}.{k}"), shape)
        })
        .collect()
}

#[test]
fn every_released_config_expects_exactly_the_original_keys_and_shapes() {
    let json = reference();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
    for name in RELEASED {
        let config =
            FommConfig::from_yaml_file(&dir.join(format!("{name}.yaml"))).expect("config parses");
        let expected = Fomm::expected_keys(&config).expect("model builds");
        let mut want = reference_keys(&json, name, "kp_detector");
        want.extend(reference_keys(&json, name, "generator"));
        let missing: Vec<_> = want.keys().filter(|k| !expected.contains_key(*k)).collect();
        let extra: Vec<_> = expected.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: keys the model lacks {missing:?}, keys it has in excess {extra:?}"
        );
        for (k, shape) in &want {
            assert_eq!(&expected[k], shape, "{name}: shape of {k}");
        }
        // The model's own state holds as many elements as the original reports.
        let n_state: usize = expected.values().map(|s| s.iter().product::<usize>()).sum();
        let ref_n = json[name]["kp_detector"]["n_state_elems"].as_u64().unwrap()
            + json[name]["generator"]["n_state_elems"].as_u64().unwrap();
        assert_eq!(n_state as u64, ref_n, "{name}: state element count");
    }
}

#[test]
fn vox_preset_equals_the_published_vox_config() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs");
    let file = FommConfig::from_yaml_file(&dir.join("vox-256.yaml")).expect("config");
    assert_eq!(file.model, FommConfig::vox_256().model);
    assert_eq!(file.frame_size, (256, 256));
}
