//! The published configs, compiled in, and finding a checkpoint on disk.

use std::path::{Path, PathBuf};

use super::config::{ConfigError, FommConfig};

/// (name, YAML) of the eight published configs (`models/configs/`).
pub const PUBLISHED: [(&str, &str); 8] = [
    ("vox-256", include_str!("../../models/configs/vox-256.yaml")),
    (
        "vox-adv-256",
        include_str!("../../models/configs/vox-adv-256.yaml"),
    ),
    (
        "taichi-256",
        include_str!("../../models/configs/taichi-256.yaml"),
    ),
    (
        "taichi-adv-256",
        include_str!("../../models/configs/taichi-adv-256.yaml"),
    ),
    (
        "bair-256",
        include_str!("../../models/configs/bair-256.yaml"),
    ),
    (
        "nemo-256",
        include_str!("../../models/configs/nemo-256.yaml"),
    ),
    (
        "mgif-256",
        include_str!("../../models/configs/mgif-256.yaml"),
    ),
    (
        "fashion-256",
        include_str!("../../models/configs/fashion-256.yaml"),
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

/// Folders searched for checkpoints: `./models`, the folder beside the executable's `models`, and
/// `$XDG_DATA_HOME/marionette/models` (`~/.local/share/marionette/models`).
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("models")];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.join("models"));
        // target/release/marionette -> the repository's models/
        dirs.push(dir.join("../../models"));
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(data) = data {
        dirs.push(data.join("marionette/models"));
    }
    dirs
}

/// The first published checkpoint (or else `*.safetensors`) in `dirs`, searched in order.
pub fn find_checkpoint_in(dirs: &[PathBuf]) -> Option<PathBuf> {
    for dir in dirs {
        for (name, _) in CHECKPOINTS {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut st: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .collect();
            st.sort();
            if let Some(p) = st.into_iter().next() {
                return Some(p);
            }
        }
    }
    None
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
