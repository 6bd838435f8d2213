"""The relevance gate (``sources/relevance.py``): what it drops from raw bytes, what it must always pass on, and the
invariant behind it — a line the gate drops is one the full decode + mapping would have turned into no event, under
the same label — checked on real records with attacker-controlled strings mutated by hypothesis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.events import RawRef, SourceFormat
from chainwatch.sources import Normalizer, relevance_gate
from chainwatch.sources.reader import Record, read_bytes
from chainwatch.sources.relevance import Gated, RelevanceGate, UnifiedLogGate
from chainwatch.sources.unifiedlog import PATTERNS, parse_patterns

ROOT = Path(__file__).resolve().parents[3]
GATE = RelevanceGate()


def _lines(pattern: str) -> list[bytes]:
    out = []
    for path in sorted(ROOT.glob(pattern)):
        out.extend(line for line in path.read_bytes().splitlines() if line.strip().startswith(b"{"))
    return out


ESLOGGER = _lines("tests/corpus/*/eslogger.jsonl") + _lines("events/mac-01/eslogger.jsonl") + \
    _lines("tests/unit/sources/data/eslogger_mullvad.jsonl")
UNIFIED = _lines("tests/corpus/*/unifiedlog.ndjson") + _lines("events/mac-01/unifiedlog.ndjson")


def _apple(doc: Any) -> bytes:
    """JSON the way eslogger and ``log`` write it: compact, with every ``/`` escaped as ``\\/``."""
    return orjson.dumps(doc).replace(b"/", b"\\/")


def _es_record(name: str, payload: Any, first: str = "schema_version") -> dict[str, Any]:
    process = {"audit_token": {"pid": 10, "pidversion": 3, "euid": 501}, "executable": {"path": "/bin/zsh"},
               "ppid": 1, "start_time": "2026-03-02T09:00:00.000000Z"}
    rest = {"schema_version": 1, "event_type": 10, "time": "2026-03-02T09:00:01.000000Z", "process": process,
            "event": {name: payload}, "version": 9}
    return {first: rest.pop(first), **rest}


def _ul_record(process: str, message: str, subsystem: str = "", first: str = "timestamp") -> dict[str, Any]:
    rest = {"timestamp": "2026-03-02 09:00:01.000000+0000", "eventMessage": message, "eventType": "logEvent",
            "processImagePath": process, "processID": 77, "subsystem": subsystem, "category": ""}
    return {first: rest.pop(first), **rest}


def _full_way(line: bytes) -> tuple[int, list[str], int]:
    """(events, skip labels, rejections) of one line read and mapped without the gate."""
    normalizer = Normalizer(gate=False)
    events = list(normalizer.run(read_bytes(line + b"\n", "t"), "h"))
    return len(events), sorted(normalizer.stats.skipped), normalizer.stats.rejected


# -- what it drops -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["open", "lookup", "stat", "readlink", "mmap", "signal", "cs_invalidated"])
def test_relevance_eslogger_unmapped_event_dropped_with_its_label(name: str) -> None:
    line = _apple(_es_record(name, {"file": {"path": "/Users/a/Downloads/x"}}))
    assert GATE(line) == Gated("eslogger", f"eslogger:{name}")
    assert _full_way(line) == (0, [f"eslogger:{name}"], 0)


def test_relevance_eslogger_unmodified_close_dropped() -> None:
    line = _apple(_es_record("close", {"modified": False, "target": {"path": "/Users/a/Downloads/x.zip"}}))
    assert GATE(line) == Gated("eslogger", "eslogger:close(unmodified)")
    assert _full_way(line) == (0, ["eslogger:close(unmodified)"], 0)


def test_relevance_unified_log_unpatterned_process_dropped() -> None:
    line = _apple(_ul_record("/usr/libexec/trustd", "SecTrustEvaluateIfNecessary: something ordinary"))
    assert GATE(line) == Gated("unifiedlog", "unifiedlog:unclassified")
    assert _full_way(line) == (0, ["unifiedlog:unclassified"], 0)


# -- what it must pass on ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exec", "fork", "exit", "create", "rename", "write", "setextattr", "mount",
                                  "gatekeeper_user_override"])
def test_relevance_eslogger_mapped_event_passed(name: str) -> None:
    assert GATE(_apple(_es_record(name, {"target": {"path": "/tmp/x"}}))) is None


def test_relevance_eslogger_modified_close_passed_even_when_a_path_spells_unmodified() -> None:
    hostile = '/Users/a/Downloads/"modified":false,x'
    line = _apple(_es_record("close", {"target": {"path": hostile}, "modified": True}))
    assert b'"modified":false' not in line  # the name's quotes are escaped: it cannot forge the key
    assert GATE(line) is None
    assert _full_way(line)[0] == 1


def test_relevance_eslogger_exec_whose_arguments_spell_an_open_event_passed() -> None:
    doc = _es_record("exec", {"target": {"audit_token": {"pid": 11, "pidversion": 4},
                                         "executable": {"path": "/bin/sh"}},
                              "args": ['"event":{"open":{}}', '{"schema_version":1,"event":{"open"']})
    line = _apple(doc)
    assert GATE(line) is None
    assert _full_way(line)[0] == 1


@pytest.mark.parametrize("first", ["_index", "took", "hits", "event", "host", "caid", "responses"])
def test_relevance_wrapped_record_passed(first: str) -> None:
    inner = _es_record("open", {"file": {"path": "/x"}})
    wrapper = {first: "x", "_source": inner} if first != "hits" else {"hits": {"hits": [{"_source": inner}]}}
    assert GATE(orjson.dumps(wrapper)) is None


def test_relevance_pretty_or_spaced_json_passed() -> None:
    spaced = orjson.dumps(_es_record("open", {})).replace(b'":', b'": ')
    assert GATE(b"  " + orjson.dumps(_es_record("open", {}))) is None
    assert GATE(spaced.replace(b'{"', b'{ "')) is None


def test_relevance_truncated_line_passed() -> None:
    line = orjson.dumps(_es_record("open", {"file": {"path": "/x"}}))
    assert GATE(line[:-5]) is None


@pytest.mark.parametrize("message", [
    "SecTranslocateCreateSecureDirectoryForURL: created /private/var/folders/x/T/AppTranslocation/1/d/A.app",
    "SecTranslocate: removed mountpoint: /private/var/folders/x/T/AppTranslocation/1",
    "Cleared Gatekeeper rejection record sucessfully",
])
def test_relevance_unified_log_any_process_pattern_passed(message: str) -> None:
    line = _apple(_ul_record("/usr/libexec/lsd", message))
    assert GATE(line) is None
    assert _full_way(line)[0] == 1


def test_relevance_unified_log_patterned_process_line_its_patterns_may_match_passed() -> None:
    line = _apple(_ul_record("/usr/libexec/runningboardd",
                             "Now tracking process: [app<application.com.apple.Safari.1.2(501)>:812]"))
    assert GATE(line) is None
    assert _full_way(line)[0] == 1


def test_relevance_unified_log_patterned_process_line_none_of_its_patterns_match_dropped() -> None:
    line = _apple(_ul_record("/usr/libexec/runningboardd", "Acquiring assertion targeting [daemon<x>:1]"))
    assert GATE(line) == Gated("unifiedlog", "unifiedlog:unclassified")
    assert _full_way(line) == (0, ["unifiedlog:unclassified"], 0)


def test_relevance_unified_log_regex_only_pattern_of_a_process_decodes_its_lines() -> None:
    text = "version: 1\npatterns:\n  - id: mine\n    event: gatekeeper\n    action: blocked_launch\n" \
           "    process: somed\n    regex: 'blocked (?P<path>/.+)'\n"
    gate = UnifiedLogGate(parse_patterns(text, "t.yaml"))
    assert gate.usable
    assert gate(_apple(_ul_record("/usr/libexec/somed", "anything"))) is None
    assert gate(_apple(_ul_record("/usr/libexec/otherd", "anything"))) is not None


def test_relevance_unified_log_escaped_process_name_passed() -> None:
    line = _apple(_ul_record("/usr/libexec/sys\u0070olicyd", "x")).replace(b"syspolicyd", b"sys\\u0070olicyd")
    assert GATE(line) is None


def test_relevance_unified_log_disk_image_subsystem_passed() -> None:
    line = _apple(_ul_record("/usr/libexec/somed", "unmount /Volumes/X", subsystem="com.apple.DiskImages2"))
    assert GATE(line) is None


def test_relevance_unified_log_regex_only_any_pattern_disables_the_gate() -> None:
    text = "version: 1\npatterns:\n  - id: any-regex\n    event: gatekeeper\n    action: blocked_launch\n" \
           "    process: '*'\n    regex: 'blocked (?P<path>/.+)'\n"
    assert UnifiedLogGate(parse_patterns(text, "t.yaml")).usable is False
    assert UnifiedLogGate(PATTERNS).usable is True


def test_relevance_forced_format_limits_the_gate() -> None:
    line = _apple(_es_record("open", {}))
    assert relevance_gate(SourceFormat.ECS) is None
    gate = relevance_gate(SourceFormat.ESLOGGER)
    assert gate is not None and gate(line) is not None
    assert Normalizer(gate=False).gate is None


def test_relevance_reader_counts_gated_lines_like_mapped_ones() -> None:
    lines = [_apple(_es_record("open", {})), _apple(_es_record("exec", {"target": {
        "audit_token": {"pid": 11, "pidversion": 4}, "executable": {"path": "/bin/sh"}}})),
        _apple(_es_record("close", {"modified": False, "target": {"path": "/x"}}))]
    blob = b"\n".join(lines) + b"\n"
    gated, plain = Normalizer(), Normalizer(gate=False)
    events = list(gated.run(read_bytes(blob, "t", gated.gate), "h"))
    assert [e.kind.value for e in events] == [e.kind.value for e in plain.run(read_bytes(blob, "t"), "h")]
    assert gated.stats.to_dict()["skipped"] == plain.stats.to_dict()["skipped"]
    assert gated.stats.records == plain.stats.records == 3
    assert gated.stats.to_dict()["skipped_undecoded"] == {"eslogger:close(unmodified)": 1, "eslogger:open": 1}


# -- the invariant, on real records with hostile strings -------------------------------------------------------------

HOSTILE = st.sampled_from([
    '"modified":false', '"modified":true', '"event":{"open":{}}', '"hits":[', '{"schema_version":1}', "}", "{",
    "\\", '\\"', "\u202e", "\n", "SecTranslocate: removed mountpoint: ", "Now tracking process: [app<application.",
    "syspolicyd", "/Volumes/Installer", "com.apple.DiskImages2", '"processImagePath":"/usr/libexec/syspolicyd"',
]) | st.text(max_size=12)
EVENT_NAMES = st.sampled_from(["open", "close", "exec", "fork", "exit", "create", "rename", "lookup", "write",
                               "setextattr", "mount", "signal"])


def _string_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _string_paths(v, (*prefix, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _string_paths(v, (*prefix, i))]
    return [prefix] if isinstance(node, str) else []


@st.composite
def mutated_line(draw: st.DrawFn) -> bytes:
    pool = draw(st.sampled_from(["eslogger", "unified"]))
    lines = ESLOGGER if pool == "eslogger" else UNIFIED
    doc = orjson.loads(draw(st.sampled_from(lines)))
    paths = _string_paths(doc)
    for _ in range(draw(st.integers(0, 3))):
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        node = doc
        for key in path[:-1]:
            node = node[key]
        where = draw(st.sampled_from(["prefix", "suffix", "replace"]))
        text = draw(HOSTILE)
        old = node[path[-1]]
        node[path[-1]] = text + old if where == "prefix" else old + text if where == "suffix" else text
    if pool == "eslogger" and isinstance(doc.get("event"), dict) and len(doc["event"]) == 1 and draw(st.booleans()):
        (_, payload), = doc["event"].items()
        if isinstance(payload, dict) and draw(st.booleans()):
            payload["modified"] = draw(st.booleans())
        doc["event"] = {draw(EVENT_NAMES): payload}
    return _apple(doc) if draw(st.booleans()) else orjson.dumps(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_line())
def test_relevance_gate_drops_only_what_mapping_would_turn_into_no_event(line: bytes) -> None:
    gated = GATE(line)
    events, labels, rejected = _full_way(line)
    if gated is not None:
        assert events == 0
        assert labels == [gated.label] or rejected == 1


def test_relevance_real_records_keep_their_labels() -> None:
    """Every real record the gate drops is labelled exactly as the full way labels it."""
    dropped = 0
    for line in ESLOGGER + UNIFIED:
        gated = GATE(line)
        if gated is None:
            continue
        dropped += 1
        doc = orjson.loads(line)
        normalizer = Normalizer(gate=False)
        assert normalizer.normalize(Record(doc, RawRef("t", 1)), "h") == []
        assert list(normalizer.stats.skipped) == [gated.label]
    assert dropped > 0


def test_relevance_eslogger_record_opening_with_its_event_dropped() -> None:
    line = _apple(_es_record("open", {"file": {"path": "/x"}}, first="event"))
    assert line.startswith(b'{"event":{"open"')
    assert GATE(line) == Gated("eslogger", "eslogger:open")


def test_relevance_kinesis_envelope_opening_with_event_passed() -> None:
    inner = _es_record("open", {"file": {"path": "/x"}}, first="event")
    assert GATE(orjson.dumps({"event": inner, "host": "mac-01", "source": "eslogger"})) is None
    assert GATE(orjson.dumps({"event": "x", "_source": inner})) is None


# -- tracked-only mapping ------------------------------------------------------------------------------------------


def _tracked(line: bytes) -> tuple[list[str], list[str]]:
    from chainwatch.policy import load_policy

    normalizer = Normalizer(gate=False, tracked_only=load_policy())
    events = list(normalizer.run(read_bytes(line + b"\n", "t"), "h"))
    return [e.kind.value for e in events], sorted(normalizer.stats.skipped)


def test_tracked_only_unified_log_launch_of_a_non_policy_app_labelled() -> None:
    other = _apple(_ul_record("/usr/libexec/runningboardd",
                              "Now tracking process: [app<application.com.example.Notes.1.2(501)>:812]"))
    safari = _apple(_ul_record("/usr/libexec/runningboardd",
                               "Now tracking process: [app<application.com.apple.Safari.1.2(501)>:812]"))
    assert _tracked(other) == ([], ["unifiedlog:app_activity(untracked)"])
    assert _tracked(safari) == (["app_activity"], [])
    assert _full_way(other)[0] == 1  # without tracked-only mapping the launch is an event like any


def test_tracked_only_eslogger_exec_of_a_daemon_labelled_and_of_an_interpreter_mapped() -> None:
    def exec_of(path: str, signing_id: str) -> bytes:
        return _apple(_es_record("exec", {"target": {
            "audit_token": {"pid": 11, "pidversion": 4}, "executable": {"path": path}, "signing_id": signing_id,
            "is_platform_binary": True}, "args": [path]}))

    assert _tracked(exec_of("/usr/libexec/xpcproxy", "com.apple.xpc.proxy")) == \
        ([], ["eslogger:exec(untracked)"])
    assert _tracked(exec_of("/usr/bin/curl", "com.apple.curl")) == (["process_exec"], [])
