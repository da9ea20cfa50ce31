//! The decisions of [`super::alter`]: what is accepted, and Kafka's refusals.

use super::*;

fn operation(name: &str, operation: i8, value: Option<&str>) -> ConfigOperation {
    ConfigOperation { name: name.to_owned(), operation, value: value.map(str::to_owned) }
}

fn set(name: &str, value: &str) -> ConfigOperation {
    operation(name, OPERATION_SET, Some(value))
}

fn change(resource: &str, operations: Vec<ConfigOperation>) -> BrokerConfigChange {
    BrokerConfigChange { resource: resource.to_owned(), operations, replace: false }
}

fn refusal(result: Result<BrokerConfigs, Refusal>) -> (ResponseError, String) {
    let refusal = result.expect_err("refused");
    (refusal.error, refusal.message)
}

#[test]
fn dynamic_configs_are_set_appended_subtracted_and_deleted() {
    let configs = alter(
        None,
        &change(
            "1",
            vec![set("background.threads", " 9 "), operation("log.cleanup.policy", OPERATION_APPEND, Some("compact"))],
        ),
    )
    .expect("valid");
    assert_eq!(configs.get("background.threads").map(String::as_str), Some("9"));
    assert_eq!(
        configs.get("log.cleanup.policy").map(String::as_str),
        Some("delete,compact"),
        "APPEND starts from Kafka's default"
    );
    let configs = alter(
        Some(&configs),
        &change(
            "1",
            vec![
                operation("background.threads", OPERATION_DELETE, None),
                operation("log.cleanup.policy", OPERATION_SUBTRACT, Some("compact")),
            ],
        ),
    )
    .expect("valid");
    assert_eq!(configs, BrokerConfigs::from([("log.cleanup.policy".to_owned(), "delete".to_owned())]));
}

#[test]
fn alter_configs_replaces_the_whole_set() {
    let current = BrokerConfigs::from([("log.retention.ms".to_owned(), "1000".to_owned())]);
    let replace = BrokerConfigChange {
        resource: String::new(),
        operations: vec![set("message.max.bytes", "2000")],
        replace: true,
    };
    let configs = alter(Some(&current), &replace).expect("valid");
    assert_eq!(configs, BrokerConfigs::from([("message.max.bytes".to_owned(), "2000".to_owned())]));
}

#[test]
fn names_that_cannot_change_are_refused_with_kafkas_messages() {
    assert_eq!(
        refusal(alter(None, &change("1", vec![set("num.partitions", "3"), set("listeners", "PLAINTEXT://:1")]))),
        (
            ResponseError::InvalidRequest,
            "Cannot update these configs dynamically: [listeners, num.partitions]".to_owned()
        )
    );
    assert_eq!(
        refusal(alter(None, &change("1", vec![set("ssl.keystore.location", "/x")]))),
        (
            ResponseError::InvalidRequest,
            "These security configs can be dynamically updated only per-listener using the listener prefix: [ssl.keystore.location]"
                .to_owned()
        )
    );
    assert_eq!(
        refusal(alter(None, &change("", vec![set("sasl.kerberos.min.time.before.relogin", "58000")]))),
        (
            ResponseError::InvalidRequest,
            "Cannot update these configs at default cluster level, broker id must be specified: [sasl.kerberos.min.time.before.relogin]"
                .to_owned()
        )
    );
    assert!(alter(None, &change("2", vec![set("sasl.kerberos.min.time.before.relogin", "58000")])).is_ok());
}

#[test]
fn values_are_checked_against_kafkas_types_and_bounds() {
    let cases = [
        (
            "background.threads",
            "abc",
            "Invalid value abc for configuration background.threads: Not a number of type INT",
        ),
        ("background.threads", "0", "Invalid value 0 for configuration background.threads: Value must be at least 1"),
        (
            "log.retention.ms",
            "soon",
            "Invalid value soon for configuration log.retention.ms: Not a number of type LONG",
        ),
        (
            "log.segment.bytes",
            "1000",
            "Invalid value 1000 for configuration log.segment.bytes: Value must be at least 1048576",
        ),
    ];
    for (name, value, message) in cases {
        assert_eq!(
            refusal(alter(None, &change("", vec![set(name, value)]))),
            (ResponseError::InvalidRequest, message.to_owned())
        );
    }
}

#[test]
fn malformed_requests_are_refused() {
    assert_eq!(
        refusal(alter(None, &change("", vec![set("log.retention.ms", "1"), set("log.retention.ms", "2")]))).1,
        "Error due to duplicate config keys"
    );
    assert_eq!(
        refusal(alter(None, &change("", vec![operation("log.retention.ms", OPERATION_SET, None)]))).1,
        "Null value not supported for : log.retention.ms"
    );
    assert_eq!(
        refusal(alter(None, &change("", vec![operation("log.retention.ms", OPERATION_APPEND, Some("1"))]))),
        (
            ResponseError::InvalidConfig,
            "Config value append is not allowed for config key: log.retention.ms".to_owned()
        )
    );
    assert_eq!(
        refusal(alter(None, &change("", vec![operation("log.retention.ms", 9, Some("1"))]))).1,
        "Unknown operations type 9"
    );
}

#[test]
fn a_resource_is_the_cluster_default_or_this_broker() {
    assert!(check_resource("", 2).is_ok());
    assert!(check_resource("2", 2).is_ok());
    assert_eq!(
        check_resource("1", 2).expect_err("other broker").message,
        "Unexpected broker id, expected 2, but received 1"
    );
    assert_eq!(check_resource("x", 2).expect_err("not a number").message, "Node id must be an integer, but it is: x");
}
