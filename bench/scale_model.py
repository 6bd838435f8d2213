"""The scale model behind ``docs/scaling.md``: fleet size -> Kinesis, Lambda, DynamoDB and their monthly cost.

Inputs come from a ``bench/compare.py --json FILE`` run (measured on the bench machine) and from the assumptions
below, which are stated in the output. Prices are public list prices for us-east-1 (see ``PRICES``); check them
before budgeting.

Usage: ``python bench/scale_model.py RESULTS.json [--eps 10] [--macs 1000 10000 100000]``
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: us-east-1 list prices (AWS public pricing pages, as published in 2025; DynamoDB on-demand after the
#: November 2024 reduction). Lambda: arm64, first pricing tier.
PRICES = {
    "kinesis_shard_hour": 0.015,          # provisioned mode, per shard-hour
    "kinesis_put_unit_per_million": 0.014,  # per million 25 KB PUT payload units
    "lambda_gb_s_arm64": 0.0000133334,    # per GB-second, arm64
    "lambda_request_per_million": 0.20,
    "ddb_wru_per_million": 0.625,         # on-demand write request units
    "ddb_rru_per_million": 0.125,         # on-demand read request units
    "ddb_storage_gb_month": 0.25,
}
SECONDS_PER_MONTH = 730 * 3600
SHARD_BYTES = 1_000_000  # per shard write limit, bytes/s (and 1,000 records/s)
SHARD_RECORDS = 1_000
LINES_PER_KINESIS_RECORD = 100  # the shipper packs 100 lines per record, gzip-compressed
GZIP_RATIO = 10.0  # real eslogger/ECS JSON; the generator's templated records compress ~12-25x, optimistic
LAMBDA_MEMORY_GB = 1.0  # template.yaml: MemorySize 1024
LAMBDA_VCPU = 1024 / 1769  # Lambda gives one full vCPU at 1,769 MB
DDB_LATENCY_S = 0.008  # one DynamoDB request from Lambda in-region (Query or TransactWriteItems), typical
STATE_WINDOW_S = 7_200  # the engine keeps twice the 1 h window
MAX_STATE_BYTES = 300_000  # chainwatch.engine.codec.MAX_STATE_BYTES: above it, state is trimmed
HEADROOM = 1.5  # shards and concurrency sized for 1.5x the average (peaks)
LAMBDA_PAYLOAD = 6_000_000  # a Kinesis batch must fit the 6 MB invocation payload (records are base64 in it)


@dataclass
class Measured:
    cpu_s_per_record: float  # correlate path (decode, normalize, admit, assemble, encode), bench core
    admitted_share: float  # records that change state
    bytes_per_state_item: float  # compressed state per admitted item held
    bytes_per_record: float  # raw telemetry line
    source: str


def measured_from(results: dict[str, Any]) -> Measured:
    pipe = results["pipeline"]
    row = next(r for r in pipe["batches"] if r["batch_size"] == 1_000)
    flat = results["flat"]
    last = flat["chainwatch"]["samples"][-1]
    hosts = flat["size"]["hosts"]
    per_item = last["state_blob_bytes_mean"] / max(last["state_items"] / hosts, 1)
    sizes = results["sizes"]
    bytes_per_record = sum(s["manifest"]["bytes"] for s in sizes) / sum(s["manifest"]["records"] for s in sizes)
    return Measured(1 / row["records_per_s_excluding_moto"], pipe["admitted_share"], per_item, bytes_per_record,
                    f"{results['when']} on {results['machine'].split(';')[0]}")


@dataclass
class Config:
    label: str
    batch_records: int  # Lambda BatchSize, in Kinesis records
    window_s: float  # MaximumBatchingWindowInSeconds
    delta_state: bool = False  # a design change, not implemented: write only what a batch added


def model(macs: int, eps: float, m: Measured, cfg: Config) -> dict[str, Any]:
    lines = macs * eps  # telemetry lines per second
    raw_bps = lines * m.bytes_per_record
    kinesis_rps = lines / LINES_PER_KINESIS_RECORD
    shipped_bps = raw_bps / GZIP_RATIO
    shards = max(1, math.ceil(HEADROOM * max(shipped_bps / SHARD_BYTES, kinesis_rps / SHARD_RECORDS)))
    hosts_per_shard = macs / shards
    # A batch closes when it is full or when the window ends.
    shard_rps = kinesis_rps / shards
    record_bytes = LINES_PER_KINESIS_RECORD * m.bytes_per_record / GZIP_RATIO
    max_records = min(cfg.batch_records, int(LAMBDA_PAYLOAD / (record_bytes * 4 / 3)))
    batch_interval = min(cfg.window_s, max_records / shard_rps) if shard_rps else cfg.window_s
    lines_per_batch = shard_rps * batch_interval * LINES_PER_KINESIS_RECORD
    admitted_per_host_s = eps * m.admitted_share
    touched = 1 - math.exp(-admitted_per_host_s * batch_interval)  # P(a host has >= 1 admitted event in a batch)
    hosts_touched_per_batch = hosts_per_shard * touched
    state_bytes = min(admitted_per_host_s * STATE_WINDOW_S * m.bytes_per_state_item, MAX_STATE_BYTES)
    state_kb = state_bytes / 1024
    writes_per_s = macs * touched / batch_interval
    written_kb = state_kb
    if cfg.delta_state:
        # Only the evidence one batch admitted for the host (plus a small header) would be written; reads would
        # still fetch the whole state.
        written_kb = max(admitted_per_host_s * batch_interval / max(touched, 1e-9), 1) * m.bytes_per_state_item / 1024
    wru_per_write = 2 * math.ceil(written_kb + 0.5)  # transactional: 2 WRU per KB; item attributes ~0.5 KB
    rru_per_read = math.ceil((state_kb + 0.5) / 4)  # strongly consistent Query: 1 RRU per 4 KB
    wru_s = writes_per_s * wru_per_write
    rru_s = writes_per_s * rru_per_read
    cpu_per_batch = lines_per_batch * m.cpu_s_per_record / LAMBDA_VCPU
    wait_per_batch = hosts_touched_per_batch * 2 * DDB_LATENCY_S  # hosts are committed one after another
    duration = cpu_per_batch + wait_per_batch
    factor = min(10, max(1, math.ceil(HEADROOM * duration / batch_interval)))
    concurrency = shards * factor
    invocations_s = shards / batch_interval
    gb_s = invocations_s * duration * LAMBDA_MEMORY_GB
    p = PRICES
    cost = {
        "kinesis": shards * 730 * p["kinesis_shard_hour"]
        + kinesis_rps * SECONDS_PER_MONTH / 1e6 * p["kinesis_put_unit_per_million"],
        "lambda": gb_s * SECONDS_PER_MONTH * p["lambda_gb_s_arm64"]
        + invocations_s * SECONDS_PER_MONTH / 1e6 * p["lambda_request_per_million"],
        "dynamodb_writes": wru_s * SECONDS_PER_MONTH / 1e6 * p["ddb_wru_per_million"],
        "dynamodb_reads": rru_s * SECONDS_PER_MONTH / 1e6 * p["ddb_rru_per_million"],
        "dynamodb_storage": macs * state_bytes / 1e9 * p["ddb_storage_gb_month"],
    }
    return {
        "macs": macs, "eps": eps, "config": cfg.label, "lines_s": lines, "raw_MBps": raw_bps / 1e6,
        "shipped_MBps": shipped_bps / 1e6, "shards": shards, "hosts_per_shard": hosts_per_shard,
        "batch_interval_s": batch_interval, "lines_per_batch": lines_per_batch,
        "hosts_touched_per_batch": hosts_touched_per_batch, "state_kb": state_kb, "writes_s": writes_per_s,
        "wru_s": wru_s, "rru_s": rru_s, "duration_s": duration, "cpu_s": cpu_per_batch, "wait_s": wait_per_batch,
        "parallelization": factor, "concurrency": concurrency, "storage_gb": macs * state_bytes / 1e9,
        "cost": cost, "total": sum(cost.values()),
    }


CONFIGS = [Config("template defaults (BatchSize 500, window 5 s)", 500, 5.0),
           Config("tuned batching (BatchSize 10,000, window 60 s; the 6 MB payload caps the batch)", 10_000, 60.0),
           Config("design change, not implemented: delta state writes, tuned batching", 10_000, 60.0, True)]


def render(m: Measured, eps: float, fleet: list[int]) -> str:
    out = [f"Measured inputs ({m.source}): {m.cpu_s_per_record * 1e6:.0f} us of CPU per record on the correlate "
           f"path; {m.admitted_share:.1%} of records change state; {m.bytes_per_state_item:.0f} bytes of "
           f"compressed state per admitted item held; {m.bytes_per_record:,.0f} bytes per raw record.", ""]
    for cfg in CONFIGS:
        out.append(f"### {cfg.label}, {eps:g} records per Mac per second")
        out.append("")
        out.append("| Macs | Kinesis shards | Lambda concurrency (parallelization) | batch every | duration / batch "
                   "(CPU + DynamoDB wait) | state item / host | DynamoDB writes/s (WRU/s) | reads/s (RRU/s) "
                   "| storage | $ / month: Kinesis + Lambda + DynamoDB = total |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for macs in fleet:
            r = model(macs, eps, m, cfg)
            c = r["cost"]
            ddb = c["dynamodb_writes"] + c["dynamodb_reads"] + c["dynamodb_storage"]
            out.append(
                f"| {macs:,} | {r['shards']:,} | {r['concurrency']:,} ({r['parallelization']}) "
                f"| {r['batch_interval_s']:.1f} s | {r['duration_s']:.2f} s ({r['cpu_s']:.2f} + {r['wait_s']:.2f}) "
                f"| {r['state_kb']:.0f} KB | {r['writes_s']:,.0f} ({r['wru_s']:,.0f}) "
                f"| {r['writes_s']:,.0f} ({r['rru_s']:,.0f}) | {r['storage_gb']:.1f} GB "
                f"| {c['kinesis']:,.0f} + {c['lambda']:,.0f} + {ddb:,.0f} = **{r['total']:,.0f}** |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="JSON written by bench/compare.py --json")
    parser.add_argument("--eps", type=float, default=10.0, help="records per Mac per second after edge filtering")
    parser.add_argument("--macs", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    measured = measured_from(orjson.loads(args.results.read_bytes()))
    print(render(measured, args.eps, args.macs))


if __name__ == "__main__":
    main()
