"""Test support for the pipeline: real Kinesis / DynamoDB-stream records from moto, and DynamoDB call counting.

Nothing here imitates AWS: records come from moto's ``GetRecords`` and are turned into Lambda events by the same
functions the local run uses; :class:`DynamoCalls` watches (and, when asked, fails) the calls pynamodb really makes
through a botocore ``before-call`` hook on every session pynamodb creates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.session import Session as BotocoreSession

from chainwatch.app.local import dynamodb_stream_event, kinesis_event, telemetry_records
from chainwatch.app.settings import Settings
from chainwatch.engine.codec import loads_state
from chainwatch.engine.hoststate import HostState
from chainwatch.pipeline.correlate import (
    BatchReport,
    KinesisRecord,
    QuarantineEntry,
    iter_lambda_records,
    process_batch,
)
from chainwatch.pipeline.dispatch import sqs_sender
from chainwatch.policy import Policy, load_policy
from chainwatch.state.dynamodb import DynamoStateStore, Tables, make_models

ROOT = Path(__file__).resolve().parents[3]
EVENTS = ROOT / "events"
#: Wall clock of every test (seconds): after the samples' event times, so the TTL comes from "now".
NOW = time.time()
NOW_NS = int(NOW * 1e9)
POLICY = load_policy()


# -- Kinesis ---------------------------------------------------------------------------------------------------


@dataclass
class Shard:
    """One shard's records as GetRecords returned them, and as the Lambda event / pipeline records built from them."""

    shard_id: str
    stream_arn: str
    records: list[dict[str, Any]]

    def event(self, start: int = 0) -> dict[str, Any]:
        return kinesis_event(self.records[start:], self.shard_id, self.stream_arn)

    def batch(self, start: int = 0) -> list[KinesisRecord]:
        return list(iter_lambda_records(self.event(start)))


def sample_entries() -> list[tuple[str, bytes]]:
    """(partition key, data) of every bundled sample record, as the local run puts them."""
    return list(telemetry_records([EVENTS]))


def put_and_read(session: boto3.session.Session, stream: str, entries: Sequence[tuple[str, bytes]]) -> list[Shard]:
    """``PutRecords`` the entries, then ``GetRecords`` every shard from the start (shards that got records only)."""
    kinesis: Any = session.client("kinesis")
    for start in range(0, len(entries), 500):
        response = kinesis.put_records(StreamName=stream, Records=[
            {"PartitionKey": key, "Data": data} for key, data in entries[start:start + 500]])
        assert response["FailedRecordCount"] == 0
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    shards = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records: list[dict[str, Any]] = []
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                break
            records.extend(page["Records"])
            iterator = page.get("NextShardIterator")
        if records:
            shards.append(Shard(shard["ShardId"], arn, records))
    return shards


def one_batch(shards: Sequence[Shard]) -> list[KinesisRecord]:
    """Every shard's records as one list (hosts are per shard, so this is the union of per-shard batches)."""
    return [record for shard in shards for record in shard.batch()]


# -- running correlate -----------------------------------------------------------------------------------------


def make_store(settings: Settings, clock: Callable[[], float] = lambda: NOW) -> DynamoStateStore:
    return DynamoStateStore(make_models(settings.tables), clock=clock)


def sqs_quarantine(session: boto3.session.Session, url: str | None) -> Callable[[Sequence[QuarantineEntry]], None]:
    return sqs_sender(session.client("sqs"), url)


def correlate(records: Sequence[KinesisRecord], settings: Settings, session: boto3.session.Session, *,
              store: DynamoStateStore | None = None, policy: Policy = POLICY, now_ns: int = NOW_NS,
              quarantine_url: str | None = None, max_conflict_retries: int = 5) -> BatchReport:
    """``process_batch`` with the real DynamoDB store and SQS quarantine of ``settings``."""
    return process_batch(records, policy=policy, store=store or make_store(settings),
                         quarantine=sqs_quarantine(session, quarantine_url or settings.quarantine_queue_url),
                         max_conflict_retries=max_conflict_retries, now_ns=lambda: now_ns)


def drain_queue(session: boto3.session.Session, url: str) -> list[dict[str, Any]]:
    """Every message body (JSON) waiting in an SQS queue."""
    sqs: Any = session.client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


# -- DynamoDB, read back with plain boto3 ----------------------------------------------------------------------


