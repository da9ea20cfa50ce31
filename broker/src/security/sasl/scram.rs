//! SCRAM (RFC 5802, RFC 7677) as Kafka serves it: the credential derivation, the messages'
//! parsers, and the server's side of one exchange.
//!
//! The exchange, server side:
//! 1. client-first `n,[a=authzid],n=<saslname>,r=<client nonce>[,ext=value...]`: the user's
//!    stored credential is looked up (none: fail); the answer is server-first
//!    `r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>`;
//! 2. client-final `c=<base64 gs2 header>,r=<both nonces>[,ext...],p=<base64 proof>`: the nonce
//!    must be the one just sent, the channel binding the gs2 header of step 1, and
//!    `H(ClientSignature XOR proof)` must equal the stored key (compared in constant time), where
//!    `ClientSignature = HMAC(StoredKey, AuthMessage)` and
//!    `AuthMessage = client-first-bare "," server-first "," client-final-without-proof`;
//! 3. the answer is server-final `v=<base64 HMAC(ServerKey, AuthMessage)>`.
//!
//! Nothing here logs: proofs, salted passwords and keys never leave these functions except as
//! the protocol sends them. Pure functions and one value per exchange, owned by the connection's
//! SASL state on the connection's shard.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// A SCRAM mechanism, with Kafka's type byte (`ScramMechanism.type()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256, type 1.
    Sha256,
    /// SCRAM-SHA-512, type 2.
    Sha512,
}

/// Kafka's fewest iterations for both mechanisms.
pub(crate) const ITERATIONS_MIN: i32 = 4096;
/// Kafka's most iterations (`ScramControlManager.MAX_ITERATIONS`).
pub(crate) const ITERATIONS_MAX: i32 = 16_384;

impl ScramMechanism {
    /// The mechanism of Kafka's type byte.
    pub(crate) fn from_type(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Kafka's type byte.
    pub(crate) fn type_code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with this mechanism's HMAC.
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let rounds = u32::try_from(iterations.max(1)).expect("positive");
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, rounds).to_vec(),
            Self::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, rounds).to_vec(),
        }
    }

    /// The stored credential of a salted password.
    pub(crate) fn credential(self, salt: Vec<u8>, salted_password: &[u8], iterations: i32) -> ScramCredential {
        let client_key = self.hmac(salted_password, &[b"Client Key"]);
        ScramCredential {
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, &[b"Server Key"]),
            salt,
            iterations,
        }
    }

    /// The stored credential of a password with a new random salt.
    #[cfg(test)]
    pub(crate) fn credential_from_password(self, password: &str, iterations: i32) -> ScramCredential {
        let salt = super::random_token(24).into_bytes();
        let salted = self.salted_password(password.as_bytes(), &salt, iterations);
        self.credential(salt, &salted, iterations)
    }
}

/// What the broker keeps of a SCRAM password: never the password itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScramCredential {
    pub(crate) salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub(crate) stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub(crate) server_key: Vec<u8>,
    pub(crate) iterations: i32,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ScramCredential").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Whether `password` is the password of this credential (PLAIN against SCRAM
    /// credentials): derived with the stored salt and iterations, compared in constant time.
    pub(crate) fn matches_password(&self, mechanism: ScramMechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let derived = mechanism.credential(Vec::new(), &salted, self.iterations);
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }
}

/// Why an exchange failed, as Kafka tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScramFailure {
    /// Kafka's generic answer ("... due to invalid credentials with SASL mechanism ..."): bad
    /// format, unknown user, wrong proof. Says nothing about which.
    InvalidCredentials,
    /// A failure whose message Kafka sends as is.
    Message(&'static str),
}

/// The state of one server-side exchange.
#[derive(Debug)]
pub(crate) enum ScramServer {
    /// Waiting for client-first.
    First,
    /// Server-first sent; waiting for client-final.
    Final(Box<Pending>),
}

/// What step 2 needs from step 1.
pub(crate) struct Pending {
    user: String,
    gs2_header: String,
    /// client-first-bare "," server-first.
    auth_prefix: String,
    nonce: String,
    credential: ScramCredential,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Pending").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFirst<'a> {
    /// `n,[a=...],`: repeated in the channel binding of client-final.
    pub(crate) gs2_header: &'a str,
    /// The authorization id, empty when none.
    pub(crate) authzid: &'a str,
    /// The user name, `=2C` and `=3D` unescaped.
    pub(crate) user: String,
    pub(crate) nonce: &'a str,
    /// Everything after the gs2 header, part of the AuthMessage.
    pub(crate) bare: &'a str,
}

