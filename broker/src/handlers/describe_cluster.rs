//! DescribeCluster (v0-v1): this broker as the whole cluster and its controller.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{AUTHORIZED_OPERATIONS_OMITTED, code, message, str_bytes};
use crate::context::ShardContext;
use crate::dispatch::Outcome;

/// `endpoint_type` asking for brokers (2 asks for controllers, which clients reach only in KRaft
/// controller mode).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    _version: i16,
    request: DescribeClusterRequest,
) -> Outcome<DescribeClusterResponse> {
    let identity = &shard.shared.identity;
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        let response = DescribeClusterResponse::default()
            .with_error_code(code(ResponseError::MismatchedEndpointType))
            .with_error_message(message("this node serves brokers only"));
        return Outcome::Respond(response);
    }
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(identity.node_id))
        .with_host(str_bytes(&identity.host))
        .with_port(identity.port);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&identity.cluster_id))
        .with_controller_id(BrokerId(identity.node_id))
        .with_brokers(vec![broker])
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    Outcome::Respond(response)
}
