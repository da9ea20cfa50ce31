#!/usr/bin/env python3
"""Long crash loop against the release broker: `tests/reliability/crash_loop.py --cycles 1000`.

Goal and checks: see tests/blackbox/crashloop.py. Runs one broker (target/release/sluice, or
SLUICE_BIN) on a fresh data directory under --workdir, prints one line per cycle and a JSON
summary at the end, and exits non-zero at the first lost or changed acknowledged record (the
broker log and data directory are kept for inspection). Run with the test venv:
    tests/.venv/bin/python tests/reliability/crash_loop.py --cycles 1000 --seed 7
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "blackbox"))

from conftest import Broker  # noqa: E402
from crashloop import CrashLoop  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--full-check-every", type=int, default=25)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this many minutes (at a cycle boundary, after a full check)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-crash-loop-"))
    broker = Broker(workdir, "crash-loop")
    print(f"broker data in {broker.data_dir}, log {broker.log_path}", flush=True)
    broker.start()
    loop = CrashLoop(broker, partitions=args.partitions, seed=args.seed, full_check_every=args.full_check_every,
                     log=lambda line: print(f"{time.strftime('%H:%M:%S')} {line}", flush=True))
    try:
        seconds_max = None if args.max_minutes is None else args.max_minutes * 60
        stats = loop.run(args.cycles, seconds_max)
    except AssertionError as error:
        print(f"FAILED after {loop.stats.cycles} cycles (seed {args.seed}): {error}", flush=True)
        return 1
    finally:
        broker.stop()
    print(json.dumps({"seed": args.seed, **dataclasses.asdict(stats)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
