"""The correlate step: a batch of Kinesis records in, host state and finding outbox records out.

Guarantees (see the pipeline issue):

- records are decoded, normalized and grouped by host; a host whose records carry nothing the chain can use costs
  no DynamoDB call; every other host costs one Query and one conditional transaction per batch (more only when
  another writer raced it: the conflict is re-read and re-applied, never lost), and the transaction writes what
  the batch changed (a delta), not the whole state, except when the store compacts;
- a poison record (undecodable, unreadable, unmappable) is set aside in quarantine with its reason and the batch
  goes on; only transient failures (throttling, service errors, a quarantine that cannot be written) become batch
  item failures, and then for that host's records only;
- redelivery of any part of a batch changes nothing a second time: the state remembers which records it holds, and
  an unchanged finding is not written again.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from chainwatch.engine.chain import assemble
from chainwatch.engine.codec import StateDelta, role_of
from chainwatch.engine.engine import HostResult, reconcile, would_admit
from chainwatch.engine.hoststate import HostState, admit
from chainwatch.errors import StateConflictError, TransientError
from chainwatch.events import AnyEvent, SourceFormat
from chainwatch.findings.model import Finding
from chainwatch.findings.ocsf import to_ocsf
from chainwatch.policy import Policy
from chainwatch.readiness.canary import is_canary_host
from chainwatch.readiness.coverage import CoverageBuffer
from chainwatch.sources import Normalizer, relevance_gate
from chainwatch.sources.reader import Record, Rejection, excerpt, read_bytes
from chainwatch.sources.relevance import Gated
from chainwatch.state.dynamodb import DynamoStateStore, OutboxRecord

_FORMATS = {f.value for f in SourceFormat}
#: A "host" key with a string value, as every envelope has (a necessary condition, checked on the raw bytes).
_HOST_STRING = re.compile(rb'"host"\s*:\s*"')
#: A gzip'd record may expand to at most this many bytes (a 1 MiB record of zeros inflates to ~1 GB otherwise).
MAX_INFLATED_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class KinesisRecord:
    """The parts of a Lambda Kinesis record chainwatch uses."""

    sequence_number: str
    partition_key: str
    data: bytes
    shard: str = "shard"

    @classmethod
    def from_lambda(cls, record: Mapping[str, Any], shard: str = "shard") -> KinesisRecord:
        kinesis = record["kinesis"]
        return cls(str(kinesis["sequenceNumber"]), str(kinesis["partitionKey"]),
                   base64.b64decode(kinesis["data"]), shard)


@dataclass(frozen=True)
class QuarantineEntry:
    """A record set aside: where it came from, why, and an excerpt (never the whole, possibly huge, payload)."""

    sequence_number: str
    partition_key: str
    location: str
    reason: str
    format_guess: str | None
    excerpt: str

    def to_json(self) -> str:
        return orjson.dumps(self.__dict__).decode()


@dataclass
class BatchReport:
    """What one batch did, for the response, metrics and tests."""

    records: int = 0
    events: int = 0
    hosts_touched: int = 0
    hosts_skipped: int = 0
    quarantined: int = 0
    conflicts: int = 0
    state_reads: int = 0
    state_writes: int = 0
    #: State writes that rewrote the whole state (the rest wrote one delta each).
    compactions: int = 0
    #: State entries the codec dropped (oldest first) to keep items under DynamoDB's size limit.
    trimmed: int = 0
    coverage_flushes: int = 0
    coverage_flush_failures: int = 0
    #: Hosts whose stored state could not be decoded and was started afresh (with the reasons).
    state_resets: list[str] = field(default_factory=list)
    findings_written: int = 0
    failed_sequence_numbers: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        """The partial batch response Lambda expects (``ReportBatchItemFailures``)."""
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failed_sequence_numbers]}


def decode_payload(record: KinesisRecord) -> tuple[list[Record | Rejection | Gated], str, SourceFormat | None]:
    """Items of one record, its host and a forced format.

    A record is either raw telemetry (one or more JSON lines; host = partition key) or an envelope
    ``{"host": ..., "source": ..., "event": ...}``; either may be gzip-compressed.
    """
    origin = f"kinesis:{record.shard}"
    data = record.data
    if data[:2] == b"\x1f\x8b":
        try:
            data = gunzip(data, MAX_INFLATED_BYTES)
        except ValueError as exc:
            return [Rejection(_ref(origin, record), f"invalid gzip payload: {exc}", excerpt=excerpt(data[:60]))], \
                record.partition_key, None
    stripped = data if data[:1] == b"{" else data.lstrip()
    # Only what can be an envelope (a top-level "host" string) is parsed here: eslogger and ECS lines also have an
    # "event" key, and parsing each of them twice (here, then in the reader) was a third of the decode time.
    if stripped[:1] == b"{" and b'"event"' in data and b'"host"' in data and _HOST_STRING.search(data) is not None:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and "event" in doc and isinstance(doc.get("host"), str) and set(doc) <= {
                "host", "source", "event", "received"}:
            source = doc.get("source")
            forced = SourceFormat(source) if isinstance(source, str) and source in _FORMATS else None
            event = doc["event"]
            if isinstance(event, dict):
                return [Record(event, _ref(origin, record))], doc["host"] or record.partition_key, forced
            return [Rejection(_ref(origin, record), "envelope 'event' is not an object")], doc["host"], forced
    items = [_relocate(item, origin, record) for item in read_bytes(data, origin, relevance_gate())]
    return items, record.partition_key, None


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip data (all members), refusing more than ``limit`` output bytes.

    Raises
    ------
    ValueError
        Corrupt or truncated data (``gzip.decompress`` raises three unrelated types for that, ``zlib.error`` among
        them), or output beyond ``limit``.
    """
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits=31)  # 16 + 15: a gzip header and trailer around deflate data
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise ValueError(str(exc)) from exc
        if len(out) > limit:
            raise ValueError(f"payload expands beyond {limit} bytes")
        if not inflater.eof:
            raise ValueError("truncated gzip data")
        data = inflater.unused_data.lstrip(b"\x00")  # gzip allows zero padding between members
    return bytes(out)


