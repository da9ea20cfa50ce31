//! Metadata records: the entries of the metadata log, each one change to the image.
//!
//! Kafka's KRaft log has its own record types (RegisterBrokerRecord, TopicRecord,
//! PartitionRecord, PartitionChangeRecord, ...); the `kafka-protocol` crate does not carry them,
//! so these are Sluice's own, in the same shape: a topic is created with all its partitions'
//! replica lists, a partition changes leader, ISR or replicas with its epochs in the record
//! (never computed on apply), and producer ids are handed out in blocks. Records are `serde`
//! values: written by the single-node store as JSON, and carried by the controller quorum's log.

use serde::{Deserialize, Serialize};
use sluice_engine::{TopicConfig, TopicId};

use super::image::{BrokerRegistration, PartitionState};

/// A partition's new replication state, with the epochs the controller gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionRecord {
    pub(crate) topic_id: TopicId,
    pub(crate) partition: i32,
    pub(crate) state: PartitionState,
}

/// One change to the metadata image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MetadataRecord {
    /// The metadata log's first record: the cluster's id (later ones change nothing).
    InitCluster { cluster_id: String },
    /// A broker registers (or registers again after a restart, with a new incarnation).
    RegisterBroker(BrokerRegistration),
    /// A broker is fenced (its session expired or it shut down) or unfenced.
    FenceBroker { node_id: i32, fenced: bool },
    /// A topic with its partitions' replica lists, by index; each partition starts led by its
    /// first replica, every replica in sync, at epoch 0.
    CreateTopic { name: String, id: TopicId, config: TopicConfig, partitions: Vec<Vec<i32>> },
    /// A topic and all its partitions go.
    DeleteTopic { id: TopicId },
    /// Partitions added to a topic: (index, replicas), indexes continuing the topic's.
    CreatePartitions { id: TopicId, partitions: Vec<(i32, Vec<i32>)> },
    /// A topic's whole config.
    AlterTopicConfig { id: TopicId, config: TopicConfig },
    /// A partition's leader, ISR or replicas change.
    ChangePartition(PartitionRecord),
    /// Producer ids below `next_producer_id` are handed out.
    AllocateProducerIds { next_producer_id: i64 },
    /// A broker leaves the cluster (Kafka's UnregisterBroker): its registration goes. Replicas
    /// that still name it stay, offline, until they are reassigned.
    UnregisterBroker { node_id: i32 },
    /// A consumer group's whole set of group configs (Kafka's ConfigRecord of a GROUP resource);
    /// an empty set removes them.
    AlterGroupConfig { group: String, configs: crate::groups::group_config::GroupConfigs },
    /// A user's SCRAM credential for one mechanism is set (Kafka's UserScramCredentialRecord).
    UserScramCredential {
        name: String,
        mechanism: crate::security::sasl::scram::ScramMechanism,
        credential: crate::security::sasl::scram::ScramCredential,
    },
    /// A user's SCRAM credential for one mechanism goes (Kafka's RemoveUserScramCredentialRecord).
    RemoveUserScramCredential { name: String, mechanism: crate::security::sasl::scram::ScramMechanism },
    /// An ACL is created under `id` (Kafka's AccessControlEntryRecord).
    CreateAcl { id: u64, binding: crate::security::acl::AclBinding },
    /// The ACL `id` is removed (Kafka's RemoveAccessControlEntryRecord).
    RemoveAcl { id: u64 },
    /// One key of a client quota entity is set or removed (Kafka's ClientQuotaRecord).
    ClientQuota(crate::quota::entity::QuotaRecord),
    /// A BROKER resource's whole set of dynamic configs (Kafka's ConfigRecords of a BROKER
    /// resource): `resource` is a broker id, or empty for the cluster-wide defaults; an empty
    /// set removes them.
    AlterBrokerConfig { resource: String, configs: crate::dynamic_config::BrokerConfigs },
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::image::MetadataImage;
    use super::*;

    fn topic_id(seed: u8) -> TopicId {
        TopicId([seed; 16])
    }

    /// Records a controller could write, in an order it could write them: every change names a
    /// topic and partition created before it.
    fn records() -> impl Strategy<Value = Vec<MetadataRecord>> {
        proptest::collection::vec((0u8..9, 1u8..5, 0i32..4, 0i32..3), 1..40).prop_map(|steps| {
            let mut created: Vec<(TopicId, i32)> = Vec::new();
            let mut out = Vec::new();
            for (kind, seed, node, epoch) in steps {
                let node = node + 1;
                match kind {
                    0 => out.push(MetadataRecord::RegisterBroker(BrokerRegistration {
                        node_id: node,
                        incarnation: u64::from(seed),
                        host: "127.0.0.1".to_owned(),
                        port: 9000 + node,
                        rack: None,
                        fenced: false,
                        clean_restart: seed % 3 == 0,
                        listeners: Vec::new(),
                    })),
                    1 => out.push(MetadataRecord::FenceBroker { node_id: node, fenced: seed % 2 == 0 }),
                    2 if !created.iter().any(|(id, _)| *id == topic_id(seed)) => {
                        created.push((topic_id(seed), 2));
                        out.push(MetadataRecord::CreateTopic {
                            name: format!("t{seed}"),
                            id: topic_id(seed),
                            config: TopicConfig::default(),
                            partitions: vec![vec![node], vec![node, node % 3 + 1]],
                        });
                    }
                    3 => {
                        if let Some(position) = created.iter().position(|(id, _)| *id == topic_id(seed)) {
                            created.remove(position);
                            out.push(MetadataRecord::DeleteTopic { id: topic_id(seed) });
                        }
                    }
                    4 => {
                        if let Some(entry) = created.iter_mut().find(|(id, _)| *id == topic_id(seed)) {
                            out.push(MetadataRecord::CreatePartitions {
                                id: entry.0,
                                partitions: vec![(entry.1, vec![node])],
                            });
                            entry.1 += 1;
                        }
                    }
                    5 => {
                        if let Some((id, count)) = created.iter().find(|(id, _)| *id == topic_id(seed)) {
                            let state = PartitionState {
                                replicas: vec![node],
                                isr: vec![node],
                                leader: node,
                                leader_epoch: epoch + 1,
                                partition_epoch: epoch + 1,
                                adding: Vec::new(),
                                removing: Vec::new(),
                                elr: if node % 2 == 0 { vec![node + 1] } else { Vec::new() },
                            };
                            out.push(MetadataRecord::ChangePartition(PartitionRecord {
                                topic_id: *id,
                                partition: (node - 1) % count,
                                state,
                            }));
                        }
                    }
                    6 => {
                        if let Some((id, _)) = created.iter().find(|(id, _)| *id == topic_id(seed)) {
                            let config = TopicConfig { retention_ms: i64::from(seed), ..TopicConfig::default() };
                            out.push(MetadataRecord::AlterTopicConfig { id: *id, config });
                        }
                    }
                    7 => out.push(MetadataRecord::InitCluster { cluster_id: format!("c{seed}") }),
                    _ => out.push(MetadataRecord::AllocateProducerIds { next_producer_id: i64::from(seed) * 1000 }),
                }
            }
            out
        })
    }

    proptest! {
        #[test]
        fn every_record_applied_twice_gives_the_same_image(records in records()) {
            let mut once = MetadataImage::default();
            let mut twice = MetadataImage::default();
            for record in &records {
                once.apply(record);
                twice.apply(record);
                twice.apply(record);
                prop_assert_eq!(&once, &twice);
            }
        }

        #[test]
        fn a_snapshot_and_the_records_after_it_rebuild_the_same_image(records in records(), cut in 0usize..40) {
            let mut full = MetadataImage::default();
            for record in &records {
                full.apply(record);
            }
            let cut = cut.min(records.len());
            let mut prefix = MetadataImage::default();
            for record in &records[..cut] {
                prefix.apply(record);
            }
            let snapshot = serde_json::to_vec(&prefix).expect("serializes");
            let mut restored: MetadataImage = serde_json::from_slice(&snapshot).expect("deserializes");
            // A snapshot may be taken while the records after it are already in the log: they
            // are replayed over it, the first ones possibly twice.
            for record in &records[cut.saturating_sub(2)..] {
                restored.apply(record);
            }
            prop_assert_eq!(&restored, &full);
        }

        #[test]
        fn records_round_trip_through_json(records in records()) {
            for record in &records {
                let bytes = serde_json::to_vec(record).expect("serializes");
                let decoded: MetadataRecord = serde_json::from_slice(&bytes).expect("deserializes");
                prop_assert_eq!(&decoded, record);
            }
        }
    }
}
