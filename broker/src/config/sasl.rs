//! SASL settings: the mechanisms served on SASL listeners, the SCRAM users created at first
//! start (`--add-scram`, Kafka's `kafka-storage format --add-scram`), the PLAIN users file,
//! the failed-authentication delay and re-authentication (KIP-368), and the credentials this
//! broker presents to other brokers.
//!
//! Resolved once at startup like the rest of the config; passwords given here are never
//! printed: `Debug` shows them as `[hidden]`.
//!
//! The PLAIN users file (`--sasl-plain-users-file`) holds one user per line, `NAME:PASSWORD`,
//! split at the first colon (so a password may contain colons, a name may not); blank lines
//! and lines starting with `#` are skipped. When it is given, PLAIN checks passwords against it;
//! otherwise against the users' SCRAM credentials in the metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use jsonwebtoken::jwk::JwkSet;

use super::ConfigError;

/// A SASL mechanism the broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaslMechanism {
    /// RFC 4616: name and password in clear (use it over TLS).
    Plain,
    /// RFC 7677's SCRAM-SHA-256.
    ScramSha256,
    /// SCRAM-SHA-512, as Kafka serves it.
    ScramSha512,
    /// RFC 7628: a JWT bearer token.
    OAuthBearer,
}

impl SaslMechanism {
    /// Every mechanism, in Kafka's order.
    pub const ALL: [Self; 4] = [Self::Plain, Self::ScramSha256, Self::ScramSha512, Self::OAuthBearer];

    /// The mechanism's IANA name, as clients send it in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism named `name` (exactly, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mechanism| mechanism.name() == name)
    }
}

/// SCRAM iterations when `--add-scram` names none: Kafka's minimum and its default.
pub const SCRAM_ITERATIONS_DEFAULT: i32 = 4096;

/// SASL flags; each may also come from its `SLUICE_*` environment variable.
#[derive(Default, clap::Args)]
pub struct SaslArgs {
    /// SASL mechanisms served on SASL listeners, Kafka's `sasl.enabled.mechanisms`: any of
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER [default: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512].
    #[arg(long, env = "SLUICE_SASL_ENABLED_MECHANISMS", value_name = "NAMES")]
    pub sasl_enabled_mechanisms: Option<String>,
    /// A SCRAM user created at start when it has no credential for that mechanism yet, in
    /// Kafka's `kafka-storage format --add-scram` form:
    /// `SCRAM-SHA-256=[name=admin,password=admin-secret]` (optionally `iterations=N`,
    /// `salt=BASE64`, or `salt=..,saltedpassword=BASE64` instead of the password); repeatable.
    #[arg(long = "add-scram", env = "SLUICE_ADD_SCRAM", value_name = "MECHANISM=[name=..,password=..]")]
    pub add_scram: Vec<String>,
    /// How long a failed authentication waits before its answer and the close, Kafka's
    /// `connection.failed.authentication.delay.ms` [default: 100].
    #[arg(long, env = "SLUICE_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", value_name = "MS")]
    pub connection_failed_authentication_delay_ms: Option<u64>,
    /// Lifetime of a SASL session before the client must re-authenticate, Kafka's
    /// `connections.max.reauth.ms`; 0 turns re-authentication off [default: 0].
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX_REAUTH_MS", value_name = "MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// PLAIN users and passwords, one `NAME:PASSWORD` per line; PLAIN checks this file
    /// instead of the SCRAM credentials when it is given, and a SASL controller listener
    /// checks connecting nodes against it [default: none].
    #[arg(long, env = "SLUICE_SASL_PLAIN_USERS_FILE", value_name = "FILE")]
    pub sasl_plain_users_file: Option<PathBuf>,
    /// The mechanism this broker authenticates with to other brokers' SASL listeners, Kafka's
    /// `sasl.mechanism.inter.broker.protocol` (PLAIN or SCRAM-SHA-256/512) [default: PLAIN].
    #[arg(long, env = "SLUICE_SASL_MECHANISM_INTER_BROKER_PROTOCOL", value_name = "MECHANISM")]
    pub sasl_mechanism_inter_broker_protocol: Option<String>,
    /// The mechanism nodes authenticate with on a SASL_SSL or SASL_PLAINTEXT controller
    /// listener, Kafka's `sasl.mechanism.controller.protocol`: PLAIN only (checked against
    /// --sasl-plain-users-file; SCRAM credentials live in the metadata the controllers
    /// replicate) [default: PLAIN].
    #[arg(long, env = "SLUICE_SASL_MECHANISM_CONTROLLER_PROTOCOL", value_name = "MECHANISM")]
    pub sasl_mechanism_controller_protocol: Option<String>,
    /// The user this broker authenticates as to other brokers, and to SASL controller
    /// listeners [default: none].
    #[arg(long, env = "SLUICE_INTER_BROKER_SASL_USERNAME", value_name = "NAME")]
    pub inter_broker_sasl_username: Option<String>,
    /// That user's password (prefer the environment variable, which `ps` does not show).
    #[arg(long, env = "SLUICE_INTER_BROKER_SASL_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    pub inter_broker_sasl_password: Option<String>,
    /// The keys OAUTHBEARER tokens are signed with: a JWKS file (RS256 and ES256 keys); needed
    /// when OAUTHBEARER is enabled [default: none].
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_JWKS_FILE", value_name = "FILE")]
    pub sasl_oauthbearer_jwks_file: Option<PathBuf>,
    /// The `aud` an OAUTHBEARER token must name, Kafka's `sasl.oauthbearer.expected.audience`
    /// [default: not checked].
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_EXPECTED_AUDIENCE", value_name = "AUDIENCE")]
    pub sasl_oauthbearer_expected_audience: Option<String>,
    /// The `iss` an OAUTHBEARER token must carry, Kafka's `sasl.oauthbearer.expected.issuer`
    /// [default: not checked].
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_EXPECTED_ISSUER", value_name = "ISSUER")]
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    /// The claim naming an OAUTHBEARER client's principal, Kafka's
    /// `sasl.oauthbearer.sub.claim.name` [default: sub].
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_SUB_CLAIM_NAME", value_name = "CLAIM")]
    pub sasl_oauthbearer_sub_claim_name: Option<String>,
}

