//! The active controller's decisions: controller requests turned into metadata records, and
//! the records that fence a broker whose heartbeats stopped or bring one back.
//!
//! Pure functions of the image (and a seed for replica placement), so every rule is tested
//! without a quorum. Leadership rules, as in Kafka:
//! - a fenced broker leads nothing: each partition it led gets the first in-sync replica that
//!   is live as leader, or none (-1, offline) when no in-sync replica is live, and its leader
//!   and partition epochs are bumped; the fenced broker leaves the ISR unless it was the last
//!   member (the ISR never empties, so the last in-sync replica is remembered for when it
//!   returns);
//! - a broker that registers or heartbeats again is unfenced and becomes leader of the
//!   leaderless partitions whose ISR names it.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use super::wire::{ControllerRequest, Outcome, WireRefusal};
use crate::metadata::controller::{self as decide, Refusal};
use crate::metadata::image::{BrokerRegistration, MetadataImage, min_insync_replicas};
use crate::metadata::records::{MetadataRecord, PartitionRecord};
use crate::metadata::{NO_LEADER, PartitionState};

/// Decides a request (other than membership and liveness): the records to write and the
/// answer once they are written.
pub(crate) fn decide(image: &MetadataImage, request: &ControllerRequest, seed: u64) -> (Vec<MetadataRecord>, Outcome) {
    match request {
        ControllerRequest::CreateTopics { topics, validate_only } => create_topics(image, topics, *validate_only, seed),
        ControllerRequest::DeleteTopics { ids } => {
            let mut records = Vec::new();
            let answers = ids
                .iter()
                .map(|id| match image.topic_by_id(*id) {
                    Some(_) => {
                        records.push(MetadataRecord::DeleteTopic { id: *id });
                        Ok(())
                    }
                    None => Err(refused(ResponseError::UnknownTopicId, "This server does not host this topic ID.")),
                })
                .collect();
            (records, Outcome::Each(answers))
        }
        ControllerRequest::CreatePartitions { name, count, assignments, validate_only } => {
            let decision = match image.topic(name) {
                Some(topic) => decide::create_partitions(image, topic, *count, assignments, seed),
                None => Err(Refusal::new(ResponseError::UnknownTopicOrPartition, format!("unknown topic {name}"))),
            };
            one(decision.map(|record| if *validate_only { Vec::new() } else { vec![record] }))
        }
        ControllerRequest::AlterTopicConfig { name, change, validate_only } => {
            let decision = match image.topic(name) {
                None => Err(Refusal::new(ResponseError::UnknownTopicOrPartition, format!("unknown topic {name}"))),
                Some(topic) => change.apply(&topic.config).map(|config| {
                    if *validate_only || config == topic.config {
                        Vec::new()
                    } else {
                        vec![MetadataRecord::AlterTopicConfig { id: topic.id, config }]
                    }
                }),
            };
            one(decision)
        }
        ControllerRequest::AlterGroupConfig { group, operations, validate_only } => {
            let current = image.group_configs.get(group);
            let defaults = crate::groups::consumer_config_global();
            one(crate::groups::group_config::apply(current, operations, &defaults).map(|configs| {
                if *validate_only
                    || current.is_some_and(|current| *current == configs)
                    || (current.is_none() && configs.is_empty())
                {
                    Vec::new()
                } else {
                    vec![MetadataRecord::AlterGroupConfig { group: group.clone(), configs }]
                }
            }))
        }
        ControllerRequest::AllocateProducerIds { count } => {
            let start = image.next_producer_id;
            let next = start.saturating_add((*count).max(1));
            (
                vec![MetadataRecord::AllocateProducerIds { next_producer_id: next }],
                Outcome::ProducerIds { start, count: next - start },
            )
        }
        ControllerRequest::AdoptProducerIds { next } => {
            let records = if *next > image.next_producer_id {
                vec![MetadataRecord::AllocateProducerIds { next_producer_id: *next }]
            } else {
                Vec::new()
            };
            (records, Outcome::One(Ok(())))
        }
        ControllerRequest::MoveLeadership { topic, partition, leader } => {
            one(move_leadership(image, topic, *partition, *leader))
        }
        ControllerRequest::ElectLeaders { unclean, partitions } => {
            let mut scratch = image.clone();
            let mut records = Vec::new();
            let mut answers = Vec::with_capacity(partitions.len());
            for (topic, partition) in partitions {
                match elect(&scratch, topic, *partition, *unclean) {
                    Ok(record) => {
                        scratch.apply(&record);
                        records.push(record);
                        answers.push(Ok(()));
                    }
                    Err(refusal) => answers.push(Err(refusal.into())),
                }
            }
            (records, Outcome::Each(answers))
        }
        ControllerRequest::Reassign { partitions } => {
            let mut scratch = image.clone();
            let mut records = Vec::new();
            let mut answers = Vec::with_capacity(partitions.len());
            for (topic, partition, target) in partitions {
                match reassign(&scratch, topic, *partition, target.as_deref()) {
                    Ok(record) => {
                        scratch.apply(&record);
                        records.push(record);
                        answers.push(Ok(()));
                    }
                    Err(refusal) => answers.push(Err(refusal.into())),
                }
            }
            (records, Outcome::Each(answers))
        }
        ControllerRequest::AlterPartition { topic_id, partition, leader, leader_epoch, partition_epoch, isr } => {
            one(alter_partition(image, *topic_id, *partition, (*leader, *leader_epoch, *partition_epoch), isr))
        }
        ControllerRequest::RegisterBroker(registration) => (register(image, registration), Outcome::One(Ok(()))),
        ControllerRequest::InitCluster { cluster_id, adopt } => {
            if image.cluster_id.is_empty() {
                let mut records = vec![MetadataRecord::InitCluster { cluster_id: cluster_id.clone() }];
                records.extend(adopt.iter().cloned());
                (records, Outcome::Cluster { cluster_id: cluster_id.clone(), created: true })
            } else {
                (Vec::new(), Outcome::Cluster { cluster_id: image.cluster_id.clone(), created: false })
            }
        }
        ControllerRequest::ControlledShutdown { node_id, incarnation } => {
            let current =
                image.brokers.get(node_id).is_some_and(|broker| broker.incarnation == *incarnation && !broker.fenced);
            let records = if current { fence(image, *node_id) } else { Vec::new() };
            (records, Outcome::One(Ok(())))
        }
        ControllerRequest::UnregisterBroker { node_id } => one(match image.brokers.get(node_id) {
            None => {
                Err(Refusal::new(ResponseError::BrokerIdNotRegistered, format!("broker {node_id} is not registered")))
            }
            Some(broker) => {
                let mut records = if broker.fenced { Vec::new() } else { fence(image, *node_id) };
                records.push(MetadataRecord::UnregisterBroker { node_id: *node_id });
                Ok(records)
            }
        }),
        ControllerRequest::CreateAcls { bindings } => crate::security::acl_control::decide_create(image, bindings),
        ControllerRequest::DeleteAcls { filters } => crate::security::acl_control::decide_delete(image, filters),
        ControllerRequest::AlterClientQuotas { alterations, validate_only } => {
            crate::quota::entity::decide_alter(image, alterations, *validate_only)
        }
        ControllerRequest::AlterScramCredentials(alteration) => {
            crate::security::sasl::credentials::decide(image, alteration)
        }
        ControllerRequest::AlterBrokerConfig { change, validate_only } => {
            one(crate::dynamic_config::decide(image, change, *validate_only))
        }
        ControllerRequest::Heartbeat { .. }
        | ControllerRequest::AddLearner { .. }
        | ControllerRequest::DescribeQuorum => (Vec::new(), Outcome::One(Ok(()))),
    }
}

