//! The encrypted, authenticated channel the [`wire`](super::wire) messages travel in, over any
//! byte stream (TCP in practice).
//!
//! Pairing: `marionette serve` makes a secret of 128 random bits and prints it (32 hex digits in
//! groups of four); the client is given the same secret. Both derive a 32-byte pre-shared key from
//! it (BLAKE2s-256 of a domain label and the secret) and run the Noise protocol's `NNpsk0`
//! handshake (Curve25519, ChaCha20-Poly1305, BLAKE2s, as `snow` implements it): the client's first
//! handshake message is encrypted under the key, so a server that does not share the secret
//! cannot read it, and a client without it is refused before anything of its is decoded; the
//! server's answer proves the same the other way. The ephemeral Diffie-Hellman gives each
//! connection its own keys (a recorded session stays secret if the pairing secret leaks later).
//! Noise rather than TLS: no certificates to make, pin or expire, one secret to pass on.
//!
//! After the handshake the stream is a sequence of records, each a `u16` (big-endian) length and
//! at most 65,535 bytes of ciphertext with its 16-byte tag. The plaintext is the wire layer's
//! length-prefixed messages, cut into records where they are long. Each record's nonce is its
//! place in the stream, so a record that was changed, replayed, dropped or reordered fails to
//! decrypt: the channel then ends with [`ChannelError::Tampered`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use blake2::{Blake2s256, Digest};
use thiserror::Error;

use super::wire::{Framer, Message, WireError};

/// Noise's pattern and primitives for this channel.
const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// The label hashed with the secret into the pre-shared key, so the key serves this use only.
const PSK_LABEL: &[u8] = b"marionette remote rendering pairing v1";

/// Noise's largest message (its specification's limit).
const MAX_RECORD: usize = 65_535;

/// Noise's authentication tag on every message.
const TAG: usize = 16;

/// What went wrong on a channel.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// Reading or writing the stream failed (the peer went away, a timeout).
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended.
    #[error("the other side closed the connection")]
    Closed,
    /// The handshake failed: the two sides do not share the secret (or the peer speaks another
    /// protocol).
    #[error(
        "the other side does not know this pairing secret (or is not a marionette server): \
         check the secret that `marionette serve` printed"
    )]
    WrongSecret,
    /// A record failed to decrypt after the handshake: changed, replayed, dropped or reordered.
    #[error("a message was changed, replayed or lost on the way; the connection is closed")]
    Tampered,
    /// A decrypted message breaks the protocol.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A pairing secret that is not 32 hex digits.
    #[error("{0}")]
    BadSecret(String),
    /// A secret file that could not be read or written.
    #[error("the secret file {path}: {why}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// The Noise library refused an operation (not expected with fixed parameters).
    #[error("encryption failed: {0}")]
    Noise(String),
}

impl From<snow::Error> for ChannelError {
    fn from(e: snow::Error) -> Self {
        Self::Noise(e.to_string())
    }
}

/// The pairing secret: 128 random bits.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 16]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the secret itself: it ends up in logs.
        f.write_str("Secret(..)")
    }
}

impl std::fmt::Display for Secret {
    /// 32 hex digits in groups of four, joined by `-`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl Secret {
    /// A new secret from the operating system's random numbers.
    pub fn generate() -> Result<Self, ChannelError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)
            .map_err(|e| ChannelError::BadSecret(format!("no random numbers: {e}")))?;
        Ok(Self(b))
    }

    /// A secret as printed (`-`, spaces and case do not matter).
    pub fn parse(text: &str) -> Result<Self, ChannelError> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b"- \t\r\n".contains(b)).collect();
        let bad = || {
            ChannelError::BadSecret(
                "a pairing secret is 32 hex digits (as `marionette serve` prints it, e.g. \
                 1a2b-3c4d-...)"
                    .into(),
            )
        };
        if digits.len() != 32 {
            return Err(bad());
        }
        let mut b = [0u8; 16];
        for (i, pair) in digits.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| bad())?;
            b[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
        }
        Ok(Self(b))
    }

    /// The secret in `path`, or a new one written there (readable by its owner only) when the
    /// file does not exist; `true` when it was made now.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), ChannelError> {
        let err = |why: String| ChannelError::SecretFile {
            path: path.to_path_buf(),
            why,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse(&text).map_err(|e| err(e.to_string()))?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = Self::generate()?;
                write_private(path, &format!("{secret}\n")).map_err(|e| err(e.to_string()))?;
                Ok((secret, true))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    fn psk(&self) -> [u8; 32] {
        let mut h = Blake2s256::new();
        h.update(PSK_LABEL);
        h.update(self.0);
        h.finalize().into()
    }
}

