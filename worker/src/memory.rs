//! What a worker remembers between deliveries, bounded: the executions it runs
//! or recently ran (to answer a redelivered copy without running it again)
//! and the keys cancelled while it ran (so their messages never start).
//!
//! Both forget their oldest entries past a capacity, so a worker that runs for
//! months holds a constant amount; forgetting only costs a rerun that the
//! store's start record would skip anyway.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// What a task execution is known by: key, epoch, attempt. A retry or a run
/// after a restart is a different execution of the same key.
pub type RunId = (String, u64, u32);

/// Executions by id, each with a handle on its result; the finished ones are
/// forgotten oldest first past `capacity`.
#[derive(Debug)]
pub struct Runs<V> {
    entries: HashMap<RunId, V>,
    finished: VecDeque<RunId>,
    capacity: usize,
}

impl<V: Clone> Runs<V> {
    /// Remembers at most `capacity` finished executions.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            finished: VecDeque::new(),
            capacity,
        }
    }

    /// The execution `id`'s handle, if this worker has it.
    pub fn get(&self, id: &RunId) -> Option<V> {
        self.entries.get(id).cloned()
    }

    /// A new execution, running.
    pub fn insert(&mut self, id: RunId, handle: V) {
        self.entries.insert(id, handle);
    }

    /// An execution that never ran: forgotten now, so a copy of its message
    /// waiting on it starts on its own.
    pub fn remove(&mut self, id: &RunId) {
        self.entries.remove(id);
    }

    /// An execution that finished: kept until `capacity` newer ones finish.
    pub fn finished(&mut self, id: RunId) {
        self.finished.push_back(id);
        while self.finished.len() > self.capacity {
            if let Some(old) = self.finished.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    /// Executions remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A set that forgets its oldest members past a capacity.
#[derive(Debug)]
pub struct BoundedSet<T> {
    members: HashSet<T>,
    order: VecDeque<T>,
    capacity: usize,
}

impl<T: Eq + Hash + Clone> BoundedSet<T> {
    /// A set of at most `capacity` members.
    pub fn new(capacity: usize) -> Self {
        Self {
            members: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Adds `item` (a member already is not added twice).
    pub fn insert(&mut self, item: T) {
        if self.members.insert(item.clone()) {
            self.order.push_back(item);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.members.remove(&old);
            }
        }
    }

    /// Whether `item` is a member.
    pub fn contains<Q>(&self, item: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.members.contains(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(k: &str) -> RunId {
        (k.to_string(), 0, 0)
    }

    #[test]
    fn finished_runs_are_forgotten_oldest_first_and_running_ones_kept() {
        let mut runs = Runs::new(2);
        for k in ["running", "a", "b", "c"] {
            runs.insert(id(k), k);
        }
        for k in ["a", "b", "c"] {
            runs.finished(id(k));
        }
        assert_eq!(runs.get(&id("a")), None);
        assert_eq!(runs.get(&id("b")), Some("b"));
        assert_eq!(runs.get(&id("c")), Some("c"));
        assert_eq!(runs.get(&id("running")), Some("running"));
        runs.remove(&id("running"));
        assert_eq!(runs.len(), 2);
    }

    #[test]
    fn a_retry_is_a_different_execution_of_the_same_key() {
        let mut runs = Runs::new(10);
        runs.insert(("k".into(), 0, 0), 1);
        assert_eq!(runs.get(&("k".into(), 0, 1)), None);
        assert_eq!(runs.get(&("k".into(), 1, 0)), None);
    }

    #[test]
    fn a_bounded_set_forgets_its_oldest_members() {
        let mut s = BoundedSet::new(2);
        s.insert("a");
        s.insert("a");
        s.insert("b");
        assert!(s.contains(&"a"));
        s.insert("c");
        assert!(!s.contains(&"a"));
        assert!(s.contains(&"b") && s.contains(&"c"));
    }
}
