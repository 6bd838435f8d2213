"""chainwatch vs the Python ``eql`` engine, side by side in one run on the same generated fleets.

One command: ``python bench/compare.py`` (about 15 minutes on 2 cores) or ``python bench/compare.py --quick``
(about a minute: 10, 300 and 2,000 hosts).
Not part of the test suite; needs ``pip install -r bench/requirements.txt`` for ``eql``.

For each fleet size (10, 73, 1,000 and 10,000 hosts; minutes and events per host per second are scaled so that every
size runs in bounded time, and eql runs stop after ``--eql-cap`` seconds) it generates a fleet with
``bench/fleet.py`` and measures, each in its own subprocess (so that the peak RSS, ``VmHWM``, belongs to one
measurement):

- bare ``orjson.loads`` of every raw line (the floor any JSON reader pays);
- chainwatch ``detect`` in process: reader + Normalizer + Engine over the raw files, every host's files of one
  arrival chunk before the next chunk (the order a continuous pipeline sees), then flush and all findings;
- ``eql``: the fleet converted to slim events first (timed on its own, with the decoding of the slim file
  subtracted from the engine's time), then :class:`eql.PythonEngine` with the AN1316 sequence
  (``bench/eql_peer.py``);
- detections of both against the planted truth: found, missed, false.

Then memory flatness (chainwatch's state and RSS at 25/50/75/100% of a stream six times the window, with eql's
RSS beside it) and pipeline costs: ``chainwatch.pipeline.correlate.process_batch`` under moto with a request-counting
botocore hook, for Kinesis batch sizes 100, 1,000 and 10,000.

Everything is printed as a table of ratios, with the machine noted. ``--work DIR`` keeps the fleets (reused when
their parameters match).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

KINDS = ("eslogger.jsonl", "network.ndjson", "unifiedlog.ndjson")


@dataclass(frozen=True)
class Size:
    hosts: int
    minutes: float
    eps: float
    chains: int


FULL = [Size(10, 60, 20, 36), Size(73, 14, 2, 24), Size(1_000, 8, 2, 240), Size(10_000, 2, 0.5, 600)]
#: Under a minute: every host starts with its login burst (about 20 records), so 10,000 hosts cannot be quick.
QUICK = [Size(10, 10, 6, 12), Size(300, 2, 0.5, 30), Size(2_000, 1, 0.1, 40)]
FLAT_FULL = Size(6, 300, 6, 18)
FLAT_QUICK = Size(3, 130, 1.5, 6)
PIPE_FULL = (Size(50, 12, 10, 20), 20_000)
PIPE_QUICK = (Size(30, 4, 5, 6), 3_000)
BATCH_SIZES = (100, 1_000, 10_000)


# -- helpers shared by the workers ----------------------------------------------------------------------------------


def fleet_files(fleet: Path) -> list[tuple[str, Path]]:
    """``(host, file)`` in arrival-chunk order: every host's files of one chunk, then the next chunk."""
    hosts = sorted(p for p in (fleet / "hosts").iterdir() if p.is_dir())
    chunks = sorted({f.name.split("-", 1)[0] for h in hosts[:50] for f in h.iterdir() if f.is_file()})
    out = []
    for chunk in chunks:
        for host in hosts:
            for kind in KINDS:
                path = host / f"{chunk}-{kind}"
                if path.exists():
                    out.append((host.name, path))
    return out


def rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def maxrss_kib() -> int:
    """This process's own peak RSS (``ru_maxrss`` would include the driver's peak, inherited across fork+exec)."""
    from eql_peer import peak_rss_kib

    return peak_rss_kib()


def load_truth(fleet: Path) -> list[dict[str, Any]]:
    chains: list[dict[str, Any]] = orjson.loads((fleet / "truth.json").read_bytes())["chains"]
    return chains


# -- workers (each runs in its own subprocess; prints one JSON object) ---------------------------------------------


