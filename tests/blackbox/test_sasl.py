"""SASL authentication: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over SASL_PLAINTEXT with real
clients, users from `--add-scram` and from the admin API, refusals, and re-authentication.

Goal: clients configured with Kafka's usual SASL settings (confluent-kafka, kafka-python,
kafkajs) authenticate and work unchanged; a wrong password or an unknown user is refused with
SASL_AUTHENTICATION_FAILED after the failed-authentication delay and gets no data, while other
clients keep working; nothing but ApiVersions and the SASL requests is served before
authentication; sessions expire and re-authenticate as KIP-368 says; no password reaches the
broker's log.

Method: each broker runs one SASL_PLAINTEXT listener (the fixtures' readiness probe, ApiVersions
v0, is served before authentication) and creates its first users with `--add-scram`. Real
clients produce and consume through it; byte-level checks (order of requests, the answers'
codes, messages, delay and the close) use the hand-written wire client of `kafka_wire`, with
SCRAM's client side written here from RFC 5802.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

import kafka_wire
from clients import base_conf, confluent_consumer, confluent_producer, consume_values, unique_topic
from conftest import HOST, Broker, free_ports

pytestmark = pytest.mark.sluice_only("sluice's --listeners and SASL flags")

JS_DIR = Path(__file__).resolve().parents[1] / "js"
OP_TIMEOUT_S = 30.0
ADMIN, ADMIN_PASSWORD = "admin", "admin-secret-9f1"
ALICE, ALICE_PASSWORD = "alice", "alice-pw-71c3"
WRONG_PASSWORD = "not-the-password-5e2"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

API_SASL_HANDSHAKE = 17
API_SASL_AUTHENTICATE = 36
ERROR_UNSUPPORTED_SASL_MECHANISM = 33
ERROR_ILLEGAL_SASL_STATE = 34
ERROR_SASL_AUTHENTICATION_FAILED = 58


def sasl_broker(workdir: Path, name: str, *extra: str) -> Broker:
    """A broker with one SASL_PLAINTEXT listener and the admin user from `--add-scram`'s file form
    (`add_scram` in the config file, which keeps the password off the logged command line)."""
    broker = Broker(workdir, name)
    broker.listeners = f"SASL_PLAINTEXT://{HOST}:{broker.port}"
    config = workdir / "sasl.toml"
    config.write_text(
        "add_scram = [\n"
        f'  "SCRAM-SHA-256=[name={ADMIN},password={ADMIN_PASSWORD}]",\n'
        f'  "SCRAM-SHA-512=[name={ADMIN},password={ADMIN_PASSWORD},iterations=8192]",\n'
        "]\n")
    broker.extra_args += ["--config", str(config), *extra]
    return broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    broker = sasl_broker(tmp_path_factory.mktemp("sasl"), "sasl")
    broker.start()
    yield broker
    broker.stop()


def sasl_conf(broker, mechanism: str, user: str, password: str, **extra) -> dict:
    return base_conf(broker, **{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
                                "sasl.username": user, "sasl.password": password, **extra})


def sasl_admin(broker, mechanism: str = "SCRAM-SHA-512", user: str = ADMIN, password: str = ADMIN_PASSWORD):
    client = AdminClient(sasl_conf(broker, mechanism, user, password))
    broker.keep_alive.append(client)
    return client


def create_topic(admin: AdminClient, name: str) -> None:
    for future in admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=OP_TIMEOUT_S).values():
        future.result(timeout=OP_TIMEOUT_S)


def produce_and_read_back(broker, mechanism: str, user: str, password: str, count: int = 20) -> list[bytes]:
    """Produces `count` records with confluent-kafka as `user`, reads them back, returns them."""
    topic = unique_topic(f"sasl-{mechanism.lower()}")
    create_topic(sasl_admin(broker), topic)
    producer = confluent_producer(broker, **sasl_conf(broker, mechanism, user, password))
    values = [f"{mechanism}-{i}".encode() for i in range(count)]
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(OP_TIMEOUT_S) == 0, "every record delivered"
    return consume_values(broker, topic, count, OP_TIMEOUT_S, **sasl_conf(broker, mechanism, user, password))


# ------------------------------------------------------------------ the wire, by hand


def handshake(conn: kafka_wire.Connection, mechanism: str) -> tuple[int, list[str]]:
    """SaslHandshake v1: (error_code, enabled mechanisms)."""
    reader = conn.request(API_SASL_HANDSHAKE, 1, kafka_wire.string(mechanism), flexible=False)
    error = reader.int16()
    return error, [reader.string() for _ in range(reader.int32())]


def authenticate(conn: kafka_wire.Connection, auth_bytes: bytes) -> tuple[int, str | None, bytes, int]:
    """SaslAuthenticate v1: (error_code, error_message, auth_bytes, session_lifetime_ms)."""
    reader = conn.request(API_SASL_AUTHENTICATE, 1, kafka_wire.nbytes(auth_bytes), flexible=False)
    error, message = reader.int16(), reader.string()
    size = reader.int32()
    data = reader.take(size) if size > 0 else b""
    return error, message, data, reader.int64()


def metadata_v1(conn: kafka_wire.Connection) -> int:
    """Metadata v1 for every topic; returns how many brokers it lists."""
    reader = conn.request(kafka_wire.API_METADATA, 1, kafka_wire.int32(-1), flexible=False)
    return reader.int32()


def plain_login(conn: kafka_wire.Connection, user: str, password: str) -> tuple[int, str | None, int]:
    error, _ = handshake(conn, "PLAIN")
    assert error == 0
    error, message, _, lifetime = authenticate(conn, f"\0{user}\0{password}".encode())
    return error, message, lifetime


def scram_login(conn: kafka_wire.Connection, mechanism: str, user: str, password: str) -> tuple[int, str | None]:
    """A whole SCRAM exchange (RFC 5802), checking the server's signature on success."""
    digest = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
    error, _ = handshake(conn, mechanism)
    assert error == 0
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={nonce}"
    error, message, server_first, _ = authenticate(conn, f"n,,{first_bare}".encode())
    if error:
        return error, message
    fields = dict(part.split("=", 1) for part in server_first.decode().split(","))
    assert fields["r"].startswith(nonce) and len(fields["r"]) > len(nonce)
    salted = hashlib.pbkdf2_hmac(digest().name, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = digest(client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, digest).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    final = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
    error, message, server_final, _ = authenticate(conn, final)
    if error == 0:
        server_key = hmac.new(salted, b"Server Key", digest).digest()
        expected = base64.b64encode(hmac.new(server_key, auth_message, digest).digest()).decode()
        assert server_final.decode() == f"v={expected}", "the server proves it holds the credential"
        # Kafka leaves the message at its default, empty, on success.
        assert message in ("", None)
        return error, None
    return error, message


# ------------------------------------------------------------------ real clients


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_produces_and_consumes_as_an_add_scram_user(broker, mechanism):
    got = produce_and_read_back(broker, mechanism, ADMIN, ADMIN_PASSWORD)
    assert got == [f"{mechanism}-{i}".encode() for i in range(20)]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_produces_and_consumes(broker, mechanism):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpPartition
    topic = unique_topic(f"kp-sasl-{mechanism.lower()}")
    create_topic(sasl_admin(broker), topic)
    settings = {"bootstrap_servers": broker.bootstrap, "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": mechanism, "sasl_plain_username": ADMIN, "sasl_plain_password": ADMIN_PASSWORD}
    producer = KafkaProducer(acks="all", request_timeout_ms=30_000, **settings)
    try:
        for i in range(10):
            producer.send(topic, value=f"kp-{i}".encode(), partition=0).get(timeout=OP_TIMEOUT_S)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(consumer_timeout_ms=10_000, **settings)
    try:
        consumer.assign([KpPartition(topic, 0)])
        consumer.seek(KpPartition(topic, 0), 0)
        got = [message.value for _, message in zip(range(10), consumer)]
    finally:
        consumer.close()
    assert got == [f"kp-{i}".encode() for i in range(10)]


def run_js(tmp_path: Path, request: dict) -> dict:
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (JS_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs is not installed: run ./tests/run setup"
    path = tmp_path / "sasl-request.json"
    path.write_text(json.dumps(request))
    proc = subprocess.run([node, str(JS_DIR / "sasl_driver.js"), str(path)], capture_output=True, timeout=90,
                          cwd=JS_DIR)
    assert proc.returncode == 0, f"sasl_driver exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
    return json.loads(proc.stdout)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafkajs_produces_and_a_wrong_password_is_refused(broker, tmp_path, mechanism):
    topic = unique_topic(f"js-sasl-{mechanism.lower()}")
    create_topic(sasl_admin(broker), topic)
    js_mechanism = mechanism.lower()
    answer = run_js(tmp_path, {"brokers": [broker.bootstrap], "topic": topic, "mechanism": js_mechanism,
                               "username": ADMIN, "password": ADMIN_PASSWORD, "values": ["a", "b", "c"]})
    assert answer == {"offsets": [0, 1, 2]}
    refused = run_js(tmp_path, {"brokers": [broker.bootstrap], "topic": topic, "mechanism": js_mechanism,
                                "username": ADMIN, "password": WRONG_PASSWORD, "values": ["x"]})
    assert "error" in refused and "SASL" in refused["message"], refused


# ------------------------------------------------------------------ users through the admin API


def test_admin_api_creates_describes_and_deletes_users(broker):
    admin = sasl_admin(broker)
    upsert = UserScramCredentialUpsertion(ALICE, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192),
                                          ALICE_PASSWORD.encode())
    admin.alter_user_scram_credentials([upsert])[ALICE].result(timeout=OP_TIMEOUT_S)
    described = admin.describe_user_scram_credentials([ALICE])[ALICE].result(timeout=OP_TIMEOUT_S)
    assert [(info.mechanism, info.iterations) for info in described.scram_credential_infos] == \
        [(ScramMechanism.SCRAM_SHA_256, 8192)]
    everyone = admin.describe_user_scram_credentials().result(timeout=OP_TIMEOUT_S)
    assert {ADMIN, ALICE} <= set(everyone)
    assert sorted(info.mechanism for info in everyone[ADMIN].scram_credential_infos) == \
        [ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512]

    # The new user authenticates with SCRAM and with PLAIN (checked against the SCRAM credential).
    with kafka_wire.Connection(HOST, broker.port) as conn:
        assert scram_login(conn, "SCRAM-SHA-256", ALICE, ALICE_PASSWORD) == (0, None)
        assert metadata_v1(conn) == 1
    with kafka_wire.Connection(HOST, broker.port) as conn:
        assert plain_login(conn, ALICE, ALICE_PASSWORD)[0] == 0
    assert produce_and_read_back(broker, "SCRAM-SHA-256", ALICE, ALICE_PASSWORD, count=5) == \
        [f"SCRAM-SHA-256-{i}".encode() for i in range(5)]

    # Kafka's refusals.
    too_few = UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"pw")
    with pytest.raises(KafkaException) as raised:
        admin.alter_user_scram_credentials([too_few])["bob"].result(timeout=OP_TIMEOUT_S)
    assert raised.value.args[0].name() == "UNACCEPTABLE_CREDENTIAL"
    ghost = UserScramCredentialDeletion("ghost", ScramMechanism.SCRAM_SHA_512)
    with pytest.raises(KafkaException) as raised:
        admin.alter_user_scram_credentials([ghost])["ghost"].result(timeout=OP_TIMEOUT_S)
    assert raised.value.args[0].name() == "RESOURCE_NOT_FOUND"
    with pytest.raises(KafkaException) as raised:
        admin.describe_user_scram_credentials(["ghost"])["ghost"].result(timeout=OP_TIMEOUT_S)
    assert raised.value.args[0].name() == "RESOURCE_NOT_FOUND"

    # Deleted, the user no longer authenticates.
    delete = UserScramCredentialDeletion(ALICE, ScramMechanism.SCRAM_SHA_256)
    admin.alter_user_scram_credentials([delete])[ALICE].result(timeout=OP_TIMEOUT_S)
    with kafka_wire.Connection(HOST, broker.port) as conn:
        error, message = scram_login(conn, "SCRAM-SHA-256", ALICE, ALICE_PASSWORD)
        assert error == ERROR_SASL_AUTHENTICATION_FAILED, message


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wrong_password_and_unknown_user_are_refused_after_the_delay_and_closed(broker, mechanism):
    for user, password in [(ADMIN, WRONG_PASSWORD), ("nobody", ADMIN_PASSWORD)]:
        with kafka_wire.Connection(HOST, broker.port) as conn:
            started = time.monotonic()
            if mechanism == "PLAIN":
                error, message, _ = plain_login(conn, user, password)
            else:
                error, message = scram_login(conn, mechanism, user, password)
            elapsed = time.monotonic() - started
            assert error == ERROR_SASL_AUTHENTICATION_FAILED, message
            if mechanism == "PLAIN":
                assert message == "Authentication failed: Invalid username or password"
            else:
                assert message == ("Authentication failed during authentication due to invalid credentials "
                                   f"with SASL mechanism {mechanism}")
            assert elapsed >= 0.09, f"answered after {elapsed:.3f}s, before connection.failed.authentication.delay.ms"
            assert conn.wait_closed(5.0), "the connection closes after a failed authentication"


