//! Request dispatch: API key to handler, version checks, decoding, and response encoding.
//!
//! Steps for one request frame (the connection has already checked its size):
//! 1. look up the API key and version in [`APIS`] (plus `groups::APIS`); an unknown key, or an
//!    unsupported version of anything but ApiVersions, closes the connection, as Kafka does;
//!    ApiVersions at an unknown version gets the v0 fallback answer listing what is supported;
//! 2. decode the header and body with `kafka-protocol`, catching any panic in the decoder;
//! 3. run the API's handler, which splits the work by owning shard and gathers the answers;
//! 4. encode the response (or none, for acks=0 produce).
//!
//! The returned future runs as its own task on the connection's shard; the connection writes
//! the replies in request order.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, DescribeLogDirsRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
    OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request};

use crate::context::ShardContext;
use crate::handlers;
use crate::handlers::fetch::FetchAnswer;
use crate::net::framing::{HeaderPrefix, encode_response};
use crate::net::send::Chunk;

/// The versions of one API the broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApiRange {
    /// The API.
    pub(crate) key: ApiKey,
    /// Oldest version served.
    pub(crate) min: i16,
    /// Newest version served.
    pub(crate) max: i16,
}

const fn range(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Every API served outside the group coordinator, with its versions. Lower bounds follow what
/// `kafka-protocol` decodes (the Kafka 4.0 floor); Produce is advertised from v0 as Kafka does,
/// because older librdkafka releases refuse a broker whose Produce minimum is above 0, but v0-v2
/// requests (message format v0/v1) are refused when they arrive. Transaction APIs are not listed
/// until transactions exist.
pub(crate) const APIS: &[ApiRange] = &[
    range(ApiKey::Produce, 0, 11),
    range(ApiKey::Fetch, 4, 16),
    range(ApiKey::ListOffsets, 1, 8),
    range(ApiKey::Metadata, 0, 12),
    range(ApiKey::ApiVersions, 0, 3),
    range(ApiKey::CreateTopics, 2, 7),
    range(ApiKey::DeleteTopics, 1, 6),
    range(ApiKey::DeleteRecords, 0, 2),
    range(ApiKey::InitProducerId, 0, 5),
    range(ApiKey::OffsetForLeaderEpoch, 2, 4),
    range(ApiKey::DescribeConfigs, 1, 4),
    range(ApiKey::AlterConfigs, 0, 2),
    range(ApiKey::DescribeLogDirs, 1, 4),
    range(ApiKey::CreatePartitions, 0, 3),
    range(ApiKey::IncrementalAlterConfigs, 0, 1),
    range(ApiKey::DescribeCluster, 0, 1),
];

/// Produce versions below this carry message format v0/v1, which the engine does not store.
const PRODUCE_VERSION_MIN_SERVED: i16 = 3;

/// Every API advertised in ApiVersions.
pub(crate) fn advertised() -> impl Iterator<Item = &'static ApiRange> {
    APIS.iter().chain(crate::groups::APIS)
}

fn supported(key: ApiKey) -> Option<ApiRange> {
    advertised().find(|api| api.key == key).copied()
}

/// What the connection does once a request is handled.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Write this response frame.
    Frame(Bytes),
    /// Write this response frame, made of memory and file chunks (Fetch).
    Chunks(Vec<Chunk>),
    /// Write nothing (acks=0 produce).
    Silent,
    /// Close the connection after the replies before this one.
    Close(String),
}

/// What a handler produced.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    /// Send this response.
    Respond(T),
    /// Send nothing.
    Silent,
    /// Close the connection (for example an acks=0 produce that failed, as Kafka does).
    Close(&'static str),
}

/// A handler's response, encoded as the reply to one request.
pub(crate) trait Respond {
    /// Encodes the frame answering request `correlation_id` at `version`.
    fn reply(self, correlation_id: i32, version: i16) -> anyhow::Result<Reply>;
}

impl<R: Encodable + HeaderVersion> Respond for R {
    fn reply(self, correlation_id: i32, version: i16) -> anyhow::Result<Reply> {
        encode_response(correlation_id, version, &self).map(Reply::Frame)
    }
}

impl Respond for FetchAnswer {
    fn reply(self, correlation_id: i32, version: i16) -> anyhow::Result<Reply> {
        Ok(Reply::Chunks(handlers::fetch::encode(correlation_id, version, self)))
    }
}

