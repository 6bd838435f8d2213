"""Safe renderings of findings for humans in other tools (tickets, SIEM events, HTML).

Telemetry is attacker-controlled: paths, command lines and app names can carry markup, control characters,
spreadsheet formulas or megabytes of text. Everything placed in a rendering goes through these helpers.

The story of a finding is first built once, from the OCSF 2004 document, as a small neutral structure
(:class:`Section` of :class:`Paragraph`, :class:`Items`, :class:`Table` and :class:`Code` blocks) whose every
string is already printable and bounded (:func:`clip`). Each output format then only has to escape for its own
syntax:

* :func:`to_adf` -- Atlassian Document Format (Jira Cloud v3). Text nodes are data, never markup, so only lengths
  are bounded (and empty text nodes, which Jira rejects, are avoided).
* :func:`to_markdown` -- CommonMark/GFM with every character that could start markup backslash-escaped, code
  in fences longer than any backtick run inside them.
* :func:`to_html_fragment` -- HTML with every text :func:`html.escape` d (quotes too).
* :func:`to_plain` -- plain text (ServiceNow, PagerDuty details, e-mail).

Every renderer takes ``max_chars``: when the story is longer, the largest lists are halved (and say how many
entries they left out) until it fits, so a finding with 10 000 timeline rows still makes a ticket Jira accepts.
The triage playbook is the last thing to shrink.
"""

from __future__ import annotations

import html
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from chainwatch.findings.model import STAGE_TITLES, Stage
from chainwatch.findings.story import safe

__all__ = [
    "DEFAULT_MAX_CHARS",
    "Code",
    "Items",
    "Paragraph",
    "Section",
    "Span",
    "Table",
    "adf_document",
    "clip",
    "fit_sections",
    "html_text",
    "markdown_text",
    "neutralize_formula",
    "safe",
    "story_sections",
    "to_adf",
    "to_html_fragment",
    "to_markdown",
    "to_plain",
    "triage_playbook",
]

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "|", "%")

#: Default bound of a rendered story, in characters of its plain-text form.
DEFAULT_MAX_CHARS = 24_000
_FIELD = 300
_CMD = 400
_NAME = 80
_HOST = 120
#: Entries kept per list before anything is measured: a story never walks an unbounded list.
_MAX_ROWS = 60
_MAX_ITEMS = 30
_MAX_URLS = 3


def neutralize_formula(text: str) -> str:
    """Prefix a value a spreadsheet would evaluate (``=cmd|...``, ``@SUM``) with ``'`` so it stays text."""
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def html_text(text: object, limit: int = 300) -> str:
    """Printable, bounded, HTML-escaped text (quotes too, so it is safe inside attributes)."""
    return html.escape(safe(text, limit), quote=True)


def clip(value: object, limit: int = _FIELD) -> str:
    """:func:`safe` text that never scans more of a huge value than it keeps (``None`` reads as empty)."""
    text = "" if value is None else str(value)
    # One character past the limit is enough for safe() to know it must cut and add its ellipsis.
    return safe(text[: limit + 1], limit)


# -- the neutral structure ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A run of inline text; ``style`` is ``""``, ``"strong"`` or ``"code"`` (shown as code, still data)."""

    text: str
    style: Literal["", "strong", "code"] = ""


Inline = tuple[Span, ...]


@dataclass(frozen=True)
class Paragraph:
    spans: Inline


@dataclass(frozen=True)
class Items:
    """A bullet (or numbered) list; ``omitted`` entries were left out to bound the size."""

    items: tuple[Inline, ...]
    ordered: bool = False
    omitted: int = 0


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    omitted: int = 0


@dataclass(frozen=True)
class Code:
    """Preformatted lines (the process tree): shown monospaced, never interpreted."""

    lines: tuple[str, ...]
    omitted: int = 0


Block = Paragraph | Items | Table | Code


@dataclass(frozen=True)
class Section:
    """A titled part of the story (``title`` empty for the opening lines). ``keep`` sections shrink last."""

    title: str
    blocks: tuple[Block, ...]
    keep: bool = False


