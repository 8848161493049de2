//! The server's frames as H.264 with full-resolution colour (4:4:4), through the `ffmpeg`
//! program already in the stack (x264 to code, FFmpeg's decoder to decode).
//!
//! Why this codec: at 256x256 on rendered portraits, H.264 4:4:4 P frames reach the quality of
//! Avatarify's JPEG q95 for about a quarter of its bytes (`docs/remote.md` has the figures;
//! `tests/remote.rs` holds the codec to it). P frames depend on the frames before them,
//! which the remote channel allows: it is ordered and reliable (TCP), so a frame is late on a lossy
//! link, never missing; and the server codes only the frames it sends (the newest, after its
//! latest-wins queue), so no frame the decoder needs is skipped.
//!
//! Framing: the coder writes FLV, whose tags carry their own lengths, so one frame's bytes are
//! known the moment they are written (a raw H.264 stream only ends a frame when the next one
//! starts). FFmpeg's command-line decoder (5.1 measured) hands out a decoded frame only after it
//! has decoded one or two more, depending on timing, so each rendered frame is followed by
//! [`REPEATS`] codings of the same picture (P frames of mostly skipped blocks, a few hundred
//! bytes for the three). They push the frame out of the decoder at once; the client keeps the frame
//! and drops the repeats. This works whether the decoder holds back none, one, two or three.

use std::io::Read;
use std::process::ChildStdout;
use std::thread::{self, JoinHandle};

use crate::media::MediaError;
use crate::media::pipe::{FfmpegPipe, PipeKiller, passthrough_args};
use crate::media::video::FfmpegTools;

/// x264's quantiser, the same for every frame: at 12, with 4:4:4 chroma in full range, H.264
/// matches the PSNR of JPEG at quality 95 (what Avatarify sends) on rendered portraits (43.6 dB
/// both, the classic engine's idle motion on the bundled portraits at 10 frames a second, in
/// `tests/remote.rs`) for a quarter of its bytes. Constant, not x264's constant-quality mode: that
/// one spends several kilobytes refining each repeat (see [`REPEATS`]), a constant quantiser
/// leaves a repeat as skipped blocks.
const QP: &str = "12";

/// The times each frame is coded again after itself (a few dozen bytes each), to push it out
/// of FFmpeg's decoder, which was seen holding back one or two pictures.
const REPEATS: usize = 3;

/// The longest wait for a frame's output from `ffmpeg` (it takes milliseconds) before it is
/// taken for stuck and killed.
const OUTPUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest FLV tag a coder may write (a 512x512 intra frame at CRF 14 is about 100 kB).
const MAX_TAG: usize = 1 << 20;

/// FLV: a 9-byte file header and the 4-byte size of the (absent) tag before the first one.
const FLV_HEADER: usize = 13;

/// FLV tag header: type, 24-bit data size, timestamp (24 + 8 bits), 24-bit stream id.
const TAG_HEADER: usize = 11;

/// FLV tag type of video data.
const TAG_VIDEO: u8 = 9;

/// Whether `ffmpeg` here can code H.264 with x264 (the server's side).
pub fn can_encode(tools: &FfmpegTools) -> bool {
    lists(tools, "-encoders", "libx264")
}

/// Whether `ffmpeg` here can decode H.264 (the client's side).
pub fn can_decode(tools: &FfmpegTools) -> bool {
    lists(tools, "-decoders", "h264")
}

/// Whether `ffmpeg -hide_banner <what>` names `name` as one of its codecs.
fn lists(tools: &FfmpegTools, what: &str, name: &str) -> bool {
    std::process::Command::new(&tools.ffmpeg)
        .args(["-hide_banner", what])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.split_whitespace().nth(1) == Some(name))
        })
}

/// Reads FLV tags off `out` as they come and hands on, for each picture, the bytes from the end
/// of the last picture's tag to the end of this one's (the stream's header and the decoder's
/// configuration go with the first picture). Ends when the output ends or breaks the format, or
/// when nobody takes what it reads.
fn read_pictures(mut out: impl Read, pictures: &crossbeam_channel::Sender<Vec<u8>>) -> String {
    let mut bytes = vec![0u8; FLV_HEADER];
    if let Err(e) = out.read_exact(&mut bytes) {
        return format!("its output ended before the stream's header: {e}");
    }
    loop {
        let at = bytes.len();
        bytes.resize(at + TAG_HEADER, 0);
        if let Err(e) = out.read_exact(&mut bytes[at..]) {
            return format!("its output ended: {e}");
        }
        let kind = bytes[at];
        let size = usize::from(bytes[at + 1]) << 16
            | usize::from(bytes[at + 2]) << 8
            | usize::from(bytes[at + 3]);
        if size > MAX_TAG {
            return format!("it wrote an FLV tag of {size} bytes");
        }
        // The data and the 4-byte size of this tag that follows it.
        let data = bytes.len();
        bytes.resize(data + size + 4, 0);
        if let Err(e) = out.read_exact(&mut bytes[data..]) {
            return format!("its output ended inside a tag: {e}");
        }
        // A video tag of H.264 (codec 7) that carries a picture (packet type 1), not the
        // decoder's configuration (type 0).
        let picture =
            kind == TAG_VIDEO && size >= 2 && bytes[data] & 0x0f == 7 && bytes[data + 1] == 1;
        if picture && pictures.send(std::mem::take(&mut bytes)).is_err() {
            return String::new();
        }
    }
}

