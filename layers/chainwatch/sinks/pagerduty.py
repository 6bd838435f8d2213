"""PagerDuty Events API v2: page on alert findings, one open alert per chain.

``POST /v2/enqueue`` with ``event_action: trigger`` and ``dedup_key`` = the finding id, so every revision of a
chain lands on the same open alert. Only alerts page: a non-alert finding is skipped, and so is a canary unless
``accept_canary`` is set. Each revision is sent once (recorded in the ticket map), so a repeated delivery cannot
re-open an alert an on-call engineer already resolved; a *new* revision of a resolved chain does page again.

Configuration (``kind: pagerduty``)::

    routing_key_secret: chainwatch/pagerduty # required: the integration key, or {"routing_key": ...}
    url: https://events.pagerduty.com        # default (EU accounts: https://events.eu.pagerduty.com)
    severity_map: {critical: critical, high: error, medium: warning, low: info, informational: info}
    throttle_retry_after: 30                 # seconds to wait on a 429 that names no Retry-After
    accept_canary: false

Responses: 202 accepted; 400 invalid event (permanent, the body explains it); 429 throttled and 5xx are retried.
The routing key travels in the body and never appears in a result, an error or a log line.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from chainwatch.errors import ConfigError, PermanentError, TransientError
from chainwatch.findings.render import clip, to_plain, triage_playbook
from chainwatch.sinks._ticketing import (
    SEVERITY_NAMES,
    RevisionLedger,
    Scrubber,
    TicketTransientError,
    call,
    deliver_each,
    failed,
    flag,
    number,
    one_line,
    secret_fields,
    severity_lookup,
    skipped,
)
from chainwatch.sinks.base import Delivery, DeliveryResult, Outcome, Sink, SinkContext, register

DEFAULT_SEVERITY_MAP = {"fatal": "critical", "critical": "critical", "high": "error", "medium": "warning",
                        "low": "info", "informational": "info"}
_PD_SEVERITIES = {"critical", "error", "warning", "info"}
#: PagerDuty rejects events over 512 KB; stay well below.
MAX_EVENT_BYTES = 256 * 1024
_SUMMARY = 1024
_DEDUP_KEY = 255


def dedup_key(finding_id: str) -> str:
    """The finding id, or a digest of it when it is longer than PagerDuty's 255 characters."""
    if len(finding_id) <= _DEDUP_KEY:
        return finding_id
    return "cw-" + hashlib.sha256(finding_id.encode()).hexdigest()


