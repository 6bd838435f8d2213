"""Shared pieces of the ticketing and paging sinks (Jira, ServiceNow, PagerDuty).

* **One ticket per chain, the vendor as the system of record.** :class:`TicketSink` implements the claim
  protocol over the :class:`~chainwatch.sinks.base.TicketMap` port: ``claim(finding, sink, "pending:<uuid>:<epoch>")``
  before a ticket is created; the winner first **looks the finding up at the vendor** (Jira: JQL on the
  ``finding-<id>`` label through ``/rest/api/3/search/jql``; ServiceNow: a ``correlation_id`` query on the Table
  API), retried and rate-limited like every call; a ticket found there is cached in the map and later revisions go
  to it, so a re-created stack, a restored table or an expired map never opens a second ticket. Only when the
  vendor has none is the ticket created and its key ``set``; a permanent failure ``release`` s the claim; a live
  ``pending:`` claim of another worker is a transient failure (retry later); a real key in the map means the chain
  already has a ticket, so a later revision becomes a comment or an update. A stale claim (``pending:`` older than
  ``pending_timeout``, or ``uncertain:`` past the index lag) is taken over with a compare-and-swap on the value
  read (:meth:`~chainwatch.sinks.base.TicketMap.replace`), so of two workers taking it over at once exactly one
  creates; the other backs off and its retry comments on the winner's ticket.
* **An uncertain create waits for the vendor's search index.** A create whose reply was lost (read timeout,
  dropped connection, 500/502/504) may have opened the ticket, and Jira's search does not show a new issue for
  tens of seconds, so looking it up at once finds nothing and a retry would open a second issue. Such a create is
  not retried in the same attempt: the map records ``uncertain:<token>:<epoch of the attempt>`` and the delivery
  is left for a later attempt (``retry_after`` = the lag); an attempt at least ``search_index_lag`` seconds after
  it looks the ticket up (now trustworthy) and creates it only if the vendor still has none.
  ``search_index_lag`` defaults to 60 s for Jira and 0 for ServiceNow, whose table query is consistent (there the
  lookup runs at once).
* **One comment per revision.** :class:`RevisionLedger` records each revision a sink delivered (rows
  ``<sink>#r<revision>`` in the same map), so a repeated delivery (a dispatcher retry) neither comments twice nor
  re-pages an alert someone already resolved.
* **HTTP.** :func:`call` sends one request with the sink's session and turns every failure into a
  :class:`TicketTransientError` (which says whether the request may have been processed) or a
  :class:`TicketPermanentError`, both carrying the bounded response body with every secret scrubbed.

The ``pending:`` value carries its creation time so a claim left by a crashed worker can be recognised as stale
after ``pending_timeout`` seconds (default 900, the longest Lambda run).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from chainwatch.errors import ChainwatchError, ConfigError, PermanentError, TransientError
from chainwatch.findings.render import clip, neutralize_formula
from chainwatch.sinks.base import MAX_RESPONSE_TEXT, Delivery, DeliveryResult, Outcome, Sink, SinkContext, TicketMap
from chainwatch.sinks.base import retry_after_seconds as _retry_after_header

log = logging.getLogger(__name__)

PENDING = "pending:"
UNCERTAIN = "uncertain:"
DONE = "done:"
_REDACTED = "[redacted]"
#: How soon to ask for a retry when another worker holds a live claim: it normally finishes within seconds.
CLAIM_BUSY_RETRY = 30.0

SEVERITY_NAMES = {0: "unknown", 1: "informational", 2: "low", 3: "medium", 4: "high", 5: "critical", 6: "fatal",
                  99: "other"}


# -- errors ------------------------------------------------------------------------------------------------------


class TicketTransientError(TransientError):
    """A failure that may pass. ``ambiguous`` means the vendor may have acted on the request anyway (a read
    timeout, a dropped connection, a 500/502/504), so a create must not simply be repeated."""

    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None,
                 response: str | None = None, ambiguous: bool = False) -> None:
        super().__init__(reason, retry_after=retry_after)
        self.status = status
        self.response = response
        self.ambiguous = ambiguous


class TicketPermanentError(PermanentError):
    """A failure retrying will not fix (400, 401, 403, 404...), with the response body that explains it."""

    def __init__(self, reason: str, *, status: int | None = None, response: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.response = response


# -- secrets -----------------------------------------------------------------------------------------------------


class Scrubber:
    """Removes known secret values from any text before it leaves the sink (results, errors, logs)."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, *secrets: str) -> None:
        # Longest first, so a token is not half-replaced by a shorter secret that is a prefix of it.
        self._secrets = sorted({*self._secrets, *(s for s in secrets if s and len(s) >= 4)}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text


def secret_fields(value: Any, what: str) -> dict[str, str] | str:
    """A secret as Secrets Manager stores it: a plain string, or a JSON object (parsed or not)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.startswith("{"):
            return stripped
        try:
            value = json.loads(stripped)
        except ValueError:
            raise ConfigError(f"{what} looks like JSON but does not parse") from None
    if isinstance(value, Mapping):
        return {str(k): str(v).strip() for k, v in value.items() if isinstance(v, str | int)}
    raise ConfigError(f"{what} is neither a string nor a JSON object")


def header_safe(value: str, what: str) -> str:
    """``value`` if it can go in an HTTP header; :class:`ConfigError` naming only ``what`` otherwise.

    Checked here because requests' own ``InvalidHeader`` error quotes the header value, which is a secret.
    """
    if not value or any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in value):
        raise ConfigError(f"{what} is empty or holds characters an HTTP header cannot carry")
    return value


# -- HTTP --------------------------------------------------------------------------------------------------------


def _connection_refused(exc: requests.ConnectionError) -> bool:
    """Whether the request never reached the server (refused, DNS failure, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def retry_after(response: requests.Response) -> float | None:
    """``Retry-After``, else Jira's ``X-RateLimit-Reset`` (an ISO 8601 time), as seconds from now."""
    seconds = _retry_after_header(response)
    if seconds is not None:
        return seconds
    reset = response.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            when = datetime.fromisoformat(reset.strip())
        except ValueError:
            return None
        if when.tzinfo is not None:
            return max(0.0, when.timestamp() - time.time())
    return None


def bounded_body(response: requests.Response, scrub: Scrubber) -> str:
    """The response body, scrubbed, printable and cut to fit a dead-letter record."""
    return clip(scrub(response.text[: MAX_RESPONSE_TEXT * 4]), MAX_RESPONSE_TEXT)


def call(context: SinkContext, method: str, url: str, *, what: str, scrub: Scrubber,
         headers: Mapping[str, str], body: Any = None, params: Mapping[str, str] | None = None,
         verify: bool | str = True) -> requests.Response:
    """Send one request; return a 2xx response, raise :class:`TicketTransientError` / :class:`TicketPermanentError`.

    Redirects are not followed: requests turns a redirected POST into a GET without the body, so a 3xx means the
    URL is wrong. ``ambiguous`` is set when the request may have been acted on (read timeout, connection dropped
    after sending, 500/502/504); 408, 429 and 503 say the server did not act on it.
    """
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    try:
        response = context.session.request(method, url, data=data, headers=dict(headers), params=params,
                                           timeout=context.timeout, verify=verify, allow_redirects=False)
    except requests.ConnectionError as exc:
        refused = _connection_refused(exc)
        raise TicketTransientError(f"{what}: {type(exc).__name__}: {scrub(clip(exc, 300))}",
                                   ambiguous=not refused) from None
    except requests.Timeout as exc:
        raise TicketTransientError(f"{what}: {type(exc).__name__}", ambiguous=True) from None
    except requests.RequestException as exc:
        # Invalid URL, schema... configuration, never a transient condition.
        raise TicketPermanentError(f"{what}: {type(exc).__name__}: {scrub(clip(exc, 300))}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    text = bounded_body(response, scrub)
    if 300 <= status < 400:
        location = scrub(clip(response.headers.get("Location", "?"), 300))
        raise TicketPermanentError(f"{what}: HTTP {status} redirect to {location}; point the sink at the final URL",
                                   status=status, response=text)
    if status in (408, 429) or status >= 500:
        raise TicketTransientError(f"{what}: HTTP {status}: {clip(text, 300)}", retry_after=retry_after(response),
                                   status=status, response=text, ambiguous=status in (500, 502, 504))
    raise TicketPermanentError(f"{what}: HTTP {status}: {clip(text, 300)}", status=status, response=text)


def json_object(response: requests.Response) -> Mapping[str, Any]:
    """The response's JSON object, or an empty mapping when it is not one."""
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, Mapping) else {}


# -- configuration helpers ---------------------------------------------------------------------------------------


def severity_lookup(mapping: Mapping[Any, Any], severity_id: int) -> Any:
    """The value for a severity in a map keyed by OCSF id (``5``, ``"5"``) or name (``critical``); ``None`` if none."""
    normalized = {str(key).strip().lower(): value for key, value in mapping.items()}
    for key in (str(severity_id), SEVERITY_NAMES.get(severity_id, "")):
        if key in normalized:
            return normalized[key]
    return None


def number(value: Any, what: str, *, minimum: float = 0.0) -> float:
    """A numeric option, as :class:`ConfigError` (never ``ValueError``) when it is not one."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number") from None
    if result < minimum:
        raise ConfigError(f"{what} must be at least {minimum:g}")
    return result


def flag(value: Any, what: str) -> bool:
    """A boolean option (YAML booleans, or the strings true/false when configuration came from environment)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"{what} must be true or false")


# -- per-revision bookkeeping ------------------------------------------------------------------------------------


def _pending(clock: Callable[[], float]) -> str:
    return f"{PENDING}{uuid.uuid4().hex}:{int(clock())}"


def _age(value: str, now: float) -> float:
    """Seconds since a ``pending:`` claim was made (a claim without a readable time counts as ancient)."""
    try:
        return now - float(value.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return float("inf")


@dataclass
class Hold:
    """The outcome of asking for a claim: either ``token`` (we hold it) or ``result`` (return it as is)."""

    token: str | None = None
    result: DeliveryResult | None = None


class RevisionLedger:
    """Which revisions of each finding a sink has delivered, as rows ``<sink>#r<revision>`` in the ticket map.

    ``begin`` claims the row (``pending:``), ``done`` marks it ``done:<external id>``, ``abort`` releases it so
    the revision is sent again on retry. A row already ``done`` makes ``begin`` answer "delivered" at once.
    """

    def __init__(self, ticket_map: TicketMap, sink: str, clock: Callable[[], float], pending_timeout: float) -> None:
        self.ticket_map = ticket_map
        self.sink = sink
        self.clock = clock
        self.pending_timeout = pending_timeout

    def key(self, delivery: Delivery) -> str:
        return f"{self.sink}#r{delivery.revision}"

    def begin(self, delivery: Delivery) -> Hold:
        token = _pending(self.clock)
        key = self.key(delivery)
        if self.ticket_map.claim(delivery.finding_id, key, token):
            return Hold(token=token)
        current = self.ticket_map.get(delivery.finding_id, key)
        if current is None:  # released between our claim and our read: try once more
            return Hold(token=token) if self.ticket_map.claim(delivery.finding_id, key, token) else \
                Hold(result=busy(delivery, "revision claim changed hands; retry"))
        if not current.startswith(PENDING):
            external = current[len(DONE):] if current.startswith(DONE) else current
            return Hold(result=DeliveryResult(delivery.finding_id, delivery.revision, Outcome.DELIVERED,
                                              f"revision {delivery.revision} was already delivered",
                                              external_id=external or None))
        age = _age(current, self.clock())
        if age < self.pending_timeout:
            return Hold(result=busy(delivery, f"another worker is delivering revision {delivery.revision}",
                                    min(CLAIM_BUSY_RETRY, self.pending_timeout - age)))
        # Compare-and-swap on the stale value: of two workers taking it over at once, one wins and the other
        # backs off (its retry then finds the revision delivered, or the winner's live claim).
        if not self.ticket_map.replace(delivery.finding_id, key, current, token):
            return Hold(result=busy(delivery, f"another worker took over the stale claim of revision "
                                              f"{delivery.revision}; retry"))
        log.warning("took over a stale revision claim", extra={"finding_id": delivery.finding_id, "sink": key})
        return Hold(token=token)

    def done(self, delivery: Delivery, external_id: str) -> None:
        self.ticket_map.set(delivery.finding_id, self.key(delivery), DONE + external_id)

    def abort(self, delivery: Delivery, token: str) -> None:
        key = self.key(delivery)
        # Only our own claim: a worker that took over a stale claim must keep its own.
        if self.ticket_map.get(delivery.finding_id, key) == token:
            self.ticket_map.release(delivery.finding_id, key)


def deliver_each(context: SinkContext, deliveries: Sequence[Delivery],
                 deliver: Callable[[Delivery], DeliveryResult], scrub: Scrubber) -> list[DeliveryResult]:
    """One result per delivery, in order; stops starting new ones when the time budget is nearly spent.

    A create cut off by the Lambda timeout would leave a ``pending:`` claim that blocks the chain for
    ``pending_timeout``; not starting it is cheaper. A ticket map error fails that delivery only.
    """
    results: list[DeliveryResult] = []
    wait: float | None = None
    for delivery in deliveries:
        if wait is not None:
            # The vendor asked us to wait longer than this invocation has left: no more requests to it now.
            results.append(busy(delivery, f"the vendor asked to wait {wait:g} s (Retry-After); left for later", wait))
            continue
        if context.retry.remaining() < context.timeout + context.retry.safety_margin:
            results.append(busy(delivery, "time budget nearly spent; not started", 1.0))
            continue
        try:
            result = deliver(delivery)
        except TransientError as exc:
            # The ticket map (DynamoDB) failed. A ticket created before a failed ``set`` keeps its pending claim,
            # which the stale-claim recovery resolves by lookup; other deliveries go on.
            result = failed(delivery, exc, scrub, "ticket map: ")
        results.append(result)
        if (result.outcome is Outcome.FAILED_TRANSIENT and result.retry_after is not None
                and result.throttled
                and result.retry_after + context.retry.safety_margin > context.retry.remaining()):
            wait = result.retry_after
    return results


def busy(delivery: Delivery, detail: str, retry: float = CLAIM_BUSY_RETRY) -> DeliveryResult:
    return DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_TRANSIENT, detail,
                          retry_after=max(retry, 1.0))


def failed(delivery: Delivery, exc: TransientError | PermanentError, scrub: Scrubber,
           prefix: str = "") -> DeliveryResult:
    """The result for a failure, with the (scrubbed) response that explains it."""
    response = getattr(exc, "response", None)
    detail = scrub(prefix + str(exc))
    if isinstance(exc, TransientError):
        throttled = isinstance(exc, TicketTransientError) and exc.status in (429, 503) and exc.retry_after is not None
        return DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_TRANSIENT, detail,
                              response=scrub(response) if response else None, retry_after=exc.retry_after,
                              throttled=throttled)
    return DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT, detail,
                          response=scrub(response) if response else None)


