"""``chainwatch local``: the whole pipeline on the embedded ThreadedMotoServer, as the README's main command runs it.

Stream -> correlate handler -> DynamoDB state and outbox -> outbox stream -> dispatch handler -> file sink, with the
real handlers fed the real event shapes. The server must be gone afterwards (its port refuses connections, its
thread has ended) and a second run in the same process must work like the first.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import moto.server
import orjson
import pytest

from chainwatch.app.cli import main

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


class _RecordingServer(moto.server.ThreadedMotoServer):
    """The real server, remembering where it listened and its thread (to check both are gone afterwards)."""

    started: list[_RecordingServer] = []

    def start(self) -> None:
        super().start()
        _RecordingServer.started.append(self)


@dataclass(frozen=True)
class LocalRun:
    code: int
    stdout: str
    stderr: str
    delivered: list[dict[str, Any]]
    address: tuple[str, int]
    thread: threading.Thread | None
    seconds: float


def _run(out_dir: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> LocalRun:
    monkeypatch.setattr(moto.server, "ThreadedMotoServer", _RecordingServer)
    _RecordingServer.started.clear()
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["local", "--root", str(ROOT), "--out-dir", str(out_dir), *extra])
    seconds = time.monotonic() - started
    (server,) = _RecordingServer.started
    sink_file = out_dir / "findings.jsonl"
    delivered = [orjson.loads(line) for line in sink_file.read_bytes().splitlines()] if sink_file.is_file() else []
    return LocalRun(code, stdout.getvalue(), stderr.getvalue(), delivered, server.get_host_and_port(),
                    server._thread, seconds)


def _refuses(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2):
            return False
    except OSError:
        return True


def _check(run: LocalRun) -> None:
    assert run.code == 0, run.stderr
    ids = [d["finding_id"] for d in run.delivered]
    assert len(ids) == 2 and len(set(ids)) == 2  # both findings, each delivered exactly once
    assert sorted(d["finding"]["device"]["hostname"] for d in run.delivered) == ["mac-01", "mac-02"]
    assert all(d["revision"] == 1 and d["finding"]["is_alert"] for d in run.delivered)
    assert "[ALERT] AN1316 chain on mac-01: Safari download UpdateHelper opened" in run.stdout
    assert "[ALERT] AN1316 chain on mac-02: Microsoft Word spawned zsh which connected to 203.0.113.7" in run.stdout
    assert "findings: 2 (2 alerts)" in run.stderr
    assert run.address[0] == "127.0.0.1"
    assert _refuses(run.address)  # nothing left listening
    assert run.thread is not None and not run.thread.is_alive()
    assert run.seconds < 60


def test_cli_local_bundled_samples_both_findings_delivered_once_and_server_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path / "first", monkeypatch)

    _check(run)
    for delivered in run.delivered:
        story = delivered["finding"]["unmapped"]["chainwatch"]["story"]
        assert story.splitlines()[0] in run.stdout  # each finding's story is printed


def test_cli_local_second_run_in_same_process_works_like_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run(tmp_path / "first", monkeypatch)
    second = _run(tmp_path / "second", monkeypatch)

    _check(first)
    _check(second)
    assert second.address != first.address or _refuses(first.address)
    assert sorted(d["finding_id"] for d in second.delivered) == sorted(d["finding_id"] for d in first.delivered)


def test_cli_local_sink_that_stays_down_exits_non_zero_and_still_stops_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real fault, not a patched sink: a directory sits where the file sink must append its lines, so every
    # attempt fails with the operating system's error (transient for the file sink) until re-delivery gives up.
    out_dir = tmp_path / "out"
    (out_dir / "findings.jsonl").mkdir(parents=True)

    run = _run(out_dir, monkeypatch)

    assert run.code == 2
    assert "dispatch still failing after 5 deliveries" in run.stderr
    assert "chainwatch: error: records still failing after re-delivery" in run.stderr
    assert run.delivered == []
    assert _refuses(run.address)
    assert run.thread is not None and not run.thread.is_alive()


def test_cli_local_handler_that_raises_propagates_and_still_stops_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real fault the file sink does not turn into a result: a path with a NUL byte makes the operating-system
    # layer raise ValueError, which leaves the dispatch handler (a Lambda function error) and the CLI.
    extra = tmp_path / "sinks.json"
    extra.write_bytes(orjson.dumps([{"kind": "file", "name": "broken-file", "path": str(tmp_path / "a\0b.jsonl")}]))

    with pytest.raises(ValueError, match="null byte"):
        _run(tmp_path / "out", monkeypatch, "--sinks", str(extra))

    (server,) = _RecordingServer.started
    assert _refuses(server.get_host_and_port())
    assert server._thread is not None and not server._thread.is_alive()


def test_cli_local_dead_lettered_deliveries_printed_per_sink_with_reason_and_exit_non_zero(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A PagerDuty sink whose routing-key secret does not exist in (emulated) Secrets Manager: a configuration
    # error, so every delivery to it is dead-lettered with the reason.
    extra = tmp_path / "sinks.json"
    extra.write_bytes(orjson.dumps([{"kind": "pagerduty", "name": "pd",
                                     "routing_key_secret": "chainwatch/local/missing-pagerduty"}]))

    run = _run(tmp_path / "out", monkeypatch, "--sinks", str(extra))

    assert run.code == 1, run.stderr
    assert len(run.delivered) == 2  # the other sinks delivered as usual
    assert "sink local-file: delivered 2, skipped 0, retried 0, dead-lettered 0" in run.stderr
    assert "sink jira: delivered 2, skipped 0, retried 0, dead-lettered 0" in run.stderr
    assert "sink pd: delivered 0, skipped 0, retried 0, dead-lettered 2" in run.stderr
    reasons = [line for line in run.stderr.splitlines() if "cannot read its routing key" in line]
    assert len(reasons) == 2 and "missing-pagerduty" in reasons[0]
    assert "2 delivery(ies) went to the dead-letter queue" in run.stderr
    assert _refuses(run.address)
