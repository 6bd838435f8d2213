"""A local stand-in of Elasticsearch's ``_bulk`` API (what OpenSearch also speaks), for tests and the demo run.

It speaks the contract in ``../shared/reference/sinks.md`` section 3 and Elastic's bulk documentation:

* ``POST``/``PUT`` ``/_bulk`` and ``/<index>/_bulk`` with ``Content-Type: application/x-ndjson`` (or
  ``application/json``; anything else is 406). The body is NDJSON, action line then source line, and must end
  with a newline (400 ``illegal_argument_exception`` otherwise, the error a double-encoded body produces).
* Auth: ``Authorization: ApiKey <base64(id:api_key)>`` or ``Basic <base64(user:password)>``; none is 401
  "missing authentication credentials", a wrong one 401 "unable to authenticate", both with ``WWW-Authenticate``.
  A key without write privilege gets per-item 403 ``security_exception``, as bulk shard requests are authorized
  per index.
* Answers 200 with ``{"took", "errors", "items"}`` whatever the items did: ``create`` of an existing ``_id`` is a
  409 ``version_conflict_engine_exception`` item; ``index`` overwrites; ``delete`` removes.
* Dynamic mapping, roughly: the first value seen fixes a field's type (``date`` for date-looking strings, as date
  detection does); a later value that does not fit is a 400 ``mapper_parsing_exception`` item; more than 1000
  fields is a 400. Enough to show a document shape that is not stable across findings.
* ``GET /<index>/_doc/<id>``, ``GET``/``POST /<index>/_search`` (all documents) and ``/<index>/_count`` for looking
  at what arrived; ``GET /`` answers like a cluster.

Failures are scriptable: :meth:`ElasticServer.fail_next` for whole requests (429 with ``Retry-After``, 5xx, 400,
401) and :meth:`ElasticServer.fail_items` for items (429 ``es_rejected_execution_exception``, 5xx, 400
``mapper_parsing_exception``). Every request is recorded. Standard library only, no pytest.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import itertools
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_API_KEY_ID = "VuaCfGcBCdbkQm-e5aOx"
DEFAULT_API_KEY = "ui2lp2axTNmsyakw9tvNnw"
FIELD_LIMIT = 1000
_WWW_AUTHENTICATE = 'Basic realm="security" charset="UTF-8", ApiKey'
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')
_ACTIONS = ("create", "index", "update", "delete")

#: Default error bodies for scripted whole-request failures, by HTTP status.
_REQUEST_ERRORS = {
    400: ("illegal_argument_exception", "request rejected by the stand-in"),
    401: ("security_exception", "unable to authenticate with provided credentials and anonymous access is not "
                                "allowed for this request"),
    403: ("security_exception", "action [indices:data/write/bulk] is unauthorized"),
    429: ("es_rejected_execution_exception", "rejected execution of coordinating operation [coordinating_and_"
                                             "primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_"
                                             "operation_bytes=1024, max_coordinating_and_primary_bytes=0]"),
    500: ("exception", "internal error"),
    502: ("exception", "bad gateway"),
    503: ("unavailable_shards_exception", "primary shard is not active Timeout: [1m]"),
    504: ("exception", "gateway timeout"),
}
#: Default item errors for scripted item failures, by HTTP status.
_ITEM_ERRORS = {
    400: ("mapper_parsing_exception", "failed to parse"),
    403: ("security_exception", "action [indices:data/write/bulk[s]] is unauthorized"),
    404: ("index_not_found_exception", "no such index"),
    429: ("es_rejected_execution_exception", "rejected execution of primary operation [coordinating_and_primary_"
                                             "bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=1024"
                                             ", max_coordinating_and_primary_bytes=0]"),
    500: ("exception", "internal error"),
    503: ("unavailable_shards_exception", "primary shard is not active"),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it (headers keyed in lower case)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def ndjson(self) -> list[dict[str, Any]]:
        """The body's lines, parsed."""
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]


@dataclass
class _Injection:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _ItemFailure:
    status: int
    error_type: str
    reason: str
    match: str | None


@dataclass
class _Principal:
    name: str
    write: bool


@dataclass
class _Index:
    uuid: str
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


