"""The dispatch step: finding revisions from the outbox stream to every configured sink, each exactly once.

Per-sink delivery bookkeeping (StreamAlert style) makes a retry send only what is missing: a revision already
delivered to a sink is skipped there. Transient failures that outlive the sink's own retries make the stream
record a batch item failure (Lambda retries it); permanent failures go to the dead-letter destination with the
response that explains them and are not retried.

**Sinks are isolated from each other.** Each sink's deliveries run in their own worker thread (a
``ThreadPoolExecutor`` with one worker per sink), all within one time budget derived from the invocation's
remaining time (``remaining() - reserve``; the reserve pays for the delivery-log writes and the dead letters after
the sinks return). Threads, not processes or asyncio: the work is I/O bound (HTTP and DynamoDB calls that release
the GIL), the sinks are synchronous ``requests`` code, and threads share the warm clients of the container;
Lambda has no ``/dev/shm`` for multiprocessing. So a vendor answering 429 with ``Retry-After: 6`` only holds its
own sink: the other sinks deliver meanwhile. A sink's retry policy never starts a wait that ends past the budget
(:class:`~chainwatch.sinks.base.RetryPolicy`), and the dispatcher stops waiting for a sink at the end of the
budget; whatever a sink did not finish is not recorded as delivered, so its records become batch item failures
and the retry sends only what is missing. The Lambda never times out on a slow vendor.

**Retry-After is honoured as sent.** A transient failure that carries a ``Retry-After`` longer than the budget
left is recorded in the delivery log with the time before which the vendor must not be called again
(``retry_at``); a redelivered record reaching that sink earlier is left undelivered again without a request.

The :class:`DispatchReport` counts, per sink, what was delivered, left for a retry and dead-lettered (with the
reasons); the Lambda handler turns it into Powertools metrics and ``chainwatch local`` prints it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from chainwatch.errors import ConfigError, PermanentError, TransientError
from chainwatch.sinks.base import Delivery, DeliveryResult, Outcome, Sink

log_ = logging.getLogger(__name__)
_DESERIALIZER = TypeDeserializer()
#: Outcomes after which a sink needs nothing more for a revision: a redelivered stream record (retried because of
#: another sink) must not resend it, nor dead-letter a permanent failure a second time.
SETTLED = frozenset({Outcome.DELIVERED.value, Outcome.SKIPPED.value, Outcome.FAILED_PERMANENT.value})
#: Seconds of the invocation kept back for the bookkeeping after the sinks return (delivery log, dead letters).
DEFAULT_RESERVE = 5.0


class DeliveryLog(Protocol):
    def settled(self, finding_id: str, sink: str, revision: int) -> bool: ...

    def record(self, finding_id: str, sink: str, revision: int, outcome: str, detail: str,
               external_id: str | None, retry_at: float | None = None) -> None: ...

    def retry_at(self, finding_id: str, sink: str, revision: int) -> float | None:
        """When a transient failure asked (Retry-After) to be retried, as epoch seconds; ``None`` if it did not."""
        ...


class InMemoryDeliveryLog:
    """A :class:`DeliveryLog` in a dict (CLI, tests)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, int], tuple[str, str, str | None]] = {}
        self.retry_times: dict[tuple[str, str, int], float] = {}

    def settled(self, finding_id: str, sink: str, revision: int) -> bool:
        item = self.items.get((finding_id, sink, revision))
        return item is not None and item[0] in SETTLED

    def record(self, finding_id: str, sink: str, revision: int, outcome: str, detail: str,
               external_id: str | None, retry_at: float | None = None) -> None:
        self.items[(finding_id, sink, revision)] = (outcome, detail, external_id)
        if retry_at is None:
            self.retry_times.pop((finding_id, sink, revision), None)
        else:
            self.retry_times[(finding_id, sink, revision)] = retry_at

    def retry_at(self, finding_id: str, sink: str, revision: int) -> float | None:
        return self.retry_times.get((finding_id, sink, revision))


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that will never succeed as it is, with everything needed to understand and replay it."""

    sink: str
    finding_id: str
    revision: int
    detail: str
    response: str | None

    def to_json(self) -> str:
        return orjson.dumps(self.__dict__).decode()


@dataclass
class SinkCounts:
    """One sink's tally in one invocation (or, summed, in a run)."""

    delivered: int = 0
    skipped: int = 0
    #: Left undelivered for the next attempt: transient failures, Retry-After not yet due, budget spent.
    retried: int = 0
    dead_lettered: int = 0
    #: Why deliveries were left for a retry or dead-lettered: (finding id, revision, reason), bounded.
    reasons: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, other: SinkCounts) -> None:
        self.delivered += other.delivered
        self.skipped += other.skipped
        self.retried += other.retried
        self.dead_lettered += other.dead_lettered
        self.reasons.extend(other.reasons)


