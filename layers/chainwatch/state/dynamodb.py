"""DynamoDB state behind the engine's store port, with pynamodb models built from settings (not import-time env).

Tables (declared in ``template.yaml``; the local run creates them from there):

``ChainState`` (pk ``host#<host>``, sk ``state`` / ``coverage#...``, TTL ``expires_at``)
    one compressed, versioned item per host: one Query reads a host's live state, one conditional write saves it.
``Findings`` (pk ``finding_id``; stream ``NEW_IMAGE``; TTL ``expires_at``)
    the outbox: a finding revision is written in the same transaction as the state change that produced it, and
    its stream record feeds the dispatch function.
``Deliveries`` (pk ``finding_id``, sk ``<sink>#<revision>`` or ``ticket#<sink>``; TTL ``expires_at``)
    per-sink delivery bookkeeping and the finding-to-ticket map (conditional writes).

DynamoDB deletes expired items lazily (up to days late), so every read filters on ``expires_at`` itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.attributes import BinaryAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, PynamoDBException, TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chainwatch.engine.codec import StateDecodeError, dumps_state, loads_state
from chainwatch.engine.hoststate import HostState
from chainwatch.errors import StateConflictError, TransientError

STATE_SK = "state"
_THROTTLES = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
              "InternalServerError", "ServiceUnavailable", "TransactionConflictException"}


@dataclass(frozen=True)
class Tables:
    """Table names and endpoint: read once from settings and passed in."""

    state: str
    findings: str
    deliveries: str
    region: str = "us-east-1"
    endpoint: str | None = None


@dataclass(frozen=True)
class Models:
    """The model classes of :func:`make_models` (typed ``Any``: pynamodb builds their attributes at runtime)."""

    state: Any
    findings: Any
    deliveries: Any
    tables: Tables
    #: One connection for transactions, made once: each new Connection builds its own botocore session and client,
    #: which costs ~0.1 s (service model loading) per commit.
    _connection: list[Connection] = field(default_factory=list, repr=False, compare=False)

    def connection(self) -> Connection:
        if not self._connection:
            self._connection.append(Connection(region=self.tables.region, host=self.tables.endpoint))
        return self._connection[0]


def make_models(tables: Tables) -> Models:
    """pynamodb model classes bound to these tables (pynamodb reads ``Meta`` when a class is defined)."""

    class ChainStateItem(Model):
        class Meta:
            table_name = tables.state
            region = tables.region
            host = tables.endpoint

        pk = UnicodeAttribute(hash_key=True)
        sk = UnicodeAttribute(range_key=True)
        blob = BinaryAttribute(null=True, legacy_encoding=False)
        watermark_ns = NumberAttribute(default=0)
        expires_at = TTLAttribute(null=True)
        version = VersionAttribute()

    class FindingItem(Model):
        class Meta:
            table_name = tables.findings
            region = tables.region
            host = tables.endpoint

        finding_id = UnicodeAttribute(hash_key=True)
        host = UnicodeAttribute()
        revision = NumberAttribute()
        document = UnicodeAttribute()
        digest = UnicodeAttribute()
        is_alert = NumberAttribute(default=0)
        canary = NumberAttribute(default=0)
        updated_ns = NumberAttribute()
        expires_at = TTLAttribute(null=True)

    class DeliveryItem(Model):
        class Meta:
            table_name = tables.deliveries
            region = tables.region
            host = tables.endpoint

        finding_id = UnicodeAttribute(hash_key=True)
        sk = UnicodeAttribute(range_key=True)
        outcome = UnicodeAttribute(null=True)
        value = UnicodeAttribute(null=True)
        detail = UnicodeAttribute(null=True)
        at_ns = NumberAttribute(default=0)
        #: A transient failure's Retry-After, as the epoch second before which the sink must not be called again.
        retry_at = NumberAttribute(null=True)
        expires_at = TTLAttribute(null=True)

    return Models(ChainStateItem, FindingItem, DeliveryItem, tables)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "cause_response_code", "") or "")


@dataclass
class LoadedState:
    state: HostState
    item: Any | None  # the pynamodb item (carries the version for the conditional write)
    #: Why the stored state was not used (undecodable: corrupted, or written by an incompatible version).
    reset_reason: str | None = None


@dataclass(frozen=True)
class OutboxRecord:
    """A finding revision to write with the state change that produced it."""

    finding_id: str
    host: str
    revision: int
    document_json: str
    digest: str
    is_alert: bool
    canary: bool = False


class DynamoStateStore:
    """Loads and commits host state; the commit is one transaction (state + outbox) with optimistic locking.

    Parameters
    ----------
    models:
        From :func:`make_models`.
    retention:
        How long finding and delivery records are kept.
    clock:
        Wall-clock seconds (injected for tests); used to filter expired items on read.
    """

    def __init__(self, models: Models, *, retention: timedelta = timedelta(days=30),
                 clock: Any = time.time) -> None:
        self.models = models
        self.retention = retention
        self.clock = clock
        #: State entries trimmed to fit the item size limit: in all, and by the last commit.
        self.trimmed = 0
        self.last_trimmed = 0

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    def load(self, host: str) -> LoadedState:
        """A host's live state (a fresh one when none is stored or the stored one has expired); one Query.

        Expiry is checked here rather than in a filter expression: a filtered-out expired item (TTL deletes lazily,
        up to days late) would hide the version the next conditional write must name, and fetching it separately
        would cost a second read per host.
        """
        model = self.models.state
        try:
            items = list(model.query(f"host#{host}", model.sk == STATE_SK, consistent_read=True))
        except PynamoDBException as exc:
            raise TransientError(f"state read for {host} failed: {exc}") from exc
        item = items[0] if items else None
        if item is None or item.blob is None or (item.expires_at is not None and item.expires_at <= self._now()):
            # Expired (or never written): start afresh, but keep the item so the write conditions on its version.
            return LoadedState(HostState(host), item)
        try:
            return LoadedState(loads_state(item.blob), item)
        except StateDecodeError as exc:
            # Failing would block the shard until the records age out; starting afresh loses only this host's
            # partial chains, and the caller counts and logs it.
            return LoadedState(HostState(host), item, reset_reason=str(exc))

    def commit(self, loaded: LoadedState, outbox: list[OutboxRecord], expires_ns: int) -> None:
        """Save the state and its outbox records in one transaction, conditional on the version read.

        Raises
        ------
        StateConflictError
            Another writer saved this host's state since it was read: re-read, re-apply, retry.
        TransientError
            Throttling or a service error.
        """
        models = self.models
        state = loaded.state
        blob, trimmed = dumps_state(state)
        self.trimmed += trimmed
        self.last_trimmed = trimmed
        item = loaded.item
        if item is None:
            item = models.state(f"host#{state.host}", STATE_SK)
        item.blob = blob
        item.watermark_ns = state.watermark_ns
        item.expires_at = datetime.fromtimestamp(expires_ns / 1e9, tz=UTC)
        now_ns = int(self.clock() * 1e9)
        keep_until = self._now() + self.retention
        try:
            with TransactWrite(connection=models.connection()) as tx:
                tx.save(item)
                for record in outbox:
                    tx.save(models.findings(
                        record.finding_id, host=record.host, revision=record.revision,
                        document=record.document_json, digest=record.digest, is_alert=int(record.is_alert),
                        canary=int(record.canary), updated_ns=now_ns, expires_at=keep_until))
        except TransactWriteError as exc:
            reasons = [str(r) for r in (getattr(exc, "cancellation_reasons", None) or []) if r]
            text = " ".join(reasons) + " " + _code(exc)
            if "ConditionalCheckFailed" in text:
                raise StateConflictError(f"state of {state.host} changed since it was read") from exc
            raise TransientError(f"state commit for {state.host} failed: {text.strip() or exc}") from exc


class DynamoTicketMap:
    """:class:`~chainwatch.sinks.base.TicketMap` on the Deliveries table (``sk = ticket#<sink>``)."""

    def __init__(self, models: Models) -> None:
        self.model = models.deliveries

    def get(self, finding_id: str, sink: str) -> str | None:
        try:
            item = self.model.get(finding_id, f"ticket#{sink}", consistent_read=True)
        except self.model.DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise TransientError(f"ticket map read failed: {_code(exc) or type(exc).__name__}") from exc
        value: str | None = item.value
        return value

    def claim(self, finding_id: str, sink: str, value: str) -> bool:
        item = self.model(finding_id, f"ticket#{sink}", value=value, at_ns=time.time_ns())
        try:
            item.save(condition=self.model.finding_id.does_not_exist())
        except PutError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise TransientError(f"ticket map write failed: {_code(exc) or exc}") from exc
        return True

    def replace(self, finding_id: str, sink: str, expected: str, value: str) -> bool:
        """Store ``value`` only if the stored value is still ``expected`` (one conditional put): of two workers
        taking over the same stale claim, exactly one gets True."""
        item = self.model(finding_id, f"ticket#{sink}", value=value, at_ns=time.time_ns())
        try:
            item.save(condition=self.model.value == expected)
        except PutError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise TransientError(f"ticket map write failed: {_code(exc) or exc}") from exc
        return True

    def set(self, finding_id: str, sink: str, value: str) -> None:
        try:
            self.model(finding_id, f"ticket#{sink}", value=value, at_ns=time.time_ns()).save()
        except PynamoDBException as exc:
            raise TransientError(f"ticket map write failed: {_code(exc) or type(exc).__name__}") from exc

    def release(self, finding_id: str, sink: str) -> None:
        try:
            self.model(finding_id, f"ticket#{sink}").delete()
        except PynamoDBException as exc:
            raise TransientError(f"ticket map delete failed: {_code(exc) or type(exc).__name__}") from exc


class DynamoDeliveryLog:
    """Per-sink delivery bookkeeping: a retry of the dispatch skips what already succeeded."""

    def __init__(self, models: Models, retention: timedelta = timedelta(days=30)) -> None:
        self.model = models.deliveries
        self.retention = retention
        self._last: tuple[tuple[str, str], Any] | None = None

    def _item(self, finding_id: str, sink: str, revision: int) -> Any:
        """The row, read once for the ``settled`` + ``retry_at`` pair the dispatcher asks about each delivery."""
        key = (finding_id, f"{sink}#{revision}")
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        try:
            item: Any = self.model.get(*key, consistent_read=True)
        except self.model.DoesNotExist:
            item = None
        self._last = (key, item)
        return item

    def settled(self, finding_id: str, sink: str, revision: int) -> bool:
        """Whether the sink needs nothing more for this revision: delivered, skipped or dead-lettered."""
        self._last = None  # a fresh read for every new question
        item = self._item(finding_id, sink, revision)
        return item is not None and item.outcome in ("delivered", "skipped", "failed_permanent")

    def record(self, finding_id: str, sink: str, revision: int, outcome: str, detail: str,
               external_id: str | None, retry_at: float | None = None) -> None:
        self.model(finding_id, f"{sink}#{revision}", outcome=outcome, detail=detail[:1000], value=external_id,
                   at_ns=time.time_ns(), retry_at=retry_at,
                   expires_at=datetime.now(tz=UTC) + self.retention).save()
        self._last = None

    def retry_at(self, finding_id: str, sink: str, revision: int) -> float | None:
        """The Retry-After a transient failure recorded (epoch seconds), or ``None``."""
        item = self._item(finding_id, sink, revision)
        if item is None or item.retry_at is None or item.outcome != "failed_transient":
            return None
        return float(item.retry_at)
