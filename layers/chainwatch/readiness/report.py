"""``chainwatch report``: one self-contained HTML file a SOC analyst reads, findings first.

The page leads with the findings, most severe first: an index (one row per finding: severity, host, chain,
stages, first seen, where it went) and then one card per finding with a small timeline picture (an inline SVG:
stages 1-4 on a time axis, egress marked, see :mod:`chainwatch.readiness.timeline`), the process tree from the app
to the egressing process (each link between stages marked strong or weak, and why), the facts, the egress with its
attribution method and, folded, the full timeline, files, quarantine and Gatekeeper context and the triage
playbook. Fleet coverage follows as a compact matrix (hosts x chain needs): hosts whose telemetry meets every need
are folded into a count, and only the hosts that fall short are spelled out, with what they miss.

A search box over hosts and findings filters the index rows, cards and matrix rows as one types (every term must
match; ``/`` focuses it, Escape clears it; ``report.html#q=mac-02`` opens the page filtered). It is the page's only
script: a constant, allowed by its SHA-256 hash in the Content Security Policy, that reads the page's text and
only sets ``hidden``, one counter's ``textContent`` and, while a search is typed, opens the fold of ready hosts
when a match is inside it. With scripting disabled the box stays hidden and the page reads the same, every section
and every fold there.

Telemetry is attacker-controlled: paths, command lines, app names and host names can carry markup, control and
bidirectional-override characters, or megabytes of text. So:

* every value from a finding or a coverage counter goes through :func:`_t`: made printable (control and format
  characters such as U+202E shown escaped), bounded, then :func:`html.escape` d with quotes, so it is text in an
  element or in a quoted attribute, never markup (in the SVG too, which the HTML parser reads the same way);
* nothing from the data is placed in a tag name, an attribute name, a URL, a class or an id: classes come from
  fixed tables keyed by the data, ids are sequence numbers;
* the file loads nothing: styles are inline, fonts are the system's, and the Content Security Policy
  (:data:`CSP`) forbids every source but the inline styles and the one hashed script, so even a mistake in
  escaping could not run injected code or call out.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from chainwatch.events import iso_ns
from chainwatch.findings.model import STAGE_TITLES, Stage
from chainwatch.findings.render import as_int, as_list, as_mapping, triage_playbook
from chainwatch.findings.story import safe
from chainwatch.readiness.coverage import NEED_TITLES, NEEDS, HostCoverage, Verdict, fleet_summary
from chainwatch.readiness.timeline import parse_time_ns, relative, timeline_svg

__all__ = ["CSP", "SCRIPT", "render_report"]

#: The search box's script, the only one on the page (kept to ES5 and the DOM: any browser a SOC uses runs it).
#: It never parses or inserts markup: it compares lowered ``textContent`` and sets ``hidden``.
SCRIPT = """(function () {
"use strict";
var bar = document.getElementById("searchbar"), box = document.getElementById("q"),
    count = document.getElementById("q-count");
if (!bar || !box || !count) { return; }
var items = Array.prototype.slice.call(document.querySelectorAll(".sx"));
var texts = items.map(function (el) { return el.textContent.toLowerCase(); });
function run() {
  var terms = box.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
  items.forEach(function (el, i) {
    var hit = terms.every(function (term) { return texts[i].indexOf(term) >= 0; });
    el.hidden = !hit;
    if (hit) { shown += 1; }
  });
  count.textContent = terms.length ? shown + " of " + items.length + " match" : items.length + " items";
  Array.prototype.forEach.call(document.querySelectorAll("details.fold"), function (fold) {
    fold.open = terms.length > 0 && fold.querySelector(".sx:not([hidden])") !== null;
  });
}
box.addEventListener("input", run);
document.addEventListener("keydown", function (e) {
  if (e.key === "/" && document.activeElement !== box) { e.preventDefault(); box.focus(); }
  else if (e.key === "Escape" && document.activeElement === box) { box.value = ""; run(); }
});
if (location.hash.indexOf("#q=") === 0) {
  try { box.value = decodeURIComponent(location.hash.slice(3)); } catch (err) { box.value = location.hash.slice(3); }
}
bar.hidden = false;
run();
}());"""
_SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")

#: The page's Content Security Policy: inline styles and the one hashed script; no other script, no images, fonts,
#: frames, connections, forms or base URL.
CSP = (f"default-src 'none'; style-src 'unsafe-inline'; script-src '{_SCRIPT_HASH}'; base-uri 'none'; "
       "form-action 'none'")

# Bounds of one value, in characters (after which it is cut with an ellipsis).
_FIELD = 300
_CMD = 600
_NAME = 80
_HOST = 120
_SHORT = 40
# Bounds of lists: a finding with 10 000 timeline rows, or a fleet of 50 000 hosts, still makes a page a browser
# opens.
_MAX_FINDINGS = 500
_MAX_ROWS = 200
_MAX_NODES = 200
_MAX_ITEMS = 50
_MAX_DEPTH = 24
_MAX_SHORT_HOSTS = 500
_MAX_READY_HOSTS = 2000

_SEVERITY = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_SEV_SHORT = {1: "Info", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_CONFIDENCE = {1: "low", 2: "medium", 3: "high"}
_STATUS_CLASS = {"ok": "ok", "weak": "weak", "missing": "missing"}
_STATUS_MARK = {"ok": "✓", "weak": "~", "missing": "✗"}
_STRENGTH_CLASS = {"strong": "strong", "weak": "weak"}
_NEED_SHORT = {
    "app_activity": "1 app activity",
    "file_events": "2 file events",
    "process_exec": "3 exec details",
    "quarantine": "3 quarantine/GK",
    "network": "4 network by process",
}
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


def _severity_id(doc: Mapping[str, Any]) -> int:
    value = as_int(doc.get("severity_id"))
    return value if value is not None and value in _SEVERITY else 0


# -- the page ----------------------------------------------------------------------------------------------------

_STYLE = """
:root{--ok:#137333;--ok-bg:#e6f4ea;--weak:#8a4b00;--weak-bg:#fef3d6;--miss:#b3261e;--miss-bg:#fce8e6;
--ink:#1f2328;--mute:#57606a;--line:#d0d7de;--card:#fff;--bg:#f3f5f7;--accent:#0b57d0;
--c5:#8c1d18;--c4:#d93025;--c3:#e37400;--c2:#1967d2;--c1:#5f6368;--eg:#d93025}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--ink);font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1440px;margin:0 auto;padding:10px 18px 40px}
header.top{background:#0d1b2a;color:#fff;padding:10px 18px}
header.top .in{max-width:1440px;margin:0 auto;display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 18px}
header.top h1{margin:0;font-size:18px;font-weight:650;letter-spacing:.2px}
header.top p{margin:0;color:#c9d4e0;font-size:12.5px}
header.top nav a{color:#9ec3ff;margin-right:12px}
.search{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);
box-shadow:0 1px 3px rgba(0,0,0,.06)}
.search .in{max-width:1440px;margin:0 auto;padding:7px 18px;display:flex;align-items:center;gap:10px}
.search label{font-weight:600;color:var(--mute)}
.search input{flex:1;max-width:640px;font:inherit;padding:5px 9px;border:1px solid #b8c2cc;border-radius:6px}
.search input:focus{outline:2px solid var(--accent);outline-offset:-1px}
#q-count{color:var(--mute);font-size:12px}
.cards{display:flex;gap:8px;flex-wrap:wrap;margin:10px 0 4px}
.card{background:var(--card);border:1px solid var(--line);border-left-width:4px;border-radius:6px;
padding:5px 12px;min-width:110px}
.card b{display:block;font-size:19px;line-height:1.2}
.card span{color:var(--mute);font-size:12px}
.card.c5{border-left-color:var(--c5)} .card.c4{border-left-color:var(--c4)} .card.c3{border-left-color:var(--c3)}
.card.c2{border-left-color:var(--c2)} .card.c1{border-left-color:var(--c1)} .card.hosts{border-left-color:var(--ok)}
.card.short{border-left-color:var(--weak)}
h2{font-size:16px;margin:18px 0 8px;border-bottom:1px solid var(--line);padding-bottom:3px}
h2 small{color:var(--mute);font-weight:400;font-size:13px;margin-left:6px}
h3{font-size:11.5px;margin:12px 0 5px;text-transform:uppercase;letter-spacing:.6px;color:var(--mute)}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{border:1px solid var(--line);padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td,th,li,code,dd,summary,text{overflow-wrap:anywhere;unicode-bidi:isolate}
td.t{white-space:nowrap}
table.index td{border-left:none;border-right:none}
table.index tr.sx>td:first-child{border-left:4px solid var(--c1)}
table.index tr.c5>td:first-child{border-left-color:var(--c5)}
table.index tr.c4>td:first-child{border-left-color:var(--c4)}
table.index tr.c3>td:first-child{border-left-color:var(--c3)}
table.index tr.c2>td:first-child{border-left-color:var(--c2)}
table.index td.h{min-width:90px;max-width:260px} table.index td.d{min-width:150px;max-width:300px}
table.index a{color:var(--ink);font-weight:600;text-decoration:none} table.index a:hover{text-decoration:underline}
.pips{white-space:nowrap;font:600 11px/1 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.pip{display:inline-block;width:17px;text-align:center;padding:2px 0;margin-right:1px;border-radius:3px;
background:#eceff1;color:#9aa0a6}
.pip.s1{background:#d2e3fc;color:#174ea6} .pip.s2{background:#feefc3;color:#8a4b00}
.pip.s3{background:#e9d7fd;color:#681da8} .pip.s4{background:var(--eg);color:#fff}
code{font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;background:#f1f3f5;
padding:1px 4px;border-radius:4px}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;font-size:11.5px;font-weight:700;margin-right:5px;
border:1px solid transparent;white-space:nowrap;vertical-align:1px}
.sev5{background:var(--c5);color:#fff} .sev4{background:var(--c4);color:#fff} .sev3{background:var(--c3);color:#fff}
.sev2{background:var(--c2);color:#fff} .sev1,.sev0{background:var(--c1);color:#fff}
.alert{background:#fff;color:var(--c4);border-color:var(--c4)} .nonalert{background:#fff;color:var(--mute);
border-color:var(--line)} .suppressed{background:#fff;color:var(--weak);border-color:var(--weak)}
.conf{background:#e8f0fe;color:var(--accent)}
article.finding{background:var(--card);border:1px solid var(--line);border-left:5px solid var(--c1);
border-radius:6px;margin:10px 0;padding:0 14px 10px}
article.c5{border-left-color:var(--c5)} article.c4{border-left-color:var(--c4)} article.c3{border-left-color:var(--c3)}
article.c2{border-left-color:var(--c2)}
article.finding>details>summary{cursor:pointer;padding:9px 0 7px;font-size:14px;font-weight:600}
summary .meta{font-weight:400;color:var(--mute);font-size:12.5px;margin-left:6px}
.cols{display:grid;grid-template-columns:minmax(0,1.25fr) minmax(0,1fr);gap:4px 22px}
@media (max-width:1000px){.cols{grid-template-columns:1fr}}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:1px 12px;margin:2px 0 6px}
dl.facts dt{color:var(--mute)} dl.facts dd{margin:0}
svg.tl{display:block;width:100%;height:auto;max-height:190px;background:#fbfcfd;border:1px solid #e3e8ee;
border-radius:6px;font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
svg.tl .lane{stroke:#e3e8ee;stroke-width:1} svg.tl .axis{stroke:#8c959f;stroke-width:1}
svg.tl .tick{stroke:#8c959f} svg.tl .tk{fill:var(--mute);text-anchor:middle;font-size:10.5px}
svg.tl .lt{text-anchor:end;font-weight:600;font-size:11.5px}
svg.tl text.s1{fill:#174ea6} svg.tl text.s2{fill:#8a4b00} svg.tl text.s3{fill:#681da8} svg.tl text.s4{fill:var(--eg)}
svg.tl circle.s1{fill:#1a73e8} svg.tl circle.s2{fill:#f9ab00} svg.tl circle.s3{fill:#8430ce}
svg.tl .mark{stroke:#fff;stroke-width:2} svg.tl .dot{opacity:.55}
svg.tl .drop{stroke:#c3cad3;stroke-dasharray:2 3}
svg.tl .ctx{stroke:#8c959f;stroke-width:1.5}
svg.tl .egress-rule{stroke:var(--eg);stroke-width:1.5;stroke-dasharray:4 2}
svg.tl .egress-mark{fill:var(--eg);stroke:#fff;stroke-width:1}
svg.tl .egress-mark.main{stroke:#5c0b07;stroke-width:1.5}
svg.tl .ml{fill:var(--ink)} svg.tl .ml.end{text-anchor:end} svg.tl .ml.s4{fill:var(--eg);font-weight:600}
svg.tl .rel{font-weight:700}
svg.tl .absent,svg.tl .none{fill:#9aa0a6;font-style:italic} svg.tl .none{text-anchor:middle}
svg.tl .steps{fill:var(--mute);font-size:11px}
ul.links{list-style:none;margin:6px 0 2px;padding:0;display:flex;flex-wrap:wrap;gap:4px 6px}
ul.links li{font-size:12px;padding:1px 8px;border:1px solid;border-radius:5px}
li.link.strong,div.link.strong{border-color:var(--ok);color:var(--ok);background:var(--ok-bg)}
li.link.weak,div.link.weak{border-color:var(--weak);color:var(--weak);background:var(--weak-bg);
border-style:dashed}
li.link.unknown,div.link.unknown{border-color:#bbb;color:var(--mute);background:#f6f6f6;border-style:dotted}
.tag{display:inline-block;border-radius:4px;padding:0 5px;font-size:11px;font-weight:600;margin-right:5px;
white-space:nowrap}
.s1{background:#e8f0fe;color:#174ea6} .s2{background:#fef7e0;color:#8a4b00} .s3{background:#f3e8fd;color:#681da8}
.s4{background:#fce8e6;color:#a50e0e} .ctx{background:#eceff1;color:#455a64}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:20px}
ul.tree{padding-left:2px}
ul.tree li{position:relative;padding:2px 0 2px 13px;border-left:1px solid #b8c2cc}
ul.tree li::before{content:"";position:absolute;left:0;top:12px;width:9px;border-top:1px solid #b8c2cc}
ul.tree li:last-child{border-left-color:transparent}
ul.tree li:last-child::before{border-left:1px solid #b8c2cc;height:12px;top:0;border-top:none;
border-bottom:1px solid #b8c2cc;width:9px}
.pname{font-weight:700} .pid,.role{color:var(--mute);font-size:12px;margin-left:6px}
.cmd{display:block;margin-top:1px;max-height:5.6em;overflow:auto}
div.link{display:table;margin:2px 0;padding:0 7px;border:1px solid;border-radius:5px;font-size:12px}
.dest{color:var(--eg);font-weight:600;font-size:12px;margin-left:6px}
.why{display:block;color:var(--mute);font-size:12px}
.omitted{color:var(--mute);font-style:italic}
ul.plain,ol.plain{margin:3px 0;padding-left:20px}
details.more{margin-top:8px;border-top:1px solid #e3e8ee;padding-top:4px}
details.more>summary{cursor:pointer;color:var(--accent);font-weight:600;font-size:12.5px}
table.egress th{white-space:nowrap}
table.egress td:nth-child(2){min-width:110px} table.egress td:nth-child(3){min-width:180px}
table.egress td:nth-child(4){width:38%}
.matrix th.need{font-size:11.5px;white-space:nowrap;text-align:center}
.matrix th[scope=row]{min-width:110px;max-width:260px} .matrix td.src{min-width:140px}
.matrix td.ok,.matrix td.weak,.matrix td.missing,.matrix td.unknown{text-align:center;white-space:nowrap;
font-weight:700;width:88px}
.matrix td.ok{background:var(--ok-bg);color:var(--ok)} .matrix td.weak{background:var(--weak-bg);color:var(--weak)}
.matrix td.missing{background:var(--miss-bg);color:var(--miss)} .matrix td.unknown{color:var(--mute)}
.matrix td.yes{color:var(--ok);font-weight:700;white-space:nowrap} .matrix td.no{color:var(--miss);font-weight:700;
white-space:nowrap}
.matrix ul.miss{margin:0;padding-left:16px} .matrix ul.miss li{margin:0}
.matrix tr.ready td{background:#f4fbf6;color:var(--ok)}
.matrix tr.ready summary{cursor:pointer;font-weight:700}
ul.ready{list-style:none;margin:6px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:4px}
ul.ready li{background:#fff;border:1px solid #b7dfc3;border-radius:4px;padding:0 6px;color:var(--ink);font-size:12px}
ul.ready .why{display:inline;margin-left:4px}
.lead{margin:4px 0 8px;color:var(--ink)}
footer{color:var(--mute);font-size:12px;margin-top:26px}
"""


def render_report(findings_docs: Sequence[Mapping[str, Any]], verdicts: Sequence[Verdict],
                  coverages: Mapping[str, HostCoverage], generated_at_ns: int) -> str:
    """The whole report as one self-contained HTML document, findings first.

    Parameters
    ----------
    findings_docs
        OCSF 2004 Detection Findings as :func:`chainwatch.findings.ocsf.to_ocsf` renders them (read tolerantly:
        a missing or mistyped field shows as empty, never fails the report).
    verdicts
        One readiness :class:`~chainwatch.readiness.coverage.Verdict` per host.
    coverages
        The per-host counters the verdicts came from (for clock skew, sources and stalled chains).
    generated_at_ns
        When the report was made, in nanoseconds since the epoch (shown in the header).

    Returns
    -------
    str
        The HTML text; its one script is :data:`SCRIPT` and it references no external resource.
    """
    docs = [as_mapping(d) for d in findings_docs]
    # Most severe first; within a severity, alerts before non-alert and suppressed findings, then the newest.
    order = sorted(range(len(docs)), key=lambda i: (-_severity_id(docs[i]), docs[i].get("is_alert") is not True,
                                                    -(as_int(docs[i].get("time")) or 0), i))
    shown, hidden = order[:_MAX_FINDINGS], max(0, len(order) - _MAX_FINDINGS)
    alerts = sum(1 for d in docs if d.get("is_alert") is True)
    summary = fleet_summary(verdicts)
    by_severity: dict[int, int] = {}
    for doc in docs:
        by_severity[_severity_id(doc)] = by_severity.get(_severity_id(doc), 0) + 1
    short = sum(1 for v in verdicts if _falls_short(v))
    cards = [f'<div class="card c{sev}"><b>{by_severity[sev]}</b><span>{_SEV_SHORT.get(sev, "unrated")}</span></div>'
             for sev in sorted(by_severity, reverse=True)]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP, quote=True)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>chainwatch AN1316 report</title>",
        f"<style>{_STYLE}</style></head><body>",
        '<header class="top"><div class="in"><h1>chainwatch · AN1316 findings and readiness</h1>',
        f"<p>MITRE ATT&amp;CK AN1316: app → file → script or quarantined app → egress · generated "
        f"{html.escape(_time(iso_ns(generated_at_ns)))} UTC</p>",
        '<nav><a href="#findings">Findings</a><a href="#coverage">Fleet coverage</a></nav></div></header>',
        '<div class="search" id="searchbar" hidden><div class="in"><label for="q">Search</label>'
        '<input id="q" type="search" placeholder="hosts and findings: host, process, path, destination, technique… '
        '(press /)" autocomplete="off" spellcheck="false" aria-controls="findings coverage">'
        '<span id="q-count" role="status"></span></div></div>',
        "<main>",
        '<div class="cards">',
        f'<div class="card c4" id="card-alerts"><b>{alerts}</b><span>alerts</span></div>',
        f'<div class="card" id="card-findings"><b>{len(docs)}</b><span>findings</span></div>',
        *cards,
        f'<div class="card hosts" id="card-hosts"><b>{summary["can_complete"]} of {summary["hosts"]}</b>'
        "<span>hosts can complete AN1316</span></div>",
        f'<div class="card short" id="card-short"><b>{short}</b><span>hosts fall short</span></div></div>',
        _findings_section(docs, shown, hidden),
        _coverage_section(verdicts, coverages, summary),
        '<footer>Every value taken from telemetry is shown as text: escaped, with control and direction-override '
        "characters made visible, and cut to a bounded length. This file loads nothing; its one script is the "
        "search box (allowed by its hash), and without it every section reads the same.</footer>",
        f"</main><script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"


# -- findings ----------------------------------------------------------------------------------------------------


def _findings_section(docs: list[Mapping[str, Any]], shown: list[int], hidden: int) -> str:
    out = ['<section id="findings"><h2>Findings<small>most severe first</small></h2>']
    if not shown:
        out.append("<p>No findings.</p></section>")
        return "".join(out)
    out.append(_index(docs, shown))
    for number, index in enumerate(shown, 1):
        out.append(_finding(docs[index], number))
    out.append(_omitted(hidden, "findings"))
    out.append("</section>")
    return "".join(out)


def _kind_badge(doc: Mapping[str, Any]) -> str:
    if doc.get("is_alert") is True:
        return '<span class="badge alert">ALERT</span>'
    if _chainwatch(doc).get("suppressed_by"):
        return '<span class="badge suppressed">SUPPRESSED</span>'
    return '<span class="badge nonalert">NOT AN ALERT</span>'


def _pips(cw: Mapping[str, Any]) -> str:
    present = {as_int(s) for s in as_list(cw.get("stages_present"))[:8]}
    pips = []
    for stage in Stage:
        css = f"pip s{int(stage)}" if int(stage) in present else "pip"
        state = "seen" if int(stage) in present else "not seen"
        pips.append(f'<span class="{css}" title="stage {int(stage)} {html.escape(STAGE_TITLES[stage])}: {state}">'
                    f"{int(stage)}</span>")
    return f'<span class="pips">{"".join(pips)}</span>'


def _first_destination(cw: Mapping[str, Any]) -> str:
    entries = as_list(cw.get("egress"))
    if not entries:
        return '<span class="why">none seen</span>'
    first = as_mapping(entries[0])
    where = _t(first.get("hostname") or first.get("ip") or "?", _HOST)
    port = as_int(first.get("port"))
    more = f' <span class="why">+{len(entries) - 1} more</span>' if len(entries) > 1 else ""
    return f"<code>{where}{f':{port}' if port is not None else ''}</code>{more}"


def _index(docs: list[Mapping[str, Any]], shown: list[int]) -> str:
    """One row per finding, in the order of the cards below: what a person scans before opening one."""
    rows = []
    for number, index in enumerate(shown, 1):
        doc = docs[index]
        info = as_mapping(doc.get("finding_info"))
        cw = _chainwatch(doc)
        severity_id = _severity_id(doc)
        title = _t(info.get("title") or doc.get("message") or "chainwatch finding", 200)
        rows.append(
            f'<tr class="sx c{severity_id}"><td class="t"><span class="badge sev{severity_id}">'
            f'{html.escape(_SEV_SHORT.get(severity_id, "Unknown"))}</span>{_kind_badge(doc)}</td>'
            f"<td class=\"h\"><code>{_t(as_mapping(doc.get('device')).get('hostname'), _HOST)}</code></td>"
            f'<td><a href="#f{number}">{title}</a></td><td>{_pips(cw)}</td>'
            f"<td class=\"t\">{_time(_ms_iso(info.get('first_seen_time')))}</td>"
            f'<td class="d">{_first_destination(cw)}</td></tr>')
    return ('<table class="index"><thead><tr><th>severity</th><th>host</th><th>chain</th><th>stages</th>'
            f'<th>first seen (UTC)</th><th>egress</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _finding(doc: Mapping[str, Any], number: int) -> str:
    info = as_mapping(doc.get("finding_info"))
    cw = _chainwatch(doc)
    severity_id = _severity_id(doc)
    severity = _SEVERITY.get(severity_id, "Unknown")
    confidence = _CONFIDENCE.get(as_int(doc.get("confidence_id")) or 0, "unknown")
    title = _t(info.get("title") or doc.get("message") or "chainwatch finding")
    opened = " open" if doc.get("is_alert") is True else ""
    host = _t(as_mapping(doc.get("device")).get("hostname"), _HOST)
    out = [f'<article class="finding sx c{severity_id}" id="f{number}"><details{opened}><summary>'
           f'<span class="badge sev{severity_id}">{html.escape(severity)}</span>{_kind_badge(doc)}'
           f'<span class="badge conf">confidence {html.escape(confidence)}</span> {title}'
           f'<span class="meta">{host} · {_time(_ms_iso(info.get("first_seen_time")))} UTC</span></summary>']
    out.append(timeline_svg(doc, cw, number))
    out.append(_link_list(cw))
    out.append('<div class="cols"><div><h3>Process tree, app to egress</h3>' + _tree(doc, cw) + "</div><div>")
    out.append("<h3>Facts</h3>" + _facts(doc, info, cw, cw.get("suppressed_by")) + "</div></div>")
    out.append("<h3>Egress</h3>" + _egress(cw))
    timeline_rows = len(as_list(cw.get("timeline")))
    out.append(f'<details class="more"><summary>Timeline ({timeline_rows} events), stage evidence, files, '
               "quarantine and Gatekeeper, triage playbook</summary>")
    out.append("<h3>Timeline</h3>" + _timeline(cw))
    out.append("<h3>Stage evidence</h3>" + _stage_evidence(doc))
    files, more = _bounded(cw.get("files"), _MAX_ITEMS)
    out.append("<h3>Files</h3>" + (
        '<ul class="plain files">' + "".join(f"<li><code>{_t(f)}</code></li>" for f in files) + "</ul>"
        + _omitted(more, "files") if files else "<p>No file was recorded.</p>"))
    out.append("<h3>Quarantine and Gatekeeper</h3>" + _context(cw))
    playbook = _playbook(doc)
    if playbook:
        out.append("<h3>Triage playbook</h3>" + playbook)
    out.append("</details></details></article>")
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
    first = parse_time_ns(_ms_iso(info.get("first_seen_time")))
    last = parse_time_ns(_ms_iso(info.get("last_seen_time")))
    took = f" ({relative(last - first, sign=False)})" if first is not None and last is not None else ""
    rows = [
        ("host", f"<code>{_t(as_mapping(doc.get('device')).get('hostname'), _HOST)}</code>"),
        ("finding id", f"<code>{_t(info.get('uid'), _NAME)}</code>"),
        ("severity", f"{_t(doc.get('severity'), 20)} · confidence {_t(doc.get('confidence'), 20)} · "
                     f"{'alert' if doc.get('is_alert') is True else 'not an alert'}"),
    ]
    if suppressed_by:
        rows.append(("suppressed by", f"allowlist rule <code>{_t(suppressed_by, _NAME)}</code>"))
    rows += [
        ("route", f"{_t(cw.get('route'), 30)} · stages {stages}"),
        ("seen", f"{_time(_ms_iso(info.get('first_seen_time')))} → {_time(_ms_iso(info.get('last_seen_time')))} "
                 f"UTC{took}"),
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


# -- coverage ----------------------------------------------------------------------------------------------------


def _falls_short(item: Verdict) -> bool:
    """A host falls short when it cannot complete the chain or any need is weak, missing or unreported."""
    statuses = {n.need: n.status for n in item.needs}
    return not item.can_complete or any(statuses.get(need) != "ok" for need in NEEDS)


def _coverage_section(verdicts: Sequence[Verdict], coverages: Mapping[str, HostCoverage],
                      summary: Mapping[str, Any]) -> str:
    out = ['<section id="coverage"><h2>Fleet coverage<small>can each host\'s telemetry complete AN1316?</small>'
           "</h2>"]
    if not verdicts:
        out.append('<p id="fleet-summary">No telemetry was read, so no host can be assessed.</p></section>')
        return "".join(out)
    short = [v for v in verdicts if _falls_short(v)]
    ready = [v for v in verdicts if not _falls_short(v)]
    # Hosts that cannot complete the chain first, then the most gaps, then by name.
    short.sort(key=lambda v: (v.can_complete, -sum(n.status == "missing" for n in v.needs),
                              -sum(n.status != "ok" for n in v.needs), v.host))
    out.append(f'<p class="lead" id="fleet-summary">{summary["can_complete"]} of {summary["hosts"]} host(s) can '
               f"complete AN1316. {len(ready)} host(s) meet every need; {len(short)} fall short and are listed "
               "with what they miss.</p>")
    head = "".join(f'<th class="need" title="{html.escape(NEED_TITLES[n], quote=True)}">'
                   f"{html.escape(_NEED_SHORT.get(n, n))}</th>" for n in NEEDS)
    out.append(f'<table class="matrix"><thead><tr><th>host</th>{head}<th class="need">can complete</th>'
               "<th>what it misses</th>"
               "<th>sources and clock skew</th></tr></thead><tbody>")
    for item in short[:_MAX_SHORT_HOSTS]:
        out.append(_short_row(item, coverages.get(item.host)))
    span = len(NEEDS) + 4
    if len(short) > _MAX_SHORT_HOSTS:
        out.append(f'<tr><td colspan="{span}">{_omitted(len(short) - _MAX_SHORT_HOSTS, "hosts that fall short")}'
                   "</td></tr>")
    if ready:
        out.append(f'<tr class="ready"><td colspan="{span}">{_ready_hosts(ready, coverages)}</td></tr>')
    out.append("</tbody></table>")

    reasons = as_list(summary.get("top_reasons"))
    if reasons:
        out.append('<h3>Most common gaps</h3><ul class="plain">' + "".join(
            f"<li>{_t(count, 12)} host(s): {_t(reason)}</li>" for reason, count in reasons) + "</ul>")
    stalled = []
    for item in verdicts:
        coverage = coverages.get(item.host)
        if coverage is None:
            continue
        for key, text in _STALLED.items():
            count = coverage.stalled.get(key, 0)
            if count:
                stalled.append(f'<li class="sx">{_t(item.host, _HOST)}: {count} {html.escape(text)}</li>')
    if stalled:
        out.append('<h3>Partial chains</h3><ul class="plain">' + "".join(stalled[:_MAX_ROWS]) + "</ul>"
                   + _omitted(len(stalled) - _MAX_ROWS, "hosts with partial chains"))
    out.append("</section>")
    return "".join(out)


def _short_row(item: Verdict, coverage: HostCoverage | None) -> str:
    status = {n.need: n for n in item.needs}
    cells = []
    misses = []
    for need in NEEDS:
        entry = status.get(need)
        if entry is None:
            cells.append('<td class="unknown" title="not reported">n/a</td>')
            misses.append(f"<li><b>{html.escape(NEED_TITLES[need])}</b>: not reported</li>")
            continue
        css = _STATUS_CLASS.get(entry.status, "unknown")
        mark = _STATUS_MARK.get(entry.status, "?")
        word = "ok" if css == "ok" else _t(entry.status, 10).upper()
        cells.append(f'<td class="{css}">{mark} {word}</td>')
        if css != "ok":
            misses.append(f"<li><b>{html.escape(NEED_TITLES[need])}</b>: {_t(entry.detail)}</li>")
    answer = "yes" if item.can_complete else "no"
    return (f'<tr class="host sx"><th scope="row"><code>{_t(item.host, _HOST)}</code></th>{"".join(cells)}'
            f'<td class="{answer}">{answer}</td><td><ul class="miss">{"".join(misses)}</ul>'
            f'<span class="why verdict">{_t(item.text, 2000)}</span></td>'
            f'<td class="src">{_sources(coverage)}</td></tr>')


def _ready_hosts(ready: list[Verdict], coverages: Mapping[str, HostCoverage]) -> str:
    """Hosts that meet every need, folded into a count; opened, their names (and any note, e.g. records out of
    order) as a compact list the search box also filters."""
    del coverages  # the verdict's reasons already carry the notes worth reading here
    items = []
    for item in sorted(ready, key=lambda v: v.host)[:_MAX_READY_HOSTS]:
        note = "; ".join(item.reasons[:5])
        why = f'<span class="why">({_t(note, 200)})</span>' if note else ""
        items.append(f'<li class="sx">{_t(item.host, _HOST)}{why}</li>')
    more = _omitted(len(ready) - _MAX_READY_HOSTS, "ready hosts")
    return (f'<details class="fold"><summary>✓ {len(ready)} host(s) fully ready: every need of the chain has '
            "telemetry</summary>"
            f'<ul class="ready">{"".join(items)}</ul>{more}</details>')


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




def _link_list(cw: Mapping[str, Any]) -> str:
    """The three links between stages, each strong, weak or not linked, with the engine's reason."""
    links = _links(cw)
    items = [_link_html(links.get((start, start + 1)), start, start + 1, "li") for start in (1, 2, 3)]
    return f'<ul class="links">{"".join(items)}</ul>'


def _stage_evidence(doc: Mapping[str, Any]) -> str:
    evidence = _evidence(doc)
    rows = []
    for stage in Stage:
        found = evidence.get(stage)
        if found is None:
            rows.append(f'<tr class="absent"><td>{_stage_tag(stage)}</td><td colspan="3">not seen</td></tr>')
            continue
        data = as_mapping(found.get("data"))
        name = str(found.get("name") or "")[:_FIELD + 20]
        summary = name.split(": ", 1)[1] if name.startswith("stage ") and ": " in name else name
        rows.append(f'<tr><td>{_stage_tag(stage)}</td><td>{_t(summary, 200)}</td>'
                    f'<td class="t">{_time(data.get("time"))}</td><td>{_t(data.get("method"), 60)} · '
                    f'{_t(data.get("source"), 20)}</td></tr>')
    return ('<table class="chain"><thead><tr><th>stage</th><th>evidence</th><th>time (UTC)</th><th>method · source'
            f'</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


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
        port = as_int(item.get("port"))
        target = f"{where}:{port}" if port is not None else where
        also = [_t(item.get("protocol"), 10), _t(item.get("destination"), 20)]
        if item.get("hostname") and item.get("ip"):
            also.insert(0, _t(item.get("ip"), 45))
        confidence = _CONFIDENCE.get(as_int(item.get("confidence")) or 0, "?")
        rows.append(
            f"<tr><td class=\"t\">{_time(item.get('time'))}</td><td><b>{_t(item.get('process'), _NAME)}</b> pid "
            f"{_t(item.get('pid'), 12)}</td><td><code>{target}</code>"
            f'<span class="why">{" · ".join(a for a in also if a)}</span></td>'
            f"<td><b>{_t(method, 30)}</b>, confidence {confidence}"
            f'{f"""<span class="why">{html.escape(explained)}</span>""" if explained else ""}</td></tr>')
    return ('<table class="egress"><thead><tr><th>time (UTC)</th><th>process</th><th>destination</th>'
            "<th>attribution method</th></tr></thead>"
            f'<tbody>{"".join(rows)}</tbody></table>{_omitted(more, "connections")}')


def _playbook(doc: Mapping[str, Any]) -> str:
    # The playbook's lines are plain text (printable and bounded, not escaped for markup): escaped here.
    steps = triage_playbook(doc)[:_MAX_ITEMS]
    return '<ol class="plain playbook">' + "".join(f"<li>{_t(s, 1000)}</li>" for s in steps) + "</ol>" if steps else ""
