//! `groups describe`: one group as its coordinator sees it, whichever protocol the group speaks,
//! with its members, their assignments, committed offsets and lag.
//!
//! Which API describes a group is decided the way Kafka's admin client decides it:
//! 1. Find the group's coordinator and send it `ConsumerGroupDescribe` (KIP-848).
//! 2. If the broker lacks that API, or answers `GROUP_ID_NOT_FOUND` (the group is classic, or
//!    does not exist) or `UNSUPPORTED_VERSION` (its new group coordinator is off), send
//!    `DescribeGroups` instead; a group neither API knows is `Dead`.
//! 3. Retriable errors (a coordinator loading or moving) repeat the step that met them.
//!
//! Both answers become one [`GroupView`], so the lag table, the JSON and `reset-offsets` do not
//! care which protocol the group speaks; fields one protocol lacks are `None` (JSON null).
//! Main thread only.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use kafka_protocol::ResponseError;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::consumer_group_describe_response::{
    DescribedGroup as ConsumerDescribed, Member as ConsumerMember, TopicPartitions,
};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, DescribeGroupsRequest, GroupId};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};
use sluice_client::ClientError;
use sluice_client::group::{decode_assignment, decode_subscription};
use sluice_client::requests::LATEST_TIMESTAMP;
use uuid::Uuid;

use crate::member::{Committed, fetch_committed};
use crate::output::{Output, Table};
use crate::session::{RETRY_BACKOFF, RETRY_COUNT_MAX, Session, describe_error};

/// Which group protocol a group speaks, named as `ListGroups` v5 names group types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupType {
    /// JoinGroup/SyncGroup/Heartbeat, described by `DescribeGroups`.
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat, described by `ConsumerGroupDescribe`.
    Consumer,
}

impl GroupType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

/// Topic -> partitions, as a member owns them or is meant to.
type Assignment = Vec<(String, Vec<i32>)>;

/// A group as `describe` and `reset-offsets` use it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GroupView {
    pub(super) group_type: GroupType,
    pub(super) state: String,
    pub(super) protocol_type: String,
    /// The partition assignor: a classic group's chosen protocol, a consumer group's assignor.
    pub(super) assignor: String,
    pub(super) group_epoch: Option<i32>,
    /// The epoch of the group's target assignment.
    pub(super) assignment_epoch: Option<i32>,
    pub(super) members: Vec<MemberView>,
}

/// A member as `describe` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MemberView {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    rack_id: Option<String>,
    member_epoch: Option<i32>,
    subscribed_topics: Option<Vec<String>>,
    subscribed_regex: Option<String>,
    /// The partitions the member owns now.
    assignment: Assignment,
    /// The partitions the coordinator is moving the member to (consumer groups only).
    target_assignment: Option<Assignment>,
}

impl GroupView {
    /// A group no coordinator knows.
    fn dead() -> Self {
        Self {
            group_type: GroupType::Classic,
            state: "Dead".to_owned(),
            protocol_type: String::new(),
            assignor: String::new(),
            group_epoch: None,
            assignment_epoch: None,
            members: Vec::new(),
        }
    }

    /// Whether the group is `state` (group states are compared case-insensitively, as Kafka does).
    pub(super) fn is_in_state(&self, state: &str) -> bool {
        self.state.eq_ignore_ascii_case(state)
    }
}

/// What one group's `ConsumerGroupDescribe` result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A consumer group, described.
    Described,
    /// Not a consumer group here: ask `DescribeGroups`.
    AskClassic,
    /// Ask again after a pause.
    Retry,
    Fail(ResponseError),
}

fn verdict_of(error: Option<ResponseError>, retries_left: bool) -> Verdict {
    match error {
        None => Verdict::Described,
        Some(ResponseError::GroupIdNotFound | ResponseError::UnsupportedVersion) => Verdict::AskClassic,
        // The coordinator may still be loading its groups, or the group may have moved.
        Some(error) if error.is_retriable() && retries_left => Verdict::Retry,
        Some(error) => Verdict::Fail(error),
    }
}

