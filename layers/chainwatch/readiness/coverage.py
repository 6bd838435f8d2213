"""Readiness: can this host's telemetry complete the AN1316 chain at all?

Cheap per-host counters are kept while events are read (:class:`HostCoverage.observe` is a few dict updates per
event). Each telemetry need of the analytic is tracked with its last-seen time, volume and quality:

=====================  ==========================================================================================
need                   quality measured
=====================  ==========================================================================================
``app_activity``       unified-log launch/click/crash of apps (stage 1; an app exec is the weaker fallback)
``file_events``        file creates/renames/writes in watched paths (stage 2)
``process_exec``       share of execs with a parent, with arguments, with signing information (stage 3)
``quarantine``         quarantine attribute and Gatekeeper events (stage 3, quarantined-app route)
``network``            share of connections attributable to a process (entity id, or at least a pid) (stage 4)
=====================  ==========================================================================================

Across sources on one host it also measures clock skew (how far one source's newest event trails another's, e.g.
a unified log hours behind the Endpoint Security stream) and records that arrive out of order beyond a tolerance.
:func:`verdict` turns that into "can complete AN1316: yes / no, because ...".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chainwatch.events import (
    AnyEvent,
    AppActivity,
    FileWrite,
    Gatekeeper,
    NetworkConnection,
    ProcessExec,
    SourceFormat,
    XattrChange,
)
from chainwatch.findings.model import Finding, Stage
from chainwatch.policy import Policy, Role

NEEDS = ("app_activity", "file_events", "process_exec", "quarantine", "network")
NEED_TITLES = {
    "app_activity": "app activity (unified log)",
    "file_events": "file events in watched paths",
    "process_exec": "process exec with parent and args",
    "quarantine": "quarantine / Gatekeeper",
    "network": "per-process network",
}
#: A record older than its source's newest by more than this counts as out of order.
OUT_OF_ORDER_TOLERANCE_NS = 60_000_000_000
#: Shares below this make a need "weak".
GOOD_SHARE = 0.9


@dataclass
class SourceStats:
    count: int = 0
    newest_ns: int = 0
    oldest_ns: int = 0
    out_of_order: int = 0

    def observe(self, time_ns: int) -> None:
        if self.count == 0 or time_ns < self.oldest_ns:
            self.oldest_ns = time_ns
        if self.newest_ns and time_ns < self.newest_ns - OUT_OF_ORDER_TOLERANCE_NS:
            self.out_of_order += 1
        self.newest_ns = max(self.newest_ns, time_ns)
        self.count += 1


@dataclass
class HostCoverage:
    """Telemetry counters of one host."""

    host: str
    needs: dict[str, list[int]] = field(default_factory=dict)  # need -> [count, last seen ns]
    sources: dict[str, SourceStats] = field(default_factory=dict)
    exec_total: int = 0
    exec_with_parent: int = 0
    exec_with_args: int = 0
    exec_with_signing: int = 0
    app_execs: int = 0
    net_total: int = 0
    net_with_entity: int = 0
    net_with_pid: int = 0
    stalled: dict[str, int] = field(default_factory=dict)  # "stage3_no_egress", ... -> count

    def _need(self, name: str, time_ns: int) -> None:
        entry = self.needs.get(name)
        if entry is None:
            self.needs[name] = [1, time_ns]
        else:
            entry[0] += 1
            entry[1] = max(entry[1], time_ns)

    def observe(self, event: AnyEvent, policy: Policy) -> None:
        """Count one event (cheap: called for every event read)."""
        stats = self.sources.get(event.source.value)
        if stats is None:
            stats = self.sources[event.source.value] = SourceStats()
        stats.observe(event.time_ns)
        if isinstance(event, ProcessExec):
            target = event.target
            self.exec_total += 1
            self._need("process_exec", event.time_ns)
            if target.ppid is not None or target.parent_entity_id:
                self.exec_with_parent += 1
            if target.args:
                self.exec_with_args += 1
            if target.signature is not None and (target.signature.signing_id or target.signature.team_id
                                                 or target.signature.cdhash):
                self.exec_with_signing += 1
            role = policy.classify(target.executable, target.signature)
            if role is not None and role.role is Role.APP:
                self.app_execs += 1
        elif isinstance(event, NetworkConnection):
            self.net_total += 1
            self._need("network", event.time_ns)
            if event.process is not None:
                self.net_with_pid += 1
                if event.process.entity_id:
                    self.net_with_entity += 1
        elif isinstance(event, AppActivity):
            self._need("app_activity", event.time_ns)
        elif isinstance(event, FileWrite):
            if policy.is_watched(event.path):
                self._need("file_events", event.time_ns)
        elif isinstance(event, XattrChange | Gatekeeper):
            self._need("quarantine", event.time_ns)

    def note_findings(self, findings: Iterable[Finding]) -> None:
        """Count partial chains that stalled for lack of a telemetry type."""
        for finding in findings:
            present = {s.stage for s in finding.stages}
            if Stage.EGRESS not in present:
                self.stalled["stage3_no_egress"] = self.stalled.get("stage3_no_egress", 0) + 1
            if Stage.APP_ACTIVITY not in present:
                self.stalled["no_app_activity"] = self.stalled.get("no_app_activity", 0) + 1
            if Stage.FILE_LANDING not in present:
                self.stalled["no_file_landing"] = self.stalled.get("no_file_landing", 0) + 1

    @property
    def skew_ns(self) -> int:
        """How far the most-behind source's newest event trails the most-ahead one's (0 with one source)."""
        newest = [s.newest_ns for s in self.sources.values() if s.count]
        return max(newest) - min(newest) if len(newest) > 1 else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "needs": self.needs,
            "sources": {k: [v.count, v.newest_ns, v.oldest_ns, v.out_of_order] for k, v in self.sources.items()},
            "exec": [self.exec_total, self.exec_with_parent, self.exec_with_args, self.exec_with_signing,
                     self.app_execs],
            "net": [self.net_total, self.net_with_entity, self.net_with_pid], "stalled": self.stalled,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostCoverage:
        coverage = cls(host=str(data["host"]))
        coverage.needs = {str(k): [int(v[0]), int(v[1])] for k, v in data.get("needs", {}).items()}
        for name, values in data.get("sources", {}).items():
            coverage.sources[str(name)] = SourceStats(*(int(v) for v in values))
        (coverage.exec_total, coverage.exec_with_parent, coverage.exec_with_args, coverage.exec_with_signing,
         coverage.app_execs) = (int(v) for v in data.get("exec", [0, 0, 0, 0, 0]))
        coverage.net_total, coverage.net_with_entity, coverage.net_with_pid = (
            int(v) for v in data.get("net", [0, 0, 0]))
        coverage.stalled = {str(k): int(v) for k, v in data.get("stalled", {}).items()}
        return coverage

    def merge(self, other: HostCoverage) -> None:
        """Add another period's counters to these (coverage items are summed across batches)."""
        for name, (count, last) in other.needs.items():
            entry = self.needs.setdefault(name, [0, 0])
            entry[0] += count
            entry[1] = max(entry[1], last)
        for name, stats in other.sources.items():
            mine = self.sources.setdefault(name, SourceStats())
            mine.oldest_ns = min(mine.oldest_ns, stats.oldest_ns) if mine.count else stats.oldest_ns
            mine.count += stats.count
            mine.newest_ns = max(mine.newest_ns, stats.newest_ns)
            mine.out_of_order += stats.out_of_order
        self.exec_total += other.exec_total
        self.exec_with_parent += other.exec_with_parent
        self.exec_with_args += other.exec_with_args
        self.exec_with_signing += other.exec_with_signing
        self.app_execs += other.app_execs
        self.net_total += other.net_total
        self.net_with_entity += other.net_with_entity
        self.net_with_pid += other.net_with_pid
        for name, count in other.stalled.items():
            self.stalled[name] = self.stalled.get(name, 0) + count