@dataclass
class DispatchReport:
    records: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    skipped_already_delivered: int = 0
    dead_lettered: int = 0
    failed_sequence_numbers: list[str] = field(default_factory=list)
    sinks: dict[str, SinkCounts] = field(default_factory=dict)
    #: The dead letters written in this invocation (sink, finding, revision, reason, vendor response).
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Sinks still running when the budget ended (their deliveries are left for the next attempt).
    timed_out: list[str] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failed_sequence_numbers]}

    def counts(self, sink: str) -> SinkCounts:
        return self.sinks.setdefault(sink, SinkCounts())

    def metrics(self) -> dict[str, int]:
        """Metric name -> count, for Powertools: per sink ``Delivered.<sink>``, ``Retried.<sink>``,
        ``DeadLettered.<sink>``, and the totals ``DeadLettered``, ``Retried``, ``AlreadyDelivered``,
        ``SinkTimedOut``."""
        out: dict[str, int] = {}
        for name, counts in sorted(self.sinks.items()):
            out[f"Delivered.{name}"] = counts.delivered
            out[f"Retried.{name}"] = counts.retried
            out[f"DeadLettered.{name}"] = counts.dead_lettered
        out["DeadLettered"] = self.dead_lettered
        out["Retried"] = sum(c.retried for c in self.sinks.values())
        out["AlreadyDelivered"] = self.skipped_already_delivered
        out["SinkTimedOut"] = len(self.timed_out)
        return out


@dataclass(frozen=True)
class OutboxRecord:
    sequence_number: str
    delivery: Delivery


def parse_stream_records(event: Mapping[str, Any]) -> list[OutboxRecord]:
    """Finding revisions from a DynamoDB stream event (INSERT/MODIFY with a new image; TTL removals ignored)."""
    out = []
    for record in event.get("Records", []):
        if record.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        stream = record.get("dynamodb", {})
        image = stream.get("NewImage")
        if not image:
            continue
        item = {key: _DESERIALIZER.deserialize(value) for key, value in image.items()}
        document = orjson.loads(item["document"])
        out.append(OutboxRecord(str(stream.get("SequenceNumber", "")), Delivery(
            finding_id=str(item["finding_id"]), revision=int(item["revision"]), document=document,
            canary=bool(int(item.get("canary", 0))))))
    return out


def dispatch(
    records: Sequence[OutboxRecord],
    sinks: Sequence[Sink],
    log: DeliveryLog,
    dead_letter: Callable[[Sequence[DeadLetter]], None],
    *,
    remaining: Callable[[], float] = lambda: float("inf"),
    clock: Callable[[], float] = time.time,
    reserve: float = DEFAULT_RESERVE,
) -> DispatchReport:
    """Deliver each record to each sink that does not have it yet, the sinks concurrently (module docstring).

    ``remaining`` is the invocation's time left in seconds (the Lambda context's), ``clock`` the wall clock that
    ``retry_at`` times are compared with; both are injected for tests.
    """
    report = DispatchReport(records=len(records))
    failed: set[str] = set()
    now = clock()
    work: dict[str, list[OutboxRecord]] = {}
    for sink in sinks:
        counts = report.counts(sink.name)
        pending = []
        for record in records:
            delivery = record.delivery
            if log.settled(delivery.finding_id, sink.name, delivery.revision):
                report.skipped_already_delivered += 1
                continue
            due = log.retry_at(delivery.finding_id, sink.name, delivery.revision)
            if due is not None and due > now:
                # The vendor asked not to be called before then: leave it, without a request.
                counts.retried += 1
                _reason(counts, delivery, f"Retry-After: not before {due - now:.0f} s from now")
                failed.add(record.sequence_number)
                continue
            pending.append(record)
        if pending:
            work[sink.name] = pending

    def budget() -> float:
        return remaining() - reserve

    by_name = {sink.name: sink for sink in sinks}
    outcomes: dict[str, list[tuple[OutboxRecord, DeliveryResult | None]]] = {}
    if work:
        executor = ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="chainwatch-sink")
        try:
            futures = {name: executor.submit(_run_sink, by_name[name], pending, budget)
                       for name, pending in work.items()}
            # The sinks stop starting work at the end of the budget; a sink still running a little after it (one
            # HTTP call cut short by its own timeout) is not waited for.
            left = budget()
            wait(futures.values(), timeout=None if left == float("inf") else max(0.0, left) + reserve / 2)
            for name, future in futures.items():
                if future.done():
                    outcomes[name] = future.result()
                else:
                    report.timed_out.append(name)
                    log_.warning("sink %s did not finish within the time budget; its deliveries are retried", name)
                    outcomes[name] = [(record, None) for record in work[name]]
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    letters: list[DeadLetter] = []
    now = clock()
    for sink in sinks:
        counts = report.counts(sink.name)
        for record, result in outcomes.get(sink.name, []):
            delivery = record.delivery
            if result is None:
                failed.add(record.sequence_number)
                counts.retried += 1
                _reason(counts, delivery, "no result within the time budget")
                continue
            if result.outcome in (Outcome.DELIVERED, Outcome.SKIPPED):
                log.record(delivery.finding_id, sink.name, delivery.revision, Outcome.DELIVERED.value
                           if result.outcome is Outcome.DELIVERED else Outcome.SKIPPED.value, result.detail,
                           result.external_id)
                if result.outcome is Outcome.DELIVERED:
                    report.deliveries[sink.name] = report.deliveries.get(sink.name, 0) + 1
                    counts.delivered += 1
                else:
                    counts.skipped += 1
            elif result.outcome is Outcome.FAILED_PERMANENT:
                # Recorded (and so settled) only once the dead letter is written, below.
                letters.append(DeadLetter(sink.name, delivery.finding_id, delivery.revision, result.detail,
                                          result.response))
            else:
                failed.add(record.sequence_number)
                counts.retried += 1
                _reason(counts, delivery, result.detail)
                if result.retry_after is not None and result.retry_after > 0:
                    log.record(delivery.finding_id, sink.name, delivery.revision, Outcome.FAILED_TRANSIENT.value,
                               result.detail, None, retry_at=now + result.retry_after)
    if letters:
        try:
            dead_letter(letters)
        except TransientError:
            # Not recorded as settled: the redelivered record tries the sink, and the dead letter, again.
            failed.update(r.sequence_number for r in records
                          if any(letter.finding_id == r.delivery.finding_id for letter in letters))
            for letter in letters:
                counts = report.counts(letter.sink)
                counts.retried += 1
                counts.reasons.append((letter.finding_id, letter.revision,
                                       f"dead-letter queue unavailable; will retry: {letter.detail[:300]}"))
        else:
            report.dead_lettered = len(letters)
            report.dead_letters = list(letters)
            for letter in letters:
                log.record(letter.finding_id, letter.sink, letter.revision, Outcome.FAILED_PERMANENT.value,
                           letter.detail, None)
                counts = report.counts(letter.sink)
                counts.dead_lettered += 1
                counts.reasons.append((letter.finding_id, letter.revision, letter.detail[:300]))
    report.failed_sequence_numbers = [r.sequence_number for r in records if r.sequence_number in failed]
    return report