impl fmt::Debug for SaslArgs {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SaslArgs")
            .field("sasl_enabled_mechanisms", &self.sasl_enabled_mechanisms)
            .field("add_scram", &format_args!("[{} hidden]", self.add_scram.len()))
            .field("connection_failed_authentication_delay_ms", &self.connection_failed_authentication_delay_ms)
            .field("connections_max_reauth_ms", &self.connections_max_reauth_ms)
            .field("sasl_plain_users_file", &self.sasl_plain_users_file)
            .field("sasl_mechanism_inter_broker_protocol", &self.sasl_mechanism_inter_broker_protocol)
            .field("sasl_mechanism_controller_protocol", &self.sasl_mechanism_controller_protocol)
            .field("inter_broker_sasl_username", &self.inter_broker_sasl_username)
            .field("inter_broker_sasl_password", &self.inter_broker_sasl_password.as_ref().map(|_| "[hidden]"))
            .field("sasl_oauthbearer_jwks_file", &self.sasl_oauthbearer_jwks_file)
            .field("sasl_oauthbearer_expected_audience", &self.sasl_oauthbearer_expected_audience)
            .field("sasl_oauthbearer_expected_issuer", &self.sasl_oauthbearer_expected_issuer)
            .field("sasl_oauthbearer_sub_claim_name", &self.sasl_oauthbearer_sub_claim_name)
            .finish()
    }
}

