//! The `marionette` command line: parse, set up logging, run the command (see [`cli`]).

mod cli;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .context("bad --log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let command: Command = match cli.command {
        Some(c) => c,
        // No command: the window with its defaults.
        None => Cli::try_parse_from(["marionette", "window"])
            .unwrap_or_else(|e| e.exit())
            .command
            .context("the window's default options")?,
    };
    command.run()
}