@dataclass(frozen=True)
class NeedStatus:
    need: str
    status: str  # "ok", "weak", "missing"
    detail: str


@dataclass(frozen=True)
class Verdict:
    host: str
    can_complete: bool
    reasons: tuple[str, ...]
    needs: tuple[NeedStatus, ...]

    @property
    def text(self) -> str:
        answer = "yes" if self.can_complete else "no"
        why = "; ".join(self.reasons) if self.reasons else "every link has telemetry"
        return f"{self.host}: can complete AN1316: {answer}" + (f", because {why}" if not self.can_complete
                                                                 else f" ({why})")


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def verdict(coverage: HostCoverage, window_ns: int) -> Verdict:
    """Whether this host's telemetry can complete the chain, and which links are missing or weak."""
    needs: list[NeedStatus] = []
    blockers: list[str] = []
    weak: list[str] = []

    def count(name: str) -> int:
        return coverage.needs.get(name, [0, 0])[0]

    if count("app_activity"):
        needs.append(NeedStatus("app_activity", "ok", f"{count('app_activity')} unified-log app events"))
    elif coverage.app_execs:
        needs.append(NeedStatus("app_activity", "weak", "no unified log; app execs only (fallback evidence)"))
        weak.append("stage 1 relies on app execs (no unified-log launch/click/crash)")
    else:
        needs.append(NeedStatus("app_activity", "missing", "no unified-log app activity and no app execs"))
        blockers.append("no app activity: no unified log and no exec of a policy app")

    if count("file_events"):
        needs.append(NeedStatus("file_events", "ok", f"{count('file_events')} file events in watched paths"))
    else:
        needs.append(NeedStatus("file_events", "missing", "no file events in ~/Downloads, /private/var/folders, "
                                                          "~/Library"))
        blockers.append("no file events in the watched paths")

    if coverage.exec_total == 0:
        needs.append(NeedStatus("process_exec", "missing", "no process exec events"))
        blockers.append("no process exec events (no lineage to the child)")
    else:
        parent = _share(coverage.exec_with_parent, coverage.exec_total)
        args = _share(coverage.exec_with_args, coverage.exec_total)
        signing = _share(coverage.exec_with_signing, coverage.exec_total)
        detail = (f"{coverage.exec_total} execs; parent {parent:.0%}, args {args:.0%}, signing {signing:.0%}")
        if parent < GOOD_SHARE:
            needs.append(NeedStatus("process_exec", "missing" if parent == 0 else "weak", detail))
            (blockers if parent == 0 else weak).append(f"only {parent:.0%} of execs name their parent")
        elif args < GOOD_SHARE or signing < GOOD_SHARE:
            needs.append(NeedStatus("process_exec", "weak", detail))
            if signing < GOOD_SHARE:
                weak.append(f"only {signing:.0%} of execs carry signing info (binaries identified by path only)")
            if args < GOOD_SHARE:
                weak.append(f"only {args:.0%} of execs carry arguments (file links weaker)")
        else:
            needs.append(NeedStatus("process_exec", "ok", detail))

    if count("quarantine"):
        needs.append(NeedStatus("quarantine", "ok", f"{count('quarantine')} quarantine/Gatekeeper events"))
    else:
        needs.append(NeedStatus("quarantine", "weak", "no quarantine or Gatekeeper events"))
        weak.append("no quarantine/Gatekeeper context (quarantined-app route linked by path and name only)")

    if coverage.net_total == 0:
        needs.append(NeedStatus("network", "missing", "no network events"))
        blockers.append("no network events (stage 4 cannot be seen)")
    else:
        with_pid = _share(coverage.net_with_pid, coverage.net_total)
        detail = (f"{coverage.net_total} connections; with process {with_pid:.0%}, with entity id "
                  f"{_share(coverage.net_with_entity, coverage.net_total):.0%}")
        if with_pid == 0:
            needs.append(NeedStatus("network", "missing", detail))
            blockers.append("network events carry no process (egress cannot be attributed to the child)")
        elif with_pid < GOOD_SHARE:
            needs.append(NeedStatus("network", "weak", detail))
            weak.append(f"only {with_pid:.0%} of connections name a process")
        else:
            needs.append(NeedStatus("network", "ok", detail))

    skew = coverage.skew_ns
    if skew > window_ns:
        behind = min(coverage.sources.items(), key=lambda kv: kv[1].newest_ns)[0]
        blockers.append(f"{behind} is {skew / 3.6e12:.1f} h behind the other sources (beyond the "
                        f"{window_ns / 3.6e12:.1f} h window)")
    elif skew > window_ns // 4:
        behind = min(coverage.sources.items(), key=lambda kv: kv[1].newest_ns)[0]
        weak.append(f"{behind} lags the other sources by {skew / 6e10:.0f} min")
    disorder = sum(s.out_of_order for s in coverage.sources.values())
    if disorder:
        weak.append(f"{disorder} records arrived out of order beyond {OUT_OF_ORDER_TOLERANCE_NS // 10**9} s")
    stalled = coverage.stalled.get("stage3_no_egress", 0)
    if stalled and any(n.need == "network" and n.status != "ok" for n in needs):
        blockers.append(f"{stalled} chain(s) reached stage 3 here with no per-process network telemetry")
    return Verdict(coverage.host, not blockers, tuple(blockers or weak), tuple(needs))


