//! The published configs, compiled in, and the config a published checkpoint's name stands for.

use std::path::Path;

use super::config::{ConfigError, FommConfig};

/// (name, YAML) of the eight published configs (`configs/` of this crate).
pub const PUBLISHED: [(&str, &str); 8] = [
    ("vox-256", include_str!("../../configs/vox-256.yaml")),
    (
        "vox-adv-256",
        include_str!("../../configs/vox-adv-256.yaml"),
    ),
    ("taichi-256", include_str!("../../configs/taichi-256.yaml")),
    (
        "taichi-adv-256",
        include_str!("../../configs/taichi-adv-256.yaml"),
    ),
    ("bair-256", include_str!("../../configs/bair-256.yaml")),
    ("nemo-256", include_str!("../../configs/nemo-256.yaml")),
    ("mgif-256", include_str!("../../configs/mgif-256.yaml")),
    (
        "fashion-256",
        include_str!("../../configs/fashion-256.yaml"),
    ),
];

/// Published checkpoint file names (as the authors distribute them) and their configs.
pub const CHECKPOINTS: [(&str, &str); 8] = [
    ("vox-adv-cpk.pth.tar", "vox-adv-256"),
    ("vox-cpk.pth.tar", "vox-256"),
    ("taichi-adv-cpk.pth.tar", "taichi-adv-256"),
    ("taichi-cpk.pth.tar", "taichi-256"),
    ("bair-cpk.pth.tar", "bair-256"),
    ("nemo-cpk.pth.tar", "nemo-256"),
    ("mgif-cpk.pth.tar", "mgif-256"),
    ("fashion.pth.tar", "fashion-256"),
];

/// A config by preset name (`vox-256`, ...) or by path to a YAML file.
pub fn resolve_config(spec: &str) -> Result<FommConfig, ConfigError> {
    let stem = spec.trim_end_matches(".yaml");
    if let Some((name, text)) = PUBLISHED.iter().find(|(n, _)| *n == stem) {
        return FommConfig::from_yaml_str(text, name);
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(ConfigError::Invalid {
            path: spec.to_string(),
            message: format!(
                "no such file, and not a published config name (one of: {})",
                PUBLISHED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    FommConfig::from_yaml_file(path)
}

/// The published config a checkpoint file name suggests (`vox-adv-cpk.pth.tar` -> vox-adv-256).
pub fn config_for_checkpoint(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    // Longest prefix first: "vox-adv" before "vox", "taichi-adv" before "taichi".
    let mut known: Vec<(&str, &str)> = PUBLISHED
        .iter()
        .map(|(n, _)| (n.trim_end_matches("-256"), *n))
        .collect();
    known.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    known
        .into_iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses() {
        for (name, _) in PUBLISHED {
            let c = resolve_config(name).expect(name);
            assert_eq!(c.frame_size, (256, 256));
        }
    }

    #[test]
    fn checkpoint_names_map_to_configs() {
        assert_eq!(
            config_for_checkpoint(Path::new("/x/vox-adv-cpk.pth.tar")),
            Some("vox-adv-256")
        );
        assert_eq!(
            config_for_checkpoint(Path::new("vox-cpk.pth.tar")),
            Some("vox-256")
        );
        assert_eq!(
            config_for_checkpoint(Path::new("taichi-adv-cpk.pth.tar")),
            Some("taichi-adv-256")
        );
        assert_eq!(
            config_for_checkpoint(Path::new("mgif-cpk.pth.tar")),
            Some("mgif-256")
        );
        assert_eq!(config_for_checkpoint(Path::new("mine.pth.tar")), None);
    }
}
