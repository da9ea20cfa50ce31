"""Linux network namespaces for the network-partition tests: one namespace per node, a veth pair
per namespace, a bridge in the host namespace, and the means to cut a node off and heal it.

Layout of one `Network` (X picked at random per run, 1..254, so that two runs never collide):

    host namespace                              namespace sluice-X-nN (one per node N)
    bridge slbrX, 10.213.X.1/24
      +-- slXhN (host end) <---- veth ---->     vethN, 10.213.X.(10+N)/24, and lo

The tests and their clients stay in the host namespace and reach every node through the bridge;
nodes reach each other through it too. `cut(N)` sets the host end of N's veth down: from then on
no frame leaves or reaches N's namespace (established connections simply go silent, as in a real
partition), while N still reaches its own address (its listeners and a client run inside its
namespace with `exec_argv`). `heal(N)` sets it up again.

Only loopback and addresses of 10.213.X.0/24 are used, and only after checking that no address
or route of the host namespace overlaps that subnet. The bridge's creation claims X (it fails if
another run holds it); the bridge's alias names the creating process, so that a later run can
remove what a run killed before its clean-up (pytest-timeout ends a hung run with os._exit)
left behind: `sweep_stale()`. `remove()` is idempotent and runs in the tests' finally.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import time

import kafka_wire
from cluster import ClusterNode
from conftest import STOP_TIMEOUT_S, BrokerError

SUBNET_PREFIX = "10.213"
ALIAS_PREFIX = "sluice-blackbox-netns pid="
COMMAND_TIMEOUT_S = 20.0
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


class NetnsError(Exception):
    """An `ip` command failed."""


def ip_binary() -> str | None:
    return shutil.which("ip", path=SEARCH_PATH)


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run([ip_binary() or "ip", *args], check=check)


def unusable_reason() -> str | None:
    """Why namespaces cannot be used here (not root, no iproute2, no permission), or None."""
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if ip_binary() is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"sluice-probe-{os.getpid()}"
    try:
        done = ip("netns", "add", probe, check=False)
        if done.returncode != 0:
            return f"`ip netns add` failed: {done.stderr.strip()}"
        done = ip("link", "add", f"slp{os.getpid() % 100000}", "type", "veth", "peer", "name", "probe0",
                  "netns", probe, check=False)
        if done.returncode != 0:
            return f"creating a veth pair failed: {done.stderr.strip()}"
        done = ip("link", "add", f"slpb{os.getpid() % 100000}", "type", "bridge", check=False)
        if done.returncode != 0:
            return f"creating a bridge failed: {done.stderr.strip()}"
        return None
    finally:
        ip("link", "del", f"slp{os.getpid() % 100000}", check=False)
        ip("link", "del", f"slpb{os.getpid() % 100000}", check=False)
        ip("netns", "del", probe, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 address (as its network) and non-default route of the host namespace."""
    found = []
    for entry in json.loads(ip("-j", "-4", "addr", "show").stdout or "[]"):
        for info in entry.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{info['local']}/{info.get('prefixlen', 32)}", strict=False))
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "")
        if dst in ("", "default", "0.0.0.0/0"):
            continue
        try:
            found.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
        except ValueError:
            continue
    return found


def sweep_stale() -> list[str]:
    """Remove the networks of runs whose process is gone (bridges whose alias names a dead pid):
    their namespaces (after SIGKILLing, by pid, the processes left in them), links and bridge.
    Returns what was removed."""
    removed = []
    for link in json.loads(ip("-j", "-d", "link", "show", "type", "bridge").stdout or "[]"):
        alias = link.get("ifalias", "")
        name = link.get("ifname", "")
        if not alias.startswith(ALIAS_PREFIX) or not name.startswith("slbr"):
            continue
        try:
            pid = int(alias[len(ALIAS_PREFIX):].split()[0])
            x = int(name[len("slbr"):])
        except (ValueError, IndexError):
            continue
        if _pid_alive(pid):
            continue
        stale = Network(range(1, 10), x=x)
        stale.remove()
        removed.append(f"{name} (pid {pid})")
    return removed


