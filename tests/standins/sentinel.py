"""A local stand-in of Microsoft Sentinel's ingestion path: the Entra ID token endpoint and the Azure Monitor Logs
Ingestion API, for tests and the local demo run.

It speaks the contract in ``../shared/reference/sinks.md`` section 5 and Microsoft Learn ("Logs Ingestion API in
Azure Monitor", "Microsoft identity platform and the OAuth 2.0 client credentials flow"):

* ``POST /{tenant}/oauth2/v2.0/token`` with a form body ``grant_type=client_credentials``, ``client_id``,
  ``client_secret`` and ``scope`` (``https://monitor.azure.com//.default`` or ``https://monitor.azure.com/.default``)
  answers 200 ``{"token_type": "Bearer", "expires_in": N, "ext_expires_in": N, "access_token": ...}``. Errors use
  Entra's shape ``{"error", "error_description", "error_codes"}``: an unknown tenant is 400 ``invalid_request``
  (AADSTS90002), an unknown client 400 ``unauthorized_client`` (AADSTS700016), a wrong secret 401
  ``invalid_client`` (AADSTS7000215), a wrong scope 400 ``invalid_scope`` (AADSTS70011), another grant 400
  ``unsupported_grant_type``.
* ``POST /dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01`` with
  ``Authorization: Bearer <token>`` (a token this server issued, not expired and not revoked: 401 otherwise),
  ``Content-Type: application/json`` (415 otherwise), a body of at most ``max_bytes`` (1 MB by default: 413
  ``ContentLengthLimitExceeded``), optionally gzip (``Content-Encoding: gzip``). Answers 204 with no body.
  An unknown DCR is 404, an unknown stream 400 ``InvalidStream``, a body that is not JSON 400 ``InvalidContent``;
  a JSON body that is **not an array** answers 204 and keeps nothing (the documented trap), recorded as dropped.
* Errors of the ingestion endpoint are ``{"error": {"code", "message"}}``.

Failures are scriptable (:meth:`SentinelServer.fail_next` with ``Retry-After``, :meth:`SentinelServer.revoke`),
every request is recorded with its headers, and accepted rows are kept. Standard library only, no pytest.
"""

from __future__ import annotations

