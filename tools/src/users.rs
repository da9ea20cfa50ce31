//! `sluicectl users list|describe|set|delete`: SCRAM credentials through
//! DescribeUserScramCredentials and AlterUserScramCredentials, as `kafka-configs.sh
//! --entity-type users --alter --add-config 'SCRAM-SHA-256=[password=...]'` manages them.
//!
//! `set` salts the password here (a random salt, `Hi(password, salt, iterations)` with the
//! mechanism's HMAC, RFC 5802) and sends only the salted password, as Kafka's admin client does;
//! the password itself never leaves this process. It is read from `--password`, or from the
//! `SLUICE_USER_PASSWORD` environment variable, which `ps` does not show. Main thread only.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use bytes::Bytes;
use clap::{Subcommand, ValueEnum};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};

use crate::output::{Output, Table};
use crate::session::{Session, describe_error};

/// A SCRAM mechanism, with Kafka's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mechanism {
    /// SCRAM-SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    fn type_code(self) -> i8 {
        match self {
            Self::ScramSha256 => 1,
            Self::ScramSha512 => 2,
        }
    }

    fn name_of(code: i8) -> String {
        match code {
            1 => "SCRAM-SHA-256".to_owned(),
            2 => "SCRAM-SHA-512".to_owned(),
            other => format!("UNKNOWN({other})"),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::ScramSha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            Self::ScramSha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Every user with SCRAM credentials, and its mechanisms.
    List,
    /// The mechanisms and iterations of the users named.
    Describe {
        /// A user; repeatable.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Set (create or change) a user's credential for one mechanism.
    Set {
        /// The user.
        user: String,
        /// The mechanism.
        #[arg(long, value_enum, default_value = "SCRAM-SHA-256")]
        mechanism: Mechanism,
        /// The password [default: the SLUICE_USER_PASSWORD environment variable].
        #[arg(long, env = "SLUICE_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// Iterations of the salted password (Kafka accepts 4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// Delete a user's credential for one mechanism.
    Delete {
        /// The user.
        user: String,
        /// The mechanism.
        #[arg(long, value_enum)]
        mechanism: Mechanism,
    },
}

pub(crate) fn run(session: &mut Session, command: &UsersCommand, output: Output) -> Result<()> {
    match command {
        UsersCommand::List => describe(session, None, output),
        UsersCommand::Describe { users } => describe(session, Some(users), output),
        UsersCommand::Set { user, mechanism, password, iterations } => {
            set(session, user, *mechanism, password, *iterations, output)
        }
        UsersCommand::Delete { user, mechanism } => {
            let deletion = ScramCredentialDeletion::default()
                .with_name(StrBytes::from_string(user.clone()))
                .with_mechanism(mechanism.type_code());
            alter(session, &AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]), user)?;
            output.emit(&json!({"user": user, "deleted": Mechanism::name_of(mechanism.type_code())}), || {
                format!("Deleted the {} credential of {user}.\n", Mechanism::name_of(mechanism.type_code()))
            });
            Ok(())
        }
    }
}

/// A user's credentials, (mechanism, iterations), or why it could not be described.
type Described = Result<Vec<(String, i32)>, String>;

fn describe(session: &mut Session, users: Option<&[String]>, output: Output) -> Result<()> {
    let names = users.map(|users| {
        users.iter().map(|user| UserName::default().with_name(StrBytes::from_string(user.clone()))).collect()
    });
    let request = DescribeUserScramCredentialsRequest::default().with_users(names);
    let response = session.connection().send(&request).context("DescribeUserScramCredentials request failed")?;
    if let Some(error) = response.error_code.err() {
        bail!("cannot describe users: {}", describe_error(error, response.error_message.as_deref()));
    }
    let mut rows: Vec<(String, Described)> = response
        .results
        .iter()
        .map(|result| {
            let answer = match result.error_code.err() {
                Some(error) => Err(describe_error(error, result.error_message.as_deref())),
                None => Ok(result
                    .credential_infos
                    .iter()
                    .map(|info| (Mechanism::name_of(info.mechanism), info.iterations))
                    .collect()),
            };
            (result.user.to_string(), answer)
        })
        .collect();
    rows.sort_by(|left, right| left.0.cmp(&right.0));
    let json: Vec<Value> = rows
        .iter()
        .map(|(user, answer)| match answer {
            Ok(credentials) => json!({
                "user": user,
                "credentials": credentials.iter().map(|(mechanism, iterations)| {
                    json!({"mechanism": mechanism, "iterations": iterations})
                }).collect::<Vec<_>>(),
            }),
            Err(error) => json!({"user": user, "error": error}),
        })
        .collect();
    output.emit(&json!(json), || {
        let mut table = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
        for (user, answer) in &rows {
            match answer {
                Ok(credentials) => {
                    for (mechanism, iterations) in credentials {
                        table.push(vec![user.clone(), mechanism.clone(), iterations.to_string()]);
                    }
                }
                Err(error) => table.push(vec![user.clone(), format!("error: {error}"), String::new()]),
            }
        }
        table.render()
    });
    Ok(())
}

fn set(
    session: &mut Session,
    user: &str,
    mechanism: Mechanism,
    password: &str,
    iterations: u32,
    output: Output,
) -> Result<()> {
    if password.is_empty() {
        bail!("the password is empty");
    }
    let mut salt = [0u8; 24];
    getrandom::fill(&mut salt).context("no randomness for the salt")?;
    let salt = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(salt).into_bytes();
    let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations.max(1));
    let upsertion = ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_owned()))
        .with_mechanism(mechanism.type_code())
        .with_iterations(i32::try_from(iterations).context("too many iterations")?)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted));
    alter(session, &AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]), user)?;
    let mechanism = Mechanism::name_of(mechanism.type_code());
    output.emit(&json!({"user": user, "set": mechanism, "iterations": iterations}), || {
        format!("Set the {mechanism} credential of {user} ({iterations} iterations).\n")
    });
    Ok(())
}

fn alter(session: &mut Session, request: &AlterUserScramCredentialsRequest, user: &str) -> Result<()> {
    let response = session.connection().send(request).context("AlterUserScramCredentials request failed")?;
    for result in &response.results {
        if let Some(error) = result.error_code.err() {
            bail!("cannot alter the credentials of {user}: {}", describe_error(error, result.error_message.as_deref()));
        }
    }
    Ok(())
}
