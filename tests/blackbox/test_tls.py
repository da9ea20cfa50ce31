"""TLS listeners: real clients produce and consume over SSL, client certificates are required
and mapped to principals, each listener advertises its own port, certificates reload without a
restart, and a cluster replicates over a TLS inter-broker listener.

Goal: a client configured for Kafka's SSL (confluent-kafka, kafka-python, kafkajs) works
unchanged against the broker; one without a trusted certificate gets nothing when certificates
are required; Metadata answers the port of the listener it was asked on.

Method: each test makes its certificates with the `openssl` command in its temp dir (a CA, the
broker's certificate for 127.0.0.1 and localhost, client certificates, and a second CA nobody
trusts), starts `sluice` with `--listeners` and the TLS flags, and talks to it over loopback.
The readiness check of the fixtures speaks TLS when the client port's listener does.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import kafka_wire
from clients import admin, confluent_consumer, confluent_producer, consume_values, unique_topic
from cluster import Cluster, assert_replicates_in_sync
from conftest import HOST, Broker, free_ports

pytestmark = pytest.mark.sluice_only("sluice's --listeners and TLS flags")

JS_DIR = Path(__file__).resolve().parents[1] / "js"
CLIENT_SUBJECT = "/O=acme/OU=eng/CN=client"
CLIENT_PRINCIPAL = "User:CN=client,OU=eng,O=acme"
OP_TIMEOUT_S = 30.0


def openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"openssl {' '.join(args)}:\n{proc.stderr}"


class Pki:
    """A CA and the certificates it signs, as PEM files in one directory."""

    def __init__(self, directory: Path, name: str):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / f"{name}-ca.pem"
        self.ca_key = self.dir / f"{name}-ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "2", "-subj", f"/CN={name} test CA", "-keyout", str(self.ca_key), "-out", str(self.ca))

    def issue(self, name: str, subject: str, server: bool) -> tuple[Path, Path]:
        """A certificate and key signed by this CA; a server's names 127.0.0.1 and localhost."""
        key, csr, cert = (self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem")
        ext = self.dir / f"{name}.ext"
        usage = "serverAuth,clientAuth" if server else "clientAuth"
        lines = ["basicConstraints=CA:FALSE", f"extendedKeyUsage={usage}"]
        if server:
            lines.append("subjectAltName=IP:127.0.0.1,DNS:localhost")
        ext.write_text("\n".join(lines) + "\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", subject, "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
        return cert, key


@pytest.fixture
def pki(tmp_path) -> Pki:
    return Pki(tmp_path / "pki", "trusted")


def tls_flags(pki: Pki, cert: Path, key: Path, client_auth: str = "none") -> list[str]:
    return ["--ssl-certificate", str(cert), "--ssl-key", str(key), "--ssl-ca", str(pki.ca),
            "--ssl-client-auth", client_auth]


def ssl_context(pki: Pki, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def start_broker(workdir: Path, name: str, listeners: str, flags: list[str], tls_port: bool,
                 context: ssl.SSLContext | None) -> Broker:
    """A broker whose `--listeners` is `listeners` with {port} and {other} filled in; its
    client port runs TLS when `tls_port`."""
    broker = Broker(workdir, name)
    (other,) = free_ports(1)
    broker.other_port = other
    broker.listeners = listeners.format(port=broker.port, other=other)
    broker.extra_args += flags
    broker.extra_env["RUST_LOG"] = "info,sluice_broker::net::connection=debug"
    broker.ready_tls = context if tls_port else None
    broker.start()
    return broker


@pytest.fixture
def brokers():
    started: list[Broker] = []
    yield started
    for broker in started:
        broker.stop()


def ssl_conf(pki: Pki, client: tuple[Path, Path] | None = None) -> dict:
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca)}
    if client is not None:
        conf["ssl.certificate.location"] = str(client[0])
        conf["ssl.key.location"] = str(client[1])
    return conf


def produce_values(broker, conf: dict, topic: str, values: list[bytes]) -> None:
    producer = confluent_producer(broker, **conf, acks="all", **{"message.timeout.ms": 20_000})
    failures = []
    for value in values:
        producer.produce(topic, value=value, partition=0,
                         on_delivery=lambda error, _msg: failures.append(error) if error else None)
    left = producer.flush(OP_TIMEOUT_S)
    assert left == 0 and not failures, f"{left} undelivered, failures {failures[:3]}"


def test_confluent_kafka_produces_and_consumes_over_ssl(tmp_path, pki, brokers):
    cert, key = pki.issue("broker", "/CN=localhost", server=True)
    broker = start_broker(tmp_path / "b", "ssl-only", "SSL://127.0.0.1:{port}", tls_flags(pki, cert, key),
                          tls_port=True, context=ssl_context(pki))
    brokers.append(broker)
    topic = unique_topic("tls")
    create_topic_over(broker, ssl_conf(pki), topic)
    values = [f"secret-{index}".encode() * 20 for index in range(500)]
    produce_values(broker, ssl_conf(pki), topic, values)
    assert consume_values(broker, topic, len(values), OP_TIMEOUT_S, **ssl_conf(pki)) == values


def create_topic_over(broker, conf: dict, topic: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import NewTopic

    client = admin(broker, **conf)
    futures = client.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=OP_TIMEOUT_S)
    for future in futures.values():
        future.result(timeout=OP_TIMEOUT_S)


def test_required_client_certificates_admit_only_trusted_clients(tmp_path, pki, brokers):
    cert, key = pki.issue("broker", "/CN=localhost", server=True)
    client = pki.issue("client", CLIENT_SUBJECT, server=False)
    rogue_ca = Pki(tmp_path / "rogue", "rogue")
    rogue = rogue_ca.issue("rogue-client", "/CN=client", server=False)
    broker = start_broker(tmp_path / "b", "mtls", "SSL://127.0.0.1:{port}",
                          tls_flags(pki, cert, key, "required"), tls_port=True, context=ssl_context(pki, client))
    brokers.append(broker)
    topic = unique_topic("mtls")
    create_topic_over(broker, ssl_conf(pki, client), topic)
    produce_values(broker, ssl_conf(pki, client), topic, [b"for trusted eyes"])
    log = broker.log_text() or ""
    assert f"principal={CLIENT_PRINCIPAL}" in log, "the certificate's subject is the principal"

    for name, conf in [("no certificate", ssl_conf(pki)), ("a certificate of another CA", ssl_conf(pki, rogue))]:
        consumer = confluent_consumer(broker, **conf, **{"socket.timeout.ms": 5_000})
        try:
            from confluent_kafka import TopicPartition

            consumer.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                assert message is None or message.error() is not None, f"{name}: got data {message.value()!r}"
        finally:
            consumer.close()
        # At the TLS level: the handshake is refused, no request gets an answer.
        context = ssl_context(pki, None if name == "no certificate" else rogue)
        with pytest.raises((ssl.SSLError, ConnectionError, kafka_wire.WireError, OSError)):
            with kafka_wire.Connection(HOST, broker.port, timeout_s=5) as conn:
                conn.sock = context.wrap_socket(conn.sock, server_hostname=HOST)
                kafka_wire.api_versions(conn)


def metadata_ports(broker, conf: dict) -> set[int]:
    client = admin(broker, **conf)
    metadata = client.list_topics(timeout=OP_TIMEOUT_S)
    return {b.port for b in metadata.brokers.values()}


def test_each_listener_advertises_its_own_port(tmp_path, pki, brokers):
    cert, key = pki.issue("broker", "/CN=localhost", server=True)
    broker = start_broker(tmp_path / "b", "two-listeners", "PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{other}",
                          tls_flags(pki, cert, key), tls_port=False, context=None)
    brokers.append(broker)
    assert metadata_ports(broker, {}) == {broker.port}
    ssl_bootstrap = {"bootstrap.servers": f"{HOST}:{broker.other_port}"}
    client = admin(broker, **ssl_conf(pki), **ssl_bootstrap)
    ports = {b.port for b in client.list_topics(timeout=OP_TIMEOUT_S).brokers.values()}
    assert ports == {broker.other_port}
    # DescribeConfigs names every listener as Kafka does.
    from confluent_kafka.admin import ConfigResource, ResourceType

    futures = admin(broker).describe_configs([ConfigResource(ResourceType.BROKER, "1")])
    (entries,) = [future.result(timeout=OP_TIMEOUT_S) for future in futures.values()]
    advertised = entries["advertised.listeners"].value
    assert advertised == f"PLAINTEXT://127.0.0.1:{broker.port},SSL://127.0.0.1:{broker.other_port}"


def test_kafka_python_produces_and_consumes_over_ssl(tmp_path, pki, brokers):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    cert, key = pki.issue("broker", "/CN=localhost", server=True)
    client = pki.issue("client", CLIENT_SUBJECT, server=False)
    broker = start_broker(tmp_path / "b", "kafka-python", "SSL://127.0.0.1:{port}",
                          tls_flags(pki, cert, key, "requested"), tls_port=True, context=ssl_context(pki))
    brokers.append(broker)
    topic = unique_topic("kp-tls")
    create_topic_over(broker, ssl_conf(pki), topic)
    security = {"security_protocol": "SSL", "ssl_cafile": str(pki.ca), "ssl_certfile": str(client[0]),
                "ssl_keyfile": str(client[1]), "ssl_check_hostname": True}
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=20_000, **security)
    values = [f"kp-{index}".encode() for index in range(200)]
    try:
        for value in values:
            producer.send(topic, value=value, partition=0)
        producer.flush(timeout=OP_TIMEOUT_S)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10_000, **security)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek(TopicPartition(topic, 0), 0)
        got = []
        deadline = time.monotonic() + OP_TIMEOUT_S
        while len(got) < len(values) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [record.value for record in records]
    finally:
        consumer.close()
    assert got == values
    assert f"principal={CLIENT_PRINCIPAL}" in (broker.log_text() or ""), "a requested certificate maps too"


