//! Which engine runs: `--engine fomm|classic|auto`.
//!
//! The published FOMM weights cannot be bundled or downloaded by the app, so `auto` (the default)
//! runs FOMM when a checkpoint is found and the weight-free classic engine otherwise.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::model::presets;

/// The engine asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    Fomm,
    Classic,
    /// FOMM when a checkpoint is found, else classic.
    #[default]
    Auto,
}

impl FromStr for EngineKind {
    type Err = SelectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fomm" => Ok(EngineKind::Fomm),
            "classic" => Ok(EngineKind::Classic),
            "auto" => Ok(EngineKind::Auto),
            _ => Err(SelectError::UnknownEngine(s.to_string())),
        }
    }
}

/// The engine that will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineChoice {
    /// FOMM with this checkpoint; `found` when it was discovered rather than given.
    Fomm { checkpoint: PathBuf, found: bool },
    /// The classic engine; `fallback` when `auto` found no checkpoint.
    Classic { fallback: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("unknown engine {0:?}: use fomm, classic or auto")]
    UnknownEngine(String),
    #[error(
        "checkpoint {0} does not exist (or is not a file): check the path, or drop --checkpoint"
    )]
    MissingCheckpoint(PathBuf),
    #[error(
        "--engine fomm needs a checkpoint and none was found in {searched}. Download vox-adv-cpk.pth.tar \
         (see models/README.md) into one of those folders or pass --checkpoint PATH, or use --engine \
         classic (no weights needed)"
    )]
    NoCheckpoint { searched: String },
    #[error("--checkpoint is a FOMM checkpoint and cannot be used with --engine classic")]
    CheckpointWithClassic,
}

/// Folders searched for checkpoints: `$MARIONETTE_MODEL_DIR` alone when set, else
/// [`presets::model_dirs`] (`./models`, beside the executable, the XDG data dir).
pub fn search_dirs() -> Vec<PathBuf> {
    match std::env::var_os("MARIONETTE_MODEL_DIR") {
        Some(dir) if !dir.is_empty() => vec![PathBuf::from(dir)],
        _ => presets::model_dirs(),
    }
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides the engine from the request, searching `dirs` for a checkpoint when none is given.
pub fn choose_engine(
    kind: EngineKind,
    checkpoint: Option<&Path>,
    dirs: &[PathBuf],
) -> Result<EngineChoice, SelectError> {
    if let Some(path) = checkpoint {
        if kind == EngineKind::Classic {
            return Err(SelectError::CheckpointWithClassic);
        }
        if !path.is_file() {
            return Err(SelectError::MissingCheckpoint(path.to_path_buf()));
        }
        return Ok(EngineChoice::Fomm {
            checkpoint: path.to_path_buf(),
            found: false,
        });
    }
    match kind {
        EngineKind::Classic => Ok(EngineChoice::Classic { fallback: false }),
        EngineKind::Fomm | EngineKind::Auto => match presets::find_checkpoint_in(dirs) {
            Some(checkpoint) => Ok(EngineChoice::Fomm {
                checkpoint,
                found: true,
            }),
            None if kind == EngineKind::Auto => Ok(EngineChoice::Classic { fallback: true }),
            None => Err(SelectError::NoCheckpoint {
                searched: join_dirs(dirs),
            }),
        },
    }
}

/// One line saying which engine runs and, for a fallback to classic, how to get FOMM.
pub fn describe(choice: &EngineChoice, dirs: &[PathBuf]) -> String {
    match choice {
        EngineChoice::Fomm { checkpoint, found } => format!(
            "engine: fomm ({} checkpoint {})",
            if *found { "found" } else { "given" },
            checkpoint.display()
        ),
        EngineChoice::Classic { fallback: false } => {
            "engine: classic (weight-free point tracking)".to_string()
        }
        EngineChoice::Classic { fallback: true } => format!(
            "engine: classic (weight-free point tracking), because no FOMM checkpoint was found in {}. \
             For the FOMM engine, download vox-adv-cpk.pth.tar (see models/README.md) into one of those \
             folders or pass --checkpoint PATH",
            join_dirs(dirs)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!("FOMM".parse::<EngineKind>().ok(), Some(EngineKind::Fomm));
        assert_eq!(
            "classic".parse::<EngineKind>().ok(),
            Some(EngineKind::Classic)
        );
        assert!("magic".parse::<EngineKind>().is_err());
    }
}