def fleet_summary(verdicts: Iterable[Verdict]) -> dict[str, Any]:
    """How many hosts can complete the chain, and the most common reasons the others cannot."""
    items = list(verdicts)
    reasons: dict[str, int] = {}
    for item in items:
        if not item.can_complete:
            for reason in item.reasons:
                key = reason.split(" (")[0]
                reasons[key] = reasons.get(key, 0) + 1
    return {"hosts": len(items), "can_complete": sum(1 for v in items if v.can_complete),
            "cannot_complete": sum(1 for v in items if not v.can_complete),
            "top_reasons": sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:10]}


def collect(events: Iterable[AnyEvent], policy: Policy,
            coverage: dict[str, HostCoverage] | None = None) -> dict[str, HostCoverage]:
    """Per-host coverage of a stream of events (added to ``coverage`` when given)."""
    hosts = coverage if coverage is not None else {}
    for event in events:
        host = hosts.get(event.host)
        if host is None:
            host = hosts[event.host] = HostCoverage(event.host)
        host.observe(event, policy)
    return hosts


def render_text(verdicts: list[Verdict], coverages: dict[str, HostCoverage]) -> str:
    """The coverage report as text: a verdict per host, the needs matrix, and the fleet summary."""
    lines = []
    marks = {"ok": "ok", "weak": "WEAK", "missing": "MISSING"}
    header = f"{'host':<28}" + "".join(f"{NEED_TITLES[n][:18]:<20}" for n in NEEDS) + "skew"
    lines.append(header)
    for item in verdicts:
        status = {n.need: marks[n.status] for n in item.needs}
        skew = coverages[item.host].skew_ns / 6e10
        lines.append(f"{item.host[:27]:<28}" + "".join(f"{status.get(n, '-'):<20}" for n in NEEDS)
                     + f"{skew:.0f} min")
    lines.append("")
    for item in verdicts:
        lines.append(item.text)
        for need in item.needs:
            if need.status != "ok":
                lines.append(f"    {NEED_TITLES[need.need]}: {need.status}: {need.detail}")
    summary = fleet_summary(verdicts)
    lines.append("")
    lines.append(f"fleet: {summary['can_complete']} of {summary['hosts']} hosts can complete AN1316")
    for reason, count in summary["top_reasons"]:
        lines.append(f"    {count} host(s): {reason}")
    return "\n".join(lines)