def _ref(origin: str, record: KinesisRecord) -> Any:
    from chainwatch.events import RawRef

    return RawRef(origin, None, record.sequence_number)


def _relocate(item: Record | Rejection | Gated, origin: str, record: KinesisRecord) -> Record | Rejection | Gated:
    """Point a decoded item at its stream position (sequence number, and the line within a multi-line record)."""
    from chainwatch.events import RawRef

    if isinstance(item, Gated):
        return item  # never decoded: it has no position to keep

    line = item.ref.line
    sequence = record.sequence_number if not line or line == 1 else f"{record.sequence_number}.{line}"
    ref = RawRef(origin, None, sequence)
    if isinstance(item, Record):
        return Record(item.data, ref)
    return Rejection(ref, item.reason, item.format_guess, item.excerpt)


def process_batch(
    records: Sequence[KinesisRecord],
    *,
    policy: Policy,
    store: DynamoStateStore,
    quarantine: Callable[[Sequence[QuarantineEntry]], None],
    max_conflict_retries: int = 5,
    now_ns: Callable[[], int],
    coverage: CoverageBuffer | None = None,
    coverage_writer: Callable[[dict[str, Any]], None] | None = None,
) -> BatchReport:
    """Correlate one batch. Never raises for bad input; raises nothing for transient failures either (they
    become batch item failures of the hosts they hit)."""
    report = BatchReport(records=len(records))
    by_host: dict[str, list[tuple[AnyEvent, str]]] = {}
    sequences_by_host: dict[str, list[str]] = {}
    poison: list[QuarantineEntry] = []

    # One normalizer per forced format for the whole batch (constructing one per record was a measurable part of
    # the per-record cost); rejections are collected per record and drained after it.
    rejected: list[Rejection] = []
    normalizers: dict[SourceFormat | None, Normalizer] = {}
    for record in records:
        items, host, forced = decode_payload(record)
        normalizer = normalizers.get(forced)
        if normalizer is None:
            normalizer = normalizers[forced] = Normalizer(forced_format=forced, on_reject=rejected.append)
        events = list(normalizer.run(items, host))
        for rejection in rejected:
            poison.append(QuarantineEntry(record.sequence_number, record.partition_key, str(rejection.ref),
                                          rejection.reason, rejection.format_guess, rejection.excerpt))
        rejected.clear()
        sequence = record.sequence_number
        for event in events:
            by_host.setdefault(event.host, []).append((event, sequence))
            sequences_by_host.setdefault(event.host, []).append(sequence)
        report.events += len(events)

    if poison:
        try:
            quarantine(poison)
            report.quarantined = len(poison)
        except TransientError:
            # Setting a record aside must not lose it: if quarantine is down, the record is retried.
            report.failed_sequence_numbers.extend(sorted({p.sequence_number for p in poison}))

    for host, pairs in by_host.items():
        events = [event for event, _ in pairs]
        if not any(would_admit(policy, event) for event in events):
            report.hosts_skipped += 1
            continue
        report.hosts_touched += 1
        try:
            _commit_host(host, events, policy, store, max_conflict_retries, now_ns, report)
        except TransientError:
            report.failed_sequence_numbers.extend(sequences_by_host[host])
    report.failed_sequence_numbers = sorted(set(report.failed_sequence_numbers), key=_sequence_key)
    if coverage is not None:
        coverage.observe(event for pairs in by_host.values() for event, _ in pairs)
        # A three-stage chain that first appears here stalled for lack of some telemetry: the readiness report
        # counts it against the host.
        coverage.note_findings(f for f in report.findings if len(f.stages) < 4)
        if coverage_writer is not None:
            for request in coverage.requests(now_ns()):
                try:
                    coverage_writer(request)
                    report.coverage_flushes += 1
                except TransientError:
                    # Coverage is a statistic: a failed flush is counted and dropped, never a batch failure.
                    report.coverage_flush_failures += 1
    return report


