"""DynamoDB state behind the engine's store port, with pynamodb models built from settings (not import-time env).

Tables (declared in ``template.yaml``; the local run creates them from there):

``ChainState`` (pk ``host#<host>``, sk ``state`` / ``state#base`` / ``state#d#<seq>`` / ``coverage``, TTL
``expires_at``)
    a host's state as a small versioned *head* (the lock, the TTL that decides whether the state is live, and which
    base is current), a compressed *base* (the whole state as of one sequence number) and append-only compressed
    *deltas* (what each later batch admitted and changed). One Query reads them all and replays the deltas on the
    base; one transaction writes the head and either a new delta (a few hundred bytes) or, when the deltas have
    grown past the base's size or a count, a compaction (the whole state as the new base, the deltas deleted).
    Two writers racing on a host both condition on the head's version: one wins, the other re-reads. A process
    keeps the state it committed last for each host (bounded), so its next batch of that host reads only deltas
    written since by others (normally none) instead of decoding the base again.
``Findings`` (pk ``finding_id``; stream ``NEW_IMAGE``; TTL ``expires_at``)
    the outbox: a finding revision is written in the same transaction as the state change that produced it, and
    its stream record feeds the dispatch function.
``Deliveries`` (pk ``finding_id``, sk ``<sink>#<revision>`` or ``ticket#<sink>``; TTL ``expires_at``)
    per-sink delivery bookkeeping and the finding-to-ticket map (conditional writes).

DynamoDB deletes expired items lazily (up to days late), so every read filters on ``expires_at`` itself.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.attributes import BinaryAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, PynamoDBException, TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chainwatch.engine.codec import (
    StateDecodeError,
    StateDelta,
    apply_delta,
    dumps_delta,
    dumps_state,
    loads_delta,
    loads_state,
)
from chainwatch.engine.hoststate import HostState
from chainwatch.errors import StateConflictError, TransientError

#: The head item (lock, TTL, and where the base is); the base and the deltas share its prefix, so one Query over
#: ``begins_with(sk, "state")`` reads them all (and not the host's other items, such as its coverage counters).
STATE_SK = "state"
BASE_SK = "state#base"
DELTA_PREFIX = "state#d#"
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
        #: Head: the sequence number of the base's last folded delta (0: no base). Base and delta: their own.
        base_seq = NumberAttribute(null=True)
        seq = NumberAttribute(null=True)

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
    """A host's state as read, and what the next commit needs to know about the items it was read from."""

    state: HostState
    item: Any | None  # the head item (its version is the optimistic lock of the next commit)
    #: Why the stored state was not used (undecodable: corrupted, or written by an incompatible version).
    reset_reason: str | None = None
    base: Any | None = None
    #: Every delta item in the partition (the live ones and any leftovers): a compaction deletes them all.
    deltas: list[Any] = field(default_factory=list)
    #: Compressed bytes of the base and of the live deltas (the compaction thresholds compare them).
    base_bytes: int = 0
    delta_bytes: int = 0
    live_deltas: int = 0
    #: The earliest TTL of the live base and deltas: a commit that extends the head past it compacts instead.
    earliest_expiry: datetime | None = None
    #: Why the next commit must rewrite the whole state (``None``: a delta will do).
    must_compact: str | None = None


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


class _Inconsistent(StateDecodeError):
    """What one Query showed does not fit together (a base or delta the head names is not there)."""


def _head(items: list[Any]) -> Any | None:
    return next((i for i in items if i.sk == STATE_SK), None)


def _base(items: list[Any]) -> Any | None:
    return next((i for i in items if i.sk == BASE_SK), None)


def _deltas(items: list[Any]) -> list[Any]:
    return [i for i in items if i.sk.startswith(DELTA_PREFIX)]


#: Most items one TransactWriteItems may hold.
MAX_TRANSACTION_ITEMS = 100


