"""What the correlate function costs in DynamoDB and CPU, on one generated fleet: paired runs of two trees.

Every measurement runs the real Lambda path: Kinesis records as the Lambda event (base64 data, Powertools'
``KinesisStreamEvent``), ``CorrelateRuntime.handle`` -> ``process_batch`` -> ``DynamoStateStore`` under moto
``mock_aws`` with the tables of ``template.yaml``. One raw line per Kinesis record (partition key = host), in
fleet-wide arrival order, cut into batches.

    .venv/bin/python bench/fleet.py /tmp/fleet --hosts 8 --minutes 150 --eps 1 --chains 6 --seed 12
    git archive <old-rev> layers | tar -x -C /tmp/old
    .venv/bin/python bench/pipeline_state.py /tmp/fleet --pair /tmp/old/layers --batch 500 --runs 2
    .venv/bin/python bench/pipeline_state.py /tmp/fleet --overhead --batch 500   # correlate path vs detect

``--pair`` runs the worker alternately with this tree's ``layers`` and the other one (fresh interpreters) and
prints both and their ratios. Counted per batch: every DynamoDB request (a botocore ``before-call`` hook, with the
``host#`` keys it names, so requests per touched host per batch are exact), TransactWriteItems request bodies
(``before-send``), Query response bodies (``after-call``), and estimated capacity units (a transactional write is
2 WCU per started KiB of each item written; a strongly consistent read 1 RCU per started 4 KiB returned).

``--overhead`` times, in one interpreter on the same records: ``Engine`` + ``InMemoryStore`` (what ``detect``
runs: read, normalize, ingest, flush) and the correlate path above, with the time inside botocore (moto included)
measured and subtracted; and prints a cProfile of the correlate path.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import math
import os
import pstats
import statistics
import subprocess
import sys
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from compare import AwsTimer  # bench/ is on sys.path when this file runs

ROOT = Path(__file__).resolve().parents[1]


def fleet_lines(fleet: Path, limit: int) -> list[tuple[str, bytes]]:
    """(host, raw line) of every record of the fleet in arrival order (ties in file order)."""
    lines: list[tuple[int, str, bytes]] = []
    for host_dir in sorted((fleet / "hosts").iterdir()):
        for path in sorted(p for p in host_dir.iterdir() if p.is_file()):
            arrivals = array("q")
            arrivals.frombytes((path.parent / ".arrival" / f"{path.name}.i64").read_bytes())
            lines.extend(zip(arrivals, [host_dir.name] * len(arrivals), path.read_bytes().splitlines(), strict=True))
    lines.sort(key=lambda item: item[0])
    return [(host, line) for _, host, line in lines[:limit or None]]


def lambda_events(lines: list[tuple[str, bytes]], batch: int) -> list[dict[str, Any]]:
    """The Lambda Kinesis events a stream of these records would deliver, ``batch`` records each."""
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/bench"
    records = [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": host, "sequenceNumber": str(10**20 + i),
                    "data": base64.b64encode(line).decode(), "approximateArrivalTimestamp": 1.0},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"shardId-000000000000:{10**20 + i}",
        "eventName": "aws:kinesis:record", "awsRegion": "us-east-1", "eventSourceARN": arn,
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/bench"} for i, (host, line) in enumerate(lines)]
    return [{"Records": records[i:i + batch]} for i in range(0, len(records), batch)]


def _hosts(value: Any, found: set[str]) -> None:
    if isinstance(value, str):
        if value.startswith("host#"):
            found.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _hosts(item, found)
    elif isinstance(value, list):
        for item in value:
            _hosts(item, found)


def _item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item in request JSON: names plus values (binary decoded)."""
    size = 0
    for name, typed in item.items():
        size += len(name)
        ((kind, value),) = typed.items()
        size += len(base64.b64decode(value)) if kind == "B" else len(str(value))
    return size


class Meter:
    """DynamoDB requests, bodies and estimated capacity, through botocore hooks on every client made from now."""

    def __init__(self) -> None:
        self.batch_calls: Counter[str] = Counter()  # host -> requests in the current batch
        self.by_operation: Counter[str] = Counter()
        self.write_bodies: list[int] = []
        self.read_bodies: list[int] = []
        self.wcu = 0
        self.rcu = 0
        self.state_items_put = 0
        self.state_items_deleted = 0

    def install(self) -> None:
        import botocore.session

        original = botocore.session.Session.create_client
        meter = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            if client.meta.service_model.service_name == "dynamodb":
                client.meta.events.register("before-call.dynamodb", meter.before_call)
                client.meta.events.register("before-send.dynamodb", meter.before_send)
                client.meta.events.register("after-call.dynamodb", meter.after_call)
            return client

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]

    def before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.by_operation[model.name] += 1
        if model.name not in ("Query", "TransactWriteItems"):
            return  # the coverage counters' UpdateItem (readiness, once per host per interval) is not state I/O
        found: set[str] = set()
        _hosts(orjson.loads(params.get("body") or b"{}"), found)
        for host in found:
            self.batch_calls[host] += 1

    def before_send(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        name = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]
        if name != "TransactWriteItems":
            return
        body = request.body or b""
        self.write_bodies.append(len(body))
        for entry in orjson.loads(body)["TransactItems"]:
            if "Put" in entry:
                self.wcu += 2 * math.ceil(_item_bytes(entry["Put"]["Item"]) / 1024)
                self.state_items_put += "pk" in entry["Put"]["Item"]
            else:  # a delete or condition check: at least one unit (a deleted delta is a few hundred bytes)
                self.wcu += 2
                self.state_items_deleted += "Delete" in entry

    def after_call(self, model: Any, http_response: Any, **_: Any) -> None:
        if model.name == "Query":
            size = len(http_response.content or b"")
            self.read_bodies.append(size)
            self.rcu += max(1, math.ceil(size / 4096))


