//! Typed handles that stages share with each other or hand to the caller, keyed by type.
//!
//! A stage kind's builder asks for the handle it publishes to or reads from (a latest-value slot,
//! a snapshot slot) by its type; the first ask makes it, later asks get clones of the same one.
//! The caller finds the same handles in the built pipeline. So two stages meet through a type
//! defined in a neutral module, and neither the runtime nor the build code names either stage.

use std::any::{Any, TypeId};
use std::collections::HashMap;

/// A handle that can be shared: cheap to clone, every clone the same underlying slot.
pub trait SharedHandle: Any + Clone + Default + Send + Sync {}
impl<T: Any + Clone + Default + Send + Sync> SharedHandle for T {}

#[derive(Default)]
pub struct Outputs {
    handles: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Outputs {
    /// The handle of type `T`, made on first use.
    pub fn shared<T: SharedHandle>(&mut self) -> T {
        let entry = self.handles.entry(TypeId::of::<T>()).or_insert_with(|| Box::new(T::default()));
        entry.downcast_ref::<T>().expect("the entry of a TypeId holds that type").clone()
    }

    /// The handle of type `T` if a stage asked for it.
    pub fn get<T: SharedHandle>(&self) -> Option<T> {
        self.handles.get(&TypeId::of::<T>()).and_then(|h| h.downcast_ref::<T>()).cloned()
    }
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outputs({} handles)", self.handles.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Slot(Arc<Mutex<u32>>);

    #[test]
    fn every_ask_gets_the_same_handle() {
        let mut outputs = Outputs::default();
        assert!(outputs.get::<Slot>().is_none());
        let a = outputs.shared::<Slot>();
        *a.0.lock().unwrap() = 7;
        assert_eq!(*outputs.shared::<Slot>().0.lock().unwrap(), 7);
        assert_eq!(*outputs.get::<Slot>().unwrap().0.lock().unwrap(), 7);
    }
}
