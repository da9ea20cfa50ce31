//! CreateAcls (v1-v3): ACL bindings created through the controller, one result per creation in
//! order. As Kafka's `AclApis`: CLUSTER ALTER is needed (CLUSTER_AUTHORIZATION_FAILED on every
//! result otherwise), SECURITY_DISABLED when no authorizer is on, INVALID_REQUEST for a binding
//! Kafka refuses; creating a binding that exists succeeds.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, CreateAclsResponse};

use super::{code, message};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::{AclBinding, AclOperation, PatternType, PermissionType, ResourceType};
use crate::security::{acl_control, authorizer};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::CreateAcls, min: 1, max: 3 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: CreateAclsRequest,
) -> Outcome<CreateAclsResponse> {
    let count = request.creations.len();
    let refuse_all = |error: ResponseError, text: &str| {
        let result = AclCreationResult::default().with_error_code(code(error)).with_error_message(message(text));
        Outcome::Respond(CreateAclsResponse::default().with_results(vec![result; count]))
    };
    if !authorizer::authorize(&shard, &call, AclOperation::Alter, authorizer::Resource::Cluster) {
        return refuse_all(ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed.");
    }
    if !authorizer::enabled(&shard) {
        return refuse_all(ResponseError::SecurityDisabled, "No Authorizer is configured.");
    }
    let bindings: Vec<AclBinding> = request.creations.iter().map(binding_of).collect();
    let answers = acl_control::create(&shard.shared.metadata, bindings).await;
    let results = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(()) => AclCreationResult::default(),
            Err(refusal) => AclCreationResult::default()
                .with_error_code(code(refusal.error))
                .with_error_message(message(refusal.message)),
        })
        .collect();
    Outcome::Respond(CreateAclsResponse::default().with_results(results))
}

fn binding_of(creation: &AclCreation) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(creation.resource_type),
        resource_name: creation.resource_name.to_string(),
        pattern_type: PatternType::from_code(creation.resource_pattern_type),
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: AclOperation::from_code(creation.operation),
        permission: PermissionType::from_code(creation.permission_type),
    }
}
