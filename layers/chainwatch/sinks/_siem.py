"""Shared pieces of the SIEM sinks that speak HTTP (Splunk HEC, Elasticsearch/OpenSearch ``_bulk``).

Three concerns live here so both sinks answer them the same way:

* **Reading the finding.** :class:`FindingView` is a tolerant reader over the OCSF 2004 document: a field of the
  wrong type reads as absent instead of raising, because one odd finding must not fail a whole batch.
* **Bounding attacker-controlled values.** :func:`bounded` walks a JSON value and makes every string printable
  (control characters escaped), cut to a limit, and optionally formula-neutralized; lists are cut too.
* **HTTP errors.** :func:`post` sends one request with the sink's session and turns every failure into
  :class:`HttpTransientError` or :class:`HttpPermanentError`, carrying the bounded response body, with every
  secret scrubbed from messages and bodies (a proxy may echo the ``Authorization`` header in an error page).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import requests

from chainwatch.errors import ChainwatchError, ConfigError, PermanentError, TransientError
from chainwatch.findings.render import neutralize_formula
from chainwatch.findings.story import safe
from chainwatch.sinks.base import (
    MAX_RESPONSE_TEXT,
    Delivery,
    DeliveryResult,
    Outcome,
    Sink,
    SinkContext,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

_REDACTED = "[redacted]"


# -- errors ----------------------------------------------------------------------------------------------------


class HttpTransientError(TransientError):
    """A transient HTTP failure that keeps the (bounded, scrubbed) response body for the dead-letter record."""

    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None,
                 response: str | None = None) -> None:
        super().__init__(reason, retry_after=retry_after)
        self.status = status
        self.response = response


class HttpPermanentError(PermanentError):
    """A permanent HTTP failure (400, 401, 403...) with the (bounded, scrubbed) response body that explains it."""

    def __init__(self, reason: str, *, status: int | None = None, response: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.response = response


def error_response(exc: BaseException) -> str | None:
    """The response body an error carries, if it is one of ours."""
    return getattr(exc, "response", None) if isinstance(exc, HttpTransientError | HttpPermanentError) else None


# -- secrets ---------------------------------------------------------------------------------------------------


class Scrubber:
    """Removes known secret values (and their encodings) from any text before it leaves the sink."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a token is not half-replaced by a shorter secret that is a prefix of it.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text


def scrub_result(result: DeliveryResult, scrub: Scrubber) -> DeliveryResult:
    """``result`` with secrets removed from its detail and response."""
    detail = scrub(result.detail)
    response = scrub(result.response) if result.response is not None else None
    if detail == result.detail and response == result.response:
        return result
    return replace(result, detail=detail, response=response)


def header_safe(value: str, what: str) -> str:
    """``value`` if it can go in an HTTP header; :class:`ConfigError` (without the value) otherwise.

    Checked here because requests' own ``InvalidHeader`` error quotes the header value, which is the secret.
    """
    value = value.strip()
    if not value or any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in value):
        raise ConfigError(f"{what} is empty or holds characters an HTTP header cannot carry")
    return value