def test_refused_clients_get_no_data_while_others_keep_working(broker):
    topic = unique_topic("sasl-isolation")
    create_topic(sasl_admin(broker), topic)
    good = confluent_producer(broker, **sasl_conf(broker, "SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD))
    stop = threading.Event()
    delivered: list[int] = []

    def keep_producing():
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            good.produce(topic, value=b"v", partition=0, on_delivery=lambda err, _: err is None and delivered.append(1))
            good.poll(0.05)

    worker = threading.Thread(target=keep_producing)
    worker.start()
    try:
        errors: list[str] = []
        bad = confluent_consumer(broker, **sasl_conf(broker, "SCRAM-SHA-256", ADMIN, WRONG_PASSWORD,
                                                        error_cb=lambda err: errors.append(err.name())))
        bad.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = bad.poll(0.25)
            if message is not None and message.error() is None:
                got.append(message.value())
        bad.close()
        assert got == [], "a client that failed authentication reads nothing"
        assert "_AUTHENTICATION" in errors, errors
    finally:
        stop.set()
        worker.join(timeout=30)
    good.flush(OP_TIMEOUT_S)
    assert len(delivered) > 10, "the authenticated producer kept working meanwhile"


def test_requests_before_authentication_close_the_connection(broker):
    # Metadata before anything: closed, unanswered.
    with kafka_wire.Connection(HOST, broker.port) as conn:
        conn.send_raw(kafka_wire.request_frame(kafka_wire.API_METADATA, 1, 1, kafka_wire.int32(-1)))
        assert conn.wait_closed(5.0)
    # ApiVersions is served, then only SaslHandshake: a second ApiVersions closes.
    with kafka_wire.Connection(HOST, broker.port) as conn:
        error, versions = kafka_wire.api_versions(conn)
        assert error == 0 and versions[API_SASL_HANDSHAKE].max == 1 and versions[API_SASL_AUTHENTICATE].max == 2
        conn.send_raw(kafka_wire.request_frame(kafka_wire.API_METADATA, 1, 2, kafka_wire.int32(-1)))
        assert conn.wait_closed(5.0)
    # After the handshake, only SaslAuthenticate.
    with kafka_wire.Connection(HOST, broker.port) as conn:
        assert handshake(conn, "PLAIN") == (0, MECHANISMS)
        conn.send_raw(kafka_wire.request_frame(kafka_wire.API_METADATA, 1, 2, kafka_wire.int32(-1)))
        assert conn.wait_closed(5.0)
    # A request pipelined behind a failing authentication is never served.
    with kafka_wire.Connection(HOST, broker.port) as conn:
        assert handshake(conn, "PLAIN") == (0, MECHANISMS)
        conn.send_raw(kafka_wire.request_frame(API_SASL_AUTHENTICATE, 1, 2,
                                               kafka_wire.nbytes(f"\0{ADMIN}\0{WRONG_PASSWORD}".encode()))
                      + kafka_wire.request_frame(kafka_wire.API_METADATA, 1, 3, kafka_wire.int32(-1)))
        size = struct.unpack(">i", conn.recv_exact(4))[0]
        reader = kafka_wire.Reader(conn.recv_exact(size))
        assert reader.int32() == 2 and reader.int16() == ERROR_SASL_AUTHENTICATION_FAILED
        assert conn.wait_closed(5.0), "the pipelined Metadata is dropped with the connection"
    # An unsupported mechanism: the enabled list, then the close.
    with kafka_wire.Connection(HOST, broker.port) as conn:
        assert handshake(conn, "GSSAPI") == (ERROR_UNSUPPORTED_SASL_MECHANISM, MECHANISMS)
        assert conn.wait_closed(5.0)


def test_authenticated_connection_answers_sasl_requests_with_illegal_sasl_state(broker):
    with kafka_wire.Connection(HOST, broker.port) as conn:
        error, _, lifetime = plain_login(conn, ADMIN, ADMIN_PASSWORD)
        assert (error, lifetime) == (0, 0), "no re-authentication configured: no session lifetime"
        error, message, _, _ = authenticate(conn, b"\0admin\0again")
        assert (error, message) == (ERROR_ILLEGAL_SASL_STATE,
                                    "SaslAuthenticate request received after successful authentication")
        assert handshake(conn, "PLAIN") == (ERROR_ILLEGAL_SASL_STATE, [])
        assert metadata_v1(conn) == 1, "the connection stays open and served"


# ------------------------------------------------------------------ re-authentication (KIP-368)


def test_sessions_expire_and_reauthenticate(tmp_path):
    broker = sasl_broker(tmp_path, "reauth", "--connections-max-reauth-ms", "2000")
    broker.start()
    try:
        # An expired session is closed at its next request.
        with kafka_wire.Connection(HOST, broker.port) as conn:
            error, _, lifetime = plain_login(conn, ADMIN, ADMIN_PASSWORD)
            assert (error, lifetime) == (0, 2000)
            assert metadata_v1(conn) == 1
            time.sleep(2.3)
            conn.send_raw(kafka_wire.request_frame(kafka_wire.API_METADATA, 1, 99, kafka_wire.int32(-1)))
            assert conn.wait_closed(5.0)
        # Re-authentication on the same connection, as the same principal, renews the session.
        with kafka_wire.Connection(HOST, broker.port) as conn:
            assert scram_login(conn, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD) == (0, None)
            time.sleep(1.2)
            assert scram_login(conn, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD) == (0, None)
            time.sleep(1.2)
            assert metadata_v1(conn) == 1, "2.4 s after the first login, 1.2 s after the second"
        # Another principal may not take over the session.
        admin = sasl_admin(broker)
        upsert = UserScramCredentialUpsertion(ALICE, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                              ALICE_PASSWORD.encode())
        admin.alter_user_scram_credentials([upsert])[ALICE].result(timeout=OP_TIMEOUT_S)
        with kafka_wire.Connection(HOST, broker.port) as conn:
            assert scram_login(conn, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD) == (0, None)
            time.sleep(1.1)
            error, message = scram_login(conn, "SCRAM-SHA-512", ALICE, ALICE_PASSWORD)
            assert error == ERROR_SASL_AUTHENTICATION_FAILED
            assert message == "Cannot change principals during re-authentication from User.admin: User.alice"
            assert conn.wait_closed(5.0)
        # librdkafka re-authenticates by itself: a producer outlives several session lifetimes.
        assert produce_and_read_back(broker, "SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD, count=5)
        producer = confluent_producer(broker, **sasl_conf(broker, "PLAIN", ADMIN, ADMIN_PASSWORD))
        topic = unique_topic("sasl-reauth")
        create_topic(admin, topic)
        failures: list[str] = []
        deadline = time.monotonic() + 5.5
        count = 0
        while time.monotonic() < deadline:
            producer.produce(topic, value=b"r", partition=0,
                             on_delivery=lambda err, _: err is not None and failures.append(str(err)))
            producer.flush(OP_TIMEOUT_S)
            count += 1
            time.sleep(0.25)
        assert failures == [] and count > 10
    finally:
        broker.stop()


# ------------------------------------------------------------------ OAUTHBEARER


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """An RS256 signing key made with `openssl`, its JWKS, and the tokens it signs."""

    def __init__(self, directory: Path, kid: str):
        self.key = directory / f"{kid}.pem"
        self.kid = kid
        subprocess.run(["openssl", "genrsa", "-out", str(self.key), "2048"], check=True, capture_output=True, timeout=60)
        modulus = subprocess.run(["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"], check=True,
                                 capture_output=True, timeout=30).stdout.decode().strip().split("=", 1)[1]
        self.jwk = {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                    "n": b64url(bytes.fromhex(modulus)), "e": "AQAB"}

    def token(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                                   check=True, capture_output=True, timeout=30).stdout
        return f"{signing_input}.{b64url(signature)}"


def test_oauthbearer_tokens_authenticate_and_bad_ones_are_refused(tmp_path):
    issuer = TokenIssuer(tmp_path, "k1")
    stranger = TokenIssuer(tmp_path, "k2")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [issuer.jwk]}))
    broker = sasl_broker(tmp_path, "oauth", "--sasl-enabled-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
                         "--sasl-oauthbearer-jwks-file", str(jwks), "--sasl-oauthbearer-expected-audience", "kafka")
    broker.start()
    try:
        now = int(time.time())
        good = issuer.token({"sub": "svc", "aud": "kafka", "exp": now + 300})
        conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
                "oauth_cb": lambda _config: (good, time.time() + 300)}
        topic = unique_topic("sasl-oauth")
        create_topic(sasl_admin(broker), topic)
        producer = confluent_producer(broker, **conf)
        for i in range(5):
            producer.produce(topic, value=f"o-{i}".encode(), partition=0)
        assert producer.flush(OP_TIMEOUT_S) == 0
        # The session lasts no longer than the token.
        with kafka_wire.Connection(HOST, broker.port) as conn:
            assert handshake(conn, "OAUTHBEARER")[0] == 0
            error, _, _, lifetime = authenticate(conn, f"n,,\x01auth=Bearer {good}\x01\x01".encode())
            assert error == 0 and 290_000 < lifetime <= 300_000, lifetime
            assert metadata_v1(conn) == 1
        bad_tokens = {
            "expired": issuer.token({"sub": "svc", "aud": "kafka", "exp": now - 120}),
            "other audience": issuer.token({"sub": "svc", "aud": "web", "exp": now + 300}),
            "unknown key": stranger.token({"sub": "svc", "aud": "kafka", "exp": now + 300}),
            "tampered": good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),
        }
        for why, token in bad_tokens.items():
            with kafka_wire.Connection(HOST, broker.port) as conn:
                assert handshake(conn, "OAUTHBEARER")[0] == 0
                error, _, challenge, _ = authenticate(conn, f"n,,\x01auth=Bearer {token}\x01\x01".encode())
                assert (error, challenge) == (0, b'{"status":"invalid_token"}'), why
                error, message, _, _ = authenticate(conn, b"\x01")
                assert (error, message) == (ERROR_SASL_AUTHENTICATION_FAILED, '{"status":"invalid_token"}'), why
                assert conn.wait_closed(5.0), why
    finally:
        broker.stop()
    assert good.split(".")[2] not in (broker.log_text() or ""), "no token in the log"


