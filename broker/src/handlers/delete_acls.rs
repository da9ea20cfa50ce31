//! DeleteAcls (v1-v3): the bindings each filter matches are removed through the controller, and
//! listed per filter. As Kafka's `AclApis`: CLUSTER ALTER is needed (CLUSTER_AUTHORIZATION_FAILED
//! on every filter result otherwise), SECURITY_DISABLED when no authorizer is on, INVALID_REQUEST
//! for a filter with an UNKNOWN part.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::{ApiKey, DeleteAclsRequest, DeleteAclsResponse};

use super::{code, message, str_bytes};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::{AclBinding, AclFilter, AclOperation, PatternType, PermissionType, ResourceType};
use crate::security::{acl_control, authorizer};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DeleteAcls, min: 1, max: 3 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DeleteAclsRequest,
) -> Outcome<DeleteAclsResponse> {
    let count = request.filters.len();
    let refuse_all = |error: ResponseError, text: &str| {
        let result = DeleteAclsFilterResult::default().with_error_code(code(error)).with_error_message(message(text));
        Outcome::Respond(DeleteAclsResponse::default().with_filter_results(vec![result; count]))
    };
    if !authorizer::authorize(&shard, &call, AclOperation::Alter, authorizer::Resource::Cluster) {
        return refuse_all(ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed.");
    }
    if !authorizer::enabled(&shard) {
        return refuse_all(ResponseError::SecurityDisabled, "No Authorizer is configured.");
    }
    let filters: Vec<AclFilter> = request.filters.iter().map(filter_of).collect();
    let answers = acl_control::delete(&shard.shared.metadata, filters).await;
    let results = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(bindings) => {
                DeleteAclsFilterResult::default().with_matching_acls(bindings.iter().map(matching).collect())
            }
            Err(refusal) => DeleteAclsFilterResult::default()
                .with_error_code(code(refusal.error))
                .with_error_message(message(refusal.message)),
        })
        .collect();
    Outcome::Respond(DeleteAclsResponse::default().with_filter_results(results))
}

fn filter_of(filter: &DeleteAclsFilter) -> AclFilter {
    AclFilter {
        resource_type: ResourceType::from_code(filter.resource_type_filter),
        resource_name: filter.resource_name_filter.as_ref().map(ToString::to_string),
        pattern_type: PatternType::from_code(filter.pattern_type_filter),
        principal: filter.principal_filter.as_ref().map(ToString::to_string),
        host: filter.host_filter.as_ref().map(ToString::to_string),
        operation: AclOperation::from_code(filter.operation),
        permission: PermissionType::from_code(filter.permission_type),
    }
}

fn matching(binding: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(binding.resource_type.code())
        .with_resource_name(str_bytes(&binding.resource_name))
        .with_pattern_type(binding.pattern_type.code())
        .with_principal(str_bytes(&binding.principal))
        .with_host(str_bytes(&binding.host))
        .with_operation(binding.operation.code())
        .with_permission_type(binding.permission.code())
}
