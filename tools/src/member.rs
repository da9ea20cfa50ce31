//! A simple consumer-group member (the classic protocol, protocol type "consumer", range
//! assignment) for `consume --group`, and the committed-offset requests that `groups` shares.
//!
//! Joining, in steps:
//! 1. `FindCoordinator` for the group; open a connection to the coordinator whose timeout covers
//!    the rebalance timeout (a `JoinGroup` is answered only when the rebalance completes).
//! 2. `JoinGroup` with an empty member id; a v4+ coordinator answers `MEMBER_ID_REQUIRED` with an
//!    id to join again with.
//! 3. The member the coordinator elected leader computes the range assignment from every
//!    member's subscription and sends it in `SyncGroup`; the others send an empty `SyncGroup`.
//!    Each gets its own partitions back.
//! 4. A heartbeat thread (its own connection) sends `Heartbeat` every few seconds and raises a
//!    flag when the coordinator answers that the group is rebalancing or the member is unknown;
//!    the consume loop then commits and joins again.
//! 5. On exit: `OffsetCommit` of the positions, then `LeaveGroup`.
//!
//! Threads: the consume loop's (main) thread and the heartbeat thread, which share only an
//! `AtomicBool` and a stop channel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kafka_protocol::ResponseError;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_client::group::{decode_assignment, decode_subscription, encode_assignment, encode_subscription};
use sluice_client::requests::BrokerInfo;
use sluice_client::{ClientError, Connection, ConnectionConfig};

use crate::session::{RETRY_BACKOFF, RETRY_COUNT_MAX, Session, describe_error, find_coordinator};

/// The consumer protocol's type and the one assignor offered.
const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
/// Group timeouts, as the Java consumer's defaults would be for a console tool: a member that
/// stops heartbeating for 10 s is removed; a rebalance waits up to 30 s for members to rejoin.
const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// Committed offsets of one group: topic -> partition -> offset (-1 when none).
pub(crate) type Committed = BTreeMap<String, BTreeMap<i32, i64>>;

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn group_error(group: &str, api: &str, error: ResponseError) -> anyhow::Error {
    anyhow::anyhow!("{api} for group {group} failed: {error}")
}

/// `OffsetFetch`: committed offsets of `group` for `topics` (`None`: every topic it has).
///
/// # Errors
/// Connection errors and group-level errors.
pub(crate) fn fetch_committed(
    coordinator: &mut Connection,
    group: &str,
    topics: Option<&[(String, Vec<i32>)]>,
) -> Result<Committed> {
    let version = coordinator.versions().version_for(ApiKey::OffsetFetch)?;
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        let wanted = topics.map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
        let group_request = OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_member_id(None)
            .with_member_epoch(-1)
            .with_topics(wanted);
        request = request.with_groups(vec![group_request]);
    } else {
        let wanted = topics.map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
        request = request.with_group_id(GroupId(str_bytes(group))).with_topics(wanted);
    }
    let response = coordinator.send(&request).context("OffsetFetch request failed")?;
    let mut committed = Committed::new();
    let mut insert = |topic: &str, partition: i32, offset: i64, code: i16| -> Result<()> {
        if let Some(error) = code.err() {
            bail!("OffsetFetch for {topic}-{partition} failed: {error}");
        }
        committed.entry(topic.to_owned()).or_default().insert(partition, offset);
        Ok(())
    };
    if version >= 8 {
        for group_result in &response.groups {
            if let Some(error) = group_result.error_code.err() {
                return Err(group_error(group, "OffsetFetch", error));
            }
            for topic in &group_result.topics {
                for partition in &topic.partitions {
                    insert(&topic.name.0, partition.partition_index, partition.committed_offset, partition.error_code)?;
                }
            }
        }
    } else {
        if let Some(error) = response.error_code.err() {
            return Err(group_error(group, "OffsetFetch", error));
        }
        for topic in &response.topics {
            for partition in &topic.partitions {
                insert(&topic.name.0, partition.partition_index, partition.committed_offset, partition.error_code)?;
            }
        }
    }
    Ok(committed)
}

/// Who commits: a live member (generation and id) or an admin tool (generation -1, no member id,
/// which the coordinator accepts only for an empty group).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committer<'a> {
    pub(crate) generation_id: i32,
    pub(crate) member_id: &'a str,
}

impl Committer<'_> {
    pub(crate) const ADMIN: Committer<'static> = Committer { generation_id: -1, member_id: "" };
}