fn refused(error: ResponseError, message: &str) -> WireRefusal {
    Refusal::new(error, message).into()
}

fn one(decision: Result<Vec<MetadataRecord>, Refusal>) -> (Vec<MetadataRecord>, Outcome) {
    match decision {
        Ok(records) => (records, Outcome::One(Ok(()))),
        Err(refusal) => (Vec::new(), Outcome::One(Err(refusal.into()))),
    }
}

fn create_topics(
    image: &MetadataImage,
    topics: &[decide::NewTopic],
    validate_only: bool,
    seed: u64,
) -> (Vec<MetadataRecord>, Outcome) {
    let mut scratch = image.clone();
    let mut records = Vec::new();
    let mut answers = Vec::new();
    for (position, topic) in topics.iter().enumerate() {
        let id = new_topic_id(seed, position);
        // Defaults were resolved by the asking broker: none are needed here.
        let defaults = decide::Defaults { partition_count: 1, replication_factor: 1 };
        let seed = seed.rotate_left(position as u32 * 7 + 1);
        match decide::create_topic(&scratch, topic, id, defaults, seed) {
            Ok(record) => {
                scratch.apply(&record);
                answers.push(Ok(scratch.topic(&topic.name).map(|created| (**created).clone()).expect("just created")));
                records.push(record);
            }
            Err(refusal) => answers.push(Err(refusal.into())),
        }
    }
    if validate_only {
        records.clear();
    }
    (records, Outcome::Topics(answers))
}

/// A topic id from the request's seed: random, as Kafka's are.
fn new_topic_id(seed: u64, position: usize) -> sluice_engine::TopicId {
    let mix = |value: u64| {
        let mut mixed = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    };
    let first = mix(seed ^ (position as u64).rotate_left(17));
    let second = mix(first ^ 0x5851_f42d_4c95_7f2d);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&first.to_be_bytes());
    id[8..].copy_from_slice(&second.to_be_bytes());
    sluice_engine::TopicId(id)
}

fn move_leadership(
    image: &MetadataImage,
    topic: &str,
    index: i32,
    leader: Option<i32>,
) -> Result<Vec<MetadataRecord>, Refusal> {
    let unknown = || Refusal::new(ResponseError::UnknownTopicOrPartition, format!("unknown partition {topic}-{index}"));
    let found = image.topic(topic).ok_or_else(unknown)?;
    let current = found.partition(index).ok_or_else(unknown)?;
    let mut state = current.clone();
    state.leader = leader.unwrap_or(NO_LEADER);
    Ok(vec![changed(found.id, index, state)])
}

/// The records that register `registration`. A new incarnation of a broker that is still
/// registered (a restart quicker than its session timeout) first fences the old one, as Kafka's
/// controller does: what it led moves to other in-sync replicas at a new leader epoch, so the
/// restarted broker comes back as a follower and truncates whatever its old incarnation wrote
/// that the new leaders lack. A broker whose last run did not stop cleanly leaves every ELR it
/// is in (KIP-966: what it had not flushed may be gone). Then, unless it registers fenced, it
/// leads again the partitions left without a leader whose ISR or ELR names it. A broker of a
/// cluster registers fenced, and is unfenced (and elected there) once it has caught up with the
/// metadata log, as Kafka's brokers are: it cannot lead before it knows it does.
fn register(image: &MetadataImage, registration: &BrokerRegistration) -> Vec<MetadataRecord> {
    let node_id = registration.node_id;
    let mut scratch = image.clone();
    let mut records = Vec::new();
    let stale =
        image.brokers.get(&node_id).is_some_and(|known| known.incarnation != registration.incarnation && !known.fenced);
    if stale {
        records = fence(image, node_id);
        for record in &records {
            scratch.apply(record);
        }
    }
    if !registration.clean_restart {
        for record in leave_elr(&scratch, node_id) {
            scratch.apply(&record);
            records.push(record);
        }
    }
    let registered = MetadataRecord::RegisterBroker(registration.clone());
    scratch.apply(&registered);
    records.push(registered);
    if !registration.fenced {
        records.extend(elect_for_returning_broker(&scratch, node_id));
    }
    records
}

