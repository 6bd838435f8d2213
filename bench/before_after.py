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
import inspect
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chainwatch.engine import Engine
from chainwatch.policy import load_policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import read_path
from chainwatch.state.memory import InMemoryStore


def _detect_reader(policy: Any) -> tuple[Normalizer, Callable[[Path], Any]]:
    """The normalizer and reader ``chainwatch detect`` uses in this tree: with the relevance gate and tracked-only
    mapping where the tree has them (issue 12), plain otherwise, so older trees run unchanged."""
    if "tracked_only" in inspect.signature(Normalizer).parameters:
        normalizer = Normalizer(tracked_only=policy)  # type: ignore[call-arg]
        gate = getattr(normalizer, "gate", None)
        return normalizer, lambda path: read_path(path, gate)  # type: ignore[call-arg]
    return Normalizer(), read_path


def run(fleet: Path) -> Engine:
    policy = load_policy()
    engine = Engine(policy, InMemoryStore())
    normalizer, read = _detect_reader(policy)
    for host in sorted((fleet / "hosts").iterdir()):
        for path in sorted(host.iterdir()):
            for event in normalizer.run(read(path), host.name):
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