def scan(session: boto3.session.Session, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = session.resource("dynamodb").Table(table).scan(ConsistentRead=True)["Items"]
    return items


def state_items(session: boto3.session.Session, table: str, host: str) -> list[dict[str, Any]]:
    """A host's state items, by one Query on its partition key (nothing filtered: expired items included)."""
    items: list[dict[str, Any]] = session.resource("dynamodb").Table(table).query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"host#{host}"},
        ConsistentRead=True)["Items"]
    return items


def stored_state(session: boto3.session.Session, table: str, host: str) -> tuple[HostState, int, int]:
    """(state, head version, head expires_at) of a host: its head, base and deltas read back and replayed."""
    # The host's partition also holds its coverage counters (sk "coverage"): the state is the "state..." items.
    (head,) = [i for i in state_items(session, table, host) if i["sk"] == "state"]
    store = DynamoStateStore(make_models(Tables(state=table, findings="unused", deliveries="unused")),
                             clock=lambda: 0.0)
    loaded = store.load(host)
    assert loaded.reset_reason is None, loaded.reset_reason
    return loaded.state, int(head["version"]), int(head["expires_at"])


def base_state(session: boto3.session.Session, table: str, host: str) -> HostState:
    """The host's base item alone, decoded (what the last compaction wrote)."""
    (item,) = [i for i in state_items(session, table, host) if i["sk"] == "state#base"]
    return loads_state(bytes(item["blob"]))


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute name lengths plus value sizes (binary as bytes, numbers ~ digits)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if isinstance(value, bytes | bytearray):
            size += len(value)
        elif hasattr(value, "value") and isinstance(value.value, bytes):  # boto3 Binary
            size += len(value.value)
        else:
            size += len(str(value).encode())
    return size


def outbox_stream_event(session: boto3.session.Session, table: str) -> dict[str, Any]:
    """Every record of the outbox table's DynamoDB stream, as the Lambda event Lambda would deliver."""
    arn = session.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    # botocore 1.44 sends DynamoDB Streams calls that name a stream ARN to an account-id endpoint
    # (<account>.streams-ddb.<region>.amazonaws.com), which moto 5.2.5's in-process routing does not know.
    streams: Any = session.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            records.extend(page["Records"])
            iterator = page.get("NextShardIterator")
    return dynamodb_stream_event(records, arn)


# -- watching pynamodb's DynamoDB calls ------------------------------------------------------------------------


@dataclass
class Call:
    operation: str
    params: dict[str, Any]

    @property
    def hosts(self) -> set[str]:
        """The ``host#...`` partition keys this call names (Query values, transaction items, keys)."""
        found: set[str] = set()
        _collect_hosts(self.params, found)
        return found


def _collect_hosts(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for inner in value.values():
            _collect_hosts(inner, found)
    elif isinstance(value, list):
        for inner in value:
            _collect_hosts(inner, found)
    elif isinstance(value, str) and value.startswith("host#"):
        found.add(value.removeprefix("host#"))


@dataclass
class Fault:
    """Answer matching calls with a DynamoDB error (as the service would send it) instead of calling moto."""

    operation: str
    code: str
    times: int
    host: str | None = None


@dataclass
class DynamoCalls:
    """The DynamoDB calls pynamodb makes, seen by a ``before-call`` hook on every botocore session it creates."""

    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import pynamodb.connection.base as base

        original: Callable[[], BotocoreSession] = base.get_session

        def get_session() -> BotocoreSession:
            session = original()
            session.register("before-call.dynamodb", self._before_call)
            return session

        monkeypatch.setattr(base, "get_session", get_session)

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or b"{}"
        call = Call(model.name, json.loads(body))
        self.calls.append(call)
        for fault in self.faults:
            if fault.times and fault.operation == model.name and (fault.host is None or fault.host in call.hosts):
                fault.times -= 1
                http = AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None)
                return http, {"Error": {"Code": fault.code, "Message": "injected by the test"},
                              "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    def fail(self, operation: str, code: str = "ProvisionedThroughputExceededException", *, times: int = 1,
             host: str | None = None) -> None:
        self.faults.append(Fault(operation, code, times, host))

    def clear(self) -> None:
        self.calls.clear()

    def for_host(self, host: str) -> list[str]:
        return [c.operation for c in self.calls if host in c.hosts]

    def operations(self) -> list[str]:
        return [c.operation for c in self.calls]


def sequence_numbers(records: Iterable[KinesisRecord]) -> list[str]:
    return [r.sequence_number for r in records]
