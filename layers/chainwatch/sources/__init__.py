"""Telemetry sources: one module per format, each mapping records to canonical events.

Every source module has the same small contract:

``FORMAT``
    its :class:`~chainwatch.events.SourceFormat`;
``detect(doc) -> bool``
    whether a decoded document is in that format (cheap key checks only);
``map_record(doc, ref, host) -> list[AnyEvent] | str``
    the canonical events of one document, or a label (``"eslogger:open"``) for a record that is read correctly
    but carries nothing chainwatch uses. It raises :class:`~chainwatch.errors.RecordError` for a record that is
    broken. ``host`` is the fallback host id; a module uses the record's own host field when it has one.

:class:`Normalizer` runs records through the right module, counts everything and turns every failure into a
:class:`~chainwatch.sources.reader.Rejection`, so one bad record never stops or corrupts the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, get_args

from chainwatch.errors import RecordError
from chainwatch.events import AnyEvent, SourceFormat
from chainwatch.policy import Policy
from chainwatch.sources import ecs, eslogger, jamf_protect, ocsf, unifiedlog
from chainwatch.sources.reader import Record, Rejection, excerpt
from chainwatch.sources.relevance import Gated, RelevanceGate

#: Detection order: the cheapest and most specific checks first.
SOURCES: tuple[ModuleType, ...] = (eslogger, unifiedlog, ecs, ocsf, jamf_protect)
BY_FORMAT: dict[SourceFormat, ModuleType] = {module.FORMAT: module for module in SOURCES}
#: Per source module, event class -> the counter key ``(source, kind)``: counting an event costs no enum lookups
#: (every module's events carry its own ``FORMAT``).
_COUNT_KEYS: dict[ModuleType, dict[type, tuple[str, str]]] = {
    module: {cls: (module.FORMAT.value, cls.kind.value) for cls in get_args(AnyEvent)} for module in SOURCES}
#: Modules that can leave what the engine would never keep unmapped (``tracked_only``).
_POLICY_AWARE = frozenset({eslogger, ecs, unifiedlog})


def detect_format(doc: dict[str, Any]) -> ModuleType | None:
    """The source module that reads ``doc``, or ``None`` when no format matches."""
    for module in SOURCES:
        if module.detect(doc):
            return module
    return None


@dataclass
class NormalizeStats:
    """Counters of one normalization run, for the summary line and for coverage."""

    records: int = 0
    rejected: int = 0
    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    #: Rejections per reason (:attr:`Rejection.category`: the reason without its particulars).
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    #: Of the skipped, those the relevance gate set aside from their raw bytes, never decoded (label -> count).
    gated: Counter[str] = field(default_factory=Counter)

    @property
    def event_count(self) -> int:
        return sum(self.events.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "events": self.event_count,
            "events_by_source_and_kind": {f"{s}/{k}": n for (s, k), n in sorted(self.events.items())},
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_undecoded": dict(sorted(self.gated.items())),
        }

    def summary(self) -> str:
        by = ", ".join(f"{s}/{k}={n}" for (s, k), n in sorted(self.events.items())) or "none"
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.rejected_by_reason.most_common())
        return (
            f"records read: {self.records}; events: {self.event_count} ({by}); rejected: {self.rejected}"
            f"{f' ({reasons})' if reasons else ''}; skipped as unused or unsupported: {skipped}"
        )


# Mapper bugs on hostile input must become a rejection of that record, never a crash of the run: these are the
# exception types that malformed JSON values can provoke in mapping code.
_MAPPING_FAILURES = (RecordError, KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
                     RecursionError)


class Normalizer:
    """Maps records to canonical events with counting and rejection.

    Parameters
    ----------
    forced_format:
        Read every record as this format instead of detecting it per record.
    on_reject:
        Called with each :class:`Rejection` (for a rejects file or a quarantine destination).
    gate:
        Consult the relevance gate (:mod:`chainwatch.sources.relevance`) before decoding lines; it never changes
        the events produced, only skips the decoding of records that would produce none.
    tracked_only:
        With a policy, leave unmapped (and count under their own labels) the exec/fork records and connections
        the engine would never keep under that policy. Findings are unchanged; the event stream is not, so this
        is for detection only, never where every event is counted (coverage, ``normalize``). A record left
        unmapped is not validated either: a broken one is counted under its label, not rejected.
    """

    def __init__(
        self,
        *,
        forced_format: SourceFormat | None = None,
        on_reject: Callable[[Rejection], None] | None = None,
        gate: bool = True,
        tracked_only: Policy | None = None,
    ) -> None:
        self._forced = BY_FORMAT[forced_format] if forced_format else None
        self._on_reject = on_reject
        self.stats = NormalizeStats()
        #: The policy of tracked-only mapping (``None``: map everything); see the class docstring.
        self.tracked_only = tracked_only
        #: What the reader should consult before decoding a line (``None``: decode everything).
        self.gate: RelevanceGate | None = relevance_gate(forced_format) if gate else None

    def reject(self, rejection: Rejection) -> None:
        """Count and report a rejection (also used for read errors found before mapping)."""
        self.stats.rejected += 1
        self.stats.rejected_by_reason[rejection.category] += 1
        if self._on_reject is not None:
            self._on_reject(rejection)

    def normalize(self, record: Record, host: str) -> list[AnyEvent]:
        """The canonical events of one record (empty when it is rejected or unused)."""
        self.stats.records += 1
        doc = record.data
        module = self._forced or detect_format(doc)
        if module is None:
            # Not read is never silent: the record goes to the rejects with what it looked like.
            self.reject(Rejection(record.ref, unrecognized_reason(doc), None, excerpt(_short_repr(doc))))
            return []
        try:
            if self.tracked_only is not None and module in _POLICY_AWARE:
                result = module.map_record(doc, record.ref, host, policy=self.tracked_only)
            else:
                result = module.map_record(doc, record.ref, host)
        except _MAPPING_FAILURES as exc:
            reason = exc.reason if isinstance(exc, RecordError) else f"{type(exc).__name__}: {exc}"
            self.reject(Rejection(record.ref, reason, module.FORMAT.value, excerpt(_short_repr(doc))))
            return []
        if isinstance(result, str):
            self.stats.skipped[result] += 1
            return []
        mapped: list[AnyEvent] = result
        events = self.stats.events
        keys = _COUNT_KEYS[module]
        for event in result:
            events[keys[type(event)]] += 1
        return mapped

    def run(self, items: Iterable[Record | Rejection | Gated], host: str) -> Iterator[AnyEvent]:
        """Normalize a stream of reader items, reporting rejections and counting gated records as they come."""
        stats = self.stats
        for item in items:
            if type(item) is Gated:
                stats.records += item.count
                stats.skipped[item.label] += item.count
                stats.gated[item.label] += item.count
                continue
            if isinstance(item, Rejection):
                stats.records += 1
                self.reject(item)
                continue
            yield from self.normalize(item, host)  # type: ignore[arg-type]


_GATES: dict[SourceFormat | None, RelevanceGate | None] = {}


def relevance_gate(forced_format: SourceFormat | None = None) -> RelevanceGate | None:
    """The relevance gate for records read as ``forced_format`` (or detected per record), built once per format;
    ``None`` when no gate applies to that format."""
    if forced_format not in _GATES:
        gate = RelevanceGate(forced_format)
        _GATES[forced_format] = gate if gate.active else None
    return _GATES[forced_format]


def unrecognized_reason(doc: Any) -> str:
    """Why a decoded document was not read: no telemetry format matched it (its top-level keys name it)."""
    if not isinstance(doc, dict):
        return f"unrecognized record: expected a JSON object, got {type(doc).__name__}"
    keys = sorted(str(k) for k in doc)
    shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} keys)" if len(keys) > 8 else "")
    return f"unrecognized record: no supported telemetry format matches (top-level keys: {shown or 'none'})"


def _short_repr(doc: Any) -> str:
    try:
        text = repr(doc)
    except RecursionError:
        return "<deeply nested record>"
    return text[:400]