def test_kafkajs_produces_over_ssl(tmp_path, pki, brokers):
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (JS_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs is not installed: run ./tests/run setup"
    cert, key = pki.issue("broker", "/CN=localhost", server=True)
    client = pki.issue("client", CLIENT_SUBJECT, server=False)
    broker = start_broker(tmp_path / "b", "kafkajs", "SSL://127.0.0.1:{port}",
                          tls_flags(pki, cert, key, "required"), tls_port=True, context=ssl_context(pki, client))
    brokers.append(broker)
    topic = unique_topic("js-tls")
    create_topic_over(broker, ssl_conf(pki, client), topic)
    values = [f"js-{index}" for index in range(50)]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"brokers": [broker.bootstrap], "topic": topic, "ca": str(pki.ca),
                                   "cert": str(client[0]), "key": str(client[1]), "values": values}))
    proc = subprocess.run([node, str(JS_DIR / "tls_driver.js"), str(request)], capture_output=True, timeout=90,
                          cwd=JS_DIR)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    answer = json.loads(proc.stdout)
    assert answer["offsets"] == list(range(len(values)))
    assert [(b["host"], b["port"]) for b in answer["brokers"]] == [(HOST, broker.port)]
    got = consume_values(broker, topic, len(values), OP_TIMEOUT_S, **ssl_conf(pki, client))
    assert got == [value.encode() for value in values]


