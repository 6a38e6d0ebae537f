//! Bounded lock-free queues between stages, with an explicit overflow policy per edge.
//!
//! `DropOldest` (the default) never blocks the producer: when the queue is full the oldest frame is
//! displaced and dropped, because in surgery the newest image is the one that matters. `Block`
//! makes the producer wait, which replays use to process every frame deterministically.
//!
//! The queue is a crossbeam `ArrayQueue` (lock-free, fixed capacity). Waiting is by thread
//! park/unpark (a futex on Linux): no locks, and no allocation once each end has bound its thread,
//! unlike a channel whose waiter lists grow the first time a thread blocks. Every push, drop and
//! drain is counted.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use serde::{Deserialize, Serialize};

/// Longest a parked thread sleeps before it looks again (guards against a missed wake-up).
const PARK_TIMEOUT: Duration = Duration::from_millis(20);

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
    /// Items displaced to make room for newer ones (drop-oldest).
    pub dropped: AtomicU64,
    /// Items discarded because of a safe-stop, by either end.
    pub drained: AtomicU64,
    /// Items the consumer took but discarded unprocessed because they were already older than
    /// the end-to-end deadline (live queues only; see the runtime).
    pub stale: AtomicU64,
    pub max_depth: AtomicUsize,
}

struct Shared<T> {
    items: ArrayQueue<T>,
    policy: QueuePolicy,
    counters: Arc<QueueCounters>,
    producer_gone: AtomicBool,
    consumer_gone: AtomicBool,
    producer: OnceLock<Thread>,
    consumer: OnceLock<Thread>,
}

/// Wakes the thread bound to one end, if it has bound itself yet.
fn wake(thread: &OnceLock<Thread>) {
    // Pairs with the fence a waiter issues between binding itself and its last look.
    fence(Ordering::SeqCst);
    if let Some(t) = thread.get() {
        t.unpark();
    }
}

/// Producer end (one producer per queue).
pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

/// Consumer end (one consumer per queue).
pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why a push did not go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The consumer is gone; the item was dropped.
    Disconnected,
}

/// Makes a queue holding at most `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize, policy: QueuePolicy) -> (QueueSender<T>, QueueReceiver<T>, Arc<QueueCounters>) {
    let counters = Arc::new(QueueCounters::default());
    let shared = Arc::new(Shared {
        items: ArrayQueue::new(capacity.max(1)),
        policy,
        counters: counters.clone(),
        producer_gone: AtomicBool::new(false),
        consumer_gone: AtomicBool::new(false),
        producer: OnceLock::new(),
        consumer: OnceLock::new(),
    });
    (QueueSender { shared: shared.clone() }, QueueReceiver { shared }, counters)
}

impl<T> QueueSender<T> {
    /// Pushes `item`, applying the queue's overflow policy. A blocking push gives up when
    /// `keep_waiting` says so (shutdown); the item is then dropped and counted as drained.
    pub fn push(&self, item: T, keep_waiting: impl Fn() -> bool) -> Result<(), PushError> {
        let s = &*self.shared;
        if s.consumer_gone.load(Ordering::Acquire) {
            return Err(PushError::Disconnected);
        }
        match s.policy {
            QueuePolicy::DropOldest => {
                if let Some(oldest) = s.items.force_push(item) {
                    s.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    drop(oldest);
                }
            }
            QueuePolicy::Block => {
                let mut item = item;
                loop {
                    match s.items.push(item) {
                        Ok(()) => break,
                        Err(back) => item = back,
                    }
                    if s.consumer_gone.load(Ordering::Acquire) {
                        return Err(PushError::Disconnected);
                    }
                    if !keep_waiting() {
                        // Never entered the queue: counted as drained, not pushed.
                        s.counters.drained.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    s.producer.get_or_init(std::thread::current);
                    fence(Ordering::SeqCst);
                    if s.items.is_full() {
                        std::thread::park_timeout(PARK_TIMEOUT);
                    }
                }
            }
        }
        s.counters.pushed.fetch_add(1, Ordering::Relaxed);
        s.counters.max_depth.fetch_max(s.items.len(), Ordering::Relaxed);
        wake(&s.consumer);
        Ok(())
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        self.shared.producer_gone.store(true, Ordering::Release);
        wake(&self.shared.consumer);
    }
}

impl<T> QueueReceiver<T> {
    /// Waits for the next item; `None` once the producer is gone and the queue is empty.
    pub fn recv(&self) -> Option<T> {
        let s = &*self.shared;
        s.consumer.get_or_init(std::thread::current);
        loop {
            if let Some(item) = s.items.pop() {
                wake(&s.producer);
                return Some(item);
            }
            if s.producer_gone.load(Ordering::Acquire) {
                // The producer may have pushed just before leaving.
                return s.items.pop();
            }
            fence(Ordering::SeqCst);
            if s.items.is_empty() && !s.producer_gone.load(Ordering::Acquire) {
                std::thread::park_timeout(PARK_TIMEOUT);
            }
        }
    }

    /// Counts an item taken from this queue and thrown away unprocessed (safe-stop).
    pub fn count_drained(&self) {
        self.shared.counters.drained.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an item taken but discarded as stale.
    pub fn count_stale(&self) {
        self.shared.counters.stale.fetch_add(1, Ordering::Relaxed);
    }

    /// The queue's overflow policy (`DropOldest` marks a live edge).
    pub fn policy(&self) -> QueuePolicy {
        self.shared.policy
    }

    pub fn len(&self) -> usize {
        self.shared.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.items.is_empty()
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        self.shared.consumer_gone.store(true, Ordering::Release);
        wake(&self.shared.producer);
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
        for i in 3..2000 {
            tx.push(i, || true).unwrap();
        }
        drop(tx);
        let got = consumer.join().unwrap();
        assert_eq!(got.len(), 1998);
        assert_eq!(got[0], 1);
        assert!(got[1..].iter().copied().eq(3..2000));
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn push_to_a_gone_consumer_reports_it() {
        let (tx, rx, _) = bounded::<u32>(1, QueuePolicy::Block);
        drop(rx);
        assert_eq!(tx.push(1, || true), Err(PushError::Disconnected));
    }

    #[test]
    fn a_waiting_consumer_wakes_for_each_item_and_at_the_end() {
        let (tx, rx, _) = bounded::<u64>(2, QueuePolicy::Block);
        let consumer = std::thread::spawn(move || std::iter::from_fn(|| rx.recv()).sum::<u64>());
        for i in 0..10_000u64 {
            tx.push(i, || true).unwrap();
        }
        drop(tx);
        assert_eq!(consumer.join().unwrap(), (0..10_000u64).sum::<u64>());
    }
}
