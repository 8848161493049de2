//! Which engine runs (`--engine fomm|classic|auto`), and building it: [`load_engine`] turns an
//! [`EngineRequest`] into a boxed [`Animator`] plus a line saying what runs.
//!
//! The published FOMM weights cannot be bundled or downloaded by the app, so `auto` (the default)
//! runs FOMM when a checkpoint is found and the weight-free classic engine otherwise.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::Device;

use super::Animator;
use super::classic::{ClassicEngine, ClassicError, ClassicParams};
use super::fomm::FommAnimator;
use fomm::load::checkpoint::{Checkpoint, CheckpointError};
use fomm::load::config::ConfigError;
use fomm::load::presets;
use fomm::model::{Fomm, ModelError, RunOptions};
use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::{PrecisionChoice, PrecisionPlan, UnsupportedPrecision};

/// The engine asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// FOMM; fails without a checkpoint (or random weights).
    Fomm,
    /// The weight-free classic engine.
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
    Fomm {
        /// The checkpoint file.
        checkpoint: PathBuf,
        /// Whether it was found by searching rather than given.
        found: bool,
    },
    /// The classic engine; `fallback` when `auto` found no checkpoint.
    Classic {
        /// Whether `auto` fell back to it for want of a checkpoint.
        fallback: bool,
    },
}

