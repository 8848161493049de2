//! Where FOMM checkpoints live on this machine, and adding one.
//!
//! The folders searched are the real ones for the way marionette was installed:
//! * the user's own: `$XDG_DATA_HOME/marionette/models` (`~/.local/share/marionette/models`),
//!   where [`add`] puts checkpoints;
//! * the installation's: `<prefix>/share/marionette/models` when the binary is
//!   `<prefix>/bin/marionette` (`/usr/share/marionette/models` for the package);
//! * the repository's `models/` when the binary is a build in `<repository>/target/`;
//! * `$MARIONETTE_MODEL_DIR` alone, when set.
//!
//! A checkpoint's config is, in order: a `<name>.yaml` beside it (written by [`add`] when the file
//! name does not say which), the published config its file name names (`vox-adv-cpk.pth.tar` ->
//! `vox-adv-256`), else `vox-256`.

use std::path::{Path, PathBuf};

use candle_core::Device;
use fomm::load::checkpoint::{Checkpoint, CheckpointError};
use fomm::load::config::{ConfigError, FommConfig};
use fomm::load::presets::{CHECKPOINTS, PUBLISHED, config_for_checkpoint, resolve_config};
use fomm::model::{Fomm, ModelError};

/// Where the authors publish the checkpoints, in words (the models guide, the window, `models`).
pub const WHERE_TO_GET: &str = "The FOMM checkpoints are published by the paper's authors \
(github.com/AliaksandrSiarohin/first-order-model, \"Pre-trained checkpoint\"): one folder on \
Google Drive (https://drive.google.com/open?id=1PyQJmkdCsAkOYwUyaj_l-l0as-iLDgeH) and on Yandex \
Disk (https://yadi.sk/d/lEw8uRm140L_eQ). For faces take vox-adv-cpk.pth.tar. Then run \
`marionette models add vox-adv-cpk.pth.tar` (or use \"Add FOMM weights\" in the window).";

/// Why a folder is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FolderKind {
    /// `$MARIONETTE_MODEL_DIR`.
    Environment,
    /// The user's own folder, where `models add` copies to.
    User,
    /// The installation's shared folder.
    Installation,
    /// The repository's `models/` (a build run from its target folder).
    Repository,
}

/// A folder searched for checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Folder {
    /// The folder.
    pub path: PathBuf,
    /// Why it is searched.
    pub kind: FolderKind,
}

/// The user's checkpoint folder (`$XDG_DATA_HOME/marionette/models`), if a home is known.
pub fn user_folder() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("marionette/models"))
}

/// Where an added checkpoint goes: `$MARIONETTE_MODEL_DIR` when set (then the only folder
/// searched), else [`user_folder`].
pub fn add_folder() -> Option<PathBuf> {
    match folders().into_iter().next() {
        Some(f) if f.kind == FolderKind::Environment => Some(f.path),
        _ => user_folder(),
    }
}

/// The folders searched, in order (see the module doc).
pub fn folders() -> Vec<Folder> {
    if let Some(dir) = std::env::var_os("MARIONETTE_MODEL_DIR").filter(|d| !d.is_empty()) {
        return vec![Folder {
            path: PathBuf::from(dir),
            kind: FolderKind::Environment,
        }];
    }
    let mut out = Vec::new();
    if let Some(path) = user_folder() {
        out.push(Folder {
            path,
            kind: FolderKind::User,
        });
    }
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
        && let Some(bin) = exe.parent()
    {
        if bin.file_name().is_some_and(|n| n == "bin")
            && let Some(prefix) = bin.parent()
        {
            out.push(Folder {
                path: prefix.join("share/marionette/models"),
                kind: FolderKind::Installation,
            });
        }
        // <repository>/target/<profile>/marionette
        if let Some(target) = bin.parent()
            && target.file_name().is_some_and(|n| n == "target")
            && let Some(repo) = target.parent()
            && repo.join("Cargo.toml").is_file()
        {
            out.push(Folder {
                path: repo.join("models"),
                kind: FolderKind::Repository,
            });
        }
    }
    out
}

