//! The logical records of consumer groups in `__consumer_offsets`, mirroring Kafka 4.x's
//! `ConsumerGroup*Key.json` / `ConsumerGroup*Value.json` schemas field for field (names in
//! snake case). The binary codec lives elsewhere; these are the structs it reads and writes.
//!
//! Each record is a key and a value; a missing value is a tombstone (the key's state was
//! deleted). A key is written as an `i16` *record type* (Kafka calls it the key version; the
//! key JSON's only `validVersions`) followed by its fields in the non-flexible encoding. A value
//! is written as an `i16` value version (0 for all of these) followed by its fields in the
//! flexible encoding (compact strings and arrays, tagged fields):
//!
//! | record type | key                                       | value                                       |
//! |-------------|-------------------------------------------|---------------------------------------------|
//! | 3           | `ConsumerGroupMetadataKey`                | `ConsumerGroupMetadataValue` v0             |
//! | 4           | `ConsumerGroupPartitionMetadataKey`       | `ConsumerGroupPartitionMetadataValue` v0    |
//! | 5           | `ConsumerGroupMemberMetadataKey`          | `ConsumerGroupMemberMetadataValue` v0       |
//! | 6           | `ConsumerGroupTargetAssignmentMetadataKey`| `ConsumerGroupTargetAssignmentMetadataValue` v0 |
//! | 7           | `ConsumerGroupTargetAssignmentMemberKey`  | `ConsumerGroupTargetAssignmentMemberValue` v0 |
//! | 8           | `ConsumerGroupCurrentMemberAssignmentKey` | `ConsumerGroupCurrentMemberAssignmentValue` v0 |
//! | 16          | `ConsumerGroupRegularExpressionKey`       | `ConsumerGroupRegularExpressionValue` v0    |
//!
//! Type 4 is written by Kafka 4.0 only; Kafka 4.1+ (and this crate) replace it by the
//! `metadata_hash` of type 3 and write its tombstone when a group from an older log bumps its
//! epoch. It is still read, so that logs written by Kafka 4.0 load.
//!
//! Plain data; any thread may build or read them.

use bytes::Bytes;

use super::TopicId;

/// Record type (key version) of [`ConsumerGroupMetadataKey`].
pub(crate) const CONSUMER_GROUP_METADATA_RECORD_TYPE: i16 = 3;
/// Record type (key version) of [`ConsumerGroupPartitionMetadataKey`].
pub(crate) const CONSUMER_GROUP_PARTITION_METADATA_RECORD_TYPE: i16 = 4;
/// Record type (key version) of [`ConsumerGroupMemberMetadataKey`].
pub(crate) const CONSUMER_GROUP_MEMBER_METADATA_RECORD_TYPE: i16 = 5;
/// Record type (key version) of [`ConsumerGroupTargetAssignmentMetadataKey`].
pub(crate) const CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_RECORD_TYPE: i16 = 6;
/// Record type (key version) of [`ConsumerGroupTargetAssignmentMemberKey`].
pub(crate) const CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_RECORD_TYPE: i16 = 7;
/// Record type (key version) of [`ConsumerGroupCurrentMemberAssignmentKey`].
pub(crate) const CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_RECORD_TYPE: i16 = 8;
/// Record type (key version) of [`ConsumerGroupRegularExpressionKey`].
pub(crate) const CONSUMER_GROUP_REGULAR_EXPRESSION_RECORD_TYPE: i16 = 16;
/// The value version of every consumer group value.
pub(crate) const CONSUMER_GROUP_VALUE_VERSION: i16 = 0;

/// Key of the group's epoch record (type 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupMetadataKey {
    /// The group id.
    pub(crate) group_id: String,
}

/// The group epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupMetadataValue {
    /// The group epoch.
    pub(crate) epoch: i32,
    /// The hash of the subscribed topics' metadata (tagged field 0, default 0; Kafka 4.1+).
    pub(crate) metadata_hash: i64,
}

/// Key of the group's subscription metadata record (type 4, Kafka 4.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupPartitionMetadataKey {
    /// The group id.
    pub(crate) group_id: String,
}

