"""The relevance gate and tracked-only mapping change no finding: on every corpus scenario, the bundled samples, the
shared fixtures and a generated fleet with its background noise, detection with them and without them gives the
same findings — same ids, same OCSF documents, same stories. The gate alone also keeps every count (records,
events, skip labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.fleet import Plan, generate
from chainwatch.engine import Engine
from chainwatch.findings.ocsf import to_ocsf
from chainwatch.findings.story import story_text
from chainwatch.policy import load_policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import iter_files, read_path
from chainwatch.state.memory import InMemoryStore

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy()
FOLDERS = [*sorted(p for p in (ROOT / "tests" / "corpus").iterdir() if p.is_dir()),
           ROOT / "events" / "mac-01", ROOT / "events" / "mac-02"]
FIXTURES = ROOT.parent / "shared" / "fixtures"


def _detect(paths: list[Path], gate: bool, tracked_only: bool = False) -> tuple[list[tuple[str, str, str]],
                                                                              dict[str, Any]]:
    normalizer = Normalizer(gate=gate, tracked_only=POLICY if tracked_only else None)
    engine = Engine(POLICY, InMemoryStore(), clock=lambda: 0)
    for path in iter_files(paths):
        if path.name in ("expected.json", "truth.json", "manifest.json"):
            continue
        host = path.parent.name
        for event in normalizer.run(read_path(path, normalizer.gate), host):
            engine.ingest(event)
    engine.flush()
    findings = [(f.finding_id, orjson.dumps(to_ocsf(f, POLICY), option=orjson.OPT_SORT_KEYS).decode(),
                 story_text(f)) for f in engine.all_findings()]
    stats = normalizer.stats.to_dict()
    return findings, stats


def _same(paths: list[Path]) -> dict[str, Any]:
    with_gate, stats_gated = _detect(paths, gate=True)
    without, stats_plain = _detect(paths, gate=False)
    assert with_gate == without
    # What detect runs: the gate and tracked-only mapping together.
    lean, stats_lean = _detect(paths, gate=True, tracked_only=True)
    assert lean == without
    assert stats_lean["records"] == stats_plain["records"] and stats_lean["rejected"] <= stats_plain["rejected"]
    undecoded = stats_gated.pop("skipped_undecoded")
    assert stats_plain.pop("skipped_undecoded") == {}
    assert stats_gated == stats_plain
    return {"findings": len(with_gate), "undecoded": sum(undecoded.values())}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_relevance_gate_corpus_and_samples_same_findings(folder: Path) -> None:
    _same([folder])


def test_relevance_gate_shared_fixtures_same_findings() -> None:
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not beside this checkout")
    _same([FIXTURES])


def test_relevance_gate_generated_fleet_same_findings_and_most_records_undecoded(tmp_path: Path) -> None:
    manifest = generate(tmp_path / "fleet", Plan(hosts=4, minutes=12, eps=3, chains=8, seed=11))
    result = _same([tmp_path / "fleet" / "hosts"])
    assert result["findings"] >= 8
    # The fleet's background is mostly open/close noise: the gate must actually have set most of it aside.
    assert result["undecoded"] > manifest["records"] // 2
