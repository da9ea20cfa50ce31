//! `sluicectl acls list|create|delete`: ACLs through DescribeAcls, CreateAcls and DeleteAcls, as
//! `kafka-acls.sh` manages them. A binding is a resource (`--topic`, `--group`, `--cluster`,
//! `--transactional-id`, with `--pattern literal|prefixed`) and an entry (`--principal`,
//! `--host`, `--operation`, `--deny`); `list` and `delete` take the same flags as a filter,
//! where a flag left out matches everything. Main thread only.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, create_acls_request, delete_acls_request,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use crate::output::{Output, Table};
use crate::session::{Session, describe_error};

/// Kafka's codes: resource types, pattern types, operations, permission types (`ANY` is 1 in each).
const ANY: i8 = 1;
const RESOURCE_TYPES: &[(&str, i8)] =
    &[("TOPIC", 2), ("GROUP", 3), ("CLUSTER", 4), ("TRANSACTIONAL_ID", 5), ("DELEGATION_TOKEN", 6), ("USER", 7)];
const PATTERN_TYPES: &[(&str, i8)] = &[("MATCH", 2), ("LITERAL", 3), ("PREFIXED", 4)];
const OPERATIONS: &[(&str, i8)] = &[
    ("ALL", 2),
    ("READ", 3),
    ("WRITE", 4),
    ("CREATE", 5),
    ("DELETE", 6),
    ("ALTER", 7),
    ("DESCRIBE", 8),
    ("CLUSTER_ACTION", 9),
    ("DESCRIBE_CONFIGS", 10),
    ("ALTER_CONFIGS", 11),
    ("IDEMPOTENT_WRITE", 12),
    ("CREATE_TOKENS", 13),
    ("DESCRIBE_TOKENS", 14),
];
const DENY: i8 = 2;
const ALLOW: i8 = 3;

#[derive(Debug, Subcommand)]
pub(crate) enum AclsCommand {
    /// The ACLs that match (every ACL without a flag).
    List(AclArgs),
    /// Create one ACL.
    Create(AclArgs),
    /// Delete the ACLs that match (at least one flag is needed).
    Delete(AclArgs),
}

/// A binding, or a filter over bindings.
#[derive(Debug, Args)]
pub(crate) struct AclArgs {
    /// A topic.
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// A consumer group.
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// A transactional id.
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    /// The cluster (`kafka-cluster`).
    #[arg(long, group = "resource")]
    cluster: bool,
    /// How the resource name applies: `literal` (`*` is every name), `prefixed`, or for `list`
    /// and `delete` `match` (every pattern that applies to the name) [default: literal].
    #[arg(long, value_name = "literal|prefixed|match")]
    pattern: Option<String>,
    /// The principal, `User:alice` (`User:*` for everyone).
    #[arg(long)]
    principal: Option<String>,
    /// The client host, an IP address [default for create: `*`, every host].
    #[arg(long)]
    host: Option<String>,
    /// The operation, Kafka's name (`read`, `write`, `describe-configs`, `all`, ...).
    #[arg(long)]
    operation: Option<String>,
    /// A DENY entry (an ALLOW one without it; for `list` and `delete`, both unless given).
    #[arg(long, conflicts_with = "allow")]
    deny: bool,
    /// Only ALLOW entries (for `list` and `delete`).
    #[arg(long)]
    allow: bool,
}

/// A filter's or binding's fields as Kafka codes and names.
struct Resolved {
    resource_type: i8,
    name: Option<String>,
    pattern_type: i8,
    principal: Option<String>,
    host: Option<String>,
    operation: i8,
    permission: i8,
}

fn code_of(table: &[(&str, i8)], what: &str, text: &str) -> Result<i8> {
    let wanted = text.trim().replace('-', "_");
    table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&wanted))
        .map(|(_, code)| *code)
        .with_context(|| format!("unknown {what} {text:?}"))
}

fn name_of(table: &[(&str, i8)], code: i8) -> String {
    table.iter().find(|(_, known)| *known == code).map_or_else(|| format!("({code})"), |(name, _)| (*name).to_owned())
}

impl AclArgs {
    fn resolve(&self, default_pattern: i8) -> Result<Resolved> {
        let (resource_type, name) = if let Some(topic) = &self.topic {
            (2, Some(topic.clone()))
        } else if let Some(group) = &self.group {
            (3, Some(group.clone()))
        } else if let Some(id) = &self.transactional_id {
            (5, Some(id.clone()))
        } else if self.cluster {
            (4, Some("kafka-cluster".to_owned()))
        } else {
            (ANY, None)
        };
        let pattern_type = match &self.pattern {
            Some(text) => code_of(PATTERN_TYPES, "pattern type", text)?,
            None if name.is_some() => default_pattern,
            None => ANY,
        };
        let operation = self.operation.as_deref().map_or(Ok(ANY), |text| code_of(OPERATIONS, "operation", text))?;
        let permission = if self.deny {
            DENY
        } else if self.allow {
            ALLOW
        } else {
            ANY
        };
        Ok(Resolved {
            resource_type,
            name,
            pattern_type,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation,
            permission,
        })
    }
}

pub(crate) fn run(session: &mut Session, command: &AclsCommand, output: Output) -> Result<()> {
    match command {
        AclsCommand::List(args) => list(session, args, output),
        AclsCommand::Create(args) => create(session, args, output),
        AclsCommand::Delete(args) => delete(session, args, output),
    }
}

