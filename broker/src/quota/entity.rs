//! Client quota configs as the metadata holds them: entities (a user, a client id, or both,
//! each named or the default), their keys and values, the records that change them, and the
//! rules of Kafka's `ClientQuotaControlManager` (alter) and `ClientQuotasImage.describe`
//! (describe).
//!
//! Kafka's entity types are `user`, `client-id` and `ip`; Sluice keeps the first two, whose
//! keys are `producer_byte_rate` and `consumer_byte_rate` (integral bytes per second),
//! `request_percentage` (percent of one request thread) and `controller_mutation_rate`
//! (partition mutations per second). An `ip` entity (connection creation rate) is refused.
//!
//! Pure values and functions: the controller decides with them, the image stores them, the
//! handlers and the enforcement read them (any thread, through the image's snapshot).

use std::collections::BTreeMap;
use std::fmt;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::metadata::Refusal;

/// Kafka's entity type names.
pub(crate) const USER: &str = "user";
pub(crate) const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";

/// One side of an entity: a name, or the default for every name without its own quota.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum EntityName {
    /// Kafka's `<default>`, a null name on the wire.
    Default,
    Named(String),
}

impl EntityName {
    fn from_wire(name: Option<&str>) -> Self {
        name.map_or(Self::Default, |name| Self::Named(name.to_owned()))
    }

    /// The name as the wire carries it: `None` for the default.
    pub(crate) fn as_wire(&self) -> Option<&str> {
        match self {
            Self::Default => None,
            Self::Named(name) => Some(name),
        }
    }
}

/// A quota entity: Kafka's `/users/<user>/clients/<client-id>` and its shorter forms.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct QuotaEntity {
    pub(crate) user: Option<EntityName>,
    pub(crate) client_id: Option<EntityName>,
}

impl QuotaEntity {
    /// Its components as (type, name), `None` for the default: user first.
    pub(crate) fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut components = Vec::with_capacity(2);
        if let Some(user) = &self.user {
            components.push((USER, user.as_wire()));
        }
        if let Some(client_id) = &self.client_id {
            components.push((CLIENT_ID, client_id.as_wire()));
        }
        components
    }
}

impl fmt::Display for QuotaEntity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .components()
            .into_iter()
            .map(|(kind, name)| format!("{kind}={}", name.unwrap_or("<default>")))
            .collect();
        write!(formatter, "ClientQuotaEntity(entries={{{}}})", parts.join(", "))
    }
}

/// A quota key of user and client-id entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum QuotaKey {
    #[serde(rename = "producer_byte_rate")]
    ProducerByteRate,
    #[serde(rename = "consumer_byte_rate")]
    ConsumerByteRate,
    #[serde(rename = "request_percentage")]
    RequestPercentage,
    #[serde(rename = "controller_mutation_rate")]
    ControllerMutationRate,
}

impl QuotaKey {
    pub(crate) const ALL: [Self; 4] =
        [Self::ProducerByteRate, Self::ConsumerByteRate, Self::RequestPercentage, Self::ControllerMutationRate];

    /// Kafka's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ProducerByteRate => "producer_byte_rate",
            Self::ConsumerByteRate => "consumer_byte_rate",
            Self::RequestPercentage => "request_percentage",
            Self::ControllerMutationRate => "controller_mutation_rate",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.name() == name)
    }

    /// Kafka types the byte rates `LONG` (integral) and the others `DOUBLE`.
    fn integral(self) -> bool {
        matches!(self, Self::ProducerByteRate | Self::ConsumerByteRate)
    }
}

/// A quota value. Kafka's values are doubles; compared by bits so that records and images,
/// which must be `Eq`, can hold them (validation admits no NaN).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct QuotaValue(pub(crate) f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// One entity's quotas by key.
pub(crate) type EntityQuotas = BTreeMap<QuotaKey, QuotaValue>;

/// A metadata record's change to one key of one entity: Kafka's `ClientQuotaRecord`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QuotaRecord {
    pub(crate) entity: QuotaEntity,
    pub(crate) key: QuotaKey,
    /// `None` removes the key.
    pub(crate) value: Option<QuotaValue>,
}

