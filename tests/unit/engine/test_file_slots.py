"""Landed files are held as first and latest write per (writer, path), whatever the arrival order."""

from __future__ import annotations

import itertools

from builders import SAFARI, USER, WEBKIT_NETWORKING, Scenario, at, long_running

from chainwatch.engine.hoststate import HostState, admit
from chainwatch.policy import load_policy

POLICY = load_policy()


def _writes(count: int) -> Scenario:
    scenario = Scenario()
    helper = long_running(WEBKIT_NETWORKING, 815, at(-60), responsible_pid=812)
    long_running(SAFARI, 812, at(-60))
    for i in range(count):
        scenario.write(at(i), helper, f"{USER}/Library/Caches/com.apple.Safari/Cache.db")
    scenario.write(at(5), helper, f"{USER}/Downloads/x.zip")
    return scenario


def test_file_slots_repeated_rewrites_keep_first_and_latest_only() -> None:
    state = HostState("mac-01")
    scenario = _writes(200)
    for event in scenario.events:
        admit(state, POLICY, event)
    cache = sorted(e.time_ns for e in state.files if e.path.endswith("Cache.db"))
    assert cache == [at(0), at(199)]
    assert len(state.files) == 3


def test_file_slots_any_arrival_order_same_files() -> None:
    scenario = _writes(4)
    expected = None
    for order in itertools.permutations(scenario.events):
        state = HostState("mac-01")
        for event in order:
            admit(state, POLICY, event)
        held = sorted((e.time_ns, e.path) for e in state.files)
        expected = expected or held
        assert held == expected
