//! A one-value hand-over between threads where the newest value wins: a producer `put`s whenever
//! it has something new (replacing an unread value), a consumer `take`s when it is ready. Lock-free
//! and allocation-free (a one-slot `ArrayQueue`), so either side may sit on a hot path.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

pub struct Latest<T>(Arc<ArrayQueue<T>>);

impl<T> Clone for Latest<T> {
    fn clone(&self) -> Self {
        Latest(self.0.clone())
    }
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest(Arc::new(ArrayQueue::new(1)))
    }
}

impl<T> Latest<T> {
    /// Leaves `value` for the consumer, replacing (and dropping) one it has not taken yet.
    pub fn put(&self, value: T) {
        self.0.force_push(value);
    }

    /// The newest value, if one arrived since the last take.
    pub fn take(&self) -> Option<T> {
        self.0.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_value_wins_and_is_taken_once() {
        let slot = Latest::default();
        assert_eq!(slot.take(), None);
        slot.put(1);
        slot.clone().put(2);
        assert_eq!(slot.take(), Some(2));
        assert_eq!(slot.take(), None);
    }
}
