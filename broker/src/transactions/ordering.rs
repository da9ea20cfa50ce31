//! Keeps a transactional producer's pipelined batches to one partition in the order it sent
//! them, across KIP-890 verification.
//!
//! The first batch of a transaction on a partition is refused by the log until the coordinator
//! confirms the partition is in the transaction; the producer's next requests (up to five in
//! flight) reach the log meanwhile, and would be refused as out of sequence, or be written
//! first. Kafka cannot see this: it reads one request per connection at a time. Here, each
//! transactional append to a partition takes a ticket, in request order (before its first
//! await: handlers start in request order), and holds it until its append finished. An append
//! refused as not in a transaction or out of sequence while an earlier ticket of the same
//! producer and partition is still held waits until those are done, then tries again.
//!
//! Touched only by its shard's thread.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use event_listener::Event;
use sluice_engine::TopicPartition;

#[derive(Debug, Default)]
struct Tickets {
    next: u64,
    held: BTreeSet<u64>,
    released: Rc<Event>,
}

/// The tickets of every (partition, producer id) with a transactional append in flight.
#[derive(Debug, Default)]
pub(crate) struct AppendOrder {
    keys: RefCell<HashMap<(TopicPartition, i64), Tickets>>,
}

/// A held ticket; released when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    order: Rc<AppendOrder>,
    key: (TopicPartition, i64),
    number: u64,
}

impl AppendOrder {
    /// Takes the next ticket of `producer_id` on `partition`.
    pub(crate) fn take(self: &Rc<Self>, partition: &TopicPartition, producer_id: i64) -> Ticket {
        let key = (partition.clone(), producer_id);
        let mut keys = self.keys.borrow_mut();
        let tickets = keys.entry(key.clone()).or_default();
        let number = tickets.next;
        tickets.next += 1;
        tickets.held.insert(number);
        Ticket { order: self.clone(), key, number }
    }
}

impl Ticket {
    /// Whether an earlier ticket of the same producer and partition is still held.
    pub(crate) fn behind_others(&self) -> bool {
        let keys = self.order.keys.borrow();
        keys.get(&self.key).is_some_and(|tickets| tickets.held.first().is_some_and(|first| *first < self.number))
    }

    /// Waits until no earlier ticket is held.
    pub(crate) async fn wait_for_earlier(&self) {
        loop {
            let released = {
                let keys = self.order.keys.borrow();
                let Some(tickets) = keys.get(&self.key) else { return };
                tickets.released.clone()
            };
            let listener = released.listen();
            if !self.behind_others() {
                return;
            }
            listener.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut keys = self.order.keys.borrow_mut();
        if let Some(tickets) = keys.get_mut(&self.key) {
            tickets.held.remove(&self.number);
            tickets.released.notify(usize::MAX);
            if tickets.held.is_empty() {
                keys.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_behind_only_earlier_held_tickets_of_its_key() {
        let order = Rc::new(AppendOrder::default());
        let partition = TopicPartition::new("t", 0);
        let first = order.take(&partition, 7);
        let second = order.take(&partition, 7);
        let other = order.take(&partition, 8);
        assert!(!first.behind_others());
        assert!(second.behind_others());
        assert!(!other.behind_others());
        drop(first);
        assert!(!second.behind_others());
        drop(second);
        drop(other);
        assert!(order.keys.borrow().is_empty());
    }
}
