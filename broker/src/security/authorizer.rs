//! The authorizer: whether a principal may perform an operation on a resource, decided as
//! Kafka's `StandardAuthorizer` decides it, and the calls handlers make to ask.
//!
//! The decision for (principal, host, operation, resource):
//! 1. with the authorizer off (`--authorizer off`, the default) everything is allowed;
//! 2. a super user (`--super-users`) is allowed everything;
//! 3. the ACLs that apply to the resource are those of its type whose pattern is the LITERAL
//!    name, the LITERAL wildcard `*`, or a PREFIXED prefix of the name. Of those, an entry
//!    matches when its principal is the principal or `User:*`, its host is the client's IP or
//!    `*`, and its operation covers the one asked (an ALLOW entry for READ, WRITE, DELETE or
//!    ALTER covers DESCRIBE, ALTER_CONFIGS covers DESCRIBE_CONFIGS, ALL covers everything; a
//!    DENY entry covers its own operation and ALL only);
//! 4. a matching DENY entry denies; else a matching ALLOW entry allows; else, when no ACL at all
//!    applies to the resource, `--allow-everyone-if-no-acl-found` decides; else it is denied.
//!
//! Step 3 must be cheap on the request path: [`AclIndex`] keeps the bindings by resource type,
//! literal names and prefixes in ordered maps, with the lengths of the prefixes present, so one
//! decision costs a few map lookups whatever the number of ACLs. It is built from the image's
//! ACL set once per change (on first use) and shared by every shard through the image. Any
//! thread may decide; nothing here locks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::acl::{AclBinding, AclOperation, CLUSTER_NAME, PatternType, PermissionType, ResourceType, WILDCARD};
use super::{Principal, Session};
use crate::config::{BrokerConfig, ConfigError};
use crate::context::ShardContext;
use crate::dispatch::Call;

/// A resource an operation is asked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    /// The cluster, Kafka's `kafka-cluster`.
    Cluster,
    TransactionalId(&'a str),
}

impl<'a> Resource<'a> {
    /// The error code of a refusal on this resource.
    pub(crate) fn failure(self) -> ResponseError {
        match self {
            Self::Topic(_) => ResponseError::TopicAuthorizationFailed,
            Self::Group(_) => ResponseError::GroupAuthorizationFailed,
            Self::Cluster => ResponseError::ClusterAuthorizationFailed,
            Self::TransactionalId(_) => ResponseError::TransactionalIdAuthorizationFailed,
        }
    }

    fn parts(self) -> (ResourceType, &'a str) {
        match self {
            Self::Topic(name) => (ResourceType::Topic, name),
            Self::Group(name) => (ResourceType::Group, name),
            Self::Cluster => (ResourceType::Cluster, CLUSTER_NAME),
            Self::TransactionalId(name) => (ResourceType::TransactionalId, name),
        }
    }
}

/// Who asks: the session's principal and the client's address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) principal: &'a Principal,
    pub(crate) host: IpAddr,
}

/// The broker's authorizer settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings<'a> {
    /// `Type:name` of each super user.
    pub(crate) super_users: &'a [String],
    /// Kafka's `allow.everyone.if.no.acl.found`.
    pub(crate) allow_everyone_if_no_acl_found: bool,
}

impl Settings<'_> {
    /// Whether `principal` is one of `--super-users`.
    pub(crate) fn is_super_user(&self, principal: &Principal) -> bool {
        self.super_users.iter().any(|user| user.split_once(':') == Some((&*principal.kind, &*principal.name)))
    }
}

/// What the ACLs say of one request, before the no-ACL default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    Denied,
    /// No ACL applies to the resource at all.
    NoAcls,
}

/// Which hosts an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Any,
    Ip(IpAddr),
    /// A host that is no IP address: no client address equals it.
    Never,
}

/// One access control entry of a pattern, ready to match.
#[derive(Debug, Clone)]
struct Entry {
    principal_kind: String,
    principal_name: String,
    host: Host,
    operation: AclOperation,
    permission: PermissionType,
}