def _sequence_key(sequence: str) -> tuple[int, str]:
    head = sequence.split(".", 1)[0]
    return (int(head), sequence) if head.isdigit() else (0, sequence)


def correlate_recording(state: HostState, events: Iterable[AnyEvent], policy: Policy) -> tuple[HostResult, StateDelta]:
    """:func:`~chainwatch.engine.engine.correlate_host`, also recording what it changed as a :class:`StateDelta`.

    The same steps in the same order (admit each event, assemble and reconcile once, evict at twice the window
    behind the watermark); the delta lets the store write what changed instead of the whole state. A test holds it
    to ``correlate_host`` on the same input.
    """
    digests_before = {k: list(v) for k, v in state.finding_digests.items()}
    delta = StateDelta()
    for event in events:
        if admit(state, policy, event):
            delta.admitted.append((event, role_of(state, event)))
    if not delta.admitted:
        return HostResult(0, [], []), delta
    changed, withdrawn = reconcile(state, assemble(state, policy))
    horizon = state.watermark_ns - 2 * policy.window_ns
    evicted_at = None
    if horizon > 0:
        state.evict_before(horizon)
        evicted_at = horizon
    delta.finish(state, digests_before, evicted_at)
    return HostResult(len(delta.admitted), changed, withdrawn), delta


def _commit_host(host: str, events: list[AnyEvent], policy: Policy, store: DynamoStateStore, max_retries: int,
                 now_ns: Callable[[], int], report: BatchReport) -> None:
    for attempt in range(max_retries + 1):
        loaded = store.load(host)
        if loaded.reset_reason and attempt == 0:
            report.state_resets.append(f"{host}: {loaded.reset_reason}")
        report.state_reads += 1
        result, delta = correlate_recording(loaded.state, events, policy)
        if not result.admitted and not result.changed:
            return  # every record was already in the state: a redelivery
        outbox = [OutboxRecord(f.finding_id, f.host, revision, orjson.dumps(to_ocsf(f, policy)).decode(), digest,
                               f.is_alert, canary=is_canary_host(f.host)) for f, revision, digest in result.changed]
        expires_ns = max(loaded.state.watermark_ns, now_ns()) + 2 * policy.window_ns
        try:
            store.commit(loaded, outbox, expires_ns, delta)
        except StateConflictError:
            report.conflicts += 1
            continue
        report.state_writes += 1
        report.compactions += store.last_compacted
        report.trimmed += store.last_trimmed
        report.findings_written += len(outbox)
        report.findings.extend(f for f, _, _ in result.changed)
        return
    raise TransientError(f"state of {host} kept changing under {max_retries + 1} attempts")


def iter_lambda_records(event: Mapping[str, Any]) -> Iterable[KinesisRecord]:
    for record in event.get("Records", []):
        arn = str(record.get("eventSourceARN", ""))
        shard = str(record.get("eventID", "shard")).split(":", 1)[0] or arn
        yield KinesisRecord.from_lambda(record, shard)
