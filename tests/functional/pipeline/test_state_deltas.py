"""The state store's base + delta layout under moto: deltas, compaction, races, redelivery, expiry, corruption."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson
import pytest
from pipeline_support import (
    NOW,
    NOW_NS,
    POLICY,
    DynamoCalls,
    base_state,
    correlate,
    make_store,
    one_batch,
    put_and_read,
    sample_entries,
    scan,
    state_items,
    stored_state,
)

from chainwatch.app.settings import Settings
from chainwatch.engine.codec import dumps_state, loads_state
from chainwatch.engine.engine import correlate_host
from chainwatch.engine.hoststate import HostState, event_identity
from chainwatch.errors import StateConflictError
from chainwatch.pipeline.correlate import KinesisRecord, correlate_recording
from chainwatch.state.dynamodb import BASE_SK, DELTA_PREFIX, STATE_SK, DynamoStateStore, make_models

HOST = "mac-02"


@pytest.fixture
def records(aws_names: dict[str, str], session: boto3.session.Session) -> list[KinesisRecord]:
    """mac-02's bundled records (a whole four-stage chain), as Kinesis gave them back."""
    shards = put_and_read(session, aws_names["TelemetryStream"], [(k, d) for k, d in sample_entries() if k == HOST])
    return one_batch(shards)


def _chunks(records: list[KinesisRecord], parts: int) -> list[list[KinesisRecord]]:
    size = -(-len(records) // parts)
    return [records[i:i + size] for i in range(0, len(records), size)]


def _sks(session: boto3.session.Session, settings: Settings) -> list[str]:
    return sorted(str(i["sk"]) for i in state_items(session, settings.tables.state, HOST))


def _old_path(batches: list[list[KinesisRecord]]) -> HostState:
    """The previous layout's state after the same batches: correlate, encode the whole state, decode, next."""
    from chainwatch.pipeline.correlate import decode_payload
    from chainwatch.sources import Normalizer

    state = HostState(HOST)
    for batch in batches:
        events = [e for r in batch for e in Normalizer(on_reject=lambda _: None).run(decode_payload(r)[0], HOST)]
        correlate_host(state, events, POLICY)
        state = loads_state(dumps_state(state)[0])
    return state


def test_process_batch_host_over_several_batches_writes_deltas_same_state_as_whole_state_path(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord],
        dynamo_calls: DynamoCalls) -> None:
    batches = _chunks(records, 4)
    reports = []
    for batch in batches:
        dynamo_calls.clear()
        reports.append(correlate(batch, aws, session))
        # At most two requests per host per batch: the Query and the transaction.
        assert dynamo_calls.for_host(HOST) in (["Query", "TransactWriteItems"], ["Query"])

    written = [r for r in reports if r.state_writes]
    assert len(written) >= 3 and all(r.failed_sequence_numbers == [] for r in reports)
    assert [r.compactions for r in written] == [1] + [0] * (len(written) - 1)  # the first write is the base
    sks = _sks(session, aws)
    assert sks[:2] == [STATE_SK, BASE_SK]
    deltas = sks[2:]
    assert deltas == [f"{DELTA_PREFIX}{seq:012d}" for seq in range(2, len(written) + 1)]
    state, version, _ = stored_state(session, aws.tables.state, HOST)
    assert version == len(written)
    assert state == _old_path(batches)
    # The chain is found across the batches, once.
    assert [int(i["revision"]) for i in scan(session, aws.tables.findings)] == [1]


def test_commit_delta_smaller_than_whole_state(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord],
        dynamo_calls: DynamoCalls) -> None:
    first, second = records[:-2], records[-2:]
    correlate(first, aws, session)
    dynamo_calls.clear()
    report = correlate(second, aws, session)
    assert report.state_writes == 1 and report.compactions == 0
    (transaction,) = [c for c in dynamo_calls.calls if c.operation == "TransactWriteItems"]
    state_puts = [t["Put"]["Item"] for t in transaction.params["TransactItems"]
                  if t["Put"]["TableName"] == aws.tables.state]
    delta = next(i for i in state_puts if i["sk"]["S"].startswith(DELTA_PREFIX))
    assert len(delta["blob"]["B"]) < len(dumps_state(stored_state(session, aws.tables.state, HOST)[0])[0]) / 2


