//! Bounded queues between stages, with an explicit overflow policy per edge.
//!
//! `DropOldest` (the default) never blocks the producer: when the queue is full the oldest frame is
//! taken out and dropped, because in surgery the newest image is the one that matters. `Block`
//! makes the producer wait, which replays use to process every frame deterministically.
//! Every push, drop and drain is counted; none of it allocates after the channel exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, SendTimeoutError, TrySendError};
use serde::{Deserialize, Serialize};

/// What a full queue does with a new item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueuePolicy {
    #[default]
    DropOldest,
    Block,
}

/// Counters of one queue, shared by both ends and read by the report.
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub pushed: AtomicU64,
    /// Items thrown away to make room (drop-oldest).
    pub dropped: AtomicU64,
    /// Items discarded unprocessed during a safe-stop.
    pub drained: AtomicU64,
    pub max_depth: AtomicUsize,
}

/// Producer end.
pub struct QueueSender<T> {
    tx: crossbeam_channel::Sender<T>,
    // Drop-oldest takes the oldest item out through its own receiver handle.
    oldest: Option<crossbeam_channel::Receiver<T>>,
    counters: Arc<QueueCounters>,
}

/// Consumer end.
pub struct QueueReceiver<T> {
    rx: crossbeam_channel::Receiver<T>,
    counters: Arc<QueueCounters>,
}

/// Why a push did not go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The consumer is gone; the item was dropped.
    Disconnected,
}

/// Makes a queue holding at most `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize, policy: QueuePolicy) -> (QueueSender<T>, QueueReceiver<T>, Arc<QueueCounters>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let counters = Arc::new(QueueCounters::default());
    let oldest = (policy == QueuePolicy::DropOldest).then(|| rx.clone());
    (
        QueueSender { tx, oldest, counters: counters.clone() },
        QueueReceiver { rx, counters: counters.clone() },
        counters,
    )
}

impl<T> QueueSender<T> {
    /// Pushes `item`, applying the queue's overflow policy. A blocking push gives up when
    /// `keep_waiting` says so (shutdown), dropping the item and counting it as drained.
    pub fn push(&self, mut item: T, keep_waiting: impl Fn() -> bool) -> Result<(), PushError> {
        match &self.oldest {
            Some(oldest) => loop {
                match self.tx.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        item = back;
                        // The consumer may have emptied a slot meanwhile; then nothing is dropped.
                        if let Ok(old) = oldest.try_recv() {
                            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                            drop(old);
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(PushError::Disconnected),
                }
            },
            None => loop {
                match self.tx.send_timeout(item, Duration::from_millis(20)) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(back)) => {
                        if !keep_waiting() {
                            // Never entered the queue: counted as drained, not pushed.
                            self.counters.drained.fetch_add(1, Ordering::Relaxed);
                            return Ok(());
                        }
                        item = back;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return Err(PushError::Disconnected),
                }
            },
        }
        self.counters.pushed.fetch_add(1, Ordering::Relaxed);
        self.counters.max_depth.fetch_max(self.tx.len(), Ordering::Relaxed);
        Ok(())
    }
}

impl<T> QueueReceiver<T> {
    /// Waits for the next item; `None` once every producer is gone and the queue is empty.
    pub fn recv(&self) -> Option<T> {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(item) => return Some(item),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Counts an item taken from this queue and thrown away unprocessed (safe-stop).
    pub fn count_drained(&self) {
        self.counters.drained.fetch_add(1, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts_drops() {
        let (tx, rx, counters) = bounded::<u32>(3, QueuePolicy::DropOldest);
        for i in 0..10 {
            tx.push(i, || true).unwrap();
        }
        drop(tx);
        let got: Vec<u32> = std::iter::from_fn(|| rx.recv()).collect();
        assert_eq!(got, vec![7, 8, 9]);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 7);
        assert_eq!(counters.pushed.load(Ordering::Relaxed), 10);
        assert_eq!(counters.max_depth.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn block_waits_for_room_and_gives_up_on_shutdown() {
        let (tx, rx, counters) = bounded::<u32>(1, QueuePolicy::Block);
        tx.push(1, || true).unwrap();
        // Full, and told to stop waiting: the item is counted as drained, not lost silently.
        tx.push(2, || false).unwrap();
        assert_eq!(counters.drained.load(Ordering::Relaxed), 1);
        let consumer = std::thread::spawn(move || std::iter::from_fn(|| rx.recv()).collect::<Vec<_>>());
        tx.push(3, || true).unwrap();
        drop(tx);
        assert_eq!(consumer.join().unwrap(), vec![1, 3]);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn push_to_a_gone_consumer_reports_it() {
        let (tx, rx, _) = bounded::<u32>(1, QueuePolicy::Block);
        drop(rx);
        assert_eq!(tx.push(1, || true), Err(PushError::Disconnected));
    }
}
