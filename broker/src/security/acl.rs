//! Kafka's ACL model: resource types, pattern types, operations and permission types with
//! Kafka's wire codes, an ACL binding (a resource pattern and an access control entry), and the
//! filters that CreateAcls, DescribeAcls and DeleteAcls carry.
//!
//! Bindings live in the metadata image ([`AclSet`]) so that every broker enforces the same set
//! and it survives restarts; the set is changed only by applying `CreateAcl` and `RemoveAcl`
//! metadata records, in log order, on the controller's thread. Any thread reads the image.
//! The lookup structure the authorizer decides with is derived from the set on first use after
//! a change (`authorizer::AclIndex`) and shared by every shard with the image.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::authorizer::AclIndex;

/// Kafka's name of the one CLUSTER resource.
pub(crate) const CLUSTER_NAME: &str = "kafka-cluster";
/// The resource name (LITERAL) and principal name that match every name.
pub(crate) const WILDCARD: &str = "*";

macro_rules! kafka_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub(crate) enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            /// Every value, in code order.
            #[cfg(test)]
            pub(crate) const ALL_VALUES: &'static [Self] = &[$(Self::$variant),*];

            /// Kafka's wire code.
            pub(crate) fn code(self) -> i8 {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The value of a wire code; codes Kafka does not define are `Unknown`, as Kafka's
            /// `fromCode` makes them.
            pub(crate) fn from_code(code: i8) -> Self {
                match code {
                    $($code => Self::$variant,)*
                    _ => Self::Unknown,
                }
            }

            /// Kafka's name (`TOPIC`, `PREFIXED`, `DESCRIBE_CONFIGS`, `ALLOW`).
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }
    };
}

kafka_enum! {
    /// Kafka's `ResourceType`.
    ResourceType {
        Unknown = 0, "UNKNOWN";
        /// Filters only.
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        /// One resource, named [`CLUSTER_NAME`].
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
}

kafka_enum! {
    /// Kafka's `PatternType`.
    PatternType {
        Unknown = 0, "UNKNOWN";
        /// Filters only: any pattern type, names compared exactly.
        Any = 1, "ANY";
        /// Filters only: every pattern that matches the filter's name (the literal name, the
        /// `*` wildcard, and the prefixes of the name).
        Match = 2, "MATCH";
        /// The name exactly, or every name when it is `*`.
        Literal = 3, "LITERAL";
        /// Every name starting with the pattern's name.
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// Kafka's `AclOperation`.
    AclOperation {
        Unknown = 0, "UNKNOWN";
        /// Filters only.
        Any = 1, "ANY";
        /// Every operation.
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
        TwoPhaseCommit = 15, "TWO_PHASE_COMMIT";
    }
}

kafka_enum! {
    /// Kafka's `AclPermissionType`.
    PermissionType {
        Unknown = 0, "UNKNOWN";
        /// Filters only.
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

impl AclOperation {
    /// Whether an ALLOW entry for `self` allows `requested`: the same operation, ALL, or one
    /// Kafka takes to imply it (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS
    /// implies DESCRIBE_CONFIGS). DENY entries deny only their own operation and ALL; see
    /// [`Self::denies`].
    pub(crate) fn allows(self, requested: Self) -> bool {
        self == requested
            || self == Self::All
            || match requested {
                Self::Describe => matches!(self, Self::Read | Self::Write | Self::Delete | Self::Alter),
                Self::DescribeConfigs => self == Self::AlterConfigs,
                _ => false,
            }
    }

    /// Whether a DENY entry for `self` denies `requested`.
    pub(crate) fn denies(self, requested: Self) -> bool {
        self == requested || self == Self::All
    }
}

/// One ACL: a resource pattern and an access control entry, as Kafka's `AclBinding`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct AclBinding {
    pub(crate) resource_type: ResourceType,
    pub(crate) resource_name: String,
    pub(crate) pattern_type: PatternType,
    /// `Type:name`, `User:*` for every principal.
    pub(crate) principal: String,
    /// A client IP, or `*` for every host.
    pub(crate) host: String,
    pub(crate) operation: AclOperation,
    pub(crate) permission: PermissionType,
}

impl AclBinding {
    /// Kafka's checks of a binding to create (the controller's `validateNewAcl` and the broker's
    /// before it): a concrete resource type, pattern type, operation and permission, a non-empty
    /// name, `kafka-cluster` for the cluster, a principal of the form `Type:name`.
    ///
    /// # Errors
    /// The INVALID_REQUEST message Kafka gives.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if matches!(self.resource_type, ResourceType::Unknown | ResourceType::Any) {
            return Err(format!("Invalid resourceType {}", self.resource_type.name()));
        }
        if !matches!(self.pattern_type, PatternType::Literal | PatternType::Prefixed) {
            return Err(format!("Invalid patternType {}", self.pattern_type.name()));
        }
        if matches!(self.operation, AclOperation::Unknown | AclOperation::Any) {
            return Err(format!("Invalid operation {}", self.operation.name()));
        }
        if !matches!(self.permission, PermissionType::Allow | PermissionType::Deny) {
            return Err(format!("Invalid permissionType {}", self.permission.name()));
        }
        if self.resource_name.is_empty() {
            return Err("Invalid empty resource name".to_owned());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!("The only valid name for the CLUSTER resource is {CLUSTER_NAME}"));
        }
        match self.principal.split_once(':') {
            Some((kind, _)) if !kind.is_empty() => Ok(()),
            _ => Err(format!("Invalid principal {:?}: expected Type:name", self.principal)),
        }
    }
}

