//! SCRAM credentials in the metadata: the image's part (user and mechanism to salt, stored key,
//! server key and iterations; never a password), the active controller's decision on
//! AlterUserScramCredentials (Kafka's `ScramControlManager`), and DescribeUserScramCredentials
//! answered from the image (Kafka's `ScramImage.describe`).
//!
//! Every broker applies the same records, so every broker checks the same credentials. The
//! asking broker turns each upsertion's salted password into the stored and server keys before
//! the request leaves it, so not even the salted password reaches the controller or the log.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::scram::{ITERATIONS_MAX, ITERATIONS_MIN, ScramCredential, ScramMechanism};
use crate::controller::wire::{Outcome, WireRefusal};
use crate::metadata::image::MetadataImage;
use crate::metadata::records::MetadataRecord;

/// The credentials of every SCRAM user: by user name, then mechanism.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScramCredentials {
    users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

impl ScramCredentials {
    /// The credential of `user` for `mechanism`.
    pub(crate) fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.users.get(user).and_then(|mechanisms| mechanisms.get(&mechanism))
    }

    /// Every credential of `user`, by mechanism.
    pub(crate) fn of(&self, user: &str) -> Option<&BTreeMap<ScramMechanism, ScramCredential>> {
        self.users.get(user)
    }

    /// Applies `UserScramCredential` (upsert).
    pub(crate) fn upsert(&mut self, user: &str, mechanism: ScramMechanism, credential: &ScramCredential) {
        self.users.entry(user.to_owned()).or_default().insert(mechanism, credential.clone());
    }

    /// Applies `RemoveUserScramCredential`; idempotent, so a replay changes nothing.
    pub(crate) fn remove(&mut self, user: &str, mechanism: ScramMechanism) {
        if let Some(mechanisms) = self.users.get_mut(user) {
            mechanisms.remove(&mechanism);
            if mechanisms.is_empty() {
                self.users.remove(user);
            }
        }
    }
}

/// One credential to set: what the asking broker derived from the request's salted password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScramUpsertion {
    pub(crate) name: String,
    /// Kafka's mechanism type byte, as the client sent it.
    pub(crate) mechanism: i8,
    pub(crate) iterations: i32,
    /// `None` when the mechanism is unknown (refused by the controller).
    pub(crate) credential: Option<ScramCredential>,
    /// Set only when the user has no credential for this mechanism yet (`--add-scram` at start).
    pub(crate) only_if_absent: bool,
}

/// Kafka's AlterUserScramCredentials, for the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScramAlteration {
    /// (user, mechanism type byte).
    pub(crate) deletions: Vec<(String, i8)>,
    pub(crate) upsertions: Vec<ScramUpsertion>,
}

impl ScramAlteration {
    /// The users answered, each once, in the order they first appear (deletions first): the
    /// controller's answers come in this order.
    pub(crate) fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = Vec::new();
        let names = self.deletions.iter().map(|(name, _)| name).chain(self.upsertions.iter().map(|up| &up.name));
        for name in names {
            if !users.contains(name) {
                users.push(name.clone());
            }
        }
        users
    }
}

const DUPLICATE: &str = "A user credential cannot be altered twice in the same request";

fn refused(error: ResponseError, message: &str) -> WireRefusal {
    WireRefusal { code: error.code(), message: message.to_owned() }
}

