//! SaslAuthenticate (v0-v2): one message of the SASL exchange chosen by SaslHandshake. v1+
//! answers carry the session's lifetime (KIP-368). The rules are in `security::sasl`.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse};

use super::{code, message};
use crate::context::ShardContext;
use crate::dispatch::{ApiRange, Call, Outcome};
use crate::security::sasl;

/// The versions served.
pub(crate) const API: ApiRange = ApiRange { key: ApiKey::SaslAuthenticate, min: 0, max: 2 };

pub(crate) async fn handle(
    shard: Rc<ShardContext>,
    call: Call,
    request: SaslAuthenticateRequest,
) -> Outcome<SaslAuthenticateResponse> {
    let answer = sasl::authenticate(&shard, &call.session, &request.auth_bytes).await;
    let mut response = SaslAuthenticateResponse::default()
        .with_auth_bytes(Bytes::from(answer.auth_bytes))
        .with_session_lifetime_ms(answer.session_lifetime_ms);
    if let Some((error, text)) = answer.error {
        response = response.with_error_code(code(error)).with_error_message(message(text));
    }
    Outcome::Respond(response)
}
