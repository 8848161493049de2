//! The messages a client and a rendering server exchange, as bytes: what each says, how it is
//! laid out, and the bounds a decoder holds the peer to.
//!
//! Sans I/O: [`Message::encode`] appends one message's body to a buffer and [`Message::decode`]
//! reads one back; [`Framer`] cuts a byte stream into length-prefixed bodies. The channel these
//! travel in (encrypted, authenticated) is another layer's; this one trusts nothing it reads:
//! every count, size and number is checked before anything is allocated for it, and a message
//! that breaks a rule is an error that names the rule (the connection is then closed).
//!
//! Layout: all integers little-endian. A frame on the stream is a `u32` body length (at most
//! [`MAX_MESSAGE`]) and the body; a body is a `u8` kind and the kind's fields:
//!
//! | kind | message | fields |
//! |------|---------|--------|
//! | 1 | `Hello` | magic `MRNT`, `u16` oldest and newest version the client speaks, `u8` codecs it takes (bit 0 raw, bit 1 H.264) |
//! | 2 | `Welcome` | `u16` version chosen, `u16` frame side, `u8` keypoints, `u8` has Jacobians, `u8` codec of the frames |
//! | 3 | `Refused` | `u16` length, UTF-8 reason |
//! | 4 | `Portrait` | `u64` id, `u16` side, side x side x 3 bytes of RGB |
//! | 5 | `Reference` | keypoints |
//! | 6 | `Motion` | `u32` sequence number, keypoints |
//! | 7 | `Frame` | `u32` sequence number of the motion it renders, `u8` codec, `u32` length, data |
//!
//! Keypoints are a `u8` count K (1 to [`MAX_KEYPOINTS`]), a `u8` flag (1: with Jacobians), K
//! (x, y) pairs and, with the flag, K row-major 2x2 Jacobians, all `f32` and finite. FOMM's 10
//! keypoints with Jacobians are 242 bytes: the motion of a frame costs a few hundred bytes up.
//!
//! Sequence numbers of motions rise strictly; a frame answers a motion that was sent. The portrait
//! goes once per id (the server caches what it computes about it, as a local engine does).

use thiserror::Error;

use crate::motion::KeypointSet;

/// The protocol versions this build speaks (oldest, newest).
pub const VERSIONS: (u16, u16) = (1, 1);

/// The first bytes of a `Hello`, so that a peer speaking something else is told apart at once.
pub const MAGIC: [u8; 4] = *b"MRNT";

/// The largest message body: a 512x512 portrait (768 KiB of RGB) and its header.
pub const MAX_MESSAGE: usize = 800 * 1024;

/// The largest portrait side a server takes (FOMM's published models are 256 and 512).
pub const MAX_SIDE: u16 = 512;

/// The most keypoints a motion may carry (FOMM's models have 10 or 15).
pub const MAX_KEYPOINTS: u8 = 64;

/// The longest reason a refusal may give, in bytes.
pub const MAX_REASON: usize = 1024;

/// How a rendered frame's pixels are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// side x side x 3 bytes of RGB, as rendered.
    Raw,
    /// One H.264 access unit (Annex B), in order after the previous frames of the stream.
    H264,
}

/// The codecs a client takes, as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSet(u8);

impl CodecSet {
    /// The set of `codecs`.
    pub fn of(codecs: &[Codec]) -> Self {
        Self(codecs.iter().fold(0, |m, c| m | 1 << c.byte()))
    }

    /// Whether `codec` is in it.
    pub fn contains(self, codec: Codec) -> bool {
        self.0 & 1 << codec.byte() != 0
    }
}

impl Codec {
    fn byte(self) -> u8 {
        match self {
            Self::Raw => 0,
            Self::H264 => 1,
        }
    }