/// `OffsetCommit` of `offsets` (partition -> next offset to read) of one topic.
///
/// # Errors
/// Connection errors and the first partition error.
pub(crate) fn commit_offsets(
    coordinator: &mut Connection,
    group: &str,
    committer: Committer<'_>,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let partitions = offsets
        .iter()
        .map(|(partition, offset)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(committer.generation_id)
        .with_member_id(str_bytes(committer.member_id))
        .with_retention_time_ms(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default().with_name(TopicName(str_bytes(topic))).with_partitions(partitions),
        ]);
    let response = coordinator.send(&request).context("OffsetCommit request failed")?;
    for topic_result in &response.topics {
        for partition in &topic_result.partitions {
            if let Some(error) = partition.error_code.err() {
                let reason = match error {
                    ResponseError::UnknownMemberId | ResponseError::IllegalGeneration
                        if committer.generation_id < 0 =>
                    {
                        "the group has active members; stop its consumers first".to_owned()
                    }
                    other => other.to_string(),
                };
                bail!("cannot commit offsets of group {group} for {topic}-{}: {reason}", partition.partition_index);
            }
        }
    }
    Ok(())
}

/// Range assignment (Kafka's `RangeAssignor`): per topic, members subscribed to it in member-id
/// order each get a contiguous range; the first `partitions % members` get one extra.
pub(crate) fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<(String, Vec<i32>)>> {
    let mut assignment: BTreeMap<String, Vec<(String, Vec<i32>)>> =
        subscriptions.keys().map(|member| (member.clone(), Vec::new())).collect();
    for (topic, partition_count) in partition_counts {
        let members: Vec<&String> =
            subscriptions.iter().filter(|(_, topics)| topics.contains(topic)).map(|(member, _)| member).collect();
        if members.is_empty() {
            continue;
        }
        let member_count = members.len() as i32;
        let (share, extra) = (partition_count / member_count, partition_count % member_count);
        for (index, member) in members.into_iter().enumerate() {
            let index = index as i32;
            let start = index * share + index.min(extra);
            let length = share + i32::from(index < extra);
            if length > 0 {
                let entry = assignment.get_mut(member).expect("every member has an entry");
                entry.push((topic.clone(), (start..start + length).collect()));
            }
        }
    }
    assignment
}

/// Outcome of one `JoinGroup` + `SyncGroup` round.
enum Round {
    Joined { generation_id: i32, partitions: Vec<i32> },
    Retry,
}

/// A member of one group, consuming one topic.
#[derive(Debug)]
pub(crate) struct GroupMember {
    pub(crate) group: String,
    topic: String,
    coordinator_info: BrokerInfo,
    coordinator: Connection,
    config: ConnectionConfig,
    pub(crate) member_id: String,
    pub(crate) generation_id: i32,
    pub(crate) partitions: Vec<i32>,
    rebalance: Arc<AtomicBool>,
    heartbeat: Option<(Sender<()>, JoinHandle<()>)>,
}

impl GroupMember {
    /// Finds the coordinator and joins `group` for `topic`.
    ///
    /// # Errors
    /// When the broker has no group support, or joining fails.
    pub(crate) fn join(session: &mut Session, group: &str, topic: &str) -> Result<Self> {
        let coordinator_info = find_coordinator(session.connection(), group)?;
        let mut config = session.config().clone();
        let rebalance_timeout = Duration::from_millis(REBALANCE_TIMEOUT_MS as u64);
        config.request_timeout = config.request_timeout.max(rebalance_timeout + Duration::from_secs(5));
        let coordinator = Session::connect_to(&coordinator_info.address(), &config)?;
        let mut member = Self {
            group: group.to_owned(),
            topic: topic.to_owned(),
            coordinator_info,
            coordinator,
            config,
            member_id: String::new(),
            generation_id: -1,
            partitions: Vec::new(),
            rebalance: Arc::new(AtomicBool::new(false)),
            heartbeat: None,
        };
        member.rejoin(session)?;
        Ok(member)
    }

    /// Whether the coordinator asked for a rebalance (join again with [`Self::rejoin`]).
    pub(crate) fn needs_rejoin(&self) -> bool {
        self.rebalance.load(Ordering::Relaxed)
    }

    /// Joins (again), replacing the assignment; restarts the heartbeat thread.
    ///
    /// # Errors
    /// Non-retriable group errors, or retriable ones that outlast the retries.
    pub(crate) fn rejoin(&mut self, session: &mut Session) -> Result<()> {
        self.stop_heartbeat();
        for _ in 0..RETRY_COUNT_MAX {
            match self.round(session)? {
                Round::Joined { generation_id, partitions } => {
                    self.generation_id = generation_id;
                    self.partitions = partitions;
                    self.rebalance.store(false, Ordering::Relaxed);
                    self.start_heartbeat()?;
                    return Ok(());
                }
                Round::Retry => std::thread::sleep(RETRY_BACKOFF),
            }
        }
        bail!("could not join group {} after {RETRY_COUNT_MAX} attempts", self.group)
    }

