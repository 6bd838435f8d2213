"""Time reader + normalizer + engine over one generated fleet, for paired before/after runs of two trees.

Run the same fleet with the current tree and with an older one extracted beside it, alternating, and compare the
medians (only the ratio means anything on a shared machine):

    git archive <old-rev> layers | tar -x -C /tmp/old
    for i in 1 2 3; do
      .venv/bin/python bench/before_after.py /tmp/fleet
      PYTHONPATH=/tmp/old/layers .venv/bin/python bench/before_after.py /tmp/fleet
    done

``--profile`` adds a cProfile of one more run, sorted by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

from chainwatch.engine import Engine
from chainwatch.policy import load_policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import read_path
from chainwatch.state.memory import InMemoryStore


def run(fleet: Path) -> Engine:
    engine, normalizer = Engine(load_policy(), InMemoryStore()), Normalizer()
    for host in sorted((fleet / "hosts").iterdir()):
        for path in sorted(host.iterdir()):
            for event in normalizer.run(read_path(path), host.name):
                engine.ingest(event)
    engine.flush()
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fleet", type=Path, help="a folder written by bench/fleet.py")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    engine = run(args.fleet)
    stats = engine.stats
    print(f"total {time.perf_counter() - start:.2f} s  events {stats.events}  admitted {stats.admitted}  "
          f"assemblies {stats.assemblies}  findings {len(engine.all_findings())}")
    if args.profile:
        cProfile.runctx("run(args.fleet)", globals(), {"args": args}, "/tmp/before_after.prof")
        pstats.Stats("/tmp/before_after.prof").sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