impl Entry {
    fn from_binding(binding: &AclBinding) -> Self {
        let (kind, name) = binding.principal.split_once(':').unwrap_or(("", &binding.principal));
        let host = if binding.host == WILDCARD {
            Host::Any
        } else {
            binding.host.parse::<IpAddr>().map_or(Host::Never, |ip| Host::Ip(ip.to_canonical()))
        };
        Self {
            principal_kind: kind.to_owned(),
            principal_name: name.to_owned(),
            host,
            operation: binding.operation,
            permission: binding.permission,
        }
    }

    /// Whether the entry names the subject: its principal or `User:*`, its host or `*`.
    fn names(&self, subject: Subject<'_>) -> bool {
        let principal = (self.principal_kind == *subject.principal.kind
            && self.principal_name == *subject.principal.name)
            || (self.principal_kind == "User" && self.principal_name == WILDCARD);
        principal
            && match self.host {
                Host::Any => true,
                Host::Ip(ip) => ip == subject.host.to_canonical(),
                Host::Never => false,
            }
    }
}

/// The ACLs of one resource type.
#[derive(Debug, Default)]
struct TypeIndex {
    /// LITERAL patterns by name, the wildcard `*` among them.
    literal: BTreeMap<String, Vec<Entry>>,
    /// PREFIXED patterns by prefix.
    prefixed: BTreeMap<String, Vec<Entry>>,
    /// The byte lengths of the prefixes in `prefixed`: a name is looked up at these only.
    prefix_lengths: BTreeSet<usize>,
}

/// The ACL set arranged for decisions; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct AclIndex {
    /// By [`ResourceType::code`].
    types: [TypeIndex; 8],
}

/// Accumulates step 4 over the matching entries.
#[derive(Debug, Default)]
struct Tally {
    has_resource_acls: bool,
    allowed: bool,
    denied: bool,
}

impl Tally {
    fn section(&mut self, entries: &[Entry], subject: Subject<'_>, operation: AclOperation) {
        self.has_resource_acls |= !entries.is_empty();
        for entry in entries.iter().filter(|entry| entry.names(subject)) {
            self.matching(entry, operation);
        }
    }

    /// Counts an entry that applies to the resource and names the subject.
    fn matching(&mut self, entry: &Entry, operation: AclOperation) {
        match entry.permission {
            PermissionType::Deny if entry.operation.denies(operation) => self.denied = true,
            PermissionType::Allow if entry.operation.allows(operation) => self.allowed = true,
            _ => {}
        }
    }

    fn verdict(&self) -> Verdict {
        if self.denied {
            Verdict::Denied
        } else if self.allowed {
            Verdict::Allowed
        } else if self.has_resource_acls {
            Verdict::Denied
        } else {
            Verdict::NoAcls
        }
    }
}

