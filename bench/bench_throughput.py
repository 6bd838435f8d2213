"""Normalize and detect throughput against bare JSON decoding of the same lines, side by side in one run.

Prints events/s for: ``json.loads`` per line, ``orjson.loads`` per line, chainwatch ``normalize`` (read + detect
format + map to canonical events) and chainwatch ``detect`` (normalize + engine), and the ratios between them. Each
measurement is the best of ``--repeat`` runs, interleaved, so machine noise hits all of them alike.

Usage: ``python bench/bench_throughput.py [--events 200000] [--hosts 50] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_stream import generate

from chainwatch.engine import Engine
from chainwatch.policy import load_policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import read_path
from chainwatch.state.memory import InMemoryStore


def bare_json(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            json.loads(line)
            count += 1
    return count


def bare_orjson(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            orjson.loads(line)
            count += 1
    return count


def normalize(path: Path) -> int:
    normalizer = Normalizer()
    for _ in normalizer.run(read_path(path), "bench-host"):
        pass
    return normalizer.stats.records


def detect(path: Path) -> int:
    normalizer = Normalizer()
    engine = Engine(load_policy(), InMemoryStore())
    for event in normalizer.run(read_path(path), "bench-host"):
        engine.ingest(event)
    engine.flush()
    return normalizer.stats.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.jsonl"
        generate(path, args.events, args.hosts, seed=7)
        runs: dict[str, list[float]] = {}
        cases: dict[str, Callable[[Path], int]] = {
            "json.loads": bare_json, "orjson.loads": bare_orjson, "chainwatch normalize": normalize,
            "chainwatch detect": detect,
        }
        for _ in range(args.repeat):
            for name, func in cases.items():
                began = time.perf_counter()
                count = func(path)
                elapsed = time.perf_counter() - began
                runs.setdefault(name, []).append(count / elapsed)
    best = {name: max(rates) for name, rates in runs.items()}
    print(f"# {args.events} records, {args.hosts} hosts, best of {args.repeat}; "
          f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}")
    print(f"{'case':<22} {'events/s':>12} {'vs json.loads':>14} {'vs orjson.loads':>16}")
    for name, rate in best.items():
        print(f"{name:<22} {rate:>12,.0f} {rate / best['json.loads']:>13.2f}x {rate / best['orjson.loads']:>15.2f}x")
    print(f"normalize cost relative to bare json.loads: {best['json.loads'] / best['chainwatch normalize']:.2f}x "
          f"slower; relative to orjson.loads: {best['orjson.loads'] / best['chainwatch normalize']:.2f}x slower")


if __name__ == "__main__":
    main()
