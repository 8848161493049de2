//! The client's end of a connection to `marionette serve`: connects, pairs, says hello, and then
//! sends the portrait, the reference and the motions while a thread of its own receives the
//! frames (so that sending never waits for the server's rendering, and several motions can be
//! on the way at once) and decodes them.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use thiserror::Error;

use super::channel::{Channel, ChannelError, Duplex, Receiver, Secret, Sender};
use super::codec::H264Decoder;
use super::wire::{Codec, CodecSet, Message, VERSIONS};
use crate::channel::{LatestReceiver, LatestSender, RecvError, latest};
use crate::media::pipe::PipeKiller;
use crate::media::video::FfmpegTools;
use crate::motion::KeypointSet;

/// How long connecting and pairing may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The port `marionette serve` listens on unless told otherwise (unassigned by IANA).
pub const DEFAULT_PORT: u16 = 47_764;

/// `addr` with [`DEFAULT_PORT`] where it names none: `host`, `10.0.0.2`, `::1` and `[::1]` get
/// it; `host:5000`, `10.0.0.2:5000` and `[::1]:5000` keep theirs.
pub fn with_default_port(addr: &str) -> String {
    let addr = addr.trim();
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return addr.to_string();
    }
    let bare = addr.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return std::net::SocketAddr::new(ip, DEFAULT_PORT).to_string();
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => {
            addr.to_string()
        }
        _ => format!("{addr}:{DEFAULT_PORT}"),
    }
}

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
    /// How its frames come.
    pub codec: Codec,
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
    /// Stops the frames' decoder, if any, so that the receiving thread cannot hang on it.
    decoder: Option<PipeKiller>,
}

/// What frames a client takes: raw always (lossless), and H.264 when `h264` names the `ffmpeg`
/// that decodes it.
pub fn codecs(h264: bool) -> CodecSet {
    if h264 {
        CodecSet::of(&[Codec::Raw, Codec::H264])
    } else {
        CodecSet::of(&[Codec::Raw])
    }
}

fn body_len(m: &Message) -> u64 {
    m.encoded_len() as u64
}

impl RemoteClient {
    /// Connects to `addr` (`HOST:PORT`), pairs with `secret` and reads the server's welcome.
    /// With `h264` (the `ffmpeg` to decode with) it takes H.264 frames, else raw ones only.
    pub fn connect(
        addr: &str,
        secret: &Secret,
        h264: Option<&FfmpegTools>,
    ) -> Result<Self, RemoteError> {
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
        let offered = codecs(h264.is_some());
        ch.send(&Message::Hello {
            versions: VERSIONS,
            codecs: offered,
        })?;
        let model = match ch.recv()? {
            Message::Welcome {
                version,
                side,
                keypoints,
                jacobians,
                codec,
            } if offered.contains(codec) => ServerModel {
                version,
                side,
                keypoints,
                jacobians,
                codec,
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
        let (rx, tx) = ch.split()?;
        let decoder = match (model.codec, h264) {
            (Codec::H264, Some(tools)) => Some(
                H264Decoder::start(tools, usize::from(model.side)).map_err(|e| {
                    RemoteError::Protocol(format!("no decoder for its frames: {e}"))
                })?,
            ),
            _ => None,
        };
        let killer = decoder.as_ref().map(H264Decoder::killer);
        let (frames_tx, frames) = latest::<RemoteFrame>();
        let traffic = Arc::new(Traffic::default());
        let lost = Arc::new(AtomicBool::new(false));
        let reader = {
            let (traffic, lost) = (traffic.clone(), lost.clone());
            let side = usize::from(model.side);
            thread::Builder::new()
                .name("remote-read".into())
                .spawn(move || {
                    let why = receive(rx, side, decoder, &frames_tx, &traffic);
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
            decoder: killer,
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

/// Receives frames, decodes them and hands on the newest, until the connection ends (`None`
/// when the client went first) or the server breaks the protocol (why).
fn receive(
    mut rx: Receiver<TcpStream>,
    side: usize,
    mut decoder: Option<H264Decoder>,
    frames: &LatestSender<RemoteFrame>,
    traffic: &Traffic,
) -> Option<String> {
    loop {
        let m = match rx.recv() {
            Ok(m) => m,
            Err(e) => return Some(e.to_string()),
        };
        traffic.down.fetch_add(body_len(&m), Ordering::Relaxed);
        let (seq, rgb) = match (m, decoder.as_mut()) {
            (
                Message::Frame {
                    seq,
                    codec: Codec::Raw,
                    data,
                },
                None,
            ) if data.len() == side * side * 3 => (seq, data),
            (
                Message::Frame {
                    seq,
                    codec: Codec::H264,
                    data,
                },
                Some(d),
            ) => match d.decode(&data) {
                Ok(rgb) => (seq, rgb),
                Err(e) => return Some(e.to_string()),
            },
            (Message::Frame { codec, data, .. }, _) => {
                return Some(format!(
                    "the server sent a {codec:?} frame of {} bytes where a {side}x{side} {} \
                     frame belongs",
                    data.len(),
                    if decoder.is_some() { "H.264" } else { "raw" }
                ));
            }
            (_, _) => return Some("the server sent another message where a frame belongs".into()),
        };
        traffic.frames.fetch_add(1, Ordering::Relaxed);
        if frames.send(RemoteFrame { seq, rgb }).is_err() {
            return None;
        }
    }
}

impl Drop for RemoteClient {
    fn drop(&mut self) {
        Duplex::shutdown(self.tx.stream());
        if let Some(k) = &self.decoder {
            k.kill();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_port_is_added_only_where_none_is_named() {
        assert_eq!(with_default_port("studio.local"), "studio.local:47764");
        assert_eq!(with_default_port("studio.local:5000"), "studio.local:5000");
        assert_eq!(with_default_port("10.0.0.2"), "10.0.0.2:47764");
        assert_eq!(with_default_port(" 10.0.0.2:5000 "), "10.0.0.2:5000");
        assert_eq!(with_default_port("::1"), "[::1]:47764");
        assert_eq!(with_default_port("[::1]"), "[::1]:47764");
        assert_eq!(with_default_port("[::1]:5000"), "[::1]:5000");
        assert_eq!(with_default_port("fe80::1:5000"), "[fe80::1:5000]:47764");
    }
}
