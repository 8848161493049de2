//! Where FOMM checkpoints live on this machine: the folders searched, and the checkpoint found
//! there.

use std::path::PathBuf;

use fomm::load::presets::CHECKPOINTS;

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