class Network:
    """The namespaces, veths and bridge of one run (see the module docstring)."""

    def __init__(self, node_ids, x: int):
        self.node_ids = list(node_ids)
        self.x = x
        self.bridge = f"slbr{x}"
        self.created = False

    # ------------------------------------------------------------ names and addresses

    @property
    def subnet(self) -> str:
        return f"{SUBNET_PREFIX}.{self.x}.0/24"

    @property
    def gateway(self) -> str:
        return f"{SUBNET_PREFIX}.{self.x}.1"

    def namespace(self, node_id: int) -> str:
        return f"sluice-{self.x}-n{node_id}"

    def address(self, node_id: int) -> str:
        return f"{SUBNET_PREFIX}.{self.x}.{10 + node_id}"

    def host_link(self, node_id: int) -> str:
        return f"sl{self.x}h{node_id}"

    def exec_argv(self, node_id: int, argv: list[str]) -> list[str]:
        """`argv` run inside node_id's namespace (`ip netns exec` execs it: same pid)."""
        return [ip_binary() or "ip", "netns", "exec", self.namespace(node_id), *argv]

    # ------------------------------------------------------------ life

    @classmethod
    def create(cls, node_ids, rng: random.Random | None = None, attempts: int = 30) -> "Network":
        """Claim a free 10.213.X.0/24 (no overlap with the host's addresses and routes, no other
        run's bridge) and build the network on it."""
        rng = rng or random.Random()
        candidates = list(range(1, 255))
        rng.shuffle(candidates)
        last = "no candidate tried"
        for x in candidates[:attempts]:
            subnet = ipaddress.ip_network(f"{SUBNET_PREFIX}.{x}.0/24")
            if any(subnet.overlaps(other) for other in _host_networks()):
                last = f"{subnet} overlaps an address or route of the host"
                continue
            # The bridge claims X: creating it fails if another run holds it.
            done = ip("link", "add", f"slbr{x}", "type", "bridge", check=False)
            if done.returncode != 0:
                last = f"slbr{x}: {done.stderr.strip()}"
                continue
            network = cls(node_ids, x)
            network.created = True
            try:
                network._build()
            except BaseException:
                network.remove()
                raise
            return network
        raise NetnsError(f"found no free {SUBNET_PREFIX}.X.0/24 in {attempts} tries (last: {last})")

    def _build(self) -> None:
        ip("link", "set", "dev", self.bridge, "alias", f"{ALIAS_PREFIX}{os.getpid()}")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", "dev", self.bridge, "up")
        for node_id in self.node_ids:
            ns = self.namespace(node_id)
            ip("netns", "add", ns)
            ip("link", "add", self.host_link(node_id), "type", "veth", "peer", "name", f"veth{node_id}", "netns", ns)
            ip("link", "set", "dev", self.host_link(node_id), "master", self.bridge)
            ip("link", "set", "dev", self.host_link(node_id), "up")
            ip("-n", ns, "addr", "add", f"{self.address(node_id)}/24", "dev", f"veth{node_id}")
            ip("-n", ns, "link", "set", "dev", f"veth{node_id}", "up")
            ip("-n", ns, "link", "set", "dev", "lo", "up")
        self.wait_reachable(timeout_s=15)

    def wait_reachable(self, timeout_s: float) -> None:
        """Until every host end is up with a carrier (the bridge forwards once its ports are up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = {node_id: self._oper_state(node_id) for node_id in self.node_ids}
            if all(state in ("UP", "UNKNOWN") for state in states.values()):
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"veth links not up within {timeout_s}s: {states}")
            time.sleep(0.05)

    def _oper_state(self, node_id: int) -> str:
        found = json.loads(ip("-j", "link", "show", "dev", self.host_link(node_id)).stdout or "[{}]")
        return found[0].get("operstate", "?")

    def cut(self, node_id: int) -> None:
        """Isolate node_id: nothing reaches its namespace or leaves it any more."""
        ip("link", "set", "dev", self.host_link(node_id), "down")

    def heal(self, node_id: int) -> None:
        ip("link", "set", "dev", self.host_link(node_id), "up")

    def is_cut(self, node_id: int) -> bool:
        found = json.loads(ip("-j", "link", "show", "dev", self.host_link(node_id)).stdout or "[{}]")
        return "UP" not in found[0].get("flags", [])

    def remove(self) -> list[str]:
        """Best effort and idempotent: SIGKILL (by pid) whatever still runs in the namespaces,
        delete the namespaces, the host ends (and so the pairs) and the bridge. Returns what
        could not be removed."""
        problems = []
        for node_id in self.node_ids:
            ns = self.namespace(node_id)
            if not os.path.exists(f"/run/netns/{ns}"):
                continue
            pids = ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for node_id in self.node_ids:
            link = self.host_link(node_id)
            if ip("link", "show", "dev", link, check=False).returncode == 0:
                done = ip("link", "del", "dev", link, check=False)
                if done.returncode != 0:
                    problems.append(f"{link}: {done.stderr.strip()}")
            ns = self.namespace(node_id)
            if os.path.exists(f"/run/netns/{ns}"):
                done = ip("netns", "del", ns, check=False)
                if done.returncode != 0:
                    problems.append(f"{ns}: {done.stderr.strip()}")
        if ip("link", "show", "dev", self.bridge, check=False).returncode == 0:
            done = ip("link", "del", "dev", self.bridge, check=False)
            if done.returncode != 0:
                problems.append(f"{self.bridge}: {done.stderr.strip()}")
        self.created = False
        return problems

    def namespaced_node_class(self):
        """The `node_class` for cluster.Cluster whose nodes run in this network's namespaces."""
        network = self

        def build(workdir, node_id: int, controller_port: int, voters: str, controller: bool):
            return NamespacedNode(workdir, node_id, controller_port, voters, controller, network)
        return build

    def leftovers(self) -> list[str]:
        """What of this network still exists (for the clean-up check)."""
        found = []
        for node_id in self.node_ids:
            if os.path.exists(f"/run/netns/{self.namespace(node_id)}"):
                found.append(self.namespace(node_id))
            if ip("link", "show", "dev", self.host_link(node_id), check=False).returncode == 0:
                found.append(self.host_link(node_id))
        if ip("link", "show", "dev", self.bridge, check=False).returncode == 0:
            found.append(self.bridge)
        return found


