//! SASL/PLAIN (RFC 4616) as Kafka's `PlainSaslServer` serves it: one message,
//! `[authzid] NUL authcid NUL passwd`, checked against the users file when one is configured,
//! else against the user's SCRAM credentials (derived with the stored salt and iterations and
//! compared in constant time). The password is dropped once checked and never logged.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::credentials::ScramCredentials;
use super::scram::ScramMechanism;

/// Why a PLAIN message was refused, with Kafka's message for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlainFailure(pub(crate) &'static str);

/// A PLAIN message split into authorization id, user and password.
#[derive(PartialEq, Eq)]
pub(crate) struct PlainMessage<'a> {
    pub(crate) authzid: &'a str,
    pub(crate) user: &'a str,
    pub(crate) password: &'a str,
}

impl std::fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PlainMessage").field("user", &self.user).finish_non_exhaustive()
    }
}

/// Splits a PLAIN message as Kafka does: exactly three NUL-separated tokens, user and password
/// not empty.
///
/// # Errors
/// [`PlainFailure`] with Kafka's message.
pub(crate) fn parse(message: &[u8]) -> Result<PlainMessage<'_>, PlainFailure> {
    let text =
        std::str::from_utf8(message).map_err(|_| PlainFailure("Invalid SASL/PLAIN response: expected 3 tokens"))?;
    let tokens: Vec<&str> = text.splitn(4, '\0').collect();
    let [authzid, user, password] = tokens[..] else {
        return Err(PlainFailure(match tokens.len() {
            1 => "Invalid SASL/PLAIN response: expected 3 tokens, got 1",
            2 => "Invalid SASL/PLAIN response: expected 3 tokens, got 2",
            _ => "Invalid SASL/PLAIN response: expected 3 tokens, got 4",
        }));
    };
    if user.is_empty() {
        return Err(PlainFailure("Authentication failed: username not specified"));
    }
    if password.is_empty() {
        return Err(PlainFailure("Authentication failed: password not specified"));
    }
    Ok(PlainMessage { authzid, user, password })
}

/// Checks a PLAIN message; returns the authenticated user.
///
/// # Errors
/// [`PlainFailure`] with Kafka's message: malformed, wrong user or password, or an
/// authorization id other than the user.
pub(crate) fn authenticate(
    message: &[u8],
    users_file: Option<&std::collections::BTreeMap<String, String>>,
    credentials: &ScramCredentials,
) -> Result<String, PlainFailure> {
    let plain = parse(message)?;
    let valid = match users_file {
        Some(users) => users.get(plain.user).is_some_and(|expected| same_secret(expected, plain.password)),
        None => credentials.of(plain.user).is_some_and(|mechanisms| {
            // The strongest mechanism the user has; one derivation per attempt.
            let strongest =
                mechanisms.get(&ScramMechanism::Sha512).map(|credential| (ScramMechanism::Sha512, credential));
            strongest
                .or_else(|| {
                    mechanisms.get(&ScramMechanism::Sha256).map(|credential| (ScramMechanism::Sha256, credential))
                })
                .is_some_and(|(mechanism, credential)| credential.matches_password(mechanism, plain.password))
        }),
    };
    if !valid {
        return Err(PlainFailure("Authentication failed: Invalid username or password"));
    }
    if !plain.authzid.is_empty() && plain.authzid != plain.user {
        return Err(PlainFailure(
            "Authentication failed: Client requested an authorization id that is different from username",
        ));
    }
    Ok(plain.user.to_owned())
}

/// Compares two passwords in constant time (their digests, so the length leaks nothing either).
fn same_secret(expected: &str, given: &str) -> bool {
    bool::from(Sha256::digest(expected.as_bytes()).ct_eq(&Sha256::digest(given.as_bytes())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn messages_split_as_kafka_splits_them() {
        let plain = parse(b"\0alice\0secret").expect("three tokens");
        assert_eq!((plain.authzid, plain.user, plain.password), ("", "alice", "secret"));
        assert_eq!(parse(b"alice\0secret"), Err(PlainFailure("Invalid SASL/PLAIN response: expected 3 tokens, got 2")));
        assert_eq!(parse(b"a\0b\0c\0d"), Err(PlainFailure("Invalid SASL/PLAIN response: expected 3 tokens, got 4")));
        assert_eq!(parse(b"\0\0pw"), Err(PlainFailure("Authentication failed: username not specified")));
        assert_eq!(parse(b"\0u\0"), Err(PlainFailure("Authentication failed: password not specified")));
    }

    #[test]
    fn users_file_and_scram_credentials_both_verify() {
        let users: BTreeMap<String, String> = [("alice".to_owned(), "pw".to_owned())].into();
        assert_eq!(authenticate(b"\0alice\0pw", Some(&users), &ScramCredentials::default()), Ok("alice".to_owned()));
        assert!(authenticate(b"\0alice\0px", Some(&users), &ScramCredentials::default()).is_err());
        let mut credentials = ScramCredentials::default();
        credentials.upsert(
            "bob",
            ScramMechanism::Sha256,
            &ScramMechanism::Sha256.credential_from_password("hunter2", 4096),
        );
        assert_eq!(authenticate(b"\0bob\0hunter2", None, &credentials), Ok("bob".to_owned()));
        assert_eq!(
            authenticate(b"\0bob\0hunter3", None, &credentials),
            Err(PlainFailure("Authentication failed: Invalid username or password"))
        );
        assert!(authenticate(b"root\0bob\0hunter2", None, &credentials).is_err(), "another authorization id");
        assert!(authenticate(b"\0carol\0x", None, &credentials).is_err(), "unknown user");
    }
}
