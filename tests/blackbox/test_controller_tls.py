"""The controller listener over TLS: a cluster whose only listeners are SASL_SSL (clients and
brokers) and SSL (the controller quorum), with the authorizer on, serves real clients, survives
the loss of its active controller, and lets no node without a trusted, authorized certificate
into its quorum.

Goal: Kafka's secure KRaft setup (`listeners=CLIENT://...,CONTROLLER://...`,
`listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SSL`,
`controller.listener.names=CONTROLLER`, `authorizer.class.name`, `super.users`) works as a
Kafka operator writes it: every byte between nodes is encrypted, a new controller is elected
over TLS when the active one dies, and a stranger can neither vote nor register as a broker.

Method: the test makes a CA and one node certificate (subject CN=controller, for 127.0.0.1) with
`openssl`, starts three voters with those listeners, produces and consumes with confluent-kafka
over SASL_SSL as the SCRAM super user, SIGKILLs the active controller, and checks that a
successor is elected and produce goes on. Each controller port answers a TLS client with the
node certificate, and nothing to one without a certificate. Then two broker-only nodes try to join: one whose certificate another CA signed (with
the very subject the super user has), one whose trusted certificate names a principal that is
no super user; each fails to start, the voters log why, and the cluster never lists them.

A second cluster's only listeners are SASL_SSL: clients still use SCRAM, the controller
listener SASL/PLAIN (`sasl.mechanism.controller.protocol=PLAIN`) checked against a users file,
since SCRAM credentials live in the metadata the controllers replicate. It serves the same
produce and consume, elects a successor over SASL_SSL when its active controller is SIGKILLed,
and refuses a node whose controller password is wrong: the voters log the user and Kafka's
reason, and no log holds the password.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clients import consume_values, unique_topic
from cluster import Cluster, ClusterNode, wait_until
from conftest import HOST, free_ports
from test_tls import Pki, peer_subject, ssl_context

pytestmark = pytest.mark.sluice_only("sluice's --controller-listener-names and TLS flags")

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret-c7d2"
NODE_SUBJECT = "/CN=controller"
NODE_PRINCIPAL = "User:CN=controller"
OP_TIMEOUT_S = 30.0
# A node that cannot reach any controller gives up after 15 s of retries; the rest is slack.
REFUSED_EXIT_S = 60.0
WRONG_PASSWORD = "wrong-controller-pw-4e1a"


class SecureNode(ClusterNode):
    """A cluster node whose controller listener is the CONTROLLER entry of `--listeners`."""

    def __init__(self, workdir: Path, node_id: int, controller_port: int, voters: str, controller: bool):
        super().__init__(workdir, node_id, controller_port, voters, controller)
        self.listeners = f"CLIENT://{HOST}:{self.port},CONTROLLER://{HOST}:{controller_port}"

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--controller-listen")
        del command[at:at + 2]
        return command

    def secure(self, pki: Pki, cert: Path, key: Path) -> None:
        config = self.data_dir.parent / "scram.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f'add_scram = ["SCRAM-SHA-512=[name={ADMIN},password={ADMIN_PASSWORD}]"]\n')
        self.extra_args += [
            "--config", str(config),
            "--listener-security-protocol-map", "CLIENT:SASL_SSL,CONTROLLER:SSL",
            "--controller-listener-names", "CONTROLLER",
            "--inter-broker-listener-name", "CLIENT",
            "--sasl-mechanism-inter-broker-protocol", "SCRAM-SHA-512",
            "--inter-broker-sasl-username", ADMIN,
            "--ssl-certificate", str(cert), "--ssl-key", str(key), "--ssl-ca", str(pki.ca),
            "--authorizer", "on",
            "--super-users", f"User:{ADMIN};{NODE_PRINCIPAL}",
        ]
        self.extra_env["SLUICE_INTER_BROKER_SASL_PASSWORD"] = ADMIN_PASSWORD
        self.ready_tls = ssl_context(pki)


class SaslNode(SecureNode):
    """A node whose controller listener runs SASL_SSL with PLAIN, as the inter-broker user."""

    def secure_sasl(self, pki: Pki, cert: Path, key: Path, users: Path, password: str) -> None:
        self.secure(pki, cert, key)
        at = self.extra_args.index("--listener-security-protocol-map")
        self.extra_args[at + 1] = "CLIENT:SASL_SSL,CONTROLLER:SASL_SSL"
        at = self.extra_args.index("--super-users")
        self.extra_args[at + 1] = f"User:{ADMIN}"
        self.extra_args += ["--sasl-plain-users-file", str(users), "--sasl-mechanism-controller-protocol", "PLAIN"]
        self.extra_env["SLUICE_INTER_BROKER_SASL_PASSWORD"] = password


def client_conf(pki: Pki, bootstrap: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": ADMIN,
        "sasl.password": ADMIN_PASSWORD,
        "ssl.ca.location": str(pki.ca),
        "socket.timeout.ms": 10_000,
        "reconnect.backoff.max.ms": 500,
        "log_level": 0,
    }


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("controller-tls")
    pki = Pki(workdir / "pki", "trusted")
    cert, key = pki.issue("node", NODE_SUBJECT, server=True)
    cluster = Cluster(workdir / "cluster", voters=3, node_class=SecureNode)
    for node in cluster.nodes.values():
        node.secure(pki, cert, key)
    cluster.start()
    try:
        yield cluster, pki, (cert, key)
    finally:
        cluster.stop()


def produce(pki: Pki, bootstrap: str, topic: str, values: list[bytes], timeout_ms: int = 30_000) -> None:
    producer = Producer({**client_conf(pki, bootstrap), "acks": "all", "message.timeout.ms": timeout_ms})
    failures: list = []
    for value in values:
        producer.produce(topic, value=value, partition=0,
                         on_delivery=lambda error, _msg: failures.append(error) if error else None)
    left = producer.flush(OP_TIMEOUT_S)
    assert left == 0 and not failures, f"{left} undelivered, failures {failures[:3]}"


def consume(pki: Pki, bootstrap: str, topic: str, count: int) -> list[bytes]:
    return consume_values(SimpleNamespace(bootstrap=bootstrap), topic, count, **client_conf(pki, bootstrap))


def refused_without_certificate(port: int, context: ssl.SSLContext) -> bool:
    """Whether a TLS client that presents no certificate gets nothing from `port` (with TLS 1.3
    the refusal arrives after the client's side of the handshake, at the first read)."""
    try:
        with socket.create_connection((HOST, port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=HOST) as tls:
                tls.sendall(b"\x00" * 8)
                return tls.recv(16) == b""
    except (ssl.SSLError, OSError):
        return True


def test_sasl_ssl_cluster_with_ssl_controller_survives_losing_its_controller(secured):
    cluster, pki, node_pair = secured
    admin = AdminClient(client_conf(pki, cluster.bootstrap))
    topic = unique_topic("controller-tls")
    futures = admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})],
                                  operation_timeout=OP_TIMEOUT_S)
    for future in futures.values():
        future.result(timeout=OP_TIMEOUT_S)
    before = [f"before-{index}".encode() for index in range(100)]
    produce(pki, cluster.bootstrap, topic, before)
    assert consume(pki, cluster.bootstrap, topic, len(before)) == before

    # Every controller listener serves TLS, to a peer with a node certificate only.
    for node in cluster.nodes.values():
        assert peer_subject(node.controller_port, ssl_context(pki, node_pair)) == "controller"
        assert refused_without_certificate(node.controller_port, ssl_context(pki)), f"node {node.node_id}"

    active = cluster.active_controller()
    active.kill9()
    killed_at = time.monotonic()
    successor = cluster.active_controller(timeout_s=OP_TIMEOUT_S)
    assert successor is not active
    print(f"controller failover over TLS: node {successor.node_id} active "
          f"{time.monotonic() - killed_at:.2f}s after node {active.node_id} was killed")

    survivors = ",".join(node.bootstrap for node in cluster.running())
    # A partition led by the killed node gets a new leader once the controller fences it.
    wait_until("a probe is produced after the failover",
               lambda: produce(pki, survivors, topic, [b"probe"], timeout_ms=10_000) or True,
               timeout_s=2 * OP_TIMEOUT_S, interval_s=0.5)
    after = [f"after-{index}".encode() for index in range(100)]
    produce(pki, survivors, topic, after)
    got = consume(pki, survivors, topic, len(before) + len(after) + 1)
    assert got[:len(before)] == before, "what was acknowledged before the failover is kept"
    assert got[-len(after):] == after, "what was acknowledged after the failover is there, in order"
    # The killed node rejoins over TLS.
    active.start()
    wait_until("the restarted node registers", lambda: len(admin.describe_cluster().result(10).nodes) == 3,
               timeout_s=OP_TIMEOUT_S)