/// The same settings from the TOML file, under Kafka's names where Kafka has one.
#[derive(Default)]
pub(crate) struct SaslFile {
    pub(crate) sasl_enabled_mechanisms: Option<String>,
    pub(crate) add_scram: Vec<String>,
    pub(crate) connection_failed_authentication_delay_ms: Option<u64>,
    pub(crate) connections_max_reauth_ms: Option<u64>,
    pub(crate) sasl_plain_users_file: Option<PathBuf>,
    pub(crate) sasl_mechanism_inter_broker_protocol: Option<String>,
    pub(crate) sasl_mechanism_controller_protocol: Option<String>,
    pub(crate) inter_broker_sasl_username: Option<String>,
    pub(crate) inter_broker_sasl_password: Option<String>,
    pub(crate) sasl_oauthbearer_jwks_file: Option<PathBuf>,
    pub(crate) sasl_oauthbearer_expected_audience: Option<String>,
    pub(crate) sasl_oauthbearer_expected_issuer: Option<String>,
    pub(crate) sasl_oauthbearer_sub_claim_name: Option<String>,
}

/// A SCRAM user to create at start (`--add-scram`).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUserSpec {
    /// The mechanism, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub name: String,
    /// Iterations of the salted password.
    pub iterations: i32,
    /// The salt; `None` draws a random one.
    pub salt: Option<Vec<u8>>,
    /// The password, or the salted password computed from it elsewhere.
    pub secret: ScramSecret,
}

/// What an `--add-scram` entry gives to derive the credential from.
#[derive(Clone, PartialEq, Eq)]
pub enum ScramSecret {
    /// The password.
    Password(String),
    /// Hi(password, salt, iterations), as `kafka-storage` accepts it.
    SaltedPassword(Vec<u8>),
}

impl fmt::Debug for ScramUserSpec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ScramUserSpec")
            .field("mechanism", &self.mechanism)
            .field("name", &self.name)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// How this broker authenticates to other brokers' SASL listeners.
#[derive(Clone, PartialEq, Eq)]
pub struct InterBrokerSasl {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: SaslMechanism,
    /// The user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl fmt::Debug for InterBrokerSasl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("InterBrokerSasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The resolved SASL settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslConfig {
    /// Mechanisms served, in the order given (SaslHandshake lists them in this order).
    pub enabled_mechanisms: Vec<SaslMechanism>,
    /// SCRAM users to create at start.
    pub add_scram: Vec<ScramUserSpec>,
    /// Delay before a failed authentication is answered and closed, in ms.
    pub failed_authentication_delay_ms: u64,
    /// Session lifetime before re-authentication, in ms; 0: sessions never expire.
    pub max_reauth_ms: u64,
    /// PLAIN's users and passwords, from `--sasl-plain-users-file`; `None` checks SCRAM
    /// credentials instead.
    pub plain_users: Option<BTreeMap<String, String>>,
    /// Credentials for other brokers' SASL listeners.
    pub inter_broker: Option<InterBrokerSasl>,
    /// The mechanism of a SASL controller listener (PLAIN, the only one it can check).
    pub controller_mechanism: SaslMechanism,
    /// How OAUTHBEARER tokens are validated; set when OAUTHBEARER is enabled.
    pub oauthbearer: Option<OAuthBearerConfig>,
}

/// What validates OAUTHBEARER tokens: the keys, and the claims expected.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthBearerConfig {
    /// The JWKS the tokens' signatures are checked against.
    pub keys: JwkSet,
    /// The `aud` a token must name, if any.
    pub expected_audience: Option<String>,
    /// The `iss` a token must carry, if any.
    pub expected_issuer: Option<String>,
    /// The claim that names the principal (Kafka's `sasl.oauthbearer.sub.claim.name`).
    pub sub_claim: String,
}

impl fmt::Debug for OAuthBearerConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OAuthBearerConfig")
            .field("keys", &self.keys.keys.len())
            .field("expected_audience", &self.expected_audience)
            .field("expected_issuer", &self.expected_issuer)
            .field("sub_claim", &self.sub_claim)
            .finish()
    }
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SaslConfig")
            .field("enabled_mechanisms", &self.enabled_mechanisms)
            .field("add_scram", &self.add_scram)
            .field("failed_authentication_delay_ms", &self.failed_authentication_delay_ms)
            .field("max_reauth_ms", &self.max_reauth_ms)
            .field("plain_users", &self.plain_users.as_ref().map(BTreeMap::len))
            .field("inter_broker", &self.inter_broker)
            .field("controller_mechanism", &self.controller_mechanism)
            .field("oauthbearer", &self.oauthbearer)
            .finish()
    }
}