def worker_orjson(fleet: Path) -> dict[str, Any]:
    files = fleet_files(fleet)
    base = rss_kib()
    loads = orjson.loads
    records = 0
    began = time.perf_counter()
    for _, path in files:
        with path.open("rb") as handle:
            for line in handle:
                loads(line)
                records += 1
    seconds = time.perf_counter() - began
    return {"records": records, "seconds": seconds, "base_rss_kib": base, "maxrss_kib": maxrss_kib()}


def worker_chainwatch(fleet: Path, marks: int = 0) -> dict[str, Any]:
    from chainwatch.engine import Engine
    from chainwatch.policy import load_policy
    from chainwatch.sources import Normalizer
    from chainwatch.sources.reader import read_path
    from chainwatch.state.memory import InMemoryStore

    files = fleet_files(fleet)
    total_records = int(orjson.loads((fleet / "manifest.json").read_bytes())["records"]) if marks else 0
    store = InMemoryStore()
    policy = load_policy()
    engine = Engine(policy, store)
    normalizer = Normalizer(tracked_only=policy)
    base = rss_kib()
    samples: list[dict[str, Any]] = []
    next_mark = 1
    ingest = engine.ingest
    began = time.perf_counter()
    for host, path in files:
        for event in normalizer.run(read_path(path, normalizer.gate), host):
            ingest(event)
        if marks and normalizer.stats.records >= total_records * next_mark / marks:
            samples.append(_state_sample(engine, store, normalizer.stats.records, total_records, began))
            next_mark += 1
    engine.flush()
    findings = engine.all_findings()
    seconds = time.perf_counter() - began
    if marks and len(samples) < marks:
        samples.append(_state_sample(engine, store, normalizer.stats.records, total_records, began))
    score = score_chainwatch(findings, load_truth(fleet))
    stats = engine.stats
    return {"records": normalizer.stats.records, "events": normalizer.stats.event_count,
            "admitted": stats.admitted, "assemblies": stats.assemblies, "seconds": seconds, "base_rss_kib": base,
            "maxrss_kib": maxrss_kib(), "findings": len(findings), "samples": samples, **score}


def _state_sample(engine: Any, store: Any, records: int, total: int, began: float) -> dict[str, Any]:
    from chainwatch.engine.codec import dumps_state

    items = seen = nodes = 0
    blobs: list[int] = []
    for host in store.hosts():
        state = store.load(host)
        items += len(state)
        seen += len(state.seen)
        nodes += len(state.processes.nodes)
        blobs.append(len(dumps_state(state)[0]))  # what one DynamoDB state item would hold (compressed)
    return {"share": round(records / max(total, 1), 2), "records": records, "state_items": items,
            "seen_ids": seen, "process_nodes": nodes, "rss_kib": rss_kib(), "findings": len(engine.findings),
            "state_blob_bytes_mean": sum(blobs) / max(len(blobs), 1), "state_blob_bytes_max": max(blobs, default=0),
            "seconds": round(time.perf_counter() - began, 2)}