def peer_subject(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            subject = dict(item for rdn in tls.getpeercert()["subject"] for item in rdn)
            return subject["commonName"]


def test_certificates_reload_without_a_restart(tmp_path, pki, brokers):
    cert, key = pki.issue("broker", "/CN=localhost", server=True)
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    context = ssl_context(pki)
    broker = start_broker(tmp_path / "b", "reload", "SSL://127.0.0.1:{port}",
                          tls_flags(pki, live_cert, live_key), tls_port=True, context=context)
    brokers.append(broker)
    assert peer_subject(broker.port, context) == "localhost"
    old = kafka_wire.Connection(HOST, broker.port, timeout_s=5)
    old.sock = context.wrap_socket(old.sock, server_hostname=HOST)
    try:
        assert kafka_wire.api_versions(old)[0] == kafka_wire.ERROR_NONE
        # A broken key is refused and the old certificate stays.
        live_key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        time.sleep(1.2)
        assert peer_subject(broker.port, context) == "localhost"
        new_cert, new_key = pki.issue("broker-2", "/CN=127.0.0.1", server=True)
        shutil.copy(new_key, live_key)
        shutil.copy(new_cert, live_cert)
        deadline = time.monotonic() + 10
        seen = "localhost"
        while seen == "localhost" and time.monotonic() < deadline:
            time.sleep(0.3)
            seen = peer_subject(broker.port, context)
        assert seen == "127.0.0.1", "a new connection sees the new certificate"
        assert kafka_wire.api_versions(old)[0] == kafka_wire.ERROR_NONE, "the old connection still works"
    finally:
        old.close()
    assert "do not load" in (broker.log_text() or ""), "the broken key was reported"


def test_a_cluster_replicates_over_a_tls_inter_broker_listener(tmp_path, pki):
    cert, key = pki.issue("broker", "/CN=localhost", server=True)
    cluster = Cluster(tmp_path / "cluster", voters=3)
    for node in cluster.nodes.values():
        (ssl_port,) = free_ports(1)
        node.listeners = f"PLAINTEXT://127.0.0.1:{node.port},SSL://127.0.0.1:{ssl_port}"
        node.extra_args += [*tls_flags(pki, cert, key, "required"), "--inter-broker-listener-name", "SSL"]
    cluster.start()
    try:
        # Every replica fetches over TLS.
        assert_replicates_in_sync(cluster, unique_topic("isr-tls"), 300, timeout_s=OP_TIMEOUT_S)
    finally:
        cluster.stop()


def test_plaintext_client_on_a_tls_listener_gets_nothing(tmp_path, pki, brokers):
    cert, key = pki.issue("broker", "/CN=localhost", server=True)
    broker = start_broker(tmp_path / "b", "garbage", "SSL://127.0.0.1:{port}", tls_flags(pki, cert, key),
                          tls_port=True, context=ssl_context(pki))
    brokers.append(broker)
    with pytest.raises((kafka_wire.WireError, ConnectionError, OSError)):
        with kafka_wire.Connection(HOST, broker.port, timeout_s=5) as conn:
            kafka_wire.api_versions(conn)
    assert peer_subject(broker.port, ssl_context(pki)) == "localhost", "the listener still serves TLS clients"
    broker.assert_running()


def test_listeners_and_listen_together_are_refused(tmp_path):
    broker = Broker(tmp_path / "b", "refused")
    broker.extra_args += ["--listeners", f"PLAINTEXT://127.0.0.1:{broker.port}"]
    with pytest.raises(Exception, match="cannot be combined"):
        broker.start(timeout_s=10)
