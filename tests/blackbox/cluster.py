"""Several `sluice` processes on loopback forming one cluster, for the multi-broker tests.

Each node is a `Broker` from conftest with a node id, a controller listener and the shared
`--controller-quorum-voters` list; voters run `broker,controller`, extra nodes `broker` alone.
Nodes are launched together and then waited for, since a voter serves clients only once the
quorum has elected a controller and the node has registered. Every node runs one unpinned shard
so that several fit on a small machine, and a short broker session timeout keeps the tests of
fencing fast (the default is Kafka's 9 s).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from conftest import HOST, Broker, free_ports

SESSION_TIMEOUT_MS = 3_000
HEARTBEAT_INTERVAL_MS = 500


class ClusterNode(Broker):
    """One node of a cluster: its Kafka listener, its controller listener, its roles."""

    def __init__(self, workdir: Path, node_id: int, controller_port: int, voters: str, controller: bool):
        super().__init__(workdir, f"node-{node_id}")
        self.node_id = node_id
        self.controller_port = controller_port
        self.voters = voters
        self.roles = "broker,controller" if controller else "broker"
        # Raft's own info lines (every vote, every election) would drown the broker's.
        self.extra_env["RUST_LOG"] = "info,openraft=error"

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--node-id", str(self.node_id),
            "--process-roles", self.roles,
            "--controller-listen", f"{self.host}:{self.controller_port}",
            "--controller-quorum-voters", self.voters,
            "--shards", "1",
            "--pin-shards", "false",
            "--broker-session-timeout-ms", str(SESSION_TIMEOUT_MS),
            "--broker-heartbeat-interval-ms", str(HEARTBEAT_INTERVAL_MS),
        ]

    def metric(self, name: str) -> float | None:
        """One unlabelled gauge from this node's metrics endpoint, None when absent."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None


class Cluster:
    """`voters` combined broker+controller nodes (ids 1..voters), plus broker-only nodes added later."""

    def __init__(self, workdir: Path, voters: int = 3, extra_args: list[str] | None = None,
                 node_class=ClusterNode, addresses: dict[int, str] | None = None):
        """`node_class(workdir, node_id, controller_port, voters, controller)` builds each voter
        (a ClusterNode subclass, e.g. one run in a network namespace); `addresses` are the hosts
        the voters' controller listeners are on, by node id (default 127.0.0.1)."""
        ports = free_ports(voters)
        addresses = addresses or {}
        self.voters = ",".join(f"{node}@{addresses.get(node, HOST)}:{port}"
                               for node, port in zip(range(1, voters + 1), ports))
        self.workdir = workdir
        self.nodes: dict[int, ClusterNode] = {}
        for node_id, port in zip(range(1, voters + 1), ports):
            self.nodes[node_id] = node_class(workdir / f"node-{node_id}", node_id, port, self.voters, True)
            self.nodes[node_id].extra_args += extra_args or []
        self.admins: list[AdminClient] = []

    def start(self) -> None:
        """Launch every node and wait until each serves; a node that cannot start stops the others."""
        for node in self.nodes.values():
            node.launch()
        try:
            for node in self.nodes.values():
                node.wait_ready()
        except BaseException:
            self.stop()
            raise

    def add_broker(self) -> ClusterNode:
        """Start a broker-only node that follows the quorum."""
        node_id = max(self.nodes) + 1
        (port,) = free_ports(1)
        node = ClusterNode(self.workdir / f"node-{node_id}", node_id, port, self.voters, False)
        self.nodes[node_id] = node
        node.start()
        return node

    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes.values() if node.is_running()]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.running())

    def admin(self, *nodes: ClusterNode) -> AdminClient:
        """A new AdminClient bootstrapped from `nodes` (default: every running node)."""
        servers = ",".join(node.bootstrap for node in nodes) if nodes else self.bootstrap
        client = AdminClient({"bootstrap.servers": servers, "broker.address.family": "v4",
                              "socket.timeout.ms": 10_000, "reconnect.backoff.max.ms": 500,
                              # Connection errors to killed nodes are expected here.
                              "log_level": 0})
        self.admins.append(client)
        return client

    def active_controller(self, timeout_s: float = 30.0) -> ClusterNode:
        """The node the running voters agree leads the quorum."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = {node.metric("sluice_controller_active_id") for node in self.running()}
            if len(seen) == 1:
                (active,) = seen
                if active is not None and int(active) in self.nodes and self.nodes[int(active)].is_running():
                    return self.nodes[int(active)]
            time.sleep(0.1)
        raise AssertionError(f"the running nodes never agreed on an active controller within {timeout_s}s")

    def stop(self) -> list[str]:
        """Stop every node; returns the names of nodes that had exited on their own."""
        died = [node.name for node in self.nodes.values()
                if node.proc is not None and node.proc.poll() is not None and not node.stopped_by_test]
        self.admins.clear()
        for node in self.nodes.values():
            try:
                node.stop()
            except Exception:  # noqa: BLE001 - stop the others whatever one did
                pass
        return died

    def log_tails(self) -> str:
        return "\n".join(f"===== {node.name}\n{node.log_tail(30)}" for node in self.nodes.values())


@pytest.fixture(name="cluster")
def cluster_fixture(tmp_path):
    """A started three-voter cluster for one test (import it into a test module to use it)."""
    cluster = Cluster(tmp_path)
    cluster.start()
    try:
        yield cluster
    finally:
        died = cluster.stop()
        if died:
            raise AssertionError(f"nodes exited on their own: {died}\n{cluster.log_tails()}")


def wait_until(what: str, check, timeout_s: float = 30.0, interval_s: float = 0.1):
    """`check()` until it returns something true (which is returned), retrying on errors; fails
    with the last result or error after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # noqa: BLE001 - retried until the deadline
            last = error
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s}s (last: {last!r})")


def sluicectl_binary() -> str:
    """SLUICECTL_BIN, or the release sluicectl (built when needed)."""
    override = os.environ.get("SLUICECTL_BIN")
    if override:
        return override
    root = Path(__file__).resolve().parents[2]
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "sluicectl"], cwd=root, check=True, timeout=1800)
    return str(root / "target" / "release" / "sluicectl")


def assert_replicates_in_sync(cluster: Cluster, topic: str, records: int, timeout_s: float = 30.0) -> None:
    """Creates `topic` with 3 replicas and min.insync.replicas=3, produces `records` acks=all
    records to it and checks that every one was acknowledged and that all three replicas are in
    sync: replication works over whatever inter-broker listener the nodes use."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    client = cluster.admin()
    futures = client.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "3"})],
                                   operation_timeout=timeout_s)
    for future in futures.values():
        future.result(timeout=timeout_s)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "broker.address.family": "v4",
                         "acks": "all", "message.timeout.ms": int(timeout_s * 1000)})
    failures: list = []
    for index in range(records):
        producer.produce(topic, value=f"replicated-{index}".encode(), partition=0,
                         on_delivery=lambda error, _msg: failures.append(error) if error else None)
    assert producer.flush(2 * timeout_s) == 0 and not failures, f"failures {failures[:3]}"
    metadata = client.list_topics(topic, timeout=timeout_s).topics[topic].partitions[0]
    assert sorted(metadata.isrs) == [1, 2, 3], f"every replica in sync, ISR {metadata.isrs}"
