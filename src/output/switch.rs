//! Outputs the window changes while running: a [`SwitchableSink`] whose device can be replaced or
//! closed from another thread (the virtual-camera picker), and a [`ChannelSink`] that hands
//! frames to the preview. A failing device is closed and reported; the run goes on.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{FrameSink, SinkError};
use crate::channel::LatestSender;
use crate::frame::Frame;

/// What a switchable output is doing, for the status line.
#[derive(Debug, Clone, Default)]
pub struct OutputStatus {
    /// The open device ("/dev/video10 YUYV 640x480"), or None.
    pub device: Option<String>,
    /// Frames written to the current device.
    pub frames: u64,
    /// When a frame was last written to it.
    pub last_write: Option<Instant>,
    /// Why the last device stopped or could not be used.
    pub error: Option<String>,
}

impl OutputStatus {
    /// Written to within the last second.
    pub fn is_writing(&self) -> bool {
        self.device.is_some()
            && self
                .last_write
                .is_some_and(|t| t.elapsed().as_secs_f64() < 1.0)
    }
}

type Replacement = (Option<Box<dyn FrameSink>>, String);

/// The controlling side of a [`SwitchableSink`].
#[derive(Clone)]
pub struct SwitchHandle {
    tx: Sender<Replacement>,
    status: Arc<Mutex<OutputStatus>>,
}

impl SwitchHandle {
    /// Writes to `sink` from the next frame on (`None`: stop writing). `label` describes it.
    pub fn set(&self, sink: Option<Box<dyn FrameSink>>, label: impl Into<String>) {
        let _ = self.tx.send((sink, label.into()));
    }

    /// Records a failure to open a device (shown like a write failure).
    pub fn report(&self, error: impl Into<String>) {
        if let Ok(mut s) = self.status.lock() {
            s.error = Some(error.into());
        }
    }

    /// What the sink is doing now.
    pub fn status(&self) -> OutputStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A sink that writes to whatever device it was last given.
pub struct SwitchableSink {
    name: String,
    rx: Receiver<Replacement>,
    current: Option<Box<dyn FrameSink>>,
    status: Arc<Mutex<OutputStatus>>,
}

impl SwitchableSink {
    /// A sink named `name` with no device yet, and the handle that gives it one.
    pub fn new(name: impl Into<String>) -> (Self, SwitchHandle) {
        let (tx, rx) = bounded(4);
        let status: Arc<Mutex<OutputStatus>> = Arc::default();
        (
            Self {
                name: name.into(),
                rx,
                current: None,
                status: status.clone(),
            },
            SwitchHandle { tx, status },
        )
    }

    fn take_replacement(&mut self) {
        while let Ok((next, label)) = self.rx.try_recv() {
            if let Some(mut old) = self.current.take()
                && let Err(e) = old.finish()
            {
                tracing::warn!("{}: closing: {e}", self.name);
            }
            let open = next.is_some();
            self.current = next;
            if let Ok(mut s) = self.status.lock() {
                *s = OutputStatus {
                    device: open.then_some(label),
                    frames: 0,
                    last_write: None,
                    error: None,
                };
            }
        }
    }
}

impl SwitchableSink {
    /// Records a write's outcome in the status (a failed device is closed and said once).
    fn after_write(&mut self, result: Result<bool, SinkError>) {
        match result {
            Ok(wrote) => {
                if wrote && let Ok(mut s) = self.status.lock() {
                    s.frames += 1;
                    s.last_write = Some(Instant::now());
                }
            }
            Err(e) => {
                tracing::warn!("{}: {e}; closed", self.name);
                self.current = None;
                if let Ok(mut s) = self.status.lock() {
                    s.device = None;
                    s.error = Some(e.to_string());
                }
            }
        }
    }
}

impl FrameSink for SwitchableSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        self.take_replacement();
        let Some(sink) = self.current.as_mut() else {
            return Ok(());
        };
        let result = sink.write(frame).map(|()| true);
        self.after_write(result);
        Ok(())
    }

    fn repeats(&self) -> bool {
        true
    }

    fn repeat(&mut self) -> Result<bool, SinkError> {
        self.take_replacement();
        let Some(sink) = self.current.as_mut() else {
            // Nothing open: nothing to write, and nothing for the caller to convert either.
            return Ok(true);
        };
        match sink.repeat() {
            // A device just opened has nothing converted yet: the caller writes the frame.
            Ok(false) => Ok(false),
            // Repeated, or the device failed (closed and said): nothing more to do.
            result => {
                self.after_write(result);
                Ok(true)
            }
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.take_replacement();
        match self.current.take() {
            Some(mut s) => s.finish(),
            None => Ok(()),
        }
    }
}

/// Hands each frame to a latest-wins channel (the window's output pane).
pub struct ChannelSink {
    name: String,
    tx: LatestSender<Frame>,
}

impl ChannelSink {
    /// A sink named `name` that sends every frame into `tx`.
    pub fn new(name: impl Into<String>, tx: LatestSender<Frame>) -> Self {
        Self {
            name: name.into(),
            tx,
        }
    }
}

impl FrameSink for ChannelSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn write(&mut self, frame: &Frame) -> Result<(), SinkError> {
        // A closed window is not an error of the pipeline: it is shutting down.
        let _ = self.tx.send(frame.clone());
        Ok(())
    }
}