/// The metadata of the topics a group subscribed to (Kafka 4.0; read, never written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupPartitionMetadataValue {
    /// The list of topic metadata.
    pub(crate) topics: Vec<PartitionMetadataTopic>,
}

/// One topic of [`ConsumerGroupPartitionMetadataValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionMetadataTopic {
    /// The topic id.
    pub(crate) topic_id: TopicId,
    /// The topic name.
    pub(crate) topic_name: String,
    /// The number of partitions of the topic.
    pub(crate) num_partitions: i32,
    /// Deprecated after 4.0: the racks of each partition.
    pub(crate) partition_metadata: Vec<PartitionMetadata>,
}

/// One partition's racks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionMetadata {
    /// The partition number.
    pub(crate) partition: i32,
    /// The set of racks that the partition is mapped to.
    pub(crate) racks: Vec<String>,
}

/// Key of a member's metadata record (type 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupMemberMetadataKey {
    /// The group id.
    pub(crate) group_id: String,
    /// The member id.
    pub(crate) member_id: String,
}

/// What a member told the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupMemberMetadataValue {
    /// The (optional) instance id.
    pub(crate) instance_id: Option<String>,
    /// The (optional) rack id.
    pub(crate) rack_id: Option<String>,
    /// The client id.
    pub(crate) client_id: String,
    /// The client host.
    pub(crate) client_host: String,
    /// The list of subscribed topic names (written sorted).
    pub(crate) subscribed_topic_names: Vec<String>,
    /// The subscribed topic regular expression (written as "" when none, as Kafka does).
    pub(crate) subscribed_topic_regex: Option<String>,
    /// The rebalance timeout (default -1).
    pub(crate) rebalance_timeout_ms: i32,
    /// The server assignor to use; or null if not used.
    pub(crate) server_assignor: Option<String>,
    /// Tagged field 0: the classic protocol's metadata of a member using it (JoinGroup,
    /// SyncGroup, Heartbeat) inside the consumer group; `None` for a consumer-protocol member.
    pub(crate) classic_member_metadata: Option<ClassicMemberMetadata>,
}

/// A classic-protocol member's metadata inside a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicMemberMetadata {
    /// The session timeout if the consumer uses the classic protocol.
    pub(crate) session_timeout_ms: i32,
    /// The protocols the member supports.
    pub(crate) supported_protocols: Vec<ClassicProtocol>,
}

/// One classic protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicProtocol {
    /// The protocol name.
    pub(crate) name: String,
    /// The protocol metadata.
    pub(crate) metadata: Bytes,
}

/// Key of the target assignment's epoch record (type 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupTargetAssignmentMetadataKey {
    /// The group id.
    pub(crate) group_id: String,
}

/// The epoch of the target assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupTargetAssignmentMetadataValue {
    /// The assignment epoch.
    pub(crate) assignment_epoch: i32,
}

/// Key of a member's target assignment record (type 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupTargetAssignmentMemberKey {
    /// The group id.
    pub(crate) group_id: String,
    /// The member id.
    pub(crate) member_id: String,
}

/// A member's target assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupTargetAssignmentMemberValue {
    /// The assigned partitions.
    pub(crate) topic_partitions: Vec<TopicPartitions>,
}

/// Partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicPartitions {
    /// The topic id.
    pub(crate) topic_id: TopicId,
    /// The partition ids.
    pub(crate) partitions: Vec<i32>,
}

/// Key of a member's current assignment record (type 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupCurrentMemberAssignmentKey {
    /// The group id.
    pub(crate) group_id: String,
    /// The member id.
    pub(crate) member_id: String,
}

/// A member's epochs, state and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupCurrentMemberAssignmentValue {
    /// The current member epoch that is expected from the member in the heartbeat request.
    pub(crate) member_epoch: i32,
    /// The epoch before the last bump, accepted once more if the bump was lost.
    pub(crate) previous_member_epoch: i32,
    /// The member state (0 stable, 1 unrevoked partitions, 2 unreleased partitions).
    pub(crate) state: i8,
    /// The partitions assigned to (or owned by) this member.
    pub(crate) assigned_partitions: Vec<TopicPartitions>,
    /// The partitions that must be revoked by this member.
    pub(crate) partitions_pending_revocation: Vec<TopicPartitions>,
}

