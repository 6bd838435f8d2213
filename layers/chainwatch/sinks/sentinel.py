"""Microsoft Sentinel sink: findings as rows of a custom Log Analytics table through the Logs Ingestion API.

Request (``../shared/reference/sinks.md`` section 5): ``POST
{endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01`` with
``Authorization: Bearer <token>``, ``Content-Type: application/json`` and a **JSON array** of rows matching the data
collection rule's stream declaration. The API answers 204 on success; a body that is not an array can also answer
204 and drop the data (Azure/azure-sdk-for-python#32562), so the body is always an array. One call carries at most
about 1 MB: rows are packed into arrays of at most ``max_batch_bytes`` (default 1,000,000, at most 1,048,576), and
a 413 splits the request in halves (a single row answered 413 fails permanently).

Token: Entra ID client credentials, ``POST {authority}/{tenant_id}/oauth2/v2.0/token`` (form: ``grant_type=
client_credentials``, ``client_id``, ``client_secret``, ``scope=https://monitor.azure.com//.default``). The token is
cached per (authority, tenant, client, scope) until 5 minutes before its ``expires_in``; a 401 from the ingestion
endpoint drops it and the request is sent once more with a new one. Token endpoint 400/401 (bad client, secret or
scope: ``AADSTS...``) is permanent, 429/5xx transient. The service principal needs the *Monitoring Metrics
Publisher* role on the DCR; 403 means it is missing (permanent).

Errors: 429 and 5xx are transient and retried through the context's :class:`~chainwatch.sinks.base.RetryPolicy`
(honouring ``Retry-After``) within the time budget; 400 (schema, stream), 403, 404 (DCR) are permanent. No secret
or token appears in a log line, a result or a dead letter (every message is scrubbed of both).

Dedupe: the API has none. Every row carries ``FindingId`` and ``Revision`` for query-time dedupe
(``| summarize arg_max(Revision, *) by FindingId``), and with ``dedupe: true`` (default) the sink records the last
revision it delivered per chain in the :class:`~chainwatch.sinks.base.TicketMap`, so a chain delivered twice is one
row.

Row (the stream's columns; declare them in the DCR, the table ``ChainwatchFindings_CL`` with the same names)::

    TimeGenerated (datetime), FindingId, Activity ("create"/"update"), Title, Severity, Confidence, Status,
    Host, Analytic, Route, ProcessName, ProcessPath, CommandLine, ParentProcessName, DestinationIp,
    DestinationHost, Story, SuppressedBy (string); Revision, SeverityId, DestinationPort (int);
    IsAlert, Canary, Truncated (boolean); Stages, Techniques, Tactics, ProcessTree, Egress, Files, Reasons,
    Links (dynamic)

Every string is made printable, bounded and formula-neutralized; a row is kept under ``max_row_bytes`` by
shortening the story and lists first.

Configuration::

    kind: sentinel
    endpoint: https://chainwatch-dce-a1b2.westeurope-1.ingest.monitor.azure.com   # DCE or DCR ingestion endpoint
    dcr_immutable_id: dcr-00000000000000000000000000000000
    stream: Custom-ChainwatchFindings_CL
    tenant_id: 00000000-0000-0000-0000-000000000000
    client_id: 00000000-0000-0000-0000-000000000000      # the app registration (or in the secret)
    client_secret_secret: chainwatch/prod/sentinel       # secret NAME: the client secret, or
                                                         # {"client_id": ..., "client_secret": ...}
    authority: https://login.microsoftonline.com         # optional: sovereign clouds, or a local stand-in
    scope: https://monitor.azure.com//.default           # optional
    api_version: "2023-01-01"                            # optional
    verify: true                                         # TLS verification, or a CA bundle path
    dedupe: true                                         # one row per chain revision, via the ticket map
    max_batch_bytes: 1000000
    max_row_bytes: 60000
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import orjson

from chainwatch.errors import ConfigError, TransientError
from chainwatch.sinks._siem import (
    FindingView,
    HttpPermanentError,
    Scrubber,
    already_delivered,
    as_dict,
    as_int,
    bounded,
    bounded_body,
    chunks_by_bytes,
    error_response,
    header_safe,
    http_error,
    json_body,
    ms_to_iso,
    multiline,
    out_of_time,
    post,
    remember_delivered,
    scrub_result,
    secret_field,
    text,
)
from chainwatch.sinks.base import Delivery, DeliveryResult, Outcome, Sink, register, results_for

log = logging.getLogger(__name__)

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://monitor.azure.com//.default"
DEFAULT_API_VERSION = "2023-01-01"
DEFAULT_MAX_BATCH_BYTES = 1_000_000
API_MAX_BATCH_BYTES = 1_048_576
DEFAULT_MAX_ROW_BYTES = 60_000
#: A cached token is renewed this long before Entra says it expires.
TOKEN_MARGIN_S = 300.0
#: Rendering tiers (story chars, string chars, list items), tried in order until a row fits ``max_row_bytes``.
_TIERS = ((8000, 2048, 50), (2000, 256, 10), (0, 120, 3))


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float


class _Pending:
    """One row on its way: where its result goes."""

    __slots__ = ("delivery", "index", "payload")

    def __init__(self, index: int, delivery: Delivery, payload: bytes) -> None:
        self.index, self.delivery, self.payload = index, delivery, payload


class _Secrets(Scrubber):
    """A :class:`Scrubber` that learns secrets as they appear (the client secret, then each token)."""

    def __init__(self) -> None:
        super().__init__()
        self._known: set[str] = set()

    def add(self, secret: str) -> None:
        self._known.add(secret)
        Scrubber.__init__(self, self._known)


class _TooLarge(Exception):
    """The ingestion endpoint answered 413 for a request of several rows."""


@register
class SentinelSink(Sink):
    """Delivers findings to Microsoft Sentinel (a Log Analytics custom table) through the Logs Ingestion API.

    See the module docstring for the configuration, the row and the error handling.
    """

    kind = "sentinel"
    max_batch = 500

    #: Tokens by (authority, tenant, client id, scope, secret digest), shared by the instances of one process (a
    #: warm Lambda keeps its token between invocations).
    _tokens: ClassVar[dict[tuple[str, ...], _Token]] = {}
    _tokens_lock: ClassVar[threading.Lock] = threading.Lock()

    # -- configuration -----------------------------------------------------------------------------------------

    def _http_option(self, key: str, default: str | None = None) -> str:
        value = str(self.option(key, default, required=default is None)).rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ConfigError(f"sink {self.name!r} ({self.kind}): {key} must start with https:// or http://")
        return value

    def _name_option(self, key: str) -> str:
        value = str(self.option(key, required=True)).strip()
        if not value or any(ch in value for ch in "/?#%") or any(ord(ch) < 0x21 for ch in value):
            raise ConfigError(f"sink {self.name!r} ({self.kind}): {key} {value!r} is not a valid name")
        return value

    def ingestion_url(self) -> str:
        endpoint = self._http_option("endpoint")
        dcr = self._name_option("dcr_immutable_id")
        stream = self._name_option("stream")
        query = urlencode({"api-version": str(self.option("api_version", DEFAULT_API_VERSION))})
        return f"{endpoint}/dataCollectionRules/{quote(dcr)}/streams/{quote(stream)}?{query}"

    def _token_url(self) -> str:
        return f"{self._http_option('authority', DEFAULT_AUTHORITY)}/{quote(self._name_option('tenant_id'))}" \
               "/oauth2/v2.0/token"

    def _credentials(self) -> tuple[str, str]:
        name = str(self.option("client_secret_secret", required=True))
        what = f"sink {self.name!r}: secret {name!r}"
        value = self.context.secret(name)
        secret = secret_field(value, ("client_secret", "secret", "value"), what)
        client_id = self.option("client_id")
        if not client_id:
            parsed: Any = value
            if isinstance(value, str) and value.strip().startswith("{"):
                parsed = orjson.loads(value)  # secret_field has parsed it already: it is valid JSON
            client_id = as_dict(parsed).get("client_id")
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigError(f"sink {self.name!r} ({self.kind}) needs 'client_id' (in its options or its secret)")
        return client_id.strip(), secret

    def _limit(self, key: str, default: int, maximum: int | None = None) -> int:
        value = self.option(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1024 or (maximum and value > maximum):
            bound = f" and <= {maximum}" if maximum else ""
            raise ConfigError(f"sink {self.name!r}: {key} must be an integer >= 1024{bound}")
        return value

    # -- the token ---------------------------------------------------------------------------------------------

    def _token(self, scrub: _Secrets, *, fresh: bool = False) -> str:
        client_id, secret = self._credentials()
        scope = str(self.option("scope", DEFAULT_SCOPE))
        url = self._token_url()
        key = (url, client_id, scope, hashlib.sha256(secret.encode()).hexdigest())
        now = time.monotonic()
        with self._tokens_lock:
            cached = self._tokens.get(key)
            if cached is not None and not fresh and cached.expires_at > now:
                return cached.value
            self._tokens.pop(key, None)
        what = f"sentinel {self.name}: token request"
        form = urlencode({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
                          "scope": scope}).encode()
        attempt: Callable[[], Any] = partial(self._request_token, url, form, what, scrub)
        reply = self.context.retry.call(attempt)
        token = reply.get("access_token")
        expires_in = reply.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise HttpPermanentError(f"{what}: the answer has no access_token/expires_in")
        scrub.add(token)
        header_safe(token, what)
        with self._tokens_lock:
            self._tokens[key] = _Token(token, now + float(expires_in) - TOKEN_MARGIN_S)
        return token

    def _request_token(self, url: str, form: bytes, what: str, scrub: Scrubber) -> dict[str, Any]:
        response = post(self.context.session, url, data=form,
                        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                        timeout=self.context.timeout, verify=self.option("verify", True), what=what, scrub=scrub)
        reply = json_body(response)
        if response.status_code == 200 and isinstance(reply, dict):
            return reply
        if response.status_code in (400, 401):
            error = as_dict(reply)
            detail = text(f"{error.get('error', '')}: {error.get('error_description', '')}", 300)
            raise HttpPermanentError(f"{what}: HTTP {response.status_code}: {scrub(detail)}",
                                     status=response.status_code, response=bounded_body(response, scrub))
        raise http_error(response, what, scrub)

    # -- rendering ---------------------------------------------------------------------------------------------

    def row(self, delivery: Delivery) -> dict[str, Any]:
        """The table row for one delivery, under ``max_row_bytes`` once encoded."""
        view = FindingView(delivery.document)
        limit = self._limit("max_row_bytes", DEFAULT_MAX_ROW_BYTES)
        for tier in _TIERS:
            row = self._row(delivery, view, *tier)
            row["Truncated"] = tier != _TIERS[0]
            if len(orjson.dumps(row)) <= limit:
                return row
        return {"TimeGenerated": self._time(view), "FindingId": text(delivery.finding_id, 200, formula=True),
                "Revision": delivery.revision, "Canary": delivery.canary, "IsAlert": delivery.is_alert,
                "Title": text(view.title(delivery.finding_id), 200, formula=True),
                "SeverityId": delivery.severity_id, "Host": text(view.host(), 120, formula=True), "Truncated": True}

    @staticmethod
    def _time(view: FindingView) -> str:
        ms = view.time_ms()
        return ms_to_iso(ms if ms is not None else int(time.time() * 1000))

    def _row(self, delivery: Delivery, view: FindingView, story_limit: int, text_limit: int,
             list_limit: int) -> dict[str, Any]:
        def clean(value: Any, limit: int = text_limit) -> Any:
            return bounded(value, text_limit=limit, list_limit=list_limit, formula=True)

        process = view.key_process()
        parent = as_dict(process.get("parent_process"))
        egress = view.egress()
        first = egress[0] if egress else {}
        row: dict[str, Any] = {
            "TimeGenerated": self._time(view),
            "FindingId": text(delivery.finding_id, 200, formula=True),
            "Revision": delivery.revision,
            "Activity": "update" if delivery.is_update else "create",
            "Canary": delivery.canary,
            "IsAlert": delivery.is_alert,
            "Title": clean(view.title(delivery.finding_id), min(text_limit, 512)),
            "Severity": clean(view.get_str("severity")),
            "SeverityId": delivery.severity_id,
            "Confidence": clean(view.get_str("confidence")),
            "Status": clean(view.get_str("status")),
            "Host": clean(view.host(), 255),
            "Analytic": clean(view.analytic.get("uid")),
            "Route": clean(view.route()),
            "Stages": view.stages()[:8],
            "Techniques": clean(view.technique_ids()),
            "Tactics": clean(view.tactic_ids()),
            "ProcessName": clean(process.get("name")),
            "ProcessPath": clean(process.get("path")),
            "CommandLine": clean(process.get("cmd_line")),
            "ParentProcessName": clean(parent.get("name")),
            "DestinationIp": clean(first.get("ip")),
            "DestinationPort": as_int(first.get("port")),
            "DestinationHost": clean(first.get("hostname")),
            "ProcessTree": [clean({k: node.get(k) for k in ("depth", "role", "pid", "path", "cmd_line")})
                            for node in view.items("process_tree")[:list_limit]],
            "Egress": [clean({k: e.get(k) for k in ("ip", "port", "hostname", "process", "pid", "attribution")})
                       for e in egress[:list_limit]],
            "Files": clean(view.files()),
            "Reasons": clean(view.strings("reasons")),
            "Links": [text(f"{lk.get('from')}->{lk.get('to')} {lk.get('strength')}: {lk.get('reason')}", text_limit,
                           formula=True) for lk in view.items("links")[:list_limit]],
            "SuppressedBy": clean(view.chainwatch.get("suppressed_by")),
            "Story": multiline(view.story(), story_limit, formula=True) if story_limit else "",
        }
        return row

    # -- delivery ----------------------------------------------------------------------------------------------

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        """Send the deliveries as arrays of at most ``max_batch_bytes``; one result per delivery."""
        if not deliveries:
            return []
        scrub = _Secrets()
        try:
            url = self.ingestion_url()
            max_batch = self._limit("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES, API_MAX_BATCH_BYTES)
            self._limit("max_row_bytes", DEFAULT_MAX_ROW_BYTES)
            scrub.add(self._credentials()[1])
            self._bearer: str | None = self._token(scrub)
        except ConfigError as exc:
            return [scrub_result(r, scrub) for r in results_for(deliveries, Outcome.FAILED_PERMANENT, str(exc))]
        except HttpPermanentError as exc:
            log.warning("sentinel %s: no token: %s", self.name, scrub(str(exc)))
            return [scrub_result(r, scrub) for r in results_for(deliveries, Outcome.FAILED_PERMANENT, str(exc),
                                                                 response=exc.response)]
        except TransientError as exc:  # the secret store or Entra ID is throttled or down
            log.warning("sentinel %s: no token (transient): %s", self.name, scrub(str(exc)))
            return [scrub_result(r, scrub) for r in results_for(deliveries, Outcome.FAILED_TRANSIENT, str(exc),
                                                                 response=error_response(exc),
                                                                 retry_after=exc.retry_after)]
        results: dict[int, DeliveryResult] = {}
        pending: list[_Pending] = []
        first_of: dict[tuple[str, int], int] = {}
        repeats: dict[int, int] = {}
        dedupe = bool(self.option("dedupe", True))
        for index, delivery in enumerate(deliveries):
            key = (delivery.finding_id, delivery.revision)
            if key in first_of:
                repeats[index] = first_of[key]
                continue
            first_of[key] = index
            if dedupe:
                already = self._already_delivered(delivery)
                if already is not None:
                    results[index] = already
                    continue
            try:
                payload = orjson.dumps(self.row(delivery))
            except (TypeError, ValueError, AttributeError, ConfigError) as exc:
                results[index] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                                f"cannot render the finding as a Sentinel row: {text(exc, 300)}")
                continue
            pending.append(_Pending(index, delivery, payload))
        queue = _chunks(pending, max_batch)
        while queue:
            chunk = queue.pop(0)
            split = self._deliver(chunk, url, scrub, results)
            queue[:0] = split
        for index, first in repeats.items():
            results[index] = results[first]
        return [scrub_result(results[i], scrub) for i in range(len(deliveries))]

    def _deliver(self, chunk: list[_Pending], url: str, scrub: _Secrets,
                 results: dict[int, DeliveryResult]) -> list[list[_Pending]]:
        """Send one array; record results, or return the halves to send instead after a 413."""
        if out_of_time(self.context):
            for item in chunk:
                results[item.index] = self._result(item, Outcome.FAILED_TRANSIENT,
                                                   "time budget too short to send another request")
            return []
        attempt: Callable[[], None] = partial(self._post, chunk, url, scrub)
        try:
            self.context.retry.call(attempt)
        except _TooLarge:
            middle = len(chunk) // 2
            return [chunk[:middle], chunk[middle:]]
        except TransientError as exc:
            log.warning("sentinel %s: %d rows not delivered (transient): %s", self.name, len(chunk), scrub(str(exc)))
            for item in chunk:
                results[item.index] = self._result(item, Outcome.FAILED_TRANSIENT, str(exc),
                                                   response=error_response(exc), retry_after=exc.retry_after)
            return []
        except HttpPermanentError as exc:
            log.warning("sentinel %s: %d rows rejected: %s", self.name, len(chunk), scrub(str(exc)))
            for item in chunk:
                results[item.index] = self._result(item, Outcome.FAILED_PERMANENT, str(exc), response=exc.response)
            return []
        for item in chunk:
            results[item.index] = self._result(item, Outcome.DELIVERED, "accepted by the Logs Ingestion API (204)")
            self._remember(item.delivery)
        return []

    def _post(self, chunk: list[_Pending], url: str, scrub: _Secrets) -> None:
        body = b"[" + b",".join(item.payload for item in chunk) + b"]"
        what = f"sentinel {self.name}"
        response = None
        for fresh in (False, True):
            token = self._bearer if not fresh and self._bearer else self._token(scrub, fresh=fresh)
            self._bearer = token
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            response = post(self.context.session, url, data=body, headers=headers, timeout=self.context.timeout,
                            verify=self.option("verify", True), what=what, scrub=scrub)
            if response.status_code != 401:
                break  # a 401 with a cached token: it was revoked or expired early; try once with a new one
        assert response is not None
        if response.status_code == 204:
            return
        if 200 <= response.status_code < 300:
            # A 2xx other than 204 is not the ingestion API's answer (a proxy, a portal page at that URL).
            raise HttpPermanentError(f"{what}: HTTP {response.status_code} instead of 204; is the endpoint the "
                                     "DCE/DCR logs-ingestion endpoint?", status=response.status_code,
                                     response=bounded_body(response, scrub))
        if response.status_code == 413 and len(chunk) > 1:
            raise _TooLarge
        raise http_error(response, what, scrub)

    @staticmethod
    def _result(item: _Pending, outcome: Outcome, detail: str, *, response: str | None = None,
                retry_after: float | None = None) -> DeliveryResult:
        return DeliveryResult(item.delivery.finding_id, item.delivery.revision, outcome, detail,
                              response=response, retry_after=retry_after)

    # -- the dedupe ledger -------------------------------------------------------------------------------------

    def _already_delivered(self, delivery: Delivery) -> DeliveryResult | None:
        return already_delivered(self, delivery, "Sentinel")

    def _remember(self, delivery: Delivery) -> None:
        remember_delivered(self, delivery)


def _chunks(pending: list[_Pending], max_bytes: int) -> list[list[_Pending]]:
    return chunks_by_bytes(pending, max_bytes, overhead=2)
