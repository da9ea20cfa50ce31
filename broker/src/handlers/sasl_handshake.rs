//! SaslHandshake (v1): the client names its SASL mechanism; the answer lists the enabled ones.
//! Version 0 (raw SASL tokens after the handshake, before SaslAuthenticate existed) is not
//! served: every client since Kafka 1.0 sends v1. The rules are in `security::sasl`.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, SaslHandshakeRequest, SaslHandshakeResponse};

use super::{code, str_bytes};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::sasl;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::SaslHandshake, min: 1, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: SaslHandshakeRequest,
) -> Outcome<SaslHandshakeResponse> {
    let answer = sasl::handshake(&shard, &call.session, request.mechanism.as_str()).await;
    let response = SaslHandshakeResponse::default()
        .with_error_code(answer.error.map_or(0, code))
        .with_mechanisms(answer.mechanisms.into_iter().map(str_bytes).collect());
    Outcome::Respond(response)
}