/// Every entity's quotas, as the image holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(QuotaEntity, BTreeMap<QuotaKey, QuotaValue>)>")]
#[serde(into = "Vec<(QuotaEntity, BTreeMap<QuotaKey, QuotaValue>)>")]
pub(crate) struct ClientQuotas {
    entities: BTreeMap<QuotaEntity, BTreeMap<QuotaKey, QuotaValue>>,
    /// How many entities set each key (indexed by `QuotaKey as usize`): whether a key is in
    /// use at all is one load, which `request_percentage` asks of every request.
    key_counts: [u32; QuotaKey::ALL.len()],
}

impl From<Vec<(QuotaEntity, BTreeMap<QuotaKey, QuotaValue>)>> for ClientQuotas {
    fn from(entries: Vec<(QuotaEntity, BTreeMap<QuotaKey, QuotaValue>)>) -> Self {
        let entities: BTreeMap<_, BTreeMap<QuotaKey, QuotaValue>> = entries.into_iter().collect();
        let mut key_counts = [0; QuotaKey::ALL.len()];
        for key in entities.values().flat_map(BTreeMap::keys) {
            key_counts[*key as usize] += 1;
        }
        Self { entities, key_counts }
    }
}

impl From<ClientQuotas> for Vec<(QuotaEntity, BTreeMap<QuotaKey, QuotaValue>)> {
    fn from(quotas: ClientQuotas) -> Self {
        quotas.entities.into_iter().collect()
    }
}

impl ClientQuotas {
    /// Whether no entity has any quota: the enforcement's fast path.
    pub(crate) fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Whether any entity sets `key`.
    pub(crate) fn has(&self, key: QuotaKey) -> bool {
        self.key_counts[key as usize] > 0
    }

    /// Applies a record (idempotent).
    pub(crate) fn apply(&mut self, record: &QuotaRecord) {
        let count = &mut self.key_counts[record.key as usize];
        match record.value {
            Some(value) => {
                let keys = self.entities.entry(record.entity.clone()).or_default();
                if keys.insert(record.key, value).is_none() {
                    *count += 1;
                }
            }
            None => {
                if let Some(keys) = self.entities.get_mut(&record.entity) {
                    if keys.remove(&record.key).is_some() {
                        *count -= 1;
                    }
                    if keys.is_empty() {
                        self.entities.remove(&record.entity);
                    }
                }
            }
        }
    }

    /// The value of `key` for exactly `entity`.
    pub(crate) fn value(&self, entity: &QuotaEntity, key: QuotaKey) -> Option<f64> {
        self.entities.get(entity).and_then(|keys| keys.get(&key)).map(|value| value.0)
    }

    /// Every entity with its quotas.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&QuotaEntity, &BTreeMap<QuotaKey, QuotaValue>)> {
        self.entities.iter()
    }
}

/// One entry of an AlterClientQuotas request, as it travels to the controller: the entity's
/// components and the operations, unchecked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct QuotaAlteration {
    /// (entity type, name); a `None` name is the default.
    pub(crate) entity: Vec<(String, Option<String>)>,
    /// (key, value); a `None` value removes the key.
    pub(crate) ops: Vec<(String, Option<f64>)>,
}

impl QuotaAlteration {
    /// The entity as a set of components, for spotting the same entity twice in a request.
    pub(crate) fn entity_key(&self) -> Vec<(String, Option<String>)> {
        let mut key = self.entity.clone();
        key.sort();
        key
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ResponseError::InvalidRequest, message)
}

/// Decides an AlterClientQuotas request against `quotas`, as Kafka's controller does: one
/// answer per entry (in order) and the records of the accepted ones. The same entity twice
/// refuses the later entry, and the earlier one's answer too, as Kafka answers it.
pub(crate) fn alter(
    quotas: &ClientQuotas,
    alterations: &[QuotaAlteration],
) -> (Vec<QuotaRecord>, Vec<Result<(), Refusal>>) {
    let mut records = Vec::new();
    let mut answers: Vec<Result<(), Refusal>> = Vec::with_capacity(alterations.len());
    let mut seen: Vec<Vec<(String, Option<String>)>> = Vec::with_capacity(alterations.len());
    for alteration in alterations {
        let key = alteration.entity_key();
        if let Some(first) = seen.iter().position(|earlier| *earlier == key) {
            let refusal = invalid(format!("Ignoring duplicate entity {}", describe_components(&alteration.entity)));
            answers[first] = Err(refusal.clone());
            answers.push(Err(refusal));
            seen.push(key);
            continue;
        }
        seen.push(key);
        answers.push(alter_entity(quotas, alteration).map(|entity_records| records.extend(entity_records)));
    }
    (records, answers)
}