def test_nodes_without_a_trusted_authorized_certificate_cannot_join(secured, tmp_path):
    cluster, pki, _ = secured
    rogue_pki = Pki(tmp_path / "rogue", "rogue")
    # The super user's very subject, signed by a CA nobody trusts.
    forged = rogue_pki.issue("forged", NODE_SUBJECT, server=True)
    # Trusted, but no super user.
    stranger = pki.issue("stranger", "/CN=stranger", server=True)
    outsiders = []
    for node_id, (cert, key) in ((11, forged), (12, stranger)):
        (port,) = free_ports(1)
        node = SecureNode(cluster.workdir / f"node-{node_id}", node_id, port, cluster.voters, False)
        node.secure(pki, cert, key)
        node.launch()
        outsiders.append(node)
    try:
        for node in outsiders:
            code = node.proc.wait(timeout=REFUSED_EXIT_S)
            assert code != 0, f"node {node.node_id} started"
            assert "no controller added this node" in node.log_text(), node.log_tail()
    finally:
        for node in outsiders:
            node.stop()
    voter_logs = "".join(node.log_text() or "" for node in cluster.nodes.values())
    assert "TLS handshake failed" in voter_logs
    assert "principal not authorized" in voter_logs and "User:CN=stranger" in voter_logs
    admin = AdminClient(client_conf(pki, cluster.bootstrap))
    listed = {node.id for node in admin.describe_cluster().result(10).nodes}
    assert not listed & {11, 12}, f"an outsider registered: {listed}"