impl AclIndex {
    /// Arranges `bindings` (valid ones, as the controller admits them).
    pub(crate) fn build<'a>(bindings: impl Iterator<Item = &'a AclBinding>) -> Self {
        let mut index = Self::default();
        for binding in bindings {
            let Some(types) = index.types.get_mut(binding.resource_type.code() as usize) else { continue };
            let entry = Entry::from_binding(binding);
            match binding.pattern_type {
                PatternType::Literal => types.literal.entry(binding.resource_name.clone()).or_default().push(entry),
                PatternType::Prefixed => {
                    types.prefix_lengths.insert(binding.resource_name.len());
                    types.prefixed.entry(binding.resource_name.clone()).or_default().push(entry);
                }
                PatternType::Unknown | PatternType::Any | PatternType::Match => {}
            }
        }
        index
    }

    /// Steps 3 and 4 without the no-ACL default.
    pub(crate) fn verdict(
        &self,
        subject: Subject<'_>,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> Verdict {
        let mut tally = Tally::default();
        for entries in self.sections(resource_type, name) {
            tally.section(entries, subject, operation);
        }
        tally.verdict()
    }

    /// Steps 3 and 4 without the no-ACL default for each of `operations` at once, in their
    /// order: one pass over the entries that apply to the resource rather than one lookup per
    /// operation (the authorized-operations fields ask up to eight).
    pub(crate) fn verdicts<const N: usize>(
        &self,
        subject: Subject<'_>,
        operations: [AclOperation; N],
        resource_type: ResourceType,
        name: &str,
    ) -> [Verdict; N] {
        let mut tallies: [Tally; N] = std::array::from_fn(|_| Tally::default());
        for entry in self.sections(resource_type, name).flatten() {
            let names = entry.names(subject);
            for (tally, operation) in tallies.iter_mut().zip(operations) {
                tally.has_resource_acls = true;
                if names {
                    tally.matching(entry, operation);
                }
            }
        }
        tallies.map(|tally| tally.verdict())
    }

    /// The entries of step 3's patterns for the resource: its LITERAL name, the LITERAL
    /// wildcard, and each PREFIXED prefix of the name present.
    fn sections<'a>(&'a self, resource_type: ResourceType, name: &'a str) -> impl Iterator<Item = &'a [Entry]> {
        let types = self.types.get(resource_type.code() as usize);
        let literal = types.and_then(|types| types.literal.get(name));
        let wildcard = types.filter(|_| name != WILDCARD).and_then(|types| types.literal.get(WILDCARD));
        let prefixed = types.into_iter().flat_map(move |types| {
            types
                .prefix_lengths
                .range(..=name.len())
                .filter_map(move |length| name.get(..*length).and_then(|prefix| types.prefixed.get(prefix)))
        });
        literal.into_iter().chain(wildcard).chain(prefixed).map(Vec::as_slice)
    }

    /// Kafka's `authorizeByResourceType` after its check of a made-up name: whether some
    /// resource of the type could be allowed, that is, an ALLOW entry for the subject that no
    /// DENY of the same or a shorter pattern overrides (no implied operations here).
    fn allows_some(&self, subject: Subject<'_>, operation: AclOperation, resource_type: ResourceType) -> bool {
        let Some(types) = self.types.get(resource_type.code() as usize) else { return false };
        let applies = |entry: &&Entry| entry.names(subject) && entry.operation.denies(operation);
        let named = |map: &BTreeMap<String, Vec<Entry>>, permission: PermissionType| -> BTreeSet<String> {
            map.iter()
                .filter(|(_, entries)| entries.iter().filter(applies).any(|entry| entry.permission == permission))
                .map(|(name, _)| name.clone())
                .collect()
        };
        let deny_literal = named(&types.literal, PermissionType::Deny);
        if deny_literal.contains(WILDCARD) {
            return false;
        }
        let allow_literal = named(&types.literal, PermissionType::Allow);
        if allow_literal.contains(WILDCARD) {
            return true;
        }
        let deny_prefixed = named(&types.prefixed, PermissionType::Deny);
        let dominated = |name: &str| {
            name.char_indices().map(|(at, c)| at + c.len_utf8()).any(|end| deny_prefixed.contains(&name[..end]))
        };
        allow_literal.iter().any(|name| !deny_literal.contains(name) && !dominated(name))
            || named(&types.prefixed, PermissionType::Allow).iter().any(|name| !dominated(name))
    }
}

/// The decision of steps 2-4.
pub(crate) fn decide(
    index: &AclIndex,
    settings: Settings<'_>,
    subject: Subject<'_>,
    operation: AclOperation,
    resource: Resource<'_>,
) -> bool {
    if settings.is_super_user(subject.principal) {
        return true;
    }
    let (resource_type, name) = resource.parts();
    match index.verdict(subject, operation, resource_type, name) {
        Verdict::Allowed => true,
        Verdict::Denied => false,
        Verdict::NoAcls => settings.allow_everyone_if_no_acl_found,
    }
}

