//! ApiVersions (v0-v3): what the broker serves. The unknown-version fallback is in `dispatch`.

use std::rc::Rc;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome, api_versions_response};

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::ApiVersions, min: 0, max: 3 };

pub(crate) async fn handle(
    _shard: Rc<ShardContext>,
    _call: Call,
    _request: ApiVersionsRequest,
) -> Outcome<ApiVersionsResponse> {
    Outcome::Respond(api_versions_response())
}
