//! `run --remote`: an engine that renders on a server when it can and here when it cannot.
//!
//! It wraps the local FOMM engine, which keeps doing what the client does (the keypoint
//! detector, the view compensation, the smoothing, the reference frame) and renders whenever the
//! server is not there. Each driving frame's keypoints go to the server and the frame it renders
//! comes back; the live loop treats it as the model's keyframe, so its in-betweens hide the round
//! trip as they hide the model's time. When the server is lost (or gives no frame within
//! [`FRAME_TIMEOUT`]) it says so once, renders here meanwhile, and reconnects in the background
//! with back-off (0.25 s doubling to 4 s); when the server is back it says so once, sends the
//! portrait and the reference again, and renders there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use tracing::{debug, warn};

use super::channel::Secret;
use super::client::{RemoteClient, RemoteError};
use crate::engine::smoothing::Smoothing;
use crate::engine::{Animator, EngineError, EngineId, FrameInfo, KeypointView, RemoteStats};
use crate::media::resize::{rgb8_to_tensor, tensor_to_rgb8};
use crate::media::video::FfmpegTools;
use crate::motion::{FrameMotion, KeypointSet, MotionSource, ReferenceMotion};

/// The longest wait for the server's frame before rendering here instead.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between two tries to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The connection: a client, or a thread connecting (it stops once `_wanted` is dropped).
enum Link {
    Connected(Box<RemoteClient>),
    Connecting {
        client: crossbeam_channel::Receiver<RemoteClient>,
        _wanted: Arc<()>,
    },
}

