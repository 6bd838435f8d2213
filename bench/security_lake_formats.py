"""Security Lake sink: Parquet vs gzip'd JSON lines, side by side in one run on the same findings.

For batches of 1, 10 and 100 findings (the pinned test findings, re-identified and spread over one day) it renders
each format exactly as the sink does (``render_parquet`` for the batch's one object, ``render_record`` per finding
for ``json``) and reports bytes written, objects written and render time (median of repeats), then the one-time
cost of importing pyarrow in a fresh interpreter (what a cold Lambda pays once, only when the sink writes Parquet).

    .venv/bin/python bench/security_lake_formats.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers"))

from chainwatch.sinks.base import Delivery  # noqa: E402
from chainwatch.sinks.security_lake import render_parquet, render_record  # noqa: E402

FINDINGS = ROOT / "tests" / "functional" / "sinks" / "data" / "aws_sinks_findings.jsonl"


def batch(size: int) -> list[Delivery]:
    docs = [json.loads(line) for line in FINDINGS.read_text().splitlines() if line.strip()]
    out = []
    for i in range(size):
        doc = copy.deepcopy(docs[i % len(docs)])
        uid = f"cw-{i:032x}"
        doc["finding_info"]["uid"] = doc["metadata"]["uid"] = uid
        doc["time"] = doc["finding_info"]["last_seen_time"] = 1_758_153_600_000 + i * 600_000
        out.append(Delivery(uid, 1, doc))
    return out


def median_seconds(func: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    render_parquet(batch(1))  # import pyarrow and warm it up outside the timings
    print(f"{'findings':>8} {'json bytes':>11} {'parquet bytes':>14} {'bytes p/j':>9} {'json objs':>9} "
          f"{'pq objs':>7} {'json ms':>8} {'parquet ms':>10} {'time p/j':>8}")
    for size in (1, 10, 100):
        items = batch(size)
        json_bytes = sum(len(render_record(d)) for d in items)
        parquet_bytes = len(render_parquet(items))
        json_s = median_seconds(lambda items=items: [render_record(d) for d in items], args.repeat)
        parquet_s = median_seconds(lambda items=items: render_parquet(items), args.repeat)
        print(f"{size:>8} {json_bytes:>11,} {parquet_bytes:>14,} {parquet_bytes / json_bytes:>9.2f} {size:>9} "
              f"{1:>7} {json_s * 1000:>8.1f} {parquet_s * 1000:>10.1f} {parquet_s / json_s:>8.2f}")
    code = "import time; t = time.perf_counter(); import pyarrow.parquet; print(time.perf_counter() - t)"
    cold = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
            for _ in range(5)]
    print(f"cold import of pyarrow.parquet: {statistics.median(cold) * 1000:.0f} ms (median of 5 fresh interpreters)")


if __name__ == "__main__":
    main()