/// Describes `group` at its coordinator: `ConsumerGroupDescribe` first, `DescribeGroups` when the
/// group is not a consumer group or the broker cannot tell.
///
/// # Errors
/// Connection errors, and group errors other than "not found" that outlast the retries.
pub(super) fn describe_group(session: &mut Session, group: &str) -> Result<GroupView> {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]);
    let mut attempt = 0;
    loop {
        let described = match session.coordinator(group)?.send(&request) {
            Ok(response) => response.groups.into_iter().next().context("ConsumerGroupDescribe returned no group")?,
            Err(ClientError::UnsupportedVersion { .. }) => return describe_classic(session, group),
            Err(error) => return Err(error).context("ConsumerGroupDescribe request failed"),
        };
        match verdict_of(described.error_code.err(), attempt < RETRY_COUNT_MAX) {
            Verdict::Described => {
                let names = topic_names_by_id(session, &described)?;
                return Ok(consumer_view(&described, &names));
            }
            Verdict::AskClassic => return describe_classic(session, group),
            Verdict::Retry => {
                attempt += 1;
                std::thread::sleep(RETRY_BACKOFF);
            }
            Verdict::Fail(error) => {
                bail!("cannot describe group {group}: {}", describe_error(error, described.error_message.as_deref()))
            }
        }
    }
}

