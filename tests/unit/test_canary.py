"""The canary chain and the hop-by-hop waiting logic (with injected hops and a fake clock)."""

from __future__ import annotations

import orjson

from chainwatch.policy import load_policy
from chainwatch.readiness.canary import MARKER, build_canary, is_canary_host, run_canary

POLICY = load_policy()
NOW = 1_772_443_200_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_canary_build_same_run_id_same_finding_id_and_marked() -> None:
    first = build_canary(POLICY, now_ns=NOW, run_id="r1")
    again = build_canary(POLICY, now_ns=NOW + 10**9, run_id="r1")
    assert first.finding_id == again.finding_id  # deterministic ids do not depend on when it runs
    assert build_canary(POLICY, now_ns=NOW, run_id="r2").finding_id != first.finding_id
    assert is_canary_host(first.host) and all(key == first.host for key, _ in first.records)
    texts = [data.decode() for _, data in first.records]
    assert any(MARKER in text for text in texts)
    network = orjson.loads(first.records[-1][1])
    assert network["destination"]["ip"] == "192.0.2.1"  # TEST-NET-1: nothing is ever contacted


def test_canary_run_all_hops_reached_ok_with_latencies() -> None:
    chain = build_canary(POLICY, now_ns=NOW, run_id="ok")
    clock = FakeClock()
    sent: list[tuple[str, bytes]] = []
    result = run_canary(chain, put_records=sent.extend,
                        finding_revision=lambda fid: 1 if clock.now >= 2 and fid == chain.finding_id else None,
                        delivered_to=lambda fid: {"splunk"} if clock.now >= 3 else set(),
                        expected_sinks={"splunk"}, timeout_s=30, sleep=clock.sleep, clock=clock)
    assert result.ok, result.message
    assert sent == list(chain.records)
    assert result.hops["correlate -> outbox"] >= 2 and result.hops["dispatch -> splunk"] >= 3


def test_canary_run_finding_never_in_outbox_stops_at_correlate() -> None:
    chain = build_canary(POLICY, now_ns=NOW, run_id="lost")
    clock = FakeClock()
    result = run_canary(chain, put_records=lambda records: None, finding_revision=lambda fid: None,
                        delivered_to=lambda fid: set(), expected_sinks={"splunk"}, timeout_s=5,
                        sleep=clock.sleep, clock=clock)
    assert not result.ok and result.stopped_at == "correlate"
    assert "did not reach the findings outbox" in result.message


def test_canary_run_one_sink_missing_stops_at_dispatch_naming_it() -> None:
    chain = build_canary(POLICY, now_ns=NOW, run_id="partial")
    clock = FakeClock()
    result = run_canary(chain, put_records=lambda records: None, finding_revision=lambda fid: 1,
                        delivered_to=lambda fid: {"splunk"}, expected_sinks={"splunk", "jira"}, timeout_s=5,
                        sleep=clock.sleep, clock=clock)
    assert not result.ok and result.stopped_at == "dispatch"
    assert "jira" in result.message and "dispatch -> splunk" in result.hops
