//! The metadata image: the cluster as every broker sees it, built by applying metadata records
//! in order.
//!
//! It holds the brokers (registrations, fenced or not), the topics (id, name, config) and their
//! partitions (replicas, in-sync replicas, leader, leader epoch, partition epoch), and the next
//! producer id block. Applying a record is deterministic and idempotent: the same records in the
//! same order give the same image on every broker, and applying a record twice (a replay after a
//! snapshot) changes nothing the second time. Readers take an immutable snapshot (`Arc`) and
//! never lock; the single writer builds the next image and publishes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_engine::{TopicConfig, TopicId};

use super::records::{MetadataRecord, PartitionRecord};

/// No leader: Kafka's -1.
pub(crate) const NO_LEADER: i32 = -1;

/// A broker as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BrokerRegistration {
    pub(crate) node_id: i32,
    /// Changes at every start of the broker process.
    pub(crate) incarnation: u64,
    /// Where clients reach it.
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) rack: Option<String>,
    /// Fenced brokers lead nothing and are not listed to clients.
    pub(crate) fenced: bool,
    /// The broker's previous run stopped cleanly, every log flushed: it lost nothing, so it stays
    /// an eligible leader replica where it was one. False after a crash (and at a first start,
    /// where it is in no ELR).
    #[serde(default)]
    pub(crate) clean_restart: bool,
    /// Every advertised listener's endpoint. Empty in registrations written before brokers
    /// registered their listeners: `host` and `port` are then the only endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) listeners: Vec<crate::security::listeners::Endpoint>,
}

impl BrokerRegistration {
    /// Where clients of listener `listener` reach this broker; `None` when it has no such
    /// listener.
    pub(crate) fn endpoint(&self, listener: &str) -> Option<(&str, i32)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        let endpoint = self.listeners.iter().find(|endpoint| endpoint.name == listener)?;
        Some((&endpoint.host, endpoint.port))
    }
}

/// One partition's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionState {
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
    /// [`NO_LEADER`] when offline.
    pub(crate) leader: i32,
    /// Bumped at every leader change.
    pub(crate) leader_epoch: i32,
    /// Bumped at every change of this state.
    pub(crate) partition_epoch: i32,
    /// A reassignment under way: replicas joining (they are in `replicas` and fetch, and the
    /// reassignment completes once all are in sync) and replicas leaving then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) removing: Vec<i32>,
    /// KIP-966's eligible leader replicas: replicas that left the ISR while it was smaller than
    /// `min.insync.replicas`. The high watermark does not move while the ISR is that small, so
    /// they hold everything below it and may be elected cleanly when no ISR member is live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) elr: Vec<i32>,
}

impl PartitionState {
    /// A new partition led by the first replica, every (empty) replica in sync.
    pub(crate) fn new(replicas: Vec<i32>) -> Self {
        let leader = replicas.first().copied().unwrap_or(NO_LEADER);
        Self {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
            elr: Vec::new(),
        }
    }

    /// KIP-966's rule, after the ISR changed from `before_isr`: while the ISR is smaller than
    /// `min_isr`, the replicas that left it join the ELR; once it is not, the ELR empties. A
    /// replica back in the ISR, or no longer a replica, leaves the ELR. Kept in replica order.
    pub(crate) fn settle_elr(&mut self, before_isr: &[i32], min_isr: usize) {
        if self.isr.len() >= min_isr {
            self.elr.clear();
            return;
        }
        for member in before_isr {
            if !self.isr.contains(member) && !self.elr.contains(member) {
                self.elr.push(*member);
            }
        }
        let (isr, replicas) = (&self.isr, &self.replicas);
        let mut elr: Vec<i32> =
            replicas.iter().copied().filter(|replica| self.elr.contains(replica) && !isr.contains(replica)).collect();
        std::mem::swap(&mut self.elr, &mut elr);
    }

    /// A clean election, when the partition needs a leader: the first live ISR member in
    /// replica order, else the first live ELR member, which becomes the ISR alone (KIP-966).
    /// Leaves the leader unset when neither has a live member.
    pub(crate) fn elect_clean(&mut self, live: &std::collections::BTreeSet<i32>, min_isr: usize) {
        if let Some(member) = self.isr.iter().copied().find(|member| live.contains(member)) {
            self.leader = member;
            return;
        }
        let Some(member) = self.elr.iter().copied().find(|member| live.contains(member)) else {
            self.leader = NO_LEADER;
            return;
        };
        let before = self.isr.clone();
        self.leader = member;
        self.isr = vec![member];
        self.elr.retain(|other| *other != member);
        self.settle_elr(&before, min_isr);
    }
}

