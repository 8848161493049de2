//! The capture thread: runs the current driving source, sends every frame on (and to the
//! preview), swaps the source when asked, and reopens a failing camera with back-off.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::{PipelineError, Shared, SourceFactory};
use crate::capture::FrameSource;
use crate::channel::LatestSender;
use crate::frame::Frame;

/// First wait before reopening a failing camera; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Everything the capture thread owns.
pub(super) struct Capture {
    /// The source given at start: it must open, or the run ends with its error.
    pub(super) first: Option<SourceFactory>,
    /// Sources picked while running (`None`: idle motion).
    pub(super) switches: Receiver<Option<SourceFactory>>,
    pub(super) frames: LatestSender<Frame>,
    pub(super) preview: Option<LatestSender<Frame>>,
    /// Reopen a source whose error is transient instead of ending the run.
    pub(super) reopen: bool,
}

impl Capture {
    /// The thread's body.
    pub(super) fn run(self, shared: &Shared) -> Result<(), PipelineError> {
        super::model::set_nice(super::model::LOOP_NICE);
        let mut src: Option<Box<dyn FrameSource>> = match self.first {
            Some(factory) => Some(factory()?),
            None => None,
        };
        let mut backoff = FIRST_BACKOFF;
        let mut last_read: Option<std::time::Instant> = None;
        while !shared.stopped() {
            if let Ok(next) = self.switches.try_recv() {
                // Close the old source first: a camera can be opened once.
                drop(src.take());
                shared.live.store(false, Ordering::Relaxed);
                src = next.and_then(|factory| open_switched(factory, shared));
                shared.live.store(src.is_some(), Ordering::Relaxed);
            }
            let Some(current) = src.as_mut() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            // On a machine that cannot use every frame, frames are not read (decoded) faster
            // than they are used (the governor's cap); a short sleep, so a stop is seen.
            if let Some(last) = last_read {
                let wait = shared
                    .pace
                    .capture_interval()
                    .saturating_sub(last.elapsed());
                if !wait.is_zero() {
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                    continue;
                }
            }
            last_read = Some(std::time::Instant::now());
            match current.next_frame() {
                Ok(frame) => {
                    backoff = FIRST_BACKOFF;
                    if let Some(p) = &self.preview {
                        let _ = p.send(frame.clone());
                    }
                    if self.frames.send(frame).is_err() {
                        return Ok(());
                    }
                }
                // A lost camera: said once, idle motion meanwhile (`live` off, so the outputs
                // never go silent), reopened with back-off; when it is back the run is live
                // again and the inference thread recalibrates.
                Err(e) if self.reopen && e.is_transient() => {
                    if shared.live.swap(false, Ordering::Relaxed) {
                        tracing::warn!(
                            "{}: lost ({e}); the portrait moves by itself until it is back",
                            current.name()
                        );
                    } else {
                        tracing::debug!("{}: {e}; retrying in {backoff:?}", current.name());
                    }
                    shared.set_source_error(Some(e.to_string()));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    match current.reopen() {
                        Ok(()) => {
                            tracing::warn!("{}: back; recalibrating", current.name());
                            shared.set_source_error(None);
                            shared.live.store(true, Ordering::Relaxed);
                        }
                        Err(e) => tracing::debug!("{}: reopen failed: {e}", current.name()),
                    }
                }
                Err(e) => {
                    shared.request_stop();
                    return Err(PipelineError::Capture(e));
                }
            }
        }
        Ok(())
    }
}

/// Opens a source picked while running. One that fails leaves the run on idle motion, with the
/// reason to show.
fn open_switched(factory: SourceFactory, shared: &Shared) -> Option<Box<dyn FrameSource>> {
    match factory() {
        Ok(s) => {
            tracing::info!("source: {}", s.name());
            shared.set_source_error(None);
            Some(s)
        }
        Err(e) => {
            tracing::warn!("source: {e}");
            shared.set_source_error(Some(e.to_string()));
            None
        }
    }
}
