"""The engine: admits events into per-host state, assembles chains, and lets the window pass.

It is pure: no I/O of its own (state goes through the injected :class:`~chainwatch.engine.store.StateStore`) and
no wall clock in any decision (event time decides; the injected ``clock`` only stamps when a finding was made).

Findings are keyed by their deterministic id. A host is re-assembled when its state changed and either enough
event time has passed or the caller asks (:meth:`Engine.flush`); before the window evicts anything, the host is
assembled first, so evidence is never dropped unread.

While all of a chain's evidence is still in the state, the latest assembly is the truth: it replaces the earlier
finding even with fewer stages, and an earlier finding it no longer produces is withdrawn. Both happen when
evidence arrives out of order: before a shell's exec arrives, its curl child looks like the app's direct child (a
chain of its own), and a late egress can push stage 1 out of the window. That is what makes findings independent
of arrival order. Once evidence has aged out of the state, an assembly knows less, so it never downgrades or
withdraws such a finding.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chainwatch.engine.chain import assemble
from chainwatch.engine.hoststate import HostState, admit, relevant
from chainwatch.engine.store import StateStore
from chainwatch.events import AnyEvent, ProcessExit
from chainwatch.findings.model import Finding
from chainwatch.policy import Policy

#: How much event time may pass on a host before it is re-assembled and its window advanced.
DEFAULT_STEP_NS = 60_000_000_000


@dataclass
class EngineStats:
    events: int = 0
    admitted: int = 0
    assemblies: int = 0
    findings_changed: int = 0
    findings_withdrawn: int = 0
    evictions: int = 0
    hosts: set[str] = field(default_factory=set)


@dataclass
class _HostMark:
    dirty: bool = False
    assembled_at_ns: int = 0


class Engine:
    """AN1316 correlation over a stream of canonical events.

    Parameters
    ----------
    policy:
        The analytic's data (apps, paths, windows, allowlists).
    store:
        Where per-host state lives (in memory for the CLI, DynamoDB in Lambda).
    clock:
        Wall-clock nanoseconds, injected for tests; used only to stamp findings.
    step_ns:
        Event time between automatic re-assemblies of a host.
    """

    def __init__(self, policy: Policy, store: StateStore, clock: Callable[[], int] = time.time_ns,
                 step_ns: int = DEFAULT_STEP_NS) -> None:
        self.policy = policy
        self.store = store
        self.clock = clock
        self.step_ns = step_ns
        self.findings: dict[str, Finding] = {}
        self.stats = EngineStats()
        self._marks: dict[str, _HostMark] = {}
        self._changed: dict[str, Finding] = {}

    # -- ingest ------------------------------------------------------------------------------------------------
    def state_for(self, host: str) -> HostState:
        state = self.store.load(host)
        if state is None:
            state = HostState(host)
            self.store.save(state)
        return state

    def ingest(self, event: AnyEvent) -> None:
        """Admit one event; re-assemble its host when enough event time has passed.

        Only what is kept counts: an event the engine does not keep creates no state, starts no schedule and moves
        no clock, so leaving such events out (the relevance gate, tracked-only mapping) changes nothing.
        """
        self.stats.events += 1
        host = event.host
        self.stats.hosts.add(host)
        if not relevant(self.policy, event):
            return
        state = self.state_for(host)
        if not admit(state, self.policy, event):
            return
        self.stats.admitted += 1
        mark = self._marks.get(host)
        if mark is None:
            mark = self._marks[host] = _HostMark(assembled_at_ns=event.time_ns)
        mark.dirty = True
        if state.watermark_ns - mark.assembled_at_ns >= self.step_ns:
            self._advance(state, mark)

    def ingest_all(self, events: Iterable[AnyEvent]) -> None:
        for event in events:
            self.ingest(event)

    # -- assembly and windows ----------------------------------------------------------------------------------
    def _advance(self, state: HostState, mark: _HostMark) -> None:
        if mark.dirty:
            self._assemble(state)
            mark.dirty = False
        mark.assembled_at_ns = state.watermark_ns
        # Keep twice the window: a chain's stage 1 may precede its stage 4 by a whole window, and late records
        # of that chain still need their neighbours.
        horizon = state.watermark_ns - 2 * self.policy.window_ns
        if horizon > 0 and len(state):
            state.evict_before(horizon)
            self.stats.evictions += 1
        self.store.save(state)

    def _assemble(self, state: HostState) -> None:
        self.stats.assemblies += 1
        changed, withdrawn = reconcile(state, assemble(state, self.policy))
        for finding, _revision, _digest in changed:
            self.findings[finding.finding_id] = finding
            self._changed[finding.finding_id] = finding
            self.stats.findings_changed += 1
        for finding_id in withdrawn:
            # Superseded: with the evidence that arrived since, this chain does not exist (it was built from
            # partial lineage). A finding already returned by flush() stays returned.
            self.findings.pop(finding_id, None)
            self._changed.pop(finding_id, None)
            self.stats.findings_withdrawn += 1

    def flush(self) -> list[Finding]:
        """Assemble every host with new evidence; return findings created or changed since the last flush."""
        for host, mark in self._marks.items():
            if mark.dirty:
                state = self.state_for(host)
                self._assemble(state)
                mark.dirty = False
                self.store.save(state)
        changed = [self._changed[k] for k in sorted(self._changed)]
        self._changed.clear()
        return changed

    def all_findings(self) -> list[Finding]:
        """Every finding so far, sorted by first-seen time then id."""
        return sorted(self.findings.values(), key=lambda f: (f.first_seen_ns, f.finding_id))


def finding_digest(finding: Finding) -> str:
    """A stable digest of a finding's content (its repr is deterministic; ``hash()`` is salted per process)."""
    return hashlib.sha256(repr(finding).encode()).hexdigest()[:24]


