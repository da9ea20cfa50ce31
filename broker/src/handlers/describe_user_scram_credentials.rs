//! DescribeUserScramCredentials (v0): each user's SCRAM mechanisms and iterations, from this
//! broker's metadata image (never a salt or key), with Kafka's answers for a user named twice
//! or unknown.

use std::rc::Rc;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{ApiKey, DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};

use super::{message, str_bytes};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Resource, denied};
use crate::security::sasl::credentials;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeUserScramCredentials, min: 0, max: 0 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeUserScramCredentialsRequest,
) -> Outcome<DescribeUserScramCredentialsResponse> {
    // As Kafka: DESCRIBE on the cluster.
    if let Some(error) = denied(&shard, &call, AclOperation::Describe, Resource::Cluster) {
        return Outcome::Respond(DescribeUserScramCredentialsResponse::default().with_error_code(error.code()));
    }
    let users: Option<Vec<String>> =
        request.users.map(|users| users.iter().map(|user| user.name.to_string()).collect());
    let image = shard.image();
    let results = credentials::describe(&image.scram, users.as_deref())
        .into_iter()
        .map(|description| {
            let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(&description.user));
            match description.result {
                Ok(mechanisms) => result.with_credential_infos(
                    mechanisms
                        .into_iter()
                        .map(|(mechanism, iterations)| {
                            CredentialInfo::default().with_mechanism(mechanism.type_code()).with_iterations(iterations)
                        })
                        .collect(),
                ),
                Err(refusal) => result.with_error_code(refusal.code).with_error_message(message(refusal.message)),
            }
        })
        .collect();
    Outcome::Respond(DescribeUserScramCredentialsResponse::default().with_results(results))
}