/// A request that names no engine that can run.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The engine name is not fomm, classic or auto.
    #[error("unknown engine {0:?}: use fomm, classic or auto")]
    UnknownEngine(String),
    /// The given checkpoint path is not a file.
    #[error(
        "checkpoint {0} does not exist (or is not a file): check the path, or drop --checkpoint"
    )]
    MissingCheckpoint(PathBuf),
    /// FOMM was asked for, no checkpoint was given and none was found.
    #[error(
        "--engine fomm needs a checkpoint and none was found in {searched}. Add one with \
         `marionette models add FILE` (where to get it: `man marionette-models`), pass \
         --checkpoint FILE, or use --engine classic (no weights needed)"
    )]
    NoCheckpoint {
        /// The folders searched, comma-separated.
        searched: String,
    },
    /// A checkpoint was given together with the classic engine.
    #[error("--checkpoint is a FOMM checkpoint and cannot be used with --engine classic")]
    CheckpointWithClassic,
    /// Random weights were asked for together with the classic engine.
    #[error("--random-weights gives FOMM random weights and cannot be used with --engine classic")]
    RandomWeightsWithClassic,
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The request itself.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// The config could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint does not fit the config, or the model failed to build.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The classic engine's settings.
    #[error("--classic-size: {0}")]
    Classic(#[from] ClassicError),
    /// A precision this processor cannot run.
    #[error(transparent)]
    Precision(#[from] UnsupportedPrecision),
}

/// Everything that decides which engine runs and how.
#[derive(Debug, Clone)]
pub struct EngineRequest {
    /// fomm, classic or auto.
    pub kind: EngineKind,
    /// A FOMM checkpoint; searched for when `None`.
    pub checkpoint: Option<PathBuf>,
    /// A config name or YAML path; guessed from the checkpoint's name when `None`.
    pub config: Option<String>,
    /// FOMM with random weights of the config's structure (speed runs).
    pub random_weights: bool,
    /// The classic engine's square frame side.
    pub classic_size: usize,
    /// Where FOMM runs.
    pub device: Device,
    /// FOMM's arithmetic precision.
    pub precision: PrecisionChoice,
    /// Motion transfer (relative, adapt scale).
    pub transfer: TransferOptions,
    /// FOMM's grid_sample convention.
    pub run: RunOptions,
}

impl Default for EngineRequest {
    fn default() -> Self {
        Self {
            kind: EngineKind::Auto,
            checkpoint: None,
            config: None,
            random_weights: false,
            classic_size: 256,
            device: Device::Cpu,
            precision: PrecisionChoice::Auto,
            transfer: TransferOptions::default(),
            run: RunOptions::default(),
        }
    }
}

/// A built engine and what to tell the user about it.
pub struct LoadedEngine {
    /// The engine.
    pub engine: Box<dyn Animator + Send>,
    /// One line for a status display, e.g. "FOMM (vox-256) from vox-adv-cpk.pth.tar, CPU, f32
    /// (auto)".
    pub status: String,
    /// What was chosen and why, for the log (e.g. the classic fallback and how to get FOMM).
    pub notes: Vec<String>,
}

/// Builds the engine `req` asks for.
pub fn load_engine(req: &EngineRequest) -> Result<LoadedEngine, LoadError> {
    let device = if req.device.is_cuda() {
        "CUDA GPU"
    } else {
        "CPU"
    };
    if req.random_weights {
        if req.kind == EngineKind::Classic {
            return Err(SelectError::RandomWeightsWithClassic.into());
        }
        let config = presets::resolve_config(req.config.as_deref().unwrap_or("vox-256"))?;
        let (plan, precision) = precision_plan(req)?;
        let mut model = Fomm::random(&config, &req.device, plan)?;
        model.options = req.run;
        return Ok(LoadedEngine {
            status: format!(
                "FOMM with random weights of {} (speed only), {device}, {precision}",
                config.name
            ),
            notes: vec![format!(
                "engine: fomm with random weights of {} (speed only)",
                config.name
            )],
            engine: Box::new(FommAnimator::new(model, req.transfer)),
        });
    }
    let dirs = search_dirs();
    let choice = choose_engine(req.kind, req.checkpoint.as_deref(), &dirs)?;
    let mut notes = vec![describe(&choice, &dirs)];
    match choice {
        EngineChoice::Fomm { checkpoint, .. } => {
            let spec = match &req.config {
                Some(c) => c.clone(),
                None => crate::models::config_source(&checkpoint).spec(),
            };
            let config = presets::resolve_config(&spec)?;
            notes.push(format!(
                "model: {} with config {}",
                checkpoint.display(),
                config.name
            ));
            let weights = Checkpoint::load(&checkpoint)?;
            let origin = checkpoint.display().to_string();
            let (plan, precision) = precision_plan(req)?;
            let mut model = Fomm::from_checkpoint(&config, &weights, &origin, &req.device, plan)?;
            model.options = req.run;
            let file = checkpoint
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(LoadedEngine {
                status: format!("FOMM ({}) from {file}, {device}, {precision}", config.name),
                notes,
                engine: Box::new(FommAnimator::new(model, req.transfer).with_checkpoint_name(file)),
            })
        }
        EngineChoice::Classic { fallback } => {
            let size = req.classic_size;
            let mut engine = ClassicEngine::new(ClassicParams::default(), (size, size))?;
            engine.set_adapt_scale(req.transfer.adapt_scale);
            let status = if fallback {
                format!(
                    "classic (point tracking, {size} px): no FOMM checkpoint found; add one with \
                     \"Add FOMM weights\" or `marionette models add FILE`"
                )
            } else {
                format!("classic (point tracking, {size} px)")
            };
            Ok(LoadedEngine {
                engine: Box::new(engine),
                status,
                notes,
            })
        }
    }
}

/// The precision plan the request stands for (on the CPU; a GPU runs f32), and its name.
fn precision_plan(req: &EngineRequest) -> Result<(PrecisionPlan, String), LoadError> {
    if !req.device.is_cpu() {
        return Ok((PrecisionPlan::default(), "f32".into()));
    }
    let precision = req.precision.resolve()?;
    let plan = PrecisionPlan::for_precision(precision);
    let name = match req.precision {
        // Say that it was chosen, so a user who expected bf16 on an AVX512_BF16 processor can
        // see why (the log and `bench` give the measured rates).
        PrecisionChoice::Auto => format!("{precision} (auto)"),
        PrecisionChoice::Exact(_) => precision.to_string(),
    };
    Ok((plan, name))
}

/// CUDA when built with it, `force_cpu` is off and a GPU is there, else the CPU; with a line
/// saying which.
pub fn pick_device(force_cpu: bool) -> (Device, String) {
    if force_cpu {
        return (Device::Cpu, "device: CPU (--cpu)".into());
    }
    #[cfg(feature = "cuda")]
    {
        match Device::new_cuda(0) {
            Ok(d) => return (d, "device: CUDA GPU 0 (--cpu to run on the CPU)".into()),
            Err(e) => {
                // candle's error text can carry a backtrace (RUST_BACKTRACE): its first line says it.
                let e = e.to_string();
                let first = e.lines().next().unwrap_or("unknown error");
                return (
                    Device::Cpu,
                    format!("device: CPU (no usable CUDA GPU: {first})"),
                );
            }
        }
    }
    #[cfg(not(feature = "cuda"))]
    (
        Device::Cpu,
        "device: CPU (build with `--features cuda` for NVIDIA GPUs)".into(),
    )
}

/// Folders searched for checkpoints ([`crate::models::folders`]).
pub fn search_dirs() -> Vec<PathBuf> {
    crate::models::folders()
        .into_iter()
        .map(|f| f.path)
        .collect()
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
        EngineKind::Fomm | EngineKind::Auto => match crate::models::find_checkpoint(dirs) {
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
             For the FOMM engine, add one with `marionette models add FILE` (where to get it: \
             `man marionette-models`) or pass --checkpoint FILE",
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
