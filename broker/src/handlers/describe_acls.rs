//! DescribeAcls (v1-v3): the bindings a filter matches, grouped by resource pattern. As Kafka's
//! `AclApis`: CLUSTER DESCRIBE is needed (CLUSTER_AUTHORIZATION_FAILED otherwise),
//! SECURITY_DISABLED when no authorizer is on, INVALID_REQUEST for a filter with an UNKNOWN part.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{ApiKey, DescribeAclsRequest, DescribeAclsResponse};

use super::{code, message, str_bytes};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::acl::{AclFilter, AclOperation, PatternType, PermissionType, ResourceType};
use crate::security::authorizer;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeAcls, min: 1, max: 3 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeAclsRequest,
) -> Outcome<DescribeAclsResponse> {
    let refuse = |error: ResponseError, text: &str| {
        Outcome::Respond(DescribeAclsResponse::default().with_error_code(code(error)).with_error_message(message(text)))
    };
    if !authorizer::authorize(&shard, &call, AclOperation::Describe, authorizer::Resource::Cluster) {
        return refuse(ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed.");
    }
    if !authorizer::enabled(&shard) {
        return refuse(ResponseError::SecurityDisabled, "No Authorizer is configured on the broker");
    }
    let filter = AclFilter {
        resource_type: ResourceType::from_code(request.resource_type_filter),
        resource_name: request.resource_name_filter.as_ref().map(ToString::to_string),
        pattern_type: PatternType::from_code(request.pattern_type_filter),
        principal: request.principal_filter.as_ref().map(ToString::to_string),
        host: request.host_filter.as_ref().map(ToString::to_string),
        operation: AclOperation::from_code(request.operation),
        permission: PermissionType::from_code(request.permission_type),
    };
    if filter.is_unknown() {
        return refuse(ResponseError::InvalidRequest, "DescribeAclsRequest contains UNKNOWN elements");
    }
    let image = shard.image();
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for (_, binding) in image.acls.iter().filter(|(_, binding)| filter.matches(binding)) {
        let key = (binding.resource_type.code(), binding.resource_name.clone(), binding.pattern_type.code());
        resources.entry(key).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(&binding.principal))
                .with_host(str_bytes(&binding.host))
                .with_operation(binding.operation.code())
                .with_permission_type(binding.permission.code()),
        );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(&name))
                .with_pattern_type(pattern_type)
                .with_acls(acls)
        })
        .collect();
    Outcome::Respond(DescribeAclsResponse::default().with_resources(resources))
}
