"""Attacker-chosen names must not hide a chain: the mac-01 story renamed to hostile text normalizes the same.

The app in ``events/mac-01`` is called ``UpdateHelper.app`` only because its author chose so. The helper
:mod:`hostile_mac01` renames it consistently in all three sources (eslogger, Elastic, unified log) and pads the
app's and the shell's argument lists; these tests check that ``normalize`` then yields exactly the events of the
original sample with the new name in them: the same kinds, in the same order, from the same records, every name,
path and argument carrying the hostile text intact. Only ``message`` (a unified-log excerpt capped at 512
characters) is compared by its start.

A property test draws names from quotes, brackets, ``"}]``, newlines, U+202E, NUL, ``%``, commas, parentheses,
long runs and ``surrogateescape``-style invalid UTF-8 (lone ``\\udc80``-``\\udcff``; those come out as U+FFFD, the
one lossy step, made in the reader).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from typing import Any

import hostile_mac01
import orjson
import pytest
from hostile_mac01 import HOSTILE_NAME, hostile_arg, hostile_files, pad_args, renamer, scrubbed
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chainwatch.app.cli import main
from chainwatch.events import event_to_dict
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import read_bytes

HOST = "mac-01"
MESSAGE_PREFIX = re.compile(r"^[A-Za-z_\-\[]+[^:]*")


def _normalize(files: dict[str, bytes]) -> tuple[list[dict[str, Any]], Normalizer]:
    normalizer = Normalizer()
    events: list[dict[str, Any]] = []
    for file_name, data in sorted(files.items()):
        for event in normalizer.run(read_bytes(data, file_name), HOST):
            events.append(event_to_dict(event))
    return events, normalizer


BASELINE, BASELINE_RUN = _normalize(hostile_files("UpdateHelper", extra_args=0))


def _expected(name: str, rename_bundle_id: bool, extra_args: int) -> list[dict[str, Any]]:
    """The baseline events as the renamed sample must produce them."""
    rename = renamer(name, rename_bundle_id)
    padding = [hostile_arg(i) for i in range(extra_args)]

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return scrubbed(rename(value))
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    expected = []
    for event in BASELINE:
        renamed = walk(event)
        target = renamed.get("target")
        if event["kind"] == "process_exec" and event["source"] == "eslogger" and target.get("args"):
            target["args"] = [scrubbed(a) for a in pad_args(target.get("executable", ""), target["args"], padding)]
        expected.append(renamed)
    return expected


def _strip_volatile(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("message", "raw")}


def _check(name: str, rename_bundle_id: bool = False, extra_args: int = 0) -> None:
    files = hostile_files(name, rename_bundle_id=rename_bundle_id, extra_args=extra_args)
    events, run = _normalize(files)
    assert run.stats.rejected == 0
    assert dict(run.stats.skipped) == dict(BASELINE_RUN.stats.skipped)
    assert [(e["kind"], e["source"], e["raw"]) for e in events] == \
        [(e["kind"], e["source"], e["raw"]) for e in BASELINE]
    expected = _expected(name, rename_bundle_id, extra_args)
    for got, want, base in zip(events, expected, BASELINE, strict=True):
        assert _strip_volatile(got) == _strip_volatile(want), got["raw"]
        if "message" in base:
            # The kept excerpt still starts with Apple's fixed text (what the pattern matched on).
            fixed = MESSAGE_PREFIX.match(base["message"])
            assert fixed is not None and got["message"].startswith(fixed.group(0)), got["raw"]


def test_hostile_names_bug_report_name_and_10kb_arguments_normalize_to_the_same_events() -> None:
    assert sum(len(hostile_arg(i)) for i in range(220)) >= 10_000
    _check(HOSTILE_NAME, extra_args=220)


def test_hostile_names_renamed_bundle_id_too() -> None:
    _check(HOSTILE_NAME, rename_bundle_id=True, extra_args=20)


def test_hostile_names_the_app_path_is_carried_verbatim_by_every_source() -> None:
    events, _ = _normalize(hostile_files(HOSTILE_NAME, extra_args=0))
    app = f"{HOSTILE_NAME}.app"
    by_source: dict[str, int] = {}
    for event in events:
        if app in str(event.get("path")) or app in str(event.get("app_path")) or \
                app in str(event.get("target", {}).get("executable")):
            by_source[event["source"]] = by_source.get(event["source"], 0) + 1
    # eslogger file writes and execs, and the unified log's translocation, scan and launch lines.
    assert by_source.get("eslogger", 0) >= 10 and by_source.get("unifiedlog", 0) >= 3


def test_hostile_names_translocation_line_with_newline_in_name_is_mapped() -> None:
    # The reported loss: "SecTranslocateCreateSecureDirectoryForURL: created <path>" with a newline in <path>.
    events, _ = _normalize(hostile_files("Up\ndate", extra_args=0))
    translocations = [e for e in events if e.get("action") == "translocation"]
    assert len(translocations) == 1 and translocations[0]["path"].endswith("/d/Up\ndate.app")


def test_hostile_names_comma_in_name_keeps_the_whole_xprotect_url_path() -> None:
    events, _ = _normalize(hostile_files("Up, date (1)", extra_args=0))
    scans = [e["path"] for e in events if e.get("action") == "scan" and e.get("path")]
    assert scans == ["/Users/alice/Downloads/Up, date (1).app"]


def test_hostile_names_lone_surrogates_become_replacement_characters_consistently() -> None:
    _check("Up\udcffdate\udc80", extra_args=3)
    events, _ = _normalize(hostile_files("Up\udcffdate", extra_args=0))
    assert any(e.get("path") == "/Users/alice/Downloads/Up\ufffddate.app" for e in events)


HOSTILE_CHARS = st.sampled_from(
    ['"', "'", "[", "]", "{", "}", '"}]', "\n", "\r", "\t", "\u202e", "\u2028", "\x00", "%", "%25", ",", "(", ")",
     "), (", " ", "\\", ":", ";", "<private>", "(null)", "file:", ".app", ".zip", "é", "\U0001f600", "\udcff",
     "\udc80", "UpdateHelper", "*", "?", "~", "$(id)", "\u200b"]
)
NAMES = st.lists(st.one_of(HOSTILE_CHARS, st.text(alphabet=st.characters(blacklist_characters="/",
                                                                          blacklist_categories=("Cs",)),
                                                   max_size=8)),
                 min_size=1, max_size=12).map("".join).filter(lambda s: s.strip(" ") != "")
LONG_NAMES = st.integers(200, 3000).map(lambda n: 'Up"}]\n\u202e' * (n // 8) + "x")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(NAMES, LONG_NAMES), rename_bundle_id=st.booleans(), extra_args=st.integers(0, 60))
@example(name=HOSTILE_NAME, rename_bundle_id=False, extra_args=220)
@example(name="a\x00b\udcffc", rename_bundle_id=True, extra_args=0)
def test_hostile_names_property_normalize_yields_the_same_events(
    name: str, rename_bundle_id: bool, extra_args: int
) -> None:
    _check(name, rename_bundle_id, extra_args)


def test_hostile_names_helper_check_can_fail() -> None:
    # The comparison must notice a name that goes missing, or the property would prove nothing.
    events, _ = _normalize(hostile_files("Other", extra_args=0))
    expected = _expected("Renamed", False, 0)
    assert any(_strip_volatile(g) != _strip_volatile(w) for g, w in zip(events, expected, strict=True))


def test_hostile_names_helper_keeps_json_valid(tmp_path: Any) -> None:
    folder = hostile_mac01.write_hostile_copy(tmp_path, extra_args=5)
    for path in folder.iterdir():
        _, run = _normalize({path.name: path.read_bytes()})
        assert run.stats.rejected == 0


RENAME: Callable[[str], str] = renamer("x")


@pytest.mark.parametrize(
    ("text", "renamed"),
    [("/Users/alice/Downloads/UpdateHelper.app", "/Users/alice/Downloads/x.app"),
     ("com.example.UpdateHelper", "com.example.UpdateHelper"),
     ("file:///Users/alice/Downloads/UpdateHelper.app/", "file:///Users/alice/Downloads/x.app/")],
)
def test_hostile_names_helper_rename(text: str, renamed: str) -> None:
    assert RENAME(text) == renamed


# ---- end to end: does the chain survive? ------------------------------------------------------------------------


def _alerts(folder: Any, tmp_path: Any) -> list[dict[str, Any]]:
    out = tmp_path / "findings.jsonl"
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["detect", str(folder), "--all", "--no-progress", "--out", str(out)]) == 0
    return [f for f in map(orjson.loads, out.read_bytes().splitlines()) if f.get("is_alert")]


def test_hostile_names_detect_still_finds_the_chain_without_newline(tmp_path: Any) -> None:
    name = 'Up"date [Helper], "}]\u202eppa.exe'
    folder = hostile_mac01.write_hostile_copy(tmp_path / "in", name, extra_args=220)
    alerts = _alerts(folder, tmp_path)
    assert len(alerts) == 1
    strings: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict | list):
            for item in value.values() if isinstance(value, dict) else value:
                collect(item)

    collect(alerts[0])
    # The finding names the hostile app verbatim (its file paths), however a sink later escapes it.
    assert any(f"/Users/alice/Downloads/{name}.app" in s for s in strings)


# A newline in the name once hid the chain: policy globs did not match across it (now compiled with DOTALL).
def test_hostile_names_detect_still_finds_the_chain_with_newline(tmp_path: Any) -> None:
    folder = hostile_mac01.write_hostile_copy(tmp_path / "in", HOSTILE_NAME, extra_args=220)
    assert len(_alerts(folder, tmp_path)) == 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(name=NAMES.filter(lambda s: "\x00" not in s and s not in (".", "..")), extra_args=st.integers(0, 40))
def test_hostile_names_property_detect_keeps_the_chain_and_its_stages(tmp_path: Any, name: str,
                                                                       extra_args: int) -> None:
    # Any byte sequence a file name can hold (no "/", no NUL) still yields the one alert, with all four stages.
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        folder = hostile_mac01.write_hostile_copy(Path(scratch) / "in", name, extra_args=extra_args)
        alerts = _alerts(folder, Path(scratch))
        assert len(alerts) == 1
        assert alerts[0]["unmapped"]["chainwatch"]["stages_present"] == [1, 2, 3, 4]