    fn from_byte(b: u8) -> Result<Self, WireError> {
        match b {
            0 => Ok(Self::Raw),
            1 => Ok(Self::H264),
            other => Err(WireError::Invalid(format!("unknown codec {other}"))),
        }
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Client, first: the versions it speaks.
    Hello {
        /// Oldest and newest version.
        versions: (u16, u16),
        /// The codecs it can decode frames in (bits it does not know are codecs of newer
        /// versions, and ignored).
        codecs: CodecSet,
    },
    /// Server, answering `Hello`: the version both speak and what its model takes.
    Welcome {
        /// The version chosen.
        version: u16,
        /// Side of the square frames the model renders.
        side: u16,
        /// Keypoints per motion.
        keypoints: u8,
        /// Whether motions carry Jacobians.
        jacobians: bool,
        /// How the frames will be coded.
        codec: Codec,
    },
    /// Server: it will not serve this client (full, no common version, a broken rule), and why.
    Refused {
        /// In words, for the user.
        reason: String,
    },
    /// Client: a portrait at the model's frame size, once per id.
    Portrait {
        /// The client's id for it; later messages animate the last one sent.
        id: u64,
        /// Side of the square picture.
        side: u16,
        /// side x side x 3 bytes of RGB.
        rgb: Vec<u8>,
    },
    /// Client: the reference frame's keypoints (calibration); motions are relative to it.
    Reference {
        /// The keypoints of the reference frame.
        keypoints: KeypointSet,
    },
    /// Client: a driving frame's keypoints, to be rendered.
    Motion {
        /// Rises strictly from one motion to the next.
        seq: u32,
        /// The driving frame's keypoints.
        keypoints: KeypointSet,
    },
    /// Server: the portrait rendered for motion `seq`.
    Frame {
        /// The motion it renders.
        seq: u32,
        /// How `data` is coded.
        codec: Codec,
        /// The coded frame.
        data: Vec<u8>,
    },
}

/// A message that breaks the protocol.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The body ends before a field that it must have.
    #[error("a message was cut short: {0} is missing")]
    Truncated(&'static str),
    /// Bytes are left after the last field.
    #[error("a message has {0} bytes after its last field")]
    Trailing(usize),
    /// A length, a count or a number out of its bounds, or an unknown kind.
    #[error("a message breaks the protocol: {0}")]
    Invalid(String),
    /// A length prefix over [`MAX_MESSAGE`].
    #[error("a message of {0} bytes is over the limit of {MAX_MESSAGE}")]
    TooLarge(usize),
}

/// Reads fields off a body, front to back.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn f32(&mut self, what: &'static str) -> Result<f32, WireError> {
        let v = f32::from_bits(self.u32(what)?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(WireError::Invalid(format!("{what} is not a finite number")))
        }
    }

    fn keypoints(&mut self) -> Result<KeypointSet, WireError> {
        let k = self.u8("the keypoint count")?;
        if k == 0 || k > MAX_KEYPOINTS {
            return Err(WireError::Invalid(format!(
                "{k} keypoints (1 to {MAX_KEYPOINTS})"
            )));
        }
        let flag = self.u8("the Jacobian flag")?;
        if flag > 1 {
            return Err(WireError::Invalid(format!("Jacobian flag {flag}")));
        }
        // The whole set is there before anything is allocated for it.
        let need = usize::from(k) * if flag == 1 { 6 } else { 2 } * 4;
        if self.rest.len() < need {
            return Err(WireError::Truncated("keypoints"));
        }
        let mut points = Vec::with_capacity(usize::from(k));
        for _ in 0..k {
            points.push([self.f32("a keypoint")?, self.f32("a keypoint")?]);
        }
        let jacobians = if flag == 1 {
            let mut j = Vec::with_capacity(usize::from(k));
            for _ in 0..k {
                let mut m = [[0f32; 2]; 2];
                for v in m.iter_mut().flatten() {
                    *v = self.f32("a Jacobian")?;
                }
                j.push(m);
            }
            Some(j)
        } else {
            None
        };
        Ok(KeypointSet { points, jacobians })
    }

    fn finish(self) -> Result<(), WireError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// Appends `kp` as the layout says; `Invalid` when it has more keypoints than the protocol