# -- reading the document tolerantly -----------------------------------------------------------------------------


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _chainwatch(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_mapping(as_mapping(doc.get("unmapped")).get("chainwatch"))


def _basename(path: object) -> str:
    if not path:
        return "?"
    # The tail is enough for a name, and a megabyte-long path is not scanned whole.
    return str(path)[-1024:].rstrip("/").rsplit("/", 1)[-1] or "/"


def _stage_label(value: object) -> str:
    number = as_int(value)
    if number is not None and number in {int(s) for s in Stage}:
        return f"{number} {STAGE_TITLES[Stage(number)]}"
    return "context"


def _bounded(entries: Sequence[Any], limit: int) -> tuple[list[Any], int]:
    return list(entries[:limit]), max(0, len(entries) - limit)


def _stage3_process(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    for evidence in map(as_mapping, as_list(doc.get("evidences"))):
        if as_int(as_mapping(evidence.get("data")).get("stage")) == int(Stage.EXECUTION):
            return as_mapping(evidence.get("process"))
    return {}


def _app_name(doc: Mapping[str, Any]) -> str:
    for evidence in map(as_mapping, as_list(doc.get("evidences"))):
        if as_int(as_mapping(evidence.get("data")).get("stage")) == int(Stage.APP_ACTIVITY):
            return clip(as_mapping(evidence.get("process")).get("name"), _NAME)
    tree = as_list(_chainwatch(doc).get("process_tree"))
    return clip(_basename(as_mapping(tree[0]).get("path")), _NAME) if tree else "the app"


# -- the story ---------------------------------------------------------------------------------------------------


def story_sections(doc: Mapping[str, Any]) -> list[Section]:
    """The story of an OCSF 2004 finding as neutral sections; every string in them is printable and bounded."""
    info = as_mapping(doc.get("finding_info"))
    cw = _chainwatch(doc)
    sections = [_header(doc, info, cw)]

    timeline, more = _bounded(as_list(cw.get("timeline")), _MAX_ROWS)
    rows = tuple((clip(e.get("time"), 40), _stage_label(e.get("stage")), clip(e.get("text")),
                  clip(f"{clip(e.get('source'), 20)} {clip(e.get('raw_ref'), 120)}", 150))
                 for e in map(as_mapping, timeline))
    sections.append(Section("Timeline", (Table(("Time (UTC)", "Stage", "Event", "Source"), rows, more),)))

    tree, more = _bounded(as_list(cw.get("process_tree")), _MAX_ROWS)
    lines = []
    for node in map(as_mapping, tree):
        depth = min(max(as_int(node.get("depth")) or 0, 0), 12)
        command = node.get("cmd_line") or node.get("path") or ""
        lines.append(f"{'  ' * depth}{'└─ ' if depth else ''}{clip(_basename(node.get('path')), _NAME)} "
                     f"pid {clip(node.get('pid'), 12)} ({clip(node.get('role'), 20)}, {clip(node.get('seen'), 10)})"
                     f": {clip(command, _CMD)}")
    sections.append(Section("Process tree", (Code(tuple(lines), more),) if lines else
                            (Paragraph((Span("No process tree was recorded."),)),)))

    files, more = _bounded(as_list(cw.get("files")), _MAX_ITEMS)
    if files:
        sections.append(Section("Files", (Items(tuple((Span(clip(f)),) for f in files), omitted=more),)))

    records = as_list(cw.get("quarantine")) + as_list(cw.get("gatekeeper"))
    kept, more = _bounded(records, _MAX_ITEMS)
    sections.append(Section("Quarantine and Gatekeeper", (
        Items(tuple((Span(clip(r)),) for r in kept), omitted=more) if kept else
        Paragraph((Span("No quarantine attribute or Gatekeeper decision was seen for this chain."),)),)))

    egress, more = _bounded(as_list(cw.get("egress")), _MAX_ROWS)
    if egress:
        confidence = {1: "low", 2: "medium", 3: "high"}
        egress_rows = tuple(
            (clip(e.get("time"), 40), f"{clip(e.get('process'), _NAME)} pid {clip(e.get('pid'), 12)}",
             _destination(e), clip(e.get("destination"), 20),
             f"{clip(e.get('attribution'), 30)} ({confidence.get(as_int(e.get('confidence')) or 0, '?')})")
            for e in map(as_mapping, egress))
        sections.append(Section("Egress (attributed to the child process)", (
            Table(("Time (UTC)", "Process", "Destination", "Class", "Attribution"), egress_rows, more),)))

    links: list[Inline] = [
        (Span(f"stage {clip(as_mapping(lk).get('from'), 4)} → {clip(as_mapping(lk).get('to'), 4)}: "
              f"{clip(as_mapping(lk).get('strength'), 10)}, {clip(as_mapping(lk).get('reason'))}"),)
        for lk in as_list(cw.get("links"))[:_MAX_ITEMS]]
    present = {as_int(s) for s in as_list(cw.get("stages_present"))}
    links.extend((Span(f"stage {int(s)} ({STAGE_TITLES[s]}): not seen"),) for s in Stage if int(s) not in present)
    sections.append(Section("Links between stages", (Items(tuple(links)),)))

    notes: list[Inline] = [(Span(clip(n)),) for n in as_list(cw.get("notes"))[:_MAX_ITEMS]]
    if cw.get("suppressed_by"):
        notes.append((Span("suppressed by allowlist rule "), Span(clip(cw.get("suppressed_by"), _NAME), "code")))
    if notes:
        sections.append(Section("Notes", (Items(tuple(notes)),)))

    sections.append(Section("Triage playbook", (Items(tuple(_playbook(doc)), ordered=True),), keep=True))
    return sections


def _header(doc: Mapping[str, Any], info: Mapping[str, Any], cw: Mapping[str, Any]) -> Section:
    kind = "ALERT" if doc.get("is_alert") else ("SUPPRESSED" if cw.get("suppressed_by") else "NON-ALERT")
    title = clip(info.get("title") or doc.get("message") or "chainwatch finding")
    techniques = []
    for attack in map(as_mapping, as_list(info.get("attacks"))[:10]):
        techniques.append(clip(as_mapping(attack.get("sub_technique")).get("uid")
                               or as_mapping(attack.get("technique")).get("uid"), 20))
    stages = "+".join(clip(s, 2) for s in as_list(cw.get("stages_present"))[:4]) or "?"
    facts = (f"finding {clip(info.get('uid') or as_mapping(doc.get('metadata')).get('uid'), _NAME)}, "
             f"severity {clip(doc.get('severity'), 20).lower()}, confidence {clip(doc.get('confidence'), 20).lower()}, "
             f"host {clip(as_mapping(doc.get('device')).get('hostname'), _HOST)}, stages {stages} "
             f"({clip(cw.get('route'), 20)}), techniques {', '.join(techniques) or 'none'}")
    blocks: list[Block] = [Paragraph((Span(f"[{kind}] {title}", "strong"),)), Paragraph((Span(facts),))]
    reasons = [(Span("why: " + clip(r)),) for r in as_list(cw.get("reasons"))[:_MAX_ITEMS]]
    if reasons:
        blocks.append(Items(tuple(reasons)))
    return Section("", tuple(blocks))


def _destination(egress: Mapping[str, Any]) -> str:
    where = clip(egress.get("hostname") or egress.get("ip") or "?", _HOST)
    port = as_int(egress.get("port"))
    text = f"{where}:{port}" if port is not None else where
    if egress.get("hostname") and egress.get("ip"):
        text += f" ({clip(egress.get('ip'), 45)})"
    return text + (f" {clip(egress.get('protocol'), 10)}" if egress.get("protocol") else "")


# -- triage playbook ---------------------------------------------------------------------------------------------

_URL = re.compile(r"\b(?:https?|ftp)://[^\s'\"<>`]{1,2000}", re.IGNORECASE)
_UUID = re.compile(r"uuid=([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})")
_AGENT = re.compile(r"agent=(.{0,200}?) flags=")
_ON_PATH = re.compile(r"com\.apple\.quarantine on (.*?)(?:: agent=| by |$)")
_QUARANTINE_DB = "~/Library/Preferences/com.apple.LaunchServices.QuarantineEventsV2"
_QUARANTINE_SELECT = ("SELECT LSQuarantineAgentName, LSQuarantineDataURLString, LSQuarantineOriginURLString "
                      "FROM LSQuarantineEvent WHERE LSQuarantineEventIdentifier =")


def _urls(doc: Mapping[str, Any]) -> list[str]:
    cw = _chainwatch(doc)
    texts = [as_mapping(n).get("cmd_line") for n in as_list(cw.get("process_tree"))]
    texts += [as_mapping(e).get("text") for e in as_list(cw.get("timeline"))]
    texts += as_list(cw.get("quarantine")) + as_list(cw.get("gatekeeper"))
    found: list[str] = []
    for text in texts[:200]:
        if not isinstance(text, str):
            continue
        # Only the first few kilobytes of the first entries: a 1 MB command line is not scanned whole.
        for match in _URL.finditer(text[:4096]):
            url = clip(match.group(0).rstrip(".,;)"), _FIELD)
            if url not in found:
                found.append(url)
            if len(found) >= _MAX_URLS:
                return found
    return found


def _quoted(path: object) -> str:
    """A path as one shell word: an analyst may paste the command, and the path came from the attacker."""
    return shlex.quote(clip(path, _FIELD))


def _glob_literal(text: str) -> str:
    """A string as a policy glob matching only itself (``*``, ``?`` and ``[`` escaped fnmatch-style)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _flow_yaml(mapping: Mapping[str, Any]) -> str:
    # JSON scalars and arrays are valid YAML flow values, with every quote and control character escaped.
    return "{" + ", ".join(f"{key}: {json.dumps(value)}" for key, value in mapping.items()) + "}"


def _allow_rules(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The narrowest allowlist entries that would suppress this chain: (child rule, egress-only rule)."""
    info = as_mapping(doc.get("finding_info"))
    cw = _chainwatch(doc)
    finding = clip(info.get("uid") or "finding", _NAME)
    host = clip(as_mapping(doc.get("device")).get("hostname"), _HOST)
    suffix = re.sub(r"[^a-z0-9]+", "-", finding.lower()).strip("-")[-12:] or "finding"
    process = _stage3_process(doc)
    child = clip(process.get("name") or _basename(process.get("path")), _NAME)
    rule: dict[str, Any] = {"id": f"reviewed-{suffix}",
                            "description": f"reviewed {finding} on {host}: {_app_name(doc)} -> {child}",
                            "applies_to": "child"}
    file = as_mapping(process.get("file"))
    signature = as_mapping(file.get("signature"))
    team = signature.get("developer_uid")
    signing = as_mapping(signature.get("certificate")).get("subject")
    path = process.get("path")
    command = process.get("cmd_line")
    if cw.get("route") == "quarantined_app" and isinstance(team, str) and isinstance(signing, str) and team:
        # A downloaded app signed by a developer: team + signing id survive updates and new download paths.
        rule["team_ids"] = [clip(team, 20)]
        rule["signing_ids"] = [_glob_literal(clip(signing, _FIELD))]
    else:
        if isinstance(path, str) and path:
            rule["paths"] = [_glob_literal(path) if len(path) <= _FIELD else _glob_literal(path[:_FIELD]) + "*"]
        if isinstance(command, str) and command and cw.get("route") != "quarantined_app":
            # An interpreter such as /bin/zsh is shared by everything: only its exact command line is reviewed.
            head = command[:200]
            # re.escape escapes spaces too; unescaped they read better and mean the same outside verbose mode.
            rule["cmdline"] = "^" + re.escape(head).replace("\\ ", " ") + ("$" if len(command) <= 200 else "")
    child_rule = "- " + _flow_yaml(rule) if len(rule) > 3 else None

    egress_rule = None
    for item in map(as_mapping, as_list(cw.get("egress"))):
        hostname, ip = item.get("hostname"), item.get("ip")
        where: dict[str, Any] = {}
        if isinstance(hostname, str) and hostname:
            where["hostnames"] = [_glob_literal(clip(hostname, 253))]
        elif isinstance(ip, str) and ip:
            where["destinations"] = [f"{clip(ip, 45)}/{128 if ':' in ip else 32}"]
        if where:
            egress_rule = "- " + _flow_yaml({"id": f"reviewed-{suffix}-destination",
                                             "description": f"reviewed {finding}: trusted destination",
                                             "applies_to": "egress", **where})
            break
    return child_rule, egress_rule


def _playbook(doc: Mapping[str, Any]) -> list[Inline]:
    cw = _chainwatch(doc)
    host = clip(as_mapping(doc.get("device")).get("hostname"), _HOST) or "the host"
    steps: list[Inline] = []

    for url in _urls(doc):
        steps.append((Span("Check the origin URL "), Span(url, "code"),
                      Span(": its reputation, and proxy/DNS logs for other hosts that fetched it.")))
    records = [r for r in as_list(cw.get("quarantine")) if isinstance(r, str)][:_MAX_ITEMS]
    with_uuid = [(m.group(1), r) for r in records if (m := _UUID.search(r[:2000]))]
    for uuid, record in with_uuid[:2]:
        agent = _AGENT.search(record[:2000])
        # The uuid matched a strict hex pattern above, so it cannot close the quote.
        query = f"{_QUARANTINE_SELECT} '{uuid.upper()}'"
        steps.append((Span(f"Check the quarantine record on {host} (downloaded by "
                           f"{clip(agent.group(1), _NAME) if agent else 'an unknown agent'}): "),
                      # Double quotes are safe here: the query is ours and the uuid is hex and dashes only.
                      Span(f'sqlite3 {_QUARANTINE_DB} "{query}"', "code")))
    if not with_uuid:
        paths = [m.group(1) for r in records if (m := _ON_PATH.search(r[:2000])) and m.group(1)]
        files = paths or [f for f in as_list(cw.get("files")) if isinstance(f, str)]
        if files:
            target = _quoted(files[0])
            steps.append((Span(f"No quarantine record names the file: on {host} check where it came from with "),
                          Span(f"xattr -l {target}; mdls -name kMDItemWhereFroms {target}", "code")))

    steps.append((Span(f"If the activity is not explained, isolate {host} from the network (EDR or MDM "
                       "containment) and keep it powered on for collection."),))
    tree = [as_mapping(n) for n in as_list(cw.get("process_tree"))]
    children = [f"{clip(_basename(n.get('path')), _NAME)} pid {clip(n.get('pid'), 12)}"
                for n in tree if (as_int(n.get("depth")) or 0) > 0][:5]
    if children:
        steps.append((Span("Collect, then stop the chain's processes: " + ", ".join(children) + "."),))
    files = [f for f in as_list(cw.get("files")) if isinstance(f, str)][:3]
    if files:
        steps.append((Span("Hash and collect the landed files before removing them: "),
                      Span("shasum -a 256 " + " ".join(_quoted(f) for f in files), "code")))
    destinations = []
    for item in map(as_mapping, as_list(cw.get("egress"))[:_MAX_ITEMS]):
        text = _destination(item)
        if text not in destinations:
            destinations.append(text)
    if destinations:
        steps.append((Span("Block "), Span(", ".join(destinations[:3]), "code"),
                      Span(" at the proxy or firewall and search DNS, proxy and flow logs for other hosts "
                           "that reached it."),))

    if cw.get("suppressed_by"):
        steps.append((Span("Already suppressed by allowlist rule "), Span(clip(cw.get("suppressed_by"), _NAME), "code"),
                      Span(": confirm the rule still describes approved activity."),))
    else:
        child_rule, egress_rule = _allow_rules(doc)
        if child_rule:
            steps.append((Span("If benign (reviewed, approved activity), add this entry under allowlist: in the "
                               "policy, so the chain is kept as an auditable non-alert finding: "),
                          Span(child_rule, "code")))
        if egress_rule:
            steps.append((Span("Or, if only the destination is trusted: "), Span(egress_rule, "code")))
    return steps


def triage_playbook(doc: Mapping[str, Any]) -> list[str]:
    """The short triage playbook of a finding as plain lines (printable, bounded; commands shell-quoted).

    Which origin URL and quarantine record to check, what to isolate and collect, and which allowlist entry to
    add to the policy if the chain turns out benign.
    """
    return ["".join(span.text for span in step) for step in _playbook(doc)]


# -- fitting -----------------------------------------------------------------------------------------------------


def _units(block: Block) -> int:
    if isinstance(block, Items):
        return len(block.items)
    if isinstance(block, Table):
        return len(block.rows)
    if isinstance(block, Code):
        return len(block.lines)
    return 0


def _halve(block: Block) -> Block:
    if isinstance(block, Items):
        keep = len(block.items) // 2
        return replace(block, items=block.items[:keep], omitted=block.omitted + len(block.items) - keep)
    if isinstance(block, Table):
        keep = len(block.rows) // 2
        return replace(block, rows=block.rows[:keep], omitted=block.omitted + len(block.rows) - keep)
    if isinstance(block, Code):
        keep = len(block.lines) // 2
        return replace(block, lines=block.lines[:keep], omitted=block.omitted + len(block.lines) - keep)
    return block


def fit_sections(sections: Sequence[Section], max_chars: int = DEFAULT_MAX_CHARS) -> list[Section]:
    """Halve the largest lists (``keep`` sections last) until the plain-text story fits ``max_chars``."""
    fitted = list(sections)
    while len(_plain(fitted)) > max_chars:
        candidates = [(s.keep, -len(_plain_block(b)), si, bi) for si, s in enumerate(fitted)
                      for bi, b in enumerate(s.blocks) if _units(b) > 1]
        if not candidates:
            break
        _keep, _size, si, bi = min(candidates)
        blocks = list(fitted[si].blocks)
        blocks[bi] = _halve(blocks[bi])
        fitted[si] = replace(fitted[si], blocks=tuple(blocks))
    # Still too long with one entry per list (hostile values are each up to a few hundred characters): leave out
    # whole sections, largest first, saying so; the opening lines and the playbook stay.
    while len(_plain(fitted)) > max_chars:
        droppable = [(-len(_plain([s])), i) for i, s in enumerate(fitted)
                     if s.title and not s.keep and s.blocks != (_LEFT_OUT,)]
        if not droppable:
            break
        _size, index = min(droppable)
        fitted[index] = replace(fitted[index], blocks=(_LEFT_OUT,))
    return fitted


_LEFT_OUT = Paragraph((Span("(left out to fit the size limit; the full section is in the OCSF finding)"),))


def _omitted_note(count: int, what: str) -> str:
    return f"… {count} more {what} not shown (the full list is in the OCSF finding)"


# -- plain text --------------------------------------------------------------------------------------------------


def _plain_inline(spans: Inline) -> str:
    return "".join(span.text for span in spans)


def _plain_block(block: Block) -> str:
    lines: list[str] = []
    if isinstance(block, Paragraph):
        lines.append(_plain_inline(block.spans))
    elif isinstance(block, Items):
        lines.extend(f"  {f'{i}.' if block.ordered else '-'} {_plain_inline(item)}"
                     for i, item in enumerate(block.items, 1))
        if block.omitted:
            lines.append("  " + _omitted_note(block.omitted, "entries"))
    elif isinstance(block, Table):
        lines.append("  " + " | ".join(block.header))
        lines.extend("  " + " | ".join(row) for row in block.rows)
        if block.omitted:
            lines.append("  " + _omitted_note(block.omitted, "rows"))
    else:
        lines.extend("    " + line for line in block.lines)
        if block.omitted:
            lines.append("    " + _omitted_note(block.omitted, "lines"))
    return "\n".join(lines)


def _plain(sections: Iterable[Section]) -> str:
    parts = []
    for section in sections:
        if section.title:
            parts.append(section.title.upper())
        parts.extend(_plain_block(block) for block in section.blocks)
    return "\n".join(parts)


def _intro_section(intro: Sequence[str]) -> list[Section]:
    return [Section("", tuple(Paragraph((Span(clip(line, 1000)),)) for line in intro))] if intro else []


def to_plain(doc: Mapping[str, Any], *, max_chars: int = DEFAULT_MAX_CHARS, intro: Sequence[str] = ()) -> str:
    """The story as plain text, at most ``max_chars`` characters.

    ``intro`` lines (e.g. "update: revision 2") come first. The text holds no control characters, but it is not
    escaped for any markup: a consumer that interprets markup must escape it itself.
    """
    text = _plain(fit_sections(_intro_section(intro) + story_sections(doc), max_chars))
    # Lists cannot shrink below one entry; the last resort is a hard cut.
    return text if len(text) <= max_chars else text[: max(max_chars - 1, 0)] + "…"


# -- Markdown ----------------------------------------------------------------------------------------------------

# Every ASCII character that can open or close CommonMark/GFM markup inside a line (emphasis, links, images,
# autolinks, raw HTML, entities, tables, code, strikethrough, math, mentions), escaped with a backslash.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#|<>!&~$@{}])")


def markdown_text(text: str, *, line_start: bool = True) -> str:
    """``text`` (already printable and bounded) with every Markdown-significant character backslash-escaped.

    ``line_start`` says the text may begin a block (a paragraph, a list item's text), where a leading ``1.``,
    ``-`` or four spaces would open a list or a code block; inline text (table cells, after other text) is not.
    """
    escaped = _MD_SPECIAL.sub(r"\\\1", text)
    if not line_start:
        return escaped
    body = escaped.lstrip(" ")
    # Leading spaces could open an indented code block: as entities they are plain spacing ('&' is escaped above,
    # so these are the only entities in the result).
    lead = "&#32;" * (len(escaped) - len(body))
    # At the start of a line (a list item's text, a cell) these open a block: nested list, heading, setext.
    ordered = re.match(r"\d+(?=[.)])", body)
    if ordered:
        body = body[: ordered.end()] + "\\" + body[ordered.end():]
    elif body[:1] in ("-", "+", "="):
        body = "\\" + body
    return lead + body


def _md_code_span(text: str) -> str:
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_inline(spans: Inline) -> str:
    out: list[str] = []
    for span in spans:
        if not span.text:
            continue
        first = not out
        if span.style == "code":
            out.append(_md_code_span(span.text))
        elif span.style == "strong":
            out.append(f"**{markdown_text(span.text, line_start=False)}**")
        else:
            out.append(markdown_text(span.text, line_start=first))
    return "".join(out)


def _md_cell(text: str) -> str:
    # A cell holds inline content only, so no block can open in it; '|' is escaped (GFM splits cells on it).
    return markdown_text(neutralize_formula(text), line_start=False) if text else " "


def _md_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return _md_inline(block.spans)
    if isinstance(block, Items):
        lines = [f"{f'{i}.' if block.ordered else '-'} {_md_inline(item)}" for i, item in enumerate(block.items, 1)]
        if block.omitted:
            lines.append(f"- {markdown_text(_omitted_note(block.omitted, 'entries'))}")
        return "\n".join(lines)
    if isinstance(block, Table):
        lines = ["| " + " | ".join(markdown_text(h, line_start=False) for h in block.header) + " |",
                 "|" + "---|" * len(block.header)]
        lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows)
        text = "\n".join(lines)
        if block.omitted:
            text += "\n\n" + markdown_text(_omitted_note(block.omitted, "rows"))
        return text
    body = "\n".join(block.lines)
    runs = [len(r) for r in re.findall(r"`+", body)]
    # A fence longer than any backtick run inside cannot be closed by the content.
    fence = "`" * max(3, max(runs, default=0) + 1)
    text = f"{fence}text\n{body}\n{fence}"
    if block.omitted:
        text += "\n\n" + markdown_text(_omitted_note(block.omitted, "lines"))
    return text


def to_markdown(doc: Mapping[str, Any], *, max_chars: int = DEFAULT_MAX_CHARS, intro: Sequence[str] = ()) -> str:
    """The story as CommonMark/GFM: attacker text is escaped, never markup (``max_chars`` bounds the plain text)."""
    parts = []
    for section in fit_sections(_intro_section(intro) + story_sections(doc), max_chars):
        if section.title:
            parts.append(f"#### {markdown_text(section.title)}")
        parts.extend(_md_block(block) for block in section.blocks)
    return "\n\n".join(parts) + "\n"


# -- HTML --------------------------------------------------------------------------------------------------------


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_inline(spans: Inline) -> str:
    out: list[str] = []
    for span in spans:
        if span.style == "code":
            out.append(f"<code>{_h(span.text)}</code>")
        elif span.style == "strong":
            out.append(f"<strong>{_h(span.text)}</strong>")
        else:
            out.append(_h(span.text))
    return "".join(out)


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_html_inline(block.spans)}</p>"
    if isinstance(block, Items):
        tag = "ol" if block.ordered else "ul"
        items = "".join(f"<li>{_html_inline(item)}</li>" for item in block.items)
        note = f"<p><em>{_h(_omitted_note(block.omitted, 'entries'))}</em></p>" if block.omitted else ""
        return f"<{tag}>{items}</{tag}>{note}"
    if isinstance(block, Table):
        head = "".join(f"<th>{_h(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(f"<td>{_h(neutralize_formula(c))}</td>" for c in row) + "</tr>"
                       for row in block.rows)
        note = f"<p><em>{_h(_omitted_note(block.omitted, 'rows'))}</em></p>" if block.omitted else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
    note = f"<p><em>{_h(_omitted_note(block.omitted, 'lines'))}</em></p>" if block.omitted else ""
    return f"<pre><code>{_h(chr(10).join(block.lines))}</code></pre>{note}"


