//! SASL/OAUTHBEARER (RFC 7628) with JWT bearer tokens, as Kafka's `OAuthBearerSaslServer` and
//! its JWKS validator serve it.
//!
//! 1. The client's one message is `n,[a=authzid],\x01auth=Bearer <jwt>\x01[key=value\x01...]\x01`.
//! 2. The token is checked: its header names RS256 or ES256 and a key of the configured JWKS
//!    (`--sasl-oauthbearer-jwks-file`; by `kid`, or the only key of that algorithm), its
//!    signature verifies, `exp` is in the future (30 s of clock skew allowed, Kafka's
//!    `sasl.oauthbearer.clock.skew.seconds`), and `aud` and `iss` match when expected
//!    (`--sasl-oauthbearer-expected-audience`, `--sasl-oauthbearer-expected-issuer`). The principal
//!    is `User:<sub>` (the claim named by `--sasl-oauthbearer-sub-claim-name`); the session lasts
//!    no longer than the token.
//! 3. A bad token is answered, as RFC 7628 says, with the error JSON
//!    `{"status":"invalid_token"}` as a challenge; the client answers `\x01`, and authentication
//!    fails with that JSON as the message.
//!
//! Tokens are never logged; why one was refused is logged at debug level without it.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::AlgorithmParameters;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::sasl::OAuthBearerConfig;

/// Kafka's default clock skew allowance.
const CLOCK_SKEW_SECONDS: i64 = 30;

/// RFC 7628's answer to a token that does not validate.
pub(crate) const INVALID_TOKEN: &str = r#"{"status":"invalid_token"}"#;

/// A client's initial response: the authorization id and the token.
#[derive(PartialEq, Eq)]
pub(crate) struct InitialResponse<'a> {
    pub(crate) authzid: &'a str,
    pub(crate) token: &'a str,
}

/// Parses RFC 7628's client initial response; `None` for anything else.
pub(crate) fn parse_initial_response(message: &[u8]) -> Option<InitialResponse<'_>> {
    let text = std::str::from_utf8(message).ok()?;
    let rest = text.strip_prefix("n,")?;
    let (authzid, rest) = rest.split_once(',')?;
    let authzid = if authzid.is_empty() { "" } else { authzid.strip_prefix("a=")? };
    let pairs = rest.strip_prefix('\x01')?.strip_suffix("\x01\x01")?;
    let mut token = None;
    for pair in pairs.split('\x01') {
        let (key, value) = pair.split_once('=')?;
        if key == "auth" {
            let (scheme, credential) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
                return None;
            }
            token = Some(credential.trim());
        }
    }
    Some(InitialResponse { authzid, token: token? })
}

/// A valid token's principal name and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Validated {
    pub(crate) principal: String,
    pub(crate) expires_unix_ms: i64,
}