class ElasticServer(ThreadingHTTPServer):
    """The Elasticsearch stand-in: a threading HTTP server on loopback with thread-safe in-memory indices."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 0), *, allow_explicit_index: bool = True,
                 max_content_length: int = 100 * 1024 * 1024) -> None:
        super().__init__(address, _Handler)
        self.allow_explicit_index = allow_explicit_index
        self.max_content_length = max_content_length
        self._lock = threading.RLock()  # re-entered: item failures are built while the index is locked
        self._api_keys: dict[str, _Principal] = {}
        self._users: dict[str, tuple[str, _Principal]] = {}
        self._indices: dict[str, _Index] = {}
        self._requests: list[RecordedRequest] = []
        self._injections: deque[_Injection] = deque()
        self._item_failures: deque[_ItemFailure] = deque()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    # -- set-up and inspection ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_api_key(self, key_id: str, api_key: str, *, write: bool = True) -> str:
        """Accept an API key; return its encoded form (what ``Authorization: ApiKey`` carries)."""
        encoded = base64.b64encode(f"{key_id}:{api_key}".encode()).decode()
        with self._lock:
            self._api_keys[f"{key_id}:{api_key}"] = _Principal(f"api key {key_id}", write)
        return encoded

    def add_user(self, username: str, password: str, *, write: bool = True) -> None:
        with self._lock:
            self._users[username] = (password, _Principal(username, write))

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | str | None = None,
                  body: str | bytes | None = None, error_type: str | None = None) -> None:
        """Answer the next ``times`` bulk requests with ``status`` (an Elasticsearch error body unless given)."""
        if body is None:
            default_type, reason = _REQUEST_ERRORS.get(status, ("exception", "error"))
            body = json.dumps(_error_body(error_type or default_type, reason, status))
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if status == 401:
            headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._injections.extend(_Injection(status, raw, headers) for _ in range(times))

    def fail_items(self, status: int, *, times: int = 1, error_type: str | None = None, reason: str | None = None,
                   match: str | None = None) -> None:
        """Fail the next ``times`` item operations (only those whose ``_id`` contains ``match``, if given)."""
        default_type, default_reason = _ITEM_ERRORS.get(status, ("exception", "error"))
        with self._lock:
            self._item_failures.extend(_ItemFailure(status, error_type or default_type, reason or default_reason,
                                                    match) for _ in range(times))

    def reset(self) -> None:
        """Forget requests, documents, mappings and scripted failures (credentials stay)."""
        with self._lock:
            self._requests.clear()
            self._indices.clear()
            self._injections.clear()
            self._item_failures.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def bulk_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]

    def documents(self, index: str) -> dict[str, dict[str, Any]]:
        """``{_id: _source}`` of an index (empty when it does not exist)."""
        with self._lock:
            found = self._indices.get(index)
            return {k: json.loads(json.dumps(v)) for k, v in found.docs.items()} if found else {}

    def field_types(self, index: str) -> dict[str, str]:
        """The dynamic mapping the stand-in built: ``{dotted.path: type}``."""
        with self._lock:
            found = self._indices.get(index)
            return dict(found.fields) if found else {}

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> str:
        # A short poll interval so stop() (shutdown) returns at once instead of after serve_forever's 0.5 s tick.
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="elastic-standin",
                                        daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- request handling (called from handler threads) --------------------------------------------------------

    def handle_request_data(self, method: str, target: str, headers: dict[str, str],
                            body: bytes) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, headers, body))
        principal, problem = self._authenticate(headers, path)
        if principal is None:
            return problem
        segments = [unquote(s) for s in path.split("/") if s]
        if segments and segments[-1] == "_bulk" and len(segments) <= 2:
            if method not in ("POST", "PUT"):
                return _json(405, {"error": f"Incorrect HTTP method for uri [{path}] and method [{method}], "
                                            "allowed: [POST, PUT]", "status": 405})
            with self._lock:
                if self._injections:
                    injected = self._injections.popleft()
                    return injected.status, injected.body, injected.headers
            return self._bulk(principal, segments[0] if len(segments) == 2 else None, headers, body)
        if not segments and method in ("GET", "HEAD"):
            return _json(200, {"name": "standin-0", "cluster_name": "chainwatch-standin",
                               "version": {"number": "8.15.0", "build_flavor": "default"},
                               "tagline": "You Know, for Search"})
        if len(segments) == 3 and segments[1] == "_doc" and method == "GET":
            return self._get(segments[0], segments[2])
        if len(segments) == 2 and segments[1] in ("_search", "_count") and method in ("GET", "POST"):
            return self._search(segments[0], count_only=segments[1] == "_count")
        return _json(400, {"error": f"no handler found for uri [{path}] and method [{method}]"})

    def _authenticate(self, headers: dict[str, str],
                      path: str) -> tuple[_Principal | None, tuple[int, bytes, dict[str, str]]]:
        value = headers.get("authorization", "")
        unauthorized = {"WWW-Authenticate": _WWW_AUTHENTICATE}
        if not value:
            reason = f"missing authentication credentials for REST request [{path}]"
            return None, _json(401, _error_body("security_exception", reason, 401), unauthorized)
        scheme, _, credential = value.partition(" ")
        principal: _Principal | None = None
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        with self._lock:
            if scheme == "ApiKey":
                principal = self._api_keys.get(decoded)
            elif scheme == "Basic":
                username, _, password = decoded.partition(":")
                known = self._users.get(username)
                principal = known[1] if known and known[0] == password else None
        if principal is None:
            reason = ("unable to authenticate with provided credentials and anonymous access is not allowed for "
                      "this request")
            return None, _json(401, _error_body("security_exception", reason, 401), unauthorized)
        return principal, (200, b"", {})

    def _bulk(self, principal: _Principal, url_index: str | None, headers: dict[str, str],
              body: bytes) -> tuple[int, bytes, dict[str, str]]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/x-ndjson", "application/json"):
            return _json(406, {"error": f"Content-Type header [{headers.get('content-type', '')}] is not "
                                        "supported", "status": 406})
        if len(body) > self.max_content_length:
            return _json(413, {"error": "Request Entity Too Large", "status": 413})
        if not body.strip():
            return _json(400, _error_body("action_request_validation_exception",
                                          "Validation Failed: 1: no requests added;", 400))
        if not body.endswith(b"\n"):
            return _json(400, _error_body("illegal_argument_exception",
                                          "The bulk request must be terminated by a newline [\\n]", 400))
        try:
            lines = body.decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError:
            return _json(400, _error_body("parse_exception", "invalid UTF-8 in the request body", 400))
        operations: list[tuple[str, dict[str, Any], str | None]] = []
        number = 0
        while number < len(lines):
            line = lines[number]
            number += 1
            if not line.strip():
                continue
            try:
                action = json.loads(line)
            except ValueError:
                return _malformed(number, "expected START_OBJECT but found an unreadable line")
            if not isinstance(action, dict) or len(action) != 1:
                return _malformed(number, "expected one action object")
            name = next(iter(action))
            if name not in _ACTIONS:
                return _malformed(number, f"expected field [create], [delete], [index] or [update] but found "
                                          f"[{name}]")
            meta = action[name] if isinstance(action[name], dict) else {}
            if "_index" in meta and not self.allow_explicit_index:
                return _json(400, _error_body("illegal_argument_exception", "explicit index in bulk is not allowed",
                                              400))
            source_line: str | None = None
            if name != "delete":
                if number >= len(lines):
                    return _json(400, _error_body("action_request_validation_exception",
                                                  "Validation Failed: 1: source is missing;", 400))
                source_line = lines[number]
                number += 1
            if name in ("delete", "update") and meta.get("_id") is None:
                return _json(400, _error_body("action_request_validation_exception",
                                              "Validation Failed: 1: id is missing;", 400))
            operations.append((name, meta, source_line))
        if any(not (meta.get("_index") or url_index) for _, meta, _ in operations):
            return _json(400, _error_body("action_request_validation_exception",
                                          "Validation Failed: 1: index is missing;", 400))
        items = [self._operation(principal, name, meta, source, url_index) for name, meta, source in operations]
        answer = {"took": 2, "errors": any("error" in next(iter(i.values())) for i in items), "items": items}
        return _json(200, answer)

    def _operation(self, principal: _Principal, name: str, meta: dict[str, Any], source_line: str | None,
                   url_index: str | None) -> dict[str, Any]:
        index_name = str(meta.get("_index") or url_index)
        # create/index without an _id get a generated one; delete/update were refused without one.
        doc_id = str(meta["_id"]) if meta.get("_id") is not None else uuid.uuid4().hex[:20]
        base: dict[str, Any] = {"_index": index_name, "_id": doc_id}

        def failed(status: int, error_type: str, reason: str) -> dict[str, Any]:
            with self._lock:
                index_uuid = self._indices[index_name].uuid if index_name in self._indices else "_na_"
            error = {"type": error_type, "reason": reason, "index_uuid": index_uuid, "shard": "0",
                     "index": index_name}
            return {name: {**base, "status": status, "error": error}}

        if not _valid_index(index_name):
            return failed(400, "invalid_index_name_exception",
                          f"Invalid index name [{index_name}], must be lowercase and must not contain "
                          "[\\, /, *, ?, \", <, >, |,  , ,, #, :] or start with [_, -, +]")
        with self._lock:
            scripted = self._next_item_failure(doc_id)
        if scripted is not None:
            return failed(scripted.status, scripted.error_type, scripted.reason)
        if not principal.write:
            return failed(403, "security_exception",
                          f"action [indices:data/write/bulk[s]] is unauthorized for {principal.name} on indices "
                          f"[{index_name}], this action is granted by the index privileges "
                          "[create_doc,create,index,write,all]")
        if name == "update":
            return failed(400, "illegal_argument_exception", "the stand-in does not implement update")
        source: Any = None
        if source_line is not None:
            try:
                source = json.loads(source_line)
            except ValueError:
                return failed(400, "mapper_parsing_exception", "failed to parse")
            if not isinstance(source, dict):
                return failed(400, "mapper_parsing_exception", "failed to parse, document is empty")
        with self._lock:
            index = self._indices.setdefault(index_name, _Index(uuid.uuid4().hex[:22]))
            if name == "delete":
                if index.docs.pop(doc_id, None) is None:
                    return {name: {**base, "_version": 1, "result": "not_found", "status": 404}}
                index.versions[doc_id] += 1
                return {name: {**base, "_version": index.versions[doc_id], "result": "deleted", "status": 200,
                               **_shards(next(self._seq))}}
            exists = doc_id in index.docs
            if name == "create" and exists:
                return failed(409, "version_conflict_engine_exception",
                              f"[{doc_id}]: version conflict, document already exists (current version "
                              f"[{index.versions[doc_id]}])")
            problem, new_fields = _map(source, index.fields, doc_id)
            if problem:
                return failed(400, "mapper_parsing_exception", problem)
            if len(index.fields) + len(new_fields) > FIELD_LIMIT:
                return failed(400, "illegal_argument_exception",
                              f"Limit of total fields [{FIELD_LIMIT}] has been exceeded")
            index.fields.update(new_fields)
            index.docs[doc_id] = source
            index.versions[doc_id] = index.versions.get(doc_id, 0) + 1
            status, result = (200, "updated") if exists else (201, "created")
            return {name: {**base, "_version": index.versions[doc_id], "result": result, "status": status,
                           **_shards(next(self._seq))}}

    def _next_item_failure(self, doc_id: str | None) -> _ItemFailure | None:
        for position, failure in enumerate(self._item_failures):
            if failure.match is None or (doc_id is not None and failure.match in doc_id):
                del self._item_failures[position]
                return failure
        return None

    def _get(self, index_name: str, doc_id: str) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            index = self._indices.get(index_name)
            if index is None:
                return _json(404, _error_body("index_not_found_exception", f"no such index [{index_name}]", 404))
            source = index.docs.get(doc_id)
            if source is None:
                return _json(404, {"_index": index_name, "_id": doc_id, "found": False})
            return _json(200, {"_index": index_name, "_id": doc_id, "_version": index.versions[doc_id],
                               "found": True, "_source": source})

    def _search(self, pattern: str, *, count_only: bool) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            names = [n for n in self._indices if fnmatch.fnmatchcase(n, pattern)]
            if not names and "*" not in pattern:
                return _json(404, _error_body("index_not_found_exception", f"no such index [{pattern}]", 404))
            hits = [{"_index": n, "_id": i, "_score": 1.0, "_source": d}
                    for n in names for i, d in self._indices[n].docs.items()]
        if count_only:
            return _json(200, {"count": len(hits)})
        return _json(200, {"took": 1, "timed_out": False,
                           "hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits}})


def _valid_index(name: str) -> bool:
    return (bool(name) and name == name.lower() and not (_BAD_INDEX_CHARS & set(name))
            and not name.startswith(("_", "-", "+")) and name not in (".", "..") and len(name.encode()) <= 255)


def _leaf_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "date" if _DATE.match(value) else "keyword"
    return "object"


def _fits(kind: str, value: Any) -> bool:
    """Whether a value of a new document fits a field already mapped as ``kind`` (ES coerces a little)."""
    if kind == "object":
        return isinstance(value, dict)
    if isinstance(value, dict):
        return False
    if kind == "keyword":
        return True
    if kind == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if kind in ("long", "float"):
        if isinstance(value, bool):
            return False
        if isinstance(value, int | float):
            return True
        try:
            float(value)
        except (TypeError, ValueError):
            return False
        return True
    if kind == "date":
        if isinstance(value, str):
            return bool(_DATE.match(value))
        return isinstance(value, int) and not isinstance(value, bool)  # epoch milliseconds
    return True


def _map(source: Any, known: dict[str, str], doc_id: str) -> tuple[str | None, dict[str, str]]:
    """(mapping error or ``None``, new fields) for one document against an index's dynamic mapping."""
    new: dict[str, str] = {}

    def walk(value: Any, path: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, list):
            for item in value:
                problem = walk(item, path)
                if problem:
                    return problem
            return None
        kind = known.get(path) or new.get(path)
        if kind is None:
            new[path] = _leaf_type(value)
        elif not _fits(kind, value):
            preview = json.dumps(value)[:40]
            if kind == "object":
                return (f"object mapping for [{path}] tried to parse field [{path.rsplit('.', 1)[-1]}] as object, "
                        "but found a concrete value")
            return (f"failed to parse field [{path}] of type [{kind}] in document with id '{doc_id}'. "
                    f"Preview of field's value: '{preview}'")
        if isinstance(value, dict):
            for key, item in value.items():
                problem = walk(item, f"{path}.{key}" if path else str(key))
                if problem:
                    return problem
        return None

    for key, item in (source or {}).items():
        problem = walk(item, str(key))
        if problem:
            return problem, {}
    return None, new


