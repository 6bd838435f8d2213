"""Splunk HTTP Event Collector sink: each finding revision becomes one compact JSON event.

Request (``../shared/reference/sinks.md`` section 2): ``POST <url>/services/collector/event`` with
``Authorization: Splunk <token>`` and a body of **concatenated** JSON objects (not an array), one HEC envelope per
finding::

    {"time": 1758204192.918, "host": "mac-02", "source": "chainwatch", "sourcetype": "chainwatch:finding",
     "index": "security", "event": {...}, "fields": {"finding_id": "cw-...", "revision": "2", ...}}

HEC answers ``{"text": ..., "code": N}``: 0 is success; 8 (500) and 9 (503 server busy) are transient, as are
429 and network errors; 1-4 (401/403 token problems) and 5-7, 10-14 (400) are permanent. A 400 that names an
``invalid-event-number`` rejects one event of the batch: that event fails permanently and the others are sent
again in a new request (whether HEC kept the events before the bad one is not documented, so a possible
duplicate is preferred over a possible loss).

HEC has no server-side dedupe. **In use: search-time dedupe on stable keys.** Every event carries ``finding_id``
and ``revision`` (also as indexed fields), and with ``dedupe: true`` (default) the sink records the last revision
it delivered per chain in the :class:`~chainwatch.sinks.base.TicketMap` (DynamoDB in Lambda), so a chain delivered
twice is one event. A reply lost after HEC indexed the batch still makes the retry index it again; the documented
search removes those copies::

    index=security sourcetype=chainwatch:finding | dedup finding_id revision

HEC indexer acknowledgement (``X-Splunk-Request-Channel`` + ``/services/collector/ack``) is not used yet: ``channel``
is only sent as a header for tokens that require one.

Events are kept under ``max_event_bytes`` (default 9000): Splunk's default ``TRUNCATE`` of 10000 bytes would
otherwise cut a long event mid-JSON. Every string is made printable, bounded and formula-neutralized, because
Splunk results are exported to CSV and opened in spreadsheets.

Configuration::

    kind: splunk_hec
    url: https://splunk.example.com:8088          # base URL, or the full .../services/collector/event URL
    token_secret: chainwatch/splunk-hec            # secret NAME; the value is the token or {"token": "..."}
    sourcetype: chainwatch:finding                 # optional
    source: chainwatch                             # optional
    index: security                                # optional; the token's default index otherwise
    channel: 1f2e...                               # optional X-Splunk-Request-Channel (tokens with indexer ack)
    verify: true                                   # TLS verification, or a CA bundle path
    dedupe: true                                   # one event per chain revision, via the ticket map
    max_event_bytes: 9000
    max_batch_bytes: 900000
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

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

EVENT_PATH = "/services/collector/event"
DEFAULT_SOURCETYPE = "chainwatch:finding"
DEFAULT_SOURCE = "chainwatch"
DEFAULT_MAX_EVENT_BYTES = 9000
DEFAULT_MAX_BATCH_BYTES = 900_000
#: HEC codes whose 400 names one bad event of a batch (``invalid-event-number``), as opposed to the whole request.
_PER_EVENT_CODES = frozenset({6, 12, 13, 15})

#: Rendering tiers, tried in order until the event fits ``max_event_bytes``: (story chars, string chars, list
#: items). The first keeps the whole story of a normal finding; the last keeps only what identifies it.
_TIERS = ((4000, 1024, 20), (1500, 256, 8), (0, 120, 3))


@dataclass
class _Pending:
    """One delivery on its way: where its result goes and its encoded HEC envelope."""

    index: int
    delivery: Delivery
    payload: bytes


@register
class SplunkHecSink(Sink):
    """Delivers findings to Splunk through the HTTP Event Collector ``/services/collector/event`` endpoint.

    See the module docstring for the configuration, the event shape and the error handling.
    """

    kind = "splunk_hec"
    max_batch = 100

    # -- configuration -----------------------------------------------------------------------------------------

    def _url(self) -> str:
        url = self.base_url()
        return url if url.endswith(EVENT_PATH) else url + EVENT_PATH

    def _token(self) -> str:
        name = str(self.option("token_secret", required=True))
        what = f"sink {self.name!r}: secret {name!r}"
        return header_safe(secret_field(self.context.secret(name), ("token", "hec_token", "value"), what), what)

    def _limit(self, key: str, default: int) -> int:
        value = self.option(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 512:
            raise ConfigError(f"sink {self.name!r}: {key} must be an integer >= 512")
        return value

    # -- rendering ---------------------------------------------------------------------------------------------

    def envelope(self, delivery: Delivery) -> dict[str, Any]:
        """The HEC envelope for one delivery, its event under ``max_event_bytes`` once encoded."""
        view = FindingView(delivery.document)
        limit = self._limit("max_event_bytes", DEFAULT_MAX_EVENT_BYTES)
        event: dict[str, Any] = {}
        for story, text_limit, list_limit in _TIERS:
            event = self._event(delivery, view, story, text_limit, list_limit)
            event["truncated"] = (story, text_limit, list_limit) != _TIERS[0]
            if len(orjson.dumps(event)) <= limit:
                break
        else:
            # Even the smallest tier is too big (a finding with hundreds of multi-byte names): keep what
            # identifies the finding so the analyst can fetch the rest from the OCSF record.
            event = self._minimal_event(delivery, view)
        out: dict[str, Any] = {
            "host": text(view.host(), 255, formula=True),
            "source": text(self.option("source", DEFAULT_SOURCE), 255),
            "sourcetype": text(self.option("sourcetype", DEFAULT_SOURCETYPE), 255),
            "event": event,
            # Indexed fields make the dedupe keys searchable with tstats; HEC wants string (or string list) values.
            "fields": {"finding_id": event["finding_id"], "revision": str(delivery.revision),
                       "severity": str(event.get("severity") or "unknown"),
                       "canary": "true" if delivery.canary else "false"},
        }
        time_ms = view.time_ms()
        if time_ms is not None:
            out["time"] = round(time_ms / 1000, 3)
        index = self.option("index")
        if index:
            out["index"] = text(index, 255)
        return out

    @staticmethod
    def _minimal_event(delivery: Delivery, view: FindingView) -> dict[str, Any]:
        return {"finding_id": text(delivery.finding_id, 200, formula=True), "revision": delivery.revision,
                "canary": delivery.canary, "title": text(view.title(delivery.finding_id), 200, formula=True),
                "severity_id": delivery.severity_id, "host": text(view.host(), 120, formula=True),
                "truncated": True}

    def _event(self, delivery: Delivery, view: FindingView, story_limit: int, text_limit: int,
               list_limit: int) -> dict[str, Any]:
        """The compact projection: flat fields a Splunk search can use without ``spath``, plus short lists."""

        def clean(value: Any, limit: int = text_limit) -> Any:
            return bounded(value, text_limit=limit, list_limit=list_limit, formula=True)

        process = view.key_process()
        parent = as_dict(process.get("parent_process"))
        signature = as_dict(as_dict(process.get("file")).get("signature"))
        egress = view.egress()
        first_egress = egress[0] if egress else {}
        first_seen, last_seen = view.first_seen_ms(), view.last_seen_ms()
        event: dict[str, Any] = {
            "finding_id": text(delivery.finding_id, 200, formula=True),
            "revision": delivery.revision,
            "activity": "update" if delivery.is_update else "create",
            "canary": delivery.canary,
            "title": clean(view.title(delivery.finding_id), min(text_limit, 512)),
            "severity": clean(view.get_str("severity")),
            "severity_id": delivery.severity_id,
            "confidence": clean(view.get_str("confidence")),
            "is_alert": delivery.is_alert,
            "status": clean(view.get_str("status")),
            "analytic": clean(view.analytic.get("uid")),
            "route": clean(view.route()),
            "stages": view.stages()[:8],
            "mitre_technique_id": clean(view.technique_ids()),
            "mitre_tactic_id": clean(view.tactic_ids()),
            "first_seen": ms_to_iso(first_seen) if first_seen is not None else None,
            "last_seen": ms_to_iso(last_seen) if last_seen is not None else None,
            "host": clean(view.host(), 255),
            "process": {
                "pid": as_int(process.get("pid")),
                "name": clean(process.get("name")),
                "path": clean(process.get("path")),
                "cmd_line": clean(process.get("cmd_line")),
                "team_id": clean(signature.get("developer_uid")),
                "parent_pid": as_int(parent.get("pid")),
                "parent_name": clean(parent.get("name")),
                "parent_path": clean(parent.get("path")),
            },
            "dest_ip": clean(first_egress.get("ip")),
            "dest_port": as_int(first_egress.get("port")),
            "dest_host": clean(first_egress.get("hostname")),
            "process_tree": [clean({k: node.get(k) for k in ("depth", "role", "pid", "path", "cmd_line")})
                             for node in view.items("process_tree")[:list_limit]],
            "files": clean(view.files()),
            "egress": [clean({k: e.get(k) for k in ("ip", "port", "hostname", "process", "pid", "destination",
                                                    "attribution")})
                       for e in egress[:list_limit]],
            "quarantine": clean(view.strings("quarantine")),
            "gatekeeper": clean(view.strings("gatekeeper")),
            "reasons": clean(view.strings("reasons")),
            "links": [text(f"{lk.get('from')}->{lk.get('to')} {lk.get('strength')}: {lk.get('reason')}",
                           text_limit, formula=True)
                      for lk in view.items("links")[:list_limit]],
            "suppressed_by": clean(view.chainwatch.get("suppressed_by")),
        }
        if story_limit:
            event["story"] = multiline(view.story(), story_limit, formula=True)
        return event

    # -- delivery ----------------------------------------------------------------------------------------------

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        """Send the deliveries as few HEC requests as ``max_batch_bytes`` allows; one result per delivery."""
        if not deliveries:
            return []
        try:
            url = self._url()
            token = self._token()
            max_batch_bytes = self._limit("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES)
            self._limit("max_event_bytes", DEFAULT_MAX_EVENT_BYTES)
            headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
            channel = self.option("channel")
            if channel:
                headers["X-Splunk-Request-Channel"] = header_safe(str(channel), f"sink {self.name!r}: channel")
        except ConfigError as exc:
            return results_for(deliveries, Outcome.FAILED_PERMANENT, str(exc))
        except TransientError as exc:  # the secret store is throttled or down
            return results_for(deliveries, Outcome.FAILED_TRANSIENT, str(exc), retry_after=exc.retry_after)
        scrub = Scrubber([token])
        results: dict[int, DeliveryResult] = {}
        pending: list[_Pending] = []
        dedupe = bool(self.option("dedupe", True))
        first_of: dict[tuple[str, int], int] = {}
        repeats: dict[int, int] = {}
        for index, delivery in enumerate(deliveries):
            key = (delivery.finding_id, delivery.revision)
            if key in first_of:  # the same revision twice in one batch: one event, one outcome for both
                repeats[index] = first_of[key]
                continue
            first_of[key] = index
            if dedupe:
                already = self._already_delivered(delivery)
                if already is not None:
                    results[index] = already
                    continue
            try:
                payload = orjson.dumps(self.envelope(delivery))
            except (TypeError, ValueError, AttributeError, ConfigError) as exc:  # one odd finding fails alone
                results[index] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                                f"cannot render the finding as a HEC event: {text(exc, 300)}")
                continue
            pending.append(_Pending(index, delivery, payload))
        for chunk in _chunks(pending, max_batch_bytes):
            self._deliver(chunk, url, headers, scrub, results)
        for index, first in repeats.items():
            results[index] = results[first]
        # Last line of defence: whatever a message quoted, no result leaves with the token in it.
        return [scrub_result(results[i], scrub) for i in range(len(deliveries))]

    def _deliver(self, chunk: list[_Pending], url: str, headers: dict[str, str], scrub: Scrubber,
                 results: dict[int, DeliveryResult]) -> None:
        queue = list(chunk)
        while queue:
            if out_of_time(self.context):
                for item in queue:
                    results[item.index] = self._result(item, Outcome.FAILED_TRANSIENT,
                                                       "time budget too short to send another request")
                return
            attempt: Callable[[], _Answer] = partial(self._post, queue, url, headers, scrub)
            try:
                answer = self.context.retry.call(attempt)
            except TransientError as exc:
                log.warning("splunk_hec %s: %d events not delivered (transient): %s", self.name, len(queue), exc)
                for item in queue:
                    results[item.index] = self._result(item, Outcome.FAILED_TRANSIENT, str(exc),
                                                       response=error_response(exc), retry_after=exc.retry_after)
                return
            except HttpPermanentError as exc:
                log.warning("splunk_hec %s: %d events rejected: %s", self.name, len(queue), exc)
                for item in queue:
                    results[item.index] = self._result(item, Outcome.FAILED_PERMANENT, str(exc),
                                                       response=exc.response)
                return
            if answer.invalid_event is None:
                for item in queue:
                    results[item.index] = self._result(item, Outcome.DELIVERED, answer.detail)
                    self._remember(item.delivery)
                return
            bad = queue.pop(answer.invalid_event)
            results[bad.index] = self._result(bad, Outcome.FAILED_PERMANENT, answer.detail, response=answer.body)
            # The rest go again in a new request (see the module docstring about events before the bad one).

    def _post(self, queue: list[_Pending], url: str, headers: dict[str, str], scrub: Scrubber) -> _Answer:
        # Concatenated objects separated by a newline: valid HEC batching and readable in a capture.
        body = b"\n".join(item.payload for item in queue)
        what = f"splunk_hec {self.name}"
        response = post(self.context.session, url, data=body, headers=headers, timeout=self.context.timeout,
                        verify=self.option("verify", True), what=what, scrub=scrub)
        reply = json_body(response)
        reply = reply if isinstance(reply, dict) else {}
        code = reply.get("code")
        hec_text = scrub(text(reply.get("text", ""), 200))
        if 200 <= response.status_code < 300:
            if response.status_code == 200 and code == 0:
                ack = reply.get("ackId")
                return _Answer(None, "accepted by HEC" + (f" (ackId {ack})" if isinstance(ack, int) else ""))
            # A 200 that is not HEC's answer is a proxy or a web UI at that URL: counting it delivered would
            # drop every finding silently.
            raise HttpPermanentError(f"{what}: HTTP {response.status_code} without HEC's success answer; is the url "
                                     "the collector?", status=response.status_code,
                                     response=bounded_body(response, scrub))
        bad = reply.get("invalid-event-number")
        if (response.status_code == 400 and code in _PER_EVENT_CODES and isinstance(bad, int)
                and not isinstance(bad, bool) and 0 <= bad < len(queue) and len(queue) > 1):
            return _Answer(bad, f"{what}: HEC code {code} ({hec_text}) for this event",
                           body=bounded_body(response, scrub))
        # Everything else, including a 400 naming event 0 of a batch of one, concerns the whole request.
        raise http_error(response, f"{what} (HEC code {code}: {hec_text})" if code is not None else what, scrub)

    @staticmethod
    def _result(item: _Pending, outcome: Outcome, detail: str, *, response: str | None = None,
                retry_after: float | None = None) -> DeliveryResult:
        return DeliveryResult(item.delivery.finding_id, item.delivery.revision, outcome, detail,
                              response=response, retry_after=retry_after)

    # -- the dedupe ledger -------------------------------------------------------------------------------------

    def _already_delivered(self, delivery: Delivery) -> DeliveryResult | None:
        return already_delivered(self, delivery, "HEC")

    def _remember(self, delivery: Delivery) -> None:
        remember_delivered(self, delivery)


@dataclass(frozen=True)
class _Answer:
    """What one accepted-or-partly-rejected request said: the index of a rejected event, if one was."""

    invalid_event: int | None
    detail: str
    body: str | None = None


def _chunks(pending: list[_Pending], max_bytes: int) -> list[list[_Pending]]:
    return chunks_by_bytes(pending, max_bytes, overhead=0)