_MAX_REASONS = 20


def _reason(counts: SinkCounts, delivery: Delivery, detail: str) -> None:
    if len(counts.reasons) < _MAX_REASONS:
        counts.reasons.append((delivery.finding_id, delivery.revision, detail[:300]))


def _run_sink(sink: Sink, pending: Sequence[OutboxRecord],
              budget: Callable[[], float]) -> list[tuple[OutboxRecord, DeliveryResult | None]]:
    """One sink's deliveries, in its own worker thread, under the invocation's budget.

    The sink gets its own context whose retry policy is bounded by ``budget`` (never the shared one: the sinks run
    at the same time). Chunks not started before the budget is spent get no result (left for the next attempt).
    """
    sink.context = replace(sink.context, retry=sink.context.retry.bounded(budget))
    out: list[tuple[OutboxRecord, DeliveryResult | None]] = []
    size = max(1, sink.max_batch)
    for start in range(0, len(pending), size):
        chunk = pending[start:start + size]
        if budget() <= 0:
            out.extend((record, None) for record in chunk)
            continue
        results = _send(sink, [r.delivery for r in chunk])
        by_key = {(r.finding_id, r.revision): r for r in results}
        out.extend((record, by_key.get((record.delivery.finding_id, record.delivery.revision))) for record in chunk)
    return out


def _send(sink: Sink, deliveries: list[Delivery]) -> list[DeliveryResult]:
    """A sink's results; a sink that raises for a whole batch gets that outcome for each delivery."""
    try:
        return sink.send(deliveries)
    except TransientError as exc:
        return [DeliveryResult(d.finding_id, d.revision, Outcome.FAILED_TRANSIENT, str(exc),
                               retry_after=exc.retry_after) for d in deliveries]
    except (PermanentError, ConfigError) as exc:
        # A sink that cannot be used as configured (missing secret, bad URL) fails its deliveries permanently:
        # they go to the dead-letter queue with the reason, to be replayed once the configuration is fixed.
        return [DeliveryResult(d.finding_id, d.revision, Outcome.FAILED_PERMANENT, str(exc)) for d in deliveries]


def sqs_sender(client: Any, queue_url: str | None) -> Callable[[Iterable[Any]], None]:
    """A quarantine / dead-letter writer to SQS (each entry's ``to_json``), failing transiently."""

    def send(entries: Iterable[Any]) -> None:
        if not queue_url:
            return
        batch = [{"Id": str(i), "MessageBody": entry.to_json()[:250_000]} for i, entry in enumerate(entries)]
        for start in range(0, len(batch), 10):
            try:
                response = client.send_message_batch(QueueUrl=queue_url, Entries=batch[start:start + 10])
            except (BotoCoreError, ClientError) as exc:
                raise TransientError(f"cannot write to {queue_url}: {type(exc).__name__}") from exc
            if response.get("Failed"):
                raise TransientError(f"{len(response['Failed'])} message(s) not accepted by {queue_url}")

    return send