impl Default for SaslConfig {
    fn default() -> Self {
        Self {
            enabled_mechanisms: vec![SaslMechanism::Plain, SaslMechanism::ScramSha256, SaslMechanism::ScramSha512],
            add_scram: Vec::new(),
            failed_authentication_delay_ms: 100,
            max_reauth_ms: 0,
            plain_users: None,
            inter_broker: None,
            controller_mechanism: SaslMechanism::Plain,
            oauthbearer: None,
        }
    }
}

impl SaslConfig {
    /// Resolves flags over the file over defaults, reading the PLAIN users file.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown mechanism, a malformed `--add-scram` or users
    /// file, or inter-broker credentials without a user or password.
    pub(crate) fn resolve(args: SaslArgs, file: SaslFile) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(text) = args.sasl_enabled_mechanisms.or(file.sasl_enabled_mechanisms) {
            config.enabled_mechanisms = parse_mechanisms(&text)?;
        }
        let entries = if args.add_scram.is_empty() { file.add_scram } else { args.add_scram };
        config.add_scram = entries.iter().map(|entry| parse_add_scram(entry)).collect::<Result<_, _>>()?;
        config.failed_authentication_delay_ms = args
            .connection_failed_authentication_delay_ms
            .or(file.connection_failed_authentication_delay_ms)
            .unwrap_or(config.failed_authentication_delay_ms);
        config.max_reauth_ms =
            args.connections_max_reauth_ms.or(file.connections_max_reauth_ms).unwrap_or(config.max_reauth_ms);
        if let Some(path) = args.sasl_plain_users_file.or(file.sasl_plain_users_file) {
            config.plain_users = Some(read_plain_users(&path)?);
        }
        let mechanism = args.sasl_mechanism_inter_broker_protocol.or(file.sasl_mechanism_inter_broker_protocol);
        let username = args.inter_broker_sasl_username.or(file.inter_broker_sasl_username);
        let password = args.inter_broker_sasl_password.or(file.inter_broker_sasl_password);
        config.inter_broker = inter_broker(mechanism.as_deref(), username, password)?;
        if let Some(name) = args.sasl_mechanism_controller_protocol.or(file.sasl_mechanism_controller_protocol) {
            config.controller_mechanism = controller_mechanism(&name)?;
        }
        let jwks = args.sasl_oauthbearer_jwks_file.or(file.sasl_oauthbearer_jwks_file);
        if config.enabled_mechanisms.contains(&SaslMechanism::OAuthBearer) {
            let path = jwks.ok_or_else(|| {
                invalid("sasl-oauthbearer-jwks-file", "is needed when OAUTHBEARER is enabled".to_owned())
            })?;
            config.oauthbearer = Some(OAuthBearerConfig {
                keys: load_jwks(&path).map_err(|reason| invalid("sasl-oauthbearer-jwks-file", reason))?,
                expected_audience: args.sasl_oauthbearer_expected_audience.or(file.sasl_oauthbearer_expected_audience),
                expected_issuer: args.sasl_oauthbearer_expected_issuer.or(file.sasl_oauthbearer_expected_issuer),
                sub_claim: args
                    .sasl_oauthbearer_sub_claim_name
                    .or(file.sasl_oauthbearer_sub_claim_name)
                    .unwrap_or_else(|| "sub".to_owned()),
            });
        }
        Ok(config)
    }
}

fn invalid(setting: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { setting, reason }
}

/// Parses `sasl.enabled.mechanisms`: names separated by commas, each known, none twice.
fn parse_mechanisms(text: &str) -> Result<Vec<SaslMechanism>, ConfigError> {
    let mut mechanisms = Vec::new();
    for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let mechanism = SaslMechanism::from_name(name).ok_or_else(|| {
            invalid(
                "sasl-enabled-mechanisms",
                format!(
                    "unknown mechanism {name:?}; the mechanisms are PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"
                ),
            )
        })?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    if mechanisms.is_empty() {
        return Err(invalid("sasl-enabled-mechanisms", "names no mechanism".to_owned()));
    }
    Ok(mechanisms)
}

