//! ACL changes through the metadata log, as Kafka's `AclControlManager` makes them: the active
//! controller decides CreateAcls and DeleteAcls against the image's ACL set and writes one
//! `CreateAcl` record per new binding (with the next id) and one `RemoveAcl` record per binding a
//! filter matches; every broker applies them in log order, so all enforce the same set.
//!
//! The decisions are pure functions of the image, run on the controller's thread; the `create`
//! and `delete` calls run on a shard and return once this broker has published the result.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use super::acl::{AclBinding, AclFilter};
use crate::controller::wire::{ControllerRequest, Outcome, WireRefusal};
use crate::metadata::records::MetadataRecord;
use crate::metadata::{Metadata, MetadataImage, Refusal};

/// Decides CreateAcls: per binding, in order, created (or already present: Kafka answers
/// success without a second copy) or refused with INVALID_REQUEST.
pub(crate) fn decide_create(image: &MetadataImage, bindings: &[AclBinding]) -> (Vec<MetadataRecord>, Outcome) {
    let mut records = Vec::new();
    let mut created: Vec<&AclBinding> = Vec::new();
    let mut next_id = image.acls.next_id();
    let answers = bindings
        .iter()
        .map(|binding| {
            binding
                .validate()
                .map_err(|message| WireRefusal::from(Refusal::new(ResponseError::InvalidRequest, message)))?;
            if !image.acls.contains(binding) && !created.contains(&binding) {
                created.push(binding);
                records.push(MetadataRecord::CreateAcl { id: next_id, binding: binding.clone() });
                next_id += 1;
            }
            Ok(())
        })
        .collect();
    (records, Outcome::Each(answers))
}

/// Decides DeleteAcls: per filter, in order, the bindings it matches (a binding matched by
/// several filters is listed by each and removed once), or INVALID_REQUEST for a filter with an
/// UNKNOWN part.
pub(crate) fn decide_delete(image: &MetadataImage, filters: &[AclFilter]) -> (Vec<MetadataRecord>, Outcome) {
    let mut removed = BTreeSet::new();
    let answers = filters
        .iter()
        .map(|filter| {
            if filter.is_unknown() {
                let message = "Unknown patternFilter or entryFilter.";
                return Err(WireRefusal::from(Refusal::new(ResponseError::InvalidRequest, message)));
            }
            let matched: Vec<AclBinding> = image
                .acls
                .iter()
                .filter(|(_, binding)| filter.matches(binding))
                .map(|(id, binding)| {
                    removed.insert(id);
                    binding.clone()
                })
                .collect();
            Ok(matched)
        })
        .collect();
    let records = removed.into_iter().map(|id| MetadataRecord::RemoveAcl { id }).collect();
    (records, Outcome::Acls(answers))
}

/// Creates ACLs through the controller: one answer per binding, in order.
pub(crate) async fn create(metadata: &Metadata, bindings: Vec<AclBinding>) -> Vec<Result<(), Refusal>> {
    let count = bindings.len();
    match metadata.submit(ControllerRequest::CreateAcls { bindings }).await {
        Ok(Outcome::Each(answers)) if answers.len() == count => {
            answers.into_iter().map(|answer| answer.map_err(Refusal::from)).collect()
        }
        Ok(_) => (0..count).map(|_| Err(unexpected())).collect(),
        Err(refusal) => (0..count).map(|_| Err(refusal.clone())).collect(),
    }
}

/// Deletes ACLs through the controller: per filter, in order, the bindings it removed.
pub(crate) async fn delete(metadata: &Metadata, filters: Vec<AclFilter>) -> Vec<Result<Vec<AclBinding>, Refusal>> {
    let count = filters.len();
    match metadata.submit(ControllerRequest::DeleteAcls { filters }).await {
        Ok(Outcome::Acls(answers)) if answers.len() == count => {
            answers.into_iter().map(|answer| answer.map_err(Refusal::from)).collect()
        }
        Ok(_) => (0..count).map(|_| Err(unexpected())).collect(),
        Err(refusal) => (0..count).map(|_| Err(refusal.clone())).collect(),
    }
}

fn unexpected() -> Refusal {
    Refusal::new(ResponseError::UnknownServerError, "the controller answered an ACL change with another kind of answer")
}

#[cfg(test)]
mod tests {
    use super::super::acl::tests::binding;
    use super::super::acl::{AclOperation, PatternType, PermissionType, ResourceType};
    use super::*;

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for record in records {
            image.apply(record);
        }
    }

    fn read(topic: &str) -> AclBinding {
        binding((ResourceType::Topic, topic, PatternType::Literal), "User:a", AclOperation::Read, PermissionType::Allow)
    }

    #[test]
    fn creating_an_existing_binding_succeeds_without_a_second_copy() {
        let mut image = MetadataImage::default();
        let (records, outcome) = decide_create(&image, &[read("t"), read("t"), read("u")]);
        assert_eq!(records.len(), 2);
        assert!(matches!(outcome, Outcome::Each(ref answers) if answers.iter().all(Result::is_ok)));
        apply(&mut image, &records);
        let (records, _) = decide_create(&image, &[read("t")]);
        assert!(records.is_empty());
        assert_eq!(image.acls.iter().count(), 2);
    }

    #[test]
    fn invalid_bindings_are_refused_one_by_one() {
        let mut bad = read("t");
        bad.pattern_type = PatternType::Match;
        let (records, outcome) = decide_create(&MetadataImage::default(), &[bad, read("t")]);
        assert_eq!(records.len(), 1);
        let Outcome::Each(answers) = outcome else { panic!("one answer per binding") };
        assert!(matches!(&answers[0], Err(refusal) if refusal.code == ResponseError::InvalidRequest.code()));
        assert!(answers[1].is_ok());
    }

    #[test]
    fn delete_lists_each_match_per_filter_and_removes_it_once() {
        let mut image = MetadataImage::default();
        let (records, _) = decide_create(&image, &[read("t"), read("u")]);
        apply(&mut image, &records);
        let mut by_name = AclFilter {
            resource_type: ResourceType::Topic,
            resource_name: Some("t".to_owned()),
            pattern_type: PatternType::Literal,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: PermissionType::Any,
        };
        let everything = AclFilter { resource_name: None, pattern_type: PatternType::Any, ..by_name.clone() };
        let (records, outcome) = decide_delete(&image, &[by_name.clone(), everything]);
        assert_eq!(records.len(), 2);
        let Outcome::Acls(answers) = outcome else { panic!("one answer per filter") };
        assert_eq!(answers[0].as_ref().map(Vec::len), Ok(1));
        assert_eq!(answers[1].as_ref().map(Vec::len), Ok(2));
        apply(&mut image, &records);
        assert_eq!(image.acls.iter().count(), 0);
        by_name.operation = AclOperation::Unknown;
        let (_, outcome) = decide_delete(&image, &[by_name]);
        assert!(matches!(outcome, Outcome::Acls(ref answers) if answers[0].is_err()));
    }
}