def skipped(delivery: Delivery, detail: str) -> DeliveryResult:
    return DeliveryResult(delivery.finding_id, delivery.revision, Outcome.SKIPPED, detail)


# -- the ticket sink ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    """A ticket as the sink knows it: ``key`` is what the map stores and updates use; ``display`` what people use."""

    key: str
    display: str


class TicketSink(Sink):
    """A sink that opens one ticket per chain and adds each later revision to it.

    Options every ticket sink reads: ``accept_canary`` (default false: canary findings are skipped),
    ``alerts_only`` (default true: a non-alert finding opens no ticket, but is added to an existing one),
    ``pending_timeout`` (seconds after which a claim of a crashed worker is taken over, default 900) and
    ``verify`` (TLS verification: true, false or a CA bundle path).
    """

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, config, context)
        #: Injected for tests (stale claims); seconds since the epoch.
        self.clock: Callable[[], float] = time.time
        self.scrub = Scrubber()
        self.accept_canary = flag(self.option("accept_canary", False), f"sink {name!r}: accept_canary")
        self.alerts_only = flag(self.option("alerts_only", True), f"sink {name!r}: alerts_only")
        self.pending_timeout = number(self.option("pending_timeout", 900), f"sink {name!r}: pending_timeout")
        self.index_lag = number(self.option("search_index_lag", self.DEFAULT_INDEX_LAG),
                                f"sink {name!r}: search_index_lag")
        verify = self.option("verify", True)
        self.verify: bool | str = verify if isinstance(verify, str) else flag(verify, f"sink {name!r}: verify")

    #: Seconds after a create before the vendor's search is trusted to show the new ticket.
    DEFAULT_INDEX_LAG: ClassVar[float] = 0.0

    # -- what each vendor implements -----------------------------------------------------------------------------

    @abstractmethod
    def prepare(self) -> None:
        """Resolve secrets (once per :meth:`send`); raise :class:`ConfigError` when they are unusable."""

    @abstractmethod
    def create(self, delivery: Delivery) -> Ticket:
        """Open the ticket for a chain."""

    @abstractmethod
    def update(self, ticket: Ticket, delivery: Delivery) -> str:
        """Add a later revision to the chain's ticket; return a short description of what was done."""

    def lookup(self, delivery: Delivery) -> Ticket | None:
        """The chain's ticket at the vendor (search by the finding's id), ``None`` when it has none."""
        return None

    def has_revision(self, ticket: Ticket, delivery: Delivery) -> bool:
        """Whether the ticket already carries this revision's comment or work note (a lost reply, a fresh map)."""
        return False

    def ticket_from_map(self, value: str) -> Ticket:
        """The ticket a map value stands for (vendors storing more than the key override this)."""
        return Ticket(value, value)

    def map_value(self, ticket: Ticket) -> str:
        return ticket.key

    # -- the protocol --------------------------------------------------------------------------------------------

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        try:
            self.prepare()
        except (ConfigError, LookupError) as exc:
            # LookupError: a secret resolver backed by a dict (tests, local runs) raises KeyError for a missing name.
            detail = self.scrub(f"sink {self.name!r}: cannot read its secret or settings: "
                                f"{type(exc).__name__}: {clip(exc, 300)}")
            return [DeliveryResult(d.finding_id, d.revision, Outcome.FAILED_PERMANENT, detail) for d in deliveries]
        except TransientError as exc:
            detail = self.scrub(f"sink {self.name!r}: secret unavailable: {clip(exc, 300)}")
            return [DeliveryResult(d.finding_id, d.revision, Outcome.FAILED_TRANSIENT, detail,
                                   retry_after=exc.retry_after) for d in deliveries]
        return deliver_each(self.context, deliveries, self._deliver, self.scrub)

    def _deliver(self, delivery: Delivery) -> DeliveryResult:
        if delivery.canary and not self.accept_canary:
            return skipped(delivery, "canary finding: no ticket (set accept_canary: true to ticket canaries)")
        tickets = self.context.ticket_map
        fid = delivery.finding_id
        current = tickets.get(fid, self.name)
        if current is None:
            if self.alerts_only and not delivery.is_alert:
                return skipped(delivery, "not an alert and the chain has no ticket (alerts_only)")
            token = _pending(self.clock)
            if tickets.claim(fid, self.name, token):
                return self._create(delivery, token)
            current = tickets.get(fid, self.name)
            if current is None:
                return busy(delivery, "the ticket claim changed hands; retry")
        if current.startswith(UNCERTAIN):
            age = _age(current, self.clock())
            if age < self.index_lag:
                return busy(delivery, f"a create of this chain's ticket may have succeeded; looking it up once the "
                                      f"vendor's search index has caught up ({self.index_lag - age:.0f} s)",
                            self.index_lag - age)
            return self._recover(delivery, current)
        if current.startswith(PENDING):
            age = _age(current, self.clock())
            if age < self.pending_timeout:
                return busy(delivery, "another worker is creating this chain's ticket",
                            min(CLAIM_BUSY_RETRY, self.pending_timeout - age))
            return self._recover(delivery, current)
        return self._update(delivery, self.ticket_from_map(current))

    def _create(self, delivery: Delivery, token: str, *, looked_up: bool = False) -> DeliveryResult:
        """Holding the claim ``token``: the vendor's ticket for the chain if it has one, else a new one."""
        tickets = self.context.ticket_map
        fid = delivery.finding_id
        if not looked_up:
            try:
                found = self.context.retry.call(lambda: self.lookup(delivery))
            except (TransientError, PermanentError) as exc:
                if tickets.get(fid, self.name) == token:
                    tickets.release(fid, self.name)
                return failed(delivery, exc, self.scrub, "looking the ticket up before creating it: ")
            if found is not None:
                return self._adopt(delivery, found)
        ambiguous = False

        def attempt() -> Ticket:
            nonlocal ambiguous
            if ambiguous:
                # Only reached when the vendor's search is consistent (no index lag): the last attempt may have
                # opened the ticket, so look before opening another one.
                found = self.lookup(delivery)
                if found is not None:
                    return found
            try:
                return self.create(delivery)
            except TicketTransientError as exc:
                ambiguous = ambiguous or exc.ambiguous
                if ambiguous and self.index_lag > 0:
                    raise _Uncertain(exc) from None
                raise

        try:
            ticket = self.context.retry.call(attempt)
        except _Uncertain as uncertain:
            # Not retried now: a lookup before the index catches up would miss the ticket just opened.
            # A fresh token in the value, so a compare-and-swap on it never mistakes a newer uncertain create for
            # the one it read.
            tickets.set(fid, self.name, f"{UNCERTAIN}{uuid.uuid4().hex}:{int(self.clock())}")
            log.warning("ticket create uncertain; looked up after the search index lag",
                        extra={"finding_id": fid, "sink": self.name, "lag": self.index_lag})
            result = failed(delivery, uncertain.error, self.scrub,
                            f"create may have succeeded; looked up after {self.index_lag:g} s: ")
            return replace(result, retry_after=self.index_lag, throttled=False)
        except PermanentError as exc:
            if tickets.get(fid, self.name) == token:
                tickets.release(fid, self.name)
            return failed(delivery, exc, self.scrub)
        except TransientError as exc:
            if ambiguous:
                # The ticket may exist: keep the claim, so no one creates a second one; once it is stale, a retry
                # looks the ticket up (lookup) before creating it.
                log.warning("ticket create ambiguous; claim kept until pending_timeout",
                            extra={"finding_id": fid, "sink": self.name})
                return failed(delivery, exc, self.scrub, "create may have succeeded; claim kept: ")
            if tickets.get(fid, self.name) == token:
                tickets.release(fid, self.name)
            return failed(delivery, exc, self.scrub)
        tickets.set(fid, self.name, self.map_value(ticket))
        RevisionLedger(tickets, self.name, self.clock, self.pending_timeout).done(delivery, ticket.display)
        return DeliveryResult(fid, delivery.revision, Outcome.DELIVERED, f"created {ticket.display}",
                              external_id=ticket.display)

    def _recover(self, delivery: Delivery, stale: str) -> DeliveryResult:
        """An uncertain create past the index lag, or a claim older than ``pending_timeout`` (its worker died):
        find the ticket at the vendor, or create it ourselves.

        Several workers may find the same ``stale`` value at once (a redelivery beside a later revision). They may
        all look the ticket up, but only the one whose compare-and-swap replaces ``stale`` with its own claim goes
        on to create; the others back off, and their retry finds the winner's ticket and comments on it.
        """
        tickets = self.context.ticket_map
        fid = delivery.finding_id
        try:
            found = self.context.retry.call(lambda: self.lookup(delivery))
        except (TransientError, PermanentError) as exc:
            return failed(delivery, exc, self.scrub, "looking up the ticket of an unfinished create: ")
        if found is None:
            token = _pending(self.clock)
            if not tickets.replace(fid, self.name, stale, token):
                return busy(delivery, "another worker took over this chain's unfinished ticket create; retry")
            log.warning("unfinished ticket create and no ticket found; creating", extra={"finding_id": fid})
            return self._create(delivery, token, looked_up=True)
        return self._adopt(delivery, found)

    def _adopt(self, delivery: Delivery, found: Ticket) -> DeliveryResult:
        """The vendor already holds the chain's ticket: cache it in the map; a later revision goes to it."""
        tickets = self.context.ticket_map
        fid = delivery.finding_id
        tickets.set(fid, self.name, self.map_value(found))
        if delivery.revision == 1:
            # The ticket was opened from this very first revision: nothing to add.
            RevisionLedger(tickets, self.name, self.clock, self.pending_timeout).done(delivery, found.display)
            return DeliveryResult(fid, delivery.revision, Outcome.DELIVERED,
                                  f"found {found.display} at the vendor; not created again",
                                  external_id=found.display)
        return self._update(delivery, found)

    def _update(self, delivery: Delivery, ticket: Ticket) -> DeliveryResult:
        ledger = RevisionLedger(self.context.ticket_map, self.name, self.clock, self.pending_timeout)
        hold = ledger.begin(delivery)
        if hold.result is not None:
            result = hold.result
            return result if result.external_id or result.outcome is not Outcome.DELIVERED else \
                DeliveryResult(result.finding_id, result.revision, result.outcome, result.detail,
                               external_id=ticket.display)
        token = hold.token or ""
        try:
            if self.context.retry.call(lambda: self.has_revision(ticket, delivery)):
                done = f"revision {delivery.revision} already on {ticket.display}"
            else:
                done = self.context.retry.call(lambda: self.update(ticket, delivery))
        except (TransientError, PermanentError) as exc:
            ledger.abort(delivery, token)
            return failed(delivery, exc, self.scrub, f"updating {ticket.display}: ")
        ledger.done(delivery, ticket.display)
        return DeliveryResult(delivery.finding_id, delivery.revision, Outcome.DELIVERED, done,
                              external_id=ticket.display)