fn text(value: Option<&str>) -> Option<StrBytes> {
    value.map(|value| StrBytes::from_string(value.to_owned()))
}

/// One binding as printed: resource type, name, pattern, principal, host, operation, permission.
type Row = [String; 7];

fn row(codes: (i8, i8, i8, i8), name: &str, principal: &str, host: &str) -> Row {
    let (resource_type, pattern_type, operation, permission) = codes;
    [
        name_of(RESOURCE_TYPES, resource_type),
        name.to_owned(),
        name_of(PATTERN_TYPES, pattern_type),
        principal.to_owned(),
        host.to_owned(),
        name_of(OPERATIONS, operation),
        if permission == DENY { "DENY".to_owned() } else { "ALLOW".to_owned() },
    ]
}

fn emit(rows: &[Row], output: Output) {
    let json: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({"resource_type": row[0], "name": row[1], "pattern": row[2], "principal": row[3],
                   "host": row[4], "operation": row[5], "permission": row[6]})
        })
        .collect();
    output.emit(&json!(json), || {
        let mut table = Table::new(&["RESOURCE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]);
        for row in rows {
            table.push(row.to_vec());
        }
        table.render()
    });
}

fn list(session: &mut Session, args: &AclArgs, output: Output) -> Result<()> {
    let filter = args.resolve(3)?;
    let request = DescribeAclsRequest::default()
        .with_resource_type_filter(filter.resource_type)
        .with_resource_name_filter(text(filter.name.as_deref()))
        .with_pattern_type_filter(filter.pattern_type)
        .with_principal_filter(text(filter.principal.as_deref()))
        .with_host_filter(text(filter.host.as_deref()))
        .with_operation(filter.operation)
        .with_permission_type(filter.permission);
    let response = session.connection().send(&request).context("DescribeAcls request failed")?;
    if let Some(error) = response.error_code.err() {
        bail!("cannot list ACLs: {}", describe_error(error, response.error_message.as_deref()));
    }
    let mut rows: Vec<Row> = Vec::new();
    for resource in &response.resources {
        for acl in &resource.acls {
            rows.push(row(
                (resource.resource_type, resource.pattern_type, acl.operation, acl.permission_type),
                &resource.resource_name,
                &acl.principal,
                &acl.host,
            ));
        }
    }
    rows.sort();
    emit(&rows, output);
    Ok(())
}

fn create(session: &mut Session, args: &AclArgs, output: Output) -> Result<()> {
    let binding = args.resolve(3)?;
    let (Some(name), Some(principal)) = (&binding.name, &binding.principal) else {
        bail!("name a resource (--topic, --group, --transactional-id or --cluster) and a --principal");
    };
    if binding.operation == ANY {
        bail!("name an --operation (read, write, describe, all, ...)");
    }
    let permission = if binding.permission == DENY { DENY } else { ALLOW };
    let host = binding.host.clone().unwrap_or_else(|| "*".to_owned());
    let creation = create_acls_request::AclCreation::default()
        .with_resource_type(binding.resource_type)
        .with_resource_name(StrBytes::from_string(name.clone()))
        .with_resource_pattern_type(binding.pattern_type)
        .with_principal(StrBytes::from_string(principal.clone()))
        .with_host(StrBytes::from_string(host.clone()))
        .with_operation(binding.operation)
        .with_permission_type(permission);
    let request = CreateAclsRequest::default().with_creations(vec![creation]);
    let response = session.connection().send(&request).context("CreateAcls request failed")?;
    for result in &response.results {
        if let Some(error) = result.error_code.err() {
            bail!("cannot create the ACL: {}", describe_error(error, result.error_message.as_deref()));
        }
    }
    let codes = (binding.resource_type, binding.pattern_type, binding.operation, permission);
    emit(&[row(codes, name, principal, &host)], output);
    Ok(())
}

fn delete(session: &mut Session, args: &AclArgs, output: Output) -> Result<()> {
    let filter = args.resolve(3)?;
    if filter.resource_type == ANY && filter.principal.is_none() && filter.operation == ANY {
        bail!("give at least a resource, a --principal or an --operation: deleting every ACL is not done here");
    }
    let request = DeleteAclsRequest::default().with_filters(vec![
        delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(filter.resource_type)
            .with_resource_name_filter(text(filter.name.as_deref()))
            .with_pattern_type_filter(filter.pattern_type)
            .with_principal_filter(text(filter.principal.as_deref()))
            .with_host_filter(text(filter.host.as_deref()))
            .with_operation(filter.operation)
            .with_permission_type(filter.permission),
    ]);
    let response = session.connection().send(&request).context("DeleteAcls request failed")?;
    let mut rows: Vec<Row> = Vec::new();
    for result in &response.filter_results {
        if let Some(error) = result.error_code.err() {
            bail!("cannot delete ACLs: {}", describe_error(error, result.error_message.as_deref()));
        }
        for acl in &result.matching_acls {
            rows.push(row(
                (acl.resource_type, acl.pattern_type, acl.operation, acl.permission_type),
                &acl.resource_name,
                &acl.principal,
                &acl.host,
            ));
        }
    }
    rows.sort();
    emit(&rows, output);
    Ok(())
}
