//! `marionette generate man|completions DIR` (hidden): the man pages and shell completions, made
//! from the command line's own definitions, for packaging (packaging/build-deb.sh).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::Cli;

/// What `generate` writes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Generated {
    /// marionette.1 and one page per command (marionette-run.1, ...).
    Man,
    /// bash (marionette.bash), zsh (_marionette) and fish (marionette.fish).
    Completions,
}

/// `marionette generate`'s arguments.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// What to write.
    pub what: Generated,
    /// The folder to write into (created if missing).
    pub dir: PathBuf,
}

/// Runs `generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    match args.what {
        Generated::Man => clap_mangen::generate_to(Cli::command(), dir)
            .with_context(|| format!("writing the man pages into {}", dir.display()))?,
        Generated::Completions => {
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut Cli::command(), "marionette", dir)
                    .with_context(|| {
                        format!("writing the {shell} completions into {}", dir.display())
                    })?;
            }
        }
    }
    Ok(())
}