def test_commit_two_writers_race_on_the_next_delta_one_conflicts_and_retry_keeps_both(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord]) -> None:
    network = [r for r in records if b'"class_uid":4001' in r.data]
    others = [r for r in records if r not in network]
    correlate(others[:3], aws, session)  # a base exists: both racers write deltas
    store = make_store(aws)
    mine, theirs = store.load(HOST), store.load(HOST)
    mine_result, mine_delta = correlate_recording(mine.state, _events(others[3:]), POLICY)
    _, their_delta = correlate_recording(theirs.state, _events(network), POLICY)
    store.commit(theirs, [], NOW_NS + 10**12, their_delta)
    assert mine_result.admitted
    with pytest.raises(StateConflictError):
        store.commit(mine, [], NOW_NS + 10**12, mine_delta)
    assert len([s for s in _sks(session, aws) if s.startswith(DELTA_PREFIX)]) == 1  # only the winner's
    # Through process_batch the loser re-reads and re-applies: both effects kept, and the chain completes.
    report = correlate(others[3:], aws, session)
    assert report.state_writes == 1 and report.findings_written == 1
    state, version, _ = stored_state(session, aws.tables.state, HOST)
    assert version == 3
    assert their_delta.admitted and mine_delta.admitted
    assert {event_identity(e) for e, _ in their_delta.admitted + mine_delta.admitted} <= state.seen


def _events(batch: list[KinesisRecord]) -> list[Any]:
    from chainwatch.pipeline.correlate import decode_payload
    from chainwatch.sources import Normalizer

    return [e for r in batch for e in Normalizer(on_reject=lambda _: None).run(decode_payload(r)[0], HOST)]


def test_commit_past_max_deltas_compacts_into_base_and_deletes_deltas_in_one_transaction(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord],
        dynamo_calls: DynamoCalls) -> None:
    store = DynamoStateStore(make_models(aws.tables), clock=lambda: NOW, max_deltas=2)
    batches = [[r] for r in records]
    compacted_at: list[int] = []
    for batch in batches:
        dynamo_calls.clear()
        report = correlate(batch, aws, session, store=store)
        assert len(dynamo_calls.for_host(HOST)) <= 2
        if report.compactions:
            compacted_at.append(len(compacted_at))
            (transaction,) = [c for c in dynamo_calls.calls if c.operation == "TransactWriteItems"]
            kinds = sorted(next(iter(t)) for t in transaction.params["TransactItems"])
            if len(compacted_at) > 1:
                assert kinds.count("Delete") == 2  # the two deltas it folded
        deltas = [s for s in _sks(session, aws) if s.startswith(DELTA_PREFIX)]
        assert len(deltas) <= 2
    assert store.compactions >= 3
    state, version, _ = stored_state(session, aws.tables.state, HOST)
    assert state == _old_path(batches)
    # The base alone is the state as of its sequence number; the head names it.
    head = next(i for i in state_items(session, aws.tables.state, HOST) if i["sk"] == STATE_SK)
    base = next(i for i in state_items(session, aws.tables.state, HOST) if i["sk"] == BASE_SK)
    assert int(head["base_seq"]) == int(base["seq"]) <= version
    if int(base["seq"]) == version:
        assert base_state(session, aws.tables.state, HOST) == state


def test_commit_deltas_past_base_size_compact(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord]) -> None:
    store = DynamoStateStore(make_models(aws.tables), clock=lambda: NOW, min_compact_bytes=1)
    correlate(records[:1], aws, session, store=store)
    reports = [correlate([r], aws, session, store=store) for r in records[1:]]
    written = [r for r in reports if r.state_writes]
    # With no byte floor, deltas compact once they outweigh the base (which is small here): never many deltas.
    assert any(r.compactions for r in written)
    assert len([s for s in _sks(session, aws) if s.startswith(DELTA_PREFIX)]) <= 2
    assert stored_state(session, aws.tables.state, HOST)[0] == _old_path([records[:1], *([r] for r in records[1:])])


def test_process_batch_redelivery_after_deltas_writes_nothing_new(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord],
        dynamo_calls: DynamoCalls) -> None:
    batches = _chunks(records, 3)
    for batch in batches:
        correlate(batch, aws, session)
    before = (state_items(session, aws.tables.state, HOST), scan(session, aws.tables.findings))
    dynamo_calls.clear()
    for batch in [*batches, batches[1][1:], records]:
        report = correlate(batch, aws, session)
        assert (report.state_writes, report.findings_written, report.failed_sequence_numbers) == (0, 0, [])
    assert dynamo_calls.operations() == ["Query"] * 5
    assert (state_items(session, aws.tables.state, HOST), scan(session, aws.tables.findings)) == before


