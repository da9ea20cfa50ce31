//! Kafka's authorized-operations fields: the operations a principal may perform on a topic, a
//! group or the cluster, as the bitfield Metadata, DescribeCluster, DescribeGroups,
//! ConsumerGroupDescribe and DescribeTopicPartitions answer when a client asks
//! (`include_*_authorized_operations`).
//!
//! As Kafka's `AuthHelper.authorizedOperations`:
//! 1. the operations asked about are those Kafka supports on the resource type
//!    (`AclEntry.supportedOperations`), never ALL;
//! 2. with the authorizer off every supported operation is answered, and so for a super user;
//! 3. else each is decided as a request for it on the LITERAL resource would be (implied
//!    DESCRIBE and DESCRIBE_CONFIGS included, the no-ACL default included);
//! 4. the answer sets bit `1 << code` for each allowed operation (Kafka's
//!    `Utils.to32BitField`). A field not asked for holds `i32::MIN`, which this module never
//!    answers.
//!
//! The decisions of step 3 take one pass over the ACLs that apply to the resource
//! ([`AclIndex::verdicts`]) rather than one lookup per operation. Pure functions; any thread.

use super::acl::{AclOperation, ResourceType};
use super::authorizer::{AclIndex, Resource, Settings, Subject, Verdict};

