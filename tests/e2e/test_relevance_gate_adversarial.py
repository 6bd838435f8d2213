"""Tracked-only mapping against the engine's re-assembly schedule: a record the engine would not keep still reaches
``Engine.ingest`` on the full path, and the first event of a host (kept or not) starts that host's schedule of
re-assemblies and evictions. Leaving it unmapped shifts the schedule, and with evidence more than twice the window
out of order (one host's sources read file by file, as ``detect`` reads a folder) the chain found differs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from chainwatch.engine import Engine
from chainwatch.policy import load_policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import iter_files, read_path
from chainwatch.state.memory import InMemoryStore

ROOT = Path(__file__).resolve().parents[2]
CHAIN = ROOT / "tests" / "corpus" / "amos-dmg-chrome"
POLICY = load_policy()
_TIME = re.compile(rb'"time":"([^"]*)"')


def _es(name: str, payload: dict[str, Any], time: str) -> bytes:
    process = {"audit_token": {"pid": 10, "pidversion": 3, "euid": 501}, "executable": {"path": "/bin/zsh"},
               "ppid": 1, "start_time": "2026-03-02T09:00:00.000000Z"}
    doc = {"schema_version": 1, "event_type": 9, "time": time, "process": process, "event": {name: payload},
           "version": 9}
    return orjson.dumps(doc).replace(b"/", b"\\/") + b"\n"


def _mount(point: str, time: str) -> bytes:
    return _es("mount", {"statfs": {"f_mntonname": point, "f_mntfromname": "/dev/disk9s1", "f_fstypename": "apfs"},
                         "disposition": 3}, time)


def _host(root: Path) -> Path:
    """One host's folder, read in name order: an untracked exec (``/bin/ls``: the engine keeps nothing of it) at
    12:31:00, a kept mount at 12:30:30, the first half of a 10:00 chain's eslogger records, a second kept mount at
    12:31:31, then the rest of the chain. The full path starts the host's schedule at 12:31:00 (the exec), the
    tracked-only path at 12:30:30 (the mount): only the second re-assembles at 12:31:31 and evicts the first half
    of the chain (older than the watermark minus twice the one-hour window) before the rest arrives."""
    host = root / "mac-x"
    host.mkdir(parents=True)
    ls = {"target": {"audit_token": {"pid": 12, "pidversion": 5}, "executable": {"path": "/bin/ls"},
                     "is_platform_binary": True, "signing_id": "com.apple.ls"}, "args": ["ls"]}
    (host / "0-noise.jsonl").write_bytes(_es("exec", ls, "2026-03-02T12:31:00.000000Z"))
    (host / "1-mount.jsonl").write_bytes(_mount("/Volumes/Noise1", "2026-03-02T12:30:30.000000Z"))
    lines = (CHAIN / "eslogger.jsonl").read_bytes().splitlines(keepends=True)
    cut = b"2026-03-02T10:03:20"

    def when(line: bytes) -> bytes:
        found = _TIME.search(line)
        assert found is not None
        return found.group(1)

    (host / "2-eslogger.jsonl").write_bytes(b"".join(line for line in lines if when(line) < cut))
    (host / "3-mount.jsonl").write_bytes(_mount("/Volumes/Noise2", "2026-03-02T12:31:31.000000Z"))
    (host / "4-eslogger.jsonl").write_bytes(b"".join(line for line in lines if when(line) >= cut))
    shutil.copy(CHAIN / "unifiedlog.ndjson", host / "5-unifiedlog.ndjson")
    return root


def _findings(root: Path, *, lean: bool) -> list[tuple[str, int]]:
    normalizer = Normalizer(gate=lean, tracked_only=POLICY if lean else None)
    engine = Engine(POLICY, InMemoryStore(), clock=lambda: 0)
    for path in iter_files([root]):
        for event in normalizer.run(read_path(path, normalizer.gate), path.parent.name):
            engine.ingest(event)
    engine.flush()
    return [(f.finding_id, len(f.stages)) for f in engine.all_findings()]


def test_relevance_tracked_only_first_unkept_event_same_findings(tmp_path: Path) -> None:
    root = _host(tmp_path / "fleet")
    full = _findings(root, lean=False)
    assert full  # the chain is found (by both ways once they agree: with 1 stage, its first half evicted)
    assert _findings(root, lean=True) == full


FOLDERS = [*sorted(p for p in (ROOT / "tests" / "corpus").iterdir() if p.is_dir()),
           ROOT / "events" / "mac-01", ROOT / "events" / "mac-02", ROOT.parent / "shared" / "fixtures"]


def _admitted(folder: Path, *, lean: bool) -> list[bytes]:
    """Every event the engine would keep, in reading order, as its JSON (the full way vs ``detect``'s way)."""
    from chainwatch.engine.engine import would_admit

    normalizer = Normalizer(gate=lean, tracked_only=POLICY if lean else None)
    kept = []
    for path in iter_files([folder]):
        if path.name in ("expected.json", "truth.json", "manifest.json"):
            continue
        for event in normalizer.run(read_path(path, normalizer.gate), path.parent.name):
            if would_admit(POLICY, event):
                kept.append(orjson.dumps(event.to_dict(), option=orjson.OPT_SORT_KEYS))
    return kept


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_relevance_gate_and_tracked_only_keep_every_event_the_engine_keeps(folder: Path) -> None:
    """Stronger than equal findings: the very events the engine admits are the same, in the same order (a lost
    event that no corpus chain needs would not show in the findings)."""
    if not folder.is_dir():
        pytest.skip(f"{folder} is not beside this checkout")
    full = _admitted(folder, lean=False)
    assert full
    assert _admitted(folder, lean=True) == full