def _complete(record: list[Any], state: HostState) -> bool:
    """Whether everything a recorded finding was built from is still in ``state`` (nothing of it evicted)."""
    return bool(record[3] >= state.horizon_ns and record[4] in state.processes.nodes)


def reconcile(state: HostState, findings: list[Finding]) -> tuple[list[tuple[Finding, int, str]], list[str]]:
    """Compare a fresh assembly with the findings recorded in ``state`` and update the record.

    Returns the findings that are new or changed, each with its revision and digest, and the ids of findings
    withdrawn. While all of a finding's evidence is still held, the latest assembly wins (later evidence may show
    a chain was built from partial lineage, or that stage 1 is outside the window); once evidence has aged out, a
    finding is never downgraded by what is left.
    """
    records = state.finding_digests
    produced: set[str] = set()
    changed: list[tuple[Finding, int, str]] = []
    for finding in findings:
        produced.add(finding.finding_id)
        digest = finding_digest(finding)
        previous = records.get(finding.finding_id)
        revision = 1
        if previous is not None:
            if previous[1] == digest:
                continue
            if len(finding.stages) < previous[2] and not _complete(previous, state):
                continue
            revision = int(previous[0]) + 1
        records[finding.finding_id] = [revision, digest, len(finding.stages), finding.first_seen_ns,
                                       finding.stage3_key]
        changed.append((finding, revision, digest))
    withdrawn = []
    for finding_id in sorted(set(records) - produced):
        if _complete(records[finding_id], state):
            del records[finding_id]
            withdrawn.append(finding_id)
    return changed, withdrawn


@dataclass
class HostResult:
    """What one batch of events did to one host's state."""

    admitted: int
    changed: list[tuple[Finding, int, str]]
    withdrawn: list[str]


def correlate_host(state: HostState, events: Iterable[AnyEvent], policy: Policy) -> HostResult:
    """Admit a batch of one host's events, assemble once, reconcile findings and let the window pass.

    The pipeline's unit of work: pure, so a conflicting write can simply re-run it on freshly read state.
    """
    admitted = 0
    for event in events:
        if admit(state, policy, event):
            admitted += 1
    if not admitted:
        return HostResult(0, [], [])
    changed, withdrawn = reconcile(state, assemble(state, policy))
    horizon = state.watermark_ns - 2 * policy.window_ns
    if horizon > 0:
        state.evict_before(horizon)
    return HostResult(admitted, changed, withdrawn)


def would_admit(policy: Policy, event: AnyEvent) -> bool:
    """Whether ``event`` would be kept by a host that holds nothing yet (a local decision: no state is built).

    The same as admitting it into an empty :class:`HostState`: relevant, and an exit only of a tracked process
    (an empty state tracks no other).
    """
    if not relevant(policy, event):
        return False
    if isinstance(event, ProcessExit):
        return event.process is not None and policy.tracks_process(event.process)[0]
    return True
