"""The HTTP plumbing shared by the ticketing stand-ins (Jira, ServiceNow, PagerDuty).

:class:`StandinServer` is a :class:`http.server.ThreadingHTTPServer` on ``127.0.0.1`` (port 0) that records
every request and lets a test script failures ahead of the vendor logic:

* :meth:`StandinServer.fail_next` answers the next N matching requests with a status, body and headers (429 with
  ``Retry-After``, 5xx, 400 with a body, 401) without touching the vendor state;
* :meth:`StandinServer.fail_after_processing` lets the vendor act on the next N requests, then answers with a
  status, or drops the connection when ``status`` is ``None`` (a reply lost after the ticket was created).

Vendors subclass it and implement :meth:`StandinServer.route`. Standard library only, no pytest: the local demo
run imports the stand-ins too.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: Larger bodies are refused with 413 before they are read.
MAX_BODY = 8 * 1024 * 1024


@dataclass
class Recorded:
    """One request as the stand-in received it (header names lower-cased) and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int | None = None

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON, bytes/str -> as is, None -> empty
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", "application/json"
        if isinstance(self.body, bytes):
            return self.body, "text/plain; charset=utf-8"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


@dataclass
class _Script:
    reply: Reply | None  # None with after=True: drop the connection
    remaining: int
    after: bool = False
    path: str | None = None
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or path.startswith(self.path))


@dataclass
class _Gate:
    method: str
    path: str
    remaining: int
    barrier: threading.Barrier


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandinServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read server.requests instead

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(Reply(413, {"error": "request entity too large"}))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        request = Recorded(method, split.path, parse_qs(split.query),
                           {k.lower(): v for k, v in self.headers.items()}, body)
        self.server.record(request)
        self.server.wait_at_gate(method, split.path)
        script = self.server.take_script(method, split.path)
        if script is not None and not script.after and script.reply is not None:
            request.status = script.reply.status
            self._send(script.reply)
            return
        reply = self.server.route(request)
        if script is not None and script.after:
            if script.reply is None:
                # The vendor acted, the client never hears back.
                request.status = None
                self.close_connection = True
                return
            reply = script.reply
        request.status = reply.status
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        data, content_type = reply.encoded()
        self.send_response(reply.status)
        headers = {"Content-Type": content_type, **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class StandinServer(ThreadingHTTPServer):
    """A vendor stand-in on loopback; subclasses implement :meth:`route` over thread-safe state."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self._scripts: deque[_Script] = deque()
        self._gates: list[_Gate] = []
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- life cycle ----------------------------------------------------------------------------------------------

    def start(self) -> str:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- scripting -----------------------------------------------------------------------------------------------

    def fail_next(self, status: int, *, count: int = 1, body: Any = None, headers: dict[str, str] | None = None,
                  path: str | None = None, method: str | None = None) -> None:
        """Answer the next ``count`` matching requests with this reply, without acting on them."""
        with self.lock:
            self._scripts.append(_Script(Reply(status, body, dict(headers or {})), count, False, path, method))

    def fail_after_processing(self, status: int | None = None, *, count: int = 1, body: Any = None,
                              path: str | None = None, method: str | None = None) -> None:
        """Act on the next ``count`` matching requests, then answer ``status`` (``None``: drop the connection)."""
        reply = Reply(status, body) if status is not None else None
        with self.lock:
            self._scripts.append(_Script(reply, count, True, path, method))

    def throttle(self, count: int, retry_after: float | None, *, body: Any = None, path: str | None = None) -> None:
        """``count`` x 429, with ``Retry-After`` when given."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        self.fail_next(429, count=count, body=body, headers=headers, path=path)

    def gate(self, method: str, path: str, parties: int, *, timeout: float = 10.0) -> None:
        """Hold the next ``parties`` matching requests until all of them have arrived, then answer them together.

        How a test makes concurrent workers interleave for certain (both look a ticket up before either creates
        it) without touching their code; a party that never comes breaks the gate after ``timeout`` seconds.
        """
        with self.lock:
            self._gates.append(_Gate(method, path, parties, threading.Barrier(parties, timeout=timeout)))

    def wait_at_gate(self, method: str, path: str) -> None:
        with self.lock:
            gate = next((g for g in self._gates if g.remaining > 0 and g.method == method
                         and path.startswith(g.path)), None)
            if gate is None:
                return
            gate.remaining -= 1
            if gate.remaining == 0:
                self._gates.remove(gate)
        try:
            gate.barrier.wait()
        except threading.BrokenBarrierError:
            return  # a party never came: answer anyway (the test's assertions then say what went wrong)

    def take_script(self, method: str, path: str) -> _Script | None:
        with self.lock:
            for script in self._scripts:
                if script.matches(method, path):
                    script.remaining -= 1
                    if script.remaining <= 0:
                        self._scripts.remove(script)
                    return script
        return None

    def clear_scripts(self) -> None:
        with self.lock:
            self._scripts.clear()

    # -- recording -----------------------------------------------------------------------------------------------

    def record(self, request: Recorded) -> None:
        with self.lock:
            self.requests.append(request)

    def requests_to(self, method: str, path_prefix: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- vendor logic --------------------------------------------------------------------------------------------

    def route(self, request: Recorded) -> Reply:
        raise NotImplementedError
