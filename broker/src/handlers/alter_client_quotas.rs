//! AlterClientQuotas (v0-v1): sets and removes client quotas, decided by the active controller
//! with Kafka's rules (see `crate::quota::entity`) and written to the metadata log, so every
//! broker enforces the same quotas. With `validate_only` the entries are checked and nothing
//! is written. Each distinct entity of the request gets one answer, as in Kafka.

use std::rc::Rc;

use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey};

use super::{code, message};
use crate::context::ShardContext;
use crate::controller::wire::{ControllerRequest, Outcome as ControllerOutcome};
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::metadata::Refusal;
use crate::quota::entity::QuotaAlteration;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::AlterClientQuotas, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: AlterClientQuotasRequest,
) -> Outcome<AlterClientQuotasResponse> {
    let alterations: Vec<QuotaAlteration> = request
        .entries
        .iter()
        .map(|entry| QuotaAlteration {
            entity: entry
                .entity
                .iter()
                .map(|entity| (entity.entity_type.to_string(), entity.entity_name.as_ref().map(ToString::to_string)))
                .collect(),
            ops: entry.ops.iter().map(|op| (op.key.to_string(), (!op.remove).then_some(op.value))).collect(),
        })
        .collect();
    // As Kafka: ALTER_CONFIGS on the cluster.
    let answers = match denied(&shard, &call, AclOperation::AlterConfigs, Resource::Cluster) {
        Some(error) => alterations.iter().map(|_| Err(Refusal::new(error, "Cluster authorization failed."))).collect(),
        None => submit(&shard, &alterations, request.validate_only).await,
    };
    let mut seen = Vec::with_capacity(alterations.len());
    let mut entries = Vec::with_capacity(alterations.len());
    for (alteration, answer) in alterations.iter().zip(answers) {
        let key = alteration.entity_key();
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let entity = alteration
            .entity
            .iter()
            .map(|(kind, name)| {
                EntityData::default()
                    .with_entity_type(super::str_bytes(kind))
                    .with_entity_name(name.as_deref().map(super::str_bytes))
            })
            .collect();
        let entry = match answer {
            Ok(()) => EntryData::default().with_entity(entity),
            Err(refusal) => EntryData::default()
                .with_entity(entity)
                .with_error_code(code(refusal.error))
                .with_error_message(message(refusal.message)),
        };
        entries.push(entry);
    }
    Outcome::Respond(AlterClientQuotasResponse::default().with_entries(entries))
}

/// Sends the alterations to the active controller: one answer per entry, in order. A value
/// the metadata log cannot carry (not a finite number) is refused here, never sent.
async fn submit(
    shard: &ShardContext,
    alterations: &[QuotaAlteration],
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let mut answers: Vec<Option<Result<(), Refusal>>> = alterations
        .iter()
        .map(|alteration| {
            let bad = alteration.ops.iter().find(|(_, value)| value.is_some_and(|value| !value.is_finite()));
            bad.map(|(key, _)| {
                Err(Refusal::new(
                    kafka_protocol::ResponseError::InvalidRequest,
                    format!("Quota {key} must be a finite number"),
                ))
            })
        })
        .collect();
    let sent: Vec<QuotaAlteration> = alterations
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| answer.is_none())
        .map(|(alteration, _)| alteration.clone())
        .collect();
    let count = sent.len();
    let decided: Vec<Result<(), Refusal>> = if count == 0 {
        Vec::new()
    } else {
        let request = ControllerRequest::AlterClientQuotas { alterations: sent, validate_only };
        match shard.shared.metadata.submit(request).await {
            Ok(ControllerOutcome::Each(decided)) if decided.len() == count => {
                decided.into_iter().map(|answer| answer.map_err(Refusal::from)).collect()
            }
            Ok(other) => {
                let refusal = Refusal::new(
                    kafka_protocol::ResponseError::UnknownServerError,
                    format!("unexpected controller answer {other:?}"),
                );
                vec![Err(refusal); count]
            }
            Err(refusal) => vec![Err(refusal); count],
        }
    };
    let mut decided = decided.into_iter();
    for answer in &mut answers {
        if answer.is_none() {
            *answer = decided.next();
        }
    }
    answers.into_iter().map(|answer| answer.unwrap_or(Ok(()))).collect()
}
