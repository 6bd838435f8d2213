"""``chainwatch report``: one self-contained HTML file a person looks at.

The report shows the fleet coverage matrix (hosts x telemetry needs, with the readiness verdict of each host) and,
for each finding, its header, the stage-labelled timeline, the process tree from the app to the egressing process
as nested lists (each link between stages marked strong or weak, and why), the files, the quarantine and
Gatekeeper context, and the egress with its attribution method.

Telemetry is attacker-controlled: paths, command lines, app names and host names can carry markup, control and
bidirectional-override characters, or megabytes of text. So:

* every value from a finding or a coverage counter goes through :func:`_t`: made printable (control and format
  characters such as U+202E shown escaped), bounded, then :func:`html.escape` d with quotes, so it is text in an
  element or in a quoted attribute, never markup;
* nothing from the data is placed in a tag name, an attribute name, a URL, a class or an id: classes come from
  fixed tables keyed by the data, ids are sequence numbers;
* the file holds no script and loads nothing: styles are inline, fonts are the system's, and a Content Security
  Policy (``default-src 'none'; style-src 'unsafe-inline'``) forbids scripts, images, frames and fetches, so even
  a mistake in escaping could not run code or call out. Collapsing uses ``<details>``, which needs no script.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from chainwatch.events import iso_ns
from chainwatch.findings.model import STAGE_TITLES, Stage
from chainwatch.findings.render import as_int, as_list, as_mapping, triage_playbook
from chainwatch.findings.story import safe
from chainwatch.readiness.coverage import NEED_TITLES, NEEDS, HostCoverage, Verdict, fleet_summary

__all__ = ["CSP", "render_report"]

#: The page's Content Security Policy: no scripts, images, fonts, frames or connections; inline styles only.
CSP = "default-src 'none'; style-src 'unsafe-inline'"

# Bounds of one value, in characters (after which it is cut with an ellipsis).
_FIELD = 300
_CMD = 600
_NAME = 80
_HOST = 120
_SHORT = 40
# Bounds of lists: a finding with 10 000 timeline rows still makes a page a browser opens.
_MAX_FINDINGS = 500
_MAX_ROWS = 200
_MAX_NODES = 200
_MAX_ITEMS = 50
_MAX_DEPTH = 24

_SEVERITY = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_CONFIDENCE = {1: "low", 2: "medium", 3: "high"}
_STATUS_CLASS = {"ok": "ok", "weak": "weak", "missing": "missing"}
_STRENGTH_CLASS = {"strong": "strong", "weak": "weak"}
_ATTRIBUTION = {
    "entity": "same process entity id",
    "pid_lifetime": "same pid within the process's lifetime (exec..exit)",
    "pid_open_lifetime": "same pid after exec; exit not seen",
}
_STALLED = {
    "stage3_no_egress": "chain(s) reached stage 3 with no egress seen",
    "no_app_activity": "chain(s) without stage 1 app activity",
    "no_file_landing": "chain(s) without a stage 2 file landing",
}
_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d{1,9})?Z$")


# -- safe values -------------------------------------------------------------------------------------------------


def _t(value: object, limit: int = _FIELD) -> str:
    """``value`` as printable, bounded, HTML-escaped text (``None`` reads as empty).

    Only ``limit + 1`` characters are looked at, so a 100 KB string costs no more than a short one.
    """
    text = "" if value is None else str(value)
    return html.escape(safe(text[: limit + 1], limit), quote=True)


def _time(value: object) -> str:
    """An RFC 3339 time shortened to milliseconds for reading (anything else shown as given, escaped)."""
    match = _ISO.match(value) if isinstance(value, str) and len(value) < 40 else None
    if match is None:
        return _t(value, _SHORT)
    fraction = (match.group(3) or ".000")[:4].ljust(4, "0")
    return f"{match.group(1)} {match.group(2)}{fraction}"


def _basename(path: object) -> str:
    if not path:
        return "?"
    # The tail is enough for a name; a megabyte-long path is not scanned whole.
    return str(path)[-1024:].rstrip("/").rsplit("/", 1)[-1] or "/"


def _chainwatch(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_mapping(as_mapping(doc.get("unmapped")).get("chainwatch"))


def _stage_of(value: object) -> Stage | None:
    number = as_int(value)
    return Stage(number) if number is not None and number in {int(s) for s in Stage} else None


def _stage_tag(stage: Stage | None) -> str:
    if stage is None:
        return '<span class="tag ctx">context</span>'
    label = f"stage {int(stage)} {STAGE_TITLES[stage]}"
    return f'<span class="tag s{int(stage)}">{html.escape(label)}</span>'


def _omitted(count: int, what: str) -> str:
    if count <= 0:
        return ""
    return f'<p class="omitted">… {count} more {html.escape(what)} not shown (the full list is in the OCSF finding)</p>'


# -- the page ----------------------------------------------------------------------------------------------------

_STYLE = """
:root{--ok:#137333;--ok-bg:#e6f4ea;--weak:#8a4b00;--weak-bg:#fef3d6;--miss:#b3261e;--miss-bg:#fce8e6;
--ink:#1f2328;--mute:#57606a;--line:#d0d7de;--card:#fff;--bg:#f6f8fa;--accent:#0b57d0}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1360px;margin:0 auto;padding:16px 20px 40px}
header.top{background:#0d1b2a;color:#fff;padding:18px 20px}
header.top .in{max-width:1360px;margin:0 auto}
header.top h1{margin:0 0 4px;font-size:22px;font-weight:650;letter-spacing:.2px}
header.top p{margin:0;color:#c9d4e0}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:160px}
.card b{display:block;font-size:22px}
.card span{color:var(--mute)}
h2{font-size:18px;margin:26px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px;text-transform:uppercase;letter-spacing:.6px;color:var(--mute)}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{border:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td,th,li,code,dd,summary{overflow-wrap:anywhere;unicode-bidi:isolate}
td.t{white-space:nowrap}
.matrix th[scope=row]{min-width:110px;max-width:240px}
.matrix td{min-width:130px}
table.egress th{white-space:nowrap}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;background:#f1f3f5;
padding:1px 4px;border-radius:4px}
.matrix td.ok{background:var(--ok-bg)} .matrix td.weak{background:var(--weak-bg)}
.matrix td.missing{background:var(--miss-bg)}
.mark{display:inline-block;font-weight:700;font-size:12px;letter-spacing:.4px;text-transform:uppercase;
margin-right:6px}
td.ok .mark{color:var(--ok)} td.weak .mark{color:var(--weak)} td.missing .mark{color:var(--miss)}
.why{display:block;color:var(--mute);font-size:12.5px}
tr.verdict td{font-weight:600;border-top:none}
tr.verdict td.yes{color:var(--ok);background:#f4fbf6} tr.verdict td.no{color:var(--miss);background:#fdf5f4}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:700;margin-right:6px;
border:1px solid transparent;white-space:nowrap}
.sev5,.sev4{background:#b3261e;color:#fff} .sev3{background:#e8710a;color:#fff}
.sev2,.sev1,.sev0{background:#5f6368;color:#fff}
.alert{background:#fff;color:#b3261e;border-color:#b3261e} .nonalert{background:#fff;color:var(--mute);
border-color:var(--line)} .suppressed{background:#fff;color:var(--weak);border-color:var(--weak)}
.conf{background:#e8f0fe;color:var(--accent)}
article.finding{background:var(--card);border:1px solid var(--line);border-radius:8px;margin:14px 0;
padding:0 16px 12px}
article.finding>details>summary{cursor:pointer;padding:12px 0;font-size:15px;font-weight:600;list-style-position:
outside}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:4px 0 8px}
dl.facts dt{color:var(--mute)} dl.facts dd{margin:0}
ol.chain{list-style:none;display:flex;flex-wrap:nowrap;align-items:stretch;gap:6px;padding:0;margin:6px 0}
ol.chain li{border-radius:8px;padding:8px 10px;min-width:0}
ol.chain li.stage{flex:1 1 0;background:#f1f5ff;border:1px solid #c6d4f5}
ol.chain li.stage.absent{background:#f6f6f6;border:1px dashed #bbb;color:var(--mute)}
ol.chain li.link{flex:0 0 170px;align-self:center;font-size:12.5px;border:2px solid}
li.link.strong,div.link.strong{border-color:var(--ok);color:var(--ok);background:var(--ok-bg)}
li.link.weak,div.link.weak{border-color:var(--weak);color:var(--weak);background:var(--weak-bg);
border-style:dashed}
li.link.unknown,div.link.unknown{border-color:#bbb;color:var(--mute);background:#f6f6f6;border-style:dotted}
.tag{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600;margin-right:6px;
white-space:nowrap}
.s1{background:#e8f0fe;color:#174ea6} .s2{background:#fef7e0;color:#8a4b00} .s3{background:#fce8e6;color:#a50e0e}
.s4{background:#f3e8fd;color:#681da8} .ctx{background:#eceff1;color:#455a64}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:22px}
ul.tree{padding-left:4px}
ul.tree li{position:relative;padding:3px 0 3px 14px;border-left:1px solid #b8c2cc}
ul.tree li::before{content:"";position:absolute;left:0;top:14px;width:10px;border-top:1px solid #b8c2cc}
ul.tree li:last-child{border-left-color:transparent}
ul.tree li:last-child::before{border-left:1px solid #b8c2cc;height:14px;top:0;border-top:none;
border-bottom:1px solid #b8c2cc;width:10px}
.pname{font-weight:700} .pid,.role{color:var(--mute);font-size:12.5px;margin-left:6px}
.cmd{display:block;margin-top:2px}
div.link{display:table;margin:3px 0;padding:1px 8px;border:1px solid;border-radius:6px;font-size:12.5px}
.dest{color:#681da8;font-size:12.5px;margin-left:6px}
.omitted{color:var(--mute);font-style:italic}
ul.plain{margin:4px 0;padding-left:20px}
footer{color:var(--mute);font-size:12px;margin-top:30px}
nav ol{margin:4px 0;padding-left:22px} nav a{color:var(--accent)}
"""


def render_report(findings_docs: Sequence[Mapping[str, Any]], verdicts: Sequence[Verdict],
                  coverages: Mapping[str, HostCoverage], generated_at_ns: int) -> str:
    """The whole report as one self-contained HTML document.

    Parameters
    ----------
    findings_docs
        OCSF 2004 Detection Findings as :func:`chainwatch.findings.ocsf.to_ocsf` renders them (read tolerantly:
        a missing or mistyped field shows as empty, never fails the report).
    verdicts
        One readiness :class:`~chainwatch.readiness.coverage.Verdict` per host, in the order the matrix lists them.
    coverages
        The per-host counters the verdicts came from (for clock skew, sources and stalled chains).
    generated_at_ns
        When the report was made, in nanoseconds since the epoch (shown in the header).

    Returns
    -------
    str
        The HTML text; it holds no script and references no external resource.
    """
    docs = [as_mapping(d) for d in findings_docs]
    order = sorted(range(len(docs)), key=lambda i: (docs[i].get("is_alert") is not True,
                                                    -(as_int(docs[i].get("severity_id")) or 0),
                                                    -(as_int(docs[i].get("time")) or 0), i))
    shown, hidden = order[:_MAX_FINDINGS], max(0, len(order) - _MAX_FINDINGS)
    alerts = sum(1 for d in docs if d.get("is_alert") is True)
    summary = fleet_summary(verdicts)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP, quote=True)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>chainwatch AN1316 report</title>",
        f"<style>{_STYLE}</style></head><body>",
        '<header class="top"><div class="in"><h1>chainwatch · AN1316 readiness and findings</h1>',
        f"<p>MITRE ATT&amp;CK AN1316 (app → file → script or quarantined app → egress) · generated "
        f"{html.escape(_time(iso_ns(generated_at_ns)))} UTC</p></div></header><main>",
        '<div class="cards">',
        f'<div class="card" id="card-findings"><b>{len(docs)}</b><span>findings</span></div>',
        f'<div class="card" id="card-alerts"><b>{alerts}</b><span>alerts</span></div>',
        f'<div class="card" id="card-hosts"><b>{summary["can_complete"]} of {summary["hosts"]}</b>'
        f"<span>hosts can complete AN1316</span></div></div>",
        _contents(docs, shown),
        _coverage_section(verdicts, coverages, summary),
        _findings_section(docs, shown, hidden),
        '<footer>Every value taken from telemetry is shown as text: escaped, with control and direction-override '
        "characters made visible, and cut to a bounded length. This file runs no script and loads nothing.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _contents(docs: list[Mapping[str, Any]], shown: list[int]) -> str:
    items = ['<li><a href="#coverage">Fleet coverage</a></li>']
    entries = []
    for number, index in enumerate(shown[:_MAX_ITEMS], 1):
        doc = docs[index]
        info = as_mapping(doc.get("finding_info"))
        entries.append(f'<li><a href="#f{number}">{_t(info.get("title") or doc.get("message") or "finding", 160)}'
                       "</a></li>")
    more = f"<li>… {len(shown) - _MAX_ITEMS} more</li>" if len(shown) > _MAX_ITEMS else ""
    items.append(f'<li><a href="#findings">Findings</a><ol>{"".join(entries)}{more}</ol></li>')
    return f'<nav id="contents"><ol>{"".join(items)}</ol></nav>'


# -- coverage ----------------------------------------------------------------------------------------------------


def _coverage_section(verdicts: Sequence[Verdict], coverages: Mapping[str, HostCoverage],
                      summary: Mapping[str, Any]) -> str:
    out = ['<section id="coverage"><h2>Fleet coverage: can each host\'s telemetry complete AN1316?</h2>']
    if not verdicts:
        out.append("<p>No telemetry was read, so no host can be assessed.</p></section>")
        return "".join(out)
    head = "".join(f"<th>{html.escape(NEED_TITLES[n])}</th>" for n in NEEDS)
    out.append(f'<table class="matrix"><thead><tr><th>host</th>{head}<th>sources and clock skew</th></tr></thead>'
               "<tbody>")
    span = len(NEEDS) + 2
    for item in verdicts:
        status = {n.need: n for n in item.needs}
        cells = []
        for need in NEEDS:
            entry = status.get(need)
            if entry is None:
                cells.append('<td class="unknown"><span class="mark">n/a</span></td>')
                continue
            css = _STATUS_CLASS.get(entry.status, "unknown")
            cells.append(f'<td class="{css}"><span class="mark">{_t(entry.status, 10)}</span>'
                         f'<span class="why">{_t(entry.detail)}</span></td>')
        coverage = coverages.get(item.host)
        cells.append(f"<td>{_sources(coverage)}</td>")
        answer = "yes" if item.can_complete else "no"
        out.append(f'<tr class="host"><th scope="row">{_t(item.host, _HOST)}</th>{"".join(cells)}</tr>')
        out.append(f'<tr class="verdict"><td colspan="{span}" class="{answer}">{_t(item.text, 2000)}</td></tr>')
    out.append("</tbody></table>")

    out.append(f'<h3>Fleet summary</h3><p id="fleet-summary">{summary["can_complete"]} of {summary["hosts"]} '
               "host(s) can complete AN1316.</p>")
    reasons = as_list(summary.get("top_reasons"))
    if reasons:
        out.append('<ul class="plain">' + "".join(
            f"<li>{_t(count, 12)} host(s): {_t(reason)}</li>" for reason, count in reasons) + "</ul>")
    stalled = []
    for item in verdicts:
        coverage = coverages.get(item.host)
        if coverage is None:
            continue
        for key, text in _STALLED.items():
            count = coverage.stalled.get(key, 0)
            if count:
                stalled.append(f"<li>{_t(item.host, _HOST)}: {count} {html.escape(text)}</li>")
    if stalled:
        out.append('<h3>Partial chains</h3><ul class="plain">' + "".join(stalled[:_MAX_ROWS]) + "</ul>")
    out.append("</section>")
    return "".join(out)


def _sources(coverage: HostCoverage | None) -> str:
    if coverage is None:
        return '<span class="why">no counters</span>'
    names = sorted(coverage.sources.items(), key=lambda kv: -kv[1].count)[:10]
    listed = ", ".join(f"{_t(name, 30)} {stats.count}" for name, stats in names) or "none"
    disorder = sum(s.out_of_order for s in coverage.sources.values())
    skew_min = coverage.skew_ns / 6e10
    skew = f"{skew_min / 60:.1f} h" if skew_min >= 90 else f"{skew_min:.0f} min"
    text = f'{listed}<span class="why">skew {skew}'
    if disorder:
        text += f"; {disorder} out of order"
    return text + "</span>"


# -- findings ----------------------------------------------------------------------------------------------------


def _findings_section(docs: list[Mapping[str, Any]], shown: list[int], hidden: int) -> str:
    out = ['<section id="findings"><h2>Findings</h2>']
    if not shown:
        out.append("<p>No findings.</p>")
    for number, index in enumerate(shown, 1):
        out.append(_finding(docs[index], number))
    out.append(_omitted(hidden, "findings"))
    out.append("</section>")
    return "".join(out)


def _finding(doc: Mapping[str, Any], number: int) -> str:
    info = as_mapping(doc.get("finding_info"))
    cw = _chainwatch(doc)
    severity_id = as_int(doc.get("severity_id")) or 0
    severity = _SEVERITY.get(severity_id, "Unknown")
    confidence = _CONFIDENCE.get(as_int(doc.get("confidence_id")) or 0, "unknown")
    suppressed_by = cw.get("suppressed_by")
    if doc.get("is_alert") is True:
        kind = '<span class="badge alert">ALERT</span>'
    elif suppressed_by:
        kind = '<span class="badge suppressed">SUPPRESSED</span>'
    else:
        kind = '<span class="badge nonalert">NOT AN ALERT</span>'
    sev_class = f"sev{severity_id}" if severity_id in _SEVERITY else "sev0"
    title = _t(info.get("title") or doc.get("message") or "chainwatch finding")
    opened = " open" if doc.get("is_alert") is True else ""
    out = [f'<article class="finding" id="f{number}"><details{opened}><summary>'
           f'<span class="badge {sev_class}">{html.escape(severity)}</span>{kind}'
           f'<span class="badge conf">confidence {html.escape(confidence)}</span> {title}</summary>']
    out.append(_facts(doc, info, cw, suppressed_by))
    out.append("<h3>Chain</h3>" + _chain_strip(doc, cw))
    out.append("<h3>Process tree, app to egress</h3>" + _tree(doc, cw))
    out.append("<h3>Timeline</h3>" + _timeline(cw))
    files, more = _bounded(cw.get("files"), _MAX_ITEMS)
    out.append("<h3>Files</h3>" + (
        '<ul class="plain files">' + "".join(f"<li><code>{_t(f)}</code></li>" for f in files) + "</ul>"
        + _omitted(more, "files") if files else "<p>No file was recorded.</p>"))
    out.append("<h3>Quarantine and Gatekeeper</h3>" + _context(cw))
    out.append("<h3>Egress</h3>" + _egress(cw))
    playbook = _playbook(doc)
    if playbook:
        out.append("<h3>Triage playbook</h3>" + playbook)
    out.append("</details></article>")
    return "".join(out)


def _bounded(value: object, limit: int) -> tuple[list[Any], int]:
    entries = as_list(value)
    return entries[:limit], max(0, len(entries) - limit)


def _facts(doc: Mapping[str, Any], info: Mapping[str, Any], cw: Mapping[str, Any], suppressed_by: object) -> str:
    techniques = []
    for attack in map(as_mapping, as_list(info.get("attacks"))[:10]):
        technique = as_mapping(attack.get("sub_technique")) or as_mapping(attack.get("technique"))
        techniques.append(f"{_t(technique.get('uid'), 20)} {_t(technique.get('name'), 60)}".strip())
    stages = "+".join(_t(s, 2) for s in as_list(cw.get("stages_present"))[:4]) or "?"
    rows = [
        ("host", f"<code>{_t(as_mapping(doc.get('device')).get('hostname'), _HOST)}</code>"),
        ("finding id", f"<code>{_t(info.get('uid'), _NAME)}</code>"),
        ("severity", f"{_t(doc.get('severity'), 20)} · confidence {_t(doc.get('confidence'), 20)} · "
                     f"{'alert' if doc.get('is_alert') is True else 'not an alert'}"),
        ("suppressed by", f"allowlist rule <code>{_t(suppressed_by, _NAME)}</code>" if suppressed_by else "—"),
        ("route", f"{_t(cw.get('route'), 30)} · stages {stages}"),
        ("seen", f"{_time(_ms_iso(info.get('first_seen_time')))} → {_time(_ms_iso(info.get('last_seen_time')))} UTC"),
        ("techniques", ", ".join(techniques) or "—"),
    ]
    reasons = as_list(cw.get("reasons"))[:_MAX_ITEMS]
    if reasons:
        rows.append(("why", "; ".join(_t(r) for r in reasons)))
    notes = as_list(cw.get("notes"))[:_MAX_ITEMS]
    if notes:
        rows.append(("notes", "; ".join(_t(n) for n in notes)))
    return '<dl class="facts">' + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows) + "</dl>"


def _ms_iso(value: object) -> str:
    millis = as_int(value)
    return iso_ns(millis * 1_000_000) if millis is not None and 0 <= millis < 10**14 else ""


def _evidence(doc: Mapping[str, Any]) -> dict[Stage, Mapping[str, Any]]:
    found: dict[Stage, Mapping[str, Any]] = {}
    for evidence in map(as_mapping, as_list(doc.get("evidences"))[:_MAX_ITEMS]):
        stage = _stage_of(as_mapping(evidence.get("data")).get("stage"))
        if stage is not None and stage not in found:
            found[stage] = evidence
    return found


def _links(cw: Mapping[str, Any]) -> dict[tuple[int, int], Mapping[str, Any]]:
    found: dict[tuple[int, int], Mapping[str, Any]] = {}
    for link in map(as_mapping, as_list(cw.get("links"))[:_MAX_ITEMS]):
        start, end = as_int(link.get("from")), as_int(link.get("to"))
        if start is not None and end is not None:
            found.setdefault((start, end), link)
    return found


def _link_html(link: Mapping[str, Any] | None, start: int, end: int, element: str) -> str:
    if link is None:
        return (f'<{element} class="link unknown"><b>{start}→{end} not linked</b>: a stage is missing</{element}>')
    strength = str(link.get("strength"))
    css = _STRENGTH_CLASS.get(strength, "unknown")
    return (f'<{element} class="link {css}"><b>{start}→{end} {_t(strength, 10)}</b>: '
            f"{_t(link.get('reason'))}</{element}>")


def _chain_strip(doc: Mapping[str, Any], cw: Mapping[str, Any]) -> str:
    evidence = _evidence(doc)
    links = _links(cw)
    items = []
    for stage in Stage:
        if stage is not Stage.APP_ACTIVITY:
            items.append(_link_html(links.get((int(stage) - 1, int(stage))), int(stage) - 1, int(stage), "li"))
        found = evidence.get(stage)
        if found is None:
            items.append(f'<li class="stage absent">{_stage_tag(stage)}<br>not seen</li>')
            continue
        data = as_mapping(found.get("data"))
        name = str(found.get("name") or "")[:_FIELD + 20]
        summary = name.split(": ", 1)[1] if name.startswith("stage ") and ": " in name else name
        items.append(f'<li class="stage">{_stage_tag(stage)}<br>{_t(summary, 200)}<br>'
                     f'<span class="why">{_time(data.get("time"))} · {_t(data.get("method"), 60)} · '
                     f'{_t(data.get("source"), 20)}</span></li>')
    return f'<ol class="chain">{"".join(items)}</ol>'


def _timeline(cw: Mapping[str, Any]) -> str:
    entries, more = _bounded(cw.get("timeline"), _MAX_ROWS)
    if not entries:
        return "<p>No timeline was recorded.</p>"
    rows = []
    for entry in map(as_mapping, entries):
        rows.append(f"<tr><td class=\"t\">{_time(entry.get('time'))}</td>"
                    f"<td>{_stage_tag(_stage_of(entry.get('stage')))}</td>"
                    f"<td>{_t(entry.get('text'))}</td><td>{_t(entry.get('source'), 20)} "
                    f"<code>{_t(entry.get('raw_ref'), 120)}</code></td></tr>")
    return ('<table class="timeline"><thead><tr><th>time (UTC)</th><th>stage</th><th>event</th><th>source</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>{_omitted(more, "timeline rows")}')


# -- the process tree --------------------------------------------------------------------------------------------


def _match(nodes: list[Mapping[str, Any]], process: Mapping[str, Any]) -> int | None:
    """Index of the tree node that is ``process``: by entity id, else the last node with its pid (the exec image
    after a fork has the fork's pid)."""
    if not process:
        return None
    uid = process.get("uid")
    if uid:
        for index, node in enumerate(nodes):
            if node.get("uid") == uid:
                return index
    pid = as_int(process.get("pid"))
    if pid is None:
        return None
    hits = [i for i, node in enumerate(nodes) if as_int(node.get("pid")) == pid]
    return hits[-1] if hits else None


def _tree(doc: Mapping[str, Any], cw: Mapping[str, Any]) -> str:
    nodes = [as_mapping(n) for n in as_list(cw.get("process_tree"))[:_MAX_NODES]]
    more = max(0, len(as_list(cw.get("process_tree"))) - _MAX_NODES)
    evidence = _evidence(doc)
    links = _links(cw)
    app = as_mapping(evidence.get(Stage.APP_ACTIVITY, {}).get("process"))
    file_path = as_mapping(evidence.get(Stage.FILE_LANDING, {}).get("file")).get("path")
    stage3 = _match(nodes, as_mapping(evidence.get(Stage.EXECUTION, {}).get("process")))
    stage4 = _match(nodes, as_mapping(evidence.get(Stage.EGRESS, {}).get("process")))
    egress_by_node: dict[int, list[Mapping[str, Any]]] = {}
    for item in map(as_mapping, as_list(cw.get("egress"))[:_MAX_ROWS]):
        index = _match(nodes, item)
        if index is not None:
            egress_by_node.setdefault(index, []).append(item)

    # (depth, html of the node) in document order; depths are re-derived so the nesting is valid whatever the data.
    entries: list[tuple[int, str]] = []
    app_index = _match(nodes, app) if app else (0 if nodes else None)
    shift = 0
    if app and app_index is None:
        # The quarantined-app route: the app (stage 1) is not an ancestor; the download links it to the tree.
        entries.append((0, _app_root_html(evidence[Stage.APP_ACTIVITY], app) + _stage1_link(links, file_path)))
        shift = 1
    for index, node in enumerate(nodes):
        depth = (as_int(node.get("depth")) or 0) + shift
        stage: Stage | None = None
        notes: list[str] = []
        if index == app_index:
            stage = Stage.APP_ACTIVITY
            notes.append(_stage1_link(links, file_path))
        if index == stage3:
            stage = Stage.EXECUTION
            notes.append(_link_html(links.get((2, 3)), 2, 3, "div"))
        if index in egress_by_node or index == stage4:
            stage = Stage.EGRESS if stage is None else stage
            notes.extend(_dest_html(e) for e in egress_by_node.get(index, [])[:10])
            if index == stage4:
                notes.append(_link_html(links.get((3, 4)), 3, 4, "div"))
        entries.append((depth, _node_html(node, str(node.get("role") or ""), str(node.get("seen") or ""), stage,
                                          notes, egress=(index in egress_by_node or index == stage4)
                                          and stage is not Stage.EGRESS)))
    if not entries:
        return "<p>No process tree was recorded.</p>"
    return _nest(entries) + _omitted(more, "processes")


def _app_root_html(evidence: Mapping[str, Any], process: Mapping[str, Any]) -> str:
    """The stage-1 app when it is not in the tree, named by its evidence.

    A unified-log record's process is the daemon that logged it (runningboardd, lsd), not the app, so the evidence
    summary ("Safari launch (unified log)") names the app and the process is shown as the record's sender.
    """
    name = str(evidence.get("name") or "")[:_FIELD + 20]
    summary = name.split(": ", 1)[1] if name.startswith("stage ") and ": " in name else name
    pid = as_int(process.get("pid"))
    sender = process.get("name") or _basename(process.get("path"))
    return (f'{_stage_tag(Stage.APP_ACTIVITY)}<span class="pname">{_t(summary or "the app", _NAME * 2)}</span>'
            f'<span class="role">recorded by {_t(sender, _NAME)} pid {pid if pid is not None else "?"} · not an '
            "ancestor of the tree below (linked through the download)</span>")


def _stage1_link(links: Mapping[tuple[int, int], Mapping[str, Any]], file_path: object) -> str:
    wrote = f'<span class="why">wrote <code>{_t(file_path)}</code></span>' if file_path else ""
    return _link_html(links.get((1, 2)), 1, 2, "div") + wrote


def _dest_html(item: Mapping[str, Any]) -> str:
    where = _t(item.get("hostname") or item.get("ip") or "?", _HOST)
    port = as_int(item.get("port"))
    target = f"{where}:{port}" if port is not None else where
    return f'<span class="dest">→ {target} ({_t(item.get("attribution"), 30)})</span>'


def _node_html(node: Mapping[str, Any], role: str, seen: str, stage: Stage | None, notes: list[str], *,
               egress: bool = False) -> str:
    name = node.get("name") or _basename(node.get("path"))
    command = node.get("cmd_line") or node.get("path") or ""
    tag = _stage_tag(stage) if stage is not None else ""
    if egress:
        tag += _stage_tag(Stage.EGRESS)
    pid = as_int(node.get("pid"))
    role_text = " · ".join(_t(x, 20) for x in (role, seen) if x)
    cmd = f'<code class="cmd">{_t(command, _CMD)}</code>' if command else ""
    return (f'{tag}<span class="pname">{_t(name, _NAME)}</span>'
            f'<span class="pid">pid {pid if pid is not None else "?"}</span>'
            f'<span class="role">{role_text}</span>{cmd}{"".join(notes)}')


def _nest(entries: list[tuple[int, str]]) -> str:
    """Nested ``<ul>`` lists from (depth, content) pairs in pre-order; a depth may grow by one level at most."""
    out: list[str] = []
    previous = -1
    for raw_depth, content in entries:
        depth = min(max(raw_depth, 0), previous + 1, _MAX_DEPTH)
        if depth > previous:
            out.append('<ul class="tree">' if previous < 0 else "<ul>")
        else:
            out.append("</li>")
            out.extend("</ul></li>" for _ in range(previous - depth))
        out.append(f"<li>{content}")
        previous = depth
    out.append("</li>")
    out.extend("</ul></li>" for _ in range(previous))
    out.append("</ul>")
    return "".join(out)


# -- context and egress ------------------------------------------------------------------------------------------


def _context(cw: Mapping[str, Any]) -> str:
    parts = []
    for key, title in (("quarantine", "quarantine"), ("gatekeeper", "Gatekeeper")):
        entries, more = _bounded(cw.get(key), _MAX_ITEMS)
        if entries:
            parts.append(f'<ul class="plain {key}">' + "".join(
                f"<li><b>{title}</b>: {_t(e)}</li>" for e in entries) + "</ul>" + _omitted(more, f"{title} records"))
    return "".join(parts) or "<p>No quarantine attribute or Gatekeeper decision was seen for this chain.</p>"


def _egress(cw: Mapping[str, Any]) -> str:
    entries, more = _bounded(cw.get("egress"), _MAX_ROWS)
    if not entries:
        return "<p>No egress was attributed to the chain.</p>"
    rows = []
    for item in map(as_mapping, entries):
        method = str(item.get("attribution") or "")
        explained = _ATTRIBUTION.get(method, "")
        where = _t(item.get("hostname") or item.get("ip") or "?", _HOST)
        if item.get("hostname") and item.get("ip"):
            where += f" ({_t(item.get('ip'), 45)})"
        port = as_int(item.get("port"))
        rows.append(
            f"<tr><td class=\"t\">{_time(item.get('time'))}</td><td>{_t(item.get('process'), _NAME)} pid "
            f"{_t(item.get('pid'), 12)}</td><td><code>{where}</code></td>"
            f"<td class=\"t\">{port if port is not None else '?'}"
            f" {_t(item.get('protocol'), 10)}</td><td class=\"t\">{_t(item.get('destination'), 20)}</td>"
            f"<td><b>{_t(method, 30)}</b>{f' ({html.escape(explained)})' if explained else ''}</td>"
            f"<td class=\"t\">{_CONFIDENCE.get(as_int(item.get('confidence')) or 0, '?')}</td></tr>")
    return ('<table class="egress"><thead><tr><th>time (UTC)</th><th>process</th><th>destination</th>'
            "<th>port</th><th>class</th><th>attribution method</th><th>confidence</th></tr></thead>"
            f'<tbody>{"".join(rows)}</tbody></table>{_omitted(more, "connections")}')


def _playbook(doc: Mapping[str, Any]) -> str:
    # The playbook's lines are plain text (printable and bounded, not escaped for markup): escaped here.
    steps = triage_playbook(doc)[:_MAX_ITEMS]
    return '<ol class="plain playbook">' + "".join(f"<li>{_t(s, 1000)}</li>" for s in steps) + "</ol>" if steps else ""