/// Starts handling one request frame. The future decodes, runs the handler and encodes.
pub(crate) fn dispatch(shard: Rc<ShardContext>, prefix: HeaderPrefix, frame: Bytes) -> LocalBoxFuture<'static, Reply> {
    let version = prefix.api_version;
    if prefix.api_key == ApiKey::ApiVersions as i16 && version > APIS[4].max {
        return Box::pin(std::future::ready(api_versions_fallback(prefix.correlation_id)));
    }
    let key = match served(prefix) {
        Ok(key) => key,
        Err(reason) => return Box::pin(std::future::ready(Reply::Close(reason))),
    };
    let mut body = frame;
    let header = match decode_header(key, version, &mut body) {
        Ok(header) => header,
        Err(reason) => return Box::pin(std::future::ready(Reply::Close(reason))),
    };
    route(shard, key, &header, body)
}

/// Step 1's checks without the ApiVersions fallback: the API and version this broker decodes.
fn served(prefix: HeaderPrefix) -> Result<ApiKey, String> {
    let key = ApiKey::try_from(prefix.api_key).map_err(|()| format!("unknown api key {}", prefix.api_key))?;
    let version = prefix.api_version;
    let in_range = supported(key).is_some_and(|api| (api.min..=api.max).contains(&version));
    if !in_range || (key == ApiKey::Produce && version < PRODUCE_VERSION_MIN_SERVED) {
        return Err(format!("unsupported {key:?} version {version}"));
    }
    Ok(key)
}

/// Decodes the request header at the start of `body`, leaving the request body in it.
fn decode_header(key: ApiKey, version: i16, body: &mut Bytes) -> Result<RequestHeader, String> {
    let header_version = key.request_header_version(version);
    guarded_decode(|| RequestHeader::decode(body, header_version))
        .map_err(|reason| format!("bad {key:?} header: {reason}"))
}

/// Steps 1 and 2 of [`dispatch`] alone, for the request fuzz target: checks the API and version,
/// decodes the header, then the body with the same decoder the API's handler gets. Unlike
/// [`dispatch`] it does not catch decoder panics, so that a fuzzer sees them.
pub(crate) fn decode_request(frame: Bytes) -> Result<ApiKey, String> {
    let prefix = crate::net::framing::header_prefix(&frame).ok_or_else(|| "frame shorter than a header".to_owned())?;
    let key = served(prefix)?;
    let mut body = frame;
    let header_version = key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(&mut body, header_version).map_err(|error| error.to_string())?;
    let version = header.request_api_version;
    let decoded = match key {
        ApiKey::ApiVersions => decode_body::<ApiVersionsRequest>(body, version),
        ApiKey::Metadata => decode_body::<MetadataRequest>(body, version),
        ApiKey::Produce => decode_body::<ProduceRequest>(body, version),
        ApiKey::Fetch => decode_body::<FetchRequest>(body, version),
        ApiKey::ListOffsets => decode_body::<ListOffsetsRequest>(body, version),
        ApiKey::OffsetForLeaderEpoch => decode_body::<OffsetForLeaderEpochRequest>(body, version),
        ApiKey::CreateTopics => decode_body::<CreateTopicsRequest>(body, version),
        ApiKey::DeleteTopics => decode_body::<DeleteTopicsRequest>(body, version),
        ApiKey::CreatePartitions => decode_body::<CreatePartitionsRequest>(body, version),
        ApiKey::DeleteRecords => decode_body::<DeleteRecordsRequest>(body, version),
        ApiKey::DescribeConfigs => decode_body::<DescribeConfigsRequest>(body, version),
        ApiKey::AlterConfigs => decode_body::<AlterConfigsRequest>(body, version),
        ApiKey::IncrementalAlterConfigs => decode_body::<IncrementalAlterConfigsRequest>(body, version),
        ApiKey::DescribeCluster => decode_body::<DescribeClusterRequest>(body, version),
        ApiKey::DescribeLogDirs => decode_body::<DescribeLogDirsRequest>(body, version),
        ApiKey::InitProducerId => decode_body::<InitProducerIdRequest>(body, version),
        ApiKey::FindCoordinator => decode_body::<FindCoordinatorRequest>(body, version),
        ApiKey::JoinGroup => decode_body::<JoinGroupRequest>(body, version),
        ApiKey::SyncGroup => decode_body::<SyncGroupRequest>(body, version),
        ApiKey::Heartbeat => decode_body::<HeartbeatRequest>(body, version),
        ApiKey::LeaveGroup => decode_body::<LeaveGroupRequest>(body, version),
        ApiKey::OffsetCommit => decode_body::<OffsetCommitRequest>(body, version),
        ApiKey::OffsetFetch => decode_body::<OffsetFetchRequest>(body, version),
        ApiKey::OffsetDelete => decode_body::<OffsetDeleteRequest>(body, version),
        ApiKey::ListGroups => decode_body::<ListGroupsRequest>(body, version),
        ApiKey::DescribeGroups => decode_body::<DescribeGroupsRequest>(body, version),
        ApiKey::DeleteGroups => decode_body::<DeleteGroupsRequest>(body, version),
        other => Err(format!("{other:?} is advertised but has no handler")),
    };
    decoded.map(|()| key)
}