/// Kafka's checks of a user name and mechanism.
fn check_name_and_mechanism(name: &str, mechanism: i8) -> Result<ScramMechanism, WireRefusal> {
    if name.is_empty() {
        return Err(refused(ResponseError::UnacceptableCredential, "Username must not be empty"));
    }
    ScramMechanism::from_type(mechanism)
        .ok_or_else(|| refused(ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism"))
}

/// The active controller's decision: the records to write, and one answer per user of
/// [`ScramAlteration::users`]. A user named twice in one request is refused
/// (DUPLICATE_RESOURCE) and none of its changes is made.
pub(crate) fn decide(image: &MetadataImage, alteration: &ScramAlteration) -> (Vec<MetadataRecord>, Outcome) {
    let users = alteration.users();
    let mut errors: BTreeMap<&str, WireRefusal> = BTreeMap::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let names =
        alteration.deletions.iter().map(|(name, _)| name).chain(alteration.upsertions.iter().map(|up| &up.name));
    for name in names {
        *seen.entry(name.as_str()).or_default() += 1;
    }
    for (name, count) in &seen {
        if *count > 1 {
            errors.insert(name, refused(ResponseError::DuplicateResource, DUPLICATE));
        }
    }
    let mut records = Vec::new();
    for (name, mechanism) in &alteration.deletions {
        if errors.contains_key(name.as_str()) {
            continue;
        }
        let decision =
            check_name_and_mechanism(name, *mechanism).and_then(|mechanism| match image.scram.get(name, mechanism) {
                Some(_) => Ok(mechanism),
                None => Err(refused(
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist",
                )),
            });
        match decision {
            Ok(mechanism) => records.push(MetadataRecord::RemoveUserScramCredential { name: name.clone(), mechanism }),
            Err(refusal) => {
                errors.insert(name, refusal);
            }
        }
    }
    for upsertion in &alteration.upsertions {
        if errors.contains_key(upsertion.name.as_str()) {
            continue;
        }
        match check_upsertion(upsertion) {
            Ok((mechanism, credential)) => {
                if upsertion.only_if_absent && image.scram.get(&upsertion.name, mechanism).is_some() {
                    continue;
                }
                records.push(MetadataRecord::UserScramCredential {
                    name: upsertion.name.clone(),
                    mechanism,
                    credential: credential.clone(),
                });
            }
            Err(refusal) => {
                errors.insert(&upsertion.name, refusal);
            }
        }
    }
    let answers = users.iter().map(|user| errors.get(user.as_str()).map_or(Ok(()), |refusal| Err(refusal.clone())));
    (records, Outcome::Each(answers.collect()))
}

fn check_upsertion(upsertion: &ScramUpsertion) -> Result<(ScramMechanism, &ScramCredential), WireRefusal> {
    let mechanism = check_name_and_mechanism(&upsertion.name, upsertion.mechanism)?;
    if upsertion.iterations < ITERATIONS_MIN {
        return Err(refused(ResponseError::UnacceptableCredential, "Too few iterations"));
    }
    if upsertion.iterations > ITERATIONS_MAX {
        return Err(refused(ResponseError::UnacceptableCredential, "Too many iterations"));
    }
    let credential = upsertion
        .credential
        .as_ref()
        .ok_or_else(|| refused(ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism"))?;
    Ok((mechanism, credential))
}

/// One user's answer to DescribeUserScramCredentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserDescription {
    pub(crate) user: String,
    /// (mechanism, iterations), or Kafka's refusal.
    pub(crate) result: Result<Vec<(ScramMechanism, i32)>, WireRefusal>,
}

/// Kafka's DescribeUserScramCredentials over the image: every user when `users` is `None` or
/// empty; a user named twice is answered DUPLICATE_RESOURCE, an unknown one RESOURCE_NOT_FOUND.
pub(crate) fn describe(credentials: &ScramCredentials, users: Option<&[String]>) -> Vec<UserDescription> {
    let wanted: Vec<String> = match users {
        Some(users) if !users.is_empty() => users.to_vec(),
        _ => credentials.users.keys().cloned().collect(),
    };
    let mut answered: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for user in &wanted {
        if answered.contains(user) {
            continue;
        }
        answered.push(user.clone());
        let result = if wanted.iter().filter(|other| *other == user).count() > 1 {
            Err(refused(
                ResponseError::DuplicateResource,
                &format!("Cannot describe SCRAM credentials for the same user twice in a single request: {user}"),
            ))
        } else {
            match credentials.of(user) {
                Some(mechanisms) => {
                    Ok(mechanisms.iter().map(|(mechanism, credential)| (*mechanism, credential.iterations)).collect())
                }
                None => Err(refused(
                    ResponseError::ResourceNotFound,
                    &format!("Attempt to describe a user credential that does not exist: {user}"),
                )),
            }
        };
        out.push(UserDescription { user: user.clone(), result });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsertion(name: &str, mechanism: i8, iterations: i32) -> ScramUpsertion {
        let credential = ScramMechanism::from_type(mechanism)
            .map(|known| known.credential(b"salt".to_vec(), b"salted-password-bytes", iterations));
        ScramUpsertion { name: name.to_owned(), mechanism, iterations, credential, only_if_absent: false }
    }

    fn answers(outcome: &Outcome) -> Vec<Option<i16>> {
        let Outcome::Each(answers) = outcome else { panic!("one answer per user") };
        answers.iter().map(|answer| answer.as_ref().err().map(|refusal| refusal.code)).collect()
    }

    #[test]
    fn kafkas_validation_codes() {
        let image = MetadataImage::default();
        let alteration = ScramAlteration {
            deletions: vec![("ghost".to_owned(), 1)],
            upsertions: vec![
                upsertion("few", 1, 4095),
                upsertion("many", 2, 16_385),
                upsertion("odd", 3, 4096),
                upsertion("", 1, 4096),
                upsertion("twice", 1, 4096),
                upsertion("twice", 2, 4096),
                upsertion("ok", 2, 8192),
            ],
        };
        let (records, outcome) = decide(&image, &alteration);
        assert_eq!(alteration.users(), ["ghost", "few", "many", "odd", "", "twice", "ok"]);
        assert_eq!(
            answers(&outcome),
            [
                Some(ResponseError::ResourceNotFound.code()),
                Some(ResponseError::UnacceptableCredential.code()),
                Some(ResponseError::UnacceptableCredential.code()),
                Some(ResponseError::UnsupportedSaslMechanism.code()),
                Some(ResponseError::UnacceptableCredential.code()),
                Some(ResponseError::DuplicateResource.code()),
                None,
            ]
        );
        assert!(matches!(&records[..], [MetadataRecord::UserScramCredential { name, .. }] if name == "ok"));
    }

    #[test]
    fn upsert_then_delete_round_trips_through_the_image() {
        let mut image = MetadataImage::default();
        let set = ScramAlteration { deletions: Vec::new(), upsertions: vec![upsertion("alice", 1, 4096)] };
        let (records, _) = decide(&image, &set);
        for record in &records {
            image.apply(record);
        }
        let described = describe(&image.scram, Some(&["alice".to_owned(), "bob".to_owned()]));
        assert_eq!(described[0].result, Ok(vec![(ScramMechanism::Sha256, 4096)]));
        assert_eq!(
            described[1].result.as_ref().err().map(|refusal| refusal.code),
            Some(ResponseError::ResourceNotFound.code())
        );
        let twice = describe(&image.scram, Some(&["alice".to_owned(), "alice".to_owned()]));
        assert_eq!(twice.len(), 1);
        assert_eq!(
            twice[0].result.as_ref().err().map(|refusal| refusal.code),
            Some(ResponseError::DuplicateResource.code())
        );
        let delete = ScramAlteration { deletions: vec![("alice".to_owned(), 1)], upsertions: Vec::new() };
        let (records, outcome) = decide(&image, &delete);
        assert_eq!(answers(&outcome), [None]);
        for record in &records {
            image.apply(record);
            image.apply(record);
        }
        assert!(describe(&image.scram, None).is_empty());
    }

    #[test]
    fn only_if_absent_keeps_an_existing_credential() {
        let mut image = MetadataImage::default();
        let (records, _) =
            decide(&image, &ScramAlteration { deletions: Vec::new(), upsertions: vec![upsertion("admin", 2, 8192)] });
        for record in &records {
            image.apply(record);
        }
        let mut again = upsertion("admin", 2, 4096);
        again.only_if_absent = true;
        let (records, outcome) = decide(&image, &ScramAlteration { deletions: Vec::new(), upsertions: vec![again] });
        assert!(records.is_empty());
        assert_eq!(answers(&outcome), [None]);
        assert_eq!(
            image.scram.get("admin", ScramMechanism::Sha512).map(|credential| credential.iterations),
            Some(8192)
        );
    }
}
