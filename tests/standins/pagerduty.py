"""A local stand-in of the PagerDuty Events API v2, for tests and the local demo run.

It speaks the contract in ``../shared/reference/sinks.md`` section 8:

* ``POST /v2/enqueue`` with ``{"routing_key", "event_action", "dedup_key", "payload": {...}}``. Authentication
  is the routing key in the body (an unknown key is 400, as is any invalid event). A trigger needs
  ``payload.summary`` (at most 1024 characters), ``payload.source`` and ``payload.severity`` (critical, error,
  warning or info); ``dedup_key`` is at most 255 characters; the body at most 512 KB.
* 202 ``{"status": "success", "message": "Event processed", "dedup_key": ...}``; 400 ``{"status": "invalid
  event", "message": "Event object is invalid", "errors": [...]}``.
* Deduplication: a trigger whose ``dedup_key`` names an open (triggered or acknowledged) alert is added to it;
  after ``resolve`` the same key opens a new alert. Without a ``dedup_key`` one is generated.

Failures are scriptable (``fail_next``, ``throttle``, ``fail_after_processing``) and every request is recorded.
"""

from __future__ import annotations

import uuid
from typing import Any

from ._ticketing_http import Recorded, Reply, StandinServer

DEFAULT_ROUTING_KEY = "R0UT1NGK3Y0123456789abcdefABCDEF"
MAX_EVENT_BYTES = 512 * 1024
SEVERITIES = ("critical", "error", "warning", "info")


def _invalid(*errors: str) -> Reply:
    return Reply(400, {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)})


class PagerDutyServer(StandinServer):
    """PagerDuty Events v2 on loopback; ``alerts`` lists every alert with its events, in creation order."""

    def __init__(self, *, routing_keys: tuple[str, ...] = (DEFAULT_ROUTING_KEY,)) -> None:
        super().__init__()
        self.routing_keys = routing_keys
        self.alerts: list[dict[str, Any]] = []

    def route(self, request: Recorded) -> Reply:
        if request.path != "/v2/enqueue" or request.method != "POST":
            return Reply(404, {"status": "not found", "message": f"No endpoint {request.method} {request.path}"})
        if len(request.body) > MAX_EVENT_BYTES:
            return _invalid("Event object is too large (limit 512 KB)")
        event = request.json
        if not isinstance(event, dict):
            return Reply(400, {"status": "invalid event", "message": "Event object is invalid",
                               "errors": ["Request body is not a JSON object"]})
        if event.get("routing_key") not in self.routing_keys:
            return _invalid("'routing_key' is invalid")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            return _invalid("'event_action' is invalid (must be trigger, acknowledge or resolve)")
        key = event.get("dedup_key")
        if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
            return _invalid("'dedup_key' must be a string of at most 255 characters")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return _invalid("'payload' is missing or not an object")
            errors = []
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary:
                errors.append("'payload.summary' is missing or blank")
            elif len(summary) > 1024:
                errors.append("'payload.summary' is longer than 1024 characters")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                errors.append("'payload.source' is missing or blank")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' must be critical, error, warning or info")
            if errors:
                return _invalid(*errors)
        elif key is None:
            return _invalid("'dedup_key' is required to acknowledge or resolve")
        with self.lock:
            key = key or uuid.uuid4().hex
            alert = self._open(key)
            if action == "trigger":
                if alert is None:
                    alert = {"dedup_key": key, "status": "triggered", "events": [],
                             "summary": event["payload"]["summary"], "severity": event["payload"]["severity"]}
                    self.alerts.append(alert)
                alert["events"].append(event)
            elif alert is not None:
                alert["status"] = "acknowledged" if action == "acknowledge" else "resolved"
                alert["events"].append(event)
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})

    def _open(self, key: str) -> dict[str, Any] | None:
        for alert in self.alerts:
            if alert["dedup_key"] == key and alert["status"] != "resolved":
                return alert
        return None

    # -- assertions and scenario helpers -------------------------------------------------------------------------

    def alerts_for(self, key: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for a in self.alerts if a["dedup_key"] == key]

    def resolve(self, key: str) -> None:
        """What an on-call engineer does in the PagerDuty UI."""
        with self.lock:
            alert = self._open(key)
            if alert is not None:
                alert["status"] = "resolved"


def start_pagerduty_server(**options: Any) -> tuple[PagerDutyServer, str]:
    """Start a PagerDuty Events v2 stand-in on a free loopback port; stop it with ``server.stop()``."""
    server = PagerDutyServer(**options)
    return server, server.start()