@register
class PagerDutySink(Sink):
    """PagerDuty Events v2 triggers for alert findings; see the module docstring for the options."""

    kind = "pagerduty"
    max_batch: ClassVar[int] = 50

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, config, context)
        self.clock: Callable[[], float] = time.time
        self.scrub = Scrubber()
        self.url = str(self.option("url", "https://events.pagerduty.com")).rstrip("/")
        if not self.url.startswith(("https://", "http://")):
            raise ConfigError(f"sink {name!r}: url must start with https://")
        self.secret_name = str(self.option("routing_key_secret", required=True))
        severity_map = self.option("severity_map", DEFAULT_SEVERITY_MAP)
        if not isinstance(severity_map, Mapping) or any(
                str(v) not in _PD_SEVERITIES for v in severity_map.values()):
            raise ConfigError(f"sink {name!r}: severity_map values must be one of {sorted(_PD_SEVERITIES)}")
        self.severity_map: Mapping[Any, Any] = severity_map
        self.accept_canary = flag(self.option("accept_canary", False), f"sink {name!r}: accept_canary")
        self.throttle_retry_after = number(self.option("throttle_retry_after", 30),
                                           f"sink {name!r}: throttle_retry_after")
        self.pending_timeout = number(self.option("pending_timeout", 900), f"sink {name!r}: pending_timeout")
        verify = self.option("verify", True)
        self.verify: bool | str = verify if isinstance(verify, str) else flag(verify, f"sink {name!r}: verify")
        self.story_chars = int(number(self.option("story_chars", 16_000), f"sink {name!r}: story_chars",
                                      minimum=1000))

    def _routing_key(self) -> str:
        what = f"sink {self.name!r}: secret {self.secret_name!r}"
        value = secret_fields(self.context.secret(self.secret_name), what)
        key = value if isinstance(value, str) else value.get("routing_key") or value.get("integration_key") or ""
        if not key:
            raise ConfigError(f"{what} holds no routing key")
        self.scrub.add(key)
        return key

    def event(self, delivery: Delivery, routing_key: str) -> dict[str, Any]:
        """The Events v2 trigger for one delivery, bounded well under PagerDuty's 512 KB."""
        doc = delivery.document
        severity = severity_lookup(self.severity_map, delivery.severity_id) or "warning"
        prefix = "[CANARY] " if delivery.canary else ""
        timestamp = doc.get("time")
        cw = doc.get("unmapped", {}).get("chainwatch", {}) if isinstance(doc.get("unmapped"), Mapping) else {}
        details: dict[str, Any] = {
            "finding_id": clip(delivery.finding_id, 255),
            "revision": delivery.revision,
            "severity": SEVERITY_NAMES.get(delivery.severity_id, "unknown"),
            "confidence": clip(doc.get("confidence"), 20),
            "host": clip(delivery.host, 255),
            "route": clip(cw.get("route") if isinstance(cw, Mapping) else None, 40),
            "triage_playbook": triage_playbook(doc),
            "story": to_plain(doc, max_chars=self.story_chars),
        }
        payload: dict[str, Any] = {
            "summary": one_line(prefix + delivery.title, _SUMMARY),
            "source": clip(delivery.host, 255) or "unknown",
            "severity": str(severity),
            "component": "chainwatch",
            "group": "AN1316",
            "class": "macOS app to script to egress chain",
            "custom_details": details,
        }
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            payload["timestamp"] = datetime.fromtimestamp(timestamp / 1000, UTC).isoformat().replace("+00:00", "Z")
        event = {"routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup_key(delivery.finding_id),
                 "payload": payload, "client": "chainwatch"}
        while len(json.dumps(event).encode()) > MAX_EVENT_BYTES and len(details["story"]) > 1000:
            details["story"] = to_plain(doc, max_chars=len(details["story"]) // 2)
        return event

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        try:
            routing_key = self._routing_key()
        except (ConfigError, LookupError) as exc:
            detail = self.scrub(f"sink {self.name!r}: cannot read its routing key: {type(exc).__name__}: "
                                f"{clip(exc, 300)}")
            return [DeliveryResult(d.finding_id, d.revision, Outcome.FAILED_PERMANENT, detail) for d in deliveries]
        except TransientError as exc:
            detail = self.scrub(f"sink {self.name!r}: routing key unavailable: {clip(exc, 300)}")
            return [DeliveryResult(d.finding_id, d.revision, Outcome.FAILED_TRANSIENT, detail,
                                   retry_after=exc.retry_after) for d in deliveries]
        return deliver_each(self.context, deliveries, lambda d: self._deliver(d, routing_key), self.scrub)

    def _deliver(self, delivery: Delivery, routing_key: str) -> DeliveryResult:
        if delivery.canary and not self.accept_canary:
            return skipped(delivery, "canary finding: not paged (set accept_canary: true to page canaries)")
        if not delivery.is_alert:
            return skipped(delivery, "not an alert: PagerDuty pages alerts only")
        ledger = RevisionLedger(self.context.ticket_map, self.name, self.clock, self.pending_timeout)
        hold = ledger.begin(delivery)
        if hold.result is not None:
            return hold.result
        key = dedup_key(delivery.finding_id)
        event = self.event(delivery, routing_key)

        def attempt() -> None:
            try:
                call(self.context, "POST", f"{self.url}/v2/enqueue", what="PagerDuty enqueue", scrub=self.scrub,
                     headers={"Content-Type": "application/json", "Accept": "application/json"}, body=event,
                     verify=self.verify)
            except TicketTransientError as exc:
                if exc.status == 429 and exc.retry_after is None:
                    # PagerDuty asks to "retry after some time" without saying how long.
                    exc.retry_after = self.throttle_retry_after
                raise

        try:
            self.context.retry.call(attempt)
        except (TransientError, PermanentError) as exc:
            ledger.abort(delivery, hold.token or "")
            return failed(delivery, exc, self.scrub)
        ledger.done(delivery, key)
        return DeliveryResult(delivery.finding_id, delivery.revision, Outcome.DELIVERED,
                              f"triggered (dedup_key {key}, revision {delivery.revision})", external_id=key)