/// The records that take `node_id` out of every ELR, but where it is the last eligible replica
/// (an empty ISR and no other ELR member): no replica can hold more than it then, and Kafka
/// elects such a last known leader when it returns (a single replica after a crash, too).
fn leave_elr(image: &MetadataImage, node_id: i32) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        let leaves =
            |state: &PartitionState| state.elr.contains(&node_id) && !(state.isr.is_empty() && state.elr.len() == 1);
        for (index, state) in topic.partitions.iter().enumerate().filter(|(_, state)| leaves(state)) {
            let mut next = state.clone();
            next.elr.retain(|member| *member != node_id);
            next.partition_epoch += 1;
            records.push(MetadataRecord::ChangePartition(PartitionRecord {
                topic_id: topic.id,
                partition: index as i32,
                state: next,
            }));
        }
    }
    records
}

/// Kafka's AlterPartitionReassignments for one partition. A target starts a reassignment: the
/// replicas become target followed by the current ones that leave, the joining ones fetch, and
/// the controller completes it once every target replica is in sync (`complete_reassignment`).
/// `None` cancels one under way: the joining replicas are dropped again. Refusals as Kafka's:
/// INVALID_REPLICA_ASSIGNMENT for an empty target, a repeated or unregistered broker;
/// NO_REASSIGNMENT_IN_PROGRESS for a cancel with nothing to cancel.
fn reassign(image: &MetadataImage, topic: &str, index: i32, target: Option<&[i32]>) -> Result<MetadataRecord, Refusal> {
    let unknown = || Refusal::new(ResponseError::UnknownTopicOrPartition, format!("unknown partition {topic}-{index}"));
    let found = image.topic(topic).ok_or_else(unknown)?;
    let current = found.partition(index).ok_or_else(unknown)?;
    let mut next = current.clone();
    let Some(target) = target else {
        if current.adding.is_empty() && current.removing.is_empty() {
            return Err(Refusal::new(
                ResponseError::NoReassignmentInProgress,
                "no reassignment in progress".to_owned(),
            ));
        }
        next.replicas.retain(|replica| !current.adding.contains(replica));
        next.isr.retain(|replica| next.replicas.contains(replica));
        next.elr.retain(|replica| next.replicas.contains(replica));
        next.adding.clear();
        next.removing.clear();
        next.partition_epoch += 1;
        return Ok(MetadataRecord::ChangePartition(PartitionRecord {
            topic_id: found.id,
            partition: index,
            state: next,
        }));
    };
    let invalid = |why: String| Refusal::new(ResponseError::InvalidReplicaAssignment, why);
    if target.is_empty() {
        return Err(invalid("the target replica list is empty".to_owned()));
    }
    let distinct: BTreeSet<i32> = target.iter().copied().collect();
    if distinct.len() != target.len() {
        return Err(invalid(format!("{target:?} names a broker twice")));
    }
    if let Some(unknown) = target.iter().find(|replica| !image.brokers.contains_key(replica)) {
        return Err(invalid(format!("broker {unknown} is not registered")));
    }
    // A new target replaces one under way, from the replicas before it.
    let original: Vec<i32> =
        current.replicas.iter().copied().filter(|replica| !current.adding.contains(replica)).collect();
    next.adding = target.iter().copied().filter(|replica| !original.contains(replica)).collect();
    next.removing = original.iter().copied().filter(|replica| !target.contains(replica)).collect();
    next.replicas = target.iter().copied().chain(next.removing.iter().copied()).collect();
    next.isr.retain(|replica| next.replicas.contains(replica));
    next.elr.retain(|replica| next.replicas.contains(replica));
    next.partition_epoch += 1;
    let record =
        MetadataRecord::ChangePartition(PartitionRecord { topic_id: found.id, partition: index, state: next.clone() });
    // Nothing to wait for (only replicas leave, or the target is the current set): done at once.
    if next.adding.iter().all(|replica| next.isr.contains(replica)) {
        return Ok(complete_reassignment(found.id, index, &next, &live_brokers(image, None)).unwrap_or(record));
    }
    Ok(record)
}

/// The record that completes a reassignment whose joining replicas are all in `state`'s ISR:
/// the replicas become the target, leaving ones drop out of the ISR, and leadership moves to an
/// in-sync target replica (the first) when the leader leaves. `None` while replicas still join.
fn complete_reassignment(
    topic_id: sluice_engine::TopicId,
    index: i32,
    state: &PartitionState,
    live: &BTreeSet<i32>,
) -> Option<MetadataRecord> {
    if (state.adding.is_empty() && state.removing.is_empty())
        || !state.adding.iter().all(|replica| state.isr.contains(replica))
    {
        return None;
    }
    let mut next = state.clone();
    next.replicas.retain(|replica| !state.removing.contains(replica));
    next.isr.retain(|replica| next.replicas.contains(replica));
    next.elr.retain(|replica| next.replicas.contains(replica));
    next.adding.clear();
    next.removing.clear();
    if next.replicas.contains(&state.leader) {
        next.partition_epoch += 1;
        return Some(MetadataRecord::ChangePartition(PartitionRecord { topic_id, partition: index, state: next }));
    }
    next.leader = next.isr.iter().copied().find(|replica| live.contains(replica)).unwrap_or(NO_LEADER);
    Some(changed(topic_id, index, next))
}