@pytest.fixture
def sasl_only(tmp_path):
    pki = Pki(tmp_path / "pki", "trusted")
    cert, key = pki.issue("node", NODE_SUBJECT, server=True)
    users = tmp_path / "plain-users"
    users.write_text(f"# the nodes' controller logins\n{ADMIN}:{ADMIN_PASSWORD}\n")
    cluster = Cluster(tmp_path / "cluster", voters=3, node_class=SaslNode)
    for node in cluster.nodes.values():
        node.secure_sasl(pki, cert, key, users, ADMIN_PASSWORD)
    cluster.start()
    try:
        yield cluster, pki, (cert, key, users)
    finally:
        cluster.stop()


def test_sasl_ssl_only_cluster_authenticates_its_quorum_with_plain(sasl_only):
    cluster, pki, (cert, key, users) = sasl_only
    admin = AdminClient(client_conf(pki, cluster.bootstrap))
    topic = unique_topic("controller-sasl")
    futures = admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})],
                                  operation_timeout=OP_TIMEOUT_S)
    for future in futures.values():
        future.result(timeout=OP_TIMEOUT_S)
    before = [f"before-{index}".encode() for index in range(50)]
    produce(pki, cluster.bootstrap, topic, before)
    assert consume(pki, cluster.bootstrap, topic, len(before)) == before

    # Each controller port serves TLS without asking for a client certificate, and gives a peer
    # that does not authenticate nothing.
    for node in cluster.nodes.values():
        assert peer_subject(node.controller_port, ssl_context(pki)) == "controller"
        assert refused_without_certificate(node.controller_port, ssl_context(pki)), f"node {node.node_id}"

    # A node with the right certificate but the wrong controller password is refused.
    (port,) = free_ports(1)
    outsider = SaslNode(cluster.workdir / "node-13", 13, port, cluster.voters, False)
    outsider.secure_sasl(pki, cert, key, users, WRONG_PASSWORD)
    outsider.launch()

    def voter_logs() -> str:
        return "".join(node.log_text() or "" for node in cluster.nodes.values())

    try:
        wait_until("the voters refuse the wrong controller password",
                   lambda: "Invalid username or password" in voter_logs(), timeout_s=OP_TIMEOUT_S)
        listed = {node.id for node in admin.describe_cluster().result(10).nodes}
        assert 13 not in listed, f"the outsider registered: {listed}"
    finally:
        outsider.stop()
    logs = voter_logs()
    assert "SASL/PLAIN refused" in logs and f'user="{ADMIN}"' in logs, logs[-3000:]
    assert WRONG_PASSWORD not in logs + (outsider.log_text() or ""), "a password was logged"

    active = cluster.active_controller()
    active.kill9()
    killed_at = time.monotonic()
    successor = cluster.active_controller(timeout_s=OP_TIMEOUT_S)
    assert successor is not active
    print(f"controller failover over SASL_SSL: node {successor.node_id} active "
          f"{time.monotonic() - killed_at:.2f}s after node {active.node_id} was killed")
    survivors = ",".join(node.bootstrap for node in cluster.running())
    wait_until("a probe is produced after the failover",
               lambda: produce(pki, survivors, topic, [b"probe"], timeout_ms=10_000) or True,
               timeout_s=2 * OP_TIMEOUT_S, interval_s=0.5)
    after = [f"after-{index}".encode() for index in range(50)]
    produce(pki, survivors, topic, after)
    got = consume(pki, survivors, topic, len(before) + len(after) + 1)
    assert got[:len(before)] == before and got[-len(after):] == after
