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

HEC has no server-side dedupe. Two protections, and the result ``detail`` says which one a delivery had:

* **Search-time dedupe on stable keys (always, and the only one by default).** Every event carries
  ``finding_id`` and ``revision`` (also as indexed fields), and with ``dedupe: true`` (default) the sink records
  the last revision it delivered per chain in the :class:`~chainwatch.sinks.base.TicketMap` (DynamoDB in Lambda),
  so a chain delivered twice is one event. A reply lost after HEC took the batch still makes the retry send it
  again; the documented search removes those copies::

      index=security sourcetype=chainwatch:finding | dedup finding_id revision

* **Indexer acknowledgement (``indexer_ack: true``; Splunk Enterprise tokens with "Enable indexer
  acknowledgement").** Every request carries ``X-Splunk-Request-Channel: <GUID>`` (``channel``, or a GUID derived
  from the sink's name and URL, the same in every invocation); HEC answers ``{"code": 0, "ackId": N}``, and a
  delivery counts as delivered only once ``POST /services/collector/ack`` ``{"acks": [N]}`` reads ``true``. The
  sink polls (``ack_poll_interval``, doubling up to 10 s; 429/503 and ``Retry-After`` honoured) for at most
  ``ack_timeout`` seconds and never past the time budget. Before polling it records
  ``acking:r<revision>:<ackId>:<channel>:<revision delivered before>:<epoch>`` in the ledger, so an ack not
  confirmed in time (a slow indexer, the invocation cut off) leaves the delivery for a later attempt, which asks
  HEC about that ackId first and sends the events again only if it still is not true (at-least-once: an ack that
  is lost, or forgotten by HEC after it answered true, can still mean a copy; the search above covers it). A
  reply lost *before* the ackId arrived cannot be asked about, so that request is sent again as without ack.
  A token without acknowledgement answers without an ackId: the delivery counts as delivered, and the detail
  says indexing was not confirmed.

A token with acknowledgement on rejects every request without a channel (400, code 10 "Data channel is missing";
code 11 for a channel that is not a GUID): the sink reports that as a permanent configuration error naming
``indexer_ack``. ``mode`` says which protection a sink is configured for.

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
    indexer_ack: false                             # true: confirm indexing through /services/collector/ack
    channel: 0aa3f0b1-7c6e-4d8e-9b1a-1f2e3d4c5b6a  # optional channel GUID (default with indexer_ack: derived)
    ack_timeout: 30                                # seconds of waiting for acks per send (within the budget)
    ack_poll_interval: 1                           # first wait between ack questions (doubles, at most 10 s)
    verify: true                                   # TLS verification, or a CA bundle path
    dedupe: true                                   # one event per chain revision, via the ticket map
    max_event_bytes: 9000
    max_batch_bytes: 900000
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from chainwatch.errors import ChainwatchError, ConfigError, TransientError
from chainwatch.sinks._siem import (
    FindingView,
    HttpPermanentError,
    HttpTransientError,
    Scrubber,
    as_dict,
    as_int,
    bounded,
    bounded_body,
    chunks_by_bytes,
    delivered_revision,
    delivered_verdict,
    error_response,
    header_safe,
    http_error,
    json_body,
    ms_to_iso,
    multiline,
    out_of_time,
    post,
    read_ledger,
    remember_delivered,
    scrub_result,
    secret_field,
    text,
)
from chainwatch.sinks.base import Delivery, DeliveryResult, Outcome, Sink, SinkContext, register, results_for

log = logging.getLogger(__name__)

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
DEFAULT_ACK_TIMEOUT = 30.0
DEFAULT_ACK_POLL_INTERVAL = 1.0
MAX_ACK_POLL_INTERVAL = 10.0
ACKING_PREFIX = "acking:r"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: Namespace of the derived channel GUIDs (uuid5 of "chainwatch splunk_hec channel" in the URL namespace).
_CHANNEL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "chainwatch splunk_hec channel")
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
    """One delivery on its way: where its result goes, its encoded HEC envelope, the revision delivered before it
    (``prior``) and, with indexer acknowledgement, the ack it waits for and when that request was sent."""

    index: int
    delivery: Delivery
    payload: bytes
    prior: int = 0
    ack_id: int | None = None
    sent_at: int | None = None


