//! `marionette models list|add`: the FOMM checkpoints this install finds, and adding one.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use marionette::models::{self, Store};

/// `marionette models`'s commands.
#[derive(clap::Subcommand, Debug)]
pub enum ModelsCommand {
    /// The checkpoints in every folder searched: where, their config, size, and whether each
    /// loads.
    List {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a checkpoint as it is loaded to run (keys and shapes against its config) and copy
    /// it into your models folder, where every later run finds it.
    Add {
        /// The checkpoint: .pth.tar as the authors publish it, or .safetensors.
        file: PathBuf,
        /// Its config: a published name (vox-adv-256, taichi-256, ...) or a YAML file of the
        /// original repository. Needed only when the checkpoint's structure fits none of the
        /// published ones; kept beside the copy so that later runs find both.
        #[arg(long)]
        config: Option<String>,
        /// Store the two networks as safetensors (about a third of a published .pth.tar, and
        /// quicker to load) instead of a copy of the file.
        #[arg(long)]
        safetensors: bool,
        /// Say what was done as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `marionette models`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

/// Runs `models`.
pub fn run(args: ModelsArgs) -> Result<()> {
    match args.command {
        ModelsCommand::List { json } => list(json),
        ModelsCommand::Add {
            file,
            config,
            safetensors,
            json,
        } => add(&file, config.as_deref(), safetensors, json),
    }
}

fn list(json: bool) -> Result<()> {
    let folders = models::folders();
    let listed = models::list(&folders);
    if json {
        for (folder, files) in &listed {
            for f in files {
                let line = serde_json::json!({
                    "folder": folder.path,
                    "folder_kind": folder.kind,
                    "path": f.path,
                    "bytes": f.bytes,
                    "config": f.config,
                    "config_from": f.config_from,
                    "loads": f.problem.is_none(),
                    "problem": f.problem,
                });
                println!("{line}");
            }
        }
        return Ok(());
    }
    let mut any = false;
    for (folder, files) in &listed {
        let kind = match folder.kind {
            models::FolderKind::Environment => "MARIONETTE_MODEL_DIR",
            models::FolderKind::User => "yours",
            models::FolderKind::Installation => "the installation's",
            models::FolderKind::Repository => "the repository's",
        };
        println!("{} ({kind})", folder.path.display());
        if files.is_empty() {
            println!("  no checkpoint");
        }
        for f in files {
            any = true;
            let state = match &f.problem {
                None => "loads".to_string(),
                Some(p) => format!("does not load: {p}"),
            };
            println!(
                "  {}  {:.0} MB  config {}  {state}",
                f.path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                f.bytes as f64 / 1e6,
                f.config,
            );
        }
    }
    if !any {
        println!(
            "\nNo FOMM checkpoint yet: the classic engine runs. {}",
            models::WHERE_TO_GET
        );
    } else if let Some(first) =
        models::find_checkpoint(&folders.iter().map(|f| f.path.clone()).collect::<Vec<_>>())
    {
        println!("\nrun and the window use {}", first.display());
    }
    Ok(())
}

fn add(file: &std::path::Path, config: Option<&str>, safetensors: bool, json: bool) -> Result<()> {
    if !file.is_file() {
        bail!(
            "{} is not a file: give the checkpoint you downloaded",
            file.display()
        );
    }
    let into = models::add_folder().context("finding your models folder")?;
    let store = if safetensors {
        Store::Safetensors
    } else {
        Store::Copy
    };
    let added = models::add(file, config, store, &into)
        .with_context(|| format!("{} was not added", file.display()))?;
    if json {
        println!("{}", serde_json::to_string(&added)?);
    } else {
        println!(
            "added {} (config {}){}",
            added.path.display(),
            added.config,
            added
                .config_file
                .as_ref()
                .map(|c| format!(", its config in {}", c.display()))
                .unwrap_or_default()
        );
        println!(
            "run and the window now animate with FOMM (the first checkpoint found in your models folder)"
        );
    }
    Ok(())
}
