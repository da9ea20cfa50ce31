//! `sluicectl cluster info`: brokers (Metadata, `DescribeCluster` when offered), the broker's
//! shard count when it reports one among its configs, and the API versions it supports
//! (`ApiVersions`) next to what this tool can speak. Main thread only.

use anyhow::{Context, Result};
use clap::Subcommand;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, DescribeClusterRequest, DescribeConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use crate::output::{Output, Table};
use crate::session::Session;

/// `DescribeConfigs` resource type of a broker.
const RESOURCE_TYPE_BROKER: i8 = 4;

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Brokers, controller, shards and supported API versions.
    Info,
}

pub(crate) fn run(session: &mut Session, command: &ClusterCommand, output: Output) -> Result<()> {
    match command {
        ClusterCommand::Info => info(session, output),
    }
}

fn info(session: &mut Session, output: Output) -> Result<()> {
    let cluster = session.metadata(Some(&[]))?;
    let cluster_id = describe_cluster_id(session);
    let versions = session.connection().send(&ApiVersionsRequest::default()).context("ApiVersions request failed")?;
    let mut brokers = Vec::new();
    let mut broker_table = Table::new(&["NODE", "ADDRESS", "CONTROLLER", "SHARDS"]);
    for broker in &cluster.brokers {
        let shards = broker_shards(session, broker.node_id);
        let controller = broker.node_id == cluster.controller_id;
        brokers.push(json!({
            "node_id": broker.node_id, "host": broker.host, "port": broker.port, "controller": controller,
            "shards": shards,
        }));
        broker_table.push(vec![
            broker.node_id.to_string(),
            broker.address(),
            if controller { "yes" } else { "no" }.to_owned(),
            shards.map_or_else(|| "-".to_owned(), |count| count.to_string()),
        ]);
    }
    let mut apis = Vec::new();
    let mut api_table = Table::new(&["API", "KEY", "BROKER", "SLUICECTL"]);
    for api in &versions.api_keys {
        let name = ApiKey::try_from(api.api_key)
            .map_or_else(|()| format!("Unknown({})", api.api_key), |key| format!("{key:?}"));
        let client = ApiKey::try_from(api.api_key).ok().map(|key| key.valid_versions());
        apis.push(json!({
            "name": name, "key": api.api_key, "min_version": api.min_version, "max_version": api.max_version,
            "client_max_version": client.map(|range| range.max),
        }));
        api_table.push(vec![
            name,
            api.api_key.to_string(),
            format!("{}-{}", api.min_version, api.max_version),
            client.map_or_else(|| "-".to_owned(), |range| format!("{}-{}", range.min, range.max)),
        ]);
    }
    let json = json!({
        "bootstrap": session.bootstrap(), "cluster_id": cluster_id, "controller_id": cluster.controller_id,
        "brokers": brokers, "api_versions": apis,
    });
    output.emit(&json, || {
        let mut text = format!(
            "Cluster: {}  Controller: {}  Brokers: {}\n",
            cluster_id.as_deref().unwrap_or("-"),
            cluster.controller_id,
            cluster.brokers.len()
        );
        text.push_str(&broker_table.render());
        text.push('\n');
        text.push_str(&api_table.render());
        text
    });
    Ok(())
}

/// The cluster id from `DescribeCluster`, when the broker offers it.
fn describe_cluster_id(session: &mut Session) -> Option<String> {
    session.connection().versions().version_for(ApiKey::DescribeCluster).ok()?;
    let response = session.connection().send(&DescribeClusterRequest::default()).ok()?;
    (response.error_code == 0).then(|| response.cluster_id.to_string())
}

/// The broker's shard count, when its configs report one (a config whose name mentions shards).
/// Kafka brokers have none; the answer is then `None`.
fn broker_shards(session: &mut Session, node_id: i32) -> Option<Value> {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(RESOURCE_TYPE_BROKER)
        .with_resource_name(StrBytes::from_string(node_id.to_string()))
        .with_configuration_keys(None);
    let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let response = session.node(node_id).ok()?.send(&request).ok()?;
    let result = response.results.first().filter(|result| result.error_code.err().is_none())?;
    let entry = result.configs.iter().find(|config| config.name.as_str().contains("shard"))?;
    let value = entry.value.as_ref()?;
    Some(value.as_str().parse::<u64>().map_or_else(|_| Value::String(value.to_string()), Value::from))
}