class _Uncertain(ChainwatchError):
    """A create that may have succeeded while the vendor's search cannot tell yet (stops the retry loop)."""

    def __init__(self, error: TicketTransientError) -> None:
        super().__init__(str(error))
        self.error = error


def revision_marker(delivery: Delivery) -> str:
    """The words every update comment or work note starts with; how a ticket shows which revisions it holds."""
    return f"revision {delivery.revision} of {delivery.finding_id}"


def one_line(text: str, limit: int) -> str:
    """A summary field: printable, one line, formula-neutralized, at most ``limit`` characters in all."""
    # One character is kept free for the quote neutralize_formula may add.
    return neutralize_formula(clip(text, limit - 1))


def labels_safe(values: Iterable[str]) -> list[str]:
    """Jira-style labels: no whitespace, at most 255 characters, no duplicates, order kept."""
    out: list[str] = []
    for value in values:
        label = "".join("_" if ch.isspace() else ch for ch in clip(value, 255))
        if label and label not in out:
            out.append(label)
    return out


class BasicAuthTicketSink(TicketSink):
    """A ticket sink that authenticates with HTTP Basic (Jira: email:api_token; ServiceNow: user:password)."""

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, config, context)
        self._authorization: str | None = None

    def use_basic_auth(self, user: Any, secret: Any, what: str) -> None:
        """Build the header once from the credentials, registering every form of the secret for scrubbing."""
        raw = f"{user}:{secret}"
        encoded = base64.b64encode(raw.encode()).decode()
        self.scrub.add(str(secret), raw, encoded)
        self._authorization = header_safe("Basic " + encoded, what)

    def _headers(self) -> dict[str, str]:
        if self._authorization is None:
            raise ConfigError(f"sink {self.name!r} used before its secret was read")
        return {"Authorization": self._authorization, "Accept": "application/json",
                "Content-Type": "application/json"}
