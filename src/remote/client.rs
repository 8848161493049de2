//! The client's end of a connection to `marionette serve`: connects, pairs, says hello, and then
//! sends the portrait, the reference and the motions while a thread of its own receives the
//! frames (so that sending never waits for the server's rendering, and several motions can be
//! on the way at once).

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use thiserror::Error;

use super::channel::{Channel, ChannelError, Duplex, Secret, Sender};
use super::wire::{Codec, Message, VERSIONS};
use crate::channel::{LatestReceiver, RecvError, latest};
use crate::motion::KeypointSet;

/// How long connecting and pairing may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A frame the server rendered.
#[derive(Debug, Clone)]
pub struct RemoteFrame {
    /// The motion it renders.
    pub seq: u32,
    /// side x side x 3 bytes of RGB.
    pub rgb: Vec<u8>,
}

/// Why the client could not connect or lost its server.
#[derive(Debug, Error)]
pub enum RemoteError {
    /// The address does not resolve, or nothing answers there.
    #[error("cannot reach the server at {addr}: {why}")]
    Unreachable {
        /// As given.
        addr: String,
        /// What failed.
        why: String,
    },
    /// The channel failed (wrong secret, lost connection, a broken message).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The server said no (full, no common protocol version), and why.
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server sent something the protocol does not allow here.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    /// The connection ended after it was made, and why.
    #[error("the connection to the server was lost: {0}")]
    Lost(String),
}

/// What the server's model takes, from its welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerModel {
    /// The protocol version both speak.
    pub version: u16,
    /// Side of the square frames it renders (the portrait goes at this size).
    pub side: u16,
    /// Keypoints per motion.
    pub keypoints: u8,
    /// Whether motions carry Jacobians.
    pub jacobians: bool,
}

/// Bytes each way, counted as sent and received (plaintext messages, without the encryption's
/// 18 bytes a record).
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes sent.
    pub up: AtomicU64,
    /// Of those, bytes of motions (what each frame costs; the portrait and the reference go
    /// once).
    pub motion_up: AtomicU64,
    /// Bytes received.
    pub down: AtomicU64,
    /// Frames received.
    pub frames: AtomicU64,
}

/// A connection to a rendering server.
pub struct RemoteClient {
    tx: Sender<TcpStream>,
    frames: LatestReceiver<RemoteFrame>,
    model: ServerModel,
    traffic: Arc<Traffic>,
    /// Set by the receiving thread when the connection ends.
    lost: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<Option<String>>>,
}

fn body_len(m: &Message) -> u64 {
    m.encoded_len() as u64
}