/// Writes `text` to a new file at `path` that only its owner may read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Noise's transport state, shared by a channel's two halves once split (each direction has its
/// own key and nonce inside; the lock is held only to seal or open one record).
type Noise = Arc<Mutex<snow::TransportState>>;

fn lock(noise: &Noise) -> std::sync::MutexGuard<'_, snow::TransportState> {
    // A panic while sealing leaves nothing half-done that matters: the next record fails or not.
    noise.lock().unwrap_or_else(|p| p.into_inner())
}

/// An open channel: messages in and out, encrypted.
pub struct Channel<S> {
    stream: S,
    noise: Noise,
    framer: Framer,
    /// Ciphertext and plaintext buffers, a record each.
    record: Vec<u8>,
    plain: Vec<u8>,
}

impl<S> std::fmt::Debug for Channel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("pending", &self.framer.pending())
            .finish_non_exhaustive()
    }
}

/// A stream that can be cloned into a reading and a writing handle (a socket).
pub trait Duplex: Read + Write + Send + Sized + 'static {
    /// Another handle to the same stream.
    fn try_clone(&self) -> std::io::Result<Self>;
    /// Ends the stream both ways (a thread blocked reading it wakes up).
    fn shutdown(&self);
}

impl Duplex for std::net::TcpStream {
    fn try_clone(&self) -> std::io::Result<Self> {
        std::net::TcpStream::try_clone(self)
    }
    fn shutdown(&self) {
        let _ = std::net::TcpStream::shutdown(self, std::net::Shutdown::Both);
    }
}

impl Duplex for std::os::unix::net::UnixStream {
    fn try_clone(&self) -> std::io::Result<Self> {
        std::os::unix::net::UnixStream::try_clone(self)
    }
    fn shutdown(&self) {
        let _ = std::os::unix::net::UnixStream::shutdown(self, std::net::Shutdown::Both);
    }
}

/// The receiving half of a split channel.
pub struct Receiver<S> {
    stream: S,
    noise: Noise,
    framer: Framer,
    record: Vec<u8>,
    plain: Vec<u8>,
}

/// The sending half of a split channel.
pub struct Sender<S> {
    stream: S,
    noise: Noise,
    record: Vec<u8>,
}

/// Seals `m` into records on `stream`.
fn seal<S: Write>(
    stream: &mut S,
    noise: &Noise,
    record: &mut [u8],
    m: &Message,
) -> Result<(), ChannelError> {
    // The body encoded straight after room for its length prefix (no second copy of a frame).
    let mut framed = vec![0u8; 4];
    m.encode(&mut framed)?;
    let len = (framed.len() - 4) as u32;
    framed[..4].copy_from_slice(&len.to_le_bytes());
    for chunk in framed.chunks(MAX_RECORD - TAG) {
        let n = lock(noise).write_message(chunk, record)?;
        put_record(stream, &record[..n])?;
    }
    stream.flush()?;
    Ok(())
}

/// Opens records from `stream` until a whole message is in.
fn open_next<S: Read>(
    stream: &mut S,
    noise: &Noise,
    framer: &mut Framer,
    record: &mut Vec<u8>,
    plain: &mut [u8],
) -> Result<Message, ChannelError> {
    loop {
        if let Some(body) = framer.next_body()? {
            return Ok(Message::decode(&body)?);
        }
        get_record(stream, record)?;
        let n = lock(noise)
            .read_message(record, plain)
            .map_err(|_| ChannelError::Tampered)?;
        framer.push(&plain[..n]);
    }
}

impl<S: Read> Receiver<S> {
    /// The next message; blocks until a whole one is in (or the stream's timeout).
    pub fn recv(&mut self) -> Result<Message, ChannelError> {
        open_next(
            &mut self.stream,
            &self.noise,
            &mut self.framer,
            &mut self.record,
            &mut self.plain,
        )
    }
}

impl<S: Write> Sender<S> {
    /// Sends one message.
    pub fn send(&mut self, m: &Message) -> Result<(), ChannelError> {
        seal(&mut self.stream, &self.noise, &mut self.record, m)
    }