/// Kafka's `authorizeByResourceType`: whether the subject may perform `operation` on some
/// resource of the type (a super user, or the ACLs of a made-up name allow it, or an ALLOW
/// pattern not overridden by a DENY).
pub(crate) fn decide_by_resource_type(
    index: &AclIndex,
    settings: Settings<'_>,
    subject: Subject<'_>,
    operation: AclOperation,
    resource_type: ResourceType,
) -> bool {
    // Kafka first authorizes a made-up name, so that super users, wildcard ACLs and the no-ACL
    // default answer as they would for any resource.
    let verdict = index.verdict(subject, operation, resource_type, "hardcode");
    settings.is_super_user(subject.principal)
        || verdict == Verdict::Allowed
        || (verdict == Verdict::NoAcls && settings.allow_everyone_if_no_acl_found)
        || index.allows_some(subject, operation, resource_type)
}

/// Resolves the authorizer settings into `config`: `authorizer` is `on`/`off` (or `true`/
/// `false`), or a Kafka authorizer class name, which turns it on (an empty one, Kafka's default,
/// leaves it off); `super_users` is Kafka's `;`-separated list of `Type:name` principals.
///
/// # Errors
/// [`ConfigError::Invalid`] for a super user that is not `Type:name`.
pub(crate) fn configure(
    config: &mut BrokerConfig,
    authorizer: Option<&str>,
    super_users: Option<&str>,
    allow_everyone_if_no_acl_found: Option<bool>,
) -> Result<(), ConfigError> {
    let settings = &mut config.authorizer;
    settings.enabled = match authorizer.map(str::trim) {
        None | Some("") => false,
        Some(text) if text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("false") => false,
        Some(_) => true,
    };
    settings.super_users = Vec::new();
    for user in super_users.unwrap_or("").split(';').map(str::trim).filter(|user| !user.is_empty()) {
        if Principal::parse(user).is_none() {
            let reason = format!("{user:?} is not a principal of the form Type:name (User:admin)");
            return Err(ConfigError::Invalid { setting: "super-users", reason });
        }
        settings.super_users.push(user.to_owned());
    }
    settings.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found.unwrap_or(false);
    Ok(())
}

/// Whether this broker authorizes requests at all (`--authorizer on`).
pub(crate) fn enabled(shard: &ShardContext) -> bool {
    shard.config().authorizer.enabled
}

/// Whether the caller may perform `operation` on `resource`: the check every handler makes.
pub(crate) fn authorize(shard: &ShardContext, call: &Call, operation: AclOperation, resource: Resource<'_>) -> bool {
    if !enabled(shard) {
        return true;
    }
    with_context(shard, &call.session, |index, settings, subject| decide(index, settings, subject, operation, resource))
}

/// The error Kafka answers when the caller may not perform `operation` on `resource`
/// (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED,
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED); `None` when
/// it may.
pub(crate) fn denied(
    shard: &ShardContext,
    call: &Call,
    operation: AclOperation,
    resource: Resource<'_>,
) -> Option<ResponseError> {
    (!authorize(shard, call, operation, resource)).then(|| resource.failure())
}

/// Whether the caller may perform `operation` on some resource of the type (Kafka's
/// `authorizeByResourceType`).
pub(crate) fn authorize_by_resource_type(
    shard: &ShardContext,
    call: &Call,
    operation: AclOperation,
    resource_type: ResourceType,
) -> bool {
    if !enabled(shard) {
        return true;
    }
    with_context(shard, &call.session, |index, settings, subject| {
        decide_by_resource_type(index, settings, subject, operation, resource_type)
    })
}

/// A checker for many resources of one request (Metadata's topics, ListGroups' groups): the
/// image and principal are taken once, and nothing at all with the authorizer off.
pub(crate) struct Checker {
    /// `None` with the authorizer off: everything is allowed.
    taken: Option<Taken>,
}

/// What a checker took from the request and the broker.
struct Taken {
    image: Arc<crate::metadata::MetadataImage>,
    principal: Principal,
    host: IpAddr,
    shared: Arc<crate::context::Shared>,
}