/// A filter over bindings, as Kafka's `AclBindingFilter`: `None` and the `Any` values match
/// everything; the `Match` pattern type matches every pattern that would apply to the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AclFilter {
    pub(crate) resource_type: ResourceType,
    pub(crate) resource_name: Option<String>,
    pub(crate) pattern_type: PatternType,
    pub(crate) principal: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) operation: AclOperation,
    pub(crate) permission: PermissionType,
}

impl AclFilter {
    /// Whether the filter has an UNKNOWN part, which Kafka refuses with INVALID_REQUEST.
    pub(crate) fn is_unknown(&self) -> bool {
        self.resource_type == ResourceType::Unknown
            || self.pattern_type == PatternType::Unknown
            || self.operation == AclOperation::Unknown
            || self.permission == PermissionType::Unknown
    }

    /// Whether `binding` matches, as Kafka's `AclBindingFilter.matches`.
    pub(crate) fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(binding)
            && self.principal.as_ref().is_none_or(|principal| *principal == binding.principal)
            && self.host.as_ref().is_none_or(|host| *host == binding.host)
            && (self.operation == AclOperation::Any || self.operation == binding.operation)
            && (self.permission == PermissionType::Any || self.permission == binding.permission)
    }

    fn matches_pattern(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != binding.pattern_type
        {
            return false;
        }
        let Some(name) = &self.resource_name else { return true };
        if self.pattern_type != PatternType::Match || self.pattern_type == binding.pattern_type {
            return *name == binding.resource_name;
        }
        match binding.pattern_type {
            PatternType::Literal => *name == binding.resource_name || binding.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&binding.resource_name),
            _ => false,
        }
    }
}

/// The cluster's ACLs by id, in the metadata image.
///
/// Ids are given by the controller in increasing order (`next_id`), so the records that create
/// them are deterministic and a replayed record finds its binding under the same id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AclSet {
    bindings: Arc<BTreeMap<u64, AclBinding>>,
    next_id: u64,
    /// The authorizer's lookup structure, built from `bindings` on first use and dropped at
    /// every change.
    #[serde(skip)]
    index: OnceLock<Arc<AclIndex>>,
}

impl PartialEq for AclSet {
    fn eq(&self, other: &Self) -> bool {
        self.bindings == other.bindings && self.next_id == other.next_id
    }
}

impl Eq for AclSet {}

