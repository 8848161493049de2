//! "Latest wins" channels between threads: bounded to one item, where sending replaces a stale
//! item that was not taken yet. Every replaced item is counted, so dropped frames are measured.
//! Built on a bounded crossbeam channel of capacity 1: latency can never grow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError, bounded};

/// The sending half.
pub struct LatestSender<T> {
    tx: Sender<T>,
    /// A receiver of the same channel, used only to take out the stale item.
    drain: Receiver<T>,
    dropped: Arc<AtomicU64>,
    /// Alive while any [`LatestReceiver`] exists (the drain handle keeps the channel open).
    receivers: Weak<()>,
}

/// The receiving half.
pub struct LatestReceiver<T> {
    rx: Receiver<T>,
    dropped: Arc<AtomicU64>,
    alive: Arc<()>,
}

impl<T> Clone for LatestReceiver<T> {
    fn clone(&self) -> Self {
        Self {
            rx: self.rx.clone(),
            dropped: self.dropped.clone(),
            alive: self.alive.clone(),
        }
    }
}

/// The receiver is gone: nobody will take what is sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the receiving side has stopped")]
pub struct Disconnected;

/// A new latest-wins channel.
pub fn latest<T>() -> (LatestSender<T>, LatestReceiver<T>) {
    let (tx, rx) = bounded(1);
    let dropped = Arc::new(AtomicU64::new(0));
    let alive = Arc::new(());
    (
        LatestSender {
            tx,
            drain: rx.clone(),
            dropped: dropped.clone(),
            receivers: Arc::downgrade(&alive),
        },
        LatestReceiver { rx, dropped, alive },
    )
}

impl<T> LatestSender<T> {
    /// Sends `item`, replacing (and counting) an item not yet taken. Never blocks.
    pub fn send(&self, item: T) -> Result<(), Disconnected> {
        if !self.is_connected() {
            return Err(Disconnected);
        }
        let mut item = item;
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
                Err(TrySendError::Full(back)) => {
                    item = back;
                    // Take the stale item out; if the receiver took it meanwhile, just retry.
                    if self.drain.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Items replaced before anyone took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the receiver still exists (our own drain handle does not count).
    pub fn is_connected(&self) -> bool {
        self.receivers.strong_count() > 0
    }
}

/// Why a receive returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing arrived in time (for `try_recv`: nothing is waiting).
    Timeout,
    /// The sender is gone and nothing is left.
    Disconnected,
}

impl<T> LatestReceiver<T> {
    /// Waits up to `timeout` for the next item.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => RecvError::Timeout,
            RecvTimeoutError::Disconnected => RecvError::Disconnected,
        })
    }

    /// The item waiting, if any.
    pub fn try_recv(&self) -> Result<T, RecvError> {
        self.rx.try_recv().map_err(|e| match e {
            TryRecvError::Empty => RecvError::Timeout,
            TryRecvError::Disconnected => RecvError::Disconnected,
        })
    }

    /// Items replaced before anyone took them (shared with the sender's count).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The underlying receiver, for `select!`.
    pub fn inner(&self) -> &Receiver<T> {
        &self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_replaces_stale_and_is_counted() {
        let (tx, rx) = latest();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_recv(), Ok(4));
        assert_eq!(tx.dropped(), 4);
        assert_eq!(rx.try_recv(), Err(RecvError::Timeout));
    }

    #[test]
    fn sending_to_a_dropped_receiver_fails() {
        let (tx, rx) = latest::<u32>();
        drop(rx);
        assert!(!tx.is_connected());
        assert_eq!(tx.send(1), Err(Disconnected));
    }

    #[test]
    fn receiver_sees_disconnect_after_last_item() {
        let (tx, rx) = latest();
        tx.send(7).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(7));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvError::Disconnected)
        );
    }
}