/// carries or a Jacobian count that does not match.
fn put_keypoints(out: &mut Vec<u8>, kp: &KeypointSet) -> Result<(), WireError> {
    let k = u8::try_from(kp.points.len())
        .ok()
        .filter(|k| (1..=MAX_KEYPOINTS).contains(k))
        .ok_or_else(|| {
            WireError::Invalid(format!(
                "{} keypoints (1 to {MAX_KEYPOINTS})",
                kp.points.len()
            ))
        })?;
    if kp
        .jacobians
        .as_ref()
        .is_some_and(|j| j.len() != kp.points.len())
    {
        return Err(WireError::Invalid(
            "a Jacobian count unlike the keypoint count".into(),
        ));
    }
    out.push(k);
    out.push(u8::from(kp.jacobians.is_some()));
    for v in kp.points.iter().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in kp.jacobians.iter().flatten().flatten().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

impl Message {
    /// Appends this message's body to `out`. `Invalid` for a message this protocol cannot carry
    /// (a portrait whose bytes do not match its side, a reason or a frame over the limits).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        match self {
            Self::Hello { versions, codecs } => {
                out.push(1);
                out.extend_from_slice(&MAGIC);
                out.extend_from_slice(&versions.0.to_le_bytes());
                out.extend_from_slice(&versions.1.to_le_bytes());
                out.push(codecs.0);
            }
            Self::Welcome {
                version,
                side,
                keypoints,
                jacobians,
                codec,
            } => {
                out.push(2);
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&side.to_le_bytes());
                out.push(*keypoints);
                out.push(u8::from(*jacobians));
                out.push(codec.byte());
            }
            Self::Refused { reason } => {
                if reason.len() > MAX_REASON {
                    return Err(WireError::Invalid(format!(
                        "a reason of {} bytes",
                        reason.len()
                    )));
                }
                out.push(3);
                out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
            Self::Portrait { id, side, rgb } => {
                check_portrait(*side, rgb.len())?;
                out.push(4);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&side.to_le_bytes());
                out.extend_from_slice(rgb);
            }
            Self::Reference { keypoints } => {
                out.push(5);
                put_keypoints(out, keypoints)?;
            }
            Self::Motion { seq, keypoints } => {
                out.push(6);
                out.extend_from_slice(&seq.to_le_bytes());
                put_keypoints(out, keypoints)?;
            }
            Self::Frame { seq, codec, data } => {
                out.push(7);
                out.extend_from_slice(&seq.to_le_bytes());
                out.push(codec.byte());
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            }
        }
        let len = out.len() - start;
        if len > MAX_MESSAGE {
            out.truncate(start);
            return Err(WireError::TooLarge(len));
        }
        Ok(())
    }

    /// The length of this message's body, as [`Message::encode`] writes it (for counting the
    /// bytes a connection carries without encoding a frame twice).
    pub fn encoded_len(&self) -> usize {
        let keypoints = |kp: &KeypointSet| {
            let per = if kp.jacobians.is_some() { 6 } else { 2 };
            2 + kp.points.len() * per * 4
        };
        1 + match self {
            Self::Hello { .. } => MAGIC.len() + 5,
            Self::Welcome { .. } => 7,
            Self::Refused { reason } => 2 + reason.len(),
            Self::Portrait { rgb, .. } => 8 + 2 + rgb.len(),
            Self::Reference { keypoints: kp } => keypoints(kp),
            Self::Motion { keypoints: kp, .. } => 4 + keypoints(kp),
            Self::Frame { data, .. } => 4 + 1 + 4 + data.len(),
        }
    }

    /// One message from its whole body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        if body.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(body.len()));
        }
        let mut r = Reader { rest: body };
        let m = match r.u8("the kind")? {
            1 => {
                if r.take(4, "the magic")? != MAGIC {
                    return Err(WireError::Invalid(
                        "not marionette's protocol (no MRNT at the start)".into(),
                    ));
                }
                let versions = (r.u16("the oldest version")?, r.u16("the newest version")?);
                if versions.0 > versions.1 {
                    return Err(WireError::Invalid(format!(
                        "versions {} to {}",
                        versions.0, versions.1
                    )));
                }
                let codecs = CodecSet(r.u8("the codecs")?);
                Self::Hello { versions, codecs }
            }
            2 => Self::Welcome {
                version: r.u16("the version")?,
                side: check_side(r.u16("the frame side")?)?,
                keypoints: match r.u8("the keypoint count")? {
                    k @ 1..=MAX_KEYPOINTS => k,
                    k => return Err(WireError::Invalid(format!("{k} keypoints"))),
                },
                jacobians: match r.u8("the Jacobian flag")? {
                    0 => false,
                    1 => true,
                    f => return Err(WireError::Invalid(format!("Jacobian flag {f}"))),
                },
                codec: Codec::from_byte(r.u8("the codec")?)?,
            },
            3 => {
                let n = usize::from(r.u16("the reason's length")?);
                if n > MAX_REASON {
                    return Err(WireError::Invalid(format!("a reason of {n} bytes")));
                }
                let reason = std::str::from_utf8(r.take(n, "the reason")?)
                    .map_err(|_| WireError::Invalid("a reason that is not UTF-8".into()))?;
                Self::Refused {
                    reason: reason.to_string(),
                }
            }
            4 => {
                let id = r.u64("the portrait id")?;
                let side = check_side(r.u16("the portrait side")?)?;
                let n = usize::from(side) * usize::from(side) * 3;
                let rgb = r.take(n, "the portrait's pixels")?.to_vec();
                Self::Portrait { id, side, rgb }
            }
            5 => Self::Reference {
                keypoints: r.keypoints()?,
            },
            6 => Self::Motion {
                seq: r.u32("the sequence number")?,
                keypoints: r.keypoints()?,
            },
            7 => {
                let seq = r.u32("the sequence number")?;
                let codec = Codec::from_byte(r.u8("the codec")?)?;
                let n = r.u32("the frame's length")? as usize;
                let data = r.take(n, "the frame's data")?.to_vec();
                Self::Frame { seq, codec, data }
            }
            other => return Err(WireError::Invalid(format!("unknown message kind {other}"))),
        };
        r.finish()?;
        Ok(m)
    }
}

