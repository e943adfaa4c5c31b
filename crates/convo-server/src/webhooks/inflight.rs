//! At most 4 deliveries per endpoint in flight at once (CONTRACT §8), across every worker task
//! of a process: a slow receiver holds its own slots, never the others'. A slot is given back
//! when dropped, however the attempt ended (a panic or a cancelled task included).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The contract's limit per endpoint.
pub const PER_ENDPOINT: usize = 4;

pub struct InFlight {
    limit: usize,
    counts: Mutex<HashMap<i64, usize>>,
}

/// One delivery's place among its endpoint's in-flight ones.
pub struct Slot {
    owner: Arc<InFlight>,
    endpoint: i64,
}

impl InFlight {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a delivery to `endpoint`, or `None` when it already has `limit` in flight.
    pub fn try_start(self: &Arc<Self>, endpoint: i64) -> Option<Slot> {
        // A panic while holding the lock left the counts whole (each change is one step).
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(endpoint).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: Arc::clone(self),
            endpoint,
        })
    }

    /// How many deliveries to `endpoint` are in flight.
    pub fn in_flight(&self, endpoint: i64) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&endpoint).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .owner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.endpoint) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.endpoint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_per_endpoint_and_each_endpoint_on_its_own() {
        let inflight = InFlight::new(PER_ENDPOINT);
        let mut slots: Vec<Slot> = (0..4).filter_map(|_| inflight.try_start(1)).collect();
        assert_eq!(slots.len(), 4);
        assert!(inflight.try_start(1).is_none(), "a fifth to one endpoint");
        let other = inflight.try_start(2);
        assert!(other.is_some(), "another endpoint is not held up");
        drop(slots.pop());
        assert_eq!(inflight.in_flight(1), 3);
        assert!(inflight.try_start(1).is_some());
    }

    #[test]
    fn a_slot_comes_back_when_its_task_is_cancelled_or_panics() {
        let inflight = InFlight::new(1);
        let held = Arc::clone(&inflight);
        let joined = std::thread::spawn(move || {
            let _slot = held.try_start(9).expect("free");
            panic!("the attempt panicked");
        })
        .join();
        assert!(joined.is_err());
        assert_eq!(inflight.in_flight(9), 0);
        assert!(inflight.try_start(9).is_some());
        assert!(inflight.counts.lock().expect("lock").len() <= 1);
    }
}
