"""The one contract every delivery target implements, the registry that finds them, and shared retry rules.

A sink is a registered plug-in (StreamAlert style): a subclass of :class:`Sink` decorated with :func:`register`
under its ``kind`` (``splunk_hec``, ``jira``...). The dispatch function builds the configured sinks with
:func:`build_sinks` and hands each the findings to deliver; per-sink delivery bookkeeping (so a retry sends only
what is missing) lives in the dispatcher, not in the sinks.

Errors follow the project's hierarchy: a sink raises (or reports) :class:`~chainwatch.errors.TransientError`
for what may succeed later (429, 5xx, timeouts) and :class:`~chainwatch.errors.PermanentError` for what never
will (400, 401, 403, schema errors); :class:`RetryPolicy` retries the first kind within the time budget.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

import requests

from chainwatch.errors import ConfigError, PermanentError, TransientError

T = TypeVar("T")
MAX_RESPONSE_TEXT = 2000


@dataclass(frozen=True)
class Delivery:
    """One finding revision to deliver.

    ``document`` is the OCSF 2004 finding (see :func:`chainwatch.findings.ocsf.to_ocsf`); ``revision`` grows each
    time the chain's finding changes (more stages, more egress), so ``revision > 1`` is an update of a chain the
    sink may already hold. ``canary`` findings are synthetic (``chainwatch canary``) and must never page anyone or
    open a real ticket unless the sink is configured to accept them.
    """

    finding_id: str
    revision: int
    document: Mapping[str, Any]
    canary: bool = False

    @property
    def is_update(self) -> bool:
        return self.revision > 1

    def _section(self, key: str) -> Mapping[str, Any]:
        value = self.document.get(key)
        return value if isinstance(value, Mapping) else {}

    @property
    def title(self) -> str:
        return str(self._section("finding_info").get("title", self.finding_id))

    @property
    def severity_id(self) -> int:
        value = self.document.get("severity_id", 0)
        return value if isinstance(value, int) else 0

    @property
    def host(self) -> str:
        return str(self._section("device").get("hostname", "unknown"))

    @property
    def is_alert(self) -> bool:
        return bool(self.document.get("is_alert", False))

    @property
    def story(self) -> str:
        inner = self._section("unmapped").get("chainwatch")
        return str(inner.get("story", "")) if isinstance(inner, Mapping) else ""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    FAILED_PERMANENT = "failed_permanent"
    FAILED_TRANSIENT = "failed_transient"


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one delivery at one sink. ``response`` keeps the (bounded) reply that explains a failure."""

    finding_id: str
    revision: int
    outcome: Outcome
    detail: str = ""
    external_id: str | None = None
    response: str | None = None
    retry_after: float | None = None
    #: The vendor throttled the client as a whole (429/503 with Retry-After), not just this delivery.
    throttled: bool = False


class TicketMap(Protocol):
    """Finding-to-ticket mapping with a conditional write (never a search of the ticket system).

    ``claim`` stores ``value`` for (finding, sink) only if nothing is stored yet and returns whether it did;
    ``replace`` stores ``value`` only if the stored value is still ``expected`` (compare-and-swap: of two workers
    taking over the same stale claim, one wins); ``set`` overwrites (used to replace a claim we hold with the real
    ticket key); ``release`` removes a claim that never became a ticket.
    """

    def get(self, finding_id: str, sink: str) -> str | None: ...

    def claim(self, finding_id: str, sink: str, value: str) -> bool: ...

    def replace(self, finding_id: str, sink: str, expected: str, value: str) -> bool: ...

    def set(self, finding_id: str, sink: str, value: str) -> None: ...

    def release(self, finding_id: str, sink: str) -> None: ...