def _shards(seq_no: int) -> dict[str, Any]:
    return {"_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": seq_no, "_primary_term": 1}


def _error_body(error_type: str, reason: str, status: int) -> dict[str, Any]:
    cause = {"type": error_type, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def _malformed(line: int, what: str) -> tuple[int, bytes, dict[str, str]]:
    return _json(400, _error_body("illegal_argument_exception", f"Malformed action/metadata line [{line}], {what}",
                                  400))


def _json(status: int, value: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(value).encode(), dict(headers or {})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ElasticServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read the recorded requests instead

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.server.handle_request_data(self.command, self.path, headers, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("X-elastic-product", "Elasticsearch")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_POST = _serve
    do_PUT = _serve
    do_GET = _serve
    do_HEAD = _serve
    do_DELETE = _serve


def start_elastic_server(*, api_key: tuple[str, str] | None = (DEFAULT_API_KEY_ID, DEFAULT_API_KEY),
                         basic: tuple[str, str] | None = None,
                         allow_explicit_index: bool = True) -> tuple[ElasticServer, str]:
    """Start an Elasticsearch stand-in on 127.0.0.1 (a free port) with the given credentials; return it and its
    base URL."""
    server = ElasticServer(allow_explicit_index=allow_explicit_index)
    if api_key is not None:
        server.add_api_key(*api_key)
    if basic is not None:
        server.add_user(*basic)
    return server, server.start()


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.standins.elastic
    es, url = start_elastic_server()
    encoded = base64.b64encode(f"{DEFAULT_API_KEY_ID}:{DEFAULT_API_KEY}".encode()).decode()
    print(f"Elasticsearch stand-in at {url} (Authorization: ApiKey {encoded}); Ctrl-C stops it")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        es.stop()
