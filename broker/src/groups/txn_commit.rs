//! Offsets committed inside a transaction (TxnOffsetCommit): written to the group's offsets
//! partition in a batch of the producer's transaction, held as pending until the producer's
//! commit or abort marker reaches that partition, as Kafka's group coordinator does.
//!
//! Touched only by the coordinator's shard thread.

use kafka_protocol::ResponseError;

use super::coordinator::{CommitEntry, Coordinator};
use super::group::Group;
use super::membership::MemberRef;
use super::storage::TxnProducer;

/// Who commits in a transaction: the producer, and the consumer's group metadata.
#[derive(Debug, Clone)]
pub(crate) struct TxnCommitArgs {
    pub(crate) producer: TxnProducer,
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    /// The consumer's generation (a consumer group member's epoch), or -1 when the client sent
    /// none (older requests).
    pub(crate) generation_id: i32,
    /// The request's version.
    pub(crate) api_version: i16,
}

impl Coordinator {
    /// TxnOffsetCommit: checks the member (when the request names a generation), writes the
    /// offsets in the producer's transaction, and holds them as pending. One result per entry.
    pub(crate) async fn txn_commit(
        &self,
        group_id: &str,
        args: &TxnCommitArgs,
        entries: &[CommitEntry],
    ) -> Vec<Result<(), ResponseError>> {
        let all = |error: ResponseError| entries.iter().map(|_| Err(error)).collect();
        if let Err(error) = self.check_group(group_id) {
            return all(error);
        }
        let now = self.now();
        // A member of a consumer group sends its member epoch as the generation; a stale one is
        // answered ILLEGAL_GENERATION, as Kafka does for transactional commits.
        let consumer = if args.generation_id < 0 {
            None
        } else {
            self.check_consumer_commit(group_id, &args.member_id, args.generation_id, true, args.api_version)
        };
        let checked = {
            let mut groups = self.groups.borrow_mut();
            let group = groups.entry(group_id.to_owned()).or_insert_with(|| Group::new(group_id, now));
            if let Some(checked) = consumer {
                checked.map_err(|error| match error {
                    ResponseError::StaleMemberEpoch => ResponseError::IllegalGeneration,
                    other => other,
                })
            } else if args.generation_id < 0 {
                Ok(())
            } else {
                let member =
                    MemberRef { member_id: &args.member_id, group_instance_id: args.group_instance_id.as_deref() };
                group.check_commit(now, member, args.generation_id)
            }
        };
        if let Err(error) = checked {
            return all(error);
        }
        let mut results: Vec<Result<(), ResponseError>> = entries.iter().map(|entry| self.check_entry(entry)).collect();
        let mut stored = Vec::new();
        let mut written = Vec::new();
        for (entry, _) in entries.iter().zip(&results).filter(|(_, result)| result.is_ok()) {
            let (record, offset) = super::coordinator::offset_record(group_id, entry, now.unix_ms, None);
            written.push(record);
            stored.push(offset);
        }
        let outcome = self.writes.write_as(self.group_partition(group_id), written, Some(args.producer)).await;
        match outcome {
            Ok(()) => {
                if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
                    group.pending_txn_offsets.entry(args.producer.producer_id).or_default().extend(stored);
                }
            }
            Err(error) => results.iter_mut().filter(|result| result.is_ok()).for_each(|result| *result = Err(error)),
        }
        results
    }

    /// The partitions of `group_id` whose offset an open transaction holds.
    pub(crate) fn unstable_offsets(&self, group_id: &str) -> std::collections::BTreeSet<(String, i32)> {
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else { return std::collections::BTreeSet::new() };
        group.pending_txn_offsets.values().flat_map(|offsets| offsets.keys().cloned()).collect()
    }

    /// A producer's transaction ended on offsets partition `index` (its marker is written
    /// there): its pending offsets in that partition's groups become committed, or are dropped.
    pub(crate) fn complete_txn(&self, index: i32, producer_id: i64, commit: bool) {
        let count = self.offsets_partition_count();
        let mut groups = self.groups.borrow_mut();
        for (id, group) in groups.iter_mut() {
            if Self::partition_of(id, count) == index {
                group.complete_txn(producer_id, commit);
            }
        }
        drop(groups);
        self.wake.notify(1);
    }
}