/// Tries to connect until it does, waiting longer each time, as long as the link is wanted. Why
/// a try failed is said once per reason, unless `quiet` (the loss was said already).
fn connect_in_background(
    addr: String,
    secret: Secret,
    h264: Option<FfmpegTools>,
    quiet: bool,
) -> Link {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let wanted = Arc::new(());
    let still_wanted = Arc::downgrade(&wanted);
    let spawned = thread::Builder::new()
        .name("remote-connect".into())
        .spawn(move || {
            let mut wait = FIRST_BACKOFF;
            let mut said: Option<String> = None;
            while still_wanted.strong_count() > 0 {
                match RemoteClient::connect(&addr, &secret, h264.as_ref()) {
                    Ok(client) => {
                        let _ = tx.send(client);
                        return;
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if quiet {
                            debug!("remote rendering: {text}; trying again in {wait:?}");
                        } else if said.as_deref() != Some(&text) {
                            warn!("remote rendering: {text}; trying again");
                            said = Some(text);
                        }
                    }
                }
                let until = Instant::now() + wait;
                while Instant::now() < until && still_wanted.strong_count() > 0 {
                    thread::sleep(Duration::from_millis(50));
                }
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        });
    if let Err(e) = spawned {
        warn!("remote rendering: no thread to connect with: {e}");
    }
    Link::Connecting {
        client: rx,
        _wanted: wanted,
    }
}

/// FOMM rendered on a server, or here while it is not there.
pub struct RemoteAnimator {
    local: Box<dyn Animator + Send>,
    addr: String,
    secret: Secret,
    /// The `ffmpeg` that decodes H.264 frames; `None`: raw frames.
    h264: Option<FfmpegTools>,
    link: Link,
    /// Each portrait's pixels at the server's frame size, to send (again) by id.
    portraits: HashMap<u64, Vec<u8>>,
    current: Option<u64>,
    /// The reference frame's keypoints, to send again after a reconnection.
    reference: Option<KeypointSet>,
    seq: u32,
    stats: RemoteStats,
    /// Bytes of the connections before the current one (up, motions up, down).
    bytes_before: (u64, u64, u64),
    /// The loss has been said (said again only after the server came back).
    said_lost: bool,
}

impl RemoteAnimator {
    /// The local engine `local` (FOMM), rendering on the server at `addr` once connected;
    /// connecting starts at once, in the background. Frames come as H.264 where `h264` names
    /// the `ffmpeg` to decode them (and the server can code them), else raw.
    pub fn new(
        local: Box<dyn Animator + Send>,
        addr: &str,
        secret: Secret,
        h264: Option<FfmpegTools>,
    ) -> Self {
        let link = connect_in_background(addr.to_string(), secret.clone(), h264.clone(), false);
        Self {
            local,
            addr: addr.to_string(),
            secret,
            h264,
            link,
            portraits: HashMap::new(),
            current: None,
            reference: None,
            seq: 0,
            stats: RemoteStats::default(),
            bytes_before: (0, 0, 0),
            said_lost: false,
        }
    }

    /// What it has done so far.
    pub fn stats(&self) -> RemoteStats {
        let mut s = self.stats;
        (s.bytes_up, s.motion_bytes_up, s.bytes_down) = self.bytes_before;
        if let Link::Connected(c) = &self.link {
            let t = c.traffic();
            s.bytes_up += t.up.load(Ordering::Relaxed);
            s.motion_bytes_up += t.motion_up.load(Ordering::Relaxed);
            s.bytes_down += t.down.load(Ordering::Relaxed);
        }
        s.connected = matches!(self.link, Link::Connected(_));
        s
    }

    /// The connected client, taking a new connection when one has come; `None` meanwhile.
    fn client(&mut self) -> Option<&mut RemoteClient> {
        let came = match &self.link {
            Link::Connecting { client, .. } => client.try_recv().ok(),
            Link::Connected(_) => None,
        };
        if let Some(mut client) = came {
            match self.welcome(&mut client) {
                Ok(()) => {
                    let m = client.model();
                    warn!(
                        "remote rendering: {} renders from now on ({}x{} {} frames)",
                        self.addr,
                        m.side,
                        m.side,
                        match m.codec {
                            super::wire::Codec::Raw => "raw",
                            super::wire::Codec::H264 => "H.264",
                        }
                    );
                    self.link = Link::Connected(Box::new(client));
                }
                Err(e) => self.lose(&e.to_string()),
            }
        }
        match &mut self.link {
            Link::Connected(c) => Some(c.as_mut()),
            Link::Connecting { .. } => None,
        }
    }

    /// Sends a new connection what it needs: the portrait and the reference.
    fn welcome(&mut self, client: &mut RemoteClient) -> Result<(), RemoteError> {
        let (h, w) = self.local.frame_size();
        let side = usize::from(client.model().side);
        if (h, w) != (side, side) {
            return Err(RemoteError::Protocol(format!(
                "the server renders {side}x{side} frames, this model {w}x{h}: give both the same \
                 config"
            )));
        }
        if let Some(rgb) = self.current.and_then(|id| self.portraits.get(&id)) {
            client.send_portrait(self.current.unwrap_or(0), rgb.clone())?;
        }
        if let Some(r) = &self.reference {
            client.send_reference(r.clone())?;
        }
        Ok(())
    }

    /// The server is gone: say so once, render here, reconnect in the background.
    fn lose(&mut self, why: &str) {
        if let Link::Connected(c) = &self.link {
            let t = c.traffic();
            self.bytes_before.0 += t.up.load(Ordering::Relaxed);
            self.bytes_before.1 += t.motion_up.load(Ordering::Relaxed);
            self.bytes_before.2 += t.down.load(Ordering::Relaxed);
        }
        if !self.said_lost || matches!(self.link, Link::Connected(_)) {
            warn!(
                "remote rendering: lost {} ({why}); rendering on this machine until it is back",
                self.addr
            );
            self.said_lost = true;
        }
        self.link = connect_in_background(
            self.addr.clone(),
            self.secret.clone(),
            self.h264.clone(),
            true,
        );
    }

    /// The server's frame for `keypoints`, or why there is none.
    fn render_remote(
        &mut self,
        keypoints: &KeypointSet,
        reference: bool,
    ) -> Result<Option<Tensor>, RemoteError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let Some(client) = self.client() else {
            return Ok(None);
        };
        if reference {
            client.send_reference(keypoints.clone())?;
        }
        client.send_motion(seq, keypoints.clone())?;
        self.stats.motions += 1;
        let Some(client) = self.client() else {
            return Ok(None);
        };
        let until = Instant::now() + FRAME_TIMEOUT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match client.next_frame(left)? {
                Some(f) if f.seq == seq => {
                    let side = usize::from(client.model().side);
                    let t = rgb8_to_tensor(&f.rgb, side, side)
                        .map_err(|e| RemoteError::Protocol(e.to_string()))?;
                    self.stats.frames += 1;
                    return Ok(Some(t));
                }
                // An older motion's frame, come late: the newer one is on its way.
                Some(_) => {}
                None => {
                    return Err(RemoteError::Lost(format!(
                        "no frame in {} s",
                        FRAME_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }
}

impl Animator for RemoteAnimator {
    fn name(&self) -> &'static str {
        self.local.name()
    }
    fn id(&self) -> EngineId {
        self.local.id()
    }
    fn frame_size(&self) -> (usize, usize) {
        self.local.frame_size()
    }
    fn select_portrait(&mut self, id: u64, source: &Tensor) -> Result<(), EngineError> {
        self.local.select_portrait(id, source)?;
        if let std::collections::hash_map::Entry::Vacant(e) = self.portraits.entry(id) {
            e.insert(tensor_to_rgb8(source)?.into_raw());
        }
        self.current = Some(id);
        let rgb = self.portraits.get(&id).cloned();
        let sent = match (rgb, self.client()) {
            (Some(rgb), Some(client)) => client.send_portrait(id, rgb),
            _ => Ok(()),
        };
        if let Err(e) = sent {
            self.lose(&e.to_string());
        }
        Ok(())
    }
    fn recalibrate(&mut self) {
        self.local.recalibrate();
    }
    fn is_calibrated(&self) -> bool {
        self.local.is_calibrated()
    }
    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        self.animate_with(driving, &FrameInfo::default())
    }
    fn animate_with(&mut self, driving: &Tensor, info: &FrameInfo) -> Result<Tensor, EngineError> {
        let Some((kp, reference)) = self.local.driving_keypoints(driving, info)? else {
            return self.local.animate_with(driving, info);
        };
        if reference {
            self.reference = Some(kp.clone());
        }
        match self.render_remote(&kp, reference) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(e) => self.lose(&e.to_string()),
        }
        self.local.animate_motion(&FrameMotion::Fomm(kp))
    }
    fn set_smoothing(&mut self, smoothing: Smoothing) {
        self.local.set_smoothing(smoothing);
    }
    fn animate_idle(&mut self, t: f64) -> Result<Tensor, EngineError> {
        self.local.animate_idle(t)
    }
    fn detect(
        &self,
        driving: &Tensor,
    ) -> Result<Option<fomm::keypoint_detector::Keypoints>, EngineError> {
        self.local.detect(driving)
    }
    fn portrait_keypoints(&self) -> Option<&fomm::keypoint_detector::Keypoints> {
        self.local.portrait_keypoints()
    }
    fn set_transfer(&mut self, relative: bool, adapt_scale: bool) -> Result<(), EngineError> {
        let server = fomm::motion_transfer::TransferOptions::default();
        if (relative, adapt_scale) != (server.relative, server.adapt_scale) {
            // The server transfers the motion as `run` does by default.
            return Err(EngineError::Unsupported {
                engine: "fomm (remote)",
                what: "motion transfer other than relative with adapt scale when rendering \
                       remotely",
            });
        }
        self.local.set_transfer(relative, adapt_scale)
    }
    fn keypoint_view(&self) -> Option<KeypointView> {
        self.local.keypoint_view()
    }
    fn motion_source(&self) -> Option<MotionSource> {
        self.local.motion_source()
    }
    fn last_motion(&self) -> Option<FrameMotion> {
        self.local.last_motion()
    }
    fn reference_motion(&self) -> Option<ReferenceMotion> {
        self.local.reference_motion()
    }
    fn remote_stats(&self) -> Option<RemoteStats> {
        Some(self.stats())
    }
}
