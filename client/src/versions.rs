//! API version negotiation: the table of versions a broker advertised in `ApiVersions`, intersected
//! with what `kafka-protocol` can encode.
//!
//! For each API the client uses the highest version both sides support, optionally capped per API
//! (to exercise older versions against a broker). Built once per connection; plain data, `Clone`.

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::error::ClientError;

/// Versions the broker advertised and the version chosen for each API.
#[derive(Debug, Clone, Default)]
pub struct ApiVersions {
    broker: BTreeMap<i16, VersionRange>,
    caps: BTreeMap<i16, i16>,
}

impl ApiVersions {
    /// The table from a broker's `ApiVersions` response.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let broker = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, VersionRange { min: api.min_version, max: api.max_version }))
            .collect();
        Self { broker, caps: BTreeMap::new() }
    }

    /// Never use a version of `api` above `version_max`.
    pub fn set_cap(&mut self, api: ApiKey, version_max: i16) {
        self.caps.insert(api as i16, version_max);
    }

    /// What the broker advertised for `api`, if anything.
    pub fn broker_range(&self, api: ApiKey) -> Option<VersionRange> {
        self.broker.get(&(api as i16)).copied()
    }

    /// The highest version of `api` both sides support, below any cap.
    ///
    /// # Errors
    /// `UnsupportedVersion` when the ranges do not overlap or the broker lacks the API.
    pub fn version_for(&self, api: ApiKey) -> Result<i16, ClientError> {
        let client = api.valid_versions();
        let unsupported = || ClientError::UnsupportedVersion { api, broker: self.broker_range(api), client };
        let broker = self.broker_range(api).ok_or_else(unsupported)?;
        let mut common = client.intersect(&broker);
        if let Some(cap) = self.caps.get(&(api as i16)) {
            common.max = common.max.min(*cap);
        }
        if common.is_empty() {
            return Err(unsupported());
        }
        Ok(common.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn response(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        let api_keys = ranges
            .iter()
            .map(|(api, min, max)| {
                ApiVersion::default().with_api_key(*api as i16).with_min_version(*min).with_max_version(*max)
            })
            .collect();
        ApiVersionsResponse::default().with_api_keys(api_keys)
    }

    #[test]
    fn chooses_highest_common_version() {
        let versions = ApiVersions::from_response(&response(&[(ApiKey::Produce, 0, 11), (ApiKey::Fetch, 0, 99)]));
        assert_eq!(versions.version_for(ApiKey::Produce).expect("common"), 11);
        assert_eq!(versions.version_for(ApiKey::Fetch).expect("common"), ApiKey::Fetch.valid_versions().max);
    }

    #[test]
    fn missing_or_disjoint_api_is_unsupported() {
        let versions = ApiVersions::from_response(&response(&[(ApiKey::Produce, 0, 2)]));
        assert!(matches!(versions.version_for(ApiKey::Produce), Err(ClientError::UnsupportedVersion { .. })));
        assert!(matches!(
            versions.version_for(ApiKey::Metadata),
            Err(ClientError::UnsupportedVersion { broker: None, .. })
        ));
    }

    #[test]
    fn cap_lowers_the_choice() {
        let mut versions = ApiVersions::from_response(&response(&[(ApiKey::Metadata, 0, 12)]));
        versions.set_cap(ApiKey::Metadata, 9);
        assert_eq!(versions.version_for(ApiKey::Metadata).expect("common"), 9);
        versions.set_cap(ApiKey::Metadata, -1);
        assert!(versions.version_for(ApiKey::Metadata).is_err());
    }
}