/// Reads `side` x `side` RGB pictures off `out` as they come and hands on the frames (not their
/// repeats), until the output ends or nobody takes them.
fn read_frames(
    mut out: impl Read,
    side: usize,
    frames: &crossbeam_channel::Sender<Vec<u8>>,
) -> String {
    // Of every 1 + REPEATS pictures the first is the frame; the repeats are read into one
    // buffer and dropped here.
    let mut repeat = vec![0u8; side * side * 3];
    loop {
        let mut rgb = vec![0u8; side * side * 3];
        if let Err(e) = out.read_exact(&mut rgb) {
            return format!("its output ended: {e}");
        }
        if frames.send(rgb).is_err() {
            return String::new();
        }
        for _ in 0..REPEATS {
            if let Err(e) = out.read_exact(&mut repeat) {
                return format!("its output ended: {e}");
            }
        }
    }
}

/// A thread that reads a pipe's output with `read` and hands on what it reads (a few at most:
/// a process that runs ahead waits). Its result is why it stopped.
fn output_reader<F>(
    pipe: &mut FfmpegPipe,
    read: F,
) -> Result<(crossbeam_channel::Receiver<Vec<u8>>, JoinHandle<String>), MediaError>
where
    F: FnOnce(ChildStdout, &crossbeam_channel::Sender<Vec<u8>>) -> String + Send + 'static,
{
    let out = pipe
        .take_output()
        .ok_or_else(|| pipe.failed(&"its output was taken already"))?;
    let (tx, rx) = crossbeam_channel::bounded(4);
    let t = thread::Builder::new()
        .name("ffmpeg-out".into())
        .spawn(move || read(out, &tx))
        .map_err(|e| pipe.failed(&e))?;
    Ok((rx, t))
}

/// The next item of a pipe's output; when there is none, why (the reader's reason, and what
/// ffmpeg said).
fn next_output(
    pipe: &mut FfmpegPipe,
    items: &crossbeam_channel::Receiver<Vec<u8>>,
    reader: &mut Option<JoinHandle<String>>,
) -> Result<Vec<u8>, MediaError> {
    items.recv_timeout(OUTPUT_TIMEOUT).map_err(|e| {
        let why = match e {
            crossbeam_channel::RecvTimeoutError::Timeout => {
                format!("it gave nothing for {} s", OUTPUT_TIMEOUT.as_secs())
            }
            crossbeam_channel::RecvTimeoutError::Disconnected => reader
                .take()
                .and_then(|t| t.join().ok())
                .unwrap_or_else(|| "its output ended".into()),
        };
        pipe.failed(&why)
    })
}

/// Codes one client's frames, in order, into FLV-framed H.264.
pub struct H264Encoder {
    pipe: FfmpegPipe,
    side: usize,
    pictures: crossbeam_channel::Receiver<Vec<u8>>,
    reader: Option<JoinHandle<String>>,
}

impl H264Encoder {
    /// A coder for `side` x `side` RGB frames.
    pub fn start(tools: &FfmpegTools, side: usize) -> Result<Self, MediaError> {
        let size = format!("{side}x{side}");
        let mut pipe = FfmpegPipe::spawn(
            tools,
            &[
                "-nostdin",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-video_size",
                &size,
                "-framerate",
                "30",
                "-i",
                "pipe:0",
                "-an",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "zerolatency",
                "-bf",
                "0",
                "-qp",
                QP,
                "-vf",
                "scale=out_range=full",
                "-color_range",
                "pc",
                "-pix_fmt",
                "yuv444p",
                "-threads",
                "1",
                "-flush_packets",
                "1",
                "-f",
                "flv",
                "pipe:1",
            ],
            "coding frames as H.264",
        )?;
        let (pictures, reader) = output_reader(&mut pipe, read_pictures)?;
        Ok(Self {
            pipe,
            side,
            pictures,
            reader: Some(reader),
        })
    }

    /// The bytes that carry `rgb` (side x side x 3) to the decoder: the frame and its repeats,
    /// and before the first frame the stream's headers.
    pub fn encode(&mut self, rgb: &[u8]) -> Result<Vec<u8>, MediaError> {
        if rgb.len() != self.side * self.side * 3 {
            return Err(MediaError::PipeFailed {
                action: "coding frames as H.264",
                status: format!(
                    "a frame of {} bytes where {}x{} RGB takes {}",
                    rgb.len(),
                    self.side,
                    self.side,
                    self.side * self.side * 3
                ),
                stderr: String::new(),
            });
        }
        let mut out = Vec::new();
        for _ in 0..=REPEATS {
            self.pipe.write(rgb)?;
            out.extend(next_output(
                &mut self.pipe,
                &self.pictures,
                &mut self.reader,
            )?);
        }
        Ok(out)
    }
}