/// Kafka's supported operations on a topic.
const TOPIC: [AclOperation; 8] = [
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Describe,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// Kafka's supported operations on a group.
const GROUP: [AclOperation; 5] = [
    AclOperation::Read,
    AclOperation::Describe,
    AclOperation::Delete,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// Kafka's supported operations on the cluster.
const CLUSTER: [AclOperation; 7] = [
    AclOperation::Create,
    AclOperation::ClusterAction,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
    AclOperation::IdempotentWrite,
    AclOperation::Alter,
    AclOperation::Describe,
];

/// Kafka's supported operations on a transactional id.
const TRANSACTIONAL_ID: [AclOperation; 3] = [AclOperation::Describe, AclOperation::Write, AclOperation::TwoPhaseCommit];

/// The bitfield of `operations`: bit `1 << code` for each.
pub(crate) fn bitfield(operations: impl IntoIterator<Item = AclOperation>) -> i32 {
    operations.into_iter().fold(0, |field, operation| {
        let code = operation.code();
        assert!((0..32).contains(&code), "an operation code fits a 32-bit field");
        field | (1 << code)
    })
}

/// Every operation Kafka supports on the resource: the answer with the authorizer off.
pub(crate) fn supported(resource: Resource<'_>) -> i32 {
    match resource {
        Resource::Topic(_) => bitfield(TOPIC),
        Resource::Group(_) => bitfield(GROUP),
        Resource::Cluster => bitfield(CLUSTER),
        Resource::TransactionalId(_) => bitfield(TRANSACTIONAL_ID),
    }
}

/// The operations the subject may perform on the resource (steps 2-4).
pub(crate) fn authorized(
    index: &AclIndex,
    settings: Settings<'_>,
    subject: Subject<'_>,
    resource: Resource<'_>,
) -> i32 {
    if settings.is_super_user(subject.principal) {
        return supported(resource);
    }
    match resource {
        Resource::Topic(name) => allowed(index, settings, subject, TOPIC, (ResourceType::Topic, name)),
        Resource::Group(name) => allowed(index, settings, subject, GROUP, (ResourceType::Group, name)),
        Resource::Cluster => {
            allowed(index, settings, subject, CLUSTER, (ResourceType::Cluster, super::acl::CLUSTER_NAME))
        }
        Resource::TransactionalId(name) => {
            allowed(index, settings, subject, TRANSACTIONAL_ID, (ResourceType::TransactionalId, name))
        }
    }
}

fn allowed<const N: usize>(
    index: &AclIndex,
    settings: Settings<'_>,
    subject: Subject<'_>,
    operations: [AclOperation; N],
    (resource_type, name): (ResourceType, &str),
) -> i32 {
    let verdicts = index.verdicts(subject, operations, resource_type, name);
    bitfield(operations.into_iter().zip(verdicts).filter_map(|(operation, verdict)| {
        let allowed = match verdict {
            Verdict::Allowed => true,
            Verdict::Denied => false,
            Verdict::NoAcls => settings.allow_everyone_if_no_acl_found,
        };
        allowed.then_some(operation)
    }))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::super::Principal;
    use super::super::acl::tests::binding;
    use super::super::acl::{AclBinding, PatternType, PermissionType};
    use super::super::authorizer::decide;
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const CLOSED: Settings<'static> = Settings { super_users: &[], allow_everyone_if_no_acl_found: false };

    fn operations_of(bindings: &[AclBinding], settings: Settings<'_>, resource: Resource<'_>) -> i32 {
        let index = AclIndex::build(bindings.iter());
        let principal = Principal::user("alice");
        authorized(&index, settings, Subject { principal: &principal, host: LOCAL }, resource)
    }

    fn allow(resource: (ResourceType, &str, PatternType), operation: AclOperation) -> AclBinding {
        binding(resource, "User:alice", operation, PermissionType::Allow)
    }

    #[test]
    fn supported_operations_are_kafkas_bitfields() {
        // READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10,
        // ALTER_CONFIGS 11: what Kafka answers for a topic with no authorizer.
        assert_eq!(supported(Resource::Topic("t")), 0b1101_1111_1000);
        // READ 3, DELETE 6, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11.
        assert_eq!(supported(Resource::Group("g")), 0b1101_0100_1000);
        // CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
        // IDEMPOTENT_WRITE 12.
        assert_eq!(supported(Resource::Cluster), 0b1_1111_1010_0000);
        // DESCRIBE 8, WRITE 4, TWO_PHASE_COMMIT 15.
        assert_eq!(supported(Resource::TransactionalId("x")), (1 << 4) | (1 << 8) | (1 << 15));
    }

    #[test]
    fn read_allows_read_and_the_implied_describe_only() {
        let acls = [allow((ResourceType::Topic, "t", PatternType::Literal), AclOperation::Read)];
        assert_eq!(operations_of(&acls, CLOSED, Resource::Topic("t")), (1 << 3) | (1 << 8));
        assert_eq!(operations_of(&acls, CLOSED, Resource::Topic("u")), 0);
    }

    #[test]
    fn all_allows_every_supported_operation_and_a_deny_removes_its_own() {
        let all = allow((ResourceType::Group, "g", PatternType::Prefixed), AclOperation::All);
        assert_eq!(
            operations_of(std::slice::from_ref(&all), CLOSED, Resource::Group("gx")),
            supported(Resource::Group("gx"))
        );
        let deny = binding(
            (ResourceType::Group, "*", PatternType::Literal),
            "User:*",
            AclOperation::Read,
            PermissionType::Deny,
        );
        assert_eq!(
            operations_of(&[all, deny], CLOSED, Resource::Group("gx")),
            supported(Resource::Group("gx")) & !(1 << 3)
        );
    }

    #[test]
    fn super_users_and_the_no_acl_default_answer_every_supported_operation() {
        let supers = ["User:alice".to_owned()];
        let deny = [binding(
            (ResourceType::Cluster, "kafka-cluster", PatternType::Literal),
            "User:alice",
            AclOperation::All,
            PermissionType::Deny,
        )];
        let super_settings = Settings { super_users: &supers, allow_everyone_if_no_acl_found: false };
        assert_eq!(operations_of(&deny, super_settings, Resource::Cluster), supported(Resource::Cluster));
        assert_eq!(operations_of(&deny, CLOSED, Resource::Cluster), 0);
        let open = Settings { super_users: &[], allow_everyone_if_no_acl_found: true };
        assert_eq!(operations_of(&[], open, Resource::Topic("t")), supported(Resource::Topic("t")));
        assert_eq!(operations_of(&[], CLOSED, Resource::Topic("t")), 0);
    }

    const NAMES: &[&str] = &["a", "ab", "*"];
    const PRINCIPALS: &[&str] = &["User:alice", "User:bob", "User:*"];
    const OPERATIONS: &[AclOperation] = &[
        AclOperation::All,
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Create,
        AclOperation::Delete,
        AclOperation::Alter,
        AclOperation::Describe,
        AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs,
    ];

    fn acl() -> impl Strategy<Value = AclBinding> {
        (0..NAMES.len(), any::<bool>(), 0..PRINCIPALS.len(), 0..OPERATIONS.len(), any::<bool>()).prop_map(
            |(name, prefixed, principal, operation, allowed)| {
                let pattern = if prefixed { PatternType::Prefixed } else { PatternType::Literal };
                let permission = if allowed { PermissionType::Allow } else { PermissionType::Deny };
                binding(
                    (ResourceType::Topic, NAMES[name], pattern),
                    PRINCIPALS[principal],
                    OPERATIONS[operation],
                    permission,
                )
            },
        )
    }

    proptest! {
        /// The one-pass bitfield sets exactly the bits of the supported operations that one
        /// decision each allows, as Kafka's per-operation `authorize` calls would.
        #[test]
        fn the_bitfield_agrees_with_one_decision_per_operation(
            bindings in proptest::collection::vec(acl(), 0..10),
            name in prop::sample::select(&NAMES[..2]),
            allow_everyone in any::<bool>(),
        ) {
            let settings = Settings { super_users: &[], allow_everyone_if_no_acl_found: allow_everyone };
            let index = AclIndex::build(bindings.iter());
            let principal = Principal::user("alice");
            let subject = Subject { principal: &principal, host: LOCAL };
            let one_by_one = bitfield(
                TOPIC.into_iter().filter(|operation| decide(&index, settings, subject, *operation, Resource::Topic(name))),
            );
            prop_assert_eq!(authorized(&index, settings, subject, Resource::Topic(name)), one_by_one);
        }
    }
}
