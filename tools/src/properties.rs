//! Kafka's client properties files (`--command-config`) and the `sasl.jaas.config` value in
//! them, read as Kafka reads them.
//!
//! A properties file is Java's `Properties.load` format; the subset clients' files use:
//! - `#` and `!` start comment lines; blank lines are skipped;
//! - a line ending in an odd number of backslashes continues on the next line (leading
//!   whitespace of the continuation dropped), as long `sasl.jaas.config` values often do;
//! - the key ends at the first unescaped `=`, `:` or whitespace; one `=` or `:` and the
//!   whitespace around it separate it from the value;
//! - `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\<any>` (that character) are escapes.
//!
//! A JAAS configuration is `<LoginModule class> <flag> name="value" name=value ... ;` (Kafka's
//! `JaasConfig`): only the options are kept. Main thread only; pure functions.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// Parses the text of a properties file into its keys and values; a later key replaces an
/// earlier one, as in Java.
pub(crate) fn parse(text: &str) -> BTreeMap<String, String> {
    let mut properties = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut logical = first.trim_start().to_owned();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_in_continuation(&logical) {
            logical.pop();
            let Some(next) = lines.next() else { break };
            logical.push_str(next.trim_start());
        }
        let (key, value) = split_entry(&logical);
        properties.insert(unescape(key), unescape(value));
    }
    properties
}

fn ends_in_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|character| *character == '\\').count() % 2 == 1
}

/// The key and the raw value of one logical line.
fn split_entry(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (index, character) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if character == '\\' {
            escaped = true;
        } else if character == '=' || character == ':' || character.is_whitespace() {
            key_end = index;
            break;
        }
    }
    let rest = line[key_end..].trim_start();
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim_start();
    (&line[..key_end], rest)
}

fn unescape(text: &str) -> String {
    let mut result = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            result.push(character);
            continue;
        }
        match characters.next() {
            Some('t') => result.push('\t'),
            Some('n') => result.push('\n'),
            Some('r') => result.push('\r'),
            Some('f') => result.push('\u{c}'),
            Some('u') => {
                let digits: String = characters.by_ref().take(4).collect();
                match u32::from_str_radix(&digits, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => result.push(decoded),
                    None => result.push_str(&digits),
                }
            }
            Some(other) => result.push(other),
            None => {}
        }
    }
    result
}

/// The options of a `sasl.jaas.config` value (`username`, `password`, ...).
///
/// # Errors
/// When the value is not `<class> <flag> options... ;`. The message never quotes the value,
/// which holds a password.
pub(crate) fn jaas_options(jaas: &str) -> Result<BTreeMap<String, String>> {
    let text = jaas.trim();
    let Some(text) = text.strip_suffix(';') else {
        bail!("sasl.jaas.config must end with `;` (<LoginModule> required username=\"...\" password=\"...\";)")
    };
    let mut words = text.splitn(3, char::is_whitespace);
    let (Some(_module), Some(flag)) = (words.next(), words.next()) else {
        bail!("sasl.jaas.config must name a login module and a flag (`required`)")
    };
    if !["required", "requisite", "sufficient", "optional"].contains(&flag) {
        bail!("sasl.jaas.config: the login module's flag must be required, requisite, sufficient or optional")
    }
    let mut options = BTreeMap::new();
    let mut rest = words.next().unwrap_or("").trim_start();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else { bail!("sasl.jaas.config: an option has no `=`") };
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let Some(end) = quoted.find('"') else { bail!("sasl.jaas.config: an option's quote is not closed") };
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_at(after.find(char::is_whitespace).unwrap_or(after.len())),
        };
        options.insert(name.trim().to_owned(), value.to_owned());
        rest = remaining.trim_start();
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_java_separators_comments_and_continuations() {
        let text = "# comment\n! also\n\nsecurity.protocol=SASL_SSL\nssl.ca.location : /etc/ca.pem\n\
                    sasl.mechanism SCRAM-SHA-512\nsasl.jaas.config=org.Scram required \\\n    username=\"a\" \\\n    \
                    password=\"p\";\nkey\\=with=value\\tx\n";
        let properties = parse(text);
        assert_eq!(properties.get("security.protocol").map(String::as_str), Some("SASL_SSL"));
        assert_eq!(properties.get("ssl.ca.location").map(String::as_str), Some("/etc/ca.pem"));
        assert_eq!(properties.get("sasl.mechanism").map(String::as_str), Some("SCRAM-SHA-512"));
        assert_eq!(
            properties.get("sasl.jaas.config").map(String::as_str),
            Some("org.Scram required username=\"a\" password=\"p\";")
        );
        assert_eq!(properties.get("key=with").map(String::as_str), Some("value\tx"));
        assert_eq!(properties.len(), 5);
    }

    #[test]
    fn jaas_options_of_kafka_login_modules() {
        let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" \
                    password=\"admin secret=1\";";
        let options = jaas_options(jaas).expect("valid");
        assert_eq!(options.get("username").map(String::as_str), Some("admin"));
        assert_eq!(options.get("password").map(String::as_str), Some("admin secret=1"));
        let bare =
            jaas_options("org.apache.kafka.common.security.plain.PlainLoginModule required username=u password=p;")
                .expect("valid");
        assert_eq!(bare.get("password").map(String::as_str), Some("p"));
    }

    #[test]
    fn malformed_jaas_is_refused_without_quoting_it() {
        for jaas in
            ["Module required password=\"secret\"", "Module password=\"secret\";", "M required password=\"secret;"]
        {
            let error = jaas_options(jaas).expect_err(jaas).to_string();
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
