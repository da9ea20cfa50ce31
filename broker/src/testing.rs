//! Hooks for the broker's own integration tests: not part of its API.
//!
//! They reach what a test cannot reach over the wire, through the same paths the broker uses:
//! a leadership change is a metadata record committed by the metadata writer, exactly as the
//! controller will commit one when a broker fails.

use crate::Broker;
use crate::metadata::NO_LEADER;
use crate::metadata::records::{MetadataRecord, PartitionRecord};

/// Makes `leader` (or nobody, for `None`) the leader of partition `index` of `topic`, with the
/// leader and partition epochs bumped, and waits until this broker has acted on it.
///
/// # Errors
/// A description when the partition does not exist or the change could not be stored.
pub fn move_leadership(broker: &Broker, topic: &str, index: i32, leader: Option<i32>) -> Result<(), String> {
    let metadata = &broker.shared.metadata;
    let decided = metadata.update(|image| {
        let Some(found) = image.topic(topic) else { return (Vec::new(), Err(format!("no topic {topic}"))) };
        let Some(current) = found.partition(index) else { return (Vec::new(), Err(format!("no partition {index}"))) };
        let mut state = current.clone();
        state.leader = leader.unwrap_or(NO_LEADER);
        state.leader_epoch += 1;
        state.partition_epoch += 1;
        let record = MetadataRecord::ChangePartition(PartitionRecord { topic_id: found.id, partition: index, state });
        (vec![record], Ok(()))
    });
    sluice_engine::block_on(decided).map_err(|error| error.to_string())?
}