/// A topic's `min.insync.replicas` (Kafka's default 1).
pub(crate) fn min_insync_replicas(config: &sluice_engine::TopicConfig) -> usize {
    config.other.get("min.insync.replicas").and_then(|value| value.trim().parse().ok()).unwrap_or(1).max(1)
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TopicImage {
    pub(crate) name: Arc<str>,
    pub(crate) id: TopicId,
    pub(crate) config: TopicConfig,
    /// By partition index.
    pub(crate) partitions: Vec<PartitionState>,
}

impl TopicImage {
    pub(crate) fn partition(&self, index: i32) -> Option<&PartitionState> {
        usize::try_from(index).ok().and_then(|index| self.partitions.get(index))
    }

    pub(crate) fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// The whole image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MetadataImage {
    pub(crate) cluster_id: String,
    pub(crate) brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by id; `names` indexes them by name.
    topics: BTreeMap<TopicId, Arc<TopicImage>>,
    names: BTreeMap<Arc<str>, TopicId>,
    /// The first producer id not yet handed out in a block.
    pub(crate) next_producer_id: i64,
    /// Consumer groups' own configs (the GROUP config resource).
    #[serde(default)]
    pub(crate) group_configs: crate::groups::group_config::GroupConfigsImage,
    /// SCRAM credentials by user and mechanism.
    #[serde(default)]
    pub(crate) scram: crate::security::sasl::credentials::ScramCredentials,
    /// The cluster's ACLs.
    #[serde(default)]
    pub(crate) acls: crate::security::acl::AclSet,
    /// Client quotas by entity.
    #[serde(default)]
    pub(crate) client_quotas: crate::quota::entity::ClientQuotas,
    /// Dynamic broker configs, per broker and cluster-wide.
    #[serde(default)]
    pub(crate) broker_configs: crate::dynamic_config::BrokerConfigsImage,
}

impl MetadataImage {
    /// An empty cluster.
    #[cfg(test)]
    pub(crate) fn new(cluster_id: String) -> Self {
        Self { cluster_id, ..Self::default() }
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.names.get(name).and_then(|id| self.topics.get(id))
    }

    pub(crate) fn topic_by_id(&self, id: TopicId) -> Option<&Arc<TopicImage>> {
        self.topics.get(&id)
    }

    /// Every topic, sorted by name.
    pub(crate) fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.names.values().filter_map(|id| self.topics.get(id))
    }

    /// Brokers clients may use: registered and not fenced.
    pub(crate) fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|broker| !broker.fenced)
    }

    /// Applies one record.
    ///
    /// # Panics
    /// When a record contradicts the image in a way no controller writes (a partition change
    /// for a partition index that does not exist): the metadata log is corrupt, and serving on
    /// from a wrong image would be worse than stopping.
    pub(crate) fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id.clone_from(cluster_id);
                }
            }
            MetadataRecord::RegisterBroker(registration) => {
                self.brokers.insert(registration.node_id, registration.clone());
            }
            MetadataRecord::UnregisterBroker { node_id } => {
                self.brokers.remove(node_id);
            }
            MetadataRecord::FenceBroker { node_id, fenced } => {
                if let Some(broker) = self.brokers.get_mut(node_id) {
                    broker.fenced = *fenced;
                }
            }
            MetadataRecord::CreateTopic { name, id, config, partitions } => {
                let topic = TopicImage {
                    name: Arc::from(name.as_str()),
                    id: *id,
                    config: config.clone(),
                    partitions: partitions.iter().map(|replicas| PartitionState::new(replicas.clone())).collect(),
                };
                self.names.insert(topic.name.clone(), *id);
                self.topics.insert(*id, Arc::new(topic));
            }
            MetadataRecord::DeleteTopic { id } => {
                if let Some(topic) = self.topics.remove(id) {
                    self.names.remove(&topic.name);
                }
            }
            MetadataRecord::CreatePartitions { id, partitions } => {
                if let Some(topic) = self.topics.get_mut(id) {
                    let topic = Arc::make_mut(topic);
                    // Idempotent: a replay adds nothing it already has.
                    let first_new = partitions.first().map_or(0, |(index, _)| *index);
                    topic.partitions.truncate(usize::try_from(first_new).unwrap_or(0));
                    for (index, replicas) in partitions {
                        assert_eq!(*index, topic.partition_count(), "new partitions extend the topic in order");
                        topic.partitions.push(PartitionState::new(replicas.clone()));
                    }
                }
            }
            MetadataRecord::AlterTopicConfig { id, config } => {
                if let Some(topic) = self.topics.get_mut(id) {
                    Arc::make_mut(topic).config = config.clone();
                }
            }
            MetadataRecord::ChangePartition(change) => self.change_partition(change),
            MetadataRecord::AllocateProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::AlterGroupConfig { group, configs } => self.group_configs.set(group, configs),
            MetadataRecord::UserScramCredential { name, mechanism, credential } => {
                self.scram.upsert(name, *mechanism, credential);
            }
            MetadataRecord::RemoveUserScramCredential { name, mechanism } => self.scram.remove(name, *mechanism),
            MetadataRecord::CreateAcl { id, binding } => self.acls.insert(*id, binding),
            MetadataRecord::RemoveAcl { id } => self.acls.remove(*id),
            MetadataRecord::ClientQuota(record) => self.client_quotas.apply(record),
            MetadataRecord::AlterBrokerConfig { resource, configs } => self.broker_configs.set(resource, configs),
        }
    }

    fn change_partition(&mut self, change: &PartitionRecord) {
        let Some(topic) = self.topics.get_mut(&change.topic_id) else { return };
        let topic = Arc::make_mut(topic);
        let index = usize::try_from(change.partition).expect("partition indexes in records are not negative");
        let state = topic.partitions.get_mut(index).expect("a change names an existing partition");
        state.replicas.clone_from(&change.state.replicas);
        state.isr.clone_from(&change.state.isr);
        state.leader = change.state.leader;
        state.leader_epoch = change.state.leader_epoch;
        state.partition_epoch = change.state.partition_epoch;
        state.adding.clone_from(&change.state.adding);
        state.removing.clone_from(&change.state.removing);
        state.elr.clone_from(&change.state.elr);
    }
}
