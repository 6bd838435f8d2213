"""The finding: one AN1316 chain as an investigation-ready story.

A :class:`Finding` is a frozen value built by the engine. Renderings (OCSF 2004 JSON, the text story) live beside
it in :mod:`chainwatch.findings.ocsf` and :mod:`chainwatch.findings.story`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from chainwatch.events import AnyEvent, ProcessRef, SourceFormat


class Severity(IntEnum):
    """OCSF ``severity_id`` values."""

    INFORMATIONAL = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5


class Confidence(IntEnum):
    """OCSF ``confidence_id`` values."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


class Strength(StrEnum):
    STRONG = "strong"
    WEAK = "weak"


class Stage(IntEnum):
    APP_ACTIVITY = 1
    FILE_LANDING = 2
    EXECUTION = 3
    EGRESS = 4


STAGE_TITLES = {
    Stage.APP_ACTIVITY: "app activity",
    Stage.FILE_LANDING: "file landed",
    Stage.EXECUTION: "execution",
    Stage.EGRESS: "egress",
}


@dataclass(frozen=True, slots=True)
class StageEvidence:
    """The event that stands for one stage, with how it was established."""

    stage: Stage
    time_ns: int
    summary: str
    method: str
    source: SourceFormat
    raw: str
    process: ProcessRef | None = None
    parent: ProcessRef | None = None
    file_path: str | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """Why two consecutive stages belong to one chain, and how strongly."""

    from_stage: Stage
    to_stage: Stage
    strength: Strength
    reason: str


@dataclass(frozen=True, slots=True)
class DeliveryStep:
    """One step of how a downloaded app reached the launch: download, rename, extraction, disk-image mount, copy
    into ``/Applications``, translocation, Gatekeeper, launch. ``strength`` and ``reason`` are those of the link
    from the step before (``None`` on the first step)."""

    step: str
    time_ns: int | None
    path: str | None
    text: str
    strength: Strength | None = None
    reason: str | None = None
    source: SourceFormat | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class TreeNode:
    """One process in the tree from the app to the egressing process; ``depth`` 0 is the app."""

    depth: int
    process: ProcessRef
    role: str
    seen: str  # "exec", "fork", or "lineage" (known only from a child's record)


@dataclass(frozen=True, slots=True)
class Egress:
    """One outbound connection attributed to a chain process."""

    time_ns: int
    process: ProcessRef
    dst_ip: str | None
    dst_port: int | None
    hostname: str | None
    protocol: str | None
    destination_class: str
    attribution: str  # "entity", "pid_lifetime", "pid_open_lifetime"
    confidence: Confidence
    source: SourceFormat
    raw: str


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    time_ns: int
    stage: Stage | None
    text: str
    source: SourceFormat
    raw: str


@dataclass(frozen=True)
class Finding:
    """One chain on one host. ``finding_id`` is deterministic: (host, app process, stage-3 process)."""

    finding_id: str
    host: str
    app_name: str
    app_key: str
    stage3_key: str
    route: str  # "interpreter", "quarantined_app" or "package"
    stages: tuple[StageEvidence, ...]
    links: tuple[Link, ...]
    tree: tuple[TreeNode, ...]
    timeline: tuple[TimelineEntry, ...]
    files: tuple[str, ...]
    egress: tuple[Egress, ...]
    quarantine: tuple[str, ...]
    gatekeeper: tuple[str, ...]
    severity: Severity
    confidence: Confidence
    is_alert: bool
    reasons: tuple[str, ...]
    techniques: tuple[str, ...]
    suppressed_by: str | None = None
    suppression_reason: str | None = None
    notes: tuple[str, ...] = ()
    #: The delivery lineage (image -> volume -> app -> translocation -> launch) of a downloaded app's chain.
    delivery: tuple[DeliveryStep, ...] = ()
    #: Ranks findings of the same severity: the sum of the severity rules that matched (policy ``severity``).
    score: int = 0
    #: The ids of the policy's severity rules that matched (raise and cap).
    severity_rules: tuple[str, ...] = ()
    evidence_events: tuple[AnyEvent, ...] = field(default=(), compare=False, repr=False)

    @property
    def stage_numbers(self) -> tuple[int, ...]:
        return tuple(int(s.stage) for s in self.stages)

    @property
    def first_seen_ns(self) -> int:
        return min(s.time_ns for s in self.stages)

    @property
    def last_seen_ns(self) -> int:
        times = [s.time_ns for s in self.stages] + [e.time_ns for e in self.egress]
        return max(times)

    @property
    def title(self) -> str:
        child = next((s.process for s in self.stages if s.stage is Stage.EXECUTION and s.process), None)
        child_name = child.display_name if child else "a child process"
        if self.route == "quarantined_app" and self.app_key.startswith("?"):
            what = f"downloaded app {child_name} opened (download not seen)"
        elif self.route == "quarantined_app":
            what = f"{self.app_name} download {child_name} opened"
        elif self.route == "package":
            what = f"{self.app_name} download installed, its package script ran {child_name}"
        else:
            what = f"{self.app_name} spawned {child_name}"
        egress = next((s for s in self.stages if s.stage is Stage.EGRESS), None)
        if egress is not None:
            what += f" which connected to {egress.hostname or egress.dst_ip}"
        return f"AN1316 chain on {self.host}: {what}"


def finding_id(host: str, app_key: str, stage3_key: str) -> str:
    """Deterministic id of a chain: the same chain always gets the same id, whatever the delivery order."""
    digest = hashlib.sha256(f"{host}\x1f{app_key}\x1f{stage3_key}".encode()).hexdigest()
    return f"cw-{digest[:32]}"