fn check_side(side: u16) -> Result<u16, WireError> {
    if (1..=MAX_SIDE).contains(&side) {
        Ok(side)
    } else {
        Err(WireError::Invalid(format!(
            "a frame side of {side} (1 to {MAX_SIDE})"
        )))
    }
}

fn check_portrait(side: u16, bytes: usize) -> Result<(), WireError> {
    check_side(side)?;
    let want = usize::from(side) * usize::from(side) * 3;
    if bytes == want {
        Ok(())
    } else {
        Err(WireError::Invalid(format!(
            "a {side}x{side} portrait of {bytes} bytes (RGB is {want})"
        )))
    }
}

/// The version both sides speak: the newest in both ranges, or `None`.
pub fn common_version(theirs: (u16, u16), ours: (u16, u16)) -> Option<u16> {
    let v = theirs.1.min(ours.1);
    (v >= theirs.0 && v >= ours.0).then_some(v)
}

/// `body` with its length prefix, ready for the stream.
pub fn frame(body: &[u8]) -> Result<Vec<u8>, WireError> {
    if body.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Cuts a byte stream into bodies: feed it what arrives, take whole bodies out. A length prefix
/// over [`MAX_MESSAGE`] is an error as soon as its four bytes are in, before any of the body is
/// kept.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole body, if one is in; `TooLarge` for a prefix over the limit.
    pub fn next_body(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let Some(prefix) = self.buf.get(..4) else {
            return Ok(None);
        };
        let n = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if n > MAX_MESSAGE {
            return Err(WireError::TooLarge(n));
        }
        if self.buf.len() < 4 + n {
            return Ok(None);
        }
        let body = self.buf[4..4 + n].to_vec();
        self.buf.drain(..4 + n);
        Ok(Some(body))
    }

    /// Bytes held that are not a whole body yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fomm_keypoints() -> KeypointSet {
        KeypointSet {
            points: (0..10).map(|i| [i as f32 * 0.1 - 0.5, 0.25]).collect(),
            jacobians: Some(
                (0..10)
                    .map(|i| [[1.0, i as f32 * 0.01], [0.0, 1.0]])
                    .collect(),
            ),
        }
    }

    fn all_kinds() -> Vec<Message> {
        vec![
            Message::Hello {
                versions: VERSIONS,
                codecs: CodecSet::of(&[Codec::Raw, Codec::H264]),
            },
            Message::Welcome {
                version: 1,
                side: 256,
                keypoints: 10,
                jacobians: true,
                codec: Codec::H264,
            },
            Message::Refused {
                reason: "this server serves 4 clients at most; try again later".into(),
            },
            Message::Portrait {
                id: 7,
                side: 4,
                rgb: (0..48).collect(),
            },
            Message::Reference {
                keypoints: fomm_keypoints(),
            },
            Message::Motion {
                seq: 41,
                keypoints: KeypointSet {
                    points: vec![[0.5, -0.5]],
                    jacobians: None,
                },
            },
            Message::Frame {
                seq: 41,
                codec: Codec::H264,
                data: vec![0, 0, 0, 1, 9, 16],
            },
        ]
    }

    #[test]
    fn every_kind_comes_back_as_it_was_sent() {
        for m in all_kinds() {
            let mut body = Vec::new();
            m.encode(&mut body).unwrap();
            assert_eq!(m.encoded_len(), body.len(), "{m:?}");
            assert_eq!(Message::decode(&body).unwrap(), m);
        }
    }

    #[test]
    fn a_fomm_motion_is_a_few_hundred_bytes() {
        let mut body = Vec::new();
        Message::Motion {
            seq: 1,
            keypoints: fomm_keypoints(),
        }
        .encode(&mut body)
        .unwrap();
        // kind, seq, count, flag, 10 x (2 + 4) f32.
        assert_eq!(body.len(), 1 + 4 + 2 + 10 * 6 * 4);
    }

    #[test]
    fn every_cut_short_body_is_refused() {
        for m in all_kinds() {
            let mut body = Vec::new();
            m.encode(&mut body).unwrap();
            for n in 0..body.len() {
                assert!(
                    Message::decode(&body[..n]).is_err(),
                    "{m:?} cut to {n} bytes was taken"
                );
            }
            body.push(0);
            assert_eq!(Message::decode(&body), Err(WireError::Trailing(1)));
        }
    }

    #[test]
    fn broken_rules_are_named() {
        let err = |b: &[u8]| Message::decode(b).unwrap_err().to_string();
        assert!(err(&[9]).contains("unknown message kind 9"));
        assert!(err(b"\x01HTTP\x01\x00\x01\x00\x03").contains("no MRNT"));
        assert!(err(b"\x01MRNT\x02\x00\x01\x00\x03").contains("versions 2 to 1"));
        assert!(err(b"\x02\x01\x00\x00\x01\x0a\x01\x09").contains("unknown codec 9"));
        // A NaN keypoint.
        let mut body = vec![6, 0, 0, 0, 0, 1, 0];
        body.extend_from_slice(&f32::NAN.to_le_bytes());
        body.extend_from_slice(&0f32.to_le_bytes());
        assert!(err(&body).contains("not a finite number"));
        // No keypoints, or more than the protocol carries.
        assert!(err(&[6, 0, 0, 0, 0, 0, 0]).contains("0 keypoints"));
        assert!(err(&[6, 0, 0, 0, 0, 200, 0]).contains("200 keypoints"));
        // A portrait side over the limit, with nothing behind it: refused on the side, not
        // after allocating for it.
        let mut body = vec![4];
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&4096u16.to_le_bytes());
        assert!(err(&body).contains("frame side of 4096"));
        // A frame that says it is longer than what follows.
        let mut body = vec![7, 1, 0, 0, 0, 1];
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Message::decode(&body),
            Err(WireError::Truncated("the frame's data"))
        );
    }

    #[test]
    fn what_cannot_be_carried_is_not_encoded() {
        let mut out = vec![1, 2, 3];
        let wrong_size = Message::Portrait {
            id: 1,
            side: 4,
            rgb: vec![0; 47],
        };
        assert!(wrong_size.encode(&mut out).is_err());
        let huge = Message::Frame {
            seq: 1,
            codec: Codec::Raw,
            data: vec![0; MAX_MESSAGE],
        };
        assert!(matches!(huge.encode(&mut out), Err(WireError::TooLarge(_))));
        assert_eq!(
            out,
            vec![1, 2, 3],
            "a refused message leaves nothing behind"
        );
    }

    #[test]
    fn versions_meet_at_the_newest_both_speak() {
        assert_eq!(common_version((1, 3), (1, 1)), Some(1));
        assert_eq!(common_version((1, 3), (2, 5)), Some(3));
        assert_eq!(common_version((4, 5), (1, 3)), None);
        assert_eq!(common_version((1, 1), (2, 2)), None);
    }

    #[test]
    fn the_framer_gives_whole_bodies_however_the_bytes_arrive() {
        let bodies: Vec<Vec<u8>> = all_kinds()
            .iter()
            .map(|m| {
                let mut b = Vec::new();
                m.encode(&mut b).unwrap();
                b
            })
            .collect();
        let stream: Vec<u8> = bodies.iter().flat_map(|b| frame(b).unwrap()).collect();
        for chunk in [1, 3, 7, 1000] {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                f.push(piece);
                while let Some(b) = f.next_body().unwrap() {
                    got.push(b);
                }
            }
            assert_eq!(got, bodies, "in pieces of {chunk}");
            assert_eq!(f.pending(), 0);
        }
        // A prefix over the limit is refused once its four bytes are in.
        let mut f = Framer::default();
        f.push(&(MAX_MESSAGE as u32 + 1).to_le_bytes());
        assert_eq!(f.next_body(), Err(WireError::TooLarge(MAX_MESSAGE + 1)));
    }
}