def score_chainwatch(findings: list[Any], truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Alerts against the planted chains (same rule as ``eql_peer.score``, plus exactness and egress checks)."""
    from chainwatch.findings.model import Stage

    planted = {(t["host"], t["stage3_pid"]): t for t in truth}
    members = {(t["host"], pid): (t["host"], t["stage3_pid"]) for t in truth for pid in t["tree_pids"]}
    hit: set[tuple[str, int]] = set()
    exact = 0
    false: set[tuple[str, int]] = set()
    wrong_egress = reuse_attributed = 0
    non_alert_planted = suppressed = 0
    for finding in findings:
        stage3 = next((s for s in finding.stages if s.stage is Stage.EXECUTION), None)
        if stage3 is None or stage3.process is None:
            continue
        key = members.get((finding.host, stage3.process.pid))
        if not finding.is_alert:
            suppressed += finding.suppressed_by is not None
            non_alert_planted += key is not None
            continue
        if key is None:
            false.add((finding.host, stage3.process.pid))
            continue
        if key in hit:
            continue
        hit.add(key)
        chain = planted[key]
        exact += stage3.process.pid == chain["stage3_pid"]
        destinations = {e.dst_ip for e in finding.egress}
        wrong_egress += chain["egress_dst"] not in destinations
        reuse_attributed += bool(chain.get("reuse_dst")) and chain["reuse_dst"] in destinations
    missed = [t for k, t in planted.items() if k not in hit]
    from eql_peer import _by_kind

    return {"planted": len(planted), "found": len(hit), "exact_stage3": exact, "missed": len(missed),
            "false": len(false), "wrong_egress": wrong_egress, "reuse_attributed": reuse_attributed,
            "non_alert_planted": non_alert_planted, "suppressed": suppressed, "missed_by_kind": _by_kind(missed)}


def worker_convert(fleet: Path, slim: Path) -> dict[str, Any]:
    import eql_peer

    return {**eql_peer.convert(fleet, slim, prefiltered_path(slim)), "maxrss_kib": maxrss_kib()}


def prefiltered_path(slim: Path) -> Path:
    return slim.with_suffix(".prefiltered.ndjson")


def worker_eql(fleet: Path, slim: Path, marks: int = 0, cap_s: int = 0) -> dict[str, Any]:
    import eql_peer

    base = rss_kib()
    result = eql_peer.run(slim, marks=marks, cap_s=cap_s)
    scores = eql_peer.score(result.pop("detections"), load_truth(fleet))
    return {**result, "base_rss_kib": base, "maxrss_kib": result["peak_rss_kib"], **scores}


def worker_profile(fleet: Path) -> dict[str, Any]:
    """Where chainwatch's time goes (cProfile, top functions by own time)."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    worker_chainwatch(fleet)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
    return {"profile": text.getvalue()}


def worker_pipeline(fleet: Path, limit: int) -> dict[str, Any]:
    """process_batch over moto with every DynamoDB request counted, per batch size."""
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    import botocore.session
    from moto import mock_aws

    from chainwatch.app.local import create_resources
    from chainwatch.engine.engine import would_admit
    from chainwatch.pipeline.correlate import KinesisRecord, process_batch
    from chainwatch.policy import load_policy
    from chainwatch.sources import Normalizer
    from chainwatch.sources.reader import read_bytes
    from chainwatch.state.dynamodb import DynamoStateStore, Tables, make_models

    counts: dict[str, int] = {}
    sizes: dict[str, list[int]] = {"TransactWriteItems": [], "Query": []}  # request body bytes

    def before_call(model: Any, **_: Any) -> None:
        counts[model.name] = counts.get(model.name, 0) + 1

    def before_send(request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        name = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]
        if name in sizes:
            sizes[name].append(len(request.body or b""))

    original = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        if client.meta.service_model.service_name == "dynamodb":
            client.meta.events.register("before-call.dynamodb", before_call)
            client.meta.events.register("before-send.dynamodb", before_send)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]

    # Kinesis records: one raw line each, partition key = host, in fleet-wide arrival order.
    files = fleet_files(fleet)
    from array import array

    lines: list[tuple[int, str, bytes]] = []
    for host, path in files:
        arrivals = array("q")
        arrivals.frombytes((path.parent / ".arrival" / f"{path.name}.i64").read_bytes())
        lines.extend(zip(arrivals, [host] * len(arrivals), path.read_bytes().splitlines(), strict=True))
    lines.sort(key=lambda item: item[0])
    lines = lines[:limit]
    policy = load_policy()
    # The share of records that can change state at all (decided locally, before any DynamoDB call).
    admitted = 0
    normalizer = Normalizer()
    for _, host, line in lines:
        for item in read_bytes(line, "k"):
            for event in normalizer.run([item], host):
                admitted += would_admit(policy, event)
    results = []
    for batch_size in BATCH_SIZES:
        with mock_aws():
            session = boto3.session.Session(region_name="us-east-1")
            names = create_resources(ROOT / "template.yaml", session, None, prefix=f"bench{batch_size}")
            tables = Tables(state=names["ChainStateTable"], findings=names["FindingsTable"],
                            deliveries=names["DeliveriesTable"], region="us-east-1")
            store = DynamoStateStore(make_models(tables))
            counts.clear()
            for values in sizes.values():
                values.clear()
            records = [KinesisRecord(str(10**20 + i), host, line, "shardId-000000000000")
                       for i, (_, host, line) in enumerate(lines)]
            batches = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
            touched = skipped = events = findings = 0
            aws_time = AwsTimer()
            aws_time.install()
            began = time.perf_counter()
            for batch in batches:
                report = process_batch(batch, policy=policy, store=store, quarantine=lambda entries: None,
                                       now_ns=time.time_ns)
                touched += report.hosts_touched
                skipped += report.hosts_skipped
                events += report.events
                findings += report.findings_written
            seconds = time.perf_counter() - began
            aws_time.uninstall()
            requests = sum(counts.values())
            writes = sizes["TransactWriteItems"]
            results.append({
                "batch_size": batch_size, "batches": len(batches),
                "records": len(records), "events": events,
                "requests": requests, "by_operation": dict(counts),
                "requests_per_1000_records": 1000 * requests / len(records),
                "requests_per_batch": requests / len(batches), "hosts_touched": touched,
                "hosts_skipped": skipped, "findings_written": findings, "seconds": seconds,
                "seconds_in_moto": aws_time.seconds, "records_per_s": len(records) / seconds,
                "records_per_s_excluding_moto": len(records) / max(seconds - aws_time.seconds, 1e-9),
                "write_body_bytes_mean": sum(writes) / len(writes) if writes else 0,
                "write_body_bytes_max": max(writes, default=0),
            })
    return {"records": len(lines), "admitted_share": admitted / max(len(lines), 1), "batches": results}