impl AclSet {
    /// Every binding with its id, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &AclBinding)> {
        self.bindings.iter().map(|(id, binding)| (*id, binding))
    }

    /// Whether an equal binding exists already.
    pub(crate) fn contains(&self, binding: &AclBinding) -> bool {
        self.bindings.values().any(|existing| existing == binding)
    }

    /// The id the next created binding gets.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The lookup structure the authorizer decides with, built once per change of the set.
    pub(crate) fn index(&self) -> &Arc<AclIndex> {
        self.index.get_or_init(|| Arc::new(AclIndex::build(self.bindings.values())))
    }

    /// Applies a `CreateAcl` record: idempotent, a replay finds the binding in place.
    pub(crate) fn insert(&mut self, id: u64, binding: &AclBinding) {
        if self.bindings.get(&id) != Some(binding) {
            Arc::make_mut(&mut self.bindings).insert(id, binding.clone());
            self.index = OnceLock::new();
        }
        self.next_id = self.next_id.max(id + 1);
    }

    /// Applies a `RemoveAcl` record: idempotent.
    pub(crate) fn remove(&mut self, id: u64) {
        if self.bindings.contains_key(&id) {
            Arc::make_mut(&mut self.bindings).remove(&id);
            self.index = OnceLock::new();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A binding for tests.
    pub(crate) fn binding(
        resource: (ResourceType, &str, PatternType),
        principal: &str,
        operation: AclOperation,
        permission: PermissionType,
    ) -> AclBinding {
        AclBinding {
            resource_type: resource.0,
            resource_name: resource.1.to_owned(),
            pattern_type: resource.2,
            principal: principal.to_owned(),
            host: WILDCARD.to_owned(),
            operation,
            permission,
        }
    }

    fn filter_all() -> AclFilter {
        AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: PermissionType::Any,
        }
    }

    #[test]
    fn codes_and_names_round_trip() {
        for value in AclOperation::ALL_VALUES {
            assert_eq!(AclOperation::from_code(value.code()), *value);
            assert!(!value.name().is_empty());
        }
        for value in ResourceType::ALL_VALUES {
            assert_eq!(ResourceType::from_code(value.code()), *value);
        }
        for value in PatternType::ALL_VALUES {
            assert_eq!(PatternType::from_code(value.code()), *value);
        }
        for value in PermissionType::ALL_VALUES {
            assert_eq!(PermissionType::from_code(value.code()), *value);
        }
        assert_eq!(AclOperation::from_code(99), AclOperation::Unknown);
        assert_eq!(AclOperation::DescribeConfigs.code(), 10);
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(PermissionType::Allow.code(), 3);
    }

    #[test]
    fn allow_entries_imply_describe_and_deny_entries_do_not() {
        assert!(AclOperation::Read.allows(AclOperation::Describe));
        assert!(AclOperation::AlterConfigs.allows(AclOperation::DescribeConfigs));
        assert!(AclOperation::All.allows(AclOperation::IdempotentWrite));
        assert!(!AclOperation::Describe.allows(AclOperation::Read));
        assert!(!AclOperation::Read.denies(AclOperation::Describe));
        assert!(AclOperation::All.denies(AclOperation::Write));
    }

    #[test]
    fn validation_refuses_what_kafka_refuses() {
        let good = binding(
            (ResourceType::Topic, "t", PatternType::Literal),
            "User:a",
            AclOperation::Read,
            PermissionType::Allow,
        );
        assert_eq!(good.validate(), Ok(()));
        let with = |change: fn(&mut AclBinding)| {
            let mut bad = good.clone();
            change(&mut bad);
            bad.validate()
        };
        assert!(with(|b| b.resource_type = ResourceType::Any).is_err());
        assert!(with(|b| b.pattern_type = PatternType::Match).is_err());
        assert!(with(|b| b.operation = AclOperation::Any).is_err());
        assert!(with(|b| b.permission = PermissionType::Unknown).is_err());
        assert!(with(|b| b.resource_name.clear()).is_err());
        assert!(with(|b| b.principal = "alice".to_owned()).is_err());
        assert!(
            with(|b| {
                b.resource_type = ResourceType::Cluster;
                b.resource_name = "other".to_owned();
            })
            .is_err()
        );
    }

    #[test]
    fn match_filters_find_literal_wildcard_and_prefixed_patterns() {
        let literal = binding(
            (ResourceType::Topic, "foo-1", PatternType::Literal),
            "User:a",
            AclOperation::Read,
            PermissionType::Allow,
        );
        let wildcard = binding(
            (ResourceType::Topic, "*", PatternType::Literal),
            "User:a",
            AclOperation::Read,
            PermissionType::Allow,
        );
        let prefixed = binding(
            (ResourceType::Topic, "foo", PatternType::Prefixed),
            "User:a",
            AclOperation::Read,
            PermissionType::Allow,
        );
        let other = binding(
            (ResourceType::Topic, "bar", PatternType::Prefixed),
            "User:a",
            AclOperation::Read,
            PermissionType::Allow,
        );
        let mut filter = filter_all();
        filter.resource_name = Some("foo-1".to_owned());
        filter.pattern_type = PatternType::Match;
        assert!(filter.matches(&literal) && filter.matches(&wildcard) && filter.matches(&prefixed));
        assert!(!filter.matches(&other));
        filter.pattern_type = PatternType::Any;
        assert!(filter.matches(&literal) && !filter.matches(&wildcard) && !filter.matches(&prefixed));
        filter.pattern_type = PatternType::Prefixed;
        filter.resource_name = Some("foo".to_owned());
        assert!(filter.matches(&prefixed) && !filter.matches(&literal));
        let mut by_principal = filter_all();
        by_principal.principal = Some("User:b".to_owned());
        assert!(!by_principal.matches(&literal));
        assert!(filter_all().matches(&other));
    }

    #[test]
    fn applying_a_record_twice_changes_nothing_and_drops_the_index() {
        let first = binding(
            (ResourceType::Group, "g", PatternType::Literal),
            "User:a",
            AclOperation::Read,
            PermissionType::Allow,
        );
        let mut set = AclSet::default();
        set.insert(0, &first);
        let before = Arc::clone(set.index());
        set.insert(0, &first);
        assert!(Arc::ptr_eq(&before, set.index()), "an unchanged set keeps its index");
        set.insert(1, &first);
        assert!(!Arc::ptr_eq(&before, set.index()), "a change builds a new index");
        assert_eq!(set.next_id(), 2);
        set.remove(0);
        set.remove(0);
        assert_eq!(set.iter().map(|(id, _)| id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(set.next_id(), 2, "ids are never reused");
    }
}