/// The active controller's decision on an AlterClientQuotas request: the records of the
/// accepted entries (none with `validate_only`) and one answer per entry, in order.
pub(crate) fn decide_alter(
    image: &crate::metadata::MetadataImage,
    alterations: &[QuotaAlteration],
    validate_only: bool,
) -> (Vec<crate::metadata::records::MetadataRecord>, crate::controller::wire::Outcome) {
    let (records, answers) = alter(&image.client_quotas, alterations);
    let records = if validate_only {
        Vec::new()
    } else {
        records.into_iter().map(crate::metadata::records::MetadataRecord::ClientQuota).collect()
    };
    let answers = answers.into_iter().map(|answer| answer.map_err(Into::into)).collect();
    (records, crate::controller::wire::Outcome::Each(answers))
}

/// Kafka's `alterClientQuotaEntity`: checks one entry and returns its records (only keys
/// whose value changes; removing an absent key writes nothing).
fn alter_entity(quotas: &ClientQuotas, alteration: &QuotaAlteration) -> Result<Vec<QuotaRecord>, Refusal> {
    let entity = validate_entity(&alteration.entity)?;
    let mut changes: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for (key, value) in &alteration.ops {
        if changes.insert(key.as_str(), *value).is_some() {
            return Err(invalid(format!("Duplicate quota key {key} not updating quota for this entity {entity}")));
        }
    }
    let mut records = Vec::new();
    for (name, value) in changes {
        let Some(key) = QuotaKey::from_name(name) else {
            return Err(invalid(format!("Invalid configuration key {name}")));
        };
        let current = quotas.value(&entity, key);
        match value {
            None if current.is_some() => records.push(QuotaRecord { entity: entity.clone(), key, value: None }),
            None => {}
            Some(value) => {
                validate_value(key, value)?;
                if current.map(f64::to_bits) != Some(value.to_bits()) {
                    records.push(QuotaRecord { entity: entity.clone(), key, value: Some(QuotaValue(value)) });
                }
            }
        }
    }
    Ok(records)
}

/// Kafka's `validateEntity` and `configKeysForEntityType` for user and client-id entities.
fn validate_entity(components: &[(String, Option<String>)]) -> Result<QuotaEntity, Refusal> {
    if components.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    let mut entity = QuotaEntity::default();
    for (kind, name) in components {
        let slot = match kind.as_str() {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            IP => return Err(invalid("IP quotas (connection_creation_rate) are not supported by this broker")),
            other => return Err(invalid(format!("Unhandled client quota entity type: {other}"))),
        };
        if slot.is_some() {
            return Err(invalid(format!("Invalid client quota entity, duplicate entity entry {kind}")));
        }
        if name.as_deref() == Some("") {
            return Err(invalid(format!("Empty {kind} not supported")));
        }
        *slot = Some(EntityName::from_wire(name.as_deref()));
    }
    Ok(entity)
}

/// Kafka's `validateQuotaKeyValue`: positive, and integral below `Long.MAX_VALUE` for LONG keys.
fn validate_value(key: QuotaKey, value: f64) -> Result<(), Refusal> {
    let name = key.name();
    if value.is_nan() || value <= 0.0 {
        return Err(invalid(format!("Quota {name} must be greater than 0")));
    }
    if !value.is_finite() {
        return Err(invalid(format!("Quota {name} must be a finite number")));
    }
    if key.integral() {
        if value > i64::MAX as f64 {
            return Err(invalid(format!("Proposed value for {name} is too large for a LONG.")));
        }
        if (value % 1.0).abs() > 1e-6 {
            return Err(invalid(format!("{name} cannot be a fractional value.")));
        }
    }
    Ok(())
}

fn describe_components(components: &[(String, Option<String>)]) -> String {
    let parts: Vec<String> =
        components.iter().map(|(kind, name)| format!("{kind}={}", name.as_deref().unwrap_or("<default>"))).collect();
    format!("ClientQuotaEntity(entries={{{}}})", parts.join(", "))
}

