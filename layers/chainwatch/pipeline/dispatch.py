"""The dispatch step: finding revisions from the outbox stream to every configured sink, each exactly once.

Per-sink delivery bookkeeping (StreamAlert style) makes a retry send only what is missing: a revision already
delivered to a sink is skipped there. Transient failures that outlive the sink's own retries make the stream
record a batch item failure (Lambda retries it); permanent failures go to the dead-letter destination with the
response that explains them and are not retried. One sink down never blocks the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from chainwatch.errors import ConfigError, PermanentError, TransientError
from chainwatch.sinks.base import Delivery, DeliveryResult, Outcome, Sink

_DESERIALIZER = TypeDeserializer()
#: Outcomes after which a sink needs nothing more for a revision: a redelivered stream record (retried because of
#: another sink) must not resend it, nor dead-letter a permanent failure a second time.
SETTLED = frozenset({Outcome.DELIVERED.value, Outcome.SKIPPED.value, Outcome.FAILED_PERMANENT.value})


class DeliveryLog(Protocol):
    def settled(self, finding_id: str, sink: str, revision: int) -> bool: ...

    def record(self, finding_id: str, sink: str, revision: int, outcome: str, detail: str,
               external_id: str | None) -> None: ...


class InMemoryDeliveryLog:
    """A :class:`DeliveryLog` in a dict (CLI, tests)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, int], tuple[str, str, str | None]] = {}

    def settled(self, finding_id: str, sink: str, revision: int) -> bool:
        item = self.items.get((finding_id, sink, revision))
        return item is not None and item[0] in SETTLED

    def record(self, finding_id: str, sink: str, revision: int, outcome: str, detail: str,
               external_id: str | None) -> None:
        self.items[(finding_id, sink, revision)] = (outcome, detail, external_id)


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
class DispatchReport:
    records: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    skipped_already_delivered: int = 0
    dead_lettered: int = 0
    failed_sequence_numbers: list[str] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failed_sequence_numbers]}


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
) -> DispatchReport:
    """Deliver each record to each sink that does not have it yet."""
    report = DispatchReport(records=len(records))
    failed: set[str] = set()
    letters: list[DeadLetter] = []
    for sink in sinks:
        pending = []
        for record in records:
            delivery = record.delivery
            if log.settled(delivery.finding_id, sink.name, delivery.revision):
                report.skipped_already_delivered += 1
                continue
            pending.append(record)
        for start in range(0, len(pending), max(1, sink.max_batch)):
            chunk = pending[start:start + max(1, sink.max_batch)]
            results = _send(sink, [r.delivery for r in chunk])
            by_key = {(r.finding_id, r.revision): r for r in results}
            for record in chunk:
                delivery = record.delivery
                result = by_key.get((delivery.finding_id, delivery.revision))
                if result is None:
                    failed.add(record.sequence_number)
                    continue
                if result.outcome in (Outcome.DELIVERED, Outcome.SKIPPED):
                    log.record(delivery.finding_id, sink.name, delivery.revision, Outcome.DELIVERED.value
                               if result.outcome is Outcome.DELIVERED else Outcome.SKIPPED.value, result.detail,
                               result.external_id)
                    if result.outcome is Outcome.DELIVERED:
                        report.deliveries[sink.name] = report.deliveries.get(sink.name, 0) + 1
                elif result.outcome is Outcome.FAILED_PERMANENT:
                    # Recorded (and so settled) only once the dead letter is written, below.
                    letters.append(DeadLetter(sink.name, delivery.finding_id, delivery.revision, result.detail,
                                              result.response))
                else:
                    failed.add(record.sequence_number)
    if letters:
        try:
            dead_letter(letters)
        except TransientError:
            # Not recorded as settled: the redelivered record tries the sink, and the dead letter, again.
            failed.update(r.sequence_number for r in records
                          if any(letter.finding_id == r.delivery.finding_id for letter in letters))
        else:
            report.dead_lettered = len(letters)
            for letter in letters:
                log.record(letter.finding_id, letter.sink, letter.revision, Outcome.FAILED_PERMANENT.value,
                           letter.detail, None)
    report.failed_sequence_numbers = [r.sequence_number for r in records if r.sequence_number in failed]
    return report


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
