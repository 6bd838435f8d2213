"""Severity and alerting from the evidence, driven by the policy's ``severity`` and ``behaviours`` data.

Each *signal* below is a small pure function of the chain (its processes, egress, Gatekeeper and quarantine
context); the policy's rules name signals, so a detection engineer changes what raises or caps severity without
Python. A finding starts from its stages and links, every matching ``raise`` rule lifts it to at least its level
and adds its score, and a ``cap`` rule lowers it (a known vendor's quiet install is at most low). The score ranks
findings of the same severity.

The *behavioural floor*: a delivered app (quarantined, translocated, run from a volume, or opened after a
Gatekeeper override) whose tree shows one of the policy's floor behaviours is an alert even when the download or
the app's own activity was not seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chainwatch.engine.candidate import Candidate
from chainwatch.engine.lineage import ProcNode
from chainwatch.events import FileWrite, Gatekeeper, GatekeeperAction
from chainwatch.findings.model import Egress, Link, Severity, Stage, Strength
from chainwatch.policy import Behaviour, Policy

_CMD_EXCERPT = 160


@dataclass
class ChainFacts:
    """What grading looks at, gathered once by chain assembly."""

    candidate: Candidate
    intermediates: list[ProcNode]  # between the app and stage 3
    tree: list[ProcNode]  # stage 3 and its descendants
    egress: list[Egress]
    gatekeeper: list[Gatekeeper]
    quarantined: bool
    landed: list[FileWrite]  # the stage-2 file and what chain processes wrote
    present: set[Stage]
    links: list[Link]
    hits: list[tuple[Behaviour, ProcNode]] = field(default_factory=list)


@dataclass(frozen=True)
class Grade:
    severity: Severity
    score: int
    reasons: tuple[str, ...]
    is_alert: bool
    floor: bool
    rules: tuple[str, ...] = ()  # the ids of the severity rules that matched


def behaviour_hits(nodes: Sequence[ProcNode], policy: Policy) -> list[tuple[Behaviour, ProcNode]]:
    """Each behaviour seen in ``nodes``, once, at its most specific process (the shortest command line showing it:
    the ``security find-generic-password`` the script ran rather than the whole AppleScript that ran it)."""
    best: dict[str, tuple[tuple[int, int, str], ProcNode]] = {}
    for node in nodes:
        name = node.role.name if node.role is not None else node.name
        cmdline = node.cmdline
        for behaviour in policy.behaviours:
            if behaviour.matches(name, cmdline) or behaviour.matches(node.name, cmdline):
                rank = (len(cmdline), node.start_ns, node.key)
                if behaviour.id not in best or rank < best[behaviour.id][0]:
                    best[behaviour.id] = (rank, node)
    return [(b, best[b.id][1]) for b in policy.behaviours if b.id in best]


def file_hits(landed: Sequence[FileWrite], tree: Sequence[ProcNode],
              policy: Policy) -> list[tuple[Behaviour, ProcNode]]:
    """Behaviours shown by a file a chain process wrote (a LaunchAgent plist), at the process that wrote it."""
    by_pid = {n.pid: n for n in tree}
    hits: list[tuple[Behaviour, ProcNode]] = []
    for behaviour in policy.behaviours:
        if not behaviour.paths:
            continue
        for item in sorted(landed, key=lambda f: (f.time_ns, f.path)):
            writer = by_pid.get(item.process.pid) if item.process is not None else None
            if writer is not None and behaviour.paths.match(item.path):
                hits.append((behaviour, writer))
                break
    return hits


# -- signals -------------------------------------------------------------------------------------------------


def is_unsigned(node: ProcNode) -> bool:
    sig = node.signature
    if sig is None:
        return False
    if sig.validation_category in (7, 10):
        return True
    return sig.platform_binary is False and not sig.team_id and sig.signed is not True


def _unsigned_process(facts: ChainFacts, policy: Policy) -> str | None:
    found = next((n for n in (*facts.intermediates, *facts.tree) if is_unsigned(n)), None)
    return found.name if found is not None else None


def _revoked_signature(facts: ChainFacts, policy: Policy) -> str | None:
    for node in (*facts.intermediates, *facts.tree):
        sig = node.signature
        if sig is not None and (sig.validation_category == 0 or (sig.signed is True and sig.trusted is False)):
            return node.name
    return None


def _unknown_team(facts: ChainFacts, policy: Policy) -> str | None:
    for node in facts.tree:
        sig = node.signature
        if sig is None or sig.platform_binary or not sig.team_id:
            continue
        if policy.vendor_for_team(sig.team_id) is None and not any(sig.team_id in a.team_ids for a in policy.apps):
            return f"{sig.team_id} ({node.name})"
    return None


def _gatekeeper_override(facts: ChainFacts, policy: Policy) -> str | None:
    overrides = (GatekeeperAction.USER_OVERRIDE, GatekeeperAction.REJECTION_CLEARED)
    found = next((g for g in facts.gatekeeper if g.action in overrides), None)
    return found.action.value if found is not None else None


def _raw_ip_egress(facts: ChainFacts, policy: Policy) -> str | None:
    found = next((e for e in facts.egress if e.hostname is None and e.destination_class == "external"), None)
    return found.dst_ip if found is not None else None


def _payload_executed(facts: ChainFacts, policy: Policy) -> str | None:
    landed = {f.path for f in facts.landed}
    for node in facts.tree:
        if node is facts.candidate.stage3 and facts.candidate.route == "quarantined_app":
            continue  # the opened app is the download itself: that is the route, not an extra behaviour
        for path in (node.executable, node.script_path):
            if path and path in landed:
                return f"{node.name} ran {path}, which the chain landed"
    return None


def _known_vendor_quiet(facts: ChainFacts, policy: Policy) -> str | None:
    candidate = facts.candidate
    tolerated = policy.severity.vendor_tolerated
    if candidate.route == "interpreter" or any(b.id not in tolerated for b, _ in facts.hits):
        return None
    if _unsigned_process(facts, policy) or _revoked_signature(facts, policy):
        return None
    teams = [candidate.stage3.signature.team_id] if candidate.stage3.signature else []
    teams += [g.team_id for g in facts.gatekeeper if g.team_id]
    vendor = next((v for t in teams if t and (v := policy.vendor_for_team(t)) is not None), None)
    if vendor is None:
        return None
    if any(not (e.hostname and vendor.hostnames.match(e.hostname)) for e in facts.egress):
        return None  # a raw IP or another vendor's domain: not this vendor's quiet install
    shown = sorted({b.id for b, _ in facts.hits})
    behaviour = f"only {', '.join(shown)} (usual for its installers)" if shown else "no behaviour of note"
    return (f"signed by known vendor {vendor.name}; {behaviour}; talks only to {vendor.name}'s domains"
            if facts.egress else f"signed by known vendor {vendor.name}; {behaviour}; no egress")


_SIGNALS: dict[str, Callable[[ChainFacts, Policy], str | None]] = {
    "unsigned_process": _unsigned_process,
    "revoked_signature": _revoked_signature,
    "unknown_team": _unknown_team,
    "gatekeeper_override": _gatekeeper_override,
    "raw_ip_egress": _raw_ip_egress,
    "payload_executed": _payload_executed,
    "known_vendor_quiet": _known_vendor_quiet,
}


def signal_names() -> frozenset[str]:
    """The signals this engine computes (the policy loader's list must be the same)."""
    return frozenset(_SIGNALS)


def signals(facts: ChainFacts, policy: Policy) -> dict[str, str]:
    """Every signal that holds for the chain, with a detail for the reason text."""
    out: dict[str, str] = {}
    for name, compute in _SIGNALS.items():
        detail = compute(facts, policy)
        if detail is not None:
            out[name] = detail
    for behaviour, node in facts.hits:
        excerpt = node.cmdline if len(node.cmdline) <= _CMD_EXCERPT else node.cmdline[:_CMD_EXCERPT - 3] + "..."
        out[f"behaviour:{behaviour.id}"] = (f"{behaviour.id.replace('-', ' ')} by {node.name} (pid {node.pid}): "
                                            f"{behaviour.description}: {excerpt}")
    return out


# -- grading -------------------------------------------------------------------------------------------------


def delivered(facts: ChainFacts) -> bool:
    """Whether stage 3 is an opened download (quarantined, translocated, from a volume, or Gatekeeper overrode)."""
    candidate = facts.candidate
    if candidate.route == "interpreter":
        return False
    steps = {s.step for s in candidate.delivery}
    overridden = any(g.action in (GatekeeperAction.USER_OVERRIDE, GatekeeperAction.REJECTION_CLEARED)
                     for g in facts.gatekeeper)
    return bool(facts.quarantined or overridden or steps & {"translocate", "mount", "copy", "download", "install"})


def grade(facts: ChainFacts, policy: Policy) -> Grade:
    """Severity, score, reasons and alerting of one chain."""
    config = policy.severity
    present = facts.present
    weak = [lk for lk in facts.links if lk.strength is Strength.WEAK]
    reasons: list[str] = []
    floor_hits = [b.id for b, _ in facts.hits if b.id in config.floor_behaviours]
    floor = bool(floor_hits) and delivered(facts)
    if len(present) == 4:
        severity = config.base_all_strong if not weak else config.base_all_weak
        reasons.append("all four stages" + (" with strong links" if not weak else f" ({len(weak)} weak link(s))"))
    else:
        severity = config.base_three
        missing = sorted(int(s) for s in set(Stage) - present)
        reasons.append(f"{len(present)} stages only (missing stage {', '.join(map(str, missing))})")
    if floor:
        reasons.append(f"behavioural floor: an opened download shows {', '.join(floor_hits)}"
                       + ("" if len(present) == 4 else "; alert although not every stage was seen"))
    score = 10 * len(present) + (10 if not weak else 0)
    held = signals(facts, policy)
    matched: list[str] = []
    if len(present) == 4 or floor:
        for rule in config.raises:
            detail = held.get(rule.signal)
            if detail is None:
                continue
            severity = max(severity, rule.to)
            score += rule.score
            matched.append(rule.id)
            reasons.append(rule.reason.format(detail=detail))
    capped = False
    for rule in config.caps:
        detail = held.get(rule.signal)
        if detail is not None and rule.to < severity:
            severity = rule.to
            capped = True
            matched.append(rule.id)
            reasons.append(f"capped at {Severity(rule.to).name.lower()} by {rule.id}: "
                           + rule.reason.format(detail=detail))
    is_alert = severity >= config.alert_from and (len(present) == 4 or floor)
    if capped and severity < config.alert_from:
        is_alert = False
    return Grade(Severity(severity), score, tuple(reasons), is_alert, floor, tuple(matched))