class InMemoryTicketMap:
    """A :class:`TicketMap` in a dict (CLI, tests); its conditional writes are atomic across threads, like
    DynamoDB's (the dispatcher runs sinks in worker threads)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, finding_id: str, sink: str) -> str | None:
        with self._lock:
            return self._items.get((finding_id, sink))

    def claim(self, finding_id: str, sink: str, value: str) -> bool:
        with self._lock:
            if (finding_id, sink) in self._items:
                return False
            self._items[(finding_id, sink)] = value
            return True

    def replace(self, finding_id: str, sink: str, expected: str, value: str) -> bool:
        with self._lock:
            if self._items.get((finding_id, sink)) != expected:
                return False
            self._items[(finding_id, sink)] = value
            return True

    def set(self, finding_id: str, sink: str, value: str) -> None:
        with self._lock:
            self._items[(finding_id, sink)] = value

    def release(self, finding_id: str, sink: str) -> None:
        with self._lock:
            self._items.pop((finding_id, sink), None)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter for :class:`TransientError`, honouring ``Retry-After``.

    Parameters
    ----------
    max_attempts:
        Attempts in all, the first included.
    base_delay, max_delay:
        Backoff bounds in seconds.
    remaining:
        Seconds left in the caller's time budget (the Lambda context's remaining time); a retry that would end
        past the budget is not started and the transient error is raised instead.
    sleep:
        Injected for tests.

    A vendor's ``Retry-After`` is honoured exactly as sent, never shortened: when it does not fit in what is left
    of the budget, the error (carrying ``retry_after``) is raised at once, so the dispatcher leaves the delivery
    for a later attempt and records when that attempt may call the vendor again (see
    :mod:`chainwatch.pipeline.dispatch`). Only our own backoff (no ``Retry-After``) is bounded by ``max_delay``.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    remaining: Callable[[], float] = field(default=lambda: float("inf"))
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    safety_margin: float = 2.0

    def bounded(self, remaining: Callable[[], float]) -> RetryPolicy:
        """The same policy with another time budget (the dispatcher gives each sink its own)."""
        return replace(self, remaining=remaining)

    def call(self, func: Callable[[], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return func()
            except TransientError as exc:
                if attempt >= self.max_attempts:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else self.rng.uniform(
                    0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
                if delay + self.safety_margin > self.remaining():
                    raise
                self.sleep(delay)


def retry_after_seconds(response: requests.Response) -> float | None:
    """``Retry-After`` as seconds (delta-seconds form; HTTP dates are converted), or ``None``."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def bounded_text(response: requests.Response) -> str:
    """The response body, cut to a size that fits a dead-letter record."""
    text = response.text
    return text if len(text) <= MAX_RESPONSE_TEXT else text[:MAX_RESPONSE_TEXT] + "..."


def check_response(response: requests.Response, what: str) -> requests.Response:
    """Raise the right error for a failed HTTP response: transient for 408/429/5xx, permanent for other 4xx."""
    status = response.status_code
    if status < 400:
        return response
    body = bounded_text(response)
    if status in (408, 429) or status >= 500:
        raise TransientError(f"{what}: HTTP {status}: {body}", retry_after=retry_after_seconds(response))
    raise PermanentError(f"{what}: HTTP {status}: {body}")


@dataclass
class SinkContext:
    """What sinks get from the dispatcher: clients and policies, never global state.

    ``secret`` resolves a secret name (Secrets Manager through Powertools Parameters in Lambda; a dict in tests).
    ``aws_client`` creates a boto3 client for a service name, lazily, with the configured endpoint.
    """

    session: requests.Session
    secret: Callable[[str], Any]
    ticket_map: TicketMap
    retry: RetryPolicy
    aws_client: Callable[[str], Any] | None = None
    timeout: float = 10.0


class Sink(ABC):
    """A delivery target. Subclasses set ``kind`` and implement :meth:`send`."""

    kind: ClassVar[str] = ""
    #: How many deliveries one :meth:`send` call accepts (the dispatcher splits larger lists).
    max_batch: ClassVar[int] = 100

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        self.name = name
        self.config = config
        self.context = context

    def option(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        value = self.config.get(key, default)
        if required and value in (None, ""):
            raise ConfigError(f"sink {self.name!r} ({self.kind}) needs '{key}'")
        return value

    def base_url(self) -> str:
        """The configured ``url`` without a trailing slash; only http(s) URLs are accepted."""
        url = str(self.option("url", required=True)).rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"sink {self.name!r} ({self.kind}): url must start with https:// or http://")
        return url

    @abstractmethod
    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        """Deliver findings; return one result per delivery (never raise for one bad finding)."""


REGISTRY: dict[str, type[Sink]] = {}
S = TypeVar("S", bound=type[Sink])


def register(cls: S) -> S:
    """Class decorator: make a sink available to configuration under its ``kind``."""
    if not cls.kind:
        raise ConfigError(f"{cls.__name__} has no kind")
    REGISTRY[cls.kind] = cls
    return cls


def build_sinks(configs: Sequence[Mapping[str, Any]], context: SinkContext) -> list[Sink]:
    """Instantiate configured sinks: each config has ``kind``, an optional unique ``name`` and its options."""
    from chainwatch import sinks as _sinks  # noqa: F401 - importing the package registers the built-in sinks

    built: list[Sink] = []
    names: set[str] = set()
    for config in configs:
        kind = config.get("kind")
        if kind not in REGISTRY:
            raise ConfigError(f"unknown sink kind {kind!r}; known: {sorted(REGISTRY)}")
        name = str(config.get("name", kind))
        if name in names:
            raise ConfigError(f"duplicate sink name {name!r}")
        names.add(name)
        built.append(REGISTRY[str(kind)](name, config, context))
    return built


def results_for(deliveries: Sequence[Delivery], outcome: Outcome, detail: str,
                response: str | None = None, retry_after: float | None = None) -> list[DeliveryResult]:
    """The same result for every delivery of a batch (a whole-batch failure)."""
    return [DeliveryResult(d.finding_id, d.revision, outcome, detail, response=response, retry_after=retry_after)
            for d in deliveries]