@register
class SplunkHecSink(Sink):
    """Delivers findings to Splunk through the HTTP Event Collector ``/services/collector/event`` endpoint.

    See the module docstring for the configuration, the event shape and the error handling.
    """

    kind = "splunk_hec"
    max_batch = 100

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, config, context)
        #: Wall-clock seconds, for the age of a recorded ack (injected in tests).
        self.clock: Callable[[], float] = time.time

    @property
    def mode(self) -> str:
        """Which duplicate protection is configured: ``indexer-ack`` or ``search-time-dedupe``."""
        enabled = self.option("indexer_ack", False)
        on = enabled is True or (isinstance(enabled, str) and enabled.strip().lower() in ("true", "yes", "1"))
        return "indexer-ack" if on else "search-time-dedupe"

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

    def _ack_settings(self, url: str) -> _AckSettings | None:
        """Indexer acknowledgement as configured (``None``: off), or :class:`ConfigError`."""
        enabled = self.option("indexer_ack", False)
        if isinstance(enabled, str) and enabled.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            enabled = enabled.strip().lower() in ("true", "yes", "1")
        if not isinstance(enabled, bool):
            raise ConfigError(f"sink {self.name!r}: indexer_ack must be true or false")
        if not enabled:
            return None
        channel = self._channel() or derived_channel(self.name, url)
        timeout = self.option("ack_timeout", DEFAULT_ACK_TIMEOUT)
        interval = self.option("ack_poll_interval", DEFAULT_ACK_POLL_INTERVAL)
        for key, value, low in (("ack_timeout", timeout, 0.0), ("ack_poll_interval", interval, 0.01)):
            if not isinstance(value, int | float) or isinstance(value, bool) or value < low:
                raise ConfigError(f"sink {self.name!r}: {key} must be a number of seconds >= {low:g}")
        return _AckSettings(channel, url[: -len(EVENT_PATH)] + ACK_PATH, float(timeout), float(interval))

    def _channel(self) -> str | None:
        """The configured ``channel``, which HEC wants as a GUID (code 11 otherwise), or ``None``."""
        channel = self.option("channel")
        if channel in (None, ""):
            return None
        value = str(channel).strip()
        if not _GUID.match(value):
            raise ConfigError(f"sink {self.name!r}: channel must be a GUID such as "
                              f"{derived_channel(self.name, 'https://splunk.example.com:8088' + EVENT_PATH)}")
        return value.lower()

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        """Send the deliveries as few HEC requests as ``max_batch_bytes`` allows; one result per delivery.

        With indexer acknowledgement, a delivery counts as delivered once its request's ``ackId`` reads true; one
        whose earlier send's ack is still on record is checked first and only sent again if that ack is not true.
        """
        if not deliveries:
            return []
        try:
            url = self._url()
            token = self._token()
            max_batch_bytes = self._limit("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES)
            self._limit("max_event_bytes", DEFAULT_MAX_EVENT_BYTES)
            ack = self._ack_settings(url)
            headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
            channel = ack.channel if ack is not None else self._channel()
            if channel:
                headers["X-Splunk-Request-Channel"] = header_safe(channel, f"sink {self.name!r}: channel")
        except ConfigError as exc:
            return results_for(deliveries, Outcome.FAILED_PERMANENT, str(exc))
        except TransientError as exc:  # the secret store is throttled or down
            return results_for(deliveries, Outcome.FAILED_TRANSIENT, str(exc), retry_after=exc.retry_after)
        scrub = Scrubber([token])
        results: dict[int, DeliveryResult] = {}
        pending: list[_Pending] = []
        earlier: list[_Pending] = []
        dedupe = bool(self.option("dedupe", True))
        first_of: dict[tuple[str, int], int] = {}
        repeats: dict[int, int] = {}
        for index, delivery in enumerate(deliveries):
            key = (delivery.finding_id, delivery.revision)
            if key in first_of:  # the same revision twice in one batch: one event, one outcome for both
                repeats[index] = first_of[key]
                continue
            first_of[key] = index
            stored = read_ledger(self, delivery) if dedupe else None
            ledger = _Ledger.parse(stored)
            already = delivered_verdict(ledger.delivered, delivery, "HEC")
            if already is not None:
                results[index] = already
                continue
            try:
                payload = orjson.dumps(self.envelope(delivery))
            except (TypeError, ValueError, AttributeError, ConfigError) as exc:  # one odd finding fails alone
                results[index] = DeliveryResult(delivery.finding_id, delivery.revision, Outcome.FAILED_PERMANENT,
                                                f"cannot render the finding as a HEC event: {text(exc, 300)}")
                continue
            item = _Pending(index, delivery, payload, prior=ledger.delivered)
            if (ack is not None and ledger.ack_id is not None and ledger.ack_revision == delivery.revision
                    and ledger.ack_channel == ack.channel):
                item.ack_id, item.sent_at = ledger.ack_id, ledger.ack_at
                earlier.append(item)
            else:
                pending.append(item)
        if ack is not None and earlier:
            pending.extend(self._check_earlier(earlier, ack, headers, scrub, results))
        awaiting: list[_Pending] = []
        for chunk in _chunks(pending, max_batch_bytes):
            self._deliver(chunk, url, headers, scrub, results, ack, awaiting)
        if ack is not None and awaiting:
            self._confirm(awaiting, ack, headers, scrub, results)
        for index, first in repeats.items():
            results[index] = results[first]
        # Last line of defence: whatever a message quoted, no result leaves with the token in it.
        return [scrub_result(results[i], scrub) for i in range(len(deliveries))]

    def _deliver(self, chunk: list[_Pending], url: str, headers: dict[str, str], scrub: Scrubber,
                 results: dict[int, DeliveryResult], ack: _AckSettings | None, awaiting: list[_Pending]) -> None:
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
                if ack is not None and answer.ack_id is not None:
                    # Accepted, not yet indexed: delivered once the ack reads true. Recorded first, so a later
                    # attempt (this one cut off, or the ack slow) asks about this ack before sending again.
                    sent_at = int(self.clock())
                    for item in queue:
                        item.ack_id, item.sent_at = answer.ack_id, sent_at
                        self._remember_ack(item, ack)
                    awaiting.extend(queue)
                    return
                detail = answer.detail
                if ack is not None:
                    log.warning("splunk_hec %s: indexer_ack is on but HEC answered without an ackId (the token "
                                "has no indexer acknowledgement); relying on search-time dedupe", self.name)
                    detail += ("; the token does not use indexer acknowledgement, so indexing is not confirmed "
                               "(search-time dedupe on finding_id + revision)")
                for item in queue:
                    results[item.index] = self._result(item, Outcome.DELIVERED, detail)
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
                ack = as_int(reply.get("ackId"))
                if ack is None:
                    return _Answer(None, "accepted by HEC (search-time dedupe on finding_id + revision)")
                return _Answer(None, f"accepted by HEC (ackId {ack}, not checked: indexer_ack is off)", ack_id=ack)
            # A 200 that is not HEC's answer is a proxy or a web UI at that URL: counting it delivered would
            # drop every finding silently.
            raise HttpPermanentError(f"{what}: HTTP {response.status_code} without HEC's success answer; is the url "
                                     "the collector?", status=response.status_code,
                                     response=bounded_body(response, scrub))
        if response.status_code == 400 and code in (10, 11):
            # The token has indexer acknowledgement on: without a (valid) channel no event is ever accepted.
            raise HttpPermanentError(
                f"{what}: HEC code {code} ({hec_text}): the token has indexer acknowledgement enabled, so every "
                "request needs a channel GUID; set indexer_ack: true on the sink (it then sends a channel derived "
                "from the sink's name and URL, or the configured channel) or turn acknowledgement off on the token",
                status=400, response=bounded_body(response, scrub))
        bad = reply.get("invalid-event-number")
        if (response.status_code == 400 and code in _PER_EVENT_CODES and isinstance(bad, int)
                and not isinstance(bad, bool) and 0 <= bad < len(queue) and len(queue) > 1):
            return _Answer(bad, f"{what}: HEC code {code} ({hec_text}) for this event",
                           body=bounded_body(response, scrub))
        # Everything else, including a 400 naming event 0 of a batch of one, concerns the whole request.
        raise http_error(response, f"{what} (HEC code {code}: {hec_text})" if code is not None else what, scrub)

    # -- indexer acknowledgement -------------------------------------------------------------------------------

    def _check_earlier(self, earlier: list[_Pending], ack: _AckSettings, headers: dict[str, str], scrub: Scrubber,
                       results: dict[int, DeliveryResult]) -> list[_Pending]:
        """Deliveries whose earlier send's ack is on record: the ones HEC confirms are delivered without being
        sent again; the others are returned, to be sent again (at-least-once; a send that was only slow to index
        is then in Splunk twice, which the documented search dedupes).

        Each ack gets what is left of its ``ack_timeout`` since it was sent (usually nothing: the earlier attempt
        waited that long already), and at least one question.
        """
        now = self.clock()
        left = max(0.0, *(ack.timeout - (now - (item.sent_at or 0)) for item in earlier))
        confirmed, error = self._await_acks({item.ack_id for item in earlier if item.ack_id is not None}, ack,
                                            headers, scrub, left)
        resend: list[_Pending] = []
        for item in earlier:
            if item.ack_id in confirmed:
                results[item.index] = self._result(
                    item, Outcome.DELIVERED, f"indexed by HEC: ackId {item.ack_id} of an earlier send confirmed on "
                                             f"channel {ack.channel}; not sent again")
                self._remember(item.delivery)
            else:
                log.warning("splunk_hec %s: ackId %s of an earlier send of %s r%d not confirmed%s; sending again",
                            self.name, item.ack_id, item.delivery.finding_id, item.delivery.revision,
                            f" ({error})" if error else "")
                item.ack_id = item.sent_at = None
                resend.append(item)
        return resend

    def _confirm(self, awaiting: list[_Pending], ack: _AckSettings, headers: dict[str, str], scrub: Scrubber,
                 results: dict[int, DeliveryResult]) -> None:
        """Wait (within ``ack_timeout`` and the time budget) for the acks of what was just sent."""
        confirmed, error = self._await_acks({item.ack_id for item in awaiting if item.ack_id is not None}, ack,
                                            headers, scrub, ack.timeout)
        for item in awaiting:
            if item.ack_id in confirmed:
                results[item.index] = self._result(item, Outcome.DELIVERED,
                                                   f"indexed by HEC (ackId {item.ack_id} confirmed)")
                self._remember(item.delivery)
            else:
                reason = f": {error}" if error else ""
                results[item.index] = self._result(
                    item, Outcome.FAILED_TRANSIENT,
                    f"accepted by HEC (ackId {item.ack_id} on channel {ack.channel}) but indexing not confirmed "
                    f"within {ack.timeout:g} s{reason}; left for a later attempt, which asks about this ack before "
                    "sending again", retry_after=ack.timeout or None)

    def _await_acks(self, ids: set[int], ack: _AckSettings, headers: dict[str, str], scrub: Scrubber,
                    window: float) -> tuple[set[int], str | None]:
        """Poll ``POST /services/collector/ack`` until every id reads true, ``window`` seconds of waiting have
        passed or the time budget ends; the ids confirmed and the last error (``None`` if the last poll answered).

        A 429/503/5xx or a network error is one unanswered poll (``Retry-After`` is waited for when it fits); a
        permanent error ends the wait (the acks stay unconfirmed: a later attempt asks again).
        """
        confirmed: set[int] = set()
        waited, delay = 0.0, ack.interval
        error: str | None = None
        retry = self.context.retry
        while True:
            if out_of_time(self.context):
                return confirmed, error or "time budget too short to ask about the ack"
            pause: float | None = None
            try:
                answer = self._query_acks(sorted(ids - confirmed), ack, headers, scrub)
            except HttpTransientError as exc:
                error, pause = str(exc), exc.retry_after
            except HttpPermanentError as exc:
                return confirmed, str(exc)
            else:
                error = None
                confirmed |= {ack_id for ack_id, done in answer.items() if done}
            if ids <= confirmed:
                return confirmed, None
            wait = pause if pause is not None else delay
            if waited + wait > window or wait + self.context.timeout + retry.safety_margin > retry.remaining():
                return confirmed, error
            retry.sleep(wait)
            waited += wait
            delay = min(delay * 2, MAX_ACK_POLL_INTERVAL)

    def _query_acks(self, ids: list[int], ack: _AckSettings, headers: dict[str, str],
                    scrub: Scrubber) -> dict[int, bool]:
        what = f"splunk_hec {self.name} ack"
        response = post(self.context.session, ack.url, data=orjson.dumps({"acks": ids}), headers=headers,
                        timeout=self.context.timeout, verify=self.option("verify", True), what=what, scrub=scrub)
        reply = json_body(response)
        if response.status_code == 200 and isinstance(reply, dict) and isinstance(reply.get("acks"), dict):
            return {int(k): v is True for k, v in reply["acks"].items() if str(k).isdigit()}
        if 200 <= response.status_code < 300:
            raise HttpPermanentError(f"{what}: HTTP {response.status_code} without HEC's ack answer",
                                     status=response.status_code, response=bounded_body(response, scrub))
        code = reply.get("code") if isinstance(reply, dict) else None
        raise http_error(response, f"{what} (HEC code {code})" if code is not None else what, scrub)

    def _remember_ack(self, item: _Pending, ack: _AckSettings) -> None:
        """Record the ack a delivery waits for (``dedupe`` on), keeping the revision delivered before it."""
        if not self.option("dedupe", True):
            return
        value = _Ledger.acking(item.delivery.revision, item.ack_id or 0, ack.channel, item.prior, item.sent_at or 0)
        try:
            self.context.ticket_map.set(item.delivery.finding_id, self.name, value)
        except ChainwatchError as exc:
            log.warning("splunk_hec %s: could not record ackId %s of %s: %s", self.name, item.ack_id,
                        item.delivery.finding_id, exc)

    @staticmethod
    def _result(item: _Pending, outcome: Outcome, detail: str, *, response: str | None = None,
                retry_after: float | None = None) -> DeliveryResult:
        return DeliveryResult(item.delivery.finding_id, item.delivery.revision, outcome, detail,
                              response=response, retry_after=retry_after)

    # -- the dedupe ledger -------------------------------------------------------------------------------------

    def _remember(self, delivery: Delivery) -> None:
        remember_delivered(self, delivery)


def derived_channel(name: str, url: str) -> str:
    """The channel GUID of a sink without a configured ``channel``: a name-based UUID (v5) of its name and event
    URL, so it is the same in every invocation and after a restart (a pending ack stays answerable)."""
    return str(uuid.uuid5(_CHANNEL_NAMESPACE, f"{name}\n{url}"))


@dataclass(frozen=True)
class _AckSettings:
    channel: str
    url: str
    timeout: float
    interval: float


@dataclass(frozen=True)
class _Ledger:
    """The sink's ledger entry for a finding: ``delivered:r<D>``, or ``acking:r<N>:<ackId>:<channel>:<D>:<epoch>``
    while revision N waits for its ack (D: the revision delivered before it, 0 for none)."""

    delivered: int = 0
    ack_revision: int | None = None
    ack_id: int | None = None
    ack_channel: str | None = None
    ack_at: int | None = None

    @staticmethod
    def acking(revision: int, ack_id: int, channel: str, prior: int, sent_at: int) -> str:
        return f"{ACKING_PREFIX}{revision}:{ack_id}:{channel}:{prior}:{sent_at}"

    @classmethod
    def parse(cls, stored: str | None) -> _Ledger:
        if not stored or not stored.startswith(ACKING_PREFIX):
            return cls(delivered_revision(stored))
        parts = stored[len(ACKING_PREFIX):].split(":")
        if len(parts) != 5 or not all(p.isdigit() for p in (parts[0], parts[1], parts[3], parts[4])):
            return cls()  # unreadable: send again (a possible duplicate beats a possible loss)
        return cls(int(parts[3]), int(parts[0]), int(parts[1]), parts[2], int(parts[4]))


@dataclass(frozen=True)
class _Answer:
    """What one accepted-or-partly-rejected request said: the index of a rejected event, if one was, and the
    ``ackId`` of an accepted request (tokens with indexer acknowledgement)."""

    invalid_event: int | None
    detail: str
    body: str | None = None
    ack_id: int | None = None


def _chunks(pending: list[_Pending], max_bytes: int) -> list[list[_Pending]]:
    return chunks_by_bytes(pending, max_bytes, overhead=0)
