//! Per-frame data that belongs to one stage (the segment stage's logits and prompt, say) rides on
//! the frame as a typed attachment, so `Frame` does not grow a field for every stage and no
//! stage's types leak into this module.
//!
//! An attachment lives in a box made once by its stage's [`AttachmentPool`]: attaching never
//! allocates, and dropping the frame (or replacing the attachment) gives the box back. Readers
//! ask for the type they know: `frame.attachments.get::<Segmentation>()`.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use super::{Pool, Pooled};

/// How many kinds of stage data one frame can carry at once.
pub const MAX_ATTACHMENTS: usize = 4;

type Erased = Box<dyn Any + Send>;

/// A fixed set of boxes holding values of type `T`, made at start-up by the stage that owns `T`.
pub struct AttachmentPool<T> {
    pool: Pool<Erased>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for AttachmentPool<T> {
    fn clone(&self) -> Self {
        AttachmentPool { pool: self.pool.clone(), _type: PhantomData }
    }
}

impl<T: Any + Send> AttachmentPool<T> {
    /// `buffers` values made by `make`, now and never again.
    pub fn new(buffers: usize, mut make: impl FnMut() -> T) -> Self {
        AttachmentPool { pool: Pool::new(buffers, || Box::new(make()) as Erased), _type: PhantomData }
    }

    /// A free value (holding whatever its last frame left in it), or `None` when every one is in
    /// flight.
    pub fn try_acquire(&self) -> Option<Attachment<T>> {
        self.pool.try_acquire().map(|pooled| Attachment { pooled, _type: PhantomData })
    }

    /// Values currently free.
    pub fn available(&self) -> usize {
        self.pool.available()
    }
}

/// A value of type `T` on loan from an [`AttachmentPool`].
pub struct Attachment<T> {
    pooled: Pooled<Erased>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Any> Deref for Attachment<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.pooled.data().downcast_ref().expect("an attachment pool makes values of its own type only")
    }
}

impl<T: Any> DerefMut for Attachment<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.pooled.data_mut().downcast_mut().expect("an attachment pool makes values of its own type only")
    }
}

/// The attachments one frame carries, at most one per type.
#[derive(Default)]
pub struct Attachments {
    slots: [Option<Pooled<Erased>>; MAX_ATTACHMENTS],
}

/// Every attachment slot of a frame is taken by other types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a frame carries at most {MAX_ATTACHMENTS} kinds of stage data")]
pub struct TooManyAttachments;

impl Attachments {
    /// The attached value of type `T`, if any.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.slots.iter().flatten().find_map(|s| s.data().downcast_ref())
    }

    pub fn get_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.slots.iter_mut().flatten().find_map(|s| s.data_mut().downcast_mut())
    }

    /// Attaches `value`, replacing (and returning to its pool) an earlier value of the same type.
    pub fn insert<T: Any>(&mut self, value: Attachment<T>) -> Result<(), TooManyAttachments> {
        let same = self.slots.iter().position(|s| s.as_ref().is_some_and(|s| s.data().is::<T>()));
        let slot = same.or_else(|| self.slots.iter().position(Option::is_none)).ok_or(TooManyAttachments)?;
        self.slots[slot] = Some(value.pooled);
        Ok(())
    }

    /// Detaches the value of type `T` (dropping it returns it to its pool).
    pub fn remove<T: Any>(&mut self) -> Option<Attachment<T>> {
        let slot = self.slots.iter_mut().find(|s| s.as_ref().is_some_and(|s| s.data().is::<T>()))?;
        slot.take().map(|pooled| Attachment { pooled, _type: PhantomData })
    }

    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Attachments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Attachments({})", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Logits(Vec<f32>);
    #[derive(Debug, PartialEq)]
    struct Score(f32);

    #[test]
    fn values_are_found_by_type_and_return_to_their_pool() {
        let logits = AttachmentPool::new(2, || Logits(vec![0.0; 4]));
        let scores = AttachmentPool::new(1, || Score(0.0));
        let mut a = Attachments::default();
        assert!(a.get::<Logits>().is_none());
        let mut l = logits.try_acquire().unwrap();
        l.0[1] = 2.5;
        a.insert(l).unwrap();
        let mut s = scores.try_acquire().unwrap();
        s.0 = 0.75;
        a.insert(s).unwrap();
        assert_eq!(a.get::<Logits>(), Some(&Logits(vec![0.0, 2.5, 0.0, 0.0])));
        assert_eq!(a.get::<Score>(), Some(&Score(0.75)));
        a.get_mut::<Score>().unwrap().0 = 0.5;
        assert_eq!(a.get::<Score>(), Some(&Score(0.5)));
        assert_eq!((logits.available(), scores.available()), (1, 0));
        drop(a);
        assert_eq!((logits.available(), scores.available()), (2, 1));
    }

    #[test]
    fn a_second_value_of_a_type_replaces_the_first() {
        let pool = AttachmentPool::new(2, || Score(0.0));
        let mut a = Attachments::default();
        a.insert(pool.try_acquire().unwrap()).unwrap();
        let mut second = pool.try_acquire().unwrap();
        second.0 = 1.0;
        a.insert(second).unwrap();
        assert_eq!((a.len(), a.get::<Score>(), pool.available()), (1, Some(&Score(1.0)), 1));
        let removed = a.remove::<Score>().unwrap();
        assert_eq!((removed.0, a.len()), (1.0, 0));
        drop(removed);
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn full_slots_refuse_a_new_type() {
        macro_rules! kinds { ($($t:ident),*) => { $( struct $t; )* } }
        kinds!(A, B, C, D, E);
        let mut a = Attachments::default();
        a.insert(AttachmentPool::new(1, || A).try_acquire().unwrap()).unwrap();
        a.insert(AttachmentPool::new(1, || B).try_acquire().unwrap()).unwrap();
        a.insert(AttachmentPool::new(1, || C).try_acquire().unwrap()).unwrap();
        a.insert(AttachmentPool::new(1, || D).try_acquire().unwrap()).unwrap();
        assert_eq!(a.insert(AttachmentPool::new(1, || E).try_acquire().unwrap()), Err(TooManyAttachments));
        assert_eq!(a.len(), MAX_ATTACHMENTS);
    }
}
