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

/// A write the statistics have not seen yet.
enum Written {
    /// A new frame: how long the write took, and its capture-to-output latency if live.
    Frame(Duration, Option<Duration>),
    /// The last frame again.
    Repeat,
}

/// The thread's body: `frames` carries (frame, live), live meaning it shows a driving frame (its
/// capture-to-output latency is measured) rather than a still.
pub(super) fn sink_thread(
    mut sink: Box<dyn FrameSink>,
    frames: SinkReceiver,
    fps: f64,
    shared: &Shared,
) -> Result<(), PipelineError> {
    let period = Duration::from_secs_f64(1.0 / fps.max(1.0));
    if sink.repeats() {
        // The writer that keeps a virtual camera alive runs first when it is due: a higher
        // priority where the process may take one, and short time slices.
        super::model::set_nice(-5);
        super::model::short_slices();
    }
    let name = sink.name();
    let failed = |source| PipelineError::Sink {
        sink: name.clone(),
        source: Box::new(source),
    };
    let mut last: Option<Frame> = None;
    // Writes not yet in the statistics (they are added when no other thread holds them).
    let mut pending: Vec<Written> = Vec::new();
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
                pending.push(Written::Frame(t.elapsed(), latency));
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
                    pending.push(Written::Repeat);
                }
                // On the clock: the next write is due a period after this one was, so a write
                // that came late (a starved thread) does not push the later ones back; a thread
                // that was kept from running for longer catches up by one write, not a burst.
                due += period;
                let now = Instant::now();
                if due + period < now {
                    due = now;
                }
            }
            Err(RecvError::Disconnected) => break Ok(()),
        }
        if !pending.is_empty()
            && shared.try_stats(|s| {
                for w in pending.iter() {
                    match *w {
                        Written::Frame(took, latency) => s.record_sink(&name, took, latency),
                        Written::Repeat => s.record_sink_repeat(&name),
                    }
                }
            })
        {
            pending.clear();
        }
    };
    let finished = sink.finish().map_err(failed);
    if result.is_err() {
        shared.request_stop();
    }
    result.and(finished)
}
