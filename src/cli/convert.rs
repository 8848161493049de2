//! `marionette convert`: a checkpoint in any supported format to .safetensors.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;

use fomm::load::checkpoint::Checkpoint;
use fomm::load::presets;
use fomm::model::Fomm;

/// Options of `convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint to read (.pth.tar legacy or zip, or .safetensors).
    input: PathBuf,
    /// The .safetensors file to write.
    output: PathBuf,
    /// Also check that the checkpoint fits this config (name or YAML path).
    #[arg(long)]
    config: Option<String>,
}

/// Runs `convert`.
pub fn run(args: ConvertArgs) -> Result<()> {
    let checkpoint = Checkpoint::load(&args.input)?;
    if let Some(spec) = &args.config {
        let config = presets::resolve_config(spec)?;
        let origin = args.input.display().to_string();
        Fomm::from_checkpoint(
            &config,
            &checkpoint,
            &origin,
            &Device::Cpu,
            Default::default(),
        )?;
        eprintln!("{} fits config {}", args.input.display(), config.name);
    }
    checkpoint.save_safetensors(&args.output)?;
    eprintln!(
        "wrote {} tensors to {}",
        checkpoint.tensors.len(),
        args.output.display()
    );
    Ok(())
}
