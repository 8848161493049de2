//! A sink's thread: writes each published frame, and a repeating sink (a virtual camera) also on
//! its own clock: whenever a frame period passes without a new frame, the last one goes out
//! again, as already converted, so the device is written at the frame rate however slow
//! everything upstream is. A lossless sink's queue is drained before it stops.

use std::time::{Duration, Instant};

use super::queue::SinkReceiver;
use super::{PipelineError, Shared};
use crate::channel::RecvError;
use crate::frame::Frame;
use crate::output::{FrameSink, SinkError};

/// The thread's body: `frames` carries (frame, live), live meaning it shows a driving frame (its
/// capture-to-output latency is measured) rather than a still.
pub(super) fn sink_thread(
    mut sink: Box<dyn FrameSink>,
    frames: SinkReceiver,
    fps: f64,
    shared: &Shared,
) -> Result<(), PipelineError> {
    let period = Duration::from_secs_f64(1.0 / fps.max(1.0));
    let name = sink.name();
    let failed = |source| PipelineError::Sink {
        sink: name.clone(),
        source: Box::new(source),
    };
    let mut last: Option<Frame> = None;
    // When the next write is due if no new frame comes.
    let mut due = Instant::now() + period;
    let result = loop {
        // A lossless sink (a recording) writes out its queue before it stops.
        if shared.stopped() && !frames.drains_on_stop() {
            break Ok(());
        }
        if let Some(waited) = frames.stalled() {
            break Err(failed(SinkError::TooSlow { waited }));
        }
        match frames.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok((frame, live)) => {
                let t = Instant::now();
                if let Err(e) = sink.write(&frame) {
                    break Err(failed(e));
                }
                let latency = live.then(|| frame.captured_at.elapsed());
                shared.stats(|s| s.record_sink(&name, t.elapsed(), latency));
                last = Some(frame);
                due = Instant::now() + period;
            }
            Err(RecvError::Timeout) => {
                if sink.repeats()
                    && let Some(f) = &last
                {
                    let repeated = match sink.repeat() {
                        Ok(true) => Ok(()),
                        Ok(false) => sink.write(f),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = repeated {
                        break Err(failed(e));
                    }
                    shared.stats(|s| s.record_sink_repeat(&name));
                }
                // On the clock: a thread that was kept from running catches up by one write,
                // not a burst.
                due += period;
                let now = Instant::now();
                if due < now {
                    due = now + period;
                }
            }
            Err(RecvError::Disconnected) => break Ok(()),
        }
    };
    let finished = sink.finish().map_err(failed);
    if result.is_err() {
        shared.request_stop();
    }
    result.and(finished)
}