# ------------------------------------------------------------------ sluicectl users


def test_sluicectl_users_manages_scram_credentials(tmp_path):
    sluicectl_bin = os.environ.get("SLUICECTL_BIN") or str(Path(__file__).resolve().parents[2] / "target" /
                                                            "release" / "sluicectl")
    # sluicectl speaks plaintext: the broker has a PLAINTEXT listener beside its SASL one.
    broker = sasl_broker(tmp_path, "users")
    plain_port = free_ports(1)[0]
    broker.listeners += f",PLAINTEXT://{HOST}:{plain_port}"
    broker.start()

    def run(*args: str) -> str:
        env = dict(os.environ, SLUICE_USER_PASSWORD="carol-pw-0d4e")
        proc = subprocess.run([sluicectl_bin, "--bootstrap-server", f"{HOST}:{plain_port}", "--output", "json", *args],
                              capture_output=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout.decode()

    try:
        run("users", "set", "carol", "--mechanism", "SCRAM-SHA-512", "--iterations", "4096")
        described = json.loads(run("users", "describe", "carol"))
        assert described == [{"user": "carol", "credentials": [{"mechanism": "SCRAM-SHA-512", "iterations": 4096}]}]
        assert {entry["user"] for entry in json.loads(run("users", "list"))} == {ADMIN, "carol"}
        with kafka_wire.Connection(HOST, broker.port) as conn:
            assert scram_login(conn, "SCRAM-SHA-512", "carol", "carol-pw-0d4e") == (0, None)
        run("users", "delete", "carol", "--mechanism", "SCRAM-SHA-512")
        assert {entry["user"] for entry in json.loads(run("users", "list"))} == {ADMIN}
    finally:
        broker.stop()
    assert "carol-pw-0d4e" not in (broker.log_text() or "")


# ------------------------------------------------------------------ inter-broker SASL


def test_a_cluster_replicates_over_a_sasl_inter_broker_listener(tmp_path):
    from cluster import Cluster, assert_replicates_in_sync
    cluster = Cluster(tmp_path / "cluster", voters=3)
    for node in cluster.nodes.values():
        (sasl_port,) = free_ports(1)
        node.listeners = f"PLAINTEXT://{HOST}:{node.port},SASL_PLAINTEXT://{HOST}:{sasl_port}"
        config = node.data_dir.parent / "sasl.toml"
        config.write_text(f'add_scram = ["SCRAM-SHA-512=[name={ADMIN},password={ADMIN_PASSWORD}]"]\n')
        node.extra_args += ["--config", str(config), "--inter-broker-listener-name", "SASL_PLAINTEXT",
                            "--sasl-mechanism-inter-broker-protocol", "SCRAM-SHA-512",
                            "--inter-broker-sasl-username", ADMIN]
        node.extra_env["SLUICE_INTER_BROKER_SASL_PASSWORD"] = ADMIN_PASSWORD
    cluster.start()
    try:
        # Every follower authenticates with SCRAM to fetch.
        assert_replicates_in_sync(cluster, unique_topic("isr-sasl"), 200, timeout_s=OP_TIMEOUT_S)
    finally:
        cluster.stop()
    for node in cluster.nodes.values():
        assert ADMIN_PASSWORD not in (node.log_text() or "")


# ------------------------------------------------------------------ secrets


def test_broker_log_holds_no_password(broker):
    # Runs last in this module: every password above went through this broker.
    log = broker.log_text() or ""
    assert log, "the broker logged something"
    for secret in [ADMIN_PASSWORD, ALICE_PASSWORD, WRONG_PASSWORD]:
        assert secret not in log, f"a password reached the broker's log"