/// Key of a resolved regular expression record (type 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupRegularExpressionKey {
    /// The group id.
    pub(crate) group_id: String,
    /// The regular expression.
    pub(crate) regular_expression: String,
}

/// The topics a regular expression matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroupRegularExpressionValue {
    /// The matching topic names (written sorted).
    pub(crate) topics: Vec<String>,
    /// The metadata version the expression was resolved at.
    pub(crate) version: i64,
    /// When it was resolved (ms since the Unix epoch).
    pub(crate) timestamp: i64,
}

/// One consumer group record: a key and its value, or `None` for a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConsumerGroupRecord {
    /// Type 3: the group epoch.
    Metadata(ConsumerGroupMetadataKey, Option<ConsumerGroupMetadataValue>),
    /// Type 4: the subscription metadata of Kafka 4.0.
    PartitionMetadata(ConsumerGroupPartitionMetadataKey, Option<ConsumerGroupPartitionMetadataValue>),
    /// Type 5: a member's metadata.
    MemberMetadata(ConsumerGroupMemberMetadataKey, Option<ConsumerGroupMemberMetadataValue>),
    /// Type 6: the target assignment's epoch.
    TargetAssignmentMetadata(
        ConsumerGroupTargetAssignmentMetadataKey,
        Option<ConsumerGroupTargetAssignmentMetadataValue>,
    ),
    /// Type 7: a member's target assignment.
    TargetAssignmentMember(ConsumerGroupTargetAssignmentMemberKey, Option<ConsumerGroupTargetAssignmentMemberValue>),
    /// Type 8: a member's current assignment.
    CurrentMemberAssignment(ConsumerGroupCurrentMemberAssignmentKey, Option<ConsumerGroupCurrentMemberAssignmentValue>),
    /// Type 16: a resolved regular expression.
    RegularExpression(ConsumerGroupRegularExpressionKey, Option<ConsumerGroupRegularExpressionValue>),
}

impl ConsumerGroupRecord {
    /// The record type (key version) written before the key.
    pub(crate) fn record_type(&self) -> i16 {
        match self {
            Self::Metadata(..) => CONSUMER_GROUP_METADATA_RECORD_TYPE,
            Self::PartitionMetadata(..) => CONSUMER_GROUP_PARTITION_METADATA_RECORD_TYPE,
            Self::MemberMetadata(..) => CONSUMER_GROUP_MEMBER_METADATA_RECORD_TYPE,
            Self::TargetAssignmentMetadata(..) => CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_RECORD_TYPE,
            Self::TargetAssignmentMember(..) => CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_RECORD_TYPE,
            Self::CurrentMemberAssignment(..) => CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_RECORD_TYPE,
            Self::RegularExpression(..) => CONSUMER_GROUP_REGULAR_EXPRESSION_RECORD_TYPE,
        }
    }

    /// The group the record belongs to.
    pub(crate) fn group_id(&self) -> &str {
        match self {
            Self::Metadata(key, _) => &key.group_id,
            Self::PartitionMetadata(key, _) => &key.group_id,
            Self::MemberMetadata(key, _) => &key.group_id,
            Self::TargetAssignmentMetadata(key, _) => &key.group_id,
            Self::TargetAssignmentMember(key, _) => &key.group_id,
            Self::CurrentMemberAssignment(key, _) => &key.group_id,
            Self::RegularExpression(key, _) => &key.group_id,
        }
    }

    /// Whether it is a tombstone.
    pub(crate) fn is_tombstone(&self) -> bool {
        match self {
            Self::Metadata(_, value) => value.is_none(),
            Self::PartitionMetadata(_, value) => value.is_none(),
            Self::MemberMetadata(_, value) => value.is_none(),
            Self::TargetAssignmentMetadata(_, value) => value.is_none(),
            Self::TargetAssignmentMember(_, value) => value.is_none(),
            Self::CurrentMemberAssignment(_, value) => value.is_none(),
            Self::RegularExpression(_, value) => value.is_none(),
        }
    }

