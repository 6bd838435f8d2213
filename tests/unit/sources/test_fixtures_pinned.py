"""Every real-format fixture in ``../shared/fixtures`` read end to end, with its outcome pinned.

Each data file (what :func:`~chainwatch.sources.reader.iter_files` finds in the folder) goes through
:func:`~chainwatch.sources.reader.read_path` and :class:`~chainwatch.sources.Normalizer` one record at a time, so
every record can be accounted for: it produced events, it was skipped with a label, or it was rejected. A record
that does none of these would be lost silently. The counts below are the current, reviewed behaviour; a change
to a source module that alters them must update this table on purpose.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from chainwatch.app.cli import main
from chainwatch.events import AnyEvent
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import Rejection, iter_files, read_path

ELASTIC = "elastic_macos_attack_dataset"
JAMF = "jamf_protect_samples"
HOST = "fallback-host"


@dataclass(frozen=True)
class Pinned:
    """The reviewed outcome of one fixture file."""

    records: int
    events: dict[tuple[str, str], int]
    skipped: dict[str, int] = field(default_factory=dict)


PINNED: dict[str, Pinned] = {
    f"{ELASTIC}/evasion_deletion_quarantine_xattr.json": Pinned(1, {("ecs", "process_exec"): 1}),
    f"{ELASTIC}/evasion_execution_electron_tcc_bypass_nodejs_childproc_osascript_apfell.json": Pinned(
        1, {("ecs", "process_exec"): 1}
    ),
    f"{ELASTIC}/evasion_susp_zip_file_launchagent_for_office_sandbox_evasion.json": Pinned(
        2, {("ecs", "file_write"): 2}
    ),
    f"{ELASTIC}/execution_pkg_preinstall_shell_script_file_proc.json": Pinned(
        4, {("ecs", "process_exec"): 3, ("ecs", "file_write"): 1}
    ),
    f"{ELASTIC}/execution_scripting_jxa_osascript_apfell_dwnld.json": Pinned(1, {("ecs", "process_exec"): 1}),
    "eslogger/mullvad_eslogger_samples.jsonl": Pinned(
        3, {("eslogger", "process_exit"): 1, ("eslogger", "process_exec"): 1, ("eslogger", "process_fork"): 1}
    ),
    f"{JAMF}/AUE_CONNECT.json": Pinned(1, {("jamf", "network"): 1}),
    f"{JAMF}/AUE_EXECVE.json": Pinned(1, {("jamf", "process_exec"): 1}),
    f"{JAMF}/GPDownloadEvent.json": Pinned(1, {("jamf", "file_write"): 1, ("jamf", "xattr"): 1}),
    f"{JAMF}/GPGatekeeperEvent.json": Pinned(1, {("jamf", "gatekeeper"): 1}),
    # Valid alerts whose analytic chainwatch does not map (elevation API use; an XProtect scan result).
    f"{JAMF}/GPProcessEvent.json": Pinned(1, {}, {"jamf:alert/GPProcessEvent": 1}),
    f"{JAMF}/GPUnifiedLogEvent.json": Pinned(1, {}, {"jamf:alert/GPUnifiedLogEvent": 1}),
}


@dataclass
class Outcome:
    """Per-record accounting of one file: every record lands in exactly one of the three counters."""

    producing: int = 0
    skipped: int = 0
    rejected: int = 0
    events: list[AnyEvent] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def _read_accounted(path: Path) -> tuple[Normalizer, Outcome]:
    outcome = Outcome()
    normalizer = Normalizer(on_reject=outcome.rejections.append)
    stats = normalizer.stats
    for item in read_path(path):
        skipped_before, rejected_before = sum(stats.skipped.values()), stats.rejected
        events = list(normalizer.run([item], HOST))
        skipped = sum(stats.skipped.values()) - skipped_before
        rejected = stats.rejected - rejected_before
        # A record counts once: events, or a skip label, or a rejection; never two, never none.
        assert (bool(events), skipped, rejected) in {(True, 0, 0), (False, 1, 0), (False, 0, 1)}, item
        outcome.producing += bool(events)
        outcome.skipped += skipped
        outcome.rejected += rejected
        outcome.events.extend(events)
    return normalizer, outcome


def _relative_data_files(folder: Path) -> list[str]:
    return [path.relative_to(folder).as_posix() for path in iter_files([folder])]


def test_fixtures_pinned_folder_holds_exactly_the_pinned_data_files(shared_fixtures: Path) -> None:
    assert sorted(_relative_data_files(shared_fixtures)) == sorted(PINNED)


@pytest.mark.parametrize("relative", sorted(PINNED))
def test_fixtures_pinned_file_normalizes_to_pinned_counts_without_loss(shared_fixtures: Path, relative: str) -> None:
    expected = PINNED[relative]
    normalizer, outcome = _read_accounted(shared_fixtures / relative)
    stats = normalizer.stats
    assert stats.records == expected.records
    assert dict(stats.events) == expected.events
    assert dict(stats.skipped) == expected.skipped
    assert stats.rejected == 0 and outcome.rejections == []
    # No silent loss: every record read is accounted for by exactly one outcome.
    assert stats.records == outcome.producing + outcome.rejected + outcome.skipped
    assert Counter((e.source.value, e.kind.value) for e in outcome.events) == Counter(expected.events)
    # The normalize command serializes every event; that must work for every real record.
    for event in outcome.events:
        assert orjson.loads(orjson.dumps(event.to_dict()))["kind"] == event.kind.value


def test_fixtures_pinned_cli_normalize_folder_summary_matches_and_rejects_file_empty(
    shared_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rejects = tmp_path / "rejects.jsonl"
    assert main(["normalize", str(shared_fixtures), "--rejects", str(rejects)]) == 0
    captured = capsys.readouterr()

    totals: Counter[tuple[str, str]] = Counter()
    for pinned in PINNED.values():
        totals.update(pinned.events)
    by = ", ".join(f"{s}/{k}={n}" for (s, k), n in sorted(totals.items()))
    records = sum(p.records for p in PINNED.values())
    skipped = sum(sum(p.skipped.values()) for p in PINNED.values())
    assert captured.err.strip() == (
        f"records read: {records}; events: {totals.total()} ({by}); rejected: 0; "
        f"skipped as unused or unsupported: {skipped}"
    )
    lines = captured.out.splitlines()
    assert len(lines) == totals.total()
    assert Counter((d["source"], d["kind"]) for d in map(orjson.loads, lines)) == totals
    assert rejects.is_file() and rejects.read_bytes() == b""


@pytest.mark.parametrize("relative", sorted(p for p in PINNED if p.startswith(ELASTIC)))
def test_fixtures_pinned_elastic_file_records_equal_its_source_documents(shared_fixtures: Path,
                                                                         relative: str) -> None:
    # An oracle independent of the reader: every "_source" key in the raw text is one event document, so the
    # records read must match it exactly (an envelope counted as a record, or an event left in one, fails here).
    raw = (shared_fixtures / relative).read_text(encoding="utf-8")
    normalizer, _ = _read_accounted(shared_fixtures / relative)
    assert normalizer.stats.records == raw.count('"_source"') == PINNED[relative].records
    assert normalizer.stats.rejected_by_reason == Counter()


def test_fixtures_pinned_cli_normalize_folder_has_no_unexplained_drop(shared_fixtures: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Every record is an event producer, a labelled skip, or a line in --rejects: the three add up to the total.
    rejects = tmp_path / "rejects.jsonl"
    assert main(["normalize", str(shared_fixtures), "--rejects", str(rejects)]) == 0
    err = capsys.readouterr().err
    producing = skipped = 0
    for relative in PINNED:
        _, outcome = _read_accounted(shared_fixtures / relative)
        producing += outcome.producing
        skipped += outcome.skipped
    rejected = len(rejects.read_bytes().splitlines())
    records = sum(p.records for p in PINNED.values())
    assert producing + skipped + rejected == records
    assert f"records read: {records};" in err and f"rejected: {rejected};" in err
