//! `run --remote`: an engine that renders on a server when it can and here when it cannot.
//!
//! It wraps the local FOMM engine, which keeps doing what the client does (the keypoint
//! detector, the view compensation, the smoothing, the reference frame) and renders whenever the
//! server is not there. Each driving frame's keypoints go to the server and the frame it renders
//! comes back; the live loop treats it as the model's keyframe, so its in-betweens hide the round
//! trip as they hide the model's time. The live loop submits the next motion before the last
//! frame is back ([`Animator::submit`]), paced to the rate the server's frames come at, so
//! keyframes come at the server's rate whatever the round trip (the server renders the newest
//! motion it has and skips the others). When the server is lost (or gives no frame within
//! [`FRAME_TIMEOUT`], [`FIRST_FRAME_TIMEOUT`] for a connection's first) it says so once, renders
//! here meanwhile, and reconnects in the background with back-off (0.25 s doubling to 4 s); when
//! the server is back it says so once, sends the portrait and the reference again, and renders
//! there.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use tracing::{debug, warn};

use super::channel::Secret;
use super::client::{RemoteClient, RemoteError};
use crate::engine::smoothing::Smoothing;
use crate::engine::{
    Animator, EngineError, EngineId, Finished, FrameInfo, KeypointView, RemoteStats, Submitted,
};
use crate::media::resize::{rgb8_to_tensor, tensor_to_rgb8};
use crate::media::video::FfmpegTools;
use crate::motion::{FrameMotion, KeypointSet, MotionSource, ReferenceMotion};

/// The longest wait for the server's frame before rendering here instead, unless its frames
/// take longer than a third of it to come back (a slow link): then three times their latency.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest wait for a connection's first frame: the portrait goes up before it, and TCP's
/// window opens over the first round trips, so on a slow link (a 1 s round trip) it takes
/// several seconds where later frames take one round trip.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between two tries to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Motions in flight at most; older ones are forgotten (the server has skipped them by then).
const MAX_IN_FLIGHT: usize = 32;

/// A new motion goes once this share of the server's frame interval has passed since the last
/// one: a little faster than the server renders, so that it always has a motion waiting, and not
/// at the camera's rate, which would spend the client's time detecting keypoints for motions the
/// server skips.
const PACE: f64 = 0.6;

/// Weight of the newest value in the smoothed interval between the server's frames and in their
/// smoothed latency.
const INTERVAL_WEIGHT: f64 = 0.3;

/// A motion sent whose frame has not come.
struct InFlight {
    seq: u32,
    tag: u64,
    keypoints: KeypointSet,
    sent: Instant,
}

/// The connection: a client, or a thread connecting (it stops once `_wanted` is dropped).
enum Link {
    Connected(Box<RemoteClient>),
    Connecting {
        client: crossbeam_channel::Receiver<RemoteClient>,
        _wanted: Arc<()>,
    },
}

/// What the engine says for the user, also logged: the newest message waits to be taken
/// ([`Animator::take_notice`]), so a window shows what `run` prints. Shared with the thread that
/// connects.
#[derive(Clone, Default)]
struct Said(Arc<Mutex<Option<String>>>);

impl Said {
    fn say(&self, text: String) {
        warn!("{text}");
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(text);
        }
    }

    fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Tries to connect until it does, waiting longer each time, as long as the link is wanted. Why