/// `DescribeGroups` of one (classic) group at its coordinator.
fn describe_classic(session: &mut Session, group: &str) -> Result<GroupView> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let mut attempt = 0;
    loop {
        let response = session.coordinator(group)?.send(&request).context("DescribeGroups request failed")?;
        let Some(described) = response.groups.into_iter().next() else { bail!("DescribeGroups returned no group") };
        match described.error_code.err() {
            None => return Ok(classic_view(&described)),
            Some(ResponseError::GroupIdNotFound) => return Ok(GroupView::dead()),
            Some(error) if error.is_retriable() && attempt < RETRY_COUNT_MAX => {
                attempt += 1;
                std::thread::sleep(RETRY_BACKOFF);
            }
            Some(error) => {
                bail!("cannot describe group {group}: {}", describe_error(error, described.error_message.as_deref()))
            }
        }
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

fn optional_text(text: Option<&StrBytes>) -> Option<String> {
    text.map(ToString::to_string)
}

fn classic_view(described: &DescribedGroup) -> GroupView {
    // Groups of other protocol types (Connect, Schema Registry) carry payloads this tool cannot read.
    let readable = described.protocol_type.as_str() == "consumer";
    let members = described
        .members
        .iter()
        .map(|member| MemberView {
            member_id: member.member_id.to_string(),
            instance_id: optional_text(member.group_instance_id.as_ref()),
            client_id: member.client_id.to_string(),
            host: member.client_host.to_string(),
            rack_id: None,
            member_epoch: None,
            subscribed_topics: readable
                .then(|| decode_subscription(&member.member_metadata).ok())
                .flatten()
                .map(|subscription| subscription.topics.iter().map(ToString::to_string).collect()),
            subscribed_regex: None,
            assignment: if readable {
                decode_assignment(&member.member_assignment).unwrap_or_default()
            } else {
                Vec::new()
            },
            target_assignment: None,
        })
        .collect();
    GroupView {
        group_type: GroupType::Classic,
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        assignor: described.protocol_data.to_string(),
        group_epoch: None,
        assignment_epoch: None,
        members,
    }
}

/// Names of the topics `described` refers to by id only. `ConsumerGroupDescribe` carries names
/// beside ids, so Metadata is asked only when a broker left a name out.
fn topic_names_by_id(session: &mut Session, described: &ConsumerDescribed) -> Result<BTreeMap<Uuid, String>> {
    let unnamed = described
        .members
        .iter()
        .flat_map(|member| member.assignment.topic_partitions.iter().chain(&member.target_assignment.topic_partitions))
        .any(|topic| topic.topic_name.0.is_empty());
    if !unnamed {
        return Ok(BTreeMap::new());
    }
    let cluster = session.metadata(None)?;
    Ok(cluster.topics.iter().map(|topic| (topic.topic.id, topic.topic.name.clone())).collect())
}

fn assignment_of(topics: &[TopicPartitions], names: &BTreeMap<Uuid, String>) -> Assignment {
    let mut assignment: Assignment = topics
        .iter()
        .map(|topic| {
            let name = if topic.topic_name.0.is_empty() {
                names.get(&topic.topic_id).cloned().unwrap_or_else(|| topic.topic_id.to_string())
            } else {
                topic.topic_name.0.to_string()
            };
            let mut partitions = topic.partitions.clone();
            partitions.sort_unstable();
            (name, partitions)
        })
        .collect();
    assignment.sort();
    assignment
}

fn consumer_member_view(member: &ConsumerMember, names: &BTreeMap<Uuid, String>) -> MemberView {
    MemberView {
        member_id: member.member_id.to_string(),
        instance_id: optional_text(member.instance_id.as_ref()),
        client_id: member.client_id.to_string(),
        host: member.client_host.to_string(),
        rack_id: optional_text(member.rack_id.as_ref()),
        member_epoch: Some(member.member_epoch),
        subscribed_topics: Some(member.subscribed_topic_names.iter().map(|topic| topic.0.to_string()).collect()),
        subscribed_regex: optional_text(member.subscribed_topic_regex.as_ref()).filter(|regex| !regex.is_empty()),
        assignment: assignment_of(&member.assignment.topic_partitions, names),
        target_assignment: Some(assignment_of(&member.target_assignment.topic_partitions, names)),
    }
}

fn consumer_view(described: &ConsumerDescribed, names: &BTreeMap<Uuid, String>) -> GroupView {
    GroupView {
        group_type: GroupType::Consumer,
        state: described.group_state.to_string(),
        // A KIP-848 group is a group of the consumer protocol type, as ListGroups reports it.
        protocol_type: "consumer".to_owned(),
        assignor: described.assignor_name.to_string(),
        group_epoch: Some(described.group_epoch),
        assignment_epoch: Some(described.assignment_epoch),
        members: described.members.iter().map(|member| consumer_member_view(member, names)).collect(),
    }
}

/// `groups describe GROUP`: the group, its members (for a consumer group, with epochs,
/// subscriptions and target assignments) and one lag row per partition it owns or committed.
///
/// # Errors
/// `unknown group` when no coordinator knows the group and it has no committed offsets;
/// connection and group errors.
pub(super) fn describe(session: &mut Session, group: &str, output: Output) -> Result<()> {
    let view = describe_group(session, group)?;
    let committed = fetch_committed(session.coordinator(group)?, group, None)?;
    if view.is_in_state("Dead") && committed.is_empty() {
        bail!("unknown group {group}");
    }
    let owners: BTreeMap<(String, i32), &MemberView> = view
        .members
        .iter()
        .flat_map(|member| {
            member.assignment.iter().flat_map(move |(topic, partitions)| {
                partitions.iter().map(move |partition| ((topic.clone(), *partition), member))
            })
        })
        .collect();
    let mut keys: BTreeSet<(String, i32)> = owners.keys().cloned().collect();
    for (topic, partitions) in &committed {
        keys.extend(partitions.keys().map(|partition| (topic.clone(), *partition)));
    }
    let ends = log_ends(session, &keys)?;
    let (rows, table) = lag_rows(&keys, &committed, &ends, &owners);
    let total_lag: i64 = rows.iter().filter_map(|row| row["lag"].as_i64()).sum();
    let json = describe_json(group, &view, &rows, total_lag);
    output.emit(&json, || describe_text(group, &view, &table, total_lag));
    Ok(())
}

fn assignment_json(assignment: &Assignment) -> Value {
    let by_topic: BTreeMap<&str, &Vec<i32>> =
        assignment.iter().map(|(topic, partitions)| (topic.as_str(), partitions)).collect();
    json!(by_topic)
}

fn describe_json(group: &str, view: &GroupView, offsets: &[Value], total_lag: i64) -> Value {
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|member| {
            json!({
                "member_id": member.member_id, "instance_id": member.instance_id, "client_id": member.client_id,
                "host": member.host, "rack_id": member.rack_id, "member_epoch": member.member_epoch,
                "subscribed_topic_names": member.subscribed_topics, "subscribed_topic_regex": member.subscribed_regex,
                "assignment": assignment_json(&member.assignment),
                "target_assignment": member.target_assignment.as_ref().map(assignment_json),
            })
        })
        .collect();
    json!({
        "group": group, "type": view.group_type.as_str(), "state": view.state,
        "protocol_type": view.protocol_type, "protocol": view.assignor, "assignor": view.assignor,
        "group_epoch": view.group_epoch, "assignment_epoch": view.assignment_epoch,
        "members": members, "offsets": offsets, "total_lag": total_lag,
    })
}

