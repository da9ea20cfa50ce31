"""Crash loop: SIGKILL the broker at random moments under acks=all load, 20 times in a row.

Goal: across repeated crashes on one data directory nothing acknowledged is lost or changed,
offsets stay dense, and a group's committed offsets survive (see crashloop.py for the checks).

Method: crashloop.CrashLoop with a fixed seed (CRASH_LOOP_SEED overrides it, CRASH_LOOP_CYCLES
the cycle count); the long mode is tests/reliability/crash_loop.py. Against the reference Kafka
(--reference kafka) the run is cut to REFERENCE_CYCLES: each of its restarts is a JVM start and
a log recovery of about ten seconds, where sluice restarts in a fraction of one.
"""

from __future__ import annotations

import os

from conftest import against_reference
from crashloop import CrashLoop

CYCLES = int(os.environ.get("CRASH_LOOP_CYCLES", "20"))
REFERENCE_CYCLES = 5
SEED = int(os.environ.get("CRASH_LOOP_SEED", "20240611"))


def test_no_acknowledged_record_or_commit_is_lost_across_repeated_kill9(own_broker):
    cycles = min(CYCLES, REFERENCE_CYCLES) if against_reference() else CYCLES
    loop = CrashLoop(own_broker, partitions=3, seed=SEED, log=lambda line: print(line, flush=True))
    stats = loop.run(cycles)
    print(f"crash loop: {stats}")
    assert stats.cycles == cycles
    assert stats.acked > cycles * 100, f"too little was acknowledged to prove anything: {stats}"
    assert stats.commits_confirmed > 0
