"""The small timeline picture of one finding: an inline SVG, stages 1-4 on a shared time axis, egress marked.

One lane per stage (app activity, file landed, execution, egress). The stage's own evidence is a large marker at
its time, labelled with the time relative to the chain's first event and a short summary; other timeline rows of
the same stage are small dots in its lane, context rows (no stage) small ticks on the axis. Every connection the
chain made is a red diamond in the egress lane, with a red rule down to the axis, so egress reads at a glance. The
steps between the stages ("1→2 10 min 31 s") are spelled out under the axis: on a linear axis a ten-minute wait
before a one-second burst would otherwise hide how fast the last three stages followed each other.

The picture holds only elements and attributes this module writes: coordinates are numbers it computed, classes
come from fixed tables, and every string from the finding is bounded and HTML-escaped (inline SVG is parsed by
the HTML parser, where escaped text stays text). It is an ``img`` to assistive technology, with a ``<title>`` and
an ``aria-label`` that read out each stage's relative time.
"""

from __future__ import annotations

import calendar
import html
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chainwatch.findings.model import STAGE_TITLES, Stage
from chainwatch.findings.render import as_int, as_list, as_mapping
from chainwatch.findings.story import safe

__all__ = ["parse_time_ns", "relative", "timeline_svg"]

_ISO = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z$")

# Geometry of the picture, in viewBox units (the SVG scales to the width of its card).
_WIDTH = 1200
_LEFT = 150  # lane titles live left of this
_PLOT_LEFT = 170
_PLOT_RIGHT = 1170
_TOP = 14
_LANE = 26
_CHAR = 6.2  # average width of one 11px character, to fit labels into the room beside a marker
_MAX_POINTS = 200  # timeline rows and connections drawn; the rest are in the tables
_LABEL = 90

_LANE_CLASS = {Stage.APP_ACTIVITY: "s1", Stage.FILE_LANDING: "s2", Stage.EXECUTION: "s3", Stage.EGRESS: "s4"}
# Tick spacings, in seconds: the first that gives at most six intervals over the span is used.
_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
          3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


def parse_time_ns(value: object) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 UTC time as the findings write it (``...T..Z``), else ``None``."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    match = _ISO.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    return seconds * 1_000_000_000 + int((match.group(7) or "0").ljust(9, "0"))