__all__ = ["NEEDS", "NEED_TITLES", "HostCoverage", "SourceFormat", "Verdict", "fleet_summary", "verdict"]


# -- persistence in the state table ---------------------------------------------------------------------------

COVERAGE_SK = "coverage"


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)[:40]


def update_request(coverage: HostCoverage, expires_at: int) -> dict[str, Any]:
    """``UpdateItem`` arguments that add this period's counters to a host's coverage item (no read needed).

    Counts are ``ADD``ed; last-seen times are ``SET`` (a flush carries the newest it saw, and flushes of one host
    come from one shard in order, so the last write is the newest).
    """
    adds: dict[str, int] = {}
    sets: dict[str, int] = {"expires_at": expires_at}
    for need, (count, last) in coverage.needs.items():
        adds[f"n_{need}"] = count
        sets[f"t_{need}"] = last
    for source, stats in coverage.sources.items():
        name = _safe_name(source)
        adds[f"s_{name}_n"] = stats.count
        adds[f"s_{name}_ooo"] = stats.out_of_order
        sets[f"s_{name}_new"] = stats.newest_ns
        sets[f"s_{name}_old"] = stats.oldest_ns
    for key, value in (("ex_total", coverage.exec_total), ("ex_parent", coverage.exec_with_parent),
                       ("ex_args", coverage.exec_with_args), ("ex_sign", coverage.exec_with_signing),
                       ("ex_app", coverage.app_execs), ("net_total", coverage.net_total),
                       ("net_entity", coverage.net_with_entity), ("net_pid", coverage.net_with_pid)):
        adds[key] = value
    for name, count in coverage.stalled.items():
        adds[f"st_{_safe_name(name)}"] = count
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    clauses_add, clauses_set = [], []
    for index, (key, value) in enumerate(sorted(adds.items())):
        names[f"#a{index}"] = key
        values[f":a{index}"] = {"N": str(value)}
        clauses_add.append(f"#a{index} :a{index}")
    for index, (key, value) in enumerate(sorted(sets.items())):
        names[f"#s{index}"] = key
        values[f":s{index}"] = {"N": str(value)}
        clauses_set.append(f"#s{index} = :s{index}")
    return {"Key": {"pk": {"S": f"host#{coverage.host}"}, "sk": {"S": COVERAGE_SK}},
            "UpdateExpression": f"ADD {', '.join(clauses_add)} SET {', '.join(clauses_set)}",
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}


