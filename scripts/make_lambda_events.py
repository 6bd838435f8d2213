"""Generate the ``sam local invoke`` event files from the bundled telemetry, so they never drift from ``events/``.

- ``events/lambda/correlate-kinesis.json``: the Kinesis event Lambda hands ``CorrelateFunction``. Every record of
  the ``events/`` telemetry folders exactly as ``chainwatch local`` puts it on the stream (partition key = host, so
  ``mac-01`` and ``mac-02`` both appear; ``data`` base64; increasing 56-digit sequence numbers; ``eventID`` =
  ``shardId-000000000000:<sequence>``), plus one **poison record** (a cut-off eslogger line) that the function must
  set aside in the quarantine queue without failing the batch.
- ``events/lambda/dispatch-outbox.json``: the DynamoDB-stream event Lambda hands ``DispatchFunction`` from the
  findings outbox (``INSERT`` records, ``StreamViewType: NEW_IMAGE``, the item attributes the state store writes:
  ``finding_id``, ``host``, ``revision``, ``document`` (the OCSF finding), ``digest``, ``is_alert``, ``canary``,
  ``updated_ns``, ``expires_at``). The findings are the engine's on the records of the Kinesis event, decoded by the
  correlate function's own code.

``events/lambda/`` holds a ``.chainwatch-ignore`` marker: folder walks (``chainwatch local``, ``detect events/``...)
skip it, since these files are Lambda events, not telemetry.

Deterministic (times come from the telemetry, never the clock). ``.venv/bin/python scripts/make_lambda_events.py``
rewrites the files; ``--check`` exits 1 when they are not what the telemetry gives (the test suite runs it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from boto3.dynamodb.types import TypeSerializer

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
OUT = EVENTS / "lambda"
KINESIS_OUT = OUT / "correlate-kinesis.json"
OUTBOX_OUT = OUT / "dispatch-outbox.json"
MARKER = OUT / ".chainwatch-ignore"
MARKER_TEXT = "Lambda event files for sam local invoke, not telemetry: folder walks skip this folder.\n"

REGION = "us-east-1"
ACCOUNT = "123456789012"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/chainwatch-dev-TelemetryStream"
OUTBOX_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/chainwatch-dev-findings/stream/2025-09-18T09:00:00.000"
SHARD = "shardId-000000000000"
#: Where the sequence numbers start (Kinesis sequence numbers are 56-digit decimal strings, increasing per shard).
FIRST_SEQUENCE = int("49665" + "0" * 50 + "1")
SEQUENCE_STEP = 1_000_000_000
#: Arrival one second apart from this instant (2025-09-18T13:55:00Z, after the samples' events).
FIRST_ARRIVAL = 1_758_203_700.0
RETENTION_S = 30 * 86_400


def poison_record() -> tuple[str, bytes]:
    """A cut-off eslogger line (the writer died mid-record): not JSON, so correlate must quarantine it."""
    line = (EVENTS / "mac-01" / "eslogger.jsonl").read_bytes().splitlines()[0]
    return "mac-01", line[: len(line) // 2]


def kinesis_event() -> dict[str, Any]:
    from chainwatch.app.local import telemetry_records

    entries = list(telemetry_records([EVENTS]))
    entries.insert(len(entries) // 2, poison_record())
    records = []
    for number, (key, data) in enumerate(entries):
        sequence = str(FIRST_SEQUENCE + number * SEQUENCE_STEP)
        records.append({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": key, "sequenceNumber": sequence,
                        "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp":
                            round(FIRST_ARRIVAL + number * 0.25, 3)},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{SHARD}:{sequence}",
            "eventName": "aws:kinesis:record", "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/chainwatch-correlate",
            "awsRegion": REGION, "eventSourceARN": STREAM_ARN})
    return {"Records": records}


def outbox_event(kinesis: dict[str, Any]) -> dict[str, Any]:
    from chainwatch.engine.engine import correlate_host
    from chainwatch.engine.hoststate import HostState
    from chainwatch.findings.ocsf import to_ocsf
    from chainwatch.pipeline.correlate import KinesisRecord, decode_payload
    from chainwatch.policy import load_policy
    from chainwatch.readiness.canary import is_canary_host
    from chainwatch.sources import Normalizer

    policy = load_policy(None)
    by_host: dict[str, list[Any]] = {}
    for raw in kinesis["Records"]:
        items, host, forced = decode_payload(KinesisRecord.from_lambda(raw, SHARD))
        for event in Normalizer(forced_format=forced).run(items, host):
            by_host.setdefault(event.host, []).append(event)
    serialize = TypeSerializer().serialize
    records = []
    for host in sorted(by_host):
        result = correlate_host(HostState(host), by_host[host], policy)
        for finding, revision, digest in sorted(result.changed, key=lambda c: c[0].finding_id):
            document = to_ocsf(finding, policy, processed_ns=finding.last_seen_ns)
            updated_ns = finding.last_seen_ns
            item = {"finding_id": finding.finding_id, "host": finding.host, "revision": revision,
                    "document": orjson.dumps(document).decode(), "digest": digest,
                    "is_alert": int(finding.is_alert), "canary": int(is_canary_host(finding.host)),
                    "updated_ns": updated_ns, "expires_at": updated_ns // 1_000_000_000 + RETENTION_S}
            image = {key: serialize(value) for key, value in item.items()}
            number = len(records) + 1
            records.append({
                "eventID": hashlib.sha256(f"{finding.finding_id}#{revision}".encode()).hexdigest()[:32],
                "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": REGION,
                "dynamodb": {"ApproximateCreationDateTime": updated_ns // 1_000_000_000,
                             "Keys": {"finding_id": image["finding_id"]}, "NewImage": image,
                             "SequenceNumber": str(100_000_000_000_000_000_000 + number * 100),
                             "SizeBytes": len(orjson.dumps(image)), "StreamViewType": "NEW_IMAGE"},
                "eventSourceARN": OUTBOX_ARN})
    return {"Records": records}


def render(out: Path = OUT) -> dict[Path, bytes]:
    kinesis = kinesis_event()
    return {
        out / KINESIS_OUT.name: orjson.dumps(kinesis, option=orjson.OPT_INDENT_2) + b"\n",
        out / OUTBOX_OUT.name: orjson.dumps(outbox_event(kinesis), option=orjson.OPT_INDENT_2) + b"\n",
        out / MARKER.name: MARKER_TEXT.encode(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ from what would be written")
    parser.add_argument("--out-dir", type=Path, default=OUT, help="where the files go (default: events/lambda)")
    args = parser.parse_args(argv)
    files = render(args.out_dir)
    if args.check:
        stale = [path for path, data in files.items() if not path.is_file() or path.read_bytes() != data]
        for path in stale:
            print(f"{path} is out of date: run scripts/make_lambda_events.py", file=sys.stderr)
        return 1 if stale else 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        path.write_bytes(data)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
