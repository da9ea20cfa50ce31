//! `sluicectl groups`: list, describe (members, assignments, committed offsets, lag),
//! reset-offsets and delete groups, classic and KIP-848 consumer groups alike, over `ListGroups`
//! (asked of every broker), `FindCoordinator`, `ConsumerGroupDescribe`, `DescribeGroups`,
//! `OffsetFetch`, `OffsetCommit` and `DeleteGroups`. `list` and `describe` (with the view of a
//! group that both protocols share) live in submodules of those names. Main thread only.

mod describe;
mod list;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Subcommand};
use kafka_protocol::ResponseError;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{DeleteGroupsRequest, GroupId};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};
use sluice_client::requests::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

use crate::datetime::parse_timestamp_ms;
use crate::member::{Committed, Committer, commit_offsets, fetch_committed};
use crate::output::{Output, Table, lines, push_fmt};
use crate::session::Session;

#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List groups with their type (classic or consumer) and state (asks every broker).
    List {
        /// Only groups in these states, e.g. Stable,Empty (repeatable or comma-separated;
        /// case-insensitive).
        #[arg(long, value_delimiter = ',', value_name = "STATE")]
        state: Vec<String>,
        /// Only groups of these types: classic, consumer (repeatable or comma-separated).
        #[arg(long = "type", value_delimiter = ',', value_name = "TYPE")]
        group_type: Vec<String>,
    },
    /// Describe a group: type, state, members, assignments, committed offsets and lag; for a
    /// consumer group also its epochs, assignor, subscriptions and target assignments.
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
        GroupsCommand::List { state, group_type } => {
            list::list(session, &list::ListFilter::new(state, group_type), output)
        }
        GroupsCommand::Describe { group } => describe::describe(session, group, output),
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

struct Reset<'a> {
    group: &'a str,
    topic: &'a str,
    partitions: &'a [i32],
    target: Target,
    dry_run: bool,
}

fn reset_offsets(session: &mut Session, reset: &Reset<'_>, output: Output) -> Result<()> {
    let described = describe::describe_group(session, reset.group)?;
    if !(described.is_in_state("Empty") || described.is_in_state("Dead")) {
        bail!(
            "group {} is {} with {} member(s): stop its consumers before resetting offsets",
            reset.group,
            described.state,
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
