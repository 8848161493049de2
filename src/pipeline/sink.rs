//! A sink's thread: writes each published frame, and repeats the last one when nothing new
//! arrives within a frame period, so a virtual camera never goes silent. A lossless sink's
//! queue is drained before it stops.

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
    let repeat = Duration::from_secs_f64(1.0 / fps.max(1.0));
    let name = sink.name();
    let failed = |source| PipelineError::Sink {
        sink: name.clone(),
        source: Box::new(source),
    };
    let mut last: Option<Frame> = None;
    let result = loop {
        // A lossless sink (a recording) writes out its queue before it stops.
        if shared.stopped() && !frames.drains_on_stop() {
            break Ok(());
        }
        if let Some(waited) = frames.stalled() {
            break Err(failed(SinkError::TooSlow { waited }));
        }
        match frames.recv_timeout(repeat) {
            Ok((frame, live)) => {
                let t = Instant::now();
                if let Err(e) = sink.write(&frame) {
                    break Err(failed(e));
                }
                let latency = live.then(|| frame.captured_at.elapsed());
                shared.stats(|s| s.record_sink(&name, t.elapsed(), latency));
                last = Some(frame);
            }
            Err(RecvError::Timeout) => {
                if sink.repeats()
                    && let Some(f) = &last
                    && let Err(e) = sink.write(f)
                {
                    break Err(failed(e));
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
