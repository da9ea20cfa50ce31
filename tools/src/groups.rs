//! `sluicectl groups`: list, describe (members, assignments, committed offsets, lag),
//! reset-offsets and delete consumer groups, over `ListGroups` (asked of every broker),
//! `FindCoordinator`, `DescribeGroups`, `OffsetFetch`, `OffsetCommit` and `DeleteGroups`.
//! Main thread only.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Subcommand};
use kafka_protocol::ResponseError;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};
use sluice_client::group::decode_assignment;
use sluice_client::requests::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

use crate::datetime::parse_timestamp_ms;
use crate::member::{Committed, Committer, commit_offsets, fetch_committed};
use crate::output::{Output, Table, lines, push_fmt};
use crate::session::{RETRY_BACKOFF, RETRY_COUNT_MAX, Session, describe_error};

#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List consumer groups (asks every broker).
    List,
    /// Describe a group: state, members, assignments, committed offsets and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets for a topic (the group must have no active members).
    #[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose offsets to reset.
        #[arg(long, short = 't')]
        topic: String,
        /// Only these partitions (repeatable); default: all.
        #[arg(long, short = 'p')]
        partition: Vec<i32>,
        /// To the log start offset.
        #[arg(long)]
        to_earliest: bool,
        /// To the log end offset.
        #[arg(long)]
        to_latest: bool,
        /// To this offset (clamped to the log's start and end, as Kafka does).
        #[arg(long, value_name = "N")]
        to_offset: Option<i64>,
        /// To the first offset with a timestamp at or after D (ISO-8601 or milliseconds; the log
        /// end where there is none).
        #[arg(long, value_name = "D", value_parser = parse_timestamp_ms)]
        to_datetime: Option<i64>,
        /// Show the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete groups and their committed offsets (they must have no active members).
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

/// Where `reset-offsets` moves the offsets.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Datetime(i64),
}

pub(crate) fn run(session: &mut Session, command: &GroupsCommand, output: Output) -> Result<()> {
    match command {
        GroupsCommand::List => list(session, output),
        GroupsCommand::Describe { group } => describe(session, group, output),
        GroupsCommand::ResetOffsets {
            group,
            topic,
            partition,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            dry_run,
        } => {
            let target = match (to_earliest, to_latest, to_offset, to_datetime) {
                (true, _, _, _) => Target::Earliest,
                (_, true, _, _) => Target::Latest,
                (_, _, Some(offset), _) => Target::Offset(*offset),
                (_, _, _, Some(timestamp)) => Target::Datetime(*timestamp),
                _ => bail!("give one of --to-earliest, --to-latest, --to-offset, --to-datetime"),
            };
            let reset = Reset { group, topic, partitions: partition, target, dry_run: *dry_run };
            reset_offsets(session, &reset, output)
        }
        GroupsCommand::Delete { groups } => delete(session, groups, output),
    }
}

fn list(session: &mut Session, output: Output) -> Result<()> {
    let cluster = session.metadata(Some(&[]))?;
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for broker in &cluster.brokers {
        let response = session
            .node(broker.node_id)?
            .send(&ListGroupsRequest::default())
            .with_context(|| format!("ListGroups request to broker {} failed", broker.node_id))?;
        if let Some(error) = response.error_code.err() {
            bail!("cannot list groups on broker {}: {error}", broker.node_id);
        }
        for group in response.groups {
            let state = if group.group_state.is_empty() { "-".to_owned() } else { group.group_state.to_string() };
            groups.insert(group.group_id.0.to_string(), (state, group.protocol_type.to_string()));
        }
    }
    let json = Value::Array(
        groups
            .iter()
            .map(|(group, (state, protocol_type))| json!({"group": group, "state": state, "protocol_type": protocol_type}))
            .collect(),
    );
    output.emit(&json, || {
        let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
        for (group, (state, protocol_type)) in &groups {
            table.push(vec![group.clone(), state.clone(), protocol_type.clone()]);
        }
        table.render()
    });
    Ok(())
}