impl Checker {
    /// A checker for the caller's requests.
    pub(crate) fn new(shard: &ShardContext, call: &Call) -> Self {
        let taken = enabled(shard).then(|| Taken {
            image: shard.image(),
            principal: call.session.principal(),
            host: call.session.peer.ip(),
            shared: Arc::clone(&shard.shared),
        });
        Self { taken }
    }

    /// Whether the caller may perform `operation` on `resource`.
    pub(crate) fn allows(&self, operation: AclOperation, resource: Resource<'_>) -> bool {
        let Some(taken) = &self.taken else { return true };
        let config = &taken.shared.config.authorizer;
        let settings = Settings {
            super_users: &config.super_users,
            allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
        };
        let subject = Subject { principal: &taken.principal, host: taken.host };
        decide(taken.image.acls.index(), settings, subject, operation, resource)
    }

    /// The caller's authorized operations on `resource`, as Kafka's bitfield (see
    /// [`super::operations`]): every supported operation with the authorizer off.
    pub(crate) fn operations(&self, resource: Resource<'_>) -> i32 {
        let Some(taken) = &self.taken else { return super::operations::supported(resource) };
        let config = &taken.shared.config.authorizer;
        let settings = Settings {
            super_users: &config.super_users,
            allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
        };
        let subject = Subject { principal: &taken.principal, host: taken.host };
        super::operations::authorized(taken.image.acls.index(), settings, subject, resource)
    }
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let principal = self.taken.as_ref().map(|taken| &taken.principal);
        formatter.debug_struct("Checker").field("principal", &principal).finish_non_exhaustive()
    }
}