def secret_field(value: Any, keys: tuple[str, ...], what: str) -> str:
    """A string secret, or the first of ``keys`` in a JSON secret (Secrets Manager stores either)."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{"):
            try:
                value = json.loads(stripped)
            except ValueError:
                raise ConfigError(f"{what} looks like JSON but does not parse") from None
        else:
            return stripped
    if isinstance(value, Mapping):
        for key in keys:
            item = value.get(key)
            if isinstance(item, str) and item.strip():
                return item.strip()
        raise ConfigError(f"{what} has none of the keys {', '.join(keys)}")
    raise ConfigError(f"{what} is neither a string nor a JSON object")


# -- HTTP ------------------------------------------------------------------------------------------------------


def out_of_time(context: SinkContext) -> bool:
    """Whether the time budget cannot hold one more request (its timeout plus the retry policy's margin).

    Checked before each request of a multi-request send: a request cut off by the Lambda timeout may have been
    applied without the answer being recorded, which is the one way to a duplicate HEC event.
    """
    return context.retry.remaining() < context.timeout + context.retry.safety_margin


def bounded_body(response: requests.Response, scrub: Scrubber) -> str:
    """The response body, scrubbed, printable and cut to fit a dead-letter record."""
    text = scrub(response.text)
    return safe(text, MAX_RESPONSE_TEXT)


def post(session: requests.Session, url: str, *, data: bytes, headers: Mapping[str, str], timeout: float,
         verify: bool | str, what: str, scrub: Scrubber) -> requests.Response:
    """POST ``data`` and return the response, whatever its status; network errors raise.

    Redirects are not followed: requests would turn a redirected POST into a GET and drop the body, so a 3xx
    means the URL is wrong (permanent, see :func:`http_error`). Connection errors and timeouts are transient.
    Sinks read the vendor's answer themselves and raise :func:`http_error` for a failure.
    """
    try:
        return session.post(url, data=data, headers=dict(headers), timeout=timeout, verify=verify,
                            allow_redirects=False)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        # The exception text names the URL and the low-level cause, never the headers; scrub anyway.
        raise HttpTransientError(f"{what}: {scrub(safe(type(exc).__name__ + ': ' + str(exc), 500))}") from None
    except requests.RequestException as exc:
        raise HttpPermanentError(f"{what}: {scrub(safe(type(exc).__name__ + ': ' + str(exc), 500))}") from None


def http_error(response: requests.Response, what: str, scrub: Scrubber) -> HttpTransientError | HttpPermanentError:
    """The error a response that is not a success stands for: transient for 408/429/5xx, permanent otherwise."""
    status = response.status_code
    body = bounded_body(response, scrub)
    if 300 <= status < 400:
        location = scrub(safe(response.headers.get("Location", "?"), 300))
        return HttpPermanentError(f"{what}: HTTP {status} redirect to {location}; point the sink at the final URL",
                                  status=status, response=body)
    if status in (408, 429) or status >= 500:
        return HttpTransientError(f"{what}: HTTP {status}: {safe(body, 300)}",
                                  retry_after=retry_after_seconds(response), status=status, response=body)
    return HttpPermanentError(f"{what}: HTTP {status}: {safe(body, 300)}", status=status, response=body)


def json_body(response: requests.Response) -> Any:
    """The response's JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


# -- bounding --------------------------------------------------------------------------------------------------


def text(value: object, limit: int, *, formula: bool = False) -> str:
    """Printable, bounded text; with ``formula`` a leading ``= + - @ |`` (spreadsheet formula) is neutralized."""
    out = safe(value, limit)
    return neutralize_formula(out) if formula else out


def bounded(value: Any, *, text_limit: int, list_limit: int, formula: bool = False, depth: int = 0) -> Any:
    """``value`` with every string made safe and bounded and every list cut to ``list_limit`` items.

    A cut list ends with a string saying how many items were left out, so the reader knows it is not whole.
    Nesting deeper than 12 levels is replaced by a marker (the finding is never that deep; a hostile one might be).
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return text(value, text_limit, formula=formula)
    if depth >= 12:
        return "[nested too deep]"
    if isinstance(value, Mapping):
        return {str(k)[:128]: bounded(v, text_limit=text_limit, list_limit=list_limit, formula=formula,
                                      depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [bounded(v, text_limit=text_limit, list_limit=list_limit, formula=formula, depth=depth + 1)
                 for v in value[:list_limit]]
        if len(value) > list_limit:
            items.append(f"[{len(value) - list_limit} more left out]")
        return items
    return text(value, text_limit, formula=formula)


def multiline(value: object, limit: int, *, formula: bool = False) -> str:
    """Like :func:`text` but keeps line breaks (the story is many lines; each line is made safe on its own)."""
    lines = [text(line, limit, formula=formula) for line in str(value).split("\n")]
    joined = "\n".join(lines)
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


# -- reading the finding ---------------------------------------------------------------------------------------


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (tolerant reading)."""
    return value if isinstance(value, dict) else {}


_dict = as_dict


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int | None:
    """``value`` if it is an integer (not a bool), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_int = as_int


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def ms_to_iso(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC text with milliseconds (what ``@timestamp`` wants)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def valid_ip(value: Any) -> str | None:
    """The text of ``value`` as an IP address, or ``None`` if it is not one (an ``ip`` mapping rejects it)."""
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def valid_port(value: Any) -> int | None:
    port = _int(value)
    return port if port is not None and 0 <= port <= 65535 else None


class FindingView:
    """Typed, tolerant access to the parts of an OCSF 2004 finding the SIEM projections use."""

    #: Which stage's process is "the" process of the finding: the script or app that ran (stage 3) is what an
    #: analyst pivots on; the egress process (4) or the user app (1) stand in when stage 3 has no process.
    _KEY_STAGES = (3, 4, 1, 2)

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.doc = document if isinstance(document, Mapping) else {}
        self.info = _dict(self.doc.get("finding_info"))
        self.chainwatch = _dict(_dict(self.doc.get("unmapped")).get("chainwatch"))

    def time_ms(self) -> int | None:
        """When the finding last changed (OCSF ``time``, else ``last_seen_time``, else ``processed_time``)."""
        for value in (self.doc.get("time"), self.info.get("last_seen_time"),
                      _dict(self.doc.get("metadata")).get("processed_time")):
            ms = _int(value)
            if ms is not None and 0 <= ms < 32_503_680_000_000:  # before year 3000: a sane epoch in ms
                return ms
        return None

    def first_seen_ms(self) -> int | None:
        return _int(self.info.get("first_seen_time"))

    def last_seen_ms(self) -> int | None:
        return _int(self.info.get("last_seen_time"))

    def processed_ms(self) -> int | None:
        return _int(_dict(self.doc.get("metadata")).get("processed_time"))

    def title(self, default: str) -> str:
        """``finding_info.title`` (``Delivery.title`` raises on a malformed ``finding_info``; this does not)."""
        return _str(self.info.get("title")) or _str(self.doc.get("message")) or default

    def host(self) -> str:
        return _str(_dict(self.doc.get("device")).get("hostname")) or "unknown"

    def get_str(self, key: str) -> str | None:
        return _str(self.doc.get(key))

    def get_int(self, key: str) -> int | None:
        return _int(self.doc.get(key))

    @property
    def analytic(self) -> dict[str, Any]:
        return _dict(self.info.get("analytic"))

    @property
    def product_version(self) -> str | None:
        return _str(_dict(_dict(self.doc.get("metadata")).get("product")).get("version"))

    def attacks(self) -> list[dict[str, str | None]]:
        """ATT&CK entries: technique/sub-technique/tactic uid and name (``None`` when absent)."""
        out: list[dict[str, str | None]] = []
        for entry in _list(self.info.get("attacks")):
            attack = _dict(entry)
            technique = _dict(attack.get("technique"))
            if _str(technique.get("uid")) is None:
                continue
            sub = _dict(attack.get("sub_technique"))
            tactic = _dict(attack.get("tactic"))
            out.append({"technique_id": _str(technique.get("uid")), "technique_name": _str(technique.get("name")),
                        "sub_id": _str(sub.get("uid")), "sub_name": _str(sub.get("name")),
                        "tactic_id": _str(tactic.get("uid")), "tactic_name": _str(tactic.get("name"))})
        return out

    def technique_ids(self) -> list[str]:
        """Most specific technique ids (sub-technique when there is one), in finding order, without repeats."""
        ids = [a["sub_id"] or a["technique_id"] for a in self.attacks()]
        return list(dict.fromkeys(i for i in ids if i))

    def tactic_ids(self) -> list[str]:
        return list(dict.fromkeys(a["tactic_id"] for a in self.attacks() if a["tactic_id"]))

    def key_process(self) -> dict[str, Any]:
        """The OCSF process object of the most telling stage (see ``_KEY_STAGES``), or ``{}``."""
        by_stage: dict[int, dict[str, Any]] = {}
        for entry in _list(self.doc.get("evidences")):
            evidence = _dict(entry)
            stage = _int(_dict(evidence.get("data")).get("stage"))
            process = _dict(evidence.get("process"))
            if stage is not None and process and stage not in by_stage:
                by_stage[stage] = process
        for stage in self._KEY_STAGES:
            if stage in by_stage:
                return by_stage[stage]
        return {}

    def egress(self) -> list[dict[str, Any]]:
        """chainwatch's egress entries (ip, port, hostname, process, pid, protocol, destination...)."""
        return self.items("egress")

    def files(self) -> list[str]:
        return self.strings("files")

    def route(self) -> str | None:
        return _str(self.chainwatch.get("route"))

    def stages(self) -> list[int]:
        return [s for s in _list(self.chainwatch.get("stages_present")) if _int(s) is not None]

    def story(self) -> str:
        return _str(self.chainwatch.get("story")) or ""

    def items(self, key: str) -> list[dict[str, Any]]:
        """The object entries of the list ``unmapped.chainwatch.<key>`` (``process_tree``, ``links``...)."""
        return [e for e in _list(self.chainwatch.get(key)) if isinstance(e, dict)]

    def strings(self, key: str) -> list[str]:
        """The string entries of the list ``unmapped.chainwatch.<key>`` (``quarantine``, ``reasons``...)."""
        return [e for e in _list(self.chainwatch.get(key)) if isinstance(e, str)]


# -- the revision ledger (SIEMs without server-side dedupe) ----------------------------------------------------

LEDGER_PREFIX = "delivered:r"


def already_delivered(sink: Sink, delivery: Delivery, where: str) -> DeliveryResult | None:
    """A result for a revision ``sink`` already delivered (or that a later delivered revision supersedes).

    The sink's entry in the ticket map holds ``delivered:r<revision>``. With no answer from the ledger the revision
    is delivered again: a possible duplicate beats a possible loss.
    """
    stored = read_ledger(sink, delivery)
    return delivered_verdict(delivered_revision(stored), delivery, where)


def read_ledger(sink: Sink, delivery: Delivery) -> str | None:
    """The sink's ledger entry for the finding, ``None`` when there is none or the ledger cannot answer."""
    try:
        return sink.context.ticket_map.get(delivery.finding_id, sink.name)
    except ChainwatchError as exc:
        log.warning("%s %s: dedupe ledger unavailable: %s", sink.kind, sink.name, exc)
        return None


def delivered_revision(stored: str | None) -> int:
    """The revision a ``delivered:r<revision>`` entry names, 0 for anything else."""
    if not stored or not stored.startswith(LEDGER_PREFIX) or not stored[len(LEDGER_PREFIX):].isdigit():
        return 0
    return int(stored[len(LEDGER_PREFIX):])


def delivered_verdict(delivered: int, delivery: Delivery, where: str) -> DeliveryResult | None:
    """The result for ``delivery`` when revision ``delivered`` is known delivered (``None``: send it)."""
    if delivered <= 0:
        return None
    if delivered == delivery.revision:
        return DeliveryResult(delivery.finding_id, delivery.revision, Outcome.DELIVERED,
                              f"revision {delivered} already delivered to {where}")
    if delivered > delivery.revision:
        return DeliveryResult(delivery.finding_id, delivery.revision, Outcome.SKIPPED,
                              f"superseded by revision {delivered}, already delivered to {where}")
    return None


def remember_delivered(sink: Sink, delivery: Delivery) -> None:
    """Record the revision ``sink`` delivered (unless its ``dedupe`` option is off); a failure is only logged: the
    event is already at the vendor, and only a later repeat could duplicate it."""
    if not sink.option("dedupe", True):
        return
    try:
        sink.context.ticket_map.set(delivery.finding_id, sink.name, f"{LEDGER_PREFIX}{delivery.revision}")
    except ChainwatchError as exc:
        log.warning("%s %s: could not record delivery of %s: %s", sink.kind, sink.name, delivery.finding_id, exc)


class _Sized(Protocol):
    payload: bytes


SizedT = TypeVar("SizedT", bound=_Sized)


def chunks_by_bytes(items: list[SizedT], max_bytes: int, *, overhead: int = 0) -> list[list[SizedT]]:
    """Split ``items`` into requests of at most ``max_bytes`` (one separator byte per item plus ``overhead`` per
    request, e.g. 2 for the brackets of a JSON array); an item larger than that goes alone."""
    chunks: list[list[SizedT]] = []
    current: list[SizedT] = []
    size = overhead
    for item in items:
        if current and size + len(item.payload) + 1 > max_bytes:
            chunks.append(current)
            current, size = [], overhead
        current.append(item)
        size += len(item.payload) + 1
    if current:
        chunks.append(current)
    return chunks
