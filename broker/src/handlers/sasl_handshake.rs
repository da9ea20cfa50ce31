//! SaslHandshake (v1): the client names its SASL mechanism; the answer lists the enabled ones.
//! The rules are in `security::sasl`.
//!
//! Versions 0-1 are advertised, as Kafka 4 does: librdkafka before 2.x only believes a broker
//! speaks SASL when its SaslHandshake range includes v0, even though it then sends v1 and
//! SaslAuthenticate. Version 0 itself (raw SASL tokens after the handshake, from before
//! SaslAuthenticate existed) is refused with UNSUPPORTED_VERSION and the enabled mechanisms:
//! every client since Kafka 1.0 sends v1.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, SaslHandshakeRequest, SaslHandshakeResponse};

use super::{code, str_bytes};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::sasl;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::SaslHandshake, min: 0, max: 1 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: SaslHandshakeRequest,
) -> Outcome<SaslHandshakeResponse> {
    if call.version == 0 {
        let enabled = shard.config().sasl.enabled_mechanisms.iter().map(|mechanism| str_bytes(mechanism.name()));
        return Outcome::Respond(
            SaslHandshakeResponse::default()
                .with_error_code(code(kafka_protocol::ResponseError::UnsupportedVersion))
                .with_mechanisms(enabled.collect()),
        );
    }
    let answer = sasl::handshake(&shard, &call.session, request.mechanism.as_str()).await;
    let response = SaslHandshakeResponse::default()
        .with_error_code(answer.error.map_or(0, code))
        .with_mechanisms(answer.mechanisms.into_iter().map(str_bytes).collect());
    Outcome::Respond(response)
}