/// Kafka's ElectLeaders for one partition. Preferred: the first replica leads when it is live
/// and in sync (ELECTION_NOT_NEEDED when it leads already, PREFERRED_LEADER_NOT_AVAILABLE when
/// it may not). Unclean: a partition without a leader gets its first live replica as leader and
/// sole ISR member, which may lose what only the old ISR had (ELECTION_NOT_NEEDED when it has a
/// leader, ELIGIBLE_LEADERS_NOT_AVAILABLE when no replica is live).
fn elect(image: &MetadataImage, topic: &str, index: i32, unclean: bool) -> Result<MetadataRecord, Refusal> {
    let unknown = || Refusal::new(ResponseError::UnknownTopicOrPartition, format!("unknown partition {topic}-{index}"));
    let found = image.topic(topic).ok_or_else(unknown)?;
    let current = found.partition(index).ok_or_else(unknown)?;
    let live = live_brokers(image, None);
    let mut next = current.clone();
    if unclean {
        if current.leader != NO_LEADER {
            return Err(Refusal::new(ResponseError::ElectionNotNeeded, "the partition has a leader".to_owned()));
        }
        let chosen = current.replicas.iter().copied().find(|replica| live.contains(replica)).ok_or_else(|| {
            Refusal::new(ResponseError::EligibleLeadersNotAvailable, "no replica of the partition is live".to_owned())
        })?;
        next.leader = chosen;
        next.isr = vec![chosen];
        next.elr.clear();
    } else {
        let preferred = current.replicas.first().copied().unwrap_or(NO_LEADER);
        if current.leader == preferred {
            return Err(Refusal::new(ResponseError::ElectionNotNeeded, "the preferred replica leads".to_owned()));
        }
        if !live.contains(&preferred) || !current.isr.contains(&preferred) {
            return Err(Refusal::new(
                ResponseError::PreferredLeaderNotAvailable,
                format!("the preferred replica {preferred} is not live and in sync"),
            ));
        }
        next.leader = preferred;
    }
    Ok(changed(found.id, index, next))
}

/// Kafka's AlterPartition: the leader of a partition, at its current epochs, sets the ISR.
/// Refusals as Kafka's: NOT_LEADER_OR_FOLLOWER for a request from anyone but the leader,
/// FENCED_LEADER_EPOCH for an old leader epoch, INVALID_UPDATE_VERSION for an old partition
/// epoch, INELIGIBLE_REPLICA for a new member that is not a live replica, INVALID_REQUEST for an
/// ISR without the leader. Only the partition epoch is bumped.
fn alter_partition(
    image: &MetadataImage,
    topic_id: sluice_engine::TopicId,
    index: i32,
    (leader, leader_epoch, partition_epoch): (i32, i32, i32),
    isr: &[i32],
) -> Result<Vec<MetadataRecord>, Refusal> {
    let unknown = || Refusal::new(ResponseError::UnknownTopicOrPartition, format!("unknown partition {index}"));
    let topic = image.topic_by_id(topic_id).ok_or_else(unknown)?;
    let current = topic.partition(index).ok_or_else(unknown)?;
    if current.leader != leader {
        return Err(Refusal::new(ResponseError::NotLeaderOrFollower, format!("{leader} does not lead the partition")));
    }
    if leader_epoch != current.leader_epoch {
        return Err(Refusal::new(ResponseError::FencedLeaderEpoch, "the leader epoch moved on".to_owned()));
    }
    if partition_epoch != current.partition_epoch {
        return Err(Refusal::new(ResponseError::InvalidUpdateVersion, "the partition epoch moved on".to_owned()));
    }
    if !isr.contains(&leader) {
        return Err(Refusal::new(ResponseError::InvalidRequest, "the ISR must hold the leader".to_owned()));
    }
    let live = live_brokers(image, None);
    let ineligible = isr
        .iter()
        .find(|member| !current.isr.contains(member) && (!current.replicas.contains(member) || !live.contains(member)));
    if let Some(member) = ineligible {
        return Err(Refusal::new(ResponseError::IneligibleReplica, format!("{member} may not join the ISR")));
    }
    let mut state = current.clone();
    state.isr = current.replicas.iter().copied().filter(|replica| isr.contains(replica)).collect();
    state.settle_elr(&current.isr, min_insync_replicas(&topic.config));
    state.partition_epoch += 1;
    // The last joining replica of a reassignment in sync: the reassignment completes.
    if let Some(completed) = complete_reassignment(topic_id, index, &state, &live) {
        return Ok(vec![completed]);
    }
    Ok(vec![MetadataRecord::ChangePartition(PartitionRecord { topic_id, partition: index, state })])
}

/// A partition change record with both epochs bumped.
fn changed(topic_id: sluice_engine::TopicId, partition: i32, mut state: PartitionState) -> MetadataRecord {
    state.leader_epoch += 1;
    state.partition_epoch += 1;
    MetadataRecord::ChangePartition(PartitionRecord { topic_id, partition, state })
}

/// Brokers that may lead: registered and not fenced, minus `excluded`.
fn live_brokers(image: &MetadataImage, excluded: Option<i32>) -> BTreeSet<i32> {
    image.live_brokers().map(|broker| broker.node_id).filter(|node| Some(*node) != excluded).collect()
}

