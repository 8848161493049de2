//! The `marionette` command line: parse, set up logging, run the command (see [`cli`]).

mod cli;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    size_candle_threads();
    name_rayon_threads();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Gives Candle's element-wise thread pool as many threads as this process may use.
///
/// Candle sizes that pool by the machine's physical cores, ignoring the processors this process
/// is pinned to and a cgroup's CPU quota, and its caller spins until every worker is done. Under
/// `taskset -c 0` or a one-CPU quota on a 2-core machine the caller then spins while its worker
/// waits for the same processor: a client rendering its in-betweens on one core lost about 7 % of
/// it so (`perf`). `available_parallelism` counts the affinity mask and the quota. A
/// `CANDLE_NUM_THREADS` already set is kept.
fn size_candle_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        return;
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: the first thing main does, before any thread exists that could read the
    // environment.
    unsafe { std::env::set_var("CANDLE_NUM_THREADS", n.to_string()) };
}

/// Names the threads of rayon's global pool (`rayon-N`). Unnamed, a thread takes the name of
/// the thread that started it, so the pool's work showed in `top` and `perf` as that of whichever
/// thread first used the pool (the camera's or the inference loop's). The pool keeps rayon's
/// size (`RAYON_NUM_THREADS`, else `available_parallelism`).
fn name_rayon_threads() {
    // Fails only when the pool already exists, which cannot happen this early.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("rayon-{i}"))
        .build_global();
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