/// The folders as a comma-separated list, for messages.
pub fn describe_folders(folders: &[Folder]) -> String {
    folders
        .iter()
        .map(|f| f.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a file name is one a checkpoint may have.
fn is_checkpoint_name(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    [".pth.tar", ".pth", ".tar", ".safetensors"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// The checkpoints in `dir`: the published names first (in the authors' order), then the others
/// by name.
fn checkpoints_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_checkpoint_name(p))
        .collect();
    let rank = |p: &PathBuf| {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string());
        CHECKPOINTS
            .iter()
            .position(|(n, _)| Some(n.to_string()) == name)
            .unwrap_or(CHECKPOINTS.len())
    };
    files.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    files
}

/// The checkpoint to run: the first one found in `dirs`, searched in order.
pub fn find_checkpoint(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .find_map(|d| checkpoints_in(d).into_iter().next())
}

/// Where a checkpoint's config comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "from", content = "config")]
pub enum ConfigSource {
    /// The YAML file beside it.
    Beside(PathBuf),
    /// The published config its file name names.
    Named(String),
    /// Nothing says: the default, vox-256.
    Default,
}

impl ConfigSource {
    /// The config as `--config` takes it.
    pub fn spec(&self) -> String {
        match self {
            ConfigSource::Beside(p) => p.display().to_string(),
            ConfigSource::Named(n) => n.clone(),
            ConfigSource::Default => "vox-256".into(),
        }
    }
}

/// The YAML file that would sit beside `checkpoint` (`x.pth.tar` -> `x.yaml`).
pub fn config_beside(checkpoint: &Path) -> PathBuf {
    let name = checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let stem_len = [".pth.tar", ".safetensors", ".pth", ".tar"]
        .iter()
        .find(|e| lower.ends_with(*e))
        .map_or(name.len(), |e| name.len() - e.len());
    checkpoint.with_file_name(format!("{}.yaml", &name[..stem_len]))
}

/// Where `checkpoint`'s config comes from (see the module doc).
pub fn config_source(checkpoint: &Path) -> ConfigSource {
    let beside = config_beside(checkpoint);
    if beside.is_file() {
        ConfigSource::Beside(beside)
    } else if let Some(name) = config_for_checkpoint(checkpoint) {
        ConfigSource::Named(name.to_string())
    } else {
        ConfigSource::Default
    }
}

/// Why a checkpoint cannot be added or does not load.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// The file could not be read as a checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The config given could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The checkpoint does not fit the config given.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// No published config fits the checkpoint and none was given.
    #[error(
        "{file} fits none of the published configs ({}): put its config (the YAML of the original \
         repository) beside it with the same name ending in .yaml, or pass it with --config \
         FILE.yaml; {suggestion}",
        PUBLISHED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    )]
    NoConfigFits {
        /// The file.
        file: String,
        /// The model parameters that would fit it.
        suggestion: String,
    },
    /// No folder to copy to is known.
    #[error("no home folder is known (neither XDG_DATA_HOME nor HOME is set): nowhere to add it")]
    NoUserFolder,
    /// A copy or a write failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A checkpoint file checked for use: its config, and whether it loads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The config it runs with, as `--config` takes it (a published name or a YAML path).
    pub config: String,
    /// Where that config comes from.
    pub config_from: ConfigSource,
    /// `None` when it loads; else why not.
    pub problem: Option<String>,
}

/// The config that fits `checkpoint`'s structure, trying `preferred` first, then the published
/// ones; `None` when none does.
fn fitting_config(
    checkpoint: &Checkpoint,
    origin: &str,
    preferred: Option<&str>,
) -> Option<FommConfig> {
    let names = preferred
        .into_iter()
        .chain(PUBLISHED.iter().map(|(n, _)| *n));
    for name in names {
        let Ok(config) = resolve_config(name) else {
            continue;
        };
        if fits(checkpoint, &config, origin).is_ok() {
            return Some(config);
        }
    }
    None
}

/// Whether the checkpoint's keys and shapes are exactly what `config` implies.
fn fits(checkpoint: &Checkpoint, config: &FommConfig, origin: &str) -> Result<(), ModelError> {
    Fomm::from_checkpoint(config, checkpoint, origin, &Device::Cpu, Default::default()).map(drop)
}

/// Checks `path` as `run` would load it: read it, take its config, build the model.
pub fn check(path: &Path) -> Checked {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let from = config_source(path);
    let config = from.spec();
    let problem = (|| -> Result<(), ModelsError> {
        let checkpoint = Checkpoint::load(path)?;
        let config = resolve_config(&config)?;
        fits(&checkpoint, &config, &path.display().to_string())?;
        Ok(())
    })()
    .err()
    .map(|e| e.to_string());
    Checked {
        path: path.to_path_buf(),
        bytes,
        config,
        config_from: from,
        problem,
    }
}