/// Parses one `--add-scram` entry: `MECHANISM=[key=value,...]`, values optionally in double
/// quotes (which may then hold commas).
fn parse_add_scram(entry: &str) -> Result<ScramUserSpec, ConfigError> {
    let bad =
        |reason: &str| invalid("add-scram", format!("{reason}; expected MECHANISM=[name=NAME,password=PASSWORD]"));
    let (mechanism, rest) = entry.trim().split_once('=').ok_or_else(|| bad("no '='"))?;
    let Some(mechanism @ (SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512)) =
        SaslMechanism::from_name(mechanism.trim())
    else {
        return Err(bad("the mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512"));
    };
    let body = rest.trim().strip_prefix('[').and_then(|body| body.strip_suffix(']')).ok_or_else(|| bad("no [...]"))?;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for field in split_fields(body) {
        let (key, value) = field.split_once('=').ok_or_else(|| bad("a field is not key=value"))?;
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|value| value.strip_suffix('"')).unwrap_or(value);
        if fields.insert(key.trim().to_ascii_lowercase(), value.to_owned()).is_some() {
            return Err(bad("a field is given twice"));
        }
    }
    let name = fields.remove("name").filter(|name| !name.is_empty()).ok_or_else(|| bad("no name"))?;
    let iterations = match fields.remove("iterations") {
        Some(text) => text.parse::<i32>().map_err(|_| bad("iterations is not a number"))?,
        None => SCRAM_ITERATIONS_DEFAULT,
    };
    if !(SCRAM_ITERATIONS_DEFAULT..=16_384).contains(&iterations) {
        return Err(bad("iterations must be between 4096 and 16384"));
    }
    let decode = |text: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| bad("salt and saltedpassword are base64"))
    };
    let salt = fields.remove("salt").map(|text| decode(&text)).transpose()?;
    let secret = match (fields.remove("password"), fields.remove("saltedpassword")) {
        (Some(password), None) => ScramSecret::Password(password),
        (None, Some(salted)) if salt.is_some() => ScramSecret::SaltedPassword(decode(&salted)?),
        (None, Some(_)) => return Err(bad("saltedpassword needs the salt it was made with")),
        _ => return Err(bad("give either password or saltedpassword")),
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(bad(&format!("unknown field {unknown:?}")));
    }
    Ok(ScramUserSpec { mechanism, name, iterations, salt, secret })
}

/// Splits at commas outside double quotes.
fn split_fields(body: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (index, character) in body.char_indices() {
        match character {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                fields.push(&body[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    fields.push(&body[start..]);
    fields.into_iter().filter(|field| !field.trim().is_empty()).collect()
}

/// Reads the PLAIN users file (format in the module docs).
fn read_plain_users(path: &PathBuf) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| invalid("sasl-plain-users-file", format!("{}: {error}", path.display())))?;
    let mut users = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (name, password) = line.split_once(':').filter(|(name, _)| !name.is_empty()).ok_or_else(|| {
            invalid("sasl-plain-users-file", format!("{} line {}: not NAME:PASSWORD", path.display(), index + 1))
        })?;
        users.insert(name.to_owned(), password.to_owned());
    }
    Ok(users)
}

/// Loads a JWKS file.
fn load_jwks(path: &std::path::Path) -> Result<JwkSet, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let keys: JwkSet =
        serde_json::from_str(&text).map_err(|error| format!("{}: not a JWKS: {error}", path.display()))?;
    if keys.keys.is_empty() {
        return Err(format!("{}: the JWKS holds no key", path.display()));
    }
    Ok(keys)
}

