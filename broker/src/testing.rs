//! Hooks for the broker's own integration tests: not part of its API.
//!
//! They reach what a test cannot reach over the wire, through the same paths the broker uses:
//! a leadership change is a metadata record the active controller writes to the metadata log,
//! exactly as it writes one when a broker fails.

use crate::Broker;

/// Makes `leader` (or nobody, for `None`) the leader of partition `index` of `topic`, with the
/// leader and partition epochs bumped, and waits until this broker has acted on it.
///
/// # Errors
/// A description when the partition does not exist or the change could not be written.
pub fn move_leadership(broker: &Broker, topic: &str, index: i32, leader: Option<i32>) -> Result<(), String> {
    let metadata = &broker.shared.metadata;
    sluice_engine::block_on(metadata.move_leadership(topic, index, leader)).map_err(|refusal| refusal.message)
}
