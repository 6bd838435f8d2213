"""``would_admit`` (the correlate handler's "can this host's batch matter at all") builds no state, yet says exactly
what admitting the event into an empty host state says, for every event of the corpus and the samples."""

from __future__ import annotations

from pathlib import Path

from chainwatch.engine.engine import would_admit
from chainwatch.engine.hoststate import HostState, admit
from chainwatch.policy import load_policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import iter_files, read_path

ROOT = Path(__file__).resolve().parents[3]
POLICY = load_policy()


def test_would_admit_every_corpus_event_same_as_admitting_into_an_empty_state() -> None:
    normalizer = Normalizer(gate=False)
    paths = [p for p in iter_files([ROOT / "tests" / "corpus", ROOT / "events"]) if p.name != "expected.json"]
    events = [e for path in paths for e in normalizer.run(read_path(path), path.parent.name)]
    kept = [admit(HostState(e.host), POLICY, e) for e in events]
    assert [would_admit(POLICY, e) for e in events] == kept
    assert any(kept) and not all(kept)
