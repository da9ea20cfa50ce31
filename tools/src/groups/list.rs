//! `groups list`: every group of every broker with its type (classic or consumer), state and
//! protocol type, over `ListGroups` asked of each broker (each lists the groups it coordinates).
//!
//! Per broker:
//! 1. The connection uses the highest `ListGroups` version both sides know: v5 reports each
//!    group's type and takes a type filter, v4 reports states and takes a state filter, older
//!    versions report neither.
//! 2. Filters go only into versions that carry them. A filter on something the broker cannot
//!    report fails with a one-line error rather than listing nothing.
//! 3. Below v5 a broker without `ConsumerGroupHeartbeat` can only hold classic groups, so their
//!    type is known; otherwise it shows as `-`.
//! 4. The filters are applied here too (case-insensitively, as Kafka does), so every version
//!    lists the same groups.
//!
//! Main thread only.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, ListGroupsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use crate::output::{Output, Table};
use crate::session::Session;

/// The first `ListGroups` version with states (v4) and with group types (v5).
const STATES_VERSION_MIN: i16 = 4;
const TYPES_VERSION_MIN: i16 = 5;

/// Group states as Kafka spells them; a filter is sent in this spelling, since brokers before
/// Kafka 3.8 compared states case-sensitively.
const STATE_NAMES: [&str; 7] =
    ["Empty", "Stable", "PreparingRebalance", "CompletingRebalance", "Dead", "Assigning", "Reconciling"];

/// The `--state` and `--type` filters of `groups list`; empty means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ListFilter {
    states: Vec<String>,
    types: Vec<String>,
}

/// One listed group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    group_type: Option<String>,
    state: Option<String>,
    protocol_type: String,
}

impl ListFilter {
    /// States in Kafka's spelling where known, types in lowercase; blanks are dropped.
    pub(super) fn new(states: &[String], types: &[String]) -> Self {
        let states = states
            .iter()
            .map(|state| state.trim())
            .filter(|state| !state.is_empty())
            .map(|state| {
                let known = STATE_NAMES.iter().find(|name| name.eq_ignore_ascii_case(state));
                known.map_or_else(|| state.to_owned(), |name| (*name).to_owned())
            })
            .collect();
        let types = types.iter().map(|kind| kind.trim().to_lowercase()).filter(|kind| !kind.is_empty()).collect();
        Self { states, types }
    }

    /// The request for a broker that speaks `version`.
    fn request(&self, version: i16) -> ListGroupsRequest {
        let strings = |values: &[String]| values.iter().map(|value| StrBytes::from_string(value.clone())).collect();
        let mut request = ListGroupsRequest::default();
        if version >= STATES_VERSION_MIN {
            request = request.with_states_filter(strings(&self.states));
        }
        if version >= TYPES_VERSION_MIN {
            request = request.with_types_filter(strings(&self.types));
        }
        request
    }

    /// Why a broker answering at `version` cannot apply this filter, if it cannot.
    fn unsupported_by(&self, version: i16, knows_types: bool) -> Option<&'static str> {
        if !self.states.is_empty() && version < STATES_VERSION_MIN {
            return Some("group states (ListGroups v4)");
        }
        if !self.types.is_empty() && !knows_types {
            return Some("group types (ListGroups v5)");
        }
        None
    }

    fn admits(&self, listed: &Listed) -> bool {
        let matches = |wanted: &[String], value: Option<&String>| {
            wanted.is_empty() || value.is_some_and(|value| wanted.iter().any(|want| want.eq_ignore_ascii_case(value)))
        };
        matches(&self.states, listed.state.as_ref()) && matches(&self.types, listed.group_type.as_ref())
    }
}

/// `group` as a broker answering at `version` reported it; `classic_only` when the broker has no
/// consumer-group protocol, so every group it holds is classic.
fn listed_of(group: &ListedGroup, version: i16, classic_only: bool) -> Listed {
    let known = |text: &StrBytes| (!text.is_empty()).then(|| text.to_string());
    let group_type = if version >= TYPES_VERSION_MIN {
        known(&group.group_type)
    } else {
        classic_only.then(|| "classic".to_owned())
    };
    let state = if version >= STATES_VERSION_MIN { known(&group.group_state) } else { None };
    Listed { group_type, state, protocol_type: group.protocol_type.to_string() }
}