/// a try failed is said once per reason, unless `quiet` (the loss was said already).
fn connect_in_background(
    addr: String,
    secret: Secret,
    h264: Option<FfmpegTools>,
    quiet: bool,
    said_to_user: Said,
) -> Link {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let wanted = Arc::new(());
    let still_wanted = Arc::downgrade(&wanted);
    let to_user = said_to_user.clone();
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
                            to_user.say(format!("remote rendering: {text}; trying again"));
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
        said_to_user.say(format!("remote rendering: no thread to connect with: {e}"));
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
    /// What was said for the user and not yet taken.
    said: Said,
    /// Motions sent through [`Animator::submit`] whose frames have not come, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Since when a frame has been awaited (the oldest unanswered motion, or the last frame).
    waiting_since: Option<Instant>,
    /// When the last motion went.
    last_sent: Option<Instant>,
    /// When the last frame came, and the smoothed interval between frames.
    last_frame: Option<Instant>,
    frame_interval: Option<Duration>,
    /// Smoothed time from a motion's sending to its frame.
    latency: Option<Duration>,
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
        let said = Said::default();
        let link = connect_in_background(
            addr.to_string(),
            secret.clone(),
            h264.clone(),
            false,
            said.clone(),
        );
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
            said,
            in_flight: VecDeque::new(),
            waiting_since: None,
            last_sent: None,
            last_frame: None,
            frame_interval: None,
            latency: None,
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
        s.in_flight = self.in_flight.len();
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
                    self.said.say(format!(
                        "remote rendering: {} renders from now on ({}x{} {} frames)",
                        self.addr,
                        m.side,
                        m.side,
                        match m.codec {
                            super::wire::Codec::Raw => "raw",
                            super::wire::Codec::H264 => "H.264",
                        }
                    ));
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
            self.said.say(format!(
                "remote rendering: lost {} ({why}); rendering on this machine until it is back",
                self.addr
            ));
            self.said_lost = true;
        }
        self.link = connect_in_background(
            self.addr.clone(),
            self.secret.clone(),
            self.h264.clone(),
            true,
            self.said.clone(),
        );
        self.in_flight.clear();
        self.waiting_since = None;
        self.last_frame = None;
        self.frame_interval = None;
        self.latency = None;
    }

    /// Sends `keypoints` (and the reference first when they are the reference); the motion's
    /// sequence number, or `None` while no server is connected.
    fn send(
        &mut self,
        keypoints: &KeypointSet,
        reference: bool,
    ) -> Result<Option<u32>, RemoteError> {
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
        Ok(Some(seq))
    }

    /// How long the server may be silent with motions on their way: [`FIRST_FRAME_TIMEOUT`]
    /// until the connection's first frame, then [`FRAME_TIMEOUT`] or three times the frames'
    /// latency, whichever is longer.
    fn frame_timeout(&self) -> Duration {
        match (self.last_frame, self.latency) {
            (None, _) => FIRST_FRAME_TIMEOUT,
            (Some(_), Some(latency)) => FRAME_TIMEOUT.max(latency * 3),
            (Some(_), None) => FRAME_TIMEOUT,
        }
    }

    /// The next frame for a motion in flight, waiting up to `wait`; an error when the server
    /// is lost or has been silent for [`Self::frame_timeout`] with motions in flight.
    fn receive(&mut self, wait: Duration) -> Result<Option<Finished>, RemoteError> {
        let timeout = self.frame_timeout();
        let Link::Connected(client) = &mut self.link else {
            return Ok(None);
        };
        let side = usize::from(client.model().side);
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(f) = client.next_frame(left)? else {
                return match self.waiting_since {
                    Some(since) if since.elapsed() > timeout => Err(RemoteError::Lost(format!(
                        "no frame in {} s",
                        timeout.as_secs()
                    ))),
                    _ => Ok(None),
                };
            };
            // A frame for a motion no longer in flight (from before a synchronous render).
            let Some(i) = self.in_flight.iter().position(|m| m.seq == f.seq) else {
                continue;
            };
            let Some(motion) = self.in_flight.drain(..=i).next_back() else {
                continue;
            };
            let now = Instant::now();
            let took = now.saturating_duration_since(motion.sent);
            self.latency = Some(match self.latency {
                Some(l) => l.mul_f64(1.0 - INTERVAL_WEIGHT) + took.mul_f64(INTERVAL_WEIGHT),
                None => took,
            });
            if let Some(last) = self.last_frame {
                let gap = now.saturating_duration_since(last);
                if gap < FRAME_TIMEOUT {
                    self.frame_interval = Some(match self.frame_interval {
                        Some(iv) => {
                            iv.mul_f64(1.0 - INTERVAL_WEIGHT) + gap.mul_f64(INTERVAL_WEIGHT)
                        }
                        None => gap,
                    });
                }
            }
            self.last_frame = Some(now);
            self.waiting_since = (!self.in_flight.is_empty()).then_some(now);
            let frame = rgb8_to_tensor(&f.rgb, side, side)
                .map_err(|e| RemoteError::Protocol(e.to_string()))?;
            self.stats.frames += 1;
            return Ok(Some(Finished {
                tag: motion.tag,
                frame,
            }));
        }
    }

    /// The server's frame for `keypoints`, or why there is none.
    fn render_remote(
        &mut self,
        keypoints: &KeypointSet,
        reference: bool,
    ) -> Result<Option<Tensor>, RemoteError> {
        let Some(seq) = self.send(keypoints, reference)? else {
            return Ok(None);
        };
        // Frames of motions submitted before are skipped below: they never come now.
        self.in_flight.clear();
        self.waiting_since = None;
        let timeout = self.frame_timeout();
        let Link::Connected(client) = &mut self.link else {
            return Ok(None);
        };
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match client.next_frame(left)? {
                Some(f) if f.seq == seq => {
                    let side = usize::from(client.model().side);
                    let t = rgb8_to_tensor(&f.rgb, side, side)
                        .map_err(|e| RemoteError::Protocol(e.to_string()))?;
                    self.stats.frames += 1;
                    self.last_frame = Some(Instant::now());
                    return Ok(Some(t));
                }
                // An older motion's frame, come late: the newer one is on its way.
                Some(_) => {}
                None => {
                    return Err(RemoteError::Lost(format!(
                        "no frame in {} s",
                        timeout.as_secs()
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
    fn submit(
        &mut self,
        driving: &Tensor,
        info: &FrameInfo,
        tag: u64,
    ) -> Result<Submitted, EngineError> {
        let Some((kp, reference)) = self.local.driving_keypoints(driving, info)? else {
            return self
                .local
                .animate_with(driving, info)
                .map(Submitted::Rendered);
        };
        if reference {
            self.reference = Some(kp.clone());
        }
        match self.send(&kp, reference) {
            Ok(Some(seq)) => {
                let now = Instant::now();
                if self.in_flight.len() >= MAX_IN_FLIGHT {
                    self.in_flight.pop_front();
                }
                self.in_flight.push_back(InFlight {
                    seq,
                    tag,
                    keypoints: kp,
                    sent: now,
                });
                self.waiting_since.get_or_insert(now);
                self.last_sent = Some(now);
                return Ok(Submitted::Sent);
            }
            Ok(None) => {}
            Err(e) => self.lose(&e.to_string()),
        }
        self.local
            .animate_motion(&FrameMotion::Fomm(kp))
            .map(Submitted::Rendered)
    }
    fn wants_more(&self) -> bool {
        if self.in_flight.is_empty() {
            return true;
        }
        // Until two frames have come there is no interval to pace by: one motion at a time.
        match (self.frame_interval, self.last_sent) {
            (Some(interval), Some(sent)) => sent.elapsed() >= interval.mul_f64(PACE),
            _ => false,
        }
    }
    fn finished(&mut self, wait: Duration) -> Result<Option<Finished>, EngineError> {
        if self.in_flight.is_empty() {
            return Ok(None);
        }
        match self.receive(wait) {
            Ok(f) => return Ok(f),
            Err(e) => {
                // The newest motion in flight is rendered here instead.
                let newest = self.in_flight.pop_back();
                self.lose(&e.to_string());
                if let Some(m) = newest {
                    let frame = self.local.animate_motion(&FrameMotion::Fomm(m.keypoints))?;
                    return Ok(Some(Finished { tag: m.tag, frame }));
                }
            }
        }
        Ok(None)
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
    fn take_notice(&self) -> Option<String> {
        self.said.take()
    }
}