def to_html_fragment(doc: Mapping[str, Any], *, max_chars: int = DEFAULT_MAX_CHARS, intro: Sequence[str] = ()) -> str:
    """The story as an HTML fragment (no scripts, styles or attributes from the finding; all text escaped)."""
    parts = ['<section class="chainwatch-finding">']
    for section in fit_sections(_intro_section(intro) + story_sections(doc), max_chars):
        if section.title:
            parts.append(f"<h3>{_h(section.title)}</h3>")
        parts.extend(_html_block(block) for block in section.blocks)
    parts.append("</section>")
    return "\n".join(parts)


# -- Atlassian Document Format -----------------------------------------------------------------------------------


def _adf_text(text: str, marks: Sequence[str] = ()) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = [{"type": mark} for mark in marks]
    return node


def _adf_paragraph(spans: Inline) -> dict[str, Any]:
    # ADF rejects empty text nodes; an empty paragraph is valid.
    content = [_adf_text(s.text, (s.style,) if s.style else ()) for s in spans if s.text]
    return {"type": "paragraph", "content": content}


def _adf_note(text: str) -> dict[str, Any]:
    return {"type": "paragraph", "content": [_adf_text(text, ("em",))]}


def _adf_block(block: Block) -> list[dict[str, Any]]:
    if isinstance(block, Paragraph):
        return [_adf_paragraph(block.spans)]
    if isinstance(block, Items):
        kind = "orderedList" if block.ordered else "bulletList"
        nodes = [{"type": kind, "content": [{"type": "listItem", "content": [_adf_paragraph(item)]}
                                            for item in block.items]}] if block.items else []
        return nodes + ([_adf_note(_omitted_note(block.omitted, "entries"))] if block.omitted else [])
    if isinstance(block, Table):
        def row(cells: Sequence[str], kind: str) -> dict[str, Any]:
            return {"type": "tableRow", "content": [
                {"type": kind, "attrs": {}, "content": [_adf_paragraph((Span(neutralize_formula(c)),))]}
                for c in cells]}

        table = {"type": "table", "attrs": {"isNumberColumnEnabled": False, "layout": "default"},
                 "content": [row(block.header, "tableHeader")] + [row(r, "tableCell") for r in block.rows]}
        return [table] + ([_adf_note(_omitted_note(block.omitted, "rows"))] if block.omitted else [])
    code = {"type": "codeBlock", "attrs": {"language": "text"},
            "content": [_adf_text("\n".join(block.lines))] if block.lines else []}
    return [code] + ([_adf_note(_omitted_note(block.omitted, "lines"))] if block.omitted else [])


def adf_document(sections: Iterable[Section]) -> dict[str, Any]:
    """An ADF ``doc`` from neutral sections (titles become level-3 headings)."""
    content: list[dict[str, Any]] = []
    for section in sections:
        if section.title:
            content.append({"type": "heading", "attrs": {"level": 3}, "content": [_adf_text(section.title)]})
        for block in section.blocks:
            content.extend(_adf_block(block))
    return {"type": "doc", "version": 1, "content": content}


def to_adf(doc: Mapping[str, Any], *, max_chars: int = DEFAULT_MAX_CHARS, intro: Sequence[str] = ()) -> dict[str, Any]:
    """The story as an Atlassian Document Format document (Jira Cloud REST v3 descriptions and comments).

    Text nodes are data to Jira, never markup; every one is printable, bounded and non-empty.
    """
    return adf_document(fit_sections(_intro_section(intro) + story_sections(doc), max_chars))