    fn round(&mut self, session: &mut Session) -> Result<Round> {
        let subscription = encode_subscription(&[&self.topic])?;
        let version = self.coordinator.versions().version_for(ApiKey::JoinGroup)?;
        // v0 has no rebalance timeout (the session timeout bounds the rebalance).
        let rebalance_timeout_ms = if version >= 1 { REBALANCE_TIMEOUT_MS } else { -1 };
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(rebalance_timeout_ms)
            .with_member_id(str_bytes(&self.member_id))
            .with_protocol_type(str_bytes(PROTOCOL_TYPE))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(str_bytes(ASSIGNOR)).with_metadata(subscription),
            ]);
        let joined = self.coordinator.send(&request).context("JoinGroup request failed")?;
        match joined.error_code.err() {
            None => {}
            Some(ResponseError::MemberIdRequired) => {
                self.member_id = joined.member_id.to_string();
                return Ok(Round::Retry);
            }
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Ok(Round::Retry);
            }
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                self.reconnect(session)?;
                return Ok(Round::Retry);
            }
            Some(error) if error.is_retriable() || error == ResponseError::RebalanceInProgress => {
                return Ok(Round::Retry);
            }
            Some(error) => return Err(group_error(&self.group, "JoinGroup", error)),
        }
        self.member_id = joined.member_id.to_string();
        let assignments = if joined.leader == joined.member_id { Self::assign(session, &joined)? } else { Vec::new() };
        self.sync(joined.generation_id, assignments)
    }

    /// As the leader: the range assignment of every member, encoded for `SyncGroup`.
    fn assign(session: &mut Session, joined: &JoinGroupResponse) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = BTreeMap::new();
        for member in &joined.members {
            let subscription = decode_subscription(&member.metadata)
                .with_context(|| format!("member {} sent an unreadable subscription", member.member_id))?;
            let topics: Vec<String> = subscription.topics.iter().map(ToString::to_string).collect();
            subscriptions.insert(member.member_id.to_string(), topics);
        }
        let mut partition_counts = BTreeMap::new();
        for topic in subscriptions.values().flatten() {
            if !partition_counts.contains_key(topic) {
                let info = session.topic(topic)?;
                partition_counts.insert(topic.clone(), info.partitions.len() as i32);
            }
        }
        let mut assignments = Vec::new();
        for (member, assigned) in range_assign(&subscriptions, &partition_counts) {
            let bytes = encode_assignment(&assigned)?;
            assignments
                .push(SyncGroupRequestAssignment::default().with_member_id(str_bytes(&member)).with_assignment(bytes));
        }
        Ok(assignments)
    }

    fn sync(&mut self, generation_id: i32, assignments: Vec<SyncGroupRequestAssignment>) -> Result<Round> {
        let mut request = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_generation_id(generation_id)
            .with_member_id(str_bytes(&self.member_id))
            .with_assignments(assignments);
        // v5+ names the protocol; the codec refuses those fields below v5.
        if self.coordinator.versions().version_for(ApiKey::SyncGroup)? >= 5 {
            request = request
                .with_protocol_type(Some(str_bytes(PROTOCOL_TYPE)))
                .with_protocol_name(Some(str_bytes(ASSIGNOR)));
        }
        let synced = self.coordinator.send(&request).context("SyncGroup request failed")?;
        match synced.error_code.err() {
            None => {}
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Ok(Round::Retry);
            }
            Some(error) if error.is_retriable() || error == ResponseError::RebalanceInProgress => {
                return Ok(Round::Retry);
            }
            Some(ResponseError::IllegalGeneration) => return Ok(Round::Retry),
            Some(error) => return Err(group_error(&self.group, "SyncGroup", error)),
        }
        let assigned = decode_assignment(&synced.assignment).context("the leader sent an unreadable assignment")?;
        let mut partitions: Vec<i32> = assigned
            .into_iter()
            .filter(|(topic, _)| *topic == self.topic)
            .flat_map(|(_, partitions)| partitions)
            .collect();
        partitions.sort_unstable();
        Ok(Round::Joined { generation_id, partitions })
    }

    fn reconnect(&mut self, session: &mut Session) -> Result<()> {
        self.coordinator_info = find_coordinator(session.connection(), &self.group)?;
        self.coordinator = Session::connect_to(&self.coordinator_info.address(), &self.config)?;
        Ok(())
    }

    /// Committed offsets of the assigned partitions (-1 where none).
    ///
    /// # Errors
    /// See [`fetch_committed`].
    pub(crate) fn committed(&mut self) -> Result<BTreeMap<i32, i64>> {
        let wanted = [(self.topic.clone(), self.partitions.clone())];
        let mut committed = fetch_committed(&mut self.coordinator, &self.group, Some(&wanted))?;
        Ok(committed.remove(&self.topic).unwrap_or_default())
    }

    /// Commits `positions` (the next offsets to read) as this member.
    ///
    /// # Errors
    /// See [`commit_offsets`].
    pub(crate) fn commit(&mut self, positions: &BTreeMap<i32, i64>) -> Result<()> {
        let committer = Committer { generation_id: self.generation_id, member_id: &self.member_id };
        commit_offsets(&mut self.coordinator, &self.group, committer, &self.topic, positions)
    }

    /// Leaves the group, so the others rebalance at once instead of after the session timeout.
    ///
    /// # Errors
    /// Connection errors; a group error is ignored (the member is gone either way).
    pub(crate) fn leave(mut self) -> Result<()> {
        self.stop_heartbeat();
        let version = self.coordinator.versions().version_for(ApiKey::LeaveGroup)?;
        let mut request = LeaveGroupRequest::default().with_group_id(GroupId(str_bytes(&self.group)));
        // The codec refuses fields a version lacks: v0-2 name one member, v3+ a list, v5+ a reason.
        if version >= 3 {
            let mut identity = MemberIdentity::default().with_member_id(str_bytes(&self.member_id));
            if version >= 5 {
                identity = identity.with_reason(Some(StrBytes::from_static_str("sluicectl consume ended")));
            }
            request = request.with_members(vec![identity]);
        } else {
            request = request.with_member_id(str_bytes(&self.member_id));
        }
        self.coordinator.send(&request).context("LeaveGroup request failed")?;
        Ok(())
    }

    fn start_heartbeat(&mut self) -> Result<()> {
        let connection = Session::connect_to(&self.coordinator_info.address(), &self.config)?;
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_generation_id(self.generation_id)
            .with_member_id(str_bytes(&self.member_id));
        let rebalance = Arc::clone(&self.rebalance);
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("heartbeat".to_owned())
            .spawn(move || heartbeat_loop(connection, &request, &rebalance, &stopped))?;
        self.heartbeat = Some((stop, thread));
        Ok(())
    }

    fn stop_heartbeat(&mut self) {
        if let Some((stop, thread)) = self.heartbeat.take() {
            drop(stop);
            // A panicked heartbeat thread only means no more heartbeats; the member is leaving.
            let _ = thread.join();
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

fn heartbeat_loop(
    mut connection: Connection,
    request: &HeartbeatRequest,
    rebalance: &AtomicBool,
    stopped: &mpsc::Receiver<()>,
) {
    loop {
        match stopped.recv_timeout(HEARTBEAT_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let error = match connection.send(request) {
            Ok(response) => response.error_code.err(),
            Err(ClientError::Broker { error, .. }) => Some(error),
            // The connection broke: the consume loop rejoins, which reconnects.
            Err(_) => Some(ResponseError::CoordinatorNotAvailable),
        };
        match error {
            None => {}
            Some(error) => {
                if error != ResponseError::RebalanceInProgress {
                    eprintln!("sluicectl: heartbeat: {}; rejoining the group", describe_error(error, None));
                }
                rebalance.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members
            .iter()
            .map(|(member, topics)| ((*member).to_owned(), topics.iter().map(|topic| (*topic).to_owned()).collect()))
            .collect()
    }

    #[test]
    fn range_gives_leading_members_the_extra_partitions() {
        let subscriptions = subscriptions(&[("m-b", &["t"]), ("m-a", &["t"]), ("m-c", &["t"])]);
        let counts = BTreeMap::from([("t".to_owned(), 7)]);
        let assignment = range_assign(&subscriptions, &counts);
        assert_eq!(assignment["m-a"], [("t".to_owned(), vec![0, 1, 2])]);
        assert_eq!(assignment["m-b"], [("t".to_owned(), vec![3, 4])]);
        assert_eq!(assignment["m-c"], [("t".to_owned(), vec![5, 6])]);
    }

    #[test]
    fn range_leaves_surplus_members_empty_and_respects_subscriptions() {
        let subscriptions = subscriptions(&[("a", &["t", "u"]), ("b", &["t"]), ("c", &["t"])]);
        let counts = BTreeMap::from([("t".to_owned(), 2), ("u".to_owned(), 3)]);
        let assignment = range_assign(&subscriptions, &counts);
        assert_eq!(assignment["a"], [("t".to_owned(), vec![0]), ("u".to_owned(), vec![0, 1, 2])]);
        assert_eq!(assignment["b"], [("t".to_owned(), vec![1])]);
        assert!(assignment["c"].is_empty());
    }
}
