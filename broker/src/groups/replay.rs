//! Rebuilding groups from an offsets partition's log: classic groups and their committed offsets
//! (`records.rs`) and consumer groups (`consumer/codec.rs`), applied in log order as the
//! coordinator loads a partition, or as it rebuilds one consumer group after a failed write.
//!
//! Rules, per key, as compaction would leave the log: the last record wins and a tombstone
//! deletes. A classic group's metadata tombstone deletes its membership but not its committed
//! offsets, which have tombstones of their own (a classic group that became a consumer group
//! keeps its offsets). An offset record creates the group entry holding it. A consumer group is
//! created at its first record, replayed record by record, and dropped if its last records
//! delete it. A record that does not decode, or that a consumer group refuses (a log no
//! coordinator writes), is skipped with a warning.
//!
//! Touched only by the coordinator's shard thread, while it loads.

use std::collections::BTreeMap;

use super::consumer::{ConsumerGroup, ConsumerGroupConfig, codec};
use super::group::{Group, GroupState, Now};
use super::records::{self, RecordKey};
use super::storage::Loaded;

/// Groups read so far.
pub(super) struct Replay {
    now: Now,
    /// When set, only this group's records are applied.
    only: Option<String>,
    classic: BTreeMap<String, Group>,
    consumer: BTreeMap<String, ConsumerGroup>,
}

impl Replay {
    /// Nothing read yet; `only` restricts it to one group id.
    pub(super) fn new(now: Now, only: Option<String>) -> Self {
        Self { now, only, classic: BTreeMap::new(), consumer: BTreeMap::new() }
    }

    /// Applies one record or transaction marker of the log.
    pub(super) fn apply(&mut self, loaded: Loaded<'_>) {
        match loaded {
            Loaded::Record { key, value, producer } => self.record(key, value, producer),
            Loaded::Marker { producer_id, commit } => {
                for group in self.classic.values_mut() {
                    group.complete_txn(producer_id, commit);
                }
            }
        }
    }

    fn wanted(&self, group_id: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == group_id)
    }

    fn record(&mut self, key: &[u8], value: Option<&[u8]>, producer: Option<i64>) {
        match codec::decode(key, value) {
            Ok(Some(record)) => {
                let group_id = record.group_id().to_owned();
                if !self.wanted(&group_id) {
                    return;
                }
                let group = self.consumer.entry(group_id.clone()).or_insert_with(|| ConsumerGroup::new(&group_id));
                if let Err(error) = group.replay(&record) {
                    tracing::warn!(group = %group_id, %error, "skipping a consumer group record that does not apply");
                }
            }
            Ok(None) => self.classic_record(key, value, producer),
            Err(error) => tracing::warn!(%error, "skipping an unreadable consumer group record"),
        }
    }

    fn classic_record(&mut self, key: &[u8], value: Option<&[u8]>, producer: Option<i64>) {
        let decoded = records::decode_key(key);
        let Ok(key) = decoded else {
            tracing::warn!(error = ?decoded.err(), "skipping an unreadable offsets record key");
            return;
        };
        let group_id = match &key {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group.clone(),
        };
        if self.wanted(&group_id) {
            apply_classic(&mut self.classic, self.now, key, value, producer);
        }
    }

    /// The groups read: consumer groups that exist, with their timers started (Kafka's
    /// `onLoaded`), and classic groups (a classic entry of a consumer group's id holds only its
    /// offsets).
    pub(super) fn finish(
        mut self,
        now_ms: i64,
        config: impl Fn(&str) -> ConsumerGroupConfig,
    ) -> (BTreeMap<String, Group>, BTreeMap<String, ConsumerGroup>) {
        self.consumer.retain(|_, group| !group.is_deleted());
        for (group_id, group) in &mut self.consumer {
            group.on_loaded(now_ms, &config(group_id));
            if let Some(classic) = self.classic.get_mut(group_id)
                && (classic.protocol_type.is_some() || classic.has_members())
            {
                // Both kinds exist only if a classic group's tombstone is missing; the consumer
                // group, written later, wins.
                tracing::warn!(group = %group_id, "a consumer group's id also has classic metadata; keeping the consumer group");
                let mut holder = Group::new(group_id, self.now);
                holder.offsets = std::mem::take(&mut classic.offsets);
                holder.pending_txn_offsets = std::mem::take(&mut classic.pending_txn_offsets);
                *classic = holder;
            }
        }
        self.classic.retain(|_, group| group.state != GroupState::Dead);
        (self.classic, self.consumer)
    }
}