/// Parses `sasl.mechanism.controller.protocol`: PLAIN is the only mechanism a controller
/// listener can check, from a file rather than from the metadata it replicates.
fn controller_mechanism(name: &str) -> Result<SaslMechanism, ConfigError> {
    let setting = "sasl-mechanism-controller-protocol";
    match SaslMechanism::from_name(name.trim()) {
        Some(SaslMechanism::Plain) => Ok(SaslMechanism::Plain),
        Some(SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512) => Err(invalid(
            setting,
            format!(
                "{name:?}: SCRAM credentials live in the metadata log, which the controllers replicate over the \
                 controller listener, so it cannot check them; use PLAIN with --sasl-plain-users-file"
            ),
        )),
        _ => Err(invalid(setting, format!("{name:?}: the controller listener supports PLAIN only"))),
    }
}

fn inter_broker(
    mechanism: Option<&str>,
    username: Option<String>,
    password: Option<String>,
) -> Result<Option<InterBrokerSasl>, ConfigError> {
    let setting = "sasl-mechanism-inter-broker-protocol";
    let mechanism = match mechanism.map(str::trim) {
        None => SaslMechanism::Plain,
        Some(name) => match SaslMechanism::from_name(name) {
            Some(mechanism @ (SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512)) => {
                mechanism
            }
            _ => return Err(invalid(setting, format!("{name:?}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))),
        },
    };
    match (username, password) {
        (None, None) => Ok(None),
        (Some(username), Some(password)) if !username.is_empty() => {
            Ok(Some(InterBrokerSasl { mechanism, username, password }))
        }
        _ => Err(invalid(
            "inter-broker-sasl-username",
            "needs --inter-broker-sasl-password, and the other way round".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_scram_parses_kafkas_format() {
        let spec = parse_add_scram("SCRAM-SHA-256=[name=admin,password=admin-secret]").expect("parses");
        assert_eq!(spec.mechanism, SaslMechanism::ScramSha256);
        assert_eq!(spec.name, "admin");
        assert_eq!(spec.iterations, 4096);
        assert!(matches!(spec.secret, ScramSecret::Password(ref password) if password == "admin-secret"));
        let quoted =
            parse_add_scram("SCRAM-SHA-512=[name=\"al,ice\",password=\"a,b\",iterations=8192,salt=\"c2FsdA==\"]")
                .expect("parses");
        assert_eq!(quoted.name, "al,ice");
        assert_eq!(quoted.iterations, 8192);
        assert_eq!(quoted.salt.as_deref(), Some(&b"salt"[..]));
        assert!(matches!(quoted.secret, ScramSecret::Password(ref password) if password == "a,b"));
    }

    #[test]
    fn malformed_add_scram_is_refused() {
        for entry in [
            "PLAIN=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=100]",
            "SCRAM-SHA-256=[name=a,saltedpassword=AAAA]",
            "SCRAM-SHA-256=[name=a,password=b,color=red]",
        ] {
            assert!(parse_add_scram(entry).is_err(), "{entry}");
        }
    }

    #[test]
    fn mechanisms_are_validated() {
        assert_eq!(
            parse_mechanisms("SCRAM-SHA-512, PLAIN").expect("valid"),
            vec![SaslMechanism::ScramSha512, SaslMechanism::Plain]
        );
        assert!(parse_mechanisms("GSSAPI").is_err());
        assert!(parse_mechanisms("plain").is_err(), "Kafka's names are exact");
        assert!(parse_mechanisms(" , ").is_err());
    }

    #[test]
    fn the_controller_mechanism_is_plain_only() {
        assert_eq!(controller_mechanism("PLAIN").expect("valid"), SaslMechanism::Plain);
        for refused in ["SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER", "plain"] {
            assert!(controller_mechanism(refused).is_err(), "{refused}");
        }
        let error = controller_mechanism("SCRAM-SHA-512").expect_err("SCRAM").to_string();
        assert!(error.contains("metadata"), "{error}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let args = SaslArgs {
            add_scram: vec!["SCRAM-SHA-256=[name=a,password=very-secret]".to_owned()],
            inter_broker_sasl_username: Some("broker".to_owned()),
            inter_broker_sasl_password: Some("also-secret".to_owned()),
            ..SaslArgs::default()
        };
        let shown = format!("{args:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("also-secret"), "{shown}");
        let config = SaslConfig::resolve(args, SaslFile::default()).expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("also-secret"), "{shown}");
    }
}