    /// The stream underneath (to set its timeouts, or to shut it down).
    pub fn stream(&self) -> &S {
        &self.stream
    }
}

fn builder(psk: &[u8; 32]) -> Result<snow::Builder<'_>, ChannelError> {
    let params: snow::params::NoiseParams = NOISE.parse()?;
    Ok(snow::Builder::new(params).psk(0, psk)?)
}

/// Writes one record: its length and its bytes.
fn put_record<S: Write>(stream: &mut S, bytes: &[u8]) -> Result<(), ChannelError> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| ChannelError::Noise("a record over 64 KiB".into()))?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(bytes)?;
    Ok(())
}

/// Reads one record into `buf` (cleared first); `Closed` when the stream ends between records.
fn get_record<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> Result<(), ChannelError> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ChannelError::Closed);
        }
        Err(e) => return Err(e.into()),
    }
    let n = usize::from(u16::from_be_bytes(len));
    buf.clear();
    buf.resize(n, 0);
    stream.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ChannelError::Closed,
        _ => e.into(),
    })
}

impl<S: Read + Write> Channel<S> {
    /// The client's side of the handshake over `stream`.
    pub fn connect(mut stream: S, secret: &Secret) -> Result<Self, ChannelError> {
        let psk = secret.psk();
        let mut hs = builder(&psk)?.build_initiator()?;
        let mut record = vec![0u8; MAX_RECORD];
        let mut plain = vec![0u8; MAX_RECORD];
        let n = hs.write_message(&[], &mut record)?;
        put_record(&mut stream, &record[..n])?;
        // A server that does not share the secret closes the connection without an answer (it
        // cannot say anything the client could trust).
        get_record(&mut stream, &mut record).map_err(|e| match e {
            ChannelError::Closed => ChannelError::WrongSecret,
            e => e,
        })?;
        hs.read_message(&record, &mut plain)
            .map_err(|_| ChannelError::WrongSecret)?;
        Self::open(stream, hs)
    }

    /// The server's side of the handshake over `stream`: nothing the peer sends is decoded
    /// unless it proves it knows `secret`.
    pub fn accept(mut stream: S, secret: &Secret) -> Result<Self, ChannelError> {
        let psk = secret.psk();
        let mut hs = builder(&psk)?.build_responder()?;
        let mut record = Vec::with_capacity(MAX_RECORD);
        let mut plain = vec![0u8; MAX_RECORD];
        get_record(&mut stream, &mut record)?;
        hs.read_message(&record, &mut plain)
            .map_err(|_| ChannelError::WrongSecret)?;
        record.resize(MAX_RECORD, 0);
        let n = hs.write_message(&[], &mut record)?;
        put_record(&mut stream, &record[..n])?;
        Self::open(stream, hs)
    }

    fn open(stream: S, hs: snow::HandshakeState) -> Result<Self, ChannelError> {
        Ok(Self {
            stream,
            noise: Arc::new(Mutex::new(hs.into_transport_mode()?)),
            framer: Framer::default(),
            record: vec![0u8; MAX_RECORD],
            plain: vec![0u8; MAX_RECORD],
        })
    }

    /// Sends one message.
    pub fn send(&mut self, m: &Message) -> Result<(), ChannelError> {
        self.record.resize(MAX_RECORD, 0);
        seal(&mut self.stream, &self.noise, &mut self.record, m)
    }

    /// The next message; blocks until a whole one is in (or the stream's timeout).
    pub fn recv(&mut self) -> Result<Message, ChannelError> {
        open_next(
            &mut self.stream,
            &self.noise,
            &mut self.framer,
            &mut self.record,
            &mut self.plain,
        )
    }

    /// The stream underneath (to set its timeouts, or to shut it down).
    pub fn stream(&self) -> &S {
        &self.stream
    }
}