/// DescribeClientQuotas' match types.
const MATCH_TYPE_EXACT: i8 = 0;
const MATCH_TYPE_DEFAULT: i8 = 1;
const MATCH_TYPE_SPECIFIED: i8 = 2;

/// One filter component of a DescribeClientQuotas request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterComponent {
    pub(crate) entity_type: String,
    pub(crate) match_type: i8,
    pub(crate) matched: Option<String>,
}

/// Kafka's `ClientQuotasImage.describe`: the entities the filter matches, with their quotas.
///
/// # Errors
/// INVALID_REQUEST for a malformed filter, UNSUPPORTED_VERSION for an unknown entity type.
pub(crate) fn describe<'a>(
    quotas: &'a ClientQuotas,
    filter: &[FilterComponent],
    strict: bool,
) -> Result<Vec<(&'a QuotaEntity, &'a EntityQuotas)>, Refusal> {
    let mut exact: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut specified: Vec<&str> = Vec::new();
    for component in filter {
        let kind = component.entity_type.as_str();
        if kind.is_empty() {
            return Err(invalid("Invalid empty entity type."));
        }
        if exact.contains_key(kind) || specified.contains(&kind) {
            return Err(invalid(format!("Entity type {kind} cannot appear more than once in the filter.")));
        }
        if ![IP, USER, CLIENT_ID].contains(&kind) {
            return Err(Refusal::new(ResponseError::UnsupportedVersion, format!("Unsupported entity type {kind}")));
        }
        let matched = component.matched.as_deref();
        match component.match_type {
            MATCH_TYPE_EXACT => {
                let Some(name) = matched else {
                    return Err(invalid("Request specified MATCH_TYPE_EXACT, but set match string to null."));
                };
                exact.insert(kind, Some(name));
            }
            MATCH_TYPE_DEFAULT if matched.is_some() => {
                return Err(invalid("Request specified MATCH_TYPE_DEFAULT, but also specified a match string."));
            }
            MATCH_TYPE_DEFAULT => {
                exact.insert(kind, None);
            }
            MATCH_TYPE_SPECIFIED if matched.is_some() => {
                return Err(invalid("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."));
            }
            MATCH_TYPE_SPECIFIED => specified.push(kind),
            other => return Err(invalid(format!("Unknown match type {other}"))),
        }
    }
    let names = |kind: &str| exact.contains_key(kind) || specified.contains(&kind);
    if names(IP) && (names(USER) || names(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be used with user or \
             clientId filter component.",
        ));
    }
    let matches = |entity: &QuotaEntity| {
        let components = entity.components();
        if strict && components.len() != exact.len() + specified.len() {
            return false;
        }
        let has = |kind: &str| components.iter().find(|(own, _)| *own == kind).map(|(_, name)| *name);
        exact.iter().all(|(kind, name)| has(kind) == Some(*name)) && specified.iter().all(|kind| has(kind).is_some())
    };
    Ok(quotas.iter().filter(|(entity, _)| matches(entity)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alteration(entity: &[(&str, Option<&str>)], ops: &[(&str, Option<f64>)]) -> QuotaAlteration {
        QuotaAlteration {
            entity: entity.iter().map(|(kind, name)| ((*kind).to_owned(), name.map(str::to_owned))).collect(),
            ops: ops.iter().map(|(key, value)| ((*key).to_owned(), *value)).collect(),
        }
    }

    fn applied(quotas: &mut ClientQuotas, alterations: &[QuotaAlteration]) -> Vec<Result<(), Refusal>> {
        let (records, answers) = alter(quotas, alterations);
        for record in &records {
            quotas.apply(record);
        }
        answers
    }

    fn refusal_message(answer: &Result<(), Refusal>) -> &str {
        match answer {
            Err(refusal) => {
                assert_eq!(refusal.error, ResponseError::InvalidRequest);
                &refusal.message
            }
            Ok(()) => panic!("expected a refusal"),
        }
    }

    #[test]
    fn set_change_and_remove_write_only_what_changes() {
        let mut quotas = ClientQuotas::default();
        let user = [("user", Some("alice"))];
        let answers = applied(&mut quotas, &[alteration(&user, &[("producer_byte_rate", Some(1024.0))])]);
        assert!(answers.iter().all(Result::is_ok));
        let entity = QuotaEntity { user: Some(EntityName::Named("alice".to_owned())), client_id: None };
        assert_eq!(quotas.value(&entity, QuotaKey::ProducerByteRate), Some(1024.0));
        let (records, _) = alter(&quotas, &[alteration(&user, &[("producer_byte_rate", Some(1024.0))])]);
        assert!(records.is_empty(), "an unchanged value writes nothing");
        let (records, _) = alter(&quotas, &[alteration(&user, &[("consumer_byte_rate", None)])]);
        assert!(records.is_empty(), "removing an absent key writes nothing");
        applied(&mut quotas, &[alteration(&user, &[("producer_byte_rate", None)])]);
        assert!(quotas.is_empty(), "an entity without keys goes");
    }

    #[test]
    fn kafkas_validation_messages() {
        let quotas = ClientQuotas::default();
        let cases: &[(QuotaAlteration, &str)] = &[
            (alteration(&[], &[("producer_byte_rate", Some(1.0))]), "Invalid empty client quota entity"),
            (
                alteration(&[("user", Some("a")), ("user", Some("b"))], &[]),
                "Invalid client quota entity, duplicate entity entry user",
            ),
            (alteration(&[("group", Some("g"))], &[]), "Unhandled client quota entity type: group"),
            (alteration(&[("client-id", Some(""))], &[]), "Empty client-id not supported"),
            (alteration(&[("user", None)], &[("bogus", Some(1.0))]), "Invalid configuration key bogus"),
            (
                alteration(&[("user", None)], &[("request_percentage", Some(0.0))]),
                "Quota request_percentage must be greater than 0",
            ),
            (
                alteration(&[("user", None)], &[("producer_byte_rate", Some(1.5))]),
                "producer_byte_rate cannot be a fractional value.",
            ),
            (
                alteration(&[("user", None)], &[("consumer_byte_rate", Some(1e300))]),
                "Proposed value for consumer_byte_rate is too large for a LONG.",
            ),
        ];
        for (alteration, message) in cases {
            let (records, answers) = alter(&quotas, std::slice::from_ref(alteration));
            assert!(records.is_empty());
            assert_eq!(refusal_message(&answers[0]), *message);
        }
        let (_, answers) = alter(&quotas, &[alteration(&[("user", None)], &[("request_percentage", Some(12.5))])]);
        assert!(answers[0].is_ok(), "request_percentage is a DOUBLE: fractions are fine");
    }

    #[test]
    fn validate_only_decides_and_writes_nothing() {
        let image = crate::metadata::MetadataImage::default();
        let entry = alteration(&[("client-id", Some("p1"))], &[("producer_byte_rate", Some(1024.0))]);
        let (records, outcome) = decide_alter(&image, std::slice::from_ref(&entry), true);
        assert!(records.is_empty());
        assert!(matches!(outcome, crate::controller::wire::Outcome::Each(ref answers) if answers[0].is_ok()));
        let (records, _) = decide_alter(&image, &[entry], false);
        let mut applied = image.clone();
        for record in &records {
            applied.apply(record);
        }
        let entity = QuotaEntity { user: None, client_id: Some(EntityName::Named("p1".to_owned())) };
        assert_eq!(applied.client_quotas.value(&entity, QuotaKey::ProducerByteRate), Some(1024.0));
    }

    #[test]
    fn the_same_entity_twice_refuses_both_entries() {
        let quotas = ClientQuotas::default();
        let first = alteration(&[("user", Some("u")), ("client-id", Some("c"))], &[("producer_byte_rate", Some(1.0))]);
        let second = alteration(&[("client-id", Some("c")), ("user", Some("u"))], &[("consumer_byte_rate", Some(1.0))]);
        let (_, answers) = alter(&quotas, &[first, second]);
        assert!(refusal_message(&answers[0]).starts_with("Ignoring duplicate entity"));
        assert!(refusal_message(&answers[1]).starts_with("Ignoring duplicate entity"));
    }

    fn sample_quotas() -> ClientQuotas {
        let mut quotas = ClientQuotas::default();
        applied(
            &mut quotas,
            &[
                alteration(&[("user", Some("alice"))], &[("producer_byte_rate", Some(100.0))]),
                alteration(&[("user", None)], &[("producer_byte_rate", Some(200.0))]),
                alteration(&[("user", Some("alice")), ("client-id", Some("p1"))], &[("request_percentage", Some(5.0))]),
                alteration(&[("client-id", None)], &[("consumer_byte_rate", Some(300.0))]),
            ],
        );
        quotas
    }

    fn component(kind: &str, match_type: i8, matched: Option<&str>) -> FilterComponent {
        FilterComponent { entity_type: kind.to_owned(), match_type, matched: matched.map(str::to_owned) }
    }

    #[test]
    fn describe_matches_exact_default_and_specified_components() {
        let quotas = sample_quotas();
        let count = |filter: &[FilterComponent], strict| describe(&quotas, filter, strict).expect("valid").len();
        assert_eq!(count(&[], false), 4);
        assert_eq!(count(&[], true), 0);
        assert_eq!(count(&[component("user", MATCH_TYPE_EXACT, Some("alice"))], false), 2);
        assert_eq!(count(&[component("user", MATCH_TYPE_EXACT, Some("alice"))], true), 1);
        assert_eq!(count(&[component("user", MATCH_TYPE_DEFAULT, None)], false), 1);
        assert_eq!(count(&[component("user", MATCH_TYPE_SPECIFIED, None)], false), 3);
        assert_eq!(count(&[component("client-id", MATCH_TYPE_SPECIFIED, None)], true), 1);
        let both =
            [component("user", MATCH_TYPE_SPECIFIED, None), component("client-id", MATCH_TYPE_EXACT, Some("p1"))];
        assert_eq!(count(&both, true), 1);
    }

    #[test]
    fn describe_refuses_malformed_filters_as_kafka_does() {
        let quotas = sample_quotas();
        let error = |filter: &[FilterComponent]| describe(&quotas, filter, false).expect_err("refused");
        assert_eq!(error(&[component("", 0, Some("x"))]).message, "Invalid empty entity type.");
        assert_eq!(error(&[component("topic", 0, Some("x"))]).error, ResponseError::UnsupportedVersion);
        assert_eq!(
            error(&[component("user", MATCH_TYPE_EXACT, None)]).message,
            "Request specified MATCH_TYPE_EXACT, but set match string to null."
        );
        assert_eq!(error(&[component("user", 7, None)]).message, "Unknown match type 7");
        assert!(
            error(&[component("user", MATCH_TYPE_SPECIFIED, None), component("user", MATCH_TYPE_SPECIFIED, None)])
                .message
                .contains("cannot appear more than once")
        );
        assert!(
            error(&[component("ip", MATCH_TYPE_SPECIFIED, None), component("user", MATCH_TYPE_SPECIFIED, None)])
                .message
                .starts_with("Invalid entity filter component combination.")
        );
    }

    #[test]
    fn quotas_round_trip_through_json() {
        let quotas = sample_quotas();
        let bytes = serde_json::to_vec(&quotas).expect("serializes");
        let decoded: ClientQuotas = serde_json::from_slice(&bytes).expect("deserializes");
        assert_eq!(decoded, quotas);
    }

    #[test]
    fn a_key_is_in_use_while_any_entity_sets_it() {
        let mut quotas = sample_quotas();
        assert!(quotas.has(QuotaKey::RequestPercentage));
        assert!(!quotas.has(QuotaKey::ControllerMutationRate));
        let alice = &[("user", Some("alice"))];
        applied(&mut quotas, &[alteration(alice, &[("producer_byte_rate", Some(150.0))])]);
        assert!(quotas.has(QuotaKey::ProducerByteRate), "a changed value is still one use");
        let alice_p1 = &[("user", Some("alice")), ("client-id", Some("p1"))];
        applied(&mut quotas, &[alteration(alice_p1, &[("request_percentage", None)])]);
        assert!(!quotas.has(QuotaKey::RequestPercentage), "its only entity removed it");
        applied(&mut quotas, &[alteration(&[("user", None)], &[("producer_byte_rate", None)])]);
        assert!(quotas.has(QuotaKey::ProducerByteRate), "alice still sets it");
        applied(&mut quotas, &[alteration(alice, &[("producer_byte_rate", None)])]);
        assert!(!quotas.has(QuotaKey::ProducerByteRate));
        let decoded: ClientQuotas =
            serde_json::from_slice(&serde_json::to_vec(&sample_quotas()).expect("serializes")).expect("deserializes");
        assert!(decoded.has(QuotaKey::RequestPercentage), "the counts are rebuilt from the entities");
    }
}
