//! The queues between the inference thread and the sinks.
//!
//! Live outputs (a virtual camera) get a latest-wins channel ([`crate::channel`]): a slow one
//! skips stale frames instead of adding latency. A sink that must not lose frames (a recording,
//! [`crate::output::FrameSink::lossless`]) gets an [`every`] queue instead: bounded by the bytes
//! of the frames it holds ([`LOSSLESS_QUEUE_BYTES`]), it absorbs a slow start (FFmpeg starting)
//! and short hiccups; when it is full the sender waits (back-pressure: the pipeline slows to the
//! sink's pace), and when it stays full for [`LOSSLESS_STALL`] the frame is dropped, counted, and
//! the sink is told ([`EveryReceiver::stalled`]) so that it can end the run with a clear error
//! rather than silently lose frames. Such sinks get only animated frames, not the still portrait
//! shown to live outputs while waiting for the first camera frame.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::{Disconnected, LatestReceiver, LatestSender, RecvError, latest};
use crate::frame::Frame;

/// Memory a lossless sink's queue may hold: 340 frames of 256x256, 3.7 s of 1280x720 at 30 fps.
pub const LOSSLESS_QUEUE_BYTES: usize = 64 << 20;

/// How long a send to a full lossless queue waits before it gives up on that frame.
pub const LOSSLESS_STALL: Duration = Duration::from_secs(10);

/// How often a waiting sender looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    senders: usize,
    receiver: bool,
    dropped: u64,
    stalled: Option<Duration>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    budget: usize,
    stall: Duration,
    stop: Arc<AtomicBool>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves consistent data (every change is one step).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending half of an [`every`] queue.
pub struct EverySender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half of an [`every`] queue.
pub struct EveryReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue that delivers every item, holding at most `budget` bytes (one item whatever its
/// size); a send waits while it is full, at most `stall`, and not once `stop` is set.
pub fn every<T>(
    budget: usize,
    stall: Duration,
    stop: Arc<AtomicBool>,
) -> (EverySender<T>, EveryReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            senders: 1,
            receiver: true,
            dropped: 0,
            stalled: None,
        }),
        changed: Condvar::new(),
        budget,
        stall,
        stop,
    });
    (
        EverySender {
            shared: shared.clone(),
        },
        EveryReceiver { shared },
    )
}

impl<T> EverySender<T> {
    /// Queues `item`, which holds `bytes` bytes. Waits while the queue is full; drops the item
    /// (counted) when the wait reaches the stall time, or when the run is stopping and there is
    /// no room.
    pub fn send(&self, item: T, bytes: usize) -> Result<(), Disconnected> {
        let start = Instant::now();
        let mut state = self.shared.lock();
        loop {
            if !state.receiver {
                return Err(Disconnected);
            }
            if state.items.is_empty() || state.bytes.saturating_add(bytes) <= self.shared.budget {
                state.bytes = state.bytes.saturating_add(bytes);
                state.items.push_back((item, bytes));
                self.shared.changed.notify_all();
                return Ok(());
            }
            let waited = start.elapsed();
            if self.shared.stop.load(Ordering::Relaxed) || waited >= self.shared.stall {
                state.dropped += 1;
                if waited >= self.shared.stall {
                    state.stalled = Some(waited);
                }
                self.shared.changed.notify_all();
                return Ok(());
            }
            let wait = (self.shared.stall - waited).min(POLL);
            state = match self.shared.changed.wait_timeout(state, wait) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Items dropped because the receiver could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }
}

impl<T> Clone for EverySender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for EverySender<T> {
    fn drop(&mut self) {
        self.shared.lock().senders -= 1;
        self.shared.changed.notify_all();
    }
}

impl<T> EveryReceiver<T> {
    fn take(&self, state: &mut State<T>) -> Option<T> {
        let (item, bytes) = state.items.pop_front()?;
        state.bytes -= bytes;
        self.shared.changed.notify_all();
        Some(item)
    }

    /// Waits up to `timeout` for the next item; `Disconnected` once every sender is gone and the
    /// queue is empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(item) = self.take(&mut state) {
                return Ok(item);
            }
            if state.senders == 0 {
                return Err(RecvError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout);
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// The item waiting, if any.
    #[cfg(test)]
    pub fn try_recv(&self) -> Result<T, RecvError> {
        let mut state = self.shared.lock();
        match self.take(&mut state) {
            Some(item) => Ok(item),
            None if state.senders == 0 => Err(RecvError::Disconnected),
            None => Err(RecvError::Timeout),
        }
    }

    /// How long a send waited before it gave up on a frame, if one ever did.
    pub fn stalled(&self) -> Option<Duration> {
        self.shared.lock().stalled
    }
}

impl<T> Drop for EveryReceiver<T> {
    fn drop(&mut self) {
        self.shared.lock().receiver = false;
        self.shared.changed.notify_all();
    }
}

/// What a sink's thread receives: a frame, and whether it is live (false: the still portrait
/// shown while waiting for the first camera frame).
pub type SinkItem = (Frame, bool);

/// The inference thread's side of a sink's queue.
pub enum SinkSender {
    Latest(LatestSender<SinkItem>),
    Every(EverySender<SinkItem>),
}

/// A sink thread's side of its queue.
pub enum SinkReceiver {
    Latest(LatestReceiver<SinkItem>),
    Every(EveryReceiver<SinkItem>),
}

/// The queue for a sink: [`every`] for a lossless one, else latest-wins. `stop` is the run's
/// stop flag (a waiting send gives up when it is set).
pub fn sink_queue(lossless: bool, stop: Arc<AtomicBool>) -> (SinkSender, SinkReceiver) {
    if lossless {
        let (tx, rx) = every(LOSSLESS_QUEUE_BYTES, LOSSLESS_STALL, stop);
        (SinkSender::Every(tx), SinkReceiver::Every(rx))
    } else {
        let (tx, rx) = latest();
        (SinkSender::Latest(tx), SinkReceiver::Latest(rx))
    }
}

impl SinkSender {
    /// Sends a frame: replacing a stale one (latest-wins), or queued, waiting while the queue is
    /// full (lossless; still frames are not sent there).
    pub fn send(&self, item: SinkItem) -> Result<(), Disconnected> {
        match self {
            SinkSender::Latest(tx) => tx.send(item),
            SinkSender::Every(_) if !item.1 => Ok(()),
            SinkSender::Every(tx) => {
                let bytes = item.0.rgb.len();
                tx.send(item, bytes)
            }
        }
    }

