"""``chainwatch canary --local``: the synthetic chain through the embedded pipeline to the local stand-ins."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chainwatch.app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_canary_local_settles_at_every_sink_and_is_marked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["canary", "--local", "--root", str(ROOT), "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "OK: canary" in out and "jira" in out and "splunk" in out
    lines = (tmp_path / "findings.jsonl").read_bytes().splitlines()
    (delivered,) = [orjson.loads(line) for line in lines]
    finding = delivered["finding"]
    assert finding["device"]["hostname"].startswith("chainwatch-canary-")
    assert finding["is_alert"] and finding["unmapped"]["chainwatch"]["stages_present"] == [1, 2, 3, 4]


def test_local_run_delivers_to_siem_and_ticket_standins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["local", "--root", str(ROOT), "--out-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0
    assert "Splunk HEC stand-in received 2 event(s)" in captured.err
    assert "Jira stand-in holds SEC-1 (0 comments), SEC-2 (0 comments)" in captured.err
