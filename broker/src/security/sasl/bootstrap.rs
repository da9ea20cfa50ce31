//! SCRAM users created at start (`--add-scram`, Kafka's `kafka-storage format --add-scram`), so
//! that a new cluster can authenticate its first clients before any client could create a user.
//!
//! Runs once at startup, after this broker registered and caught up with the metadata log and
//! before it accepts clients. Each user is written only if it has no credential for that
//! mechanism yet (decided by the active controller against the current image), so a restart,
//! or every broker of a cluster giving the same flag, changes nothing, and a password changed
//! later through AlterUserScramCredentials is kept.

use super::credentials::{ScramAlteration, ScramUpsertion};
use super::scram::ScramMechanism;
use crate::config::sasl::{SaslMechanism, ScramSecret, ScramUserSpec};
use crate::controller::wire::{ControllerRequest, Outcome};
use crate::metadata::Metadata;

/// Writes the users of `users` that have no credential for their mechanism yet.
///
/// # Errors
/// The controller's refusal, as a reason for the broker not to start.
pub(crate) fn add_scram_users(metadata: &Metadata, users: &[ScramUserSpec]) -> Result<(), String> {
    if users.is_empty() {
        return Ok(());
    }
    // One request per user: Kafka refuses a user named twice in one request (two mechanisms).
    for spec in users {
        let upsertion = upsertion(spec);
        let alteration = ScramAlteration { deletions: Vec::new(), upsertions: vec![upsertion] };
        let request = ControllerRequest::AlterScramCredentials(alteration);
        match sluice_engine::block_on(metadata.submit(request)) {
            Ok(Outcome::Each(answers)) => {
                if let Some(Err(refusal)) = answers.into_iter().next() {
                    return Err(format!("--add-scram for user {}: {}", spec.name, refusal.message));
                }
            }
            Ok(other) => return Err(format!("--add-scram: unexpected controller answer {other:?}")),
            Err(refusal) => return Err(format!("--add-scram for user {}: {}", spec.name, refusal.message)),
        }
    }
    tracing::info!(entries = users.len(), "SCRAM users from --add-scram are in place");
    Ok(())
}

fn upsertion(spec: &ScramUserSpec) -> ScramUpsertion {
    let mechanism = match spec.mechanism {
        SaslMechanism::ScramSha512 => ScramMechanism::Sha512,
        _ => ScramMechanism::Sha256,
    };
    let salt = spec.salt.clone().unwrap_or_else(|| super::random_token(24).into_bytes());
    let salted = match &spec.secret {
        ScramSecret::Password(password) => mechanism.salted_password(password.as_bytes(), &salt, spec.iterations),
        ScramSecret::SaltedPassword(salted) => salted.clone(),
    };
    ScramUpsertion {
        name: spec.name.clone(),
        mechanism: mechanism.type_code(),
        iterations: spec.iterations,
        credential: Some(mechanism.credential(salt, &salted, spec.iterations)),
        only_if_absent: true,
    }
}