/// `DescribeGroups` of one group at its coordinator.
fn describe_group(session: &mut Session, group: &str) -> Result<DescribedGroup> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
    let mut attempt = 0;
    loop {
        let response = session.coordinator(group)?.send(&request).context("DescribeGroups request failed")?;
        let Some(described) = response.groups.into_iter().next() else { bail!("DescribeGroups returned no group") };
        match described.error_code.err() {
            None => return Ok(described),
            Some(ResponseError::GroupIdNotFound) => {
                return Ok(DescribedGroup::default().with_group_state(StrBytes::from_static_str("Dead")));
            }
            // The coordinator may still be loading its groups, or the group may have moved.
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

/// A member as `describe` shows it.
struct MemberView {
    member_id: String,
    client_id: String,
    host: String,
    assignment: Vec<(String, Vec<i32>)>,
}

fn members_of(described: &DescribedGroup) -> Vec<MemberView> {
    described
        .members
        .iter()
        .map(|member| MemberView {
            member_id: member.member_id.to_string(),
            client_id: member.client_id.to_string(),
            host: member.client_host.to_string(),
            // Groups of other protocol types carry assignments this tool cannot read.
            assignment: if described.protocol_type.as_str() == "consumer" {
                decode_assignment(&member.member_assignment).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
        .collect()
}

fn describe(session: &mut Session, group: &str, output: Output) -> Result<()> {
    let described = describe_group(session, group)?;
    let committed = fetch_committed(session.coordinator(group)?, group, None)?;
    let state = described.group_state.to_string();
    if state == "Dead" && committed.is_empty() {
        bail!("unknown group {group}");
    }
    let members = members_of(&described);
    let owners: BTreeMap<(String, i32), &MemberView> = members
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
    let member_json: Vec<Value> = members
        .iter()
        .map(|member| {
            let assignment: BTreeMap<&str, &Vec<i32>> =
                member.assignment.iter().map(|(topic, partitions)| (topic.as_str(), partitions)).collect();
            json!({"member_id": member.member_id, "client_id": member.client_id, "host": member.host, "assignment": assignment})
        })
        .collect();
    let json = json!({
        "group": group, "state": state, "protocol_type": described.protocol_type.to_string(),
        "protocol": described.protocol_data.to_string(), "members": member_json, "offsets": rows, "total_lag": total_lag,
    });
    output.emit(&json, || {
        format!(
            "Group: {group}  State: {state}  Protocol: {}  Members: {}  Total lag: {total_lag}\n{}",
            if described.protocol_data.is_empty() { "-" } else { described.protocol_data.as_str() },
            members.len(),
            table.render()
        )
    });
    Ok(())
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

struct Reset<'a> {
    group: &'a str,
    topic: &'a str,
    partitions: &'a [i32],
    target: Target,
    dry_run: bool,
}

fn reset_offsets(session: &mut Session, reset: &Reset<'_>, output: Output) -> Result<()> {
    let described = describe_group(session, reset.group)?;
    let state = described.group_state.as_str();
    if !matches!(state, "Empty" | "Dead") {
        bail!(
            "group {} is {state} with {} member(s): stop its consumers before resetting offsets",
            reset.group,
            described.members.len()
        );
    }
    let topic = session.topic(reset.topic)?;
    let all: Vec<i32> = topic.partitions.iter().map(|partition| partition.partition).collect();
    let partitions = if reset.partitions.is_empty() { all.clone() } else { reset.partitions.to_vec() };
    if let Some(missing) = partitions.iter().find(|partition| !all.contains(partition)) {
        bail!("topic {} has no partition {missing}", reset.topic);
    }
    let starts = session.offsets_for(&topic, Some(&partitions), EARLIEST_TIMESTAMP)?;
    let ends = session.offsets_for(&topic, Some(&partitions), LATEST_TIMESTAMP)?;
    let by_time = match reset.target {
        Target::Datetime(timestamp) => session.offsets_for(&topic, Some(&partitions), timestamp)?,
        _ => BTreeMap::new(),
    };
    let targets: BTreeMap<i32, i64> = partitions
        .iter()
        .map(|partition| {
            let (start, end) = (starts[partition], ends[partition]);
            let offset = match reset.target {
                Target::Earliest => start,
                Target::Latest => end,
                Target::Offset(offset) => offset.clamp(start, end),
                Target::Datetime(_) => by_time.get(partition).copied().filter(|offset| *offset >= 0).unwrap_or(end),
            };
            (*partition, offset)
        })
        .collect();
    let wanted = [(reset.topic.to_owned(), partitions.clone())];
    let previous: Committed = fetch_committed(session.coordinator(reset.group)?, reset.group, Some(&wanted))?;
    if !reset.dry_run {
        commit_offsets(session.coordinator(reset.group)?, reset.group, Committer::ADMIN, reset.topic, &targets)?;
    }
    print_reset(reset, &targets, previous.get(reset.topic), output);
    Ok(())
}

fn print_reset(reset: &Reset<'_>, targets: &BTreeMap<i32, i64>, previous: Option<&BTreeMap<i32, i64>>, output: Output) {
    let previous_of =
        |partition: &i32| previous.and_then(|offsets| offsets.get(partition)).copied().filter(|o| *o >= 0);
    let rows: Vec<Value> = targets
        .iter()
        .map(|(partition, offset)| {
            json!({"topic": reset.topic, "partition": partition, "previous_offset": previous_of(partition), "new_offset": offset})
        })
        .collect();
    let json = json!({"group": reset.group, "dry_run": reset.dry_run, "offsets": rows});
    output.emit(&json, || {
        let mut table = Table::new(&["GROUP", "TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"]);
        for (partition, offset) in targets {
            table.push(vec![
                reset.group.to_owned(),
                reset.topic.to_owned(),
                partition.to_string(),
                previous_of(partition).map_or_else(|| "-".to_owned(), |offset| offset.to_string()),
                offset.to_string(),
            ]);
        }
        table.render()
    });
    if reset.dry_run {
        eprintln!("Dry run: nothing was committed.");
    }
}

fn delete(session: &mut Session, groups: &[String], output: Output) -> Result<()> {
    let mut deleted = Vec::new();
    for group in groups {
        let request =
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(StrBytes::from_string(group.clone()))]);
        let response = session.coordinator(group)?.send(&request).context("DeleteGroups request failed")?;
        for result in &response.results {
            match result.error_code.err() {
                None => deleted.push(result.group_id.0.to_string()),
                Some(ResponseError::GroupIdNotFound) => bail!("unknown group {group}"),
                Some(ResponseError::NonEmptyGroup) => {
                    bail!("group {group} has active members: stop its consumers before deleting it")
                }
                Some(error) => bail!("cannot delete group {group}: {error}"),
            }
        }
    }
    let json = json!({"deleted": deleted});
    output.emit(&json, || lines(&deleted, |text, group| push_fmt(text, format_args!("Deleted group {group}."))));
    Ok(())
}