    /// Frames that never reached the sink.
    pub fn dropped(&self) -> u64 {
        match self {
            SinkSender::Latest(tx) => tx.dropped(),
            SinkSender::Every(tx) => tx.dropped(),
        }
    }
}

impl SinkReceiver {
    pub fn recv_timeout(&self, timeout: Duration) -> Result<SinkItem, RecvError> {
        match self {
            SinkReceiver::Latest(rx) => rx.recv_timeout(timeout),
            SinkReceiver::Every(rx) => rx.recv_timeout(timeout),
        }
    }

    /// The item waiting, if any.
    #[cfg(test)]
    pub fn try_recv(&self) -> Result<SinkItem, RecvError> {
        match self {
            SinkReceiver::Latest(rx) => rx.try_recv(),
            SinkReceiver::Every(rx) => rx.try_recv(),
        }
    }

    /// Whether the sink takes every queued frame before it stops (lossless): it stops when the
    /// inference thread has ended and the queue is empty, not at once when the run stops.
    pub fn drains_on_stop(&self) -> bool {
        matches!(self, SinkReceiver::Every(_))
    }

    /// Set when a frame was dropped because this sink could not keep up (see [`every`]): the sink
    /// must end the run with an error.
    pub fn stalled(&self) -> Option<Duration> {
        match self {
            SinkReceiver::Latest(_) => None,
            SinkReceiver::Every(rx) => rx.stalled(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    #[test]
    fn every_item_arrives_in_order_then_disconnected() {
        let (tx, rx) = every::<u32>(100, Duration::from_secs(1), stop());
        for i in 0..10 {
            tx.send(i, 10).unwrap();
        }
        drop(tx);
        let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(RecvError::Disconnected)
        );
    }

    #[test]
    fn a_full_queue_makes_the_sender_wait_for_the_receiver() {
        let (tx, rx) = every::<u32>(30, Duration::from_secs(5), stop());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(v) = rx.recv_timeout(Duration::from_secs(2)) {
                std::thread::sleep(Duration::from_millis(2));
                got.push(v);
            }
            got
        });
        for i in 0..200 {
            tx.send(i, 10).unwrap();
        }
        let dropped = tx.dropped();
        drop(tx);
        let got = reader.join().unwrap();
        assert_eq!(dropped, 0);
        assert_eq!(got, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn an_item_larger_than_the_budget_still_goes_through_alone() {
        let (tx, rx) = every::<u32>(10, Duration::from_millis(50), stop());
        tx.send(1, 1000).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
    }

    #[test]
    fn a_stalled_receiver_is_reported_and_the_frame_counted() {
        let (tx, rx) = every::<u32>(10, Duration::from_millis(100), stop());
        tx.send(1, 10).unwrap();
        let t = Instant::now();
        tx.send(2, 10).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(tx.dropped(), 1);
        assert!(rx.stalled().is_some());
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(RecvError::Timeout));
    }

    #[test]
    fn stopping_ends_a_wait_and_a_dropped_receiver_disconnects() {
        let flag = stop();
        let (tx, rx) = every::<u32>(10, Duration::from_secs(60), flag.clone());
        tx.send(1, 10).unwrap();
        flag.store(true, Ordering::Relaxed);
        let t = Instant::now();
        tx.send(2, 10).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(tx.dropped(), 1);
        drop(rx);
        assert_eq!(tx.send(3, 1), Err(Disconnected));
    }

    #[test]
    fn lossless_sinks_get_no_still_frames() {
        let frame = Frame::new(
            0,
            Instant::now(),
            crate::frame::Size::new(2, 2),
            vec![0; 12],
        )
        .expect("frame");
        let (tx, rx) = sink_queue(true, stop());
        tx.send((frame.clone(), false)).unwrap();
        tx.send((frame, true)).unwrap();
        assert!(rx.drains_on_stop());
        assert!(matches!(rx.try_recv(), Ok((_, true))));
        assert!(matches!(rx.try_recv(), Err(RecvError::Timeout)));
    }
}
