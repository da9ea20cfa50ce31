//! AlterUserScramCredentials (v0): SCRAM credentials set or deleted, decided by the active
//! controller with Kafka's checks (`security::sasl::credentials`). The client sends each
//! password salted (`Hi(password, salt, iterations)`); this broker turns it into the stored and
//! server keys at once, so the salted password goes no further.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey};

use super::{code, message, str_bytes};
use crate::context::ShardContext;
use crate::controller::wire::{ControllerRequest, Outcome as Decided};
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};
use crate::security::sasl::credentials::{ScramAlteration, ScramUpsertion};
use crate::security::sasl::scram::ScramMechanism;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::AlterUserScramCredentials, min: 0, max: 0 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: AlterUserScramCredentialsRequest,
) -> Outcome<AlterUserScramCredentialsResponse> {
    let deletions = request.deletions.iter().map(|deletion| (deletion.name.to_string(), deletion.mechanism)).collect();
    let upsertions = request
        .upsertions
        .iter()
        .map(|upsertion| ScramUpsertion {
            name: upsertion.name.to_string(),
            mechanism: upsertion.mechanism,
            iterations: upsertion.iterations,
            credential: ScramMechanism::from_type(upsertion.mechanism).map(|mechanism| {
                mechanism.credential(upsertion.salt.to_vec(), &upsertion.salted_password, upsertion.iterations)
            }),
            only_if_absent: false,
        })
        .collect();
    let alteration = ScramAlteration { deletions, upsertions };
    let users = alteration.users();
    // As Kafka: ALTER on the cluster, every user refused otherwise.
    if let Some(error) = denied(&shard, &call, AclOperation::Alter, Resource::Cluster) {
        let refused = users.iter().map(|user| {
            AlterUserScramCredentialsResult::default().with_user(str_bytes(user)).with_error_code(code(error))
        });
        return Outcome::Respond(AlterUserScramCredentialsResponse::default().with_results(refused.collect()));
    }
    let answers = match shard.shared.metadata.submit(ControllerRequest::AlterScramCredentials(alteration)).await {
        Ok(Decided::Each(answers)) if answers.len() == users.len() => {
            answers.into_iter().map(|answer| answer.map_err(|refusal| (refusal.code, refusal.message))).collect()
        }
        Ok(_) => {
            vec![Err((code(ResponseError::UnknownServerError), "unexpected controller answer".to_owned())); users.len()]
        }
        Err(refusal) => vec![Err((code(refusal.error), refusal.message)); users.len()],
    };
    let results = users
        .into_iter()
        .zip(answers)
        .map(|(user, answer): (String, Result<(), (i16, String)>)| {
            let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
            match answer {
                Ok(()) => result,
                Err((error_code, text)) => result.with_error_code(error_code).with_error_message(message(text)),
            }
        })
        .collect();
    Outcome::Respond(AlterUserScramCredentialsResponse::default().with_results(results))
}
