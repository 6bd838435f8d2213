"""The story a person reads: one finding as plain text (timeline, process tree, files, context, links).

Telemetry is attacker-controlled, so every value is made printable (control characters escaped) and bounded before
it is placed in the text.
"""

from __future__ import annotations

from chainwatch.events import iso_ns
from chainwatch.findings.model import STAGE_TITLES, Finding, Stage

_MAX_FIELD = 300


def safe(text: object, limit: int = _MAX_FIELD) -> str:
    """Printable, bounded text: control characters are shown escaped, long values cut with an ellipsis."""
    value = str(text)
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value)
    return value if len(value) <= limit else value[: limit - 3] + "..."


def story_text(finding: Finding) -> str:
    """The whole story of one finding, as lines of text."""
    lines: list[str] = []
    kind = "ALERT" if finding.is_alert else ("SUPPRESSED" if finding.suppressed_by else "NON-ALERT")
    lines.append(f"[{kind}] {safe(finding.title)}")
    lines.append(f"  id {finding.finding_id}  severity {finding.severity.name.lower()}  "
                 f"confidence {finding.confidence.name.lower()}  stages {'+'.join(map(str, finding.stage_numbers))}"
                 f"  techniques {', '.join(finding.techniques)}")
    for reason in finding.reasons:
        lines.append(f"  why: {safe(reason)}")
    lines.append("  timeline:")
    for entry in finding.timeline:
        label = f"stage {int(entry.stage)} {STAGE_TITLES[entry.stage]}" if entry.stage else "context"
        lines.append(f"    {iso_ns(entry.time_ns)}  {label:<22} {safe(entry.text)}  "
                     f"[{entry.source.value} {safe(entry.raw, 120)}]")
    if finding.delivery:
        lines.append("  delivery (how the app reached the launch; each link with its strength):")
        for step in finding.delivery:
            when = iso_ns(step.time_ns) if step.time_ns is not None else "(time not seen)".ljust(30)
            via = f"  <- {step.strength.value}: {safe(step.reason or '')}" if step.strength else ""
            lines.append(f"    {when}  {step.step:<11} {safe(step.text)}{via}")
    lines.append("  process tree:")
    for node in finding.tree:
        proc = node.process
        cmd = " ".join(proc.args) if proc.args else (proc.executable or "")
        signer = ""
        if proc.signature is not None:
            signer = f" signed {proc.signature.signing_id or '-'}/{proc.signature.team_id or 'no team'}"
        lines.append(f"    {'  ' * node.depth}{'└─ ' if node.depth else ''}{safe(proc.display_name, 80)} "
                     f"pid {proc.pid} ({node.role}, {node.seen}){signer}: {safe(cmd, 200)}")
    if finding.files:
        lines.append("  files:")
        lines.extend(f"    {safe(path)}" for path in finding.files)
    if finding.quarantine or finding.gatekeeper:
        lines.append("  quarantine and Gatekeeper:")
        lines.extend(f"    {safe(text)}" for text in (*finding.quarantine, *finding.gatekeeper))
    if finding.egress:
        lines.append("  egress (attributed to the child process):")
        for item in finding.egress:
            lines.append(f"    {iso_ns(item.time_ns)} {safe(item.process.display_name, 80)} pid {item.process.pid} -> "
                         f"{safe(item.hostname or item.dst_ip or '?', 120)}:{item.dst_port} {item.destination_class}"
                         f" via {item.attribution} (confidence {item.confidence.name.lower()})")
    lines.append("  links:")
    for link in finding.links:
        lines.append(f"    {int(link.from_stage)}->{int(link.to_stage)} {link.strength.value}: {safe(link.reason)}")
    missing = [s for s in Stage if s not in {st.stage for st in finding.stages}]
    for stage in missing:
        lines.append(f"    stage {int(stage)} ({STAGE_TITLES[stage]}) not seen")
    for note in finding.notes:
        lines.append(f"  note: {safe(note)}")
    if finding.suppressed_by:
        lines.append(f"  suppressed by allowlist rule {safe(finding.suppressed_by)}: "
                     f"{safe(finding.suppression_reason or '')}")
    return "\n".join(lines)
