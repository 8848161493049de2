//! The face thread: finds the face in the newest camera frame a few times a second, for automatic
//! framing, off the camera-rate loop (a search takes a few milliseconds to tens of milliseconds on
//! a busy machine; the loop only reads the latest result).

use std::time::{Duration, Instant};

use super::{PipelineError, Shared};
use crate::channel::{LatestReceiver, LatestSender, RecvError};
use crate::face::{FaceBox, FaceDetector};
use crate::frame::{Frame, Size};

/// At most this many searches a second: drifts are slow, and the detector's time is the model's.
pub const SEARCHES_PER_SECOND: f64 = 5.0;

/// The result of one search.
#[derive(Debug, Clone)]
pub(super) struct Sighting {
    /// When the searched frame was captured.
    pub(super) captured_at: Instant,
    /// The frame's size.
    pub(super) size: Size,
    /// The face found, in the frame's pixels.
    pub(super) face: Option<FaceBox>,
}

/// The face thread's body: searches the newest frame it is given, at most
/// [`SEARCHES_PER_SECOND`] times a second, until stopped.
pub(super) fn face_thread(
    frames: LatestReceiver<Frame>,
    sightings: LatestSender<Sighting>,
    shared: &Shared,
) -> Result<(), PipelineError> {
    super::model::lower_priority();
    let mut detector = match FaceDetector::new() {
        Ok(d) => d,
        Err(e) => {
            // Framing falls back to the centred crop; the run goes on.
            let msg = format!("automatic framing is off: {e}");
            tracing::warn!("{msg}");
            shared.stats(|s| s.notice = Some(msg));
            return Ok(());
        }
    };
    let period = Duration::from_secs_f64(1.0 / SEARCHES_PER_SECOND);
    let mut last = None::<Instant>;
    while !shared.stopped() {
        let frame = match frames.recv_timeout(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(RecvError::Timeout) => continue,
            Err(RecvError::Disconnected) => return Ok(()),
        };
        if let Some(l) = last {
            // Less often while the machine cannot keep up (the governor's period).
            let wait = period
                .max(shared.pace.face_period())
                .saturating_sub(l.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
                continue;
            }
        }
        last = Some(Instant::now());
        let face = detector.detect(&frame.rgb, frame.size.width, frame.size.height);
        if sightings
            .send(Sighting {
                captured_at: frame.captured_at,
                size: frame.size,
                face,
            })
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}
