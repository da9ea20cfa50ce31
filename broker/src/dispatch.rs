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
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterConfigsRequest, AlterPartitionReassignmentsRequest, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest,
    DescribeProducersRequest, DescribeQuorumRequest, DescribeTopicPartitionsRequest, DescribeTransactionsRequest,
    ElectLeadersRequest, EndTxnRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, ListPartitionReassignmentsRequest, ListTransactionsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest,
    RequestHeader, SyncGroupRequest, TxnOffsetCommitRequest, UnregisterBrokerRequest, WriteTxnMarkersRequest,
};
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::context::ShardContext;
use crate::handlers;
use crate::handlers::fetch::FetchAnswer;
use crate::net::framing::{HeaderPrefix, encode_response};
use crate::net::send::Chunk;
use crate::security::Session;

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

/// What a handler knows of the request besides its body.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The request's version.
    pub(crate) version: i16,
    /// The client id from the request header (empty when null).
    pub(crate) client_id: Rc<str>,
    /// The client's address.
    pub(crate) peer: Option<SocketAddr>,
    /// The connection's security state: listener, protocol, principal.
    pub(crate) session: Rc<Session>,
    /// The request's time under `request_percentage`, when that quota applies to the client.
    pub(crate) request_time: Option<Rc<crate::quota::RequestTime>>,
}

/// The registry: one line per API, naming its request type and its handler module. Each
/// handler module declares its `API` (key and versions served) and an
/// `async fn handle(shard, call, request) -> Outcome<response>`; everything that dispatches,
/// advertises, fuzzes or tests per API is generated from this list. Adding an API is one new
/// module under `handlers/` and one line here (see docs/design.md, "Adding a Kafka API").
macro_rules! registry {
    ($($request:ident => $module:ident),* $(,)?) => {
        /// Every API served, with its versions: advertised in ApiVersions in this order.
        pub(crate) const APIS: &[ApiRange] = &[$(handlers::$module::API),*];

        /// Decodes, runs and encodes one request of a registered API.
        fn route(shard: Rc<ShardContext>, key: ApiKey, call: Call, correlation_id: i32, body: Bytes) -> LocalBoxFuture<'static, Reply> {
            match key as i16 {
                $(code if code == <$request as Request>::KEY => run::<$request, _, _, _>(shard, call, correlation_id, body, handlers::$module::handle),)*
                _ => Box::pin(std::future::ready(Reply::Close(format!("{key:?} is advertised but has no handler")))),
            }
        }

        /// Decodes a registered API's request body with the decoder its handler gets.
        fn decode_registered(key: ApiKey, body: Bytes, version: i16) -> Result<(), String> {
            match key as i16 {
                $(code if code == <$request as Request>::KEY => decode_body::<$request>(body, version),)*
                _ => Err(format!("{key:?} is advertised but has no handler")),
            }
        }

        /// The versions the codec decodes for a registered API, and the key its request type
        /// carries (the registry's tests check both against each handler's `API`).
        #[cfg(test)]
        fn codec_versions(key: ApiKey) -> Option<(i16, kafka_protocol::protocol::VersionRange)> {
            match key as i16 {
                $(code if code == <$request as Request>::KEY => Some((<$request as Request>::KEY, <$request as kafka_protocol::protocol::Message>::VERSIONS)),)*
                _ => None,
            }
        }
    };
}

registry! {
    ProduceRequest => produce,
    FetchRequest => fetch,
    ListOffsetsRequest => list_offsets,
    MetadataRequest => metadata,
    ApiVersionsRequest => api_versions,
    CreateTopicsRequest => create_topics,
    DeleteTopicsRequest => delete_topics,
    DeleteRecordsRequest => delete_records,
    InitProducerIdRequest => init_producer_id,
    OffsetForLeaderEpochRequest => offset_for_leader_epoch,
    DescribeConfigsRequest => describe_configs,
    AlterConfigsRequest => alter_configs,
    AlterClientQuotasRequest => alter_client_quotas,
    DescribeClientQuotasRequest => describe_client_quotas,
    DescribeAclsRequest => describe_acls,
    CreateAclsRequest => create_acls,
    DeleteAclsRequest => delete_acls,
    DescribeLogDirsRequest => describe_log_dirs,
    CreatePartitionsRequest => create_partitions,
    IncrementalAlterConfigsRequest => incremental_alter_configs,
    DescribeClusterRequest => describe_cluster,
    DescribeQuorumRequest => describe_quorum,
    ElectLeadersRequest => elect_leaders,
    AlterPartitionReassignmentsRequest => alter_partition_reassignments,
    ListPartitionReassignmentsRequest => list_partition_reassignments,
    DescribeTopicPartitionsRequest => describe_topic_partitions,
    UnregisterBrokerRequest => unregister_broker,
    OffsetCommitRequest => offset_commit,
    OffsetFetchRequest => offset_fetch,
    FindCoordinatorRequest => find_coordinator,
    JoinGroupRequest => join_group,
    HeartbeatRequest => heartbeat,
    LeaveGroupRequest => leave_group,
    SyncGroupRequest => sync_group,
    DescribeGroupsRequest => describe_groups,
    ListGroupsRequest => list_groups,
    DeleteGroupsRequest => delete_groups,
    OffsetDeleteRequest => offset_delete,
    ConsumerGroupHeartbeatRequest => consumer_group_heartbeat,
    ConsumerGroupDescribeRequest => consumer_group_describe,
    AddPartitionsToTxnRequest => add_partitions_to_txn,
    AddOffsetsToTxnRequest => add_offsets_to_txn,
    EndTxnRequest => end_txn,
    WriteTxnMarkersRequest => write_txn_markers,
    TxnOffsetCommitRequest => txn_offset_commit,
    DescribeProducersRequest => describe_producers,
    DescribeTransactionsRequest => describe_transactions,
    ListTransactionsRequest => list_transactions,
    SaslHandshakeRequest => sasl_handshake,
    SaslAuthenticateRequest => sasl_authenticate,
    DescribeUserScramCredentialsRequest => describe_user_scram_credentials,
    AlterUserScramCredentialsRequest => alter_user_scram_credentials,
}