fn dash_if_empty(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

fn describe_text(group: &str, view: &GroupView, offsets: &Table, total_lag: i64) -> String {
    let (state, assignor, count) = (&view.state, dash_if_empty(&view.assignor), view.members.len());
    match view.group_type {
        GroupType::Classic => format!(
            "Group: {group}  Type: classic  State: {state}  Protocol: {assignor}  Members: {count}  \
             Total lag: {total_lag}\n{}",
            offsets.render()
        ),
        GroupType::Consumer => {
            let epoch = |epoch: Option<i32>| epoch.map_or_else(|| "-".to_owned(), |epoch| epoch.to_string());
            let members = if view.members.is_empty() { String::new() } else { members_table(view).render() + "\n" };
            format!(
                "Group: {group}  Type: consumer  State: {state}  Assignor: {assignor}  Group epoch: {}  \
                 Assignment epoch: {}  Members: {count}  Total lag: {total_lag}\n{members}{}",
                epoch(view.group_epoch),
                epoch(view.assignment_epoch),
                offsets.render()
            )
        }
    }
}

/// Partitions as `topic:0,1;other:2`, or `-` when there are none.
fn assignment_text(assignment: &Assignment) -> String {
    let topics: Vec<String> = assignment
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(topic, partitions)| {
            let partitions: Vec<String> = partitions.iter().map(ToString::to_string).collect();
            format!("{topic}:{}", partitions.join(","))
        })
        .collect();
    if topics.is_empty() { "-".to_owned() } else { topics.join(";") }
}

/// Topic names as `a,b`, a regular expression as `regex:PATTERN` (topic names cannot hold `:`).
fn subscription_text(member: &MemberView) -> String {
    let mut parts: Vec<String> = member.subscribed_topics.iter().flatten().cloned().collect();
    parts.extend(member.subscribed_regex.iter().map(|regex| format!("regex:{regex}")));
    if parts.is_empty() { "-".to_owned() } else { parts.join(",") }
}

fn members_table(view: &GroupView) -> Table {
    let mut table = Table::new(&[
        "MEMBER-ID",
        "INSTANCE-ID",
        "CLIENT-ID",
        "HOST",
        "MEMBER-EPOCH",
        "SUBSCRIPTION",
        "ASSIGNMENT",
        "TARGET-ASSIGNMENT",
    ]);
    for member in &view.members {
        table.push(vec![
            member.member_id.clone(),
            member.instance_id.clone().unwrap_or_else(|| "-".to_owned()),
            dash_if_empty(&member.client_id).to_owned(),
            dash_if_empty(&member.host).to_owned(),
            member.member_epoch.map_or_else(|| "-".to_owned(), |epoch| epoch.to_string()),
            subscription_text(member),
            assignment_text(&member.assignment),
            member.target_assignment.as_ref().map_or_else(|| "-".to_owned(), assignment_text),
        ]);
    }
    table
}