def _runtime(tables: Any, cold: bool = False) -> Any:
    from chainwatch.app.runtime import Clients, CorrelateRuntime
    from chainwatch.app.settings import Settings
    from chainwatch.policy import load_policy
    from chainwatch.readiness.coverage import CoverageBuffer
    from chainwatch.state.dynamodb import DynamoStateStore, make_models

    settings = Settings(tables=tables)
    policy = load_policy()
    import inspect

    options: dict[str, Any] = {}
    if cold and "cache_bytes" in inspect.signature(DynamoStateStore).parameters:
        options["cache_bytes"] = 0  # every load reads the stored state (a cold container for every batch)
    return CorrelateRuntime(settings, policy, DynamoStateStore(make_models(tables), **options), Clients(settings),
                            CoverageBuffer(policy))


def _aws(prefix: str) -> Any:
    import boto3

    from chainwatch.app.local import create_resources
    from chainwatch.state.dynamodb import Tables

    names = create_resources(ROOT / "template.yaml", boto3.session.Session(region_name="us-east-1"), None,
                             prefix=prefix)
    return Tables(state=names["ChainStateTable"], findings=names["FindingsTable"],
                  deliveries=names["DeliveriesTable"], region="us-east-1")


def _env() -> None:
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ.pop("AWS_ENDPOINT_URL", None)


def worker(fleet: Path, batch: int, limit: int, cold: bool = False) -> dict[str, Any]:
    """The correlate path over the fleet under moto, every DynamoDB request counted (see the module docstring)."""
    _env()
    from moto import mock_aws

    import chainwatch

    lines = fleet_lines(fleet, limit)
    events = lambda_events(lines, batch)
    meter = Meter()
    meter.install()
    timer = AwsTimer()
    timer.install()
    with mock_aws():
        runtime = _runtime(_aws("bench"), cold)
        per_host_batch: list[int] = []
        touched = writes = compactions = findings = conflicts = 0
        began = time.perf_counter()
        for event in events:
            meter.batch_calls.clear()
            report = runtime.handle(event)
            per_host_batch.extend(meter.batch_calls.values())
            touched += report.hosts_touched
            writes += report.state_writes
            compactions += getattr(report, "compactions", report.state_writes)
            findings += report.findings_written
            conflicts += report.conflicts
        seconds = time.perf_counter() - began
        outbox = sorted((str(i.finding_id), int(i.revision), str(i.digest))
                        for i in runtime.store.models.findings.scan())
    writes_n = max(writes, 1)
    return {
        "tree": str(Path(chainwatch.__file__).resolve().parents[1]),
        "records": len(lines), "batches": len(events), "batch_size": batch,
        "host_batches_touched": touched, "state_writes": writes, "compactions": compactions,
        "conflicts": conflicts, "findings_written": findings,
        "requests": sum(meter.by_operation.values()), "by_operation": dict(meter.by_operation),
        "requests_per_touched_host_batch_mean": sum(per_host_batch) / max(len(per_host_batch), 1),
        "requests_per_touched_host_batch_max": max(per_host_batch, default=0),
        "write_bytes_total": sum(meter.write_bodies),
        "write_bytes_per_batch": sum(meter.write_bodies) / len(events),
        "write_bytes_per_commit_mean": sum(meter.write_bodies) / writes_n,
        "write_bytes_per_commit_max": max(meter.write_bodies, default=0),
        "read_bytes_per_query_mean": sum(meter.read_bodies) / max(len(meter.read_bodies), 1),
        "read_bytes_per_query_max": max(meter.read_bodies, default=0),
        "wcu_estimated": meter.wcu, "rcu_estimated": meter.rcu,
        "state_items_put": meter.state_items_put, "state_items_deleted": meter.state_items_deleted,
        "seconds": seconds, "seconds_in_botocore": timer.seconds,
        "us_per_record_excluding_botocore": 1e6 * (seconds - timer.seconds) / len(lines),
        "outbox_digest": _digest(outbox),
    }


def _digest(value: Any) -> str:
    import hashlib

    return hashlib.sha256(orjson.dumps(value)).hexdigest()[:16]


