//! `marionette serve`: renders FOMM for clients on other machines (see
//! [`marionette::remote::server`]).

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::ModelArgs;
use fomm::motion_transfer::TransferOptions;
use fomm::ops::precision::PrecisionChoice;
use marionette::engine::select::EngineKind;
use marionette::remote::channel::Secret;
use marionette::remote::server::{Server, ServerOptions};

/// Options of `serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address and port to listen on (all interfaces by default).
    #[arg(long, default_value_t = format!("0.0.0.0:{}", marionette::remote::client::DEFAULT_PORT), value_name = "ADDR:PORT")]
    listen: String,
    /// Clients served at once; one more is told the server is full.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    max_clients: u16,
    /// Keep the pairing secret in this file (made, readable by you only, if it does not exist):
    /// clients paired once stay paired across restarts. Without it, each start makes a new one.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

/// Runs `serve` until Ctrl-C.
pub fn run(args: ServeArgs) -> Result<()> {
    if args.model.engine == EngineKind::Classic {
        bail!(
            "serve renders FOMM: the classic engine runs on the client itself (give a FOMM \
             checkpoint with --checkpoint, or add one with `marionette models add FILE`)"
        );
    }
    let mut model = args.model;
    model.engine = EngineKind::Fomm;
    let loaded = super::load(&model.request(TransferOptions::default(), PrecisionChoice::Auto))?;
    let prototype = loaded.engine;
    if prototype.fresh().is_none() {
        bail!("this engine cannot serve several clients");
    }
    let prototype = Arc::new(std::sync::Mutex::new(prototype));
    let engines: marionette::remote::server::EngineFactory = Arc::new(move || {
        let p = prototype
            .lock()
            .map_err(|_| marionette::engine::EngineError::Unsupported {
                engine: "fomm",
                what: "a shared model after a panic",
            })?;
        p.fresh()
            .ok_or(marionette::engine::EngineError::Unsupported {
                engine: "fomm",
                what: "serving several clients",
            })
    });
    let (secret, made) = match &args.secret_file {
        Some(path) => Secret::load_or_create(path)?,
        None => (Secret::generate()?, true),
    };
    let listener = TcpListener::bind(&args.listen).with_context(|| {
        format!(
            "listening on {} (another program may have the port; choose one with --listen)",
            args.listen
        )
    })?;
    let tools = marionette::media::video::FfmpegTools::from_env();
    let h264 = marionette::remote::codec::can_encode(&tools).then_some(tools);
    if h264.is_none() {
        println!(
            "note: ffmpeg with libx264 was not found, so frames go raw (196 kB each at 256x256); \
             install ffmpeg for H.264 frames"
        );
    }
    let server = Server::start(
        listener,
        ServerOptions {
            max_clients: usize::from(args.max_clients),
            secret: secret.clone(),
            engines,
            h264,
        },
    )
    .context("starting the server")?;
    println!("marionette serve: {}", loaded.status);
    println!(
        "listening on {} for up to {} clients",
        server.addr(),
        args.max_clients
    );
    match &args.secret_file {
        Some(path) if !made => println!("pairing secret (from {}): {secret}", path.display()),
        Some(path) => println!("pairing secret (new, kept in {}): {secret}", path.display()),
        None => println!("pairing secret (new for this run; --secret-file keeps one): {secret}"),
    }
    println!(
        "clients connect to port {} with the secret above",
        server.addr().port()
    );
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = server.served();
    server.stop();
    let frames: u64 = served.iter().map(|(_, n)| n).sum();
    println!(
        "stopped: {} clients served, {frames} frames rendered",
        served.len()
    );
    Ok(())
}
