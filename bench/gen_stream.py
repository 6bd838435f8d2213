"""A seeded stream of real-shaped telemetry for throughput benchmarks (not shipped in the Lambda layer).

Templates are the real records bundled with the project (eslogger lines from the mullvad capture, the unified-log
and Elastic samples in ``events/``). Each generated record is a template with its host, pid, pidversion and time
changed, so decoding and mapping costs are those of real records. The mix is tilted towards what Endpoint
Security really emits most (file open/close, exec/fork/exit) with unified-log and network records interleaved.

Usage: ``python bench/gen_stream.py OUT.jsonl --events 200000 --hosts 50 --seed 7``
"""

from __future__ import annotations

import argparse
import copy
import random
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
ESLOGGER = ROOT / "tests" / "unit" / "sources" / "data" / "eslogger_mullvad.jsonl"
UNIFIED = ROOT / "events" / "mac-01" / "unifiedlog.ndjson"
ECS_NET = ROOT / "events" / "mac-01" / "elastic-network.ndjson"


def _load(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            doc = orjson.loads(line)
            if isinstance(doc, dict) and "finished" not in doc:
                out.append(doc)
    return out


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def generate(out: Path, events: int, hosts: int, seed: int) -> int:
    rng = random.Random(seed)
    es = _load(ESLOGGER)
    exit_t, exec_t, fork_t = es[0], es[1], es[2]
    close_t = copy.deepcopy(exit_t)
    close_t["event"] = {"close": {"modified": False, "was_mapped_writable": False,
                                  "target": {"path": "/System/Library/Frameworks/Foundation.framework/Foundation",
                                             "path_truncated": False}}}
    close_t["event_type"] = 12
    open_t = copy.deepcopy(exit_t)
    open_t["event"] = {"open": {"fflag": 1, "file": {"path": "/usr/lib/libSystem.B.dylib", "path_truncated": False}}}
    open_t["event_type"] = 10
    unified = _load(UNIFIED)
    network = [d for d in _load(ECS_NET) if d.get("event", {}).get("action") == "connection_attempted"]
    mix = [(open_t, 30), (close_t, 30), (exec_t, 8), (fork_t, 8), (exit_t, 8)]
    mix += [(u, 1) for u in unified] + [(n, 3) for n in network]
    weights = [w for _, w in mix]
    templates = [t for t, _ in mix]
    start = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
    step = 50_000_000
    with out.open("wb") as handle:
        for i in range(events):
            doc = copy.deepcopy(rng.choices(templates, weights)[0])
            host = f"mac-{rng.randrange(hosts):05d}"
            now = start + i * step // max(hosts, 1) + rng.randrange(step)
            pid = rng.randrange(300, 99_999)
            if "event_type" in doc:
                doc["time"] = _iso(now)
                token = doc["process"]["audit_token"]
                version = rng.randrange(1, 10**6)
                if isinstance(token, list):  # macOS 26 form: [auid, euid, egid, ruid, rgid, pid, asid, pidversion]
                    token[5], token[7] = pid, version
                else:
                    token["pid"], token["pidversion"] = pid, version
                # eslogger records carry no host: the benchmark reads them under the file's host (one per file
                # in real use); the host mix is exercised by the unified-log and ECS records.
                handle.write(orjson.dumps(doc) + b"\n")
            elif "eventMessage" in doc:
                doc["processID"] = pid
                handle.write(orjson.dumps(doc) + b"\n")
            else:
                doc["@timestamp"] = _iso(now)
                doc["host"]["name"] = host
                doc["process"]["pid"] = pid
                handle.write(orjson.dumps(doc) + b"\n")
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    generate(args.out, args.events, args.hosts, args.seed)


if __name__ == "__main__":
    main()