def relative(delta_ns: int, *, sign: bool = True) -> str:
    """A duration as a person reads it: ``+0 s``, ``+450 ms``, ``+12.5 s``, ``+10 min 31 s``, ``+2 h 05 min``."""
    prefix = ("+" if delta_ns >= 0 else "\N{MINUS SIGN}") if sign else ""
    seconds = abs(delta_ns) / 1e9
    if seconds == 0:
        return f"{prefix}0 s"
    if seconds < 1:
        return f"{prefix}{seconds * 1000:.0f} ms"
    if seconds < 60:
        text = f"{seconds:.1f}".removesuffix(".0")
        return f"{prefix}{text} s"
    whole = int(seconds)
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{prefix}{minutes} min" + (f" {rest:02d} s" if rest else "")
    if whole < 86400:
        hours, rest = divmod(whole // 60, 60)
        return f"{prefix}{hours} h" + (f" {rest:02d} min" if rest else "")
    days, rest = divmod(whole // 3600, 24)
    return f"{prefix}{days} d" + (f" {rest} h" if rest else "")


@dataclass(frozen=True)
class _Mark:
    time_ns: int
    label: str


def _t(value: object, limit: int) -> str:
    text = "" if value is None else str(value)
    return html.escape(safe(text[: limit + 1], limit), quote=True)


def _summary(evidence: Mapping[str, Any]) -> str:
    name = str(evidence.get("name") or "")[:400]
    return name.split(": ", 1)[1] if name.startswith("stage ") and ": " in name else name


def _stage_of(value: object) -> Stage | None:
    number = as_int(value)
    return Stage(number) if number is not None and number in {int(s) for s in Stage} else None


def _destination(item: Mapping[str, Any]) -> str:
    where = str(item.get("hostname") or item.get("ip") or "?")[:200]
    port = as_int(item.get("port"))
    return f"{where}:{port}" if port is not None else where


def timeline_svg(doc: Mapping[str, Any], cw: Mapping[str, Any], number: int) -> str:
    """The timeline picture of one OCSF finding (``cw`` is its ``unmapped.chainwatch``); ``number`` makes ids."""
    stages: dict[Stage, _Mark] = {}
    for evidence in map(as_mapping, as_list(doc.get("evidences"))[:50]):
        data = as_mapping(evidence.get("data"))
        stage = _stage_of(data.get("stage"))
        when = parse_time_ns(data.get("time"))
        if stage is not None and stage not in stages and when is not None:
            stages[stage] = _Mark(when, _summary(evidence))
    rows: list[tuple[Stage | None, int]] = []
    for entry in map(as_mapping, as_list(cw.get("timeline"))[:_MAX_POINTS]):
        when = parse_time_ns(entry.get("time"))
        if when is not None:
            stage = _stage_of(entry.get("stage"))
            rows.append((stage, when))
            if stage is not None and stage not in stages:
                stages[stage] = _Mark(when, str(entry.get("text") or "")[:400])
    egress: list[_Mark] = []
    for item in map(as_mapping, as_list(cw.get("egress"))[:_MAX_POINTS]):
        when = parse_time_ns(item.get("time"))
        if when is not None:
            egress.append(_Mark(when, f"{str(item.get('process') or '?')[:80]} → {_destination(item)}"))
    if Stage.EGRESS not in stages and egress:
        stages[Stage.EGRESS] = egress[0]

    times = [m.time_ns for m in stages.values()] + [t for _, t in rows] + [m.time_ns for m in egress]
    height = _TOP + 4 * _LANE + 40
    label = _aria(stages, min(times) if times else 0)
    out = [f'<svg class="tl" viewBox="0 0 {_WIDTH} {height}" role="img" aria-labelledby="tl{number}-t">',
           f'<title id="tl{number}-t">{label}</title>']
    for index, stage in enumerate(Stage):
        y = _TOP + index * _LANE + _LANE / 2
        css = _LANE_CLASS[stage]
        out.append(f'<text class="lt {css}" x="{_LEFT}" y="{y + 4:.1f}">{int(stage)} '
                   f"{html.escape(STAGE_TITLES[stage])}</text>")
        out.append(f'<line class="lane" x1="{_PLOT_LEFT}" y1="{y:.1f}" x2="{_PLOT_RIGHT}" y2="{y:.1f}"/>')
    axis_y = _TOP + 4 * _LANE + 4
    out.append(f'<line class="axis" x1="{_PLOT_LEFT}" y1="{axis_y}" x2="{_PLOT_RIGHT}" y2="{axis_y}"/>')
    if not times:
        out.append(f'<text class="none" x="{(_PLOT_LEFT + _PLOT_RIGHT) / 2:.0f}" y="{_TOP + 2 * _LANE + 4}">'
                   "no event time was recorded</text></svg>")
        return "".join(out)

    start, end = min(times), max(times)
    span = max(end - start, 1_000_000_000)

    def x_of(time_ns: int) -> float:
        return _PLOT_LEFT + (time_ns - start) / span * (_PLOT_RIGHT - _PLOT_LEFT)

    out.extend(_ticks(start, span, axis_y, x_of))
    lane_y = {stage: _TOP + index * _LANE + _LANE / 2 for index, stage in enumerate(Stage)}
    for stage, when in rows:
        x = x_of(when)
        if stage is None:
            out.append(f'<line class="ctx" x1="{x:.1f}" y1="{axis_y - 4}" x2="{x:.1f}" y2="{axis_y + 4}"/>')
        elif stage is not Stage.EGRESS:
            out.append(f'<circle class="dot {_LANE_CLASS[stage]}" cx="{x:.1f}" cy="{lane_y[stage]:.1f}" r="2.5"/>')
    for mark in egress:
        x, y = x_of(mark.time_ns), lane_y[Stage.EGRESS]
        out.append(f'<line class="egress-rule" x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{axis_y}"/>')
        out.append(f'<polygon class="egress-mark" points="{_diamond(x, y, 5)}"/>')
    for stage in Stage:
        y = lane_y[stage]
        seen = stages.get(stage)
        if seen is None:
            out.append(f'<text class="absent" x="{_PLOT_LEFT + 6}" y="{y + 4:.1f}">not seen</text>')
            continue
        x = x_of(seen.time_ns)
        if stage is Stage.EGRESS:
            out.append(f'<polygon class="egress-mark main" points="{_diamond(x, y, 8)}"/>')
        else:
            out.append(f'<line class="drop" x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{axis_y}"/>')
            out.append(f'<circle class="mark {_LANE_CLASS[stage]}" cx="{x:.1f}" cy="{y:.1f}" r="6"/>')
        out.append(_label(x, y, f"{relative(seen.time_ns - start)}  ", seen.label, stage))
    out.append(_steps(stages, axis_y + 34))
    out.append("</svg>")
    return "".join(out)


def _diamond(x: float, y: float, size: float) -> str:
    return f"{x:.1f},{y - size:.1f} {x + size:.1f},{y:.1f} {x:.1f},{y + size:.1f} {x - size:.1f},{y:.1f}"


def _label(x: float, y: float, when: str, text: str, stage: Stage) -> str:
    """Relative time and summary beside the marker, on the side with more room, cut to fit that room."""
    right = x <= (_PLOT_LEFT + _PLOT_RIGHT) / 2
    room = (_WIDTH - 4 - x - 12) if right else (x - _PLOT_LEFT - 12)
    chars = max(12, min(_LABEL, int(room / _CHAR)) - len(when))
    anchor = "start" if right else "end"
    tx = x + 12 if right else x - 12
    return (f'<text class="ml {_LANE_CLASS[stage]} {anchor}" x="{tx:.1f}" y="{y + 4:.1f}">'
            f'<tspan class="rel">{html.escape(when)}</tspan>{_t(text, chars)}</text>')


def _ticks(start: int, span: int, axis_y: float, x_of: Callable[[int], float]) -> list[str]:
    seconds = span / 1e9
    step = next((s for s in _STEPS if seconds / s <= 6), seconds / 6)
    step_ns = max(int(step * 1e9), 1)
    out = []
    for index in range(int(span // step_ns) + 1):
        offset = index * step_ns
        x = x_of(start + offset)
        out.append(f'<line class="tick" x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}"/>')
        out.append(f'<text class="tk" x="{x:.1f}" y="{axis_y + 17}">{html.escape(relative(offset))}</text>')
    return out


def _steps(stages: Mapping[Stage, _Mark], y: float) -> str:
    """"1→2 10 min 31 s · 2→3 1.2 s · 3→4 0.5 s": the waits between consecutive stages that were seen."""
    parts = []
    seen = [s for s in Stage if s in stages]
    for first, second in itertools.pairwise(seen):
        delta = stages[second].time_ns - stages[first].time_ns
        parts.append(f"{int(first)}→{int(second)} {relative(delta, sign=delta < 0)}")
    text = "   ·   ".join(parts) if parts else "one stage seen"
    return f'<text class="steps" x="{_PLOT_LEFT}" y="{y:.1f}">between stages: {html.escape(text)}</text>'


def _aria(stages: Mapping[Stage, _Mark], start: int) -> str:
    parts = []
    for stage in Stage:
        mark = stages.get(stage)
        what = (f"{relative(mark.time_ns - start)}, {safe(mark.label[:121], 120)}" if mark is not None
                else "not seen")
        parts.append(f"stage {int(stage)} {STAGE_TITLES[stage]} {what}")
    return html.escape("Timeline: " + "; ".join(parts), quote=True)