/// Decodes what an [`H264Encoder`] coded, frame by frame.
pub struct H264Decoder {
    pipe: FfmpegPipe,
    frames: crossbeam_channel::Receiver<Vec<u8>>,
    reader: Option<JoinHandle<String>>,
}

impl H264Decoder {
    /// A decoder for `side` x `side` frames.
    pub fn start(tools: &FfmpegTools, side: usize) -> Result<Self, MediaError> {
        let sync = passthrough_args(tools)?;
        // Read the stream as it comes: no probing ahead for more frames than the first, no
        // frame threads (each would hold a frame back).
        let mut pipe = FfmpegPipe::spawn(
            tools,
            &[
                "-nostdin",
                "-probesize",
                "32",
                "-analyzeduration",
                "0",
                "-flags",
                "low_delay",
                "-threads",
                "1",
                "-f",
                "flv",
                "-i",
                "pipe:0",
                "-an",
                sync[0],
                sync[1],
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-flush_packets",
                "1",
                "pipe:1",
            ],
            "decoding the server's H.264 frames",
        )?;
        let (frames, reader) = output_reader(&mut pipe, move |out, tx| read_frames(out, side, tx))?;
        Ok(Self {
            pipe,
            frames,
            reader: Some(reader),
        })
    }

    /// A handle that kills the decoder from another thread (to unblock [`H264Decoder::decode`]).
    pub fn killer(&self) -> PipeKiller {
        self.pipe.killer()
    }

    /// The picture that `coded` (one [`H264Encoder::encode`]'s bytes) carries, side x side x 3
    /// bytes of RGB.
    pub fn decode(&mut self, coded: &[u8]) -> Result<Vec<u8>, MediaError> {
        self.pipe.write(coded)?;
        // Its repeats push it out of the decoder, whether that holds back none or up to three.
        next_output(&mut self.pipe, &self.frames, &mut self.reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A soft picture that moves with `t`, like a rendered face (smooth, a little texture).
    fn picture(side: usize, t: usize) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(side * side * 3);
        for y in 0..side {
            for x in 0..side {
                let (fx, fy) = ((x + 3 * t) as f32, (y + t) as f32);
                let v = 128.0 + 60.0 * (fx * 0.09).sin() * (fy * 0.07).cos();
                rgb.extend_from_slice(&[v as u8, (255.0 - v) as u8, (v * 0.5 + 40.0) as u8]);
            }
        }
        rgb
    }

    fn psnr(a: &[u8], b: &[u8]) -> f64 {
        let mse = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        10.0 * (255.0 * 255.0 / mse.max(1e-12)).log10()
    }

    #[test]
    fn each_frame_comes_back_in_order_and_close_to_what_was_sent() {
        let tools = FfmpegTools::from_env();
        assert!(
            can_encode(&tools) && can_decode(&tools),
            "ffmpeg with libx264 is needed"
        );
        let side = 64;
        let mut enc = H264Encoder::start(&tools, side).unwrap();
        let mut dec = H264Decoder::start(&tools, side).unwrap();
        let mut later_bytes = 0;
        for t in 0..8 {
            let sent = picture(side, t);
            let coded = enc.encode(&sent).unwrap();
            if t > 0 {
                later_bytes += coded.len();
            }
            let got = dec.decode(&coded).unwrap();
            let own = psnr(&got, &sent);
            assert!(own > 38.0, "frame {t}: {own:.1} dB");
            // The frame decoded now is this one, not the one before (no frame held back).
            if t > 0 {
                let before = psnr(&got, &picture(side, t - 1));
                assert!(
                    own > before + 3.0,
                    "frame {t}: {own:.1} dB, the previous {before:.1}"
                );
            }
        }
        // P frames of a moving picture cost far less than the pixels.
        assert!(
            later_bytes / 7 < side * side * 3 / 10,
            "{} bytes a frame",
            later_bytes / 7
        );
    }

    #[test]
    fn a_frame_of_the_wrong_size_is_refused() {
        let tools = FfmpegTools::from_env();
        let mut enc = H264Encoder::start(&tools, 64).unwrap();
        let err = enc.encode(&[0; 10]).unwrap_err().to_string();
        assert!(err.contains("a frame of 10 bytes"), "{err}");
    }

    #[test]
    fn a_decoder_stuck_on_garbage_is_ended_by_its_killer() {
        let tools = FfmpegTools::from_env();
        let mut dec = H264Decoder::start(&tools, 64).unwrap();
        let killer = dec.killer();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            killer.kill();
        });
        // Not FLV: ffmpeg waits for more of it and gives no frame, until it is killed.
        let err = dec
            .decode(b"this is not FLV at all")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ffmpeg failed while decoding"), "{err}");
        t.join().unwrap();
    }
}
