//! The rendering server behind `marionette serve`: clients connect over the encrypted
//! [`channel`](super::channel), each with its own engine (its portrait cache and reference
//! frame), and one render worker serves them in turn.
//!
//! Threads: an accept loop; per client a reader (its messages into its slot, latest wins) and a
//! writer (its rendered frames out, latest wins, so a slow client never holds the others back);
//! one render worker going round the clients, one render each per turn: every client that keeps
//! sending motion gets the same share of the machine. At most `max_clients` are served; one more
//! is told so (after the handshake, so only someone with the secret learns it) and closed.
//! Handshakes have [`HANDSHAKE_TIMEOUT`] and at most [`MAX_HANDSHAKES`] run at once, so a flood of
//! connections costs a few threads and no memory that grows. A client that breaks the protocol
//! (an undecodable, oversized or tampered message, a motion out of order) is disconnected; the
//! others keep their frames.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{info, warn};

use super::channel::{Channel, ChannelError, Receiver, Secret, Sender};
use super::codec::H264Encoder;
use super::wire::{Codec, CodecSet, Message, VERSIONS, common_version};
use crate::channel::{LatestReceiver, LatestSender, RecvError, latest};
use crate::engine::smoothing::Smoothing;
use crate::engine::{Animator, EngineError};
use crate::media::resize::{rgb8_to_tensor, tensor_to_rgb8};
use crate::media::video::FfmpegTools;
use crate::motion::{FrameMotion, KeypointSet, ReferenceMotion};

/// How long a connecting client has to finish the handshake and say hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in progress at most; connections beyond are closed at once.
pub const MAX_HANDSHAKES: usize = 16;

/// A client silent this long is taken for gone (clients send motion many times a second).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes a fresh engine for each client (the model's weights are shared, the portrait cache and
/// the reference frame are the client's own).
pub type EngineFactory =
    Arc<dyn Fn() -> Result<Box<dyn Animator + Send>, EngineError> + Send + Sync>;

/// What a server is started with.
pub struct ServerOptions {
    /// Clients served at once.
    pub max_clients: usize,
    /// The pairing secret clients must know.
    pub secret: Secret,
    /// A new engine per client.
    pub engines: EngineFactory,
    /// The `ffmpeg` that codes frames as H.264 for clients that take it; `None`: raw frames
    /// only (see [`super::codec::can_encode`]).
    pub h264: Option<FfmpegTools>,
}

/// Why a server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The listening socket failed.
    #[error("could not listen: {0}")]
    Io(#[from] std::io::Error),
    /// The engine could not be made (the model failed to load for a first client).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a client sent that the worker has not rendered yet.
#[derive(Default)]
struct Pending {
    portrait: Option<(u64, u16, Vec<u8>)>,
    reference: Option<KeypointSet>,
    motion: Option<(u32, KeypointSet)>,
    /// The client is gone: drop its engine and free its place.
    closed: bool,
}

/// One connected client, as the worker sees it.
struct Client {
    addr: SocketAddr,
    pending: Arc<Mutex<Pending>>,
    engine: Box<dyn Animator + Send>,
    frames: LatestSender<Rendered>,
    /// Whether it has sent a portrait yet.
    has_portrait: bool,
    /// Frames rendered for it.
    rendered: u64,
}

/// A frame rendered for a client, before it is coded.
struct Rendered {
    seq: u32,
    rgb: Vec<u8>,
}

/// A running server; dropping it does not stop it, [`Server::stop`] does.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
    worker: Option<thread::JoinHandle<()>>,
    served: Arc<Mutex<Vec<(SocketAddr, u64)>>>,
}

/// The engine's frame side, keypoints and whether they carry Jacobians.
fn describe(engine: &dyn Animator) -> (u16, u8, bool) {
    let (h, _w) = engine.frame_size();
    let (k, j) = engine
        .motion_source()
        .map_or((10, true), |m| (m.keypoints, m.jacobians));
    (
        u16::try_from(h).unwrap_or(u16::MAX),
        u8::try_from(k).unwrap_or(u8::MAX),
        j,
    )
}