/// One row per (topic, partition): committed offset, log end, lag and owner, as JSON and table.
fn lag_rows(
    keys: &BTreeSet<(String, i32)>,
    committed: &Committed,
    ends: &BTreeMap<(String, i32), i64>,
    owners: &BTreeMap<(String, i32), &MemberView>,
) -> (Vec<Value>, Table) {
    let mut rows = Vec::new();
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for key in keys {
        let current = committed.get(&key.0).and_then(|partitions| partitions.get(&key.1)).copied().filter(|o| *o >= 0);
        let end = ends.get(key).copied();
        let lag = match (current, end) {
            (Some(current), Some(end)) => Some((end - current).max(0)),
            _ => None,
        };
        let owner = owners.get(key);
        rows.push(json!({
            "topic": key.0, "partition": key.1, "current_offset": current, "log_end_offset": end, "lag": lag,
            "member_id": owner.map(|member| member.member_id.clone()),
        }));
        let dash = || "-".to_owned();
        table.push(vec![
            key.0.clone(),
            key.1.to_string(),
            current.map_or_else(dash, |offset| offset.to_string()),
            end.map_or_else(dash, |offset| offset.to_string()),
            lag.map_or_else(dash, |lag| lag.to_string()),
            owner.map_or_else(dash, |member| member.member_id.clone()),
            owner.map_or_else(dash, |member| member.host.clone()),
            owner.map_or_else(dash, |member| member.client_id.clone()),
        ]);
    }
    (rows, table)
}