/// `groups list`: asks every broker, merges by group id.
///
/// # Errors
/// Connection errors, a broker's error code, and a filter a broker cannot apply.
pub(super) fn list(session: &mut Session, filter: &ListFilter, output: Output) -> Result<()> {
    let cluster = session.metadata(Some(&[]))?;
    let mut groups: BTreeMap<String, Listed> = BTreeMap::new();
    for broker in &cluster.brokers {
        let connection = session.node(broker.node_id)?;
        let versions = connection.versions();
        let version = versions.version_for(ApiKey::ListGroups)?;
        let classic_only = versions.broker_range(ApiKey::ConsumerGroupHeartbeat).is_none();
        if let Some(missing) = filter.unsupported_by(version, version >= TYPES_VERSION_MIN || classic_only) {
            bail!("broker {} does not report {missing}; list without that filter", broker.node_id);
        }
        let response = connection
            .send(&filter.request(version))
            .with_context(|| format!("ListGroups request to broker {} failed", broker.node_id))?;
        if let Some(error) = response.error_code.err() {
            bail!("cannot list groups on broker {}: {error}", broker.node_id);
        }
        for group in &response.groups {
            let listed = listed_of(group, version, classic_only);
            if filter.admits(&listed) {
                groups.insert(group.group_id.0.to_string(), listed);
            }
        }
    }
    let dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    let json = Value::Array(
        groups
            .iter()
            .map(|(group, listed)| {
                json!({
                    "group": group, "type": dash(&listed.group_type), "state": dash(&listed.state),
                    "protocol_type": listed.protocol_type,
                })
            })
            .collect(),
    );
    output.emit(&json, || {
        let mut table = Table::new(&["GROUP", "TYPE", "STATE", "PROTOCOL-TYPE"]);
        for (group, listed) in &groups {
            table.push(vec![
                group.clone(),
                dash(&listed.group_type),
                dash(&listed.state),
                listed.protocol_type.clone(),
            ]);
        }
        table.render()
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    fn listed_group(state: &str, group_type: &str) -> ListedGroup {
        ListedGroup::default()
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_group_state(StrBytes::from_string(state.to_owned()))
            .with_group_type(StrBytes::from_string(group_type.to_owned()))
    }

    #[test]
    fn filters_use_kafka_spelling_and_drop_blanks() {
        let filter = ListFilter::new(&strings(&["stable", " PREPARINGREBALANCE ", "", "Odd"]), &strings(&["Consumer"]));
        assert_eq!(filter.states, strings(&["Stable", "PreparingRebalance", "Odd"]));
        assert_eq!(filter.types, strings(&["consumer"]));
    }

    #[test]
    fn filters_go_only_into_versions_that_carry_them() {
        let filter = ListFilter::new(&strings(&["Stable"]), &strings(&["consumer"]));
        let v5 = filter.request(5);
        assert_eq!((v5.states_filter.len(), v5.types_filter.len()), (1, 1));
        let v4 = filter.request(4);
        assert_eq!((v4.states_filter.len(), v4.types_filter.len()), (1, 0));
        let v3 = filter.request(3);
        assert!(v3.states_filter.is_empty() && v3.types_filter.is_empty());
    }

    #[test]
    fn a_filter_the_broker_cannot_apply_is_refused() {
        let by_state = ListFilter::new(&strings(&["Stable"]), &[]);
        assert!(by_state.unsupported_by(4, false).is_none());
        assert!(by_state.unsupported_by(3, true).is_some_and(|why| why.contains("states")));
        let by_type = ListFilter::new(&[], &strings(&["classic"]));
        assert!(by_type.unsupported_by(0, true).is_none());
        assert!(by_type.unsupported_by(4, false).is_some_and(|why| why.contains("types")));
        assert!(ListFilter::default().unsupported_by(0, false).is_none());
    }

    #[test]
    fn type_and_state_come_from_the_versions_that_report_them() {
        let group = listed_group("Stable", "consumer");
        let v5 = listed_of(&group, 5, false);
        assert_eq!((v5.group_type.as_deref(), v5.state.as_deref()), (Some("consumer"), Some("Stable")));
        let v4 = listed_of(&group, 4, false);
        assert_eq!((v4.group_type, v4.state.as_deref()), (None, Some("Stable")));
        let v3 = listed_of(&group, 3, true);
        assert_eq!((v3.group_type.as_deref(), v3.state), (Some("classic"), None));
    }

    #[test]
    fn groups_are_filtered_here_case_insensitively() {
        let filter = ListFilter::new(&strings(&["stable", "empty"]), &strings(&["CONSUMER"]));
        assert!(filter.admits(&listed_of(&listed_group("Stable", "consumer"), 5, false)));
        assert!(!filter.admits(&listed_of(&listed_group("Stable", "classic"), 5, false)));
        assert!(!filter.admits(&listed_of(&listed_group("Assigning", "consumer"), 5, false)));
        assert!(ListFilter::default().admits(&listed_of(&listed_group("", ""), 0, false)));
    }
}
