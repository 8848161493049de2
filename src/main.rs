//! The `marionette` command line: parse, set up logging, run the command (see [`cli`]).

mod cli;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error as the user reads it: what failed, then each cause that adds something (a cause
/// whose text its parent already includes is said once, not twice).
fn report(e: &anyhow::Error) -> String {
    let mut out = format!("error: {e}");
    let mut said = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        out.push_str(&format!("\n  because: {text}"));
        said.push_str(&text);
    }
    out
}

fn run() -> Result<()> {
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