# ---------------------------------------------------------------- cluster nodes in namespaces

class NamespacedNode(ClusterNode):
    """A cluster node run inside its namespace (`ip netns exec`, which execs: the Popen pid is the
    broker's), listening on and advertising its namespace address for clients, controller and
    metrics; the ports are those ClusterNode picked (free on the host's loopback, and so in a
    fresh namespace too)."""

    def __init__(self, workdir, node_id: int, controller_port: int, voters: str, controller: bool,
                 network: Network):
        self.network = network
        super().__init__(workdir, node_id, controller_port, voters, controller)

    @property
    def host(self) -> str:
        return self.network.address(self.node_id)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        argv = super().command()
        at = argv.index("--metrics-listen")
        argv[at + 1] = f"{self.host}:{self.metrics_port}"
        return self.network.exec_argv(self.node_id, argv)

    def _wait_ready(self, timeout_s: float) -> None:
        """As Broker's: poll until ApiVersions v0 answers on the namespace address."""
        deadline = time.monotonic() + timeout_s
        last_problem = "never accepted a connection"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BrokerError(f"{self.name}: exited with status {code} before it was ready on {self.bootstrap}\n"
                                  f"{self.log_tail()}")
            try:
                with kafka_wire.Connection(self.host, self.port, timeout_s=2.0) as conn:
                    error, versions = kafka_wire.api_versions(conn)
                if error == kafka_wire.ERROR_NONE and versions:
                    self.api_versions = versions
                    return
                last_problem = f"ApiVersions v0 answered error_code {error}"
            except (OSError, kafka_wire.WireError) as error:
                last_problem = repr(error)
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        raise BrokerError(f"{self.name}: not ready on {self.bootstrap} within {timeout_s}s ({last_problem}); "
                          f"killed it\n{self.log_tail()}")