    /// The group epoch record.
    pub(crate) fn epoch(group_id: &str, epoch: i32, metadata_hash: i64) -> Self {
        Self::Metadata(
            ConsumerGroupMetadataKey { group_id: group_id.to_owned() },
            Some(ConsumerGroupMetadataValue { epoch, metadata_hash }),
        )
    }

    /// The group epoch tombstone (the group is deleted).
    pub(crate) fn epoch_tombstone(group_id: &str) -> Self {
        Self::Metadata(ConsumerGroupMetadataKey { group_id: group_id.to_owned() }, None)
    }

    /// The Kafka 4.0 subscription metadata tombstone.
    pub(crate) fn partition_metadata_tombstone(group_id: &str) -> Self {
        Self::PartitionMetadata(ConsumerGroupPartitionMetadataKey { group_id: group_id.to_owned() }, None)
    }

    /// A member's metadata record, or its tombstone.
    pub(crate) fn member_metadata(
        group_id: &str,
        member_id: &str,
        value: Option<ConsumerGroupMemberMetadataValue>,
    ) -> Self {
        Self::MemberMetadata(
            ConsumerGroupMemberMetadataKey { group_id: group_id.to_owned(), member_id: member_id.to_owned() },
            value,
        )
    }

    /// The target assignment epoch record, or its tombstone.
    pub(crate) fn target_assignment_epoch(group_id: &str, assignment_epoch: Option<i32>) -> Self {
        Self::TargetAssignmentMetadata(
            ConsumerGroupTargetAssignmentMetadataKey { group_id: group_id.to_owned() },
            assignment_epoch.map(|assignment_epoch| ConsumerGroupTargetAssignmentMetadataValue { assignment_epoch }),
        )
    }

    /// A member's target assignment record, or its tombstone.
    pub(crate) fn target_assignment(group_id: &str, member_id: &str, partitions: Option<Vec<TopicPartitions>>) -> Self {
        Self::TargetAssignmentMember(
            ConsumerGroupTargetAssignmentMemberKey { group_id: group_id.to_owned(), member_id: member_id.to_owned() },
            partitions.map(|topic_partitions| ConsumerGroupTargetAssignmentMemberValue { topic_partitions }),
        )
    }

    /// A member's current assignment record, or its tombstone.
    pub(crate) fn current_assignment(
        group_id: &str,
        member_id: &str,
        value: Option<ConsumerGroupCurrentMemberAssignmentValue>,
    ) -> Self {
        Self::CurrentMemberAssignment(
            ConsumerGroupCurrentMemberAssignmentKey { group_id: group_id.to_owned(), member_id: member_id.to_owned() },
            value,
        )
    }

    /// A resolved regular expression record, or its tombstone.
    pub(crate) fn regular_expression(
        group_id: &str,
        regular_expression: &str,
        value: Option<ConsumerGroupRegularExpressionValue>,
    ) -> Self {
        Self::RegularExpression(
            ConsumerGroupRegularExpressionKey {
                group_id: group_id.to_owned(),
                regular_expression: regular_expression.to_owned(),
            },
            value,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_types_are_kafkas_key_versions() {
        let cases = [
            (ConsumerGroupRecord::epoch("g", 1, 0), 3),
            (ConsumerGroupRecord::partition_metadata_tombstone("g"), 4),
            (ConsumerGroupRecord::member_metadata("g", "m", None), 5),
            (ConsumerGroupRecord::target_assignment_epoch("g", Some(1)), 6),
            (ConsumerGroupRecord::target_assignment("g", "m", None), 7),
            (ConsumerGroupRecord::current_assignment("g", "m", None), 8),
            (ConsumerGroupRecord::regular_expression("g", "a.*", None), 16),
        ];
        for (record, record_type) in cases {
            assert_eq!(record.record_type(), record_type);
            assert_eq!(record.group_id(), "g");
        }
        assert!(ConsumerGroupRecord::epoch_tombstone("g").is_tombstone());
        assert!(!ConsumerGroupRecord::epoch("g", 1, 0).is_tombstone());
    }
}