import gzip
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "6a3f1c2e-9b4d-4e8a-a1f0-3c5d7e9b2a14"
CLIENT_SECRET = "Qx8~kT2.vN5rL9wZ_eS3pH7mB1cJ4dF6gA0yU"
DCR_ID = "dcr-5d3b0e7f4a2c4b9e8f1a6c3d2e1f0a9b"
STREAM = "Custom-ChainwatchFindings_CL"
API_VERSION = "2023-01-01"
SCOPES = frozenset({"https://monitor.azure.com//.default", "https://monitor.azure.com/.default"})
MAX_BYTES = 1_048_576


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received (headers keyed in lower case; body after gzip decoding)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class _Injection:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class SentinelServer(ThreadingHTTPServer):
    """Token endpoint and Logs Ingestion API on one loopback server, with thread-safe in-memory state."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 0), *, max_bytes: int = MAX_BYTES,
                 expires_in: int = 3599) -> None:
        super().__init__(address, _Handler)
        self._lock = threading.Lock()
        self.tenant, self.client_id, self.client_secret = TENANT, CLIENT_ID, CLIENT_SECRET
        self.dcrs: dict[str, set[str]] = {DCR_ID: {STREAM}}
        self.max_bytes = max_bytes
        self.expires_in = expires_in
        self._tokens: dict[str, float] = {}
        self._requests: list[RecordedRequest] = []
        self._rows: list[dict[str, Any]] = []
        self._dropped: list[Any] = []
        self._injections: deque[_Injection] = deque()
        self._token_injections: deque[_Injection] = deque()
        self._thread: threading.Thread | None = None

    # -- set-up and inspection ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | str | None = None,
                  code: str = "TooManyRequests", token_endpoint: bool = False) -> None:
        """Answer the next ``times`` ingestion (or token) requests with ``status``."""
        body = json.dumps({"error": {"code": code, "message": f"scripted {status}"}}).encode()
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            target = self._token_injections if token_endpoint else self._injections
            target.extend(_Injection(status, body, dict(headers)) for _ in range(times))

    def revoke(self) -> None:
        """Invalidate every token issued so far (the next ingestion call with one answers 401)."""
        with self._lock:
            self._tokens.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/oauth2/v2.0/token")]

    def ingestion_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith("/dataCollectionRules/")]

    @property
    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._rows]

    @property
    def dropped(self) -> list[Any]:
        """Bodies answered 204 but not kept (JSON that is not an array)."""
        with self._lock:
            return list(self._dropped)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> str:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sentinel-standin", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- request handling --------------------------------------------------------------------------------------

    def handle_request_data(self, method: str, target: str, headers: dict[str, str],
                            body: bytes) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query)
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return _error(400, "InvalidContent", "the gzip body cannot be decompressed")
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, headers, body))
        if path.endswith("/oauth2/v2.0/token"):
            with self._lock:
                injected = self._token_injections.popleft() if self._token_injections else None
            if injected is not None:
                return injected.status, injected.body, injected.headers
            return self._token(method, path, headers, body)
        if path.startswith("/dataCollectionRules/"):
            with self._lock:
                injected = self._injections.popleft() if self._injections else None
            if injected is not None:
                return injected.status, injected.body, injected.headers
            return self._ingest(method, path, query, headers, body)
        return _error(404, "NotFound", "no such resource")

    def _token(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if method != "POST":
            return _entra(405, "invalid_request", "AADSTS900561", "The endpoint only accepts POST requests.")
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _entra(400, "invalid_request", "AADSTS900144",
                          "The request body must contain the following parameter: 'grant_type'.")
        tenant = unquote(path.split("/")[1])
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if tenant != self.tenant:
            return _entra(400, "invalid_request", "AADSTS90002", f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _entra(400, "unsupported_grant_type", "AADSTS70003", "The app requested an unsupported grant.")
        if form.get("client_id") != self.client_id:
            return _entra(400, "unauthorized_client", "AADSTS700016",
                          f"Application with identifier '{form.get('client_id')}' was not found.")
        if form.get("client_secret") != self.client_secret:
            return _entra(401, "invalid_client", "AADSTS7000215", "Invalid client secret provided.")
        if form.get("scope") not in SCOPES:
            return _entra(400, "invalid_scope", "AADSTS70011", "The provided value for 'scope' is not valid.")
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.expires_in
        reply = {"token_type": "Bearer", "expires_in": self.expires_in, "ext_expires_in": self.expires_in,
                 "access_token": token}
        return 200, json.dumps(reply).encode(), {}

    def _ingest(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                body: bytes) -> tuple[int, bytes, dict[str, str]]:
        segments = path.split("/")
        if method != "POST" or len(segments) != 5 or segments[3] != "streams":
            return _error(404, "NotFound", "no such resource")
        dcr, stream = unquote(segments[2]), unquote(segments[4])
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self._lock:
            expires = self._tokens.get(token.strip()) if scheme == "Bearer" else None
        if expires is None or expires < time.monotonic():
            return _error(401, "InvalidToken", "The access token is missing, invalid or expired.",
                          {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com"'})
        if query.get("api-version") != [API_VERSION]:
            return _error(400, "InvalidApiVersion", "api-version must be 2023-01-01")
        if dcr not in self.dcrs:
            return _error(404, "DataCollectionRuleNotFound", f"Data collection rule {dcr} not found.")
        if stream not in self.dcrs[dcr]:
            return _error(400, "InvalidStream", f"Stream {stream} is not declared in the DCR.")
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "UnsupportedMediaType", "Content-Type must be application/json")
        if len(body) > self.max_bytes:
            return _error(413, "ContentLengthLimitExceeded",
                          f"Maximum request body size is {self.max_bytes} bytes; got {len(body)}.")
        try:
            data = json.loads(body)
        except ValueError:
            return _error(400, "InvalidContent", "The request body is not valid JSON.")
        with self._lock:
            if isinstance(data, list) and all(isinstance(row, dict) for row in data):
                self._rows.extend(data)
            else:
                self._dropped.append(data)
        return 204, b"", {}


def _error(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"error": {"code": code, "message": message}}).encode(), dict(headers or {})


def _entra(status: int, error: str, code: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    number = int(code.removeprefix("AADSTS"))
    body = {"error": error, "error_description": f"{code}: {message}", "error_codes": [number],
            "timestamp": "2025-09-18 14:03:12Z", "trace_id": "0c4f7e1a-1b2c-4d5e-8f90-a1b2c3d4e5f6"}
    return status, json.dumps(body).encode(), {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SentinelServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.server.handle_request_data(self.command, self.path, headers, body)
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_POST = _serve
    do_GET = _serve


def start_sentinel_server(*, max_bytes: int = MAX_BYTES, expires_in: int = 3599) -> tuple[SentinelServer, str]:
    """Start the stand-in on 127.0.0.1 (a free port); return it and its base URL (authority and endpoint both)."""
    server = SentinelServer(max_bytes=max_bytes, expires_in=expires_in)
    return server, server.start()