/// Produce versions below this carry message format v0/v1, which the engine does not store.
/// Kafka advertises Produce from v0, and older librdkafka releases refuse a broker whose
/// Produce minimum is above 0, so v0-v2 are advertised and refused when they arrive.
const PRODUCE_VERSION_MIN_SERVED: i16 = 3;

/// Every API advertised in ApiVersions.
pub(crate) fn advertised() -> impl Iterator<Item = &'static ApiRange> {
    APIS.iter()
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
pub(crate) fn dispatch(
    shard: Rc<ShardContext>,
    prefix: HeaderPrefix,
    frame: Bytes,
    session: Rc<Session>,
) -> LocalBoxFuture<'static, Reply> {
    let version = prefix.api_version;
    let api_versions_max = supported(ApiKey::ApiVersions).map_or(0, |api| api.max);
    if prefix.api_key == ApiKey::ApiVersions as i16 && version > api_versions_max {
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
    let client_id: Rc<str> = header.client_id.as_ref().map_or_else(|| Rc::from(""), |id| Rc::from(id.as_str()));
    let (guard_shard, guard_session) = (shard.clone(), session.clone());
    let request_time = crate::quota::RequestTime::of(&shard, &session, key, &client_id);
    let call = Call { version: header.request_api_version, client_id, peer: Some(session.peer), session, request_time };
    let reply = crate::quota::timed(call.request_time.clone(), route(shard, key, call, header.correlation_id, body));
    crate::security::sasl::guard(&guard_shard, &guard_session, key, reply)
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
    let decoded = decode_registered(key, body, version);
    decoded.map(|()| key)
}

fn decode_body<R: Request>(mut body: Bytes, version: i16) -> Result<(), String> {
    R::decode(&mut body, version).map(drop).map_err(|error| error.to_string())
}

/// Decodes, runs and encodes one request of type `R`; the handler answers with `T`, the
/// codec's response type except for Fetch.
fn run<R, F, Fut, T>(
    shard: Rc<ShardContext>,
    call: Call,
    correlation_id: i32,
    mut body: Bytes,
    handler: F,
) -> LocalBoxFuture<'static, Reply>
where
    R: Request + 'static,
    F: FnOnce(Rc<ShardContext>, Call, R) -> Fut + 'static,
    Fut: Future<Output = Outcome<T>> + 'static,
    T: Respond + crate::quota::ThrottleTime,
{
    Box::pin(async move {
        let version = call.version;
        let request_time = call.request_time.clone();
        let request = match guarded_decode(|| R::decode(&mut body, version)) {
            Ok(request) => request,
            Err(reason) => return Reply::Close(format!("bad request body (api {}): {reason}", R::KEY)),
        };
        match crate::crash::abort_on_panic("request handler", handler(shard, call, request)).await {
            Outcome::Respond(response) => match crate::quota::with_request_throttle(request_time.as_deref(), response)
                .reply(correlation_id, version)
            {
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
    use kafka_protocol::messages::api_versions_response::FinalizedFeatureKey;
    let api_keys = advertised()
        .map(|api| {
            ApiVersion::default().with_api_key(api.key as i16).with_min_version(api.min).with_max_version(api.max)
        })
        .collect();
    // The finalized `transaction.version` (ApiVersions v3+ tagged fields) tells clients which
    // transaction protocol to speak: Kafka 4.x clusters finalize 2 (KIP-890 part 2). Kafka lists
    // no supported feature whose minimum is 0 to ApiVersions v3, so none is listed here.
    let transaction_version = crate::transactions::TxnConfig::global().transaction_version;
    let finalized = vec![
        FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE))
            .with_min_version_level(transaction_version)
            .with_max_version_level(transaction_version),
    ];
    ApiVersionsResponse::default()
        .with_api_keys(api_keys)
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(finalized)
}

/// Kafka's feature name for the transaction protocol version.
const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The epoch of the finalized features: fixed, since they change only with a restart (clients
/// take features only from an epoch above -1).
const FINALIZED_FEATURES_EPOCH: i64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_decodable_by_the_codec_of_its_request_type() {
        for api in advertised() {
            let (request_key, codec) = codec_versions(api.key).expect("every advertised API is registered");
            assert_eq!(request_key, api.key as i16, "{:?}: the handler's API names its request type's key", api.key);
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

    #[test]
    fn every_api_is_registered_once() {
        let mut keys: Vec<i16> = advertised().map(|api| api.key as i16).collect();
        keys.sort_unstable();
        let count = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), count, "an API is listed twice");
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