def _expire_head(session: boto3.session.Session, settings: Settings) -> None:
    table = session.resource("dynamodb").Table(settings.tables.state)
    table.update_item(Key={"pk": f"host#{HOST}", "sk": STATE_SK}, UpdateExpression="SET expires_at = :e",
                      ExpressionAttributeValues={":e": int(NOW) - 60})


def test_load_expired_head_with_deltas_fresh_state_and_commit_compacts_away_leftovers(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord]) -> None:
    for batch in _chunks(records, 3):
        correlate(batch, aws, session)
    assert any(s.startswith(DELTA_PREFIX) for s in _sks(session, aws))
    _expire_head(session, aws)

    loaded = make_store(aws).load(HOST)
    assert (len(loaded.state), loaded.state.seen, loaded.reset_reason) == (0, set(), None)

    report = correlate(records[:2], aws, session)
    assert (report.state_writes, report.compactions, report.state_resets) == (1, 1, [])
    assert _sks(session, aws) == [STATE_SK, BASE_SK]  # the expired deltas were deleted in the same transaction
    state, _, expires_at = stored_state(session, aws.tables.state, HOST)
    assert expires_at > NOW
    assert state == _old_path([records[:2]])


def test_commit_would_outlive_base_ttl_compacts(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord]) -> None:
    # No slack: the base expires with the head it was written under, so the next commit (later "now") refreshes it.
    store = DynamoStateStore(make_models(aws.tables), clock=lambda: NOW, ttl_slack=timedelta(0))
    correlate(records[:2], aws, session, store=store, now_ns=NOW_NS)
    report = correlate(records[2:4], aws, session, store=store, now_ns=NOW_NS + 60 * 10**9)
    assert (report.state_writes, report.compactions) == (1, 1)
    items = {i["sk"]: i for i in state_items(session, aws.tables.state, HOST)}
    assert sorted(items) == [STATE_SK, BASE_SK]
    assert int(items[BASE_SK]["expires_at"]) >= int(items[STATE_SK]["expires_at"])


def test_process_batch_corrupted_delta_state_reset_counted_and_next_commit_compacts(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord]) -> None:
    batches = _chunks(records, 3)
    for batch in batches[:2]:
        correlate(batch, aws, session)
    (delta_sk,) = [s for s in _sks(session, aws) if s.startswith(DELTA_PREFIX)]
    table = session.resource("dynamodb").Table(aws.tables.state)
    table.update_item(Key={"pk": f"host#{HOST}", "sk": delta_sk}, UpdateExpression="SET #b = :b",
                      ExpressionAttributeNames={"#b": "blob"}, ExpressionAttributeValues={":b": b"\x78\x9cgarbage"})

    report = correlate(batches[2], aws, session)

    assert len(report.state_resets) == 1 and HOST in report.state_resets[0] and "delta" in report.state_resets[0]
    assert (report.state_writes, report.compactions, report.failed_sequence_numbers) == (1, 1, [])
    assert _sks(session, aws) == [STATE_SK, BASE_SK]  # the unreadable delta is gone with the rest
    assert stored_state(session, aws.tables.state, HOST)[0] == _old_path([batches[2]])


def test_load_missing_delta_read_again_then_state_reset(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord],
        dynamo_calls: DynamoCalls) -> None:
    for batch in _chunks(records, 4):
        correlate(batch, aws, session)
    deltas = [s for s in _sks(session, aws) if s.startswith(DELTA_PREFIX)]
    assert len(deltas) >= 2
    session.resource("dynamodb").Table(aws.tables.state).delete_item(Key={"pk": f"host#{HOST}", "sk": deltas[0]})
    dynamo_calls.clear()

    loaded = make_store(aws).load(HOST)

    # Read again first (it could be half of another writer's compaction), then reset: it stayed missing.
    assert dynamo_calls.operations() == ["Query"] * 3
    assert loaded.reset_reason is not None and "missing" in loaded.reset_reason
    assert len(loaded.state) == 0 and loaded.must_compact == "reset"


def test_load_whole_state_item_of_previous_layout_kept_and_moved_into_base_on_commit(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord]) -> None:
    old = _old_path([records[:3]])
    blob, _ = dumps_state(old)
    models = make_models(aws.tables)
    item = models.state(f"host#{HOST}", STATE_SK, blob=blob, watermark_ns=old.watermark_ns,
                        expires_at=datetime.fromtimestamp(NOW, tz=UTC) + timedelta(hours=2))
    item.save()

    loaded = make_store(aws).load(HOST)
    assert loaded.state == old and loaded.must_compact == "previous layout"

    report = correlate(records[3:], aws, session)
    assert (report.state_writes, report.compactions, report.findings_written) == (1, 1, 1)
    items = {i["sk"]: i for i in state_items(session, aws.tables.state, HOST)}
    assert sorted(items) == [STATE_SK, BASE_SK] and "blob" not in items[STATE_SK]
    assert stored_state(session, aws.tables.state, HOST)[0] == _old_path([records[:3], records[3:]])


