"""A local stand-in of the ServiceNow Table API (``incident``), for tests and the local demo run.

It speaks the contract in ``../shared/reference/sinks.md`` section 7:

* ``POST /api/now/table/incident`` creates a record and answers 201 ``{"result": {...}}`` with a ``Location``
  header naming ``/api/now/table/incident/<sys_id>``; ``sysparm_fields`` limits the returned fields.
* ``PATCH /api/now/table/incident/<sys_id>`` updates it (``work_notes`` and ``comments`` are journal fields: each
  write appends an entry) and answers 200; an unknown ``sys_id`` is 404 "No Record found".
* ``GET /api/now/table/incident?sysparm_query=correlation_id=<id>&sysparm_limit=1`` (conditions joined with
  ``^``; ``ORDERBY`` ignored) and ``GET /api/now/table/incident/<sys_id>``.
* ``GET /api/now/table/sys_journal_field?sysparm_query=element_id=<sys_id>^element=work_notes^valueLIKE<text>``:
  one row per journal entry of a record (how work notes are read back).
* Authentication is HTTP Basic; anything else is 401 ``{"error": {"message": "User Not Authenticated", ...},
  "status": "failure"}``. A body that is not a JSON object is 400; ``urgency``/``impact`` outside 1-3 are 400
  (a real instance would store them silently; the stand-in is strict so mistakes show in tests).
* String fields are cut at the instance's default column sizes (short_description 160, description 4000,
  correlation_id 100), as ServiceNow does without an error.

Failures are scriptable (``fail_next``, ``throttle``, ``fail_after_processing``) and every request is recorded.
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from ._ticketing_http import Recorded, Reply, StandinServer

DEFAULT_USERNAME = "chainwatch.integration"
DEFAULT_PASSWORD = "snow-Pa55w0rd-for-tests"
COLUMN_SIZES = {"short_description": 160, "description": 4000, "correlation_id": 100, "correlation_display": 100}
JOURNAL_FIELDS = ("work_notes", "comments")

_RECORD_PATH = re.compile(r"^/api/now/table/incident/([0-9a-f]{32})$")


def _failure(status: int, message: str, detail: str) -> Reply:
    return Reply(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


class ServiceNowServer(StandinServer):
    """ServiceNow's Table API for ``incident`` on loopback; ``records`` maps ``sys_id`` to the record."""

    def __init__(self, *, username: str = DEFAULT_USERNAME, password: str = DEFAULT_PASSWORD) -> None:
        super().__init__()
        self.authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.records: dict[str, dict[str, Any]] = {}
        self._number = 10000

    def route(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != self.authorization:
            return _failure(401, "User Not Authenticated", "Required to provide Auth information")
        path = request.path
        if path == "/api/now/table/incident":
            if request.method == "POST":
                return self._create(request)
            if request.method == "GET":
                return self._query(request)
        if path == "/api/now/table/sys_journal_field" and request.method == "GET":
            return self._journal(request)
        match = _RECORD_PATH.match(path)
        if match:
            if request.method in ("PATCH", "PUT"):
                return self._update(match.group(1), request)
            if request.method == "GET":
                with self.lock:
                    record = self.records.get(match.group(1))
                if record is None:
                    return _failure(404, "No Record found",
                                    "Record doesn't exist or ACL restricts the record retrieval")
                return Reply(200, {"result": self._fields(record, request)})
        return _failure(400, "Requested URI does not represent any resource", path)

    def _body(self, request: Recorded) -> dict[str, Any] | Reply:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _failure(415, "Unsupported Media Type", "Content-Type must be application/json")
        body = request.json
        if not isinstance(body, dict):
            return _failure(400, "Exception while reading request", "The payload is not valid JSON.")
        for key in ("urgency", "impact"):
            if key in body and str(body[key]) not in ("1", "2", "3"):
                return _failure(400, "Invalid choice", f"{key} must be 1, 2 or 3")
        for key, value in body.items():
            if not isinstance(value, str | int | float | bool) and value is not None:
                return _failure(400, "Exception while reading request", f"{key} is not a scalar")
        return body

    def _create(self, request: Recorded) -> Reply:
        body = self._body(request)
        if isinstance(body, Reply):
            return body
        with self.lock:
            self._number += 1
            sys_id = uuid.uuid4().hex
            now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
            record: dict[str, Any] = {"sys_id": sys_id, "number": f"INC{self._number:07d}", "state": "1",
                                      "sys_created_on": now, "sys_updated_on": now, "work_notes": [],
                                      "comments": []}
            self._apply(record, body)
            urgency, impact = int(record.get("urgency", 3)), int(record.get("impact", 3))
            record["priority"] = str(min(5, urgency + impact - 1))
            self.records[sys_id] = record
            result = self._fields(record, request)
        return Reply(201, {"result": result},
                     {"Location": f"{self.base_url}/api/now/table/incident/{sys_id}"})

    def _update(self, sys_id: str, request: Recorded) -> Reply:
        body = self._body(request)
        if isinstance(body, Reply):
            return body
        with self.lock:
            record = self.records.get(sys_id)
            if record is None:
                return _failure(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
            self._apply(record, body)
            record["sys_updated_on"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
            result = self._fields(record, request)
        return Reply(200, {"result": result})

    def _query(self, request: Recorded) -> Reply:
        query = (request.query.get("sysparm_query") or [""])[0]
        limit = int((request.query.get("sysparm_limit") or ["10000"])[0])
        conditions = []
        for part in query.split("^"):
            if not part or part.startswith(("ORDERBY", "ORDERBYDESC")):
                continue
            name, _, value = part.partition("=")
            conditions.append((name, value))
        with self.lock:
            found = [self._fields(r, request) for r in self.records.values()
                     if all(str(r.get(name, "")) == value for name, value in conditions)]
        return Reply(200, {"result": found[:limit]})

    def _journal(self, request: Recorded) -> Reply:
        """``sys_journal_field`` rows (one per journal entry): ``element_id``, ``element``, ``value``; the query
        supports ``=`` and ``LIKE`` (contains) conditions joined with ``^``."""
        query = (request.query.get("sysparm_query") or [""])[0]
        limit = int((request.query.get("sysparm_limit") or ["10000"])[0])
        with self.lock:
            rows = [{"sys_id": f"{sys_id[:24]}{n:08d}", "element_id": sys_id, "element": element, "value": value}
                    for sys_id, record in self.records.items() for element in JOURNAL_FIELDS
                    for n, value in enumerate(record[element])]
        for part in query.split("^"):
            if not part or part.startswith("ORDERBY"):
                continue
            if "LIKE" in part:
                name, _, value = part.partition("LIKE")
                rows = [r for r in rows if value in str(r.get(name, ""))]
            else:
                name, _, value = part.partition("=")
                rows = [r for r in rows if str(r.get(name, "")) == value]
        return Reply(200, {"result": [self._fields(r, request) for r in rows[:limit]]})

    @staticmethod
    def _apply(record: dict[str, Any], body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key in JOURNAL_FIELDS:
                if value:
                    record[key].append(str(value))
                continue
            text = "" if value is None else str(value)
            size = COLUMN_SIZES.get(key)
            record[key] = text[:size] if size else text

    @staticmethod
    def _fields(record: dict[str, Any], request: Recorded) -> dict[str, Any]:
        wanted = (request.query.get("sysparm_fields") or [""])[0]
        shown = {k: ("\n\n".join(reversed(v)) if k in JOURNAL_FIELDS else v) for k, v in record.items()}
        if not wanted:
            return shown
        return {k: shown.get(k, "") for k in wanted.split(",")}

    # -- assertions ----------------------------------------------------------------------------------------------

    def by_correlation(self, correlation_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.records.values() if r.get("correlation_id") == correlation_id]


def start_servicenow_server(**options: Any) -> tuple[ServiceNowServer, str]:
    """Start a ServiceNow stand-in on a free loopback port; stop it with ``server.stop()``."""
    server = ServiceNowServer(**options)
    return server, server.start()