class AwsTimer:
    """Time spent inside botocore API calls (moto included), to tell chainwatch's own time apart."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original: Any = None

    def install(self) -> None:
        from botocore.client import BaseClient

        self._original = getattr(BaseClient, "_make_api_call")  # noqa: B009 (private, untyped in the stubs)
        original = self._original
        timer = self

        def timed(client: Any, operation: str, params: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(client, operation, params)
            finally:
                timer.seconds += time.perf_counter() - began

        setattr(BaseClient, "_make_api_call", timed)  # noqa: B010

    def uninstall(self) -> None:
        from botocore.client import BaseClient

        setattr(BaseClient, "_make_api_call", self._original)  # noqa: B010


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "orjson": worker_orjson, "chainwatch": worker_chainwatch, "convert": worker_convert, "eql": worker_eql,
    "profile": worker_profile, "pipeline": worker_pipeline,
}


# -- the driver ----------------------------------------------------------------------------------------------------


def spawn(kind: str, *args: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, *map(str, args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def ensure_fleet(work: Path, size: Size, seed: int, label: str) -> tuple[Path, dict[str, Any]]:
    from fleet import Plan, generate

    fleet = work / f"{label}-{size.hosts}h-{size.minutes:g}m-{size.eps:g}eps-{size.chains}c-s{seed}"
    manifest_path = fleet / "manifest.json"
    if manifest_path.exists():
        return fleet, orjson.loads(manifest_path.read_bytes())
    manifest = generate(fleet, Plan(size.hosts, size.minutes, size.eps, size.chains, seed), workers=2)
    return fleet, manifest


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import eql

    load = os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; {platform.system()} {platform.release()}; "
            f"CPython {platform.python_version()}; orjson {orjson.__version__}; eql {eql.__version__}; "
            f"chainwatch {library_revision()}; load average {load:.1f} at start")


def library_revision() -> str:
    """The commit the library was measured at, and whether its files had uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False, text=True)
        return done.stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "layers")
    return f"{revision}{' + uncommitted library changes' if dirty else ''}"


