//! `sluicectl quotas describe|alter`: client quotas through DescribeClientQuotas and
//! AlterClientQuotas, as `kafka-configs.sh --entity-type users|clients` and `kafka-client-quotas`
//! manage them. An entity is a user, a client id, or both, each named or the default
//! (`--user-default`, `--client-default`); the keys are Kafka's (`producer_byte_rate`,
//! `consumer_byte_rate`, `request_percentage`, `controller_mutation_rate`). Main thread only.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, DescribeClientQuotasRequest, alter_client_quotas_request, describe_client_quotas_request,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use crate::output::{Output, Table};
use crate::session::{Session, describe_error};

/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;

#[derive(Debug, Subcommand)]
pub(crate) enum QuotasCommand {
    /// The quotas of the entities that match (every entity without a filter).
    Describe {
        #[command(flatten)]
        entity: EntityArgs,
        /// Only entities with exactly the components given (no wider ones).
        #[arg(long)]
        strict: bool,
    },
    /// Set or remove quota keys of one entity.
    Alter {
        #[command(flatten)]
        entity: EntityArgs,
        /// A key to set, `KEY=VALUE` (e.g. `producer_byte_rate=1048576`); repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A key to remove; repeatable.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Check the change without making it.
        #[arg(long)]
        validate_only: bool,
    },
}

/// An entity's components.
#[derive(Debug, Args)]
pub(crate) struct EntityArgs {
    /// The user (the principal's name, e.g. `alice` for `User:alice`).
    #[arg(long, conflicts_with = "user_default")]
    user: Option<String>,
    /// The default user: every user without a quota of its own.
    #[arg(long)]
    user_default: bool,
    /// The client id.
    #[arg(long, conflicts_with = "client_default")]
    client_id: Option<String>,
    /// The default client id: every client id without a quota of its own.
    #[arg(long)]
    client_default: bool,
}

impl EntityArgs {
    /// (entity type, name or `None` for the default), user first.
    fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut components = Vec::new();
        if self.user.is_some() || self.user_default {
            components.push(("user", self.user.as_deref()));
        }
        if self.client_id.is_some() || self.client_default {
            components.push(("client-id", self.client_id.as_deref()));
        }
        components
    }
}

pub(crate) fn run(session: &mut Session, command: &QuotasCommand, output: Output) -> Result<()> {
    match command {
        QuotasCommand::Describe { entity, strict } => describe(session, entity, *strict, output),
        QuotasCommand::Alter { entity, set, delete, validate_only } => {
            alter(session, entity, set, delete, *validate_only, output)
        }
    }
}

fn entity_text(components: &[(String, Option<String>)]) -> String {
    let parts: Vec<String> =
        components.iter().map(|(kind, name)| format!("{kind}={}", name.as_deref().unwrap_or("<default>"))).collect();
    parts.join(",")
}

fn describe(session: &mut Session, entity: &EntityArgs, strict: bool, output: Output) -> Result<()> {
    let components = entity
        .components()
        .into_iter()
        .map(|(kind, name)| {
            describe_client_quotas_request::ComponentData::default()
                .with_entity_type(StrBytes::from_static_str(kind))
                .with_match_type(if name.is_some() { MATCH_EXACT } else { MATCH_DEFAULT })
                .with_match(name.map(|name| StrBytes::from_string(name.to_owned())))
        })
        .collect();
    let request = DescribeClientQuotasRequest::default().with_components(components).with_strict(strict);
    let response = session.connection().send(&request).context("DescribeClientQuotas request failed")?;
    if let Some(error) = response.error_code.err() {
        bail!("cannot describe quotas: {}", describe_error(error, response.error_message.as_deref()));
    }
    let mut rows = Vec::new();
    for entry in response.entries.unwrap_or_default() {
        let components: Vec<(String, Option<String>)> = entry
            .entity
            .iter()
            .map(|entity| (entity.entity_type.to_string(), entity.entity_name.as_ref().map(ToString::to_string)))
            .collect();
        let values: Vec<(String, f64)> =
            entry.values.iter().map(|value| (value.key.to_string(), value.value)).collect();
        rows.push((components, values));
    }
    rows.sort_by(|left, right| left.0.cmp(&right.0));
    let json: Vec<Value> = rows
        .iter()
        .map(|(components, values)| {
            let entity: serde_json::Map<String, Value> =
                components.iter().map(|(kind, name)| (kind.clone(), json!(name))).collect();
            let values: serde_json::Map<String, Value> =
                values.iter().map(|(key, value)| (key.clone(), json!(value))).collect();
            json!({"entity": entity, "quotas": values})
        })
        .collect();
    output.emit(&json!(json), || {
        let mut table = Table::new(&["ENTITY", "KEY", "VALUE"]);
        for (components, values) in &rows {
            for (key, value) in values {
                table.push(vec![entity_text(components), key.clone(), value.to_string()]);
            }
        }
        table.render()
    });
    Ok(())
}

fn alter(
    session: &mut Session,
    entity: &EntityArgs,
    set: &[String],
    delete: &[String],
    validate_only: bool,
    output: Output,
) -> Result<()> {
    let components = entity.components();
    if components.is_empty() {
        bail!("name an entity: --user, --user-default, --client-id or --client-default");
    }
    let mut ops = Vec::new();
    for entry in set {
        let (key, value) = entry.split_once('=').with_context(|| format!("{entry:?} is not KEY=VALUE"))?;
        let value: f64 = value.trim().parse().with_context(|| format!("{entry:?}: the value is not a number"))?;
        ops.push(
            alter_client_quotas_request::OpData::default()
                .with_key(StrBytes::from_string(key.trim().to_owned()))
                .with_value(value),
        );
    }
    for key in delete {
        ops.push(
            alter_client_quotas_request::OpData::default()
                .with_key(StrBytes::from_string(key.trim().to_owned()))
                .with_remove(true),
        );
    }
    if ops.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
    }
    let entity_data = components
        .iter()
        .map(|(kind, name)| {
            alter_client_quotas_request::EntityData::default()
                .with_entity_type(StrBytes::from_static_str(kind))
                .with_entity_name(name.map(|name| StrBytes::from_string(name.to_owned())))
        })
        .collect();
    let entry = alter_client_quotas_request::EntryData::default().with_entity(entity_data).with_ops(ops);
    let request = AlterClientQuotasRequest::default().with_entries(vec![entry]).with_validate_only(validate_only);
    let response = session.connection().send(&request).context("AlterClientQuotas request failed")?;
    let text = entity_text(
        &components.iter().map(|(kind, name)| ((*kind).to_owned(), name.map(str::to_owned))).collect::<Vec<_>>(),
    );
    for entry in &response.entries {
        if let Some(error) = entry.error_code.err() {
            bail!("cannot alter the quotas of {text}: {}", describe_error(error, entry.error_message.as_deref()));
        }
    }
    let verb = if validate_only { "validated" } else { "altered" };
    output.emit(&json!({"entity": text, verb: true}), || format!("Quotas of {text} {verb}.\n"));
    Ok(())
}