/// Parses client-first; `None` for anything Kafka's pattern would not match.
pub(crate) fn parse_client_first(message: &[u8]) -> Option<ClientFirst<'_>> {
    let text = std::str::from_utf8(message).ok()?;
    let rest = text.strip_prefix("n,")?;
    let (authzid, bare) = rest.split_once(',')?;
    let authzid = match authzid {
        "" => "",
        other => {
            let name = other.strip_prefix("a=")?;
            unescape_name(name)?;
            name
        }
    };
    let gs2_header = &text[..text.len() - bare.len()];
    let mut fields = bare.split(',');
    let mut field = fields.next()?;
    if field.starts_with("m=") {
        field = fields.next()?;
    }
    let user = unescape_name(field.strip_prefix("n=")?)?;
    let nonce = fields.next()?.strip_prefix("r=")?;
    if nonce.is_empty() || !nonce.bytes().all(|byte| (0x21..=0x7e).contains(&byte) && byte != b',') {
        return None;
    }
    if !fields.all(is_extension) {
        return None;
    }
    Some(ClientFirst { gs2_header, authzid, user, nonce, bare })
}

/// An extension `name=value`: an alphabetic name, a non-empty value of 7-bit characters.
fn is_extension(field: &str) -> bool {
    field.split_once('=').is_some_and(|(name, value)| {
        !name.is_empty()
            && name.bytes().all(|byte| byte.is_ascii_alphabetic())
            && !value.is_empty()
            && value.bytes().all(|byte| (0x01..=0x7f).contains(&byte))
    })
}