fn decode_body<R: Request>(mut body: Bytes, version: i16) -> Result<(), String> {
    R::decode(&mut body, version).map(drop).map_err(|error| error.to_string())
}

/// The one place that maps an API to its handler. Group APIs get their arms here.
fn route(shard: Rc<ShardContext>, key: ApiKey, header: &RequestHeader, body: Bytes) -> LocalBoxFuture<'static, Reply> {
    let call = Call { version: header.request_api_version, correlation_id: header.correlation_id };
    match key {
        ApiKey::ApiVersions => run::<ApiVersionsRequest, _, _, _>(shard, call, body, handlers::api_versions::handle),
        ApiKey::Metadata => run::<MetadataRequest, _, _, _>(shard, call, body, handlers::metadata::handle),
        ApiKey::Produce => run::<ProduceRequest, _, _, _>(shard, call, body, handlers::produce::handle),
        ApiKey::Fetch => run::<FetchRequest, _, _, _>(shard, call, body, handlers::fetch::handle),
        ApiKey::ListOffsets => run::<ListOffsetsRequest, _, _, _>(shard, call, body, handlers::list_offsets::handle),
        ApiKey::OffsetForLeaderEpoch => {
            run::<OffsetForLeaderEpochRequest, _, _, _>(shard, call, body, handlers::offset_for_leader_epoch::handle)
        }
        ApiKey::CreateTopics => run::<CreateTopicsRequest, _, _, _>(shard, call, body, handlers::create_topics::handle),
        ApiKey::DeleteTopics => run::<DeleteTopicsRequest, _, _, _>(shard, call, body, handlers::delete_topics::handle),
        ApiKey::CreatePartitions => {
            run::<CreatePartitionsRequest, _, _, _>(shard, call, body, handlers::create_partitions::handle)
        }
        ApiKey::DeleteRecords => {
            run::<DeleteRecordsRequest, _, _, _>(shard, call, body, handlers::delete_records::handle)
        }
        ApiKey::DescribeConfigs => {
            run::<DescribeConfigsRequest, _, _, _>(shard, call, body, handlers::describe_configs::handle)
        }
        ApiKey::AlterConfigs => run::<AlterConfigsRequest, _, _, _>(shard, call, body, handlers::alter_configs::handle),
        ApiKey::IncrementalAlterConfigs => run::<IncrementalAlterConfigsRequest, _, _, _>(
            shard,
            call,
            body,
            handlers::incremental_alter_configs::handle,
        ),
        ApiKey::DescribeCluster => {
            run::<DescribeClusterRequest, _, _, _>(shard, call, body, handlers::describe_cluster::handle)
        }
        ApiKey::DescribeLogDirs => {
            run::<DescribeLogDirsRequest, _, _, _>(shard, call, body, handlers::describe_log_dirs::handle)
        }
        ApiKey::InitProducerId => {
            run::<InitProducerIdRequest, _, _, _>(shard, call, body, handlers::init_producer_id::handle)
        }
        ApiKey::FindCoordinator => {
            run::<FindCoordinatorRequest, _, _, _>(shard, call, body, handlers::find_coordinator::handle)
        }
        ApiKey::JoinGroup => {
            let client_id = header.client_id.as_ref().map(ToString::to_string).unwrap_or_default();
            run::<JoinGroupRequest, _, _, _>(shard, call, body, move |shard, version, request| {
                handlers::join_group::handle(shard, version, request, client_id)
            })
        }
        ApiKey::SyncGroup => run::<SyncGroupRequest, _, _, _>(shard, call, body, handlers::sync_group::handle),
        ApiKey::Heartbeat => run::<HeartbeatRequest, _, _, _>(shard, call, body, handlers::heartbeat::handle),
        ApiKey::LeaveGroup => run::<LeaveGroupRequest, _, _, _>(shard, call, body, handlers::leave_group::handle),
        ApiKey::OffsetCommit => run::<OffsetCommitRequest, _, _, _>(shard, call, body, handlers::offset_commit::handle),
        ApiKey::OffsetFetch => run::<OffsetFetchRequest, _, _, _>(shard, call, body, handlers::offset_fetch::handle),
        ApiKey::OffsetDelete => run::<OffsetDeleteRequest, _, _, _>(shard, call, body, handlers::offset_delete::handle),
        ApiKey::ListGroups => run::<ListGroupsRequest, _, _, _>(shard, call, body, handlers::list_groups::handle),
        ApiKey::DescribeGroups => {
            run::<DescribeGroupsRequest, _, _, _>(shard, call, body, handlers::describe_groups::handle)
        }
        ApiKey::DeleteGroups => run::<DeleteGroupsRequest, _, _, _>(shard, call, body, handlers::delete_groups::handle),
        other => Box::pin(std::future::ready(Reply::Close(format!("{other:?} is advertised but has no handler")))),
    }
}