impl<S: Duplex> Channel<S> {
    /// A receiving and a sending half, for a thread each.
    pub fn split(self) -> Result<(Receiver<S>, Sender<S>), ChannelError> {
        let out = self.stream.try_clone()?;
        Ok((
            Receiver {
                stream: self.stream,
                noise: self.noise.clone(),
                framer: self.framer,
                record: self.record,
                plain: self.plain,
            },
            Sender {
                stream: out,
                noise: self.noise,
                record: vec![0u8; MAX_RECORD],
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::KeypointSet;
    use crate::remote::wire::{Codec, CodecSet, VERSIONS};
    use std::os::unix::net::UnixStream;
    use std::thread;

    fn motion(seq: u32) -> Message {
        Message::Motion {
            seq,
            keypoints: KeypointSet {
                points: vec![[0.1, -0.2]; 10],
                jacobians: Some(vec![[[1.0, 0.0], [0.0, 1.0]]; 10]),
            },
        }
    }

    /// What a test server received: each message, or the error that ended the channel.
    type Received = thread::JoinHandle<Vec<Result<Message, String>>>;

    /// What a relay does to each record: keep it, change it, drop it or send it twice.
    type Meddle = fn(usize, Vec<u8>) -> Vec<Vec<u8>>;

    /// Copies records from `from` to `to`, each through `f` (which may change, drop or repeat
    /// it), until `from` ends.
    fn relay(
        mut from: UnixStream,
        mut to: UnixStream,
        mut f: impl FnMut(usize, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static,
    ) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let mut i = 0;
            while get_record(&mut from, &mut buf).is_ok() {
                for r in f(i, buf.clone()) {
                    if put_record(&mut to, &r).is_err() {
                        return;
                    }
                }
                i += 1;
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
        })
    }

    /// A client and a server joined through a relay of the client's records (`f`); the server
    /// receives up to `n` messages.
    fn through(
        server_secret: Secret,
        client_secret: Secret,
        n: usize,
        f: impl FnMut(usize, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (Result<Channel<UnixStream>, ChannelError>, Received) {
        let (client, relay_in) = UnixStream::pair().unwrap();
        let (relay_out, server) = UnixStream::pair().unwrap();
        relay(
            relay_in.try_clone().unwrap(),
            relay_out.try_clone().unwrap(),
            f,
        );
        relay(relay_out, relay_in, |_, r| vec![r]);
        let server = thread::spawn(move || {
            let mut ch = match Channel::accept(server, &server_secret) {
                Ok(ch) => ch,
                Err(e) => return vec![Err(e.to_string())],
            };
            let mut got = Vec::new();
            for _ in 0..n {
                let r = ch.recv().map_err(|e| e.to_string());
                let end = r.is_err();
                got.push(r);
                if end {
                    break;
                }
            }
            got
        });
        (Channel::connect(client, &client_secret), server)
    }

    #[test]
    fn messages_arrive_whole_and_in_order_however_long() {
        let secret = Secret::generate().unwrap();
        let (client, server) = through(secret.clone(), secret, 3, |_, r| vec![r]);
        let mut client = client.unwrap();
        let portrait = Message::Portrait {
            id: 1,
            side: 512,
            rgb: (0..512 * 512 * 3).map(|i| (i % 251) as u8).collect(),
        };
        let sent = [
            Message::Hello {
                versions: VERSIONS,
                codecs: CodecSet::of(&[Codec::Raw]),
            },
            portrait,
            motion(1),
        ];
        for m in &sent {
            client.send(m).unwrap();
        }
        let got = server.join().unwrap();
        assert_eq!(got.len(), 3);
        for (g, m) in got.iter().zip(&sent) {
            assert_eq!(g.as_ref().unwrap(), m);
        }
    }

    #[test]
    fn without_the_secret_nothing_is_decoded() {
        let (client, server) = through(
            Secret::generate().unwrap(),
            Secret::generate().unwrap(),
            1,
            |_, r| vec![r],
        );
        assert!(
            matches!(client, Err(ChannelError::WrongSecret)),
            "{client:?}"
        );
        let got = server.join().unwrap();
        assert!(
            got[0].as_ref().unwrap_err().contains("pairing secret"),
            "{got:?}"
        );
        // Garbage instead of a handshake: refused the same way.
        let (mut peer, server) = UnixStream::pair().unwrap();
        let s = Secret::generate().unwrap();
        let t = thread::spawn(move || Channel::accept(server, &s).map(drop));
        let garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef0123456789abcdef";
        put_record(&mut peer, garbage).unwrap();
        assert!(matches!(t.join().unwrap(), Err(ChannelError::WrongSecret)));
        // And a peer that stops in the middle of its first record: the server gives up on it.
        let (mut peer, server) = UnixStream::pair().unwrap();
        let s = Secret::generate().unwrap();
        let t = thread::spawn(move || Channel::accept(server, &s).map(drop));
        peer.write_all(b"\x00\x30GET").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(matches!(t.join().unwrap(), Err(ChannelError::Closed)));
    }

    #[test]
    fn a_changed_replayed_or_lost_record_ends_the_channel() {
        let secret = Secret::generate().unwrap();
        // Record 0 is the handshake; 1 and 2 are the first two messages.
        let cases: [(&str, Meddle); 3] = [
            ("changed", |i, mut r| {
                if i == 2 {
                    r[5] ^= 1;
                }
                vec![r]
            }),
            ("replayed", |i, r| {
                if i == 1 { vec![r.clone(), r] } else { vec![r] }
            }),
            ("lost", |i, r| if i == 1 { vec![] } else { vec![r] }),
        ];
        for (what, f) in cases {
            let (client, server) = through(secret.clone(), secret.clone(), 3, f);
            let mut client = client.unwrap();
            for seq in 1..=3 {
                // The server may have closed already.
                let _ = client.send(&motion(seq));
            }
            drop(client);
            let got = server.join().unwrap();
            let first_bad = got.iter().position(|g| g.is_err()).expect(what);
            assert!(
                got[first_bad]
                    .as_ref()
                    .unwrap_err()
                    .contains("changed, replayed or lost"),
                "{what}: {got:?}"
            );
            // Whatever came before is what was sent, in order.
            for (k, g) in got[..first_bad].iter().enumerate() {
                assert_eq!(g.as_ref().unwrap(), &motion(k as u32 + 1), "{what}");
            }
        }
    }

    #[test]
    fn a_frame_goes_down_as_a_motion_goes_up() {
        let secret = Secret::generate().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let s = secret.clone();
        let server = thread::spawn(move || {
            let mut ch = Channel::accept(b, &s).unwrap();
            let Message::Motion { seq, .. } = ch.recv().unwrap() else {
                panic!("not a motion");
            };
            ch.send(&Message::Frame {
                seq,
                codec: Codec::Raw,
                data: vec![7; 256 * 256 * 3],
            })
            .unwrap();
        });
        let mut client = Channel::connect(a, &secret).unwrap();
        client.send(&motion(5)).unwrap();
        let got = client.recv().unwrap();
        server.join().unwrap();
        assert!(matches!(got, Message::Frame { seq: 5, ref data, .. } if data.len() == 196_608));
    }

    #[test]
    fn split_halves_read_and_write_at_once() {
        let secret = Secret::generate().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let s = secret.clone();
        // The server answers each motion with a frame from another thread than the one reading.
        let server = thread::spawn(move || {
            let (mut rx, mut tx) = Channel::accept(b, &s).unwrap().split().unwrap();
            let (seqs, got) = crossbeam_channel::bounded::<u32>(64);
            let writer = thread::spawn(move || {
                for seq in got {
                    let frame = Message::Frame {
                        seq,
                        codec: Codec::Raw,
                        data: vec![seq as u8; 100_000],
                    };
                    if tx.send(&frame).is_err() {
                        break;
                    }
                }
            });
            while let Ok(Message::Motion { seq, .. }) = rx.recv() {
                let _ = seqs.send(seq);
            }
            drop(seqs);
            writer.join().unwrap();
        });
        let (mut rx, mut tx) = Channel::connect(a, &secret).unwrap().split().unwrap();
        let sender = thread::spawn(move || {
            for seq in 1..=20 {
                tx.send(&motion(seq)).unwrap();
            }
            tx
        });
        for want in 1..=20u32 {
            match rx.recv().unwrap() {
                Message::Frame { seq, data, .. } => {
                    assert_eq!(seq, want);
                    assert!(data.iter().all(|&b| b == want as u8));
                }
                m => panic!("{m:?}"),
            }
        }
        let tx = sender.join().unwrap();
        Duplex::shutdown(tx.stream());
        server.join().unwrap();
    }

    #[test]
    fn a_secret_is_written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let (made, new) = Secret::load_or_create(&path).unwrap();
        assert!(new);
        let (read, new) = Secret::load_or_create(&path).unwrap();
        assert!(!new);
        assert_eq!(made, read);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The printed form parses back; anything else is refused with what a secret looks like.
        assert_eq!(
            Secret::parse(&made.to_string().to_uppercase()).unwrap(),
            made
        );
        assert_eq!(made.to_string().len(), 39);
        assert!(!format!("{made:?}").contains(&made.to_string()[..4]));
        std::fs::write(&path, "not a secret").unwrap();
        let err = Secret::load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("32 hex digits") && err.contains("secret"),
            "{err}"
        );
    }
}
