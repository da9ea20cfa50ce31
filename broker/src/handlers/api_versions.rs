//! ApiVersions (v0-v3): what the broker serves. The unknown-version fallback is in `dispatch`.

use std::rc::Rc;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::context::ShardContext;
use crate::dispatch::{Outcome, api_versions_response};

pub(crate) async fn handle(
    _shard: Rc<ShardContext>,
    _version: i16,
    _request: ApiVersionsRequest,
) -> Outcome<ApiVersionsResponse> {
    Outcome::Respond(api_versions_response())
}