/// What a handler's response needs from the request header.
#[derive(Debug, Clone, Copy)]
struct Call {
    version: i16,
    correlation_id: i32,
}

/// Decodes, runs and encodes one request of type `R`; the handler answers with `T`, the
/// codec's response type except for Fetch.
fn run<R, F, Fut, T>(shard: Rc<ShardContext>, call: Call, mut body: Bytes, handler: F) -> LocalBoxFuture<'static, Reply>
where
    R: Request + 'static,
    F: FnOnce(Rc<ShardContext>, i16, R) -> Fut + 'static,
    Fut: Future<Output = Outcome<T>> + 'static,
    T: Respond,
{
    Box::pin(async move {
        let version = call.version;
        let request = match guarded_decode(|| R::decode(&mut body, version)) {
            Ok(request) => request,
            Err(reason) => return Reply::Close(format!("bad request body (api {}): {reason}", R::KEY)),
        };
        match handler(shard, version, request).await {
            Outcome::Respond(response) => match response.reply(call.correlation_id, version) {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::error!(api = R::KEY, version, %error, "response does not encode");
                    Reply::Close("response does not encode".to_owned())
                }
            },
            Outcome::Silent => Reply::Silent,
            Outcome::Close(reason) => Reply::Close(reason.to_owned()),
        }
    })
}

/// Runs a decoder over untrusted bytes, turning an error or a panic into a reason to close.
fn guarded_decode<T>(decode: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_panic) => Err("decoder panicked".to_owned()),
    }
}

/// ApiVersions at a version newer than served: a v0 response (which every client can read)
/// with UNSUPPORTED_VERSION and the supported ranges, so the client retries with one of them.
fn api_versions_fallback(correlation_id: i32) -> Reply {
    let response = api_versions_response().with_error_code(ResponseError::UnsupportedVersion.code());
    match encode_response(correlation_id, 0, &response) {
        Ok(frame) => Reply::Frame(frame),
        Err(error) => Reply::Close(format!("ApiVersions fallback does not encode: {error}")),
    }
}

/// The ApiVersions answer: every advertised API with its version range.
pub(crate) fn api_versions_response() -> ApiVersionsResponse {
    let api_keys = advertised()
        .map(|api| {
            ApiVersion::default().with_api_key(api.key as i16).with_min_version(api.min).with_max_version(api.max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn api_versions_is_at_its_table_index() {
        assert_eq!(APIS[4].key, ApiKey::ApiVersions);
    }

    #[test]
    fn every_advertised_range_is_decodable_by_the_codec() {
        for api in advertised() {
            let codec = codec_versions(api.key);
            let floor = if api.key == ApiKey::Produce { PRODUCE_VERSION_MIN_SERVED } else { api.min };
            assert!(
                codec.min <= floor && api.max <= codec.max,
                "{:?} {}..{} outside {codec}",
                api.key,
                api.min,
                api.max
            );
        }
    }

    fn codec_versions(key: ApiKey) -> kafka_protocol::protocol::VersionRange {
        match key {
            ApiKey::Produce => ProduceRequest::VERSIONS,
            ApiKey::Fetch => FetchRequest::VERSIONS,
            ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
            ApiKey::Metadata => MetadataRequest::VERSIONS,
            ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
            ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
            ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
            ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
            ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
            ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::VERSIONS,
            ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
            ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
            ApiKey::DescribeLogDirs => DescribeLogDirsRequest::VERSIONS,
            ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
            ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
            ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
            ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
            ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
            ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
            ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
            ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
            ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
            ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
            ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
            ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
            ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
            ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
            other => panic!("no codec range listed for {other:?}"),
        }
    }

    #[test]
    fn fallback_answer_is_a_v0_api_versions_response_with_unsupported_version() {
        let Reply::Frame(frame) = api_versions_fallback(9) else { panic!("expected a frame") };
        let mut body = frame.slice(8..);
        let response = ApiVersionsResponse::decode(&mut body, 0).expect("decodes as v0");
        assert_eq!(response.error_code, 35);
        assert!(response.api_keys.iter().any(|api| api.api_key == ApiKey::Produce as i16));
    }
}
