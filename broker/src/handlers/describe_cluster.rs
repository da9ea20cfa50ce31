//! DescribeCluster (v0-v1): the live brokers of the metadata image, and the controller.

use std::rc::Rc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{AUTHORIZED_OPERATIONS_OMITTED, code, message, str_bytes};
use kafka_protocol::messages::ApiKey;

use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};

/// `endpoint_type` asking for brokers (2 asks for controllers, which clients reach only in KRaft
/// controller mode).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::DescribeCluster, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: DescribeClusterRequest,
) -> Outcome<DescribeClusterResponse> {
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        let response = DescribeClusterResponse::default()
            .with_error_code(code(ResponseError::MismatchedEndpointType))
            .with_error_message(message("this node serves brokers only"));
        return Outcome::Respond(response);
    }
    let image = shard.image();
    // Endpoints on the listener this request came in on, as in Metadata.
    let brokers = image
        .live_brokers()
        .filter_map(|broker| {
            let (host, port) = broker.endpoint(&call.session.listener)?;
            let answer = DescribeClusterBroker::default()
                .with_broker_id(BrokerId(broker.node_id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(broker.rack.as_deref().map(str_bytes));
            Some(answer)
        })
        .collect();
    let response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&image.cluster_id))
        .with_controller_id(BrokerId(shard.shared.metadata.controller_id(&image)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            crate::security::checks::cluster_operations(&crate::security::authorizer::Checker::new(&shard, &call))
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        });
    Outcome::Respond(response)
}
