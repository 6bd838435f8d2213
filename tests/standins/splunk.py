"""A local stand-in of the Splunk HTTP Event Collector (HEC), for tests and the local demo run.

It speaks the contract in ``../shared/reference/sinks.md`` section 2:

* ``POST /services/collector/event`` (also ``/services/collector`` and ``/services/collector/event/1.0``) with
  ``Authorization: Splunk <token>``; the body is one or more concatenated JSON objects (whitespace between them
  allowed, a JSON array is not a batch); ``Content-Encoding: gzip`` is accepted.
* Answers ``{"text": ..., "code": N}`` with HEC's codes and HTTP statuses: 0 success (200), 1 token disabled
  (403), 2 token required (401), 3 invalid authorization (401), 4 invalid token (403), 5 no data (400), 6 invalid
  data format (400), 7 incorrect index (400), 8 internal error (500), 9 server busy (503), 10/11 channel missing
  or invalid (400), 12/13 event field required/blank (400), 15 error in handling indexed fields (400). Per-event
  errors carry ``invalid-event-number`` (zero-based).
* Events before an invalid one are kept and the rest dropped (how HEC is commonly described to behave; the
  reference does not say). ``GET /services/collector/health`` answers code 17.
* **Indexer acknowledgement**, per token (``use_ack``): every event request needs a channel
  (``X-Splunk-Request-Channel`` header or ``?channel=``; missing: 400 code 10 "Data channel is missing"; not a GUID:
  400 code 11) and its success carries an ``ackId`` (per channel, from 0). ``POST /services/collector/ack`` with
  ``{"acks": [ids]}`` answers ``{"acks": {"<id>": bool}}``: false until the stand-in has indexed that request (by
  default after the ack has been asked about once, see ``index_after_queries``; :meth:`SplunkHecServer.hold_indexing`
  keeps every ack false until :meth:`SplunkHecServer.index_pending`), false for an id it does not know, and an ack
  reported true is forgotten (asked again, it is false). The ack mechanics come from secondary sources (NiFi's
  QuerySplunkIndexingStatus docs: "Splunk serves information only about successful acknowledgement. In every other
  case it will return a value of false ... unknown acknowledgement identifiers"); forgetting a reported ack is an
  inference, the strictest reading. A token without ack answers the ack endpoint with 400 code 14.

Failures are scriptable (:meth:`SplunkHecServer.fail_next` with ``path`` for the event or the ack endpoint,
:meth:`SplunkHecServer.drop_response_after_indexing`, :meth:`SplunkHecServer.reject_events_containing`) and every
request is recorded. Standard library only, no pytest: the demo run imports it too.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_TOKEN = "8c1f0b7e-5d2a-4c4e-9f4b-2e6d1c0a9b31"
EVENT_PATHS = frozenset({"/services/collector/event", "/services/collector", "/services/collector/event/1.0"})
HEALTH_PATHS = frozenset({"/services/collector/health", "/services/collector/health/1.0"})
ACK_PATHS = frozenset({"/services/collector/ack", "/services/collector/ack/1.0"})

#: HEC reply code -> (HTTP status, text), from the SplunkAdmins reply-code lookup quoted in the reference.
REPLIES: dict[int, tuple[int, str]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    17: (200, "HEC is healthy"),
}
#: The HEC code a scripted failure of a given HTTP status answers with, unless the script names one.
_CODE_FOR_STATUS = {400: 6, 401: 2, 403: 4, 500: 8, 503: 9, 429: 9}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_META_KEYS = ("host", "source", "sourcetype", "index")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it (headers keyed in lower case; body after gzip decoding)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Token:
    """A HEC token: which indexes it may write (``None``: any), its default index, state and ack setting."""

    value: str
    indexes: frozenset[str] | None = None
    default_index: str = "main"
    disabled: bool = False
    use_ack: bool = False


@dataclass
class _Injection:
    status: int  # 0: act on the request, then drop the connection without an answer
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: ``"event"``, ``"ack"`` or ``None`` (either endpoint).
    endpoint: str | None = None

    def matches(self, path: str) -> bool:
        if self.endpoint == "event":
            return path in EVENT_PATHS
        if self.endpoint == "ack":
            return path in ACK_PATHS
        return path in EVENT_PATHS or path in ACK_PATHS


@dataclass
class _Ack:
    """One acknowledgement: whether its request is indexed yet and how often a client asked about it."""

    indexed: bool = False
    queries: int = 0


#: Returned by :meth:`SplunkHecServer.handle_request_data` for "close the connection without answering".
DROP = -1


class SplunkHecServer(ThreadingHTTPServer):
    """The HEC stand-in: a threading HTTP server on loopback with thread-safe in-memory state."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        super().__init__(address, _Handler)
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._requests: list[RecordedRequest] = []
        self._events: list[dict[str, Any]] = []
        self._injections: deque[_Injection] = deque()
        self._rejects: list[str] = []
        self._next_ack: dict[tuple[str, str], int] = {}
        self._acks: dict[tuple[str, str], dict[int, _Ack]] = {}
        #: An ack turns true once it has been asked about this many times (0: at once); ``None``: only
        #: :meth:`index_pending` indexes.
        self.index_after_queries: int | None = 1
        self._thread: threading.Thread | None = None

    # -- set-up and inspection ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_token(self, value: str, *, indexes: list[str] | None = None, default_index: str = "main",
                  disabled: bool = False, use_ack: bool = False) -> None:
        """Accept ``value`` as a token (restricted to ``indexes`` when given)."""
        with self._lock:
            self._tokens[value] = Token(value, frozenset(indexes) if indexes is not None else None, default_index,
                                        disabled, use_ack)

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | str | None = None,
                  code: int | None = None, body: str | bytes | None = None,
                  headers: dict[str, str] | None = None, path: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (HEC's body for it unless ``body`` is given).

        ``path`` limits the failure to the ``"event"`` or the ``"ack"`` endpoint (default: whichever comes next).
        """
        if body is None:
            hec_code = code if code is not None else _CODE_FOR_STATUS.get(status, 8)
            text = REPLIES.get(hec_code, (status, "Error"))[1]
            body = json.dumps({"text": text, "code": hec_code})
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._injections.extend(_Injection(status, raw, extra, path) for _ in range(times))

    def drop_response_after_indexing(self, *, times: int = 1, path: str = "event") -> None:
        """Act on the next ``times`` requests to ``path`` (``"event"`` or ``"ack"``), then close the connection
        without answering: the reply lost in transit after HEC took the events (or reported an ack)."""
        with self._lock:
            self._injections.extend(_Injection(DROP, b"", {}, path) for _ in range(times))

    def hold_indexing(self) -> None:
        """Keep every ack false (a slow or stuck indexer) until :meth:`index_pending`."""
        with self._lock:
            self.index_after_queries = None

    def index_pending(self) -> None:
        """Index every request accepted so far: their acks read true (once)."""
        with self._lock:
            for acks in self._acks.values():
                for ack in acks.values():
                    ack.indexed = True

    def pending_acks(self) -> dict[str, list[int]]:
        """Channel -> ack ids not yet reported true (for assertions)."""
        with self._lock:
            return {channel: sorted(acks) for (_, channel), acks in self._acks.items() if acks}

    def reject_events_containing(self, needle: str) -> None:
        """Treat any event whose JSON text contains ``needle`` as invalid data (code 6, with its number)."""
        with self._lock:
            self._rejects.append(needle)

    def reset(self) -> None:
        """Forget requests, events and scripted failures (tokens stay)."""
        with self._lock:
            self._requests.clear()
            self._events.clear()
            self._injections.clear()
            self._rejects.clear()
            self._acks.clear()
            self._next_ack.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Stored envelopes (``index`` filled in with the token's default when the event named none)."""
        with self._lock:
            return [dict(e) for e in self._events]

    def event_requests(self) -> list[RecordedRequest]:
        """Recorded requests to an event endpoint."""
        return [r for r in self.requests if r.path in EVENT_PATHS]

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> str:
        """Serve in a daemon thread; return the base URL."""
        # A short poll interval so stop() (shutdown) returns at once instead of after serve_forever's 0.5 s tick.
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="splunk-hec-standin",
                                        daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and close the socket."""
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
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                with self._lock:
                    self._requests.append(RecordedRequest(method, path, query, headers, body))
                return _reply(6)
        drop = False
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, headers, body))
            injected = next((i for i in self._injections if i.matches(path)), None)
            if injected is not None:
                self._injections.remove(injected)
                if injected.status != DROP:
                    return injected.status, injected.body, injected.headers
                drop = True
        status, payload, extra = self._answer(method, path, query, headers, body)
        return (DROP, b"", {}) if drop else (status, payload, extra)

    def _answer(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if path in HEALTH_PATHS:
            return _reply(17) if method == "GET" else _not_found(405, "Method Not Allowed")
        if path not in EVENT_PATHS and path not in ACK_PATHS:
            return _not_found(404, "The requested URL was not found on this server.")
        if method != "POST":
            return _not_found(405, "Method Not Allowed")
        token, problem = self._authenticate(headers)
        if token is None:
            return _reply(problem)
        channel = headers.get("x-splunk-request-channel") or (query.get("channel") or [""])[0]
        if path in ACK_PATHS:
            return self._ack(token, channel, body)
        if token.use_ack:
            if not channel:
                return _reply(10)
            if not _GUID.match(channel):
                return _reply(11)
        return self._ingest(token, channel, body)

    def _authenticate(self, headers: dict[str, str]) -> tuple[Token | None, int]:
        value = headers.get("authorization")
        if not value:
            return None, 2
        scheme, _, credential = value.partition(" ")
        if scheme != "Splunk" or not credential.strip():
            return None, 3
        with self._lock:
            token = self._tokens.get(credential.strip())
        if token is None:
            return None, 4
        if token.disabled:
            return None, 1
        return token, 0

    def _ingest(self, token: Token, channel: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _reply(6, invalid=0)
        if not text.strip():
            return _reply(5)
        decoder = json.JSONDecoder()
        accepted: list[dict[str, Any]] = []
        position, number = 0, 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text):
                break
            try:
                item, end = decoder.raw_decode(text, position)
            except ValueError:
                return self._partial(accepted, 6, number)
            raw = text[position:end]
            position = end
            problem = self._check(token, item, raw)
            if problem:
                return self._partial(accepted, problem, number)
            stored = dict(item)
            stored.setdefault("index", token.default_index)
            stored.setdefault("sourcetype", "httpevent")
            if channel:
                stored["_channel"] = channel
            accepted.append(stored)
            number += 1
        with self._lock:
            self._events.extend(accepted)
            if token.use_ack:
                key = (token.value, channel)
                ack_id = self._next_ack.get(key, 0)
                self._next_ack[key] = ack_id + 1
                self._acks.setdefault(key, {})[ack_id] = _Ack()
                return 200, json.dumps({"text": "Success", "code": 0, "ackId": ack_id}).encode(), {}
        return _reply(0)

    def _partial(self, accepted: list[dict[str, Any]], code: int, number: int) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self._events.extend(accepted)
        return _reply(code, invalid=number)

    def _check(self, token: Token, item: Any, raw: str) -> int:
        """The HEC code that rejects one envelope, or 0."""
        if not isinstance(item, dict):
            return 6
        if "event" not in item:
            return 12
        event = item["event"]
        if event is None or (isinstance(event, str) and not event.strip()):
            return 13
        when = item.get("time")
        if when is not None and not isinstance(when, bool):
            try:
                float(when)
            except (TypeError, ValueError):
                return 6
        elif isinstance(when, bool):
            return 6
        for key in _META_KEYS:
            if key in item and not isinstance(item[key], str):
                return 6
        index = item.get("index")
        if index is not None and token.indexes is not None and index not in token.indexes:
            return 7
        fields = item.get("fields")
        if fields is not None:
            if not isinstance(fields, dict):
                return 15
            for value in fields.values():
                values = value if isinstance(value, list) else [value]
                if any(isinstance(v, dict | list) for v in values):
                    return 15
        with self._lock:
            rejects = list(self._rejects)
        if any(needle in raw for needle in rejects):
            return 6
        return 0

    def _ack(self, token: Token, channel: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if not token.use_ack:
            return _reply(14)
        if not channel:
            return _reply(10)
        if not _GUID.match(channel):
            return _reply(11)
        try:
            asked = json.loads(body or b"{}").get("acks")
        except (ValueError, AttributeError):
            return _reply(6)
        if not isinstance(asked, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in asked):
            return _reply(6)
        answer: dict[str, bool] = {}
        with self._lock:
            acks = self._acks.get((token.value, channel), {})
            for ack_id in asked:
                ack = acks.get(ack_id)
                if ack is None:
                    answer[str(ack_id)] = False  # unknown, or already reported
                    continue
                if self.index_after_queries is not None and ack.queries >= self.index_after_queries:
                    ack.indexed = True
                ack.queries += 1
                answer[str(ack_id)] = ack.indexed
                if ack.indexed:
                    del acks[ack_id]
        return 200, json.dumps({"acks": answer}).encode(), {}


def _reply(code: int, *, invalid: int | None = None) -> tuple[int, bytes, dict[str, str]]:
    status, text = REPLIES[code]
    body: dict[str, Any] = {"text": text, "code": code}
    if invalid is not None:
        body["invalid-event-number"] = invalid
    return status, json.dumps(body).encode(), {}


def _not_found(status: int, text: str) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"text": text, "code": status}).encode(), {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' session expects
    server: SplunkHecServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read the recorded requests instead

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.server.handle_request_data(self.command, self.path, headers, body)
        if status == DROP:
            self.close_connection = True  # the request was acted on; the client never hears back
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    do_POST = _serve
    do_GET = _serve
    do_PUT = _serve
    do_DELETE = _serve


def start_splunk_server(token: str = DEFAULT_TOKEN, *, indexes: list[str] | None = None,
                        use_ack: bool = False) -> tuple[SplunkHecServer, str]:
    """Start a HEC stand-in on 127.0.0.1 (a free port) accepting ``token``; return it and its base URL."""
    server = SplunkHecServer()
    server.add_token(token, indexes=indexes, use_ack=use_ack)
    return server, server.start()


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.standins.splunk
    hec, url = start_splunk_server()
    print(f"Splunk HEC stand-in at {url}/services/collector/event (token {DEFAULT_TOKEN}); Ctrl-C stops it")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hec.stop()