def overhead(fleet: Path, batch: int, limit: int, cold: bool = False) -> dict[str, Any]:
    """detect's engine vs the correlate path on the same records, per record; and a cProfile of the latter."""
    _env()
    from moto import mock_aws

    from chainwatch.engine import Engine
    from chainwatch.policy import load_policy
    from chainwatch.sources import Normalizer
    from chainwatch.sources.reader import read_bytes
    from chainwatch.state.memory import InMemoryStore

    lines = fleet_lines(fleet, limit)
    events = lambda_events(lines, batch)
    policy = load_policy()

    def detect() -> int:
        engine, normalizer = Engine(policy, InMemoryStore()), Normalizer()
        for host, line in lines:
            for event in normalizer.run(read_bytes(line, host), host):
                engine.ingest(event)
        return len(engine.flush())

    began = time.perf_counter()
    detect()
    detect_s = time.perf_counter() - began
    timer = AwsTimer()
    timer.install()
    with mock_aws():
        runtime = _runtime(_aws("overhead"), cold)
        began = time.perf_counter()
        for event in events:
            runtime.handle(event)
        correlate_s = time.perf_counter() - began
        botocore_s = timer.seconds
    with mock_aws():
        runtime = _runtime(_aws("profile"), cold)
        profiler = cProfile.Profile()
        profiler.enable()
        for event in events:
            runtime.handle(event)
        profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats("chainwatch", 30)
    n = len(lines)
    return {
        "records": n, "batch_size": batch,
        "detect_us_per_record": 1e6 * detect_s / n,
        "correlate_us_per_record": 1e6 * correlate_s / n,
        "correlate_us_per_record_excluding_botocore": 1e6 * (correlate_s - botocore_s) / n,
        "ratio_excluding_botocore": (correlate_s - botocore_s) / detect_s,
        "ratio_including_moto": correlate_s / detect_s,
        "profile": text.getvalue(),
    }


def spawn(layers: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(layers)}
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(command, capture_output=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"worker failed:\n{done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return result


_ROWS = [
    ("records", "{:,.0f}"), ("batches", "{:,.0f}"), ("host_batches_touched", "{:,.0f}"), ("state_writes", "{:,.0f}"),
    ("compactions", "{:,.0f}"), ("conflicts", "{:,.0f}"), ("findings_written", "{:,.0f}"), ("requests", "{:,.0f}"),
    ("requests_per_touched_host_batch_mean", "{:.2f}"), ("requests_per_touched_host_batch_max", "{:.0f}"),
    ("write_bytes_per_batch", "{:,.0f}"), ("write_bytes_per_commit_mean", "{:,.0f}"),
    ("write_bytes_per_commit_max", "{:,.0f}"), ("read_bytes_per_query_mean", "{:,.0f}"),
    ("read_bytes_per_query_max", "{:,.0f}"), ("wcu_estimated", "{:,.0f}"), ("rcu_estimated", "{:,.0f}"),
    ("us_per_record_excluding_botocore", "{:.1f}"), ("outbox_digest", "{}"),
]


def render_pair(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> str:
    out = ["| measure | before | after | after / before |", "|---|---:|---:|---:|"]
    for key, fmt in _ROWS:
        a = [r[key] for r in old]
        b = [r[key] for r in new]
        if isinstance(a[0], str):
            out.append(f"| {key} | {a[0]} | {b[0]} | {'same' if a[0] == b[0] else 'DIFFERENT'} |")
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        ratio = f"{mb / ma:.3f}" if ma else "-"
        out.append(f"| {key} | {fmt.format(ma)} | {fmt.format(mb)} | {ratio} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fleet", type=Path, help="a folder written by bench/fleet.py")
    parser.add_argument("--batch", type=int, default=500, help="Kinesis records per invocation")
    parser.add_argument("--limit", type=int, default=0, help="only the first N records (0: all)")
    parser.add_argument("--pair", type=Path, help="the other tree's layers/ folder (the 'before')")
    parser.add_argument("--runs", type=int, default=1, help="paired runs, alternating (medians reported)")
    parser.add_argument("--overhead", action="store_true", help="correlate path vs detect, and a cProfile")
    parser.add_argument("--cold", action="store_true",
                        help="keep no state between batches (each load reads the stored state, as a cold container)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    common = [str(args.fleet), "--batch", str(args.batch), "--limit", str(args.limit), *(["--cold"] * args.cold)]
    if args.pair:
        old: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        for _ in range(args.runs):
            old.append(spawn(args.pair.resolve(), *common))
            new.append(spawn(ROOT / "layers", *common))
        if args.json:
            args.json.write_bytes(orjson.dumps({"before": old, "after": new}, option=orjson.OPT_INDENT_2))
        print(render_pair(old, new))
        return
    if args.overhead:
        result = overhead(args.fleet, args.batch, args.limit, args.cold)
        print(result.pop("profile"), file=sys.stderr)
        print(orjson.dumps(result).decode())
        return
    print(orjson.dumps(worker(args.fleet, args.batch, args.limit, args.cold)).decode())


if __name__ == "__main__":
    main()
