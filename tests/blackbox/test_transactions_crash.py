"""Exactly-once under kill -9: a consume-transform-produce loop while brokers are SIGKILLed.

Goal: a read_committed group consumer and a transactional producer that commits its output and
its input offsets together (send_offsets_to_transaction) write every input exactly once, however
the broker crashes: read_committed never shows an aborted record or a torn transaction, no
committed record is lost, and the group's committed offsets match the visible output.

Method: eos_checker.py (the loop, observers and checks). One broker (`own_broker`) is killed
KILLS times at random moments and restarted on its data directory; a three-node cluster
(replication factor 3, min.insync.replicas=2) has CLUSTER_KILLS nodes killed one at a time (the
transaction coordinator's, the group coordinator's, an output leader, or any) and restarted,
waiting for every replica to be in sync before the next kill. Seeded (SLUICE_EOS_SEED); a long
run by hand: `SLUICE_EOS_KILLS=100 pytest -k transactions_crash` (both tests, each bounded by
`seconds_max` below). Against the reference Kafka (--reference kafka) the single-broker run is cut
to REFERENCE_KILLS, each restart being a JVM start; the cluster run is Sluice-only. A failure
prints each violation (ids, offsets, the client's view of the transactions involved), the kills
and the loop's errors; the full report, with the event log and the broker log lines about
transactions, is `eos-report.txt` next to the broker's data directory (the nodes' directories for
the cluster), where the logs and partitions it names can be read (`sluicectl segments dump`).
"""

from __future__ import annotations

import os

import pytest

import eos_checker
from cluster import cluster_fixture  # noqa: F401 - the fixture
from conftest import against_reference

LONG_KILLS = os.environ.get("SLUICE_EOS_KILLS")
KILLS = int(LONG_KILLS or "8")
CLUSTER_KILLS = int(LONG_KILLS or "4")
REFERENCE_KILLS = 4
SEED = int(os.environ.get("SLUICE_EOS_SEED", "20261203"))


def seconds_max(kills: int, per_kill_s: float) -> float:
    """The loop's own bound: it reports instead of hanging the test (see the timeouts below)."""
    return 60 + per_kill_s * kills


SINGLE_BOUND_S = seconds_max(KILLS, 15)
CLUSTER_BOUND_S = seconds_max(CLUSTER_KILLS, 30)


def log(line: str) -> None:
    print(line, flush=True)


# The loop's bound, plus the final settle (up to 90 s) and reads when something is wrong.
@pytest.mark.timeout(SINGLE_BOUND_S + 240)
def test_exactly_once_loop_across_repeated_kill9_of_the_broker(own_broker):
    kills = min(KILLS, REFERENCE_KILLS) if against_reference() else KILLS
    bound = seconds_max(kills, 40 if against_reference() else 15)
    # The report goes next to the broker's data directory and log.
    outcome = eos_checker.run_single(own_broker, kills, SEED, own_broker.data_dir.parent, seconds_max=bound, log=log)
    log(outcome.report())
    assert outcome.ok(), outcome.report()
    assert len(outcome.kills) == kills, outcome.report()
    assert outcome.loop.committed >= kills, f"too few transactions committed to prove anything: {outcome.summary()}"


@pytest.mark.sluice_only("several nodes of one cluster; the reference runs a single node")
@pytest.mark.timeout(CLUSTER_BOUND_S + 240)
def test_exactly_once_loop_across_kill9_of_cluster_nodes(cluster):
    outcome = eos_checker.run_cluster(cluster, CLUSTER_KILLS, SEED, cluster.workdir, seconds_max=CLUSTER_BOUND_S,
                                      log=log)
    log(outcome.report())
    assert outcome.ok(), outcome.report()
    assert len(outcome.kills) == CLUSTER_KILLS, outcome.report()
    assert outcome.loop.committed >= CLUSTER_KILLS, f"too few transactions committed: {outcome.summary()}"