class DynamoStateStore:
    """Loads and commits host state as a base plus append-only deltas (see the module docstring).

    Each commit is one transaction: the head item (the optimistic lock: its version is the sequence number of the
    last delta), either one new delta item or a compaction (a rewritten base, the folded deltas deleted), and the
    batch's outbox records.

    Parameters
    ----------
    models:
        From :func:`make_models`.
    retention:
        How long finding and delivery records are kept.
    clock:
        Wall-clock seconds (injected for tests); used to filter expired items on read.
    max_deltas:
        Deltas a host may have before the next commit compacts them into the base.
    min_compact_bytes:
        The deltas' compressed bytes that trigger a compaction when the base is smaller than this (otherwise the
        base's own size is the threshold: reading deltas never costs more than reading the base again).
    ttl_slack:
        How much longer than the head the base and deltas live (their TTL is set when they are written, the head's
        on every commit; a commit that would outlive them compacts, so they never expire under a live head).
    read_attempts:
        Queries per load when what one read shows is inconsistent (half of a concurrent compaction).
    cache_bytes, cache_hosts:
        Bound on the states kept between batches (their compressed stored bytes, and hosts); 0 bytes keeps none.
        A decoded state takes ~45-55x its compressed size in memory (measured on a generated fleet), so the
        default 4 MiB is ~200 MB of the function's 1 GB.
    """

    def __init__(self, models: Models, *, retention: timedelta = timedelta(days=30),
                 clock: Any = time.time, max_deltas: int = 16, min_compact_bytes: int = 16 * 1024,
                 ttl_slack: timedelta = timedelta(hours=6), read_attempts: int = 3,
                 cache_bytes: int = 4 * 1024 * 1024, cache_hosts: int = 4096) -> None:
        self.models = models
        self.read_attempts = max(1, read_attempts)
        self.cache_bytes = cache_bytes
        self.cache_hosts = cache_hosts
        self._cache: OrderedDict[str, LoadedState] = OrderedDict()
        self._cache_bytes = 0
        self.retention = retention
        self.clock = clock
        self.max_deltas = max_deltas
        self.min_compact_bytes = min_compact_bytes
        self.ttl_slack = ttl_slack
        #: State entries trimmed to fit the item size limit: in all, and by the last commit.
        self.trimmed = 0
        self.last_trimmed = 0
        #: Commits that rewrote the whole state (in all), and whether the last one did.
        self.compactions = 0
        self.last_compacted = False

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    def load(self, host: str) -> LoadedState:
        """A host's live state (a fresh one when none is stored or the stored one has expired); one Query.

        The Query reads the whole ``state`` prefix of the host's partition (head, base, deltas) and the deltas are
        replayed on the base. When this process committed the host's state last (a warm Lambda container: a host's
        records stay on one shard), the state it kept is used instead and the Query reads only deltas written since
        by anyone else (normally none); the head's version condition on the next commit catches any other change.
        Expiry is checked here rather than in a filter expression: a filtered-out expired head (TTL deletes
        lazily, up to days late) would hide the version the next conditional write must name.
        """
        cached = self._cache.pop(host, None)
        if cached is not None:
            self._cache_bytes -= cached.base_bytes + cached.delta_bytes
            head = cached.item
            live = head is not None and (head.expires_at is None or head.expires_at > self._now())
            if live and self._catch_up(cached):
                return cached
        for attempt in range(self.read_attempts):
            items = self._query(host, self.models.state.sk.startswith(STATE_SK))
            try:
                return self._assemble(host, items)
            except _Inconsistent as exc:
                # A Query is read-committed item by item, not a snapshot: it can see half of another writer's
                # compaction. Read again; what stays inconsistent (a delta or base lost) resets like corruption.
                if attempt + 1 == self.read_attempts:
                    loaded = LoadedState(HostState(host), _head(items), base=_base(items), deltas=_deltas(items))
                    loaded.reset_reason = str(exc)
                    loaded.must_compact = "reset"
                    return loaded
        raise AssertionError("unreachable")  # pragma: no cover (read_attempts >= 1)

    def _query(self, host: str, condition: Any) -> list[Any]:
        model = self.models.state
        try:
            return list(model.query(f"host#{host}", condition, consistent_read=True))
        except PynamoDBException as exc:
            raise TransientError(f"state read for {host} failed: {exc}") from exc

    def _catch_up(self, cached: LoadedState) -> bool:
        """Replay on a kept state the deltas written since this process committed it; ``False``: read it afresh."""
        model = self.models.state
        head: Any = cached.item
        version = int(head.version or 0)
        newer = self._query(cached.state.host,
                            model.sk.between(f"{DELTA_PREFIX}{version + 1:012d}", f"{DELTA_PREFIX}~"))
        try:
            for expected, item in enumerate(sorted(newer, key=lambda d: int(d.seq or 0)), start=version + 1):
                if int(item.seq or 0) != expected or item.blob is None:
                    return False
                apply_delta(cached.state, loads_delta(item.blob))
                self._account_delta(cached, item)
                head.version = expected
        except StateDecodeError:
            return False
        return True

    @staticmethod
    def _account_delta(loaded: LoadedState, item: Any) -> None:
        loaded.deltas.append(item)
        loaded.delta_bytes += len(item.blob)
        loaded.live_deltas += 1
        if item.expires_at is not None and (loaded.earliest_expiry is None or item.expires_at < loaded.earliest_expiry):
            loaded.earliest_expiry = item.expires_at

    def _assemble(self, host: str, items: list[Any]) -> LoadedState:
        head, base, deltas = _head(items), _base(items), _deltas(items)
        loaded = LoadedState(HostState(host), head, base=base, deltas=deltas)
        if head is None:
            # Never written, or the head expired and TTL removed it before its (longer-lived) base and deltas.
            loaded.must_compact = "expired leftovers" if base is not None or deltas else "new host"
            return loaded
        if head.expires_at is not None and head.expires_at <= self._now():
            # Expired: start afresh, but keep the head so the write conditions on its version.
            loaded.must_compact = "expired"
            return loaded
        try:
            if head.blob is not None:
                # The whole-state item of the previous layout: its first commit moves it into a base.
                loaded.state = loads_state(head.blob)
                loaded.must_compact = "previous layout"
                return loaded
            self._replay(loaded, head, base, deltas)
        except _Inconsistent:
            raise
        except StateDecodeError as exc:
            # Failing would block the shard until the records age out; starting afresh loses only this host's
            # partial chains, and the caller counts and logs it.
            loaded.state = HostState(host)
            loaded.reset_reason = str(exc)
            loaded.must_compact = "reset"
        return loaded

    def _replay(self, loaded: LoadedState, head: Any, base: Any | None, deltas: list[Any]) -> None:
        base_seq = int(head.base_seq or 0)
        version = int(head.version or 0)
        expiries = []
        if base_seq:
            if base is None or base.blob is None or int(base.seq or 0) != base_seq:
                raise _Inconsistent(f"stored base {base_seq} is missing")
            loaded.state = loads_state(base.blob)
            loaded.base_bytes = len(base.blob)
            expiries.append(base.expires_at)
        expected = base_seq + 1
        # Deltas past the head's version belong to a transaction this read saw only part of: the commit's version
        # condition will fail on it. Deltas at or before the base were folded into it (a half-seen compaction).
        for item in sorted((d for d in deltas if base_seq < int(d.seq or 0) <= version), key=lambda d: int(d.seq)):
            if int(item.seq) != expected:
                raise _Inconsistent(f"stored delta {expected} is missing")
            if item.blob is None:
                raise StateDecodeError(f"stored delta {expected} has no content")
            apply_delta(loaded.state, loads_delta(item.blob))
            loaded.delta_bytes += len(item.blob)
            loaded.live_deltas += 1
            expiries.append(item.expires_at)
            expected += 1
        if expected - 1 != version:
            raise _Inconsistent(f"stored deltas end at {expected - 1}, not at {version}")
        if loaded.state.host != head.pk.removeprefix("host#"):
            raise StateDecodeError("stored state names another host")
        known = [e for e in expiries if e is not None]
        loaded.earliest_expiry = min(known) if known else None

    def _keep(self, loaded: LoadedState) -> None:
        """Keep a just-committed state for this host's next batch (least recently committed hosts go first)."""
        if self.cache_bytes <= 0:
            return
        host = loaded.state.host
        self._cache[host] = loaded
        self._cache_bytes += loaded.base_bytes + loaded.delta_bytes
        while self._cache and (self._cache_bytes > self.cache_bytes or len(self._cache) > self.cache_hosts):
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= dropped.base_bytes + dropped.delta_bytes

    def commit(self, loaded: LoadedState, outbox: list[OutboxRecord], expires_ns: int,
               delta: StateDelta | None = None) -> None:
        """Save the state and its outbox records in one transaction, conditional on the head version read.

        With ``delta`` (what this batch changed, from the state ``loaded`` held), one delta item is written; without
        it, or when the deltas have grown past the thresholds, the whole state is written as the new base and the
        deltas it folds are deleted in the same transaction.

        Raises
        ------
        StateConflictError
            Another writer saved this host's state since it was read: re-read, re-apply, retry.
        TransientError
            Throttling or a service error.
        """
        models = self.models
        state = loaded.state
        pk = f"host#{state.host}"
        head = loaded.item if loaded.item is not None else models.state(pk, STATE_SK)
        seq = int(head.version or 0) + 1
        expires = datetime.fromtimestamp(expires_ns / 1e9, tz=UTC)
        blob_expires = expires + self.ttl_slack
        delta_blob = None if delta is None or loaded.must_compact else dumps_delta(delta)
        compact = delta_blob is None or self._should_compact(loaded, len(delta_blob), expires, len(outbox))
        self.last_trimmed = 0
        head.blob = None
        head.watermark_ns = state.watermark_ns
        head.expires_at = expires
        if compact:
            blob, trimmed = dumps_state(state)
            self.last_trimmed = trimmed
            base = loaded.base if loaded.base is not None else models.state(pk, BASE_SK)
            base.blob, base.seq, base.watermark_ns, base.expires_at = blob, seq, state.watermark_ns, blob_expires
            head.base_seq = seq
            written = [base]
        else:
            written = [models.state(pk, f"{DELTA_PREFIX}{seq:012d}", blob=delta_blob, seq=seq,
                                    watermark_ns=state.watermark_ns, expires_at=blob_expires)]
        now_ns = int(self.clock() * 1e9)
        keep_until = self._now() + self.retention
        try:
            with TransactWrite(connection=models.connection()) as tx:
                tx.save(head)
                for item in written:
                    # The head is the lock; the base's and deltas' own version conditions (the base as read, a
                    # delta not there yet) cannot fail under it and only make a stray write impossible.
                    tx.save(item)
                if compact:
                    for item in loaded.deltas:
                        tx.delete(item, add_version_condition=False)
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
        self.trimmed += self.last_trimmed
        self.last_compacted = compact
        self.compactions += compact
        # What is stored now, for the next batch of this host in this process.
        loaded.reset_reason = loaded.must_compact = None
        if compact:
            loaded.base, loaded.deltas = written[0], []
            loaded.base_bytes, loaded.delta_bytes, loaded.live_deltas = len(written[0].blob), 0, 0
            loaded.earliest_expiry = blob_expires
        else:
            self._account_delta(loaded, written[0])
        loaded.item = head
        self._keep(loaded)

    def _should_compact(self, loaded: LoadedState, delta_bytes: int, expires: datetime, outbox: int) -> bool:
        if 2 + len(loaded.deltas) + outbox > MAX_TRANSACTION_ITEMS:
            return False  # the compaction would not fit one transaction: a later, smaller batch compacts
        return (loaded.live_deltas + 1 > self.max_deltas
                or loaded.delta_bytes + delta_bytes > max(loaded.base_bytes, self.min_compact_bytes)
                or (loaded.earliest_expiry is not None and loaded.earliest_expiry < expires))


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