/// A saslname with `=2C` and `=3D` turned back into `,` and `=`; `None` for an empty name or
/// any other `=` (Kafka's `ScramFormatter.username`).
pub(crate) fn unescape_name(name: &str) -> Option<String> {
    if name.is_empty() || !name.bytes().all(|byte| (0x01..=0x7f).contains(&byte) || byte >= 0x80) {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(position) = rest.find('=') {
        out.push_str(&rest[..position]);
        let escape = rest.get(position..position + 3)?;
        match escape {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[position + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A user name escaped as a saslname.
pub(crate) fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// A parsed client-final message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFinal<'a> {
    pub(crate) channel_binding: Vec<u8>,
    pub(crate) nonce: &'a str,
    pub(crate) proof: Vec<u8>,
    /// Everything before `,p=`, part of the AuthMessage.
    pub(crate) without_proof: &'a str,
}

/// Parses client-final; `None` for anything Kafka's pattern would not match.
pub(crate) fn parse_client_final(message: &[u8]) -> Option<ClientFinal<'_>> {
    let text = std::str::from_utf8(message).ok()?;
    let proof_at = text.rfind(",p=")?;
    let (without_proof, proof) = (&text[..proof_at], &text[proof_at + 3..]);
    let mut fields = without_proof.split(',');
    let channel_binding = BASE64.decode(fields.next()?.strip_prefix("c=")?).ok()?;
    let nonce = fields.next()?.strip_prefix("r=")?;
    if !fields.all(is_extension) {
        return None;
    }
    let proof = BASE64.decode(proof).ok()?;
    Some(ClientFinal { channel_binding, nonce, proof, without_proof })
}

impl ScramServer {
    /// Step 1: answers client-first with server-first. `lookup` finds the user's credential.
    ///
    /// # Errors
    /// [`ScramFailure`] for a malformed message, an unknown user, an authorization id other
    /// than the user, or a credential with too few iterations.
    pub(crate) fn first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramFailure> {
        let Self::First = self else { return Err(ScramFailure::InvalidCredentials) };
        let first = parse_client_first(message).ok_or(ScramFailure::InvalidCredentials)?;
        let credential = lookup(&first.user).ok_or(ScramFailure::InvalidCredentials)?;
        if !first.authzid.is_empty() && first.authzid != first.user {
            return Err(ScramFailure::Message(
                "Authentication failed: Client requested an authorization id that is different from username",
            ));
        }
        if credential.iterations < ITERATIONS_MIN {
            return Err(ScramFailure::InvalidCredentials);
        }
        let nonce = format!("{}{}", first.nonce, super::random_token(24));
        let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let auth_prefix = format!("{},{server_first}", first.bare);
        *self = Self::Final(Box::new(Pending {
            user: first.user.clone(),
            gs2_header: first.gs2_header.to_owned(),
            auth_prefix,
            nonce,
            credential,
        }));
        Ok(server_first.into_bytes())
    }

    /// Step 2: checks client-final; returns server-final and the authenticated user.
    ///
    /// # Errors
    /// [`ScramFailure::InvalidCredentials`] for a malformed message, a wrong nonce or channel
    /// binding, or a wrong proof.
    pub(crate) fn finish(
        &mut self,
        mechanism: ScramMechanism,
        message: &[u8],
    ) -> Result<(Vec<u8>, String), ScramFailure> {
        let Self::Final(pending) = std::mem::replace(self, Self::First) else {
            return Err(ScramFailure::InvalidCredentials);
        };
        let last = parse_client_final(message).ok_or(ScramFailure::InvalidCredentials)?;
        if last.nonce != pending.nonce || last.channel_binding != pending.gs2_header.as_bytes() {
            return Err(ScramFailure::InvalidCredentials);
        }
        let auth_message = format!("{},{}", pending.auth_prefix, last.without_proof);
        let credential = &pending.credential;
        let client_signature = mechanism.hmac(&credential.stored_key, &[auth_message.as_bytes()]);
        if last.proof.len() != client_signature.len() {
            return Err(ScramFailure::InvalidCredentials);
        }
        let client_key: Vec<u8> = client_signature.iter().zip(&last.proof).map(|(left, right)| left ^ right).collect();
        let computed = mechanism.hash(&client_key);
        if !bool::from(computed.ct_eq(&credential.stored_key)) {
            return Err(ScramFailure::InvalidCredentials);
        }
        let signature = mechanism.hmac(&credential.server_key, &[auth_message.as_bytes()]);
        Ok((format!("v={}", BASE64.encode(signature)).into_bytes(), pending.user.clone()))
    }
}

/// The client's side of an exchange, for inter-broker connections, tests, and `sluicectl`
/// (re-exported at the crate root, so the workspace has one SCRAM client).
#[derive(Debug)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    expected_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange for `user`; returns the client and client-first.
    pub fn start(mechanism: ScramMechanism, user: &str, password: &str) -> (Self, Vec<u8>) {
        let nonce = super::random_token(24);
        let client_first_bare = format!("n={},r={nonce}", escape_name(user));
        let message = format!("n,,{client_first_bare}").into_bytes();
        let client =
            Self { mechanism, password: password.to_owned(), client_first_bare, nonce, expected_signature: None };
        (client, message)
    }

    /// Answers server-first with client-final; `None` when server-first is malformed or its
    /// nonce does not extend ours.
    pub fn answer(&mut self, server_first: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(server_first).ok()?;
        let mut fields = text.split(',');
        let nonce = fields.next()?.strip_prefix("r=")?;
        let salt = BASE64.decode(fields.next()?.strip_prefix("s=")?).ok()?;
        let iterations: i32 = fields.next()?.strip_prefix("i=")?.parse().ok()?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() || iterations < 1 {
            return None;
        }
        let salted = self.mechanism.salted_password(self.password.as_bytes(), &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_key = self.mechanism.hmac(&salted, &[b"Client Key"]);
        let stored_key = self.mechanism.hash(&client_key);
        let signature = self.mechanism.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(left, right)| left ^ right).collect();
        let server_key = self.mechanism.hmac(&salted, &[b"Server Key"]);
        self.expected_signature = Some(self.mechanism.hmac(&server_key, &[auth_message.as_bytes()]));
        Some(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Whether server-final proves the server knew the credential.
    pub fn verify(&self, server_final: &[u8]) -> bool {
        let Some(expected) = &self.expected_signature else { return false };
        let signature = std::str::from_utf8(server_final)
            .ok()
            .and_then(|text| text.strip_prefix("v="))
            .and_then(|text| BASE64.decode(text).ok());
        signature.is_some_and(|signature| bool::from(signature.ct_eq(expected)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil", 4096 iterations.
    #[test]
    fn rfc_7677_test_vector_authenticates_and_signs() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
        let salted = ScramMechanism::Sha256.salted_password(b"pencil", &salt, 4096);
        let credential = ScramMechanism::Sha256.credential(salt, &salted, 4096);
        let mut server = ScramServer::First;
        let first = server
            .first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |user| (user == "user").then(|| credential.clone()))
            .expect("first");
        // The server nonce is random; the vector's is substituted to check the arithmetic.
        let ScramServer::Final(pending) = &mut server else { panic!("waiting for client-final") };
        pending.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned();
        pending.auth_prefix =
            "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .to_owned();
        assert!(String::from_utf8(first).expect("utf-8").ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (server_final, user) =
            server.finish(ScramMechanism::Sha256, client_final).expect("the vector's proof is valid");
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(user, "user");
    }

    fn round_trip(mechanism: ScramMechanism, password_given: &str) -> Result<String, ScramFailure> {
        let credential = mechanism.credential_from_password("s3cret", 4096);
        let (mut client, client_first) = ScramClient::start(mechanism, "al,i=ce", password_given);
        let mut server = ScramServer::First;
        let server_first = server.first(&client_first, |user| (user == "al,i=ce").then(|| credential.clone()))?;
        let client_final = client.answer(&server_first).expect("server-first is well formed");
        let (server_final, user) = server.finish(mechanism, &client_final)?;
        assert!(client.verify(&server_final), "the server proves it holds the credential");
        Ok(user)
    }

    #[test]
    fn sha512_round_trip_with_an_escaped_name() {
        assert_eq!(round_trip(ScramMechanism::Sha512, "s3cret"), Ok("al,i=ce".to_owned()));
        assert_eq!(round_trip(ScramMechanism::Sha256, "s3cret"), Ok("al,i=ce".to_owned()));
    }

    #[test]
    fn wrong_password_fails_with_the_generic_answer() {
        assert_eq!(round_trip(ScramMechanism::Sha512, "guess"), Err(ScramFailure::InvalidCredentials));
    }

    #[test]
    fn unknown_user_and_other_authzid_fail() {
        let mut server = ScramServer::First;
        let unknown = server.first(b"n,,n=bob,r=abc", |_| None);
        assert_eq!(unknown, Err(ScramFailure::InvalidCredentials));
        let credential = ScramMechanism::Sha256.credential_from_password("x", 4096);
        let mut server = ScramServer::First;
        let other = server.first(b"n,a=root,n=bob,r=abc", |_| Some(credential.clone()));
        assert!(matches!(other, Err(ScramFailure::Message(_))));
    }

    #[test]
    fn a_replayed_nonce_or_binding_is_refused() {
        let mechanism = ScramMechanism::Sha256;
        let credential = mechanism.credential_from_password("pw", 4096);
        let (mut client, client_first) = ScramClient::start(mechanism, "u", "pw");
        let mut server = ScramServer::First;
        let server_first = server.first(&client_first, |_| Some(credential.clone())).expect("first");
        let client_final = String::from_utf8(client.answer(&server_first).expect("final")).expect("utf-8");
        let tampered = client_final.replacen("c=biws", "c=eSws", 1);
        assert_eq!(server.finish(mechanism, tampered.as_bytes()), Err(ScramFailure::InvalidCredentials));
    }

    #[test]
    fn saslnames_unescape_as_kafka_does() {
        assert_eq!(unescape_name("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(unescape_name("a=b"), None);
        assert_eq!(unescape_name(""), None);
        assert_eq!(escape_name("a,b=c"), "a=2Cb=3Dc");
        assert!(parse_client_first(b"y,,n=u,r=x").is_none(), "channel binding flags other than n are refused");
        assert!(parse_client_first(b"n,,n=u,r=x,ext=1").is_some());
        assert!(parse_client_first(b"n,,n=u,r=").is_none());
    }

    #[test]
    fn plain_passwords_check_against_scram_credentials() {
        let credential = ScramMechanism::Sha512.credential_from_password("pw", 4096);
        assert!(credential.matches_password(ScramMechanism::Sha512, "pw"));
        assert!(!credential.matches_password(ScramMechanism::Sha512, "pw2"));
    }
}