/// Applies one classic record (see the module docs).
pub(super) fn apply_classic(
    groups: &mut BTreeMap<String, Group>,
    now: Now,
    key: RecordKey,
    value: Option<&[u8]>,
    producer: Option<i64>,
) {
    match (key, value) {
        (RecordKey::Offset { group, topic, partition }, Some(value)) => match records::decode_offset_value(value) {
            Ok(offset) => {
                let entry = groups.entry(group.clone()).or_insert_with(|| Group::new(&group, now));
                match producer {
                    // A transaction's offset counts once its commit marker is read.
                    Some(producer_id) => {
                        entry.pending_txn_offsets.entry(producer_id).or_default().insert((topic, partition), offset);
                    }
                    None => {
                        entry.offsets.insert((topic, partition), offset);
                    }
                }
            }
            Err(error) => tracing::warn!(%group, %error, "skipping an unreadable committed offset"),
        },
        (RecordKey::Offset { group, topic, partition }, None) => {
            if let Some(entry) = groups.get_mut(&group) {
                entry.offsets.remove(&(topic, partition));
            }
        }
        (RecordKey::Group { group }, Some(value)) => match records::decode_group_value(value) {
            Ok(stored) => {
                let entry = groups.entry(group.clone()).or_insert_with(|| Group::new(&group, now));
                entry.restore(stored, now);
            }
            Err(error) => tracing::warn!(%group, %error, "skipping unreadable group metadata"),
        },
        (RecordKey::Group { group }, None) => {
            let Some(entry) = groups.remove(&group) else { return };
            if !entry.offsets.is_empty() || !entry.pending_txn_offsets.is_empty() {
                let mut holder = Group::new(&group, now);
                holder.offsets = entry.offsets;
                holder.pending_txn_offsets = entry.pending_txn_offsets;
                groups.insert(group, holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::group::CommittedOffset;

    fn now() -> Now {
        Now { monotonic_ms: 0, unix_ms: 1 }
    }

    fn offset_value(offset: i64) -> Vec<u8> {
        records::encode_offset_value(&CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
            expire_timestamp_ms: None,
        })
    }

    fn offset_key(group: &str) -> Vec<u8> {
        records::encode_key(&RecordKey::Offset { group: group.to_owned(), topic: "t".to_owned(), partition: 0 })
    }

    fn record(replay: &mut Replay, key: &[u8], value: Option<&[u8]>) {
        replay.apply(Loaded::Record { key, value, producer: None });
    }

    #[test]
    fn loading_keeps_the_last_record_per_key_and_honours_tombstones() {
        let mut replay = Replay::new(now(), None);
        let key = offset_key("g");
        record(&mut replay, &key, Some(&offset_value(5)));
        record(&mut replay, &key, Some(&offset_value(9)));
        assert_eq!(replay.classic["g"].offsets[&("t".to_owned(), 0)].offset, 9);
        record(&mut replay, &key, None);
        assert!(replay.classic["g"].offsets.is_empty());
        record(&mut replay, &records::encode_key(&RecordKey::Group { group: "g".to_owned() }), None);
        assert!(replay.classic.is_empty());
    }

    #[test]
    fn a_classic_group_tombstone_keeps_the_groups_offsets() {
        let mut replay = Replay::new(now(), None);
        record(&mut replay, &offset_key("g"), Some(&offset_value(5)));
        record(&mut replay, &records::encode_key(&RecordKey::Group { group: "g".to_owned() }), None);
        assert_eq!(replay.classic["g"].offsets[&("t".to_owned(), 0)].offset, 5);
        assert!(replay.classic["g"].protocol_type.is_none());
    }

    #[test]
    fn consumer_group_records_rebuild_the_group_and_its_deletion_drops_it() {
        use crate::groups::consumer::ConsumerGroupRecord;
        let config = ConsumerGroupConfig::default();
        let mut replay = Replay::new(now(), None);
        let (key, value) = codec::encode(&ConsumerGroupRecord::epoch("c", 3, 0));
        record(&mut replay, &key, value.as_deref());
        let (key, value) = codec::encode(&ConsumerGroupRecord::target_assignment_epoch("c", Some(3)));
        record(&mut replay, &key, value.as_deref());
        record(&mut replay, &offset_key("c"), Some(&offset_value(7)));
        let (classic, consumer) = replay.finish(0, |_| config.clone());
        assert_eq!(consumer["c"].group_epoch(), 3);
        assert_eq!(classic["c"].offsets.len(), 1, "the consumer group's offsets are held by its classic entry");

        let mut replay = Replay::new(now(), None);
        let group = &consumer["c"];
        let mut deleting = vec![ConsumerGroupRecord::epoch("c", 3, 0)];
        deleting.extend(group.delete_records());
        for record_of_log in &deleting {
            let (key, value) = codec::encode(record_of_log);
            record(&mut replay, &key, value.as_deref());
        }
        let (_, consumer) = replay.finish(0, |_| config.clone());
        assert!(consumer.is_empty());
    }

    #[test]
    fn an_upgrade_then_a_downgrade_replay_to_the_group_of_each_kind() {
        use bytes::BufMut;
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::{Encodable, StrBytes};

        use crate::groups::consumer::{
            ClassicGroupMember, ClassicGroupSnapshot, ClassicProtocol, ConsumerGroupMember, Context, TopicMetadata,
            TopicsImage,
        };

        let config = ConsumerGroupConfig::default();
        let topics = TopicsImage::new(
            1,
            [TopicMetadata { id: uuid::Uuid::from_u128(1), name: "t".to_owned(), partition_count: 2 }],
        );
        let mut metadata = bytes::BytesMut::new();
        metadata.put_i16(0);
        let subscription = ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("t")]);
        subscription.encode(&mut metadata, 0).expect("encodes");
        let classic = ClassicGroupSnapshot {
            generation_id: 3,
            protocol_name: Some("range".to_owned()),
            members: vec![ClassicGroupMember {
                member_id: "c1".to_owned(),
                instance_id: None,
                client_id: "client".to_owned(),
                client_host: "/127.0.0.1".to_owned(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 20_000,
                protocols: vec![ClassicProtocol { name: "range".to_owned(), metadata: metadata.freeze() }],
                assignment: bytes::Bytes::new(),
            }],
        };
        let context = Context { now_ms: 0, unix_ms: 1, topics: &topics, config: &config };
        let (upgraded, conversion) = ConsumerGroup::from_classic("m", &classic, &context).expect("upgradable");
        let group_key = records::encode_key(&RecordKey::Group { group: "m".to_owned() });

        // The upgrade: the classic group's tombstone, then the consumer group's records.
        let mut replay = Replay::new(now(), None);
        record(&mut replay, &offset_key("m"), Some(&offset_value(5)));
        record(&mut replay, &group_key, None);
        for converted in &conversion {
            let (key, value) = codec::encode(converted);
            record(&mut replay, &key, value.as_deref());
        }
        let (classic_groups, consumer) = replay.finish(100, |_| config.clone());
        assert_eq!(consumer["m"].data(), upgraded.data());
        assert!(consumer["m"].member("c1").is_some_and(ConsumerGroupMember::uses_classic_protocol));
        assert_eq!(consumer["m"].next_deadline_ms(), Some(10_100), "a classic member's own session timeout");
        assert!(classic_groups["m"].protocol_type.is_none(), "only the offsets holder stays classic");
        assert_eq!(classic_groups["m"].offsets.len(), 1);

        // The downgrade: the consumer group's tombstones, then the classic group's metadata.
        let (back, tombstones) = upgraded.downgrade("nobody", &topics);
        assert_eq!(back.members.len(), 1);
        let mut replay = Replay::new(now(), None);
        for written in conversion.iter().chain(&tombstones) {
            let (key, value) = codec::encode(written);
            record(&mut replay, &key, value.as_deref());
        }
        let mut restored = Group::new("m", now());
        restored.protocol_type = Some("consumer".to_owned());
        restored.protocol_name = Some("range".to_owned());
        restored.generation_id = back.generation_id;
        restored.state = GroupState::Stable;
        record(&mut replay, &group_key, Some(&records::encode_group_value(&restored.to_value())));
        let (classic_groups, consumer) = replay.finish(100, |_| config.clone());
        assert!(consumer.is_empty(), "the consumer group is deleted");
        assert_eq!(classic_groups["m"].generation_id, 3);
    }

    #[test]
    fn a_rebuild_applies_only_its_groups_records() {
        let mut replay = Replay::new(now(), Some("g".to_owned()));
        record(&mut replay, &offset_key("g"), Some(&offset_value(5)));
        record(&mut replay, &offset_key("other"), Some(&offset_value(6)));
        let (classic, _) = replay.finish(0, |_| ConsumerGroupConfig::default());
        assert_eq!(classic.keys().collect::<Vec<_>>(), vec!["g"]);
    }
}