/// The records that fence `node_id`: the fence, and for every partition whose ISR names it,
/// the ISR without it (KIP-966: even the last member leaves; below `min.insync.replicas` the
/// members that leave become eligible leader replicas), and a new leader (or none) for what it
/// led: a live ISR member, else a live ELR member, else (`unclean.leader.election.enable`) any
/// live replica.
pub(crate) fn fence(image: &MetadataImage, node_id: i32) -> Vec<MetadataRecord> {
    let mut records = vec![MetadataRecord::FenceBroker { node_id, fenced: true }];
    let live = live_brokers(image, Some(node_id));
    for topic in image.topics() {
        let min_isr = min_insync_replicas(&topic.config);
        for (index, state) in topic.partitions.iter().enumerate() {
            let leads = state.leader == node_id;
            let in_isr = state.isr.contains(&node_id);
            if !(leads || in_isr) {
                continue;
            }
            let mut next = state.clone();
            next.isr.retain(|member| *member != node_id);
            next.settle_elr(&state.isr, min_isr);
            if leads {
                next.elect_clean(&live, min_isr);
                // `unclean.leader.election.enable`: rather offline than losing data, unless the
                // topic says otherwise; then any live replica leads, alone in the ISR.
                let unclean =
                    topic.config.other.get("unclean.leader.election.enable").is_some_and(|value| value == "true");
                if next.leader == NO_LEADER
                    && unclean
                    && let Some(replica) = next.replicas.iter().copied().find(|replica| live.contains(replica))
                {
                    next.leader = replica;
                    next.isr = vec![replica];
                    next.elr.clear();
                }
            }
            records.push(if leads {
                changed(topic.id, index as i32, next)
            } else {
                let mut next = next;
                next.partition_epoch += 1;
                MetadataRecord::ChangePartition(PartitionRecord {
                    topic_id: topic.id,
                    partition: index as i32,
                    state: next,
                })
            });
        }
    }
    records
}

/// The records that bring `node_id` back: the unfence, and its leadership of leaderless
/// partitions whose ISR or ELR names it.
pub(crate) fn unfence(image: &MetadataImage, node_id: i32) -> Vec<MetadataRecord> {
    let mut records = vec![MetadataRecord::FenceBroker { node_id, fenced: false }];
    records.extend(elect_for_returning_broker(image, node_id));
    records
}