# -- the state kept between batches (a warm Lambda container) -----------------------------------------------------


def _key_conditions(calls: DynamoCalls) -> list[str]:
    return [str(c.params.get("KeyConditionExpression", "")) for c in calls.calls if c.operation == "Query"]


def test_load_after_own_commit_reads_only_newer_deltas_same_state_as_a_cold_read(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord],
        dynamo_calls: DynamoCalls) -> None:
    warm = make_store(aws)
    batches = _chunks(records, 4)
    correlate(batches[0], aws, session, store=warm)
    for batch in batches[1:]:
        dynamo_calls.clear()
        report = correlate(batch, aws, session, store=warm)
        assert report.state_writes == 1 and report.conflicts == 0
        (condition,) = _key_conditions(dynamo_calls)
        assert "BETWEEN" in condition  # only deltas newer than the kept state's version
        assert dynamo_calls.for_host(HOST) == ["Query", "TransactWriteItems"]
    cold = make_store(aws).load(HOST)
    assert cold.state == _old_path(batches)
    kept = warm.load(HOST)
    assert kept.state == cold.state and kept.item is not None and kept.item.version == cold.item.version


def test_load_kept_state_catches_up_with_another_writers_delta_without_conflict(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord]) -> None:
    batches = _chunks(records, 3)
    warm = make_store(aws)
    correlate(batches[0], aws, session, store=warm)
    other = correlate(batches[1], aws, session, store=make_store(aws))  # another process appends a delta
    assert other.state_writes == 1 and other.compactions == 0

    report = correlate(batches[2], aws, session, store=warm)

    assert (report.state_writes, report.conflicts) == (1, 0)
    assert stored_state(session, aws.tables.state, HOST)[0] == _old_path(batches)


def test_load_kept_state_after_another_writers_compaction_conflicts_once_and_rereads(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord]) -> None:
    batches = _chunks(records, 3)
    warm = make_store(aws)
    correlate(batches[0], aws, session, store=warm)
    # Another process compacts (its deltas fold at once): no newer delta is left for the kept state to find.
    other = DynamoStateStore(make_models(aws.tables), clock=lambda: NOW, max_deltas=0)
    assert correlate(batches[1], aws, session, store=other).compactions == 1

    report = correlate(batches[2], aws, session, store=warm)

    assert (report.state_writes, report.conflicts, report.state_reads) == (1, 1, 2)
    assert stored_state(session, aws.tables.state, HOST)[0] == _old_path(batches)


def test_load_no_cache_budget_always_reads_the_whole_prefix(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord],
        dynamo_calls: DynamoCalls) -> None:
    store = DynamoStateStore(make_models(aws.tables), clock=lambda: NOW, cache_bytes=0)
    for batch in _chunks(records, 3):
        correlate(batch, aws, session, store=store)
    assert _key_conditions(dynamo_calls) and all("BETWEEN" not in c for c in _key_conditions(dynamo_calls))


def _renamed(data: bytes, host: str) -> bytes:
    """An OCSF record of another device (same content)."""
    doc = orjson.loads(data)
    doc["device"].update(hostname=host, name=host)
    return orjson.dumps(doc)


def test_load_kept_states_bounded_least_recently_committed_host_read_afresh(
        aws: Settings, session: boto3.session.Session, records: list[KinesisRecord],
        dynamo_calls: DynamoCalls) -> None:
    store = DynamoStateStore(make_models(aws.tables), clock=lambda: NOW, cache_hosts=1)
    other = [KinesisRecord(r.sequence_number, "mac-09", _renamed(r.data, "mac-09"), r.shard) for r in records[:4]]
    correlate(records[:4], aws, session, store=store)
    assert correlate(other, aws, session, store=store).state_writes == 1  # mac-09's state is kept, mac-02's let go
    assert state_items(session, aws.tables.state, "mac-09")
    dynamo_calls.clear()
    correlate(records[4:8], aws, session, store=store)
    (condition,) = _key_conditions(dynamo_calls)
    assert "BETWEEN" not in condition  # mac-02 read afresh
    assert stored_state(session, aws.tables.state, HOST)[0] == _old_path([records[:4], records[4:8]])