/// Every checkpoint in `folders`, checked.
pub fn list(folders: &[Folder]) -> Vec<(Folder, Vec<Checked>)> {
    folders
        .iter()
        .map(|f| {
            let files = checkpoints_in(&f.path).iter().map(|p| check(p)).collect();
            (f.clone(), files)
        })
        .collect()
}

/// What [`add`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Added {
    /// The checkpoint where it now is.
    pub path: PathBuf,
    /// Its config, as `--config` takes it.
    pub config: String,
    /// The YAML written beside it (its file name does not say its config).
    pub config_file: Option<PathBuf>,
    /// Written as safetensors (the two networks only) rather than copied.
    pub converted: bool,
}

/// How [`add`] stores a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Store {
    /// A copy of the file as it is.
    #[default]
    Copy,
    /// The two networks as safetensors (about a third of a published `.pth.tar`).
    Safetensors,
}

/// Checks `file` as it is loaded to run (keys and shapes against its config: `config` when
/// given, else a YAML beside it (`x.pth.tar` -> `x.yaml`), else the config its name names, else
/// the published one its structure fits), then
/// copies it (or converts it) into `into`; a config its file name does not say is written beside
/// it. A file that does not load changes nothing.
pub fn add(
    file: &Path,
    config: Option<&str>,
    store: Store,
    into: &Path,
) -> Result<Added, ModelsError> {
    let origin = file.display().to_string();
    let checkpoint = Checkpoint::load(file)?;
    // A config given, else one kept beside the file (as runs find it), else by structure.
    let beside = config_beside(file);
    let given = config
        .map(str::to_string)
        .or_else(|| beside.is_file().then(|| beside.display().to_string()));
    let config =
        match given.as_deref() {
            Some(spec) => {
                let c = resolve_config(spec)?;
                fits(&checkpoint, &c, &origin)?;
                c
            }
            None => fitting_config(&checkpoint, &origin, config_for_checkpoint(file)).ok_or_else(
                || ModelsError::NoConfigFits {
                    file: origin.clone(),
                    suggestion: fomm::model::suggest_model_params(&checkpoint.tensors),
                },
            )?,
        };
    std::fs::create_dir_all(into).map_err(|source| ModelsError::Io {
        action: "create the folder",
        path: into.to_path_buf(),
        source,
    })?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "checkpoint.pth.tar".into());
    let target = match store {
        Store::Copy => into.join(&name),
        Store::Safetensors => {
            let stem = config_beside(Path::new(&name))
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "checkpoint".into());
            into.join(format!("{stem}.safetensors"))
        }
    };
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelsError::Io {
            action,
            path,
            source,
        }
    };
    match store {
        Store::Copy => {
            // Through a temporary name, so a half-copied file is never found.
            let partial = target.with_extension("partial");
            std::fs::copy(file, &partial).map_err(io("copy the checkpoint to", &partial))?;
            std::fs::rename(&partial, &target).map_err(io("move the checkpoint to", &target))?;
        }
        Store::Safetensors => checkpoint.save_safetensors(&target)?,
    }
    // The config is said beside the file unless its name already says the same.
    let named = config_for_checkpoint(&target);
    let config_file = if named == Some(config.name.as_str()) {
        None
    } else {
        let yaml = config_beside(&target);
        let text = match PUBLISHED.iter().find(|(n, _)| *n == config.name) {
            Some((_, text)) => text.to_string(),
            None => std::fs::read_to_string(&config.name)
                .map_err(io("read the config", Path::new(&config.name)))?,
        };
        std::fs::write(&yaml, text).map_err(io("write the config", &yaml))?;
        Some(yaml)
    };
    Ok(Added {
        config: config.name.clone(),
        path: target,
        config_file,
        converted: store == Store::Safetensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_beside_take_the_stem() {
        assert_eq!(
            config_beside(Path::new("/m/mine.pth.tar")),
            PathBuf::from("/m/mine.yaml")
        );
        assert_eq!(
            config_beside(Path::new("/m/a.b.safetensors")),
            PathBuf::from("/m/a.b.yaml")
        );
    }

    #[test]
    fn published_names_come_first() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "aaa.safetensors",
            "vox-cpk.pth.tar",
            "vox-adv-cpk.pth.tar",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let names: Vec<String> = checkpoints_in(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            ["vox-adv-cpk.pth.tar", "vox-cpk.pth.tar", "aaa.safetensors"]
        );
    }
}