fn elect_for_returning_broker(image: &MetadataImage, node_id: i32) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    let live = live_brokers(image, None).into_iter().chain([node_id]).collect();
    for topic in image.topics() {
        let min_isr = min_insync_replicas(&topic.config);
        for (index, state) in topic.partitions.iter().enumerate() {
            if state.leader == NO_LEADER && (state.isr.contains(&node_id) || state.elr.contains(&node_id)) {
                let mut next = state.clone();
                next.elect_clean(&live, min_isr);
                if next.leader != NO_LEADER {
                    records.push(changed(topic.id, index as i32, next));
                }
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::BrokerRegistration;

    fn registration(node_id: i32) -> BrokerRegistration {
        BrokerRegistration {
            node_id,
            incarnation: 1,
            host: "h".to_owned(),
            port: 1,
            rack: None,
            fenced: false,
            clean_restart: true,
            listeners: Vec::new(),
        }
    }

    fn cluster(nodes: &[i32], topics: &[(&str, Vec<Vec<i32>>)]) -> MetadataImage {
        let mut image = MetadataImage::new("c".to_owned());
        for node in nodes {
            image.apply(&MetadataRecord::RegisterBroker(registration(*node)));
        }
        for (position, (name, partitions)) in topics.iter().enumerate() {
            image.apply(&MetadataRecord::CreateTopic {
                name: (*name).to_owned(),
                id: sluice_engine::TopicId([position as u8 + 1; 16]),
                config: sluice_engine::TopicConfig::default(),
                partitions: partitions.clone(),
            });
            // As if every follower had caught up: the whole replica set in sync.
            for (index, replicas) in partitions.iter().enumerate() {
                let topic_id = sluice_engine::TopicId([position as u8 + 1; 16]);
                let state = PartitionState { isr: replicas.clone(), ..PartitionState::new(replicas.clone()) };
                image.apply(&MetadataRecord::ChangePartition(PartitionRecord {
                    topic_id,
                    partition: index as i32,
                    state,
                }));
            }
        }
        image
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for record in records {
            image.apply(record);
        }
    }

    #[test]
    fn fencing_moves_leadership_to_a_live_in_sync_replica_or_takes_it_offline() {
        let mut image = cluster(&[1, 2, 3], &[("replicated", vec![vec![1, 2, 3]]), ("single", vec![vec![1]])]);
        let fenced = fence(&image, 1);
        apply(&mut image, &fenced);
        let replicated = image.topic("replicated").expect("topic").partitions[0].clone();
        assert_eq!(replicated.leader, 2);
        assert_eq!(replicated.isr, vec![2, 3]);
        assert_eq!((replicated.leader_epoch, replicated.partition_epoch), (1, 1));
        let single = image.topic("single").expect("topic").partitions[0].clone();
        assert_eq!(single.leader, NO_LEADER, "a single replica on a fenced broker is offline");
        assert!(single.isr.is_empty(), "the last in-sync replica leaves the ISR too");
        assert_eq!(single.elr, vec![1], "and is remembered as eligible (KIP-966)");
        assert!(image.brokers[&1].fenced);

        let unfenced = unfence(&image, 1);
        apply(&mut image, &unfenced);
        let single = image.topic("single").expect("topic").partitions[0].clone();
        assert_eq!((single.leader, single.leader_epoch), (1, 2), "the returning broker leads its partition again");
        assert_eq!(image.topic("replicated").expect("topic").partitions[0].leader, 2, "others keep their leader");
    }

    #[test]
    fn unregistering_fences_a_live_broker_then_removes_it() {
        let mut image = cluster(&[1, 2, 3], &[("t", vec![vec![1, 2, 3]])]);
        let (records, outcome) = decide(&image, &ControllerRequest::UnregisterBroker { node_id: 1 }, 0);
        assert!(matches!(outcome, Outcome::One(Ok(()))));
        apply(&mut image, &records);
        assert!(!image.brokers.contains_key(&1), "the registration is gone");
        let state = image.topic("t").expect("topic").partitions[0].clone();
        assert_eq!((state.leader, state.isr.clone()), (2, vec![2, 3]), "leadership moved first");
        assert_eq!(state.replicas, vec![1, 2, 3], "replicas stay until reassigned");
        let (records, outcome) = decide(&image, &ControllerRequest::UnregisterBroker { node_id: 1 }, 0);
        assert!(records.is_empty());
        let Outcome::One(Err(refusal)) = outcome else { panic!("an unknown broker is refused") };
        assert_eq!(refusal.code, ResponseError::BrokerIdNotRegistered.code());
    }

    #[test]
    fn alter_partition_is_taken_from_the_current_leader_at_its_epochs_only() {
        let mut image = cluster(&[1, 2, 3], &[("t", vec![vec![1, 2, 3]])]);
        let id = image.topic("t").expect("topic").id;
        let state = image.topic("t").expect("topic").partitions[0].clone();
        let epochs = (1, state.leader_epoch, state.partition_epoch);
        let shrunk = alter_partition(&image, id, 0, epochs, &[1, 3]).expect("the leader shrinks the ISR");
        apply(&mut image, &shrunk);
        let after = image.topic("t").expect("topic").partitions[0].clone();
        assert_eq!(after.isr, vec![1, 3]);
        assert_eq!((after.leader_epoch, after.partition_epoch), (state.leader_epoch, state.partition_epoch + 1));
        let stale = alter_partition(&image, id, 0, epochs, &[1, 2, 3]).expect_err("an old partition epoch");
        assert_eq!(stale.error, ResponseError::InvalidUpdateVersion);
        let now = (1, after.leader_epoch, after.partition_epoch);
        let follower = alter_partition(&image, id, 0, (2, now.1, now.2), &[2, 3]).expect_err("not the leader");
        assert_eq!(follower.error, ResponseError::NotLeaderOrFollower);
        let without_leader = alter_partition(&image, id, 0, now, &[3]).expect_err("the leader must stay");
        assert_eq!(without_leader.error, ResponseError::InvalidRequest);
        let fenced = fence(&image, 2);
        apply(&mut image, &fenced);
        let after = image.topic("t").expect("topic").partitions[0].clone();
        let now = (1, after.leader_epoch, after.partition_epoch);
        let fenced = alter_partition(&image, id, 0, now, &[1, 2, 3]).expect_err("a fenced broker may not join");
        assert_eq!(fenced.error, ResponseError::IneligibleReplica);
        let grown = alter_partition(&image, id, 0, now, &[3, 1]).expect("a live replica rejoins");
        apply(&mut image, &grown);
        assert_eq!(image.topic("t").expect("topic").partitions[0].isr, vec![1, 3], "ISR in replica order");
    }

    #[test]
    fn a_quick_restart_gives_up_leadership_to_the_isr_first() {
        let mut image = cluster(&[1, 2, 3], &[("replicated", vec![vec![1, 2, 3]]), ("single", vec![vec![1]])]);
        let again = BrokerRegistration { incarnation: 2, ..registration(1) };
        let records = register(&image, &again);
        apply(&mut image, &records);
        let replicated = image.topic("replicated").expect("topic").partitions[0].clone();
        assert_eq!((replicated.leader, replicated.leader_epoch), (2, 1), "leadership moved at a new epoch");
        assert!(!replicated.isr.contains(&1), "the new incarnation rejoins the ISR once caught up");
        let single = image.topic("single").expect("topic").partitions[0].clone();
        assert_eq!((single.leader, single.leader_epoch), (1, 2), "its only replica leads again, at a new epoch");
        assert!(!image.brokers[&1].fenced);
        assert_eq!(image.brokers[&1].incarnation, 2);
        let same = register(&image, &again);
        assert_eq!(same.len(), 1, "the same incarnation registering again changes nothing else");
    }

    #[test]
    fn a_broker_registering_fenced_leads_nothing_until_unfenced() {
        let mut image = cluster(&[1, 2, 3], &[("replicated", vec![vec![1, 2, 3]]), ("single", vec![vec![1]])]);
        let catching_up = BrokerRegistration { incarnation: 2, fenced: true, ..registration(1) };
        let records = register(&image, &catching_up);
        apply(&mut image, &records);
        assert!(image.brokers[&1].fenced, "fenced until it has caught up with the metadata log");
        let single = image.topic("single").expect("topic").partitions[0].clone();
        assert_eq!(single.leader, NO_LEADER, "not elected before it knows it leads");
        assert_eq!(image.topic("replicated").expect("topic").partitions[0].leader, 2);

        let unfenced = unfence(&image, 1);
        apply(&mut image, &unfenced);
        assert!(!image.brokers[&1].fenced);
        let single = image.topic("single").expect("topic").partitions[0].clone();
        assert_eq!((single.leader, single.leader_epoch), (1, 2), "elected once unfenced, at a new epoch");
        assert_eq!(image.topic("replicated").expect("topic").partitions[0].leader, 2, "others keep their leader");
    }

    #[test]
    fn elections_follow_kafkas_rules() {
        let mut image = cluster(&[1, 2, 3], &[("t", vec![vec![1, 2, 3]]), ("lonely", vec![vec![2]])]);
        let not_needed = elect(&image, "t", 0, false).expect_err("1 leads");
        assert_eq!(not_needed.error, ResponseError::ElectionNotNeeded);
        let moved = move_leadership(&image, "t", 0, Some(2)).expect("moved");
        apply(&mut image, &moved);
        let record = elect(&image, "t", 0, false).expect("1 is live and in sync");
        apply(&mut image, &[record]);
        assert_eq!(image.topic("t").expect("topic").partitions[0].leader, 1);

        let fenced = fence(&image, 2);
        apply(&mut image, &fenced);
        assert_eq!(image.topic("lonely").expect("topic").partitions[0].leader, NO_LEADER);
        let nobody = elect(&image, "lonely", 0, true).expect_err("its only replica is down");
        assert_eq!(nobody.error, ResponseError::EligibleLeadersNotAvailable);
        let unfenced = unfence(&image, 2);
        apply(&mut image, &unfenced);
        let busy = elect(&image, "t", 0, true).expect_err("t has a leader");
        assert_eq!(busy.error, ResponseError::ElectionNotNeeded);
    }

    #[test]
    fn a_reassignment_completes_once_the_joining_replicas_are_in_sync() {
        let mut image = cluster(&[1, 2, 3, 4], &[("t", vec![vec![1, 2]])]);
        let id = image.topic("t").expect("topic").id;
        let started = reassign(&image, "t", 0, Some(&[3, 4])).expect("valid target");
        apply(&mut image, &[started]);
        let state = image.topic("t").expect("topic").partitions[0].clone();
        assert_eq!(state.replicas, vec![3, 4, 1, 2], "target first, then the leaving replicas");
        assert_eq!((state.adding.clone(), state.removing.clone()), (vec![3, 4], vec![1, 2]));
        assert_eq!(state.leader, 1, "the leader keeps leading while the new replicas catch up");
        let epochs = |image: &MetadataImage| {
            let state = &image.topic("t").expect("topic").partitions[0];
            (state.leader, state.leader_epoch, state.partition_epoch)
        };
        let (leader, leader_epoch, partition_epoch) = epochs(&image);
        let joined =
            alter_partition(&image, id, 0, (leader, leader_epoch, partition_epoch), &[1, 2, 3]).expect("3 joins");
        apply(&mut image, &joined);
        assert_eq!(image.topic("t").expect("topic").partitions[0].adding, vec![3, 4], "4 is still catching up");
        let (leader, leader_epoch, partition_epoch) = epochs(&image);
        let done =
            alter_partition(&image, id, 0, (leader, leader_epoch, partition_epoch), &[1, 2, 3, 4]).expect("4 joins");
        apply(&mut image, &done);
        let state = image.topic("t").expect("topic").partitions[0].clone();
        assert_eq!(state.replicas, vec![3, 4]);
        assert_eq!(state.isr, vec![3, 4]);
        assert_eq!(state.leader, 3, "leadership moved to an in-sync target replica");
        assert!(state.adding.is_empty() && state.removing.is_empty());
        assert_eq!(
            reassign(&image, "t", 0, None).expect_err("nothing to cancel").error,
            ResponseError::NoReassignmentInProgress
        );
        assert_eq!(
            reassign(&image, "t", 0, Some(&[3, 9])).expect_err("no broker 9").error,
            ResponseError::InvalidReplicaAssignment
        );
        let shrink = reassign(&image, "t", 0, Some(&[3])).expect("drop a replica");
        apply(&mut image, &[shrink]);
        assert_eq!(
            image.topic("t").expect("topic").partitions[0].replicas,
            vec![3],
            "nothing to wait for: done at once"
        );
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let mut image = cluster(&[1], &[]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (records, outcome) = decide(&image, &ControllerRequest::AllocateProducerIds { count: 1000 }, 0);
            apply(&mut image, &records);
            let Outcome::ProducerIds { start, count } = outcome else { panic!("a block") };
            seen.push((start, start + count));
        }
        assert_eq!(seen, vec![(0, 1000), (1000, 2000), (2000, 3000)]);
        let (records, _) = decide(&image, &ControllerRequest::AdoptProducerIds { next: 500 }, 0);
        assert!(records.is_empty(), "adopting ids below the blocks changes nothing");
    }

    #[test]
    fn config_changes_apply_to_the_config_the_controller_holds() {
        use crate::metadata::config_change::{ConfigChange, ConfigOperation, OPERATION_SET};
        let mut image = cluster(&[1], &[("t", vec![vec![1]])]);
        for (name, value) in [("retention.ms", "5"), ("segment.ms", "7")] {
            let operations = vec![ConfigOperation {
                name: name.to_owned(),
                operation: OPERATION_SET,
                value: Some(value.to_owned()),
            }];
            let change = ConfigChange::Incremental { operations, defaults: sluice_engine::TopicConfig::default() };
            let request = ControllerRequest::AlterTopicConfig { name: "t".to_owned(), change, validate_only: false };
            let (records, _) = decide(&image, &request, 0);
            apply(&mut image, &records);
        }
        let config = &image.topic("t").expect("topic").config;
        assert_eq!((config.retention_ms, config.segment_ms), (5, 7), "the second change kept the first");
    }

    /// A topic `t` of one partition on `replicas`, all in sync, with `min.insync.replicas`.
    fn with_min_isr(nodes: &[i32], replicas: &[i32], min_isr: usize) -> MetadataImage {
        let mut image = cluster(nodes, &[]);
        let mut config = sluice_engine::TopicConfig::default();
        config.other.insert("min.insync.replicas".to_owned(), min_isr.to_string());
        image.apply(&MetadataRecord::CreateTopic {
            name: "t".to_owned(),
            id: sluice_engine::TopicId([9; 16]),
            config,
            partitions: vec![replicas.to_vec()],
        });
        image
    }

    fn state(image: &MetadataImage) -> PartitionState {
        image.topic("t").expect("topic").partitions[0].clone()
    }

    #[test]
    fn replicas_that_leave_a_too_small_isr_stay_eligible_leaders() {
        let mut image = with_min_isr(&[1, 2, 3], &[1, 2, 3], 2);
        let records = fence(&image, 3);
        apply(&mut image, &records);
        assert_eq!((state(&image).isr, state(&image).elr), (vec![1, 2], vec![]), "3 left an ISR of min size");
        let records = fence(&image, 2);
        apply(&mut image, &records);
        assert_eq!((state(&image).isr, state(&image).elr), (vec![1], vec![2]), "below min: 2 stays eligible");
        let records = fence(&image, 1);
        apply(&mut image, &records);
        let offline = state(&image);
        assert_eq!((offline.leader, offline.isr.clone(), offline.elr.clone()), (NO_LEADER, vec![], vec![1, 2]));
        // 3 left while the ISR was big enough: it may lack records, so it is not elected.
        let records = unfence(&image, 3);
        apply(&mut image, &records);
        assert_eq!(state(&image).leader, NO_LEADER, "3 is not eligible");
        // 2 is, unless it crashed: a restart after a crash takes it out of the ELR.
        let crashed = BrokerRegistration { incarnation: 7, clean_restart: false, ..registration(1) };
        let mut after_crash = image.clone();
        let records = register(&after_crash, &crashed);
        apply(&mut after_crash, &records);
        let offline = state(&after_crash);
        assert_eq!((offline.leader, offline.elr.clone()), (NO_LEADER, vec![2]), "1 crashed: no longer eligible");
        // The last eligible replica stays one after a crash: nobody can hold more.
        let mut single = with_min_isr(&[1], &[1], 1);
        let records =
            register(&single, &BrokerRegistration { incarnation: 9, clean_restart: false, ..registration(1) });
        apply(&mut single, &records);
        let back = state(&single);
        assert_eq!(
            (back.leader, back.isr.clone(), back.elr.clone()),
            (1, vec![1], vec![]),
            "a crashed single replica leads again"
        );
        // A clean restart of 2: elected cleanly, alone in the ISR, 1 still eligible.
        let clean = BrokerRegistration { incarnation: 8, ..registration(2) };
        let records = register(&image, &clean);
        apply(&mut image, &records);
        let led = state(&image);
        assert_eq!((led.leader, led.isr.clone(), led.elr.clone()), (2, vec![2], vec![1]));
        // 3 catches up and rejoins: the ISR reaches min.insync.replicas, the ELR empties.
        let records = alter_partition(&image, led_id(&image), 0, (2, led.leader_epoch, led.partition_epoch), &[2, 3])
            .expect("ok");
        apply(&mut image, &records);
        assert_eq!((state(&image).isr, state(&image).elr), (vec![2, 3], vec![]));
    }

    fn led_id(image: &MetadataImage) -> sluice_engine::TopicId {
        image.topic("t").expect("topic").id
    }

    /// A step of a random schedule for the ELR property below.
    #[derive(Debug, Clone)]
    enum ElrStep {
        Fence(i32),
        Unfence(i32),
        /// The leader drops a follower from the ISR (it lagged).
        Shrink(i32),
        /// A follower catches up with the leader and joins the ISR.
        Expand(i32),
        /// The leader commits new records (acks=all): only possible with a big enough ISR.
        Commit,
    }

    fn elr_step() -> impl proptest::strategy::Strategy<Value = ElrStep> {
        use proptest::prelude::*;
        prop_oneof![
            (1..=3i32).prop_map(ElrStep::Fence),
            (1..=3i32).prop_map(ElrStep::Unfence),
            (1..=3i32).prop_map(ElrStep::Shrink),
            (1..=3i32).prop_map(ElrStep::Expand),
            Just(ElrStep::Commit),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Under any schedule of fences, returns, ISR changes and commits, with
        /// `min.insync.replicas` 1 to 3: the ISR and ELR never overlap, and every member of
        /// either, and the leader, holds every committed record (the model tracks who does:
        /// a commit reaches the ISR, a joining follower catches up first); no election is unclean.
        #[test]
        fn every_eligible_leader_holds_every_committed_record(
            min_isr in 1..=3usize,
            steps in proptest::collection::vec(elr_step(), 1..60),
        ) {
            let mut image = with_min_isr(&[1, 2, 3], &[1, 2, 3], min_isr);
            let mut complete: BTreeSet<i32> = [1, 2, 3].into();
            for step in steps {
                let current = state(&image);
                let at = (current.leader, current.leader_epoch, current.partition_epoch);
                let records = match step {
                    ElrStep::Fence(node) if !image.brokers[&node].fenced => fence(&image, node),
                    ElrStep::Unfence(node) if image.brokers[&node].fenced => unfence(&image, node),
                    ElrStep::Shrink(node) if current.leader != NO_LEADER && node != current.leader => {
                        let isr: Vec<i32> = current.isr.iter().copied().filter(|member| *member != node).collect();
                        alter_partition(&image, led_id(&image), 0, at, &isr).unwrap_or_default()
                    }
                    ElrStep::Expand(node) if current.leader != NO_LEADER && !current.isr.contains(&node) => {
                        let isr: Vec<i32> = current.isr.iter().copied().chain([node]).collect();
                        let records = alter_partition(&image, led_id(&image), 0, at, &isr).unwrap_or_default();
                        if !records.is_empty() {
                            // It fetched everything the leader has before the leader proposed it.
                            proptest::prop_assert!(complete.contains(&current.leader));
                            complete.insert(node);
                        }
                        records
                    }
                    ElrStep::Commit if current.leader != NO_LEADER && current.isr.len() >= min_isr => {
                        complete = current.isr.iter().copied().collect();
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                apply(&mut image, &records);
                let after = state(&image);
                proptest::prop_assert!(after.isr.iter().all(|member| !after.elr.contains(member)), "{:?}", after);
                for member in after.isr.iter().chain(&after.elr) {
                    proptest::prop_assert!(complete.contains(member), "{} lacks committed records: {:?}", member, after);
                }
                if after.leader != NO_LEADER {
                    proptest::prop_assert!(after.isr.contains(&after.leader), "{:?}", after);
                }
                if after.isr.len() >= min_isr {
                    proptest::prop_assert!(after.elr.is_empty(), "{:?}", after);
                }
            }
        }
    }
}