/// Log end offsets of `keys` ((topic, partition) pairs); topics that no longer exist are skipped.
fn log_ends(session: &mut Session, keys: &BTreeSet<(String, i32)>) -> Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in keys {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut ends = BTreeMap::new();
    for (topic, partitions) in by_topic {
        let Ok(info) = session.topic(topic) else { continue };
        let known: Vec<i32> = partitions
            .into_iter()
            .filter(|partition| info.partitions.iter().any(|p| p.partition == *partition))
            .collect();
        for (partition, end) in session.offsets_for(&info, Some(&known), LATEST_TIMESTAMP)? {
            ends.insert((topic.to_owned(), partition), end);
        }
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::consumer_group_describe_response::Assignment as ConsumerAssignment;
    use kafka_protocol::messages::describe_groups_response::DescribedGroupMember;
    use sluice_client::group::{encode_assignment, encode_subscription};

    use super::*;

    fn text(value: &str) -> StrBytes {
        StrBytes::from_string(value.to_owned())
    }

    fn topic_partitions(id: Uuid, name: &str, partitions: &[i32]) -> TopicPartitions {
        TopicPartitions::default()
            .with_topic_id(id)
            .with_topic_name(TopicName(text(name)))
            .with_partitions(partitions.to_vec())
    }

    fn consumer_group() -> ConsumerDescribed {
        let orders = Uuid::from_u128(1);
        let member = ConsumerMember::default()
            .with_member_id(text("m-1"))
            .with_instance_id(Some(text("instance-1")))
            .with_member_epoch(7)
            .with_client_id(text("client-1"))
            .with_client_host(text("/10.0.0.1"))
            .with_subscribed_topic_names(vec![TopicName(text("orders"))])
            .with_assignment(ConsumerAssignment::default().with_topic_partitions(vec![topic_partitions(
                orders,
                "orders",
                &[3, 1],
            )]))
            .with_target_assignment(ConsumerAssignment::default().with_topic_partitions(vec![topic_partitions(
                orders,
                "orders",
                &[1],
            )]));
        ConsumerDescribed::default()
            .with_group_state(text("Reconciling"))
            .with_group_epoch(8)
            .with_assignment_epoch(8)
            .with_assignor_name(text("uniform"))
            .with_members(vec![member])
    }

    #[test]
    fn not_found_or_unsupported_falls_back_to_describe_groups() {
        assert_eq!(verdict_of(None, true), Verdict::Described);
        assert_eq!(verdict_of(Some(ResponseError::GroupIdNotFound), true), Verdict::AskClassic);
        assert_eq!(verdict_of(Some(ResponseError::UnsupportedVersion), false), Verdict::AskClassic);
    }

    #[test]
    fn retriable_errors_retry_until_the_retries_run_out() {
        assert_eq!(verdict_of(Some(ResponseError::CoordinatorLoadInProgress), true), Verdict::Retry);
        assert_eq!(verdict_of(Some(ResponseError::NotCoordinator), true), Verdict::Retry);
        let exhausted = verdict_of(Some(ResponseError::CoordinatorLoadInProgress), false);
        assert_eq!(exhausted, Verdict::Fail(ResponseError::CoordinatorLoadInProgress));
        let denied = verdict_of(Some(ResponseError::GroupAuthorizationFailed), true);
        assert_eq!(denied, Verdict::Fail(ResponseError::GroupAuthorizationFailed));
    }

    #[test]
    fn consumer_group_view_keeps_epochs_subscription_and_both_assignments() {
        let view = consumer_view(&consumer_group(), &BTreeMap::new());
        assert_eq!(view.group_type, GroupType::Consumer);
        assert_eq!((view.group_epoch, view.assignment_epoch), (Some(8), Some(8)));
        assert_eq!((view.protocol_type.as_str(), view.assignor.as_str()), ("consumer", "uniform"));
        let member = &view.members[0];
        assert_eq!(member.member_epoch, Some(7));
        assert_eq!(member.instance_id.as_deref(), Some("instance-1"));
        assert_eq!(member.subscribed_topics, Some(vec!["orders".to_owned()]));
        assert_eq!(member.assignment, vec![("orders".to_owned(), vec![1, 3])]);
        assert_eq!(member.target_assignment, Some(vec![("orders".to_owned(), vec![1])]));
    }

    #[test]
    fn topic_without_a_name_is_named_by_metadata_or_shown_by_id() {
        let (known, unknown) = (Uuid::from_u128(5), Uuid::from_u128(6));
        let topics = [topic_partitions(known, "", &[0]), topic_partitions(unknown, "", &[2])];
        let names = BTreeMap::from([(known, "payments".to_owned())]);
        let assignment = assignment_of(&topics, &names);
        // Sorted by name: a bare id ("00000000-...") sorts before "payments".
        assert_eq!(assignment, vec![(unknown.to_string(), vec![2]), ("payments".to_owned(), vec![0])]);
    }

    #[test]
    fn classic_view_decodes_consumer_protocol_payloads_only() {
        let member = DescribedGroupMember::default()
            .with_member_id(text("c-1"))
            .with_client_id(text("client"))
            .with_member_metadata(encode_subscription(&["orders"]).expect("encodes"))
            .with_member_assignment(encode_assignment(&[("orders".to_owned(), vec![0, 1])]).expect("encodes"));
        let group = DescribedGroup::default()
            .with_group_state(text("Stable"))
            .with_protocol_type(text("consumer"))
            .with_protocol_data(text("range"))
            .with_members(vec![member.clone()]);
        let view = classic_view(&group);
        assert_eq!((view.group_type, view.assignor.as_str(), view.group_epoch), (GroupType::Classic, "range", None));
        assert_eq!(view.members[0].assignment, vec![("orders".to_owned(), vec![0, 1])]);
        assert_eq!(view.members[0].subscribed_topics, Some(vec!["orders".to_owned()]));
        assert_eq!(view.members[0].target_assignment, None);
        let connect = classic_view(&group.with_protocol_type(text("connect")));
        assert!(connect.members[0].assignment.is_empty());
        assert_eq!(connect.members[0].subscribed_topics, None);
    }

    #[test]
    fn json_adds_type_epochs_and_member_fields_beside_the_existing_ones() {
        let view = consumer_view(&consumer_group(), &BTreeMap::new());
        let json = describe_json("g", &view, &[], 4);
        for key in ["group", "state", "protocol_type", "protocol", "members", "offsets", "total_lag"] {
            assert!(json.get(key).is_some(), "existing field {key} is kept: {json}");
        }
        assert_eq!(json["type"], "consumer");
        assert_eq!((json["group_epoch"].as_i64(), json["assignment_epoch"].as_i64()), (Some(8), Some(8)));
        assert_eq!(json["protocol"], "uniform");
        let member = &json["members"][0];
        for key in ["member_id", "client_id", "host", "assignment"] {
            assert!(member.get(key).is_some(), "existing member field {key} is kept: {member}");
        }
        assert_eq!(member["assignment"], json!({"orders": [1, 3]}));
        assert_eq!(member["target_assignment"], json!({"orders": [1]}));
        assert_eq!(member["member_epoch"], 7);
        assert_eq!(member["subscribed_topic_names"], json!(["orders"]));
        assert_eq!(member["subscribed_topic_regex"], Value::Null);
    }

    #[test]
    fn consumer_group_text_shows_epochs_and_a_members_table() {
        let view = consumer_view(&consumer_group(), &BTreeMap::new());
        let offsets = Table::new(&["TOPIC"]);
        let text = describe_text("g", &view, &offsets, 4);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "Group: g  Type: consumer  State: Reconciling  Assignor: uniform  Group epoch: 8  \
                 Assignment epoch: 8  Members: 1  Total lag: 4"
            )
        );
        assert!(
            lines.next().is_some_and(|header| header.starts_with("MEMBER-ID") && header.ends_with("TARGET-ASSIGNMENT"))
        );
        let row: Vec<&str> = lines.next().expect("member row").split_whitespace().collect();
        assert_eq!(row, ["m-1", "instance-1", "client-1", "/10.0.0.1", "7", "orders", "orders:1,3", "orders:1"]);
        assert_eq!(lines.next(), Some(""));
        assert_eq!(lines.next(), Some("TOPIC"));
    }

    #[test]
    fn classic_group_text_keeps_its_header_with_the_type_added() {
        let group = DescribedGroup::default().with_group_state(text("Empty")).with_protocol_type(text("consumer"));
        let text = describe_text("g", &classic_view(&group), &Table::new(&["TOPIC"]), 0);
        assert_eq!(text, "Group: g  Type: classic  State: Empty  Protocol: -  Members: 0  Total lag: 0\nTOPIC\n");
    }

    #[test]
    fn subscriptions_and_assignments_are_compact_and_dashed_when_empty() {
        let mut member = consumer_view(&consumer_group(), &BTreeMap::new()).members.remove(0);
        member.subscribed_topics = Some(Vec::new());
        member.subscribed_regex = Some("^audit-.*".to_owned());
        assert_eq!(subscription_text(&member), "regex:^audit-.*");
        member.subscribed_topics = None;
        member.subscribed_regex = None;
        assert_eq!(subscription_text(&member), "-");
        let two = vec![("a".to_owned(), vec![0, 2]), ("b".to_owned(), vec![]), ("c".to_owned(), vec![1])];
        assert_eq!(assignment_text(&two), "a:0,2;c:1");
        assert_eq!(assignment_text(&Vec::new()), "-");
    }

    #[test]
    fn group_states_compare_case_insensitively() {
        let view = consumer_view(&consumer_group().with_group_state(text("empty")), &BTreeMap::new());
        assert!(view.is_in_state("Empty"));
        assert!(!view.is_in_state("Dead"));
        assert!(GroupView::dead().is_in_state("dead"));
    }
}