def compare_size(work: Path, size: Size, seed: int, cap_s: int, repeat: int = 3) -> dict[str, Any]:
    fleet, manifest = ensure_fleet(work, size, seed, "fleet")
    log(f"[{size.hosts} hosts] {manifest['records']:,} records ({manifest['bytes'] / 2**20:.0f} MiB) generated in "
        f"{manifest['seconds']} s ({manifest['records_per_second']:,}/s)")
    # The floor and chainwatch alternate, and each keeps its fastest run: on a shared machine a single pair can be
    # off by a third either way, and the best of several is the figure least disturbed by others.
    bare: dict[str, Any] = {}
    cw: dict[str, Any] = {}
    for _ in range(max(repeat, 1)):
        run = spawn("orjson", fleet)
        bare = run if not bare or run["seconds"] < bare["seconds"] else bare
        run = spawn("chainwatch", fleet)
        cw = run if not cw or run["seconds"] < cw["seconds"] else cw
    log(f"[{size.hosts} hosts] orjson.loads: {bare['records'] / bare['seconds']:,.0f} records/s (best of {repeat})")
    log(f"[{size.hosts} hosts] chainwatch: {cw['records'] / cw['seconds']:,.0f} records/s (best of {repeat}), "
        f"found {cw['found']}/{cw['planted']}, false {cw['false']}")
    slim = fleet / "eql-events.ndjson"
    conv = spawn("convert", fleet, slim)
    log(f"[{size.hosts} hosts] eql conversion: {conv['records']:,} records -> slim events "
        f"({conv['prefiltered_events']:,} the query can match) in {conv['seconds']:.1f} s")
    eq = spawn("eql", fleet, slim, 0, cap_s)
    log(f"[{size.hosts} hosts] eql (every record an event): {eq['events'] / eq['engine_s']:,.0f} events/s"
        f"{'' if eq['complete'] else ' (stopped at the time cap)'}, found {eq['found']}/{eq['planted']}, "
        f"false {eq['false']}")
    pre = spawn("eql", fleet, prefiltered_path(slim), 0, cap_s)
    log(f"[{size.hosts} hosts] eql (prefiltered): {pre['events'] / pre['engine_s']:,.0f} events/s "
        f"({eql_record_rate(pre, conv):,.0f} raw-record equivalents/s), found {pre['found']}/{pre['planted']}, "
        f"false {pre['false']}")
    slim.unlink(missing_ok=True)
    prefiltered_path(slim).unlink(missing_ok=True)
    return {"size": size.__dict__, "manifest": manifest, "orjson": bare, "chainwatch": cw, "convert": conv,
            "eql": eq, "eql_prefiltered": pre}


def eql_record_rate(run: dict[str, Any], conv: dict[str, Any]) -> float:
    """eql's rate in raw records per second: the share of the stream it processed, over its engine time."""
    share = run["events"] / max(run["events_total"], 1)
    return float(conv["records"] * share / run["engine_s"])


def flatness(work: Path, size: Size, seed: int) -> dict[str, Any]:
    fleet, manifest = ensure_fleet(work, size, seed, "flat")
    log(f"[flat] {manifest['records']:,} records over {size.minutes:g} minutes on {size.hosts} hosts")
    cw = spawn("chainwatch", fleet, 4)
    slim = fleet / "eql-events.ndjson"
    conv = spawn("convert", fleet, slim)
    eq = spawn("eql", fleet, slim, 4)
    slim.unlink(missing_ok=True)
    prefiltered_path(slim).unlink(missing_ok=True)
    return {"size": size.__dict__, "manifest": manifest, "chainwatch": cw, "eql": eq, "convert": conv}


def pipeline(work: Path, size: Size, limit: int, seed: int) -> dict[str, Any]:
    fleet, _ = ensure_fleet(work, size, seed, "pipe")
    log(f"[pipeline] {limit:,} records of {size.hosts} hosts through process_batch under moto")
    return spawn("pipeline", fleet, limit)