impl Server {
    /// Listens on `listener` and serves until [`Server::stop`]. One engine is made at once, so a
    /// model that cannot load fails here and not at the first client.
    pub fn start(listener: TcpListener, options: ServerOptions) -> Result<Self, ServerError> {
        let probe = (options.engines)()?;
        let welcome = describe(probe.as_ref());
        drop(probe);
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (joined_tx, joined_rx) = crossbeam_channel::bounded::<Client>(MAX_HANDSHAKES);
        let served = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let options = Arc::new(options);
        let accept = {
            let (stop, active, options) = (stop.clone(), active.clone(), options.clone());
            thread::Builder::new()
                .name("serve-accept".into())
                .spawn(move || {
                    accept_loop(listener, &stop, &active, &options, welcome, joined_tx)
                })?
        };
        let worker = {
            let (stop, served) = (stop.clone(), served.clone());
            thread::Builder::new()
                .name("serve-render".into())
                .spawn(move || render_loop(&stop, &active, joined_rx, &served))?
        };
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
            worker: Some(worker),
            served,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Frames rendered so far for each client that has had one (address, frames).
    pub fn served(&self) -> Vec<(SocketAddr, u64)> {
        self.served.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops accepting, disconnects every client and joins the threads.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in [self.accept.take(), self.worker.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

/// Accepts connections until `stop`, each handshake on a thread of its own.
fn accept_loop(
    listener: TcpListener,
    stop: &AtomicBool,
    active: &Arc<AtomicUsize>,
    options: &Arc<ServerOptions>,
    welcome: (u16, u8, bool),
    joined: crossbeam_channel::Sender<Client>,
) {
    let handshaking = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let (stream, addr) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                warn!("accepting a connection failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if handshaking.fetch_add(1, Ordering::SeqCst) >= MAX_HANDSHAKES {
            handshaking.fetch_sub(1, Ordering::SeqCst);
            warn!("{addr}: too many connections at once; closed");
            continue;
        }
        let (handshaking, active, options, joined) = (
            handshaking.clone(),
            active.clone(),
            options.clone(),
            joined.clone(),
        );
        let spawned = thread::Builder::new()
            .name("serve-handshake".into())
            .spawn(move || {
                let r = admit(stream, addr, &active, &options, welcome);
                handshaking.fetch_sub(1, Ordering::SeqCst);
                match r {
                    Ok(Some(client)) => {
                        if joined.send(client).is_err() {
                            active.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!("{addr}: {e}"),
                }
            });
        if let Err(e) = spawned {
            warn!("{addr}: no thread for its handshake: {e}");
        }
    }
}

/// The handshake, the hello and the welcome; a client to serve, `None` when it was refused.
fn admit(
    stream: TcpStream,
    addr: SocketAddr,
    active: &AtomicUsize,
    options: &ServerOptions,
    welcome: (u16, u8, bool),
) -> Result<Option<Client>, ChannelError> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut ch = Channel::accept(stream, &options.secret)?;
    let (versions, codecs) = match ch.recv()? {
        Message::Hello { versions, codecs } => (versions, codecs),
        other => {
            return Err(ChannelError::Wire(super::wire::WireError::Invalid(
                format!("the first message must be a hello, not {}", kind(&other)),
            )));
        }
    };
    let Some(version) = common_version(versions, VERSIONS) else {
        let reason = format!(
            "this server speaks protocol versions {} to {}, the client {} to {}: update the \
             older one",
            VERSIONS.0, VERSIONS.1, versions.0, versions.1
        );
        let _ = ch.send(&Message::Refused {
            reason: reason.clone(),
        });
        info!("{addr}: refused: {reason}");
        return Ok(None);
    };
    let Some(codec) = choose_codec(codecs, options.h264.is_some()) else {
        let reason = "this server codes frames raw or as H.264, and the client takes neither: \
                      update the older one"
            .to_string();
        let _ = ch.send(&Message::Refused {
            reason: reason.clone(),
        });
        info!("{addr}: refused: {reason}");
        return Ok(None);
    };
    if active.fetch_add(1, Ordering::SeqCst) >= options.max_clients {
        active.fetch_sub(1, Ordering::SeqCst);
        let reason = format!(
            "this server is serving {} clients, its most; try again later",
            options.max_clients
        );
        let _ = ch.send(&Message::Refused {
            reason: reason.clone(),
        });
        info!("{addr}: refused: full");
        return Ok(None);
    }
    let engine = match (options.engines)() {
        Ok(mut e) => {
            // The client smooths the motion before it sends it.
            e.set_smoothing(Smoothing::OFF);
            e
        }
        Err(e) => {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = ch.send(&Message::Refused {
                reason: format!("the server's engine failed: {e}"),
            });
            return Ok(None);
        }
    };
    let (side, keypoints, jacobians) = welcome;
    let sent = ch.send(&Message::Welcome {
        version,
        side,
        keypoints,
        jacobians,
        codec,
    });
    if let Err(e) = sent {
        active.fetch_sub(1, Ordering::SeqCst);
        return Err(e);
    }
    ch.stream().set_read_timeout(Some(IDLE_TIMEOUT))?;
    ch.stream().set_write_timeout(Some(IDLE_TIMEOUT))?;
    let (rx, tx) = match ch.split() {
        Ok(halves) => halves,
        Err(e) => {
            active.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
    };
    let pending = Arc::new(Mutex::new(Pending::default()));
    let (frames, to_send) = latest::<Rendered>();
    let reader = {
        let pending = pending.clone();
        thread::Builder::new()
            .name("serve-read".into())
            .spawn(move || read_loop(rx, addr, side, &pending))
    };
    let coder = match codec {
        Codec::Raw => None,
        Codec::H264 => options.h264.clone().map(|t| (t, usize::from(side))),
    };
    let writer = thread::Builder::new()
        .name("serve-write".into())
        .spawn(move || write_loop(tx, to_send, addr, coder));
    if reader.is_err() || writer.is_err() {
        active.fetch_sub(1, Ordering::SeqCst);
        return Err(ChannelError::Io(std::io::Error::other(
            "no thread for the client",
        )));
    }
    info!("{addr}: connected (protocol version {version}, {codec:?} frames)");
    Ok(Some(Client {
        addr,
        pending,
        engine,
        frames,
        has_portrait: false,
        rendered: 0,
    }))
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "a hello",
        Message::Welcome { .. } => "a welcome",
        Message::Refused { .. } => "a refusal",
        Message::Portrait { .. } => "a portrait",
        Message::Reference { .. } => "a reference",
        Message::Motion { .. } => "a motion",
        Message::Frame { .. } => "a frame",
    }
}

/// A client's messages into its slot until it goes or breaks a rule.
fn read_loop(mut rx: Receiver<TcpStream>, addr: SocketAddr, side: u16, pending: &Mutex<Pending>) {
    let mut last_seq: Option<u32> = None;
    let why = loop {
        let m = match rx.recv() {
            Ok(m) => m,
            Err(e) => break e.to_string(),
        };
        let Ok(mut p) = pending.lock() else {
            break "the server's state broke".into();
        };
        match m {
            Message::Portrait { id, side: s, rgb } if s == side => p.portrait = Some((id, s, rgb)),
            Message::Portrait { side: s, .. } => {
                break format!("a {s}x{s} portrait; this model takes {side}x{side}");
            }
            Message::Reference { keypoints } => p.reference = Some(keypoints),
            Message::Motion { seq, keypoints } => {
                if last_seq.is_some_and(|l| seq <= l) {
                    break format!("motion {seq} came after motion {}", last_seq.unwrap_or(0));
                }
                last_seq = Some(seq);
                p.motion = Some((seq, keypoints));
            }
            other => break format!("a client may not send {}", kind(&other)),
        }
    };
    info!("{addr}: disconnected ({why})");
    if let Ok(mut p) = pending.lock() {
        p.closed = true;
    }
}

/// The codec for a client that takes `codecs`: H.264 where both can, else raw; `None` when
/// the client takes neither.
fn choose_codec(codecs: CodecSet, h264: bool) -> Option<Codec> {
    if h264 && codecs.contains(Codec::H264) {
        Some(Codec::H264)
    } else {
        codecs.contains(Codec::Raw).then_some(Codec::Raw)
    }
}

/// A client's frames out, the newest only, until it goes. With `coder` (its `ffmpeg` and the
/// frame side) they go as H.264: only frames that are sent are coded, so the client's decoder
/// gets every frame the next one depends on.
fn write_loop(
    mut tx: Sender<TcpStream>,
    frames: LatestReceiver<Rendered>,
    addr: SocketAddr,
    coder: Option<(FfmpegTools, usize)>,
) {
    let mut encoder = None;
    loop {
        let f = match frames.recv_timeout(Duration::from_secs(1)) {
            Ok(f) => f,
            Err(RecvError::Timeout) => continue,
            Err(RecvError::Disconnected) => break,
        };
        let coded = match &coder {
            None => Ok((Codec::Raw, f.rgb)),
            Some((tools, side)) => {
                let started = match encoder.take() {
                    Some(e) => Ok(e),
                    None => H264Encoder::start(tools, *side),
                };
                started.and_then(|mut e| {
                    let data = e.encode(&f.rgb)?;
                    encoder = Some(e);
                    Ok((Codec::H264, data))
                })
            }
        };
        let (codec, data) = match coded {
            Ok(c) => c,
            Err(e) => {
                warn!("{addr}: {e}; disconnected");
                break;
            }
        };
        tracing::debug!("{addr}: frame {} coded, {} bytes", f.seq, data.len());
        let m = Message::Frame {
            seq: f.seq,
            codec,
            data,
        };
        if tx.send(&m).is_err() {
            break;
        }
    }
    super::channel::Duplex::shutdown(tx.stream());
}

/// Renders for each client in turn until `stop`.
fn render_loop(
    stop: &AtomicBool,
    active: &AtomicUsize,
    joined: crossbeam_channel::Receiver<Client>,
    served: &Mutex<Vec<(SocketAddr, u64)>>,
) {
    let mut clients: VecDeque<Client> = VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
        while let Ok(c) = joined.try_recv() {
            clients.push_back(c);
        }
        let mut did = false;
        for _ in 0..clients.len() {
            let Some(mut c) = clients.pop_front() else {
                break;
            };
            match serve_one(&mut c) {
                Ok(rendered) => {
                    if rendered {
                        did = true;
                        note_served(served, c.addr, c.rendered);
                    }
                    clients.push_back(c);
                }
                Err(why) => {
                    if let Some(why) = why {
                        warn!("{}: {why}; disconnected", c.addr);
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        if !did {
            thread::sleep(Duration::from_millis(2));
        }
    }
    // Dropping the clients closes their writers, which shut their sockets down.
    for _ in clients.drain(..) {
        active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records that the client at `addr` has had `frames` rendered.
fn note_served(served: &Mutex<Vec<(SocketAddr, u64)>>, addr: SocketAddr, frames: u64) {
    if let Ok(mut s) = served.lock() {
        match s.iter_mut().find(|(a, _)| *a == addr) {
            Some(e) => e.1 = frames,
            None => s.push((addr, frames)),
        }
    }
}

/// One turn for one client: its new portrait and reference, then its newest motion rendered.
/// `Ok(true)` when a frame was rendered; `Err` when it is gone (`Some(why)` if the server
/// dropped it).
fn serve_one(c: &mut Client) -> Result<bool, Option<String>> {
    let (portrait, reference, motion) = {
        let Ok(mut p) = c.pending.lock() else {
            return Err(Some("its state broke".into()));
        };
        if p.closed {
            return Err(None);
        }
        (p.portrait.take(), p.reference.take(), p.motion.take())
    };
    if let Some((id, side, rgb)) = portrait {
        let s = usize::from(side);
        let t = rgb8_to_tensor(&rgb, s, s).map_err(|e| Some(e.to_string()))?;
        c.engine
            .select_portrait(id, &t)
            .map_err(|e| Some(format!("its portrait: {e}")))?;
        c.has_portrait = true;
    }
    if let Some(kp) = reference {
        c.engine
            .set_reference_motion(&ReferenceMotion::Fomm(kp))
            .map_err(|e| Some(format!("its reference: {e}")))?;
    }
    let Some((seq, kp)) = motion else {
        return Ok(false);
    };
    if !c.has_portrait || !c.engine.is_calibrated() {
        // Motion before a portrait or a reference: nothing to move, or nothing to move it
        // relative to, yet.
        return Ok(false);
    }
    let t = Instant::now();
    let out = c
        .engine
        .animate_motion(&FrameMotion::Fomm(kp))
        .map_err(|e| Some(format!("rendering its motion: {e}")))?;
    let rgb = tensor_to_rgb8(&out).map_err(|e| Some(e.to_string()))?;
    tracing::debug!("{}: motion {seq} in {:?}", c.addr, t.elapsed());
    c.rendered += 1;
    let frame = Rendered {
        seq,
        rgb: rgb.into_raw(),
    };
    c.frames.send(frame).map_err(|_| None)?;
    Ok(true)
}