/// Validates `token` at `now_unix_ms` (step 2 of the module docs); `Err` is why, for the log.
pub(crate) fn validate(config: &OAuthBearerConfig, token: &str, now_unix_ms: i64) -> Result<Validated, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|error| format!("bad JWT header: {error}"))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(format!("algorithm {:?} is not RS256 or ES256", header.alg));
    }
    let jwk = if let Some(kid) = &header.kid {
        config.keys.find(kid)
    } else {
        let mut fitting = config.keys.keys.iter().filter(|jwk| {
            matches!(
                (&jwk.algorithm, header.alg),
                (AlgorithmParameters::RSA(_), Algorithm::RS256)
                    | (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
            )
        });
        match (fitting.next(), fitting.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
    .ok_or_else(|| "no key of the JWKS matches the token".to_owned())?;
    let key = DecodingKey::from_jwk(jwk).map_err(|error| format!("unusable JWK: {error}"))?;
    let mut validation = Validation::new(header.alg);
    // Expiry is checked below against the broker's clock; presence of the claims here.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    match &config.expected_audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    if let Some(issuer) = &config.expected_issuer {
        validation.set_issuer(&[issuer]);
    }
    let claims = jsonwebtoken::decode::<BTreeMap<String, serde_json::Value>>(token, &key, &validation)
        .map_err(|error| format!("the token does not validate: {error}"))?
        .claims;
    let expires = claims.get("exp").and_then(serde_json::Value::as_i64).ok_or("the token has no exp")?;
    if expires.saturating_add(CLOCK_SKEW_SECONDS).saturating_mul(1000) <= now_unix_ms {
        return Err("the token has expired".to_owned());
    }
    let principal = claims
        .get(&config.sub_claim)
        .and_then(serde_json::Value::as_str)
        .filter(|principal| !principal.is_empty())
        .ok_or_else(|| format!("the token has no {} claim", config.sub_claim))?;
    Ok(Validated { principal: principal.to_owned(), expires_unix_ms: expires.saturating_mul(1000) })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    use super::*;
    use jsonwebtoken::jwk::JwkSet;

    /// A fresh ES256 key: its JWKS and a signer of tokens with `claims`.
    fn key() -> (JwkSet, impl Fn(serde_json::Value) -> String) {
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random).expect("key");
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let keys: JwkSet = serde_json::from_value(jwks).expect("a JWKS");
        let der = pkcs8.as_ref().to_vec();
        let sign = move |claims: serde_json::Value| {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("k1".to_owned());
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&der)).expect("signs")
        };
        (keys, sign)
    }

    fn config(keys: JwkSet) -> OAuthBearerConfig {
        OAuthBearerConfig {
            keys,
            expected_audience: Some("kafka".to_owned()),
            expected_issuer: None,
            sub_claim: "sub".to_owned(),
        }
    }

    const NOW_MS: i64 = 1_800_000_000_000;

    #[test]
    fn a_signed_token_validates_and_names_its_subject() {
        let (keys, sign) = key();
        let token = sign(serde_json::json!({"sub": "alice", "aud": "kafka", "exp": NOW_MS / 1000 + 60}));
        let validated = validate(&config(keys), &token, NOW_MS).expect("valid");
        assert_eq!(validated, Validated { principal: "alice".to_owned(), expires_unix_ms: NOW_MS + 60_000 });
    }

    #[test]
    fn expired_foreign_or_misaddressed_tokens_are_refused() {
        let (keys, sign) = key();
        let expired = sign(serde_json::json!({"sub": "alice", "aud": "kafka", "exp": NOW_MS / 1000 - 31}));
        assert!(validate(&config(keys.clone()), &expired, NOW_MS).is_err());
        let other_audience = sign(serde_json::json!({"sub": "alice", "aud": "web", "exp": NOW_MS / 1000 + 60}));
        assert!(validate(&config(keys.clone()), &other_audience, NOW_MS).is_err());
        let no_subject = sign(serde_json::json!({"aud": "kafka", "exp": NOW_MS / 1000 + 60}));
        assert!(validate(&config(keys.clone()), &no_subject, NOW_MS).is_err());
        let (other_keys, _) = key();
        let good = sign(serde_json::json!({"sub": "alice", "aud": "kafka", "exp": NOW_MS / 1000 + 60}));
        assert!(validate(&config(other_keys), &good, NOW_MS).is_err(), "signed by a key not in the JWKS");
        let mut tampered = good.clone();
        tampered.insert(tampered.find('.').expect("dots") + 2, 'x');
        assert!(validate(&config(keys), &tampered, NOW_MS).is_err());
    }

    #[test]
    fn initial_responses_parse_as_rfc_7628_writes_them() {
        let parsed = parse_initial_response(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").expect("parses");
        assert_eq!((parsed.authzid, parsed.token), ("", "abc.def.ghi"));
        let with_extension = parse_initial_response(b"n,a=alice,\x01host=x\x01auth=Bearer t\x01\x01").expect("parses");
        assert_eq!((with_extension.authzid, with_extension.token), ("alice", "t"));
        assert!(parse_initial_response(b"n,,\x01auth=Basic abc\x01\x01").is_none());
        assert!(parse_initial_response(b"n,,\x01host=x\x01\x01").is_none());
        assert!(parse_initial_response(b"\x01").is_none());
    }
}