def render(results: dict[str, Any]) -> str:
    """The report: ratios first, absolute numbers beside them."""
    out: list[str] = [f"# chainwatch vs eql — {results['when']}", f"machine: {results['machine']}", ""]
    out.append("## Throughput, memory and detections (same input, one run)")
    out.append("")
    out.append("| hosts | records (min x eps) | **detect time / orjson.loads time** (goal <= 1.0) "
               "| **chainwatch / eql prefiltered** (goal >= 2 at 73, >= 10 at 1,000+) | chainwatch rec/s "
               "| eql rec/s, prefiltered | eql rec/s, every record an event | chainwatch / eql "
               "| chainwatch / eql incl. conversion | peak RSS chainwatch / eql "
               "| chainwatch found / missed / false | eql found / missed / false |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for item in results["sizes"]:
        size, cw, conv, bare = item["size"], item["chainwatch"], item["convert"], item["orjson"]
        eq, pre = item["eql"], item["eql_prefiltered"]
        cw_rate = cw["records"] / cw["seconds"]
        eql_rate = eql_record_rate(eq, conv)
        pre_rate = eql_record_rate(pre, conv)
        # eql's total per record: the conversion (every record) plus the engine over the prefiltered events.
        with_conv = (conv["seconds"] / conv["records"] + 1 / pre_rate) * cw_rate
        scored = eq if eq["complete"] else pre
        capped = "" if eq["complete"] else f" (stopped at {eq['events'] / eq['events_total']:.0%})"
        pre_capped = "" if pre["complete"] else f" (stopped at {pre['events'] / pre['events_total']:.0%})"
        out.append(
            f"| {size['hosts']:,} | {cw['records']:,} ({size['minutes']:g} x {size['eps']:g}) "
            f"| **{cw['seconds'] / bare['seconds']:.2f}x** | **{cw_rate / pre_rate:.1f}x** | {cw_rate:,.0f} "
            f"| {pre_rate:,.0f}{pre_capped} | {eql_rate:,.0f}{capped} | {cw_rate / eql_rate:.1f}x "
            f"| {with_conv:.1f}x "
            f"| {cw['maxrss_kib'] / 1024:.0f} / {eq['maxrss_kib'] / 1024:.0f} MiB "
            f"| {cw['found']} / {cw['missed']} / {cw['false']} of {cw['planted']} "
            f"| {scored['found']} / {scored['missed']} / {scored['false']} of {scored['planted']}"
            f"{'' if scored['complete'] else ' (partial run)'} |")
    out.append("")
    out.append("Missed by chain kind and variant:")
    out.append("")
    for item in results["sizes"]:
        out.append(f"- {item['size']['hosts']:,} hosts: chainwatch {item['chainwatch']['missed_by_kind'] or 'none'}; "
                   f"eql {item['eql_prefiltered']['missed_by_kind'] or 'none'}; chainwatch stage 3 exact "
                   f"{item['chainwatch']['exact_stage3']}/{item['chainwatch']['found']}, egress wrong "
                   f"{item['chainwatch']['wrong_egress']}, reused pid attributed "
                   f"{item['chainwatch']['reuse_attributed']}; eql egress wrong "
                   f"{item['eql_prefiltered']['wrong_egress']}")
    out.append("")
    out.append("Generation and conversion:")
    out.append("")
    for item in results["sizes"]:
        m, conv = item["manifest"], item["convert"]
        out.append(f"- {item['size']['hosts']:,} hosts: generated {m['records']:,} records "
                   f"({m['bytes'] / 2**20:,.0f} MiB) in {m['seconds']} s ({m['records_per_second']:,}/s, "
                   f"{m['workers']} workers); eql conversion {conv['seconds']:.1f} s "
                   f"({conv['records'] / conv['seconds']:,.0f} records/s; {conv['prefiltered_events']:,} events, "
                   f"{conv['prefiltered_events'] / conv['records']:.0%} of records, are ones the query can match); "
                   f"orjson.loads alone "
                   f"{item['orjson']['records'] / item['orjson']['seconds']:,.0f} records/s")
    flat = results.get("flat")
    if flat:
        out.append("")
        size = flat["size"]
        out.append(f"## Memory flatness ({size['hosts']} hosts, {size['minutes']:g} minutes at {size['eps']:g} eps, "
                   f"{flat['manifest']['records']:,} records; window 1 h, state kept 2 h)")
        out.append("")
        out.append("| share of stream | chainwatch state items | seen ids | process nodes "
                   "| state item per host (zlib, mean / max) | chainwatch RSS | eql RSS |")
        out.append("|---|---|---|---|---|---|---|")
        eql_marks = flat["eql"].get("rss_marks", [])
        for i, sample in enumerate(flat["chainwatch"]["samples"]):
            eql_rss = f"{eql_marks[i] / 1024:.0f} MiB" if i < len(eql_marks) else "-"
            out.append(f"| {sample['share']:.0%} | {sample['state_items']:,} | {sample['seen_ids']:,} "
                       f"| {sample['process_nodes']:,} | {sample.get('state_blob_bytes_mean', 0) / 1024:.1f} / "
                       f"{sample.get('state_blob_bytes_max', 0) / 1024:.1f} KiB "
                       f"| {sample['rss_kib'] / 1024:.0f} MiB | {eql_rss} |")
    pipe = results.get("pipeline")
    if pipe:
        out.append("")
        out.append(f"## Pipeline (process_batch under moto, {pipe['records']:,} Kinesis records, one raw line each; "
                   f"{pipe['admitted_share']:.1%} of records can change state)")
        out.append("")
        out.append("| batch size | DynamoDB requests / 1,000 records | requests / batch "
                   "| by operation "
                   "| hosts touched / skipped | records/s (moto) | records/s excl. moto | mean / max write body |")
        out.append("|---|---|---|---|---|---|---|---|")
        for row in pipe["batches"]:
            out.append(f"| {row['batch_size']:,} | {row['requests_per_1000_records']:.1f} "
                       f"| {row['requests_per_batch']:.1f} | {row['by_operation']} "
                       f"| {row['hosts_touched']} / {row['hosts_skipped']} | {row['records_per_s']:,.0f} "
                       f"| {row['records_per_s_excluding_moto']:,.0f} "
                       f"| {row['write_body_bytes_mean'] / 1024:.1f} / {row['write_body_bytes_max'] / 1024:.1f} KiB |")
    if results.get("profile"):
        out.append("")
        out.append("## Where chainwatch's time goes (cProfile, 10-host fleet)")
        out.append("")
        out.append("```")
        out.append(results["profile"].strip())
        out.append("```")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small fleets: under a minute")
    parser.add_argument("--work", type=Path, help="where fleets are generated (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hosts", type=int, nargs="+", help="run only these fleet sizes (of the full or quick set)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternating runs of the orjson floor and chainwatch per size; the best of each counts")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-flat", action="store_true")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of chainwatch on the smallest fleet")
    parser.add_argument("--eql-cap", type=int,
                        help="stop an eql run after this many seconds (its rate is then over the part processed); "
                             "default 120, 6 with --quick")
    parser.add_argument("--json", type=Path, help="also write every measurement as JSON")
    parser.add_argument("--render", type=Path, help="print the report of a saved --json run and exit")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        saved = orjson.loads(args.render.read_bytes())
        print(render(saved) + f"\n(total {saved.get('seconds', '?')} s)")
        return
    if args.worker:
        kind, *rest = args.worker
        params: list[Any] = [Path(rest[0])] + [Path(r) if "/" in r else int(r) for r in rest[1:]]
        print(orjson.dumps(WORKERS[kind](*params)).decode())
        return
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sizes = QUICK if args.quick else FULL
        if args.hosts:
            sizes = [s for s in sizes if s.hosts in args.hosts]
        cap = args.eql_cap or (6 if args.quick else 120)
        results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
                                   "quick": args.quick,
                                   "sizes": [compare_size(work, s, args.seed, cap, args.repeat) for s in sizes]}
        if not args.skip_flat:
            results["flat"] = flatness(work, FLAT_QUICK if args.quick else FLAT_FULL, args.seed)
        if not args.skip_pipeline:
            size, limit = PIPE_QUICK if args.quick else PIPE_FULL
            results["pipeline"] = pipeline(work, size, limit, args.seed)
        if args.profile:
            fleet, _ = ensure_fleet(work, sizes[0], args.seed, "fleet")
            results["profile"] = spawn("profile", fleet)["profile"]
    results["seconds"] = round(time.perf_counter() - began, 1)
    report = render(results) + f"\n(total {results['seconds']} s)\n"
    print(report)
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