impl RemoteClient {
    /// Connects to `addr` (`HOST:PORT`), pairs with `secret` and reads the server's welcome.
    pub fn connect(addr: &str, secret: &Secret) -> Result<Self, RemoteError> {
        let unreachable = |why: String| RemoteError::Unreachable {
            addr: addr.to_string(),
            why,
        };
        let targets: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| unreachable(e.to_string()))?
            .collect();
        let mut last = String::from("no address");
        let mut stream = None;
        for t in targets {
            match TcpStream::connect_timeout(&t, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let stream = stream.ok_or_else(|| unreachable(last))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(CONNECT_TIMEOUT)))
            .and_then(|()| stream.set_write_timeout(Some(CONNECT_TIMEOUT)))
            .map_err(|e| unreachable(e.to_string()))?;
        let mut ch = Channel::connect(stream, secret)?;
        ch.send(&Message::Hello { versions: VERSIONS })?;
        let model = match ch.recv()? {
            Message::Welcome {
                version,
                side,
                keypoints,
                jacobians,
            } => ServerModel {
                version,
                side,
                keypoints,
                jacobians,
            },
            Message::Refused { reason } => return Err(RemoteError::Refused(reason)),
            other => {
                return Err(RemoteError::Protocol(format!(
                    "it answered hello with {other:?}"
                )));
            }
        };
        // From here the reader waits as long as the server renders; the server's idle timeout
        // and TCP tell when it is gone.
        ch.stream()
            .set_read_timeout(None)
            .map_err(ChannelError::from)?;
        let (mut rx, tx) = ch.split()?;
        let (frames_tx, frames) = latest::<RemoteFrame>();
        let traffic = Arc::new(Traffic::default());
        let lost = Arc::new(AtomicBool::new(false));
        let side = usize::from(model.side);
        let reader = {
            let (traffic, lost) = (traffic.clone(), lost.clone());
            thread::Builder::new()
                .name("remote-read".into())
                .spawn(move || {
                    let why = loop {
                        let m = match rx.recv() {
                            Ok(m) => m,
                            Err(e) => break Some(e.to_string()),
                        };
                        traffic.down.fetch_add(body_len(&m), Ordering::Relaxed);
                        match m {
                            Message::Frame {
                                seq,
                                codec: Codec::Raw,
                                data,
                            } if data.len() == side * side * 3 => {
                                traffic.frames.fetch_add(1, Ordering::Relaxed);
                                if frames_tx.send(RemoteFrame { seq, rgb: data }).is_err() {
                                    break None;
                                }
                            }
                            other => {
                                break Some(format!(
                                    "the server sent {} where a {side}x{side} raw frame belongs",
                                    match other {
                                        Message::Frame { codec, data, .. } =>
                                            format!("a {codec:?} frame of {} bytes", data.len()),
                                        _ => "another message".to_string(),
                                    }
                                ));
                            }
                        }
                    };
                    lost.store(true, Ordering::SeqCst);
                    why
                })
                .map_err(|e| RemoteError::Channel(ChannelError::Io(e)))?
        };
        Ok(Self {
            tx,
            frames,
            model,
            traffic,
            lost,
            reader: Some(reader),
        })
    }

    /// What the server's model takes.
    pub fn model(&self) -> ServerModel {
        self.model
    }

    /// Bytes and frames so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Whether the connection has ended (the next send fails too).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn send(&mut self, m: &Message) -> Result<(), RemoteError> {
        self.tx.send(m)?;
        self.traffic.up.fetch_add(body_len(m), Ordering::Relaxed);
        Ok(())
    }

    /// The portrait `id`, `side` x `side` RGB at the server's frame size.
    pub fn send_portrait(&mut self, id: u64, rgb: Vec<u8>) -> Result<(), RemoteError> {
        let side = self.model.side;
        self.send(&Message::Portrait { id, side, rgb })
    }

    /// The reference frame's keypoints (a calibration).
    pub fn send_reference(&mut self, keypoints: KeypointSet) -> Result<(), RemoteError> {
        self.send(&Message::Reference { keypoints })
    }

    /// A driving frame's keypoints, to be rendered; `seq` rises from one to the next.
    pub fn send_motion(&mut self, seq: u32, keypoints: KeypointSet) -> Result<(), RemoteError> {
        let m = Message::Motion { seq, keypoints };
        self.send(&m)?;
        self.traffic
            .motion_up
            .fetch_add(body_len(&m), Ordering::Relaxed);
        Ok(())
    }

    /// The newest frame received, waiting up to `timeout`; `Ok(None)` when none came in time,
    /// an error once the connection is gone (with why, when known).
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Option<RemoteFrame>, RemoteError> {
        match self.frames.recv_timeout(timeout) {
            Ok(f) => Ok(Some(f)),
            Err(RecvError::Timeout) if !self.is_lost() => Ok(None),
            Err(_) => {
                let why = self
                    .reader
                    .take()
                    .and_then(|r| r.join().ok().flatten())
                    .unwrap_or_else(|| "the connection ended".into());
                Err(RemoteError::Lost(why))
            }
        }
    }
}

impl Drop for RemoteClient {
    fn drop(&mut self) {
        Duplex::shutdown(self.tx.stream());
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