def from_item(item: dict[str, Any]) -> HostCoverage:
    """A coverage item (low-level DynamoDB JSON) back to :class:`HostCoverage`."""
    def number(key: str) -> int:
        value = item.get(key)
        return int(value["N"]) if isinstance(value, dict) and "N" in value else 0

    host = str(item["pk"]["S"]).split("#", 1)[1]
    coverage = HostCoverage(host)
    for key in item:
        if key.startswith("n_"):
            need = key[2:]
            coverage.needs[need] = [number(key), number(f"t_{need}")]
        elif key.startswith("s_") and key.endswith("_n"):
            source = key[2:-2]
            coverage.sources[source] = SourceStats(number(key), number(f"s_{source}_new"), number(f"s_{source}_old"),
                                                   number(f"s_{source}_ooo"))
        elif key.startswith("st_"):
            coverage.stalled[key[3:]] = number(key)
    coverage.exec_total, coverage.exec_with_parent = number("ex_total"), number("ex_parent")
    coverage.exec_with_args, coverage.exec_with_signing = number("ex_args"), number("ex_sign")
    coverage.app_execs = number("ex_app")
    coverage.net_total, coverage.net_with_entity, coverage.net_with_pid = (
        number("net_total"), number("net_entity"), number("net_pid"))
    return coverage


def read_table(client: Any, table: str) -> dict[str, HostCoverage]:
    """Every host's coverage item from a deployed state table (expired items filtered: TTL deletes lazily)."""
    import time as _time

    now = int(_time.time())
    hosts: dict[str, HostCoverage] = {}
    kwargs: dict[str, Any] = {"TableName": table, "FilterExpression": "sk = :c AND (attribute_not_exists(expires_at) "
                              "OR expires_at > :now)",
                              "ExpressionAttributeValues": {":c": {"S": COVERAGE_SK}, ":now": {"N": str(now)}}}
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            coverage = from_item(item)
            hosts[coverage.host] = coverage
        if "LastEvaluatedKey" not in page:
            return hosts
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class CoverageBuffer:
    """Per-container coverage counters, flushed to the state table at most once per interval per host.

    Counting every host in every batch would cost a DynamoDB call for hosts whose records carry nothing the chain
    can use; buffering keeps that to one ``UpdateItem`` per host per interval. Counters of a container that is
    recycled before its next flush are lost, so coverage volumes are lower bounds (good enough for "is this
    telemetry flowing and attributable"; the verdicts use shares and last-seen times).
    """

    def __init__(self, policy: Policy, *, interval_ns: int = 300 * 10**9,
                 retention_ns: int = 7 * 86_400 * 10**9) -> None:
        self.policy = policy
        self.interval_ns = interval_ns
        self.retention_ns = retention_ns
        self.pending: dict[str, HostCoverage] = {}
        self.flushed_at: dict[str, int] = {}

    def observe(self, events: Iterable[AnyEvent]) -> None:
        collect(events, self.policy, self.pending)

    def note_findings(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            coverage = self.pending.get(finding.host)
            if coverage is None:
                coverage = self.pending[finding.host] = HostCoverage(finding.host)
            coverage.note_findings([finding])

    def due(self, now_ns: int) -> list[HostCoverage]:
        """Counters whose host has not been flushed for an interval (removed from the buffer)."""
        ready = [h for h in self.pending if now_ns - self.flushed_at.get(h, 0) >= self.interval_ns]
        out = []
        for host in ready:
            out.append(self.pending.pop(host))
            self.flushed_at[host] = now_ns
        return out

    def requests(self, now_ns: int) -> list[dict[str, Any]]:
        expires = (now_ns + self.retention_ns) // 10**9
        return [update_request(c, expires) for c in self.due(now_ns)]
