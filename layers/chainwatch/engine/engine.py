"""The engine: admits events into per-host state, assembles chains, and lets the window pass.

It is pure: no I/O of its own (state goes through the injected :class:`~chainwatch.engine.store.StateStore`) and
no wall clock in any decision (event time decides; the injected ``clock`` only stamps when a finding was made).

Findings are keyed by their deterministic id. A host is re-assembled when its state changed and either enough
event time has passed or the caller asks (:meth:`Engine.flush`); before the window evicts anything, the host is
assembled first, so evidence is never dropped unread. A later assembly of the same chain replaces the earlier
finding unless it knows fewer stages (evidence that has aged out never downgrades a finding).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chainwatch.engine.chain import assemble
from chainwatch.engine.hoststate import HostState, admit
from chainwatch.engine.store import StateStore
from chainwatch.events import AnyEvent
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
        """Admit one event; re-assemble its host when enough event time has passed."""
        self.stats.events += 1
        state = self.state_for(event.host)
        mark = self._marks.get(event.host)
        if mark is None:
            mark = self._marks[event.host] = _HostMark(assembled_at_ns=event.time_ns)
            self.stats.hosts.add(event.host)
        if admit(state, self.policy, event):
            self.stats.admitted += 1
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
        for finding in assemble(state, self.policy):
            previous = self.findings.get(finding.finding_id)
            if previous is not None and (len(finding.stages) < len(previous.stages) or finding == previous):
                continue
            self.findings[finding.finding_id] = finding
            self._changed[finding.finding_id] = finding
            self.stats.findings_changed += 1

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