fn with_context<T>(
    shard: &ShardContext,
    session: &Session,
    decide: impl FnOnce(&AclIndex, Settings<'_>, Subject<'_>) -> T,
) -> T {
    let config = &shard.config().authorizer;
    let settings = Settings {
        super_users: &config.super_users,
        allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
    };
    let principal = session.principal();
    let subject = Subject { principal: &principal, host: session.peer.ip() };
    let image = shard.image();
    decide(image.acls.index(), settings, subject)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::acl::tests::binding;
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn alice() -> Principal {
        Principal::user("alice")
    }

    fn check(bindings: &[AclBinding], settings: Settings<'_>, operation: AclOperation, resource: Resource<'_>) -> bool {
        let index = AclIndex::build(bindings.iter());
        let principal = alice();
        decide(&index, settings, Subject { principal: &principal, host: LOCAL }, operation, resource)
    }

    const CLOSED: Settings<'static> = Settings { super_users: &[], allow_everyone_if_no_acl_found: false };

    fn topic(
        name: &str,
        pattern: PatternType,
        principal: &str,
        operation: AclOperation,
        permission: PermissionType,
    ) -> AclBinding {
        binding((ResourceType::Topic, name, pattern), principal, operation, permission)
    }

    #[test]
    fn no_acls_deny_unless_everyone_is_allowed() {
        assert!(!check(&[], CLOSED, AclOperation::Read, Resource::Topic("t")));
        let open = Settings { super_users: &[], allow_everyone_if_no_acl_found: true };
        assert!(check(&[], open, AclOperation::Read, Resource::Topic("t")));
        let other = [topic("t", PatternType::Literal, "User:bob", AclOperation::Read, PermissionType::Allow)];
        assert!(!check(&other, open, AclOperation::Read, Resource::Topic("t")), "an ACL on the resource closes it");
        assert!(check(&other, open, AclOperation::Read, Resource::Topic("u")), "other resources stay open");
    }

    #[test]
    fn deny_wins_over_allow_and_describe_is_implied_by_allows_only() {
        let allow = topic("t", PatternType::Literal, "User:alice", AclOperation::Read, PermissionType::Allow);
        assert!(check(std::slice::from_ref(&allow), CLOSED, AclOperation::Read, Resource::Topic("t")));
        assert!(check(std::slice::from_ref(&allow), CLOSED, AclOperation::Describe, Resource::Topic("t")));
        assert!(!check(std::slice::from_ref(&allow), CLOSED, AclOperation::Write, Resource::Topic("t")));
        let deny = topic("t", PatternType::Prefixed, "User:*", AclOperation::Read, PermissionType::Deny);
        assert!(!check(&[allow.clone(), deny.clone()], CLOSED, AclOperation::Read, Resource::Topic("t")));
        assert!(
            check(&[allow, deny], CLOSED, AclOperation::Describe, Resource::Topic("t")),
            "DENY READ denies no DESCRIBE"
        );
    }

    #[test]
    fn prefixed_and_wildcard_patterns_apply_to_the_names_they_cover() {
        let prefixed = [topic("pay", PatternType::Prefixed, "User:alice", AclOperation::All, PermissionType::Allow)];
        assert!(check(&prefixed, CLOSED, AclOperation::Write, Resource::Topic("payments")));
        assert!(check(&prefixed, CLOSED, AclOperation::Write, Resource::Topic("pay")));
        assert!(!check(&prefixed, CLOSED, AclOperation::Write, Resource::Topic("pa")));
        let wildcard = [topic("*", PatternType::Literal, "User:*", AclOperation::Write, PermissionType::Allow)];
        assert!(check(&wildcard, CLOSED, AclOperation::Write, Resource::Topic("anything")));
        let literal_star =
            [topic("*", PatternType::Prefixed, "User:alice", AclOperation::Write, PermissionType::Allow)];
        assert!(!check(&literal_star, CLOSED, AclOperation::Write, Resource::Topic("x")), "a PREFIXED * is a prefix");
    }

    #[test]
    fn super_users_pass_every_check_and_hosts_must_match() {
        let deny = [topic("t", PatternType::Literal, "User:alice", AclOperation::All, PermissionType::Deny)];
        let supers = ["User:alice".to_owned()];
        let settings = Settings { super_users: &supers, allow_everyone_if_no_acl_found: false };
        assert!(check(&deny, settings, AclOperation::Read, Resource::Topic("t")));
        let mut elsewhere = topic("t", PatternType::Literal, "User:alice", AclOperation::Read, PermissionType::Allow);
        elsewhere.host = "10.0.0.9".to_owned();
        assert!(!check(&[elsewhere.clone()], CLOSED, AclOperation::Read, Resource::Topic("t")));
        elsewhere.host = "127.0.0.1".to_owned();
        assert!(check(&[elsewhere], CLOSED, AclOperation::Read, Resource::Topic("t")));
    }

    #[test]
    fn by_resource_type_allows_when_some_allow_is_not_dominated_by_a_deny() {
        let principal = alice();
        let subject = Subject { principal: &principal, host: LOCAL };
        let by_type = |bindings: &[AclBinding]| {
            let index = AclIndex::build(bindings.iter());
            decide_by_resource_type(&index, CLOSED, subject, AclOperation::Write, ResourceType::Topic)
        };
        let allow = topic("orders", PatternType::Literal, "User:alice", AclOperation::Write, PermissionType::Allow);
        assert!(!by_type(&[]));
        assert!(by_type(std::slice::from_ref(&allow)));
        let deny = topic("ord", PatternType::Prefixed, "User:alice", AclOperation::Write, PermissionType::Deny);
        assert!(!by_type(&[allow.clone(), deny]));
        let deny_all = topic("*", PatternType::Literal, "User:*", AclOperation::All, PermissionType::Deny);
        let allow_prefixed =
            topic("x", PatternType::Prefixed, "User:alice", AclOperation::Write, PermissionType::Allow);
        assert!(!by_type(&[allow_prefixed.clone(), deny_all]));
        assert!(by_type(&[allow_prefixed]));
    }

    /// Kafka's rules written out plainly over every binding: the model the index must agree with.
    fn reference(
        bindings: &[AclBinding],
        settings: Settings<'_>,
        principal: &str,
        host: &str,
        operation: AclOperation,
        resource: (ResourceType, &str),
    ) -> bool {
        if settings.super_users.iter().any(|user| user == principal) {
            return true;
        }
        let applies: Vec<&AclBinding> = bindings
            .iter()
            .filter(|acl| acl.resource_type == resource.0)
            .filter(|acl| match acl.pattern_type {
                PatternType::Literal => acl.resource_name == resource.1 || acl.resource_name == "*",
                PatternType::Prefixed => resource.1.starts_with(&acl.resource_name),
                _ => false,
            })
            .collect();
        let matching = |permission: PermissionType| {
            applies.iter().any(|acl| {
                acl.permission == permission
                    && (acl.principal == principal || acl.principal == "User:*")
                    && (acl.host == "*" || acl.host == host)
                    && match permission {
                        PermissionType::Deny => acl.operation == operation || acl.operation == AclOperation::All,
                        _ => {
                            acl.operation == operation
                                || acl.operation == AclOperation::All
                                || (operation == AclOperation::Describe
                                    && [
                                        AclOperation::Read,
                                        AclOperation::Write,
                                        AclOperation::Delete,
                                        AclOperation::Alter,
                                    ]
                                    .contains(&acl.operation))
                                || (operation == AclOperation::DescribeConfigs
                                    && acl.operation == AclOperation::AlterConfigs)
                        }
                    }
            })
        };
        if matching(PermissionType::Deny) {
            false
        } else if matching(PermissionType::Allow) {
            true
        } else {
            applies.is_empty() && settings.allow_everyone_if_no_acl_found
        }
    }

    const NAMES: &[&str] = &["a", "ab", "abc", "b", "*"];
    const PRINCIPALS: &[&str] = &["User:alice", "User:bob", "User:*"];
    const HOSTS: &[&str] = &["*", "127.0.0.1", "10.0.0.1"];
    const OPERATIONS: &[AclOperation] = &[
        AclOperation::All,
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Describe,
        AclOperation::Alter,
        AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs,
    ];
    const TYPES: &[ResourceType] = &[ResourceType::Topic, ResourceType::Group];

    fn acl() -> impl Strategy<Value = AclBinding> {
        (
            0..TYPES.len(),
            0..NAMES.len(),
            any::<bool>(),
            0..PRINCIPALS.len(),
            0..HOSTS.len(),
            0..OPERATIONS.len(),
            any::<bool>(),
        )
            .prop_map(|(kind, name, prefixed, principal, host, operation, allow)| AclBinding {
                resource_type: TYPES[kind],
                resource_name: NAMES[name].to_owned(),
                pattern_type: if prefixed { PatternType::Prefixed } else { PatternType::Literal },
                principal: PRINCIPALS[principal].to_owned(),
                host: HOSTS[host].to_owned(),
                operation: OPERATIONS[operation],
                permission: if allow { PermissionType::Allow } else { PermissionType::Deny },
            })
    }

    proptest! {
        #[test]
        fn the_index_decides_as_the_reference_model(
            bindings in proptest::collection::vec(acl(), 0..12),
            principal in prop::sample::select(&PRINCIPALS[..2]),
            host in prop::sample::select(&HOSTS[1..]),
            operation in prop::sample::select(OPERATIONS),
            kind in prop::sample::select(TYPES),
            name in prop::sample::select(&NAMES[..4]),
            allow_everyone in any::<bool>(),
            bob_is_super in any::<bool>(),
        ) {
            let supers = if bob_is_super { vec!["User:bob".to_owned()] } else { Vec::new() };
            let settings = Settings { super_users: &supers, allow_everyone_if_no_acl_found: allow_everyone };
            let index = AclIndex::build(bindings.iter());
            let subject_principal = Principal::parse(principal).expect("a principal");
            let subject = Subject { principal: &subject_principal, host: host.parse().expect("an address") };
            let resource = match kind {
                ResourceType::Topic => Resource::Topic(name),
                _ => Resource::Group(name),
            };
            prop_assert_eq!(
                decide(&index, settings, subject, operation, resource),
                reference(&bindings, settings, principal, host, operation, (kind, name))
            );
        }
    }
}
