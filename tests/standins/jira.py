"""A local stand-in of Jira Cloud REST v3, for tests and the local demo run.

It speaks the contract in ``../shared/reference/sinks.md`` section 6:

* ``POST /rest/api/3/issue`` with ``{"fields": {...}}`` creates an issue and answers 201
  ``{"id", "key", "self"}``. Fields are checked as Jira does for a simple project: ``project.key`` and
  ``issuetype.name`` must exist, ``summary`` is required, one line, at most 255 characters; ``description`` must be
  an Atlassian Document Format document (v3 rejects plain strings) of at most 32 767 characters; ``labels`` carry
  no whitespace; ``priority.name`` must be a configured priority. Errors are 400
  ``{"errorMessages": [...], "errors": {field: message}}``.
* ``POST /rest/api/3/issue/{key}/comment`` with ``{"body": <ADF>}`` answers 201 with the comment; an unknown
  issue is 404.
* ``GET /rest/api/3/issue/{key}/comment`` (``startAt``, ``maxResults``, ``orderBy=-created``) lists comments.
* ``GET /rest/api/3/issue/{key}`` and ``GET /rest/api/3/search/jql?jql=...`` (``labels = "x"`` and
  ``project = "X"`` clauses; ``search_lag`` seconds of eventual consistency can be simulated, on an injectable
  ``clock``; ``search_rate_limit=(n, seconds)`` answers 429 + ``Retry-After`` past n searches per window), while
  the removed ``/rest/api/3/search`` answers 410 Gone.
* Authentication is HTTP Basic ``email:api_token``; anything else is 401.

Failures are scriptable (``fail_next``, ``throttle``, ``fail_after_processing``) and every request is recorded.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any

from ._ticketing_http import Recorded, Reply, StandinServer

DEFAULT_EMAIL = "secops-bot@example.com"
DEFAULT_API_TOKEN = "ATATT3xFfGF0-jira-test-token-5d2a4c4e"
DESCRIPTION_LIMIT = 32_767

_ISSUE_PATH = re.compile(r"^/rest/api/3/issue/([A-Z][A-Z0-9_]*-[0-9]+)$")
_COMMENT_PATH = re.compile(r"^/rest/api/3/issue/([A-Z][A-Z0-9_]*-[0-9]+)/comment$")
_CLAUSE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s"]+))')

# -- ADF -------------------------------------------------------------------------------------------------------

_INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status"}
_BLOCK = {"paragraph", "heading", "bulletList", "orderedList", "codeBlock", "table", "blockquote", "rule", "panel",
          "mediaSingle", "expand"}
_MARKS = {"strong", "em", "code", "strike", "underline", "link", "subsup", "textColor"}


def adf_problems(node: Any, where: str = "doc") -> list[str]:
    """What makes ``node`` an invalid ADF document (empty when valid); the subset of the schema Jira enforces."""
    if not isinstance(node, dict) or node.get("type") != "doc" or node.get("version") != 1:
        return [f"{where}: not an ADF doc (type doc, version 1)"]
    return _children(node, where, _BLOCK)


def _children(node: dict[str, Any], where: str, allowed: set[str], *, required: bool = False) -> list[str]:
    content = node.get("content", [])
    if not isinstance(content, list):
        return [f"{where}.content is not a list"]
    if required and not content:
        return [f"{where}.content must not be empty"]
    problems: list[str] = []
    for i, child in enumerate(content):
        problems.extend(_node(child, f"{where}.content[{i}]", allowed))
    return problems


def _node(node: Any, where: str, allowed: set[str]) -> list[str]:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return [f"{where}: not a node"]
    kind = node["type"]
    if kind not in allowed:
        return [f"{where}: {kind} not allowed here"]
    if kind == "text":
        text = node.get("text")
        if not isinstance(text, str) or not text:
            return [f"{where}: text nodes need non-empty text"]
        marks = node.get("marks", [])
        if not isinstance(marks, list) or any(not isinstance(m, dict) or m.get("type") not in _MARKS for m in marks):
            return [f"{where}: unknown mark"]
        names = {m["type"] for m in marks}
        if "code" in names and names - {"code", "link"}:
            return [f"{where}: the code mark combines only with link"]
        return []
    if kind in ("paragraph", "heading"):
        if kind == "heading" and node.get("attrs", {}).get("level") not in range(1, 7):
            return [f"{where}: heading needs attrs.level 1-6"]
        return _children(node, where, _INLINE)
    if kind in ("bulletList", "orderedList"):
        return _children(node, where, {"listItem"}, required=True)
    if kind == "listItem":
        return _children(node, where, {"paragraph", "bulletList", "orderedList", "codeBlock"}, required=True)
    if kind == "codeBlock":
        problems = _children(node, where, {"text"})
        if any(child.get("marks") for child in node.get("content", []) if isinstance(child, dict)):
            problems.append(f"{where}: codeBlock text takes no marks")
        return problems
    if kind == "table":
        return _children(node, where, {"tableRow"}, required=True)
    if kind == "tableRow":
        return _children(node, where, {"tableHeader", "tableCell"}, required=True)
    if kind in ("tableHeader", "tableCell"):
        return _children(node, where, _BLOCK - {"table"}, required=True)
    if kind in ("blockquote", "panel", "expand"):
        return _children(node, where, _BLOCK, required=True)
    return []


def adf_text(node: Any) -> str:
    """Every text of an ADF node, concatenated (for assertions)."""
    if isinstance(node, dict):
        own = node.get("text", "") if node.get("type") == "text" else ""
        return own + "".join(adf_text(child) for child in node.get("content", []) or [])
    return ""


# -- the server --------------------------------------------------------------------------------------------------


def _error(status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"errorMessages": messages or [], "errors": errors or {}})


class JiraServer(StandinServer):
    """Jira Cloud REST v3 on loopback; ``issues`` maps issue keys to ``{"id", "key", "fields", "comments"}``."""

    def __init__(self, *, email: str = DEFAULT_EMAIL, api_token: str = DEFAULT_API_TOKEN,
                 projects: tuple[str, ...] = ("SEC",), issue_types: tuple[str, ...] = ("Task", "Bug", "Incident"),
                 priorities: tuple[str, ...] = ("Highest", "High", "Medium", "Low", "Lowest"),
                 search_lag: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 search_rate_limit: tuple[int, float] | None = None) -> None:
        super().__init__()
        #: Seconds; injected so a test can move time past ``search_lag`` without sleeping.
        self.clock = clock
        #: (requests, per seconds) allowed on /search/jql; more answer 429 with Retry-After until the window ends.
        self.search_rate_limit = search_rate_limit
        self._search_times: list[float] = []
        self.authorization = "Basic " + base64.b64encode(f"{email}:{api_token}".encode()).decode()
        self.projects = projects
        self.issue_types = issue_types
        self.priorities = priorities
        self.search_lag = search_lag
        self.issues: dict[str, dict[str, Any]] = {}
        self._next_id = 10000
        self._counters: dict[str, int] = {}

    def route(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != self.authorization:
            return Reply(401, {"errorMessages": ["Client must be authenticated to access this resource."],
                               "errors": {}}, {"WWW-Authenticate": 'Basic realm="protected-area"'})
        if request.method == "POST" and not request.headers.get("content-type", "").startswith("application/json"):
            return Reply(415, {"errorMessages": ["Unsupported Media Type"], "errors": {}})
        path = request.path
        if request.method == "POST" and path == "/rest/api/3/issue":
            return self._create(request)
        match = _COMMENT_PATH.match(path)
        if match and request.method == "POST":
            return self._comment(match.group(1), request)
        if match and request.method == "GET":
            with self.lock:
                issue = self.issues.get(match.group(1))
                comments = list(issue["comments"]) if issue is not None else None
            if comments is None:
                return _error(404, ["Issue does not exist or you do not have permission to see it."])
            if (request.query.get("orderBy") or [""])[0] == "-created":
                comments.reverse()
            start = int((request.query.get("startAt") or ["0"])[0])
            limit = int((request.query.get("maxResults") or ["100"])[0])
            return Reply(200, {"startAt": start, "maxResults": limit, "total": len(comments),
                               "comments": comments[start:start + limit]})
        match = _ISSUE_PATH.match(path)
        if match and request.method == "GET":
            with self.lock:
                issue = self.issues.get(match.group(1))
            if issue is None:
                return _error(404, ["Issue does not exist or you do not have permission to see it."])
            return Reply(200, {"id": issue["id"], "key": issue["key"], "fields": issue["fields"]})
        if path == "/rest/api/3/search" and request.method in ("GET", "POST"):
            return _error(410, ["The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                                "API."])
        if path == "/rest/api/3/search/jql" and request.method == "GET":
            return self._search(request)
        return _error(404, [f"No endpoint {request.method} {path}"])

    def _create(self, request: Recorded) -> Reply:
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            return _error(400, ["Request body must be a JSON object with 'fields'"])
        fields = body["fields"]
        errors: dict[str, str] = {}
        project = fields.get("project", {})
        if not isinstance(project, dict) or project.get("key") not in self.projects:
            errors["project"] = "Specify a valid project ID or key"
        issue_type = fields.get("issuetype", {})
        if not isinstance(issue_type, dict) or issue_type.get("name") not in self.issue_types:
            errors["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        elif "\n" in summary or "\r" in summary:
            errors["summary"] = "Field 'summary' cannot contain newline characters."
        description = fields.get("description")
        if description is not None:
            if adf_problems(description):
                errors["description"] = "Operation value must be an Atlassian Document (see the Atlassian " \
                                        "Document Format)"
            elif len(_dumps(description)) > DESCRIPTION_LIMIT:
                errors["description"] = "The entered text is too long. It exceeds the allowed limit of 32,767 " \
                                        "characters."
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or any(not isinstance(x, str) for x in labels):
            errors["labels"] = "labels must be a list of strings"
        else:
            for label in labels:
                if not label or any(ch.isspace() for ch in label):
                    errors["labels"] = f"The label '{label}' contains spaces which is invalid."
                elif len(label) > 255:
                    errors["labels"] = "The label must not exceed 255 characters"
        if "priority" in fields and (not isinstance(fields["priority"], dict)
                                     or fields["priority"].get("name") not in self.priorities):
            errors["priority"] = "Specify the Priority (name) in the string format"
        if errors:
            return _error(400, [], errors)
        with self.lock:
            key_prefix = project["key"]
            self._counters[key_prefix] = self._counters.get(key_prefix, 0) + 1
            key = f"{key_prefix}-{self._counters[key_prefix]}"
            self._next_id += 1
            issue_id = str(self._next_id)
            self.issues[key] = {"id": issue_id, "key": key, "fields": fields, "comments": [],
                                "created": self.clock()}
        return Reply(201, {"id": issue_id, "key": key, "self": f"{self.base_url}/rest/api/3/issue/{issue_id}"})

    def _comment(self, key: str, request: Recorded) -> Reply:
        body = request.json
        if not isinstance(body, dict) or adf_problems(body.get("body")):
            return _error(400, [], {"comment": "Comment body is not valid Atlassian Document Format"})
        if len(_dumps(body["body"])) > DESCRIPTION_LIMIT:
            return _error(400, [], {"comment": "The entered text is too long. It exceeds the allowed limit of "
                                               "32,767 characters."})
        with self.lock:
            issue = self.issues.get(key)
            if issue is None:
                return _error(404, ["Issue does not exist or you do not have permission to see it."])
            self._next_id += 1
            comment = {"id": str(self._next_id), "body": body["body"],
                       "self": f"{self.base_url}/rest/api/3/issue/{issue['id']}/comment/{self._next_id}"}
            issue["comments"].append(comment)
        return Reply(201, comment)

    def _search(self, request: Recorded) -> Reply:
        jql = (request.query.get("jql") or [""])[0]
        clauses = [(m.group(1).lower(), m.group(2) if m.group(2) is not None else m.group(3))
                   for m in _CLAUSE.finditer(jql)]
        limit = int((request.query.get("maxResults") or ["50"])[0])
        now = self.clock()
        if self.search_rate_limit is not None:
            allowed, window = self.search_rate_limit
            with self.lock:
                self._search_times = [t for t in self._search_times if now - t < window]
                if len(self._search_times) >= allowed:
                    wait = window - (now - self._search_times[0])
                    return Reply(429, {"errorMessages": ["Rate limit exceeded."], "errors": {}},
                                 {"Retry-After": str(max(1, int(wait + 0.999)))})
                self._search_times.append(now)
        with self.lock:
            found = []
            for issue in self.issues.values():
                if now - issue["created"] < self.search_lag:
                    continue  # eventually consistent: a new issue is not searchable at once
                ok = True
                for name, value in clauses:
                    if name == "labels" and value not in issue["fields"].get("labels", []):
                        ok = False
                    if name == "project" and issue["fields"]["project"]["key"] != value:
                        ok = False
                if ok:
                    found.append({"id": issue["id"], "key": issue["key"]})
        return Reply(200, {"issues": found[:limit], "isLast": True})

    # -- assertions ----------------------------------------------------------------------------------------------

    def issues_with_label(self, label: str) -> list[dict[str, Any]]:
        with self.lock:
            return [i for i in self.issues.values() if label in i["fields"].get("labels", [])]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def start_jira_server(**options: Any) -> tuple[JiraServer, str]:
    """Start a Jira stand-in on a free loopback port; stop it with ``server.stop()``."""
    server = JiraServer(**options)
    return server, server.start()
