"""The HTML report without a browser: structure, bounds, and escaping of every attacker-controlled string.

The findings are the bundled samples' own OCSF documents (``events/`` through the engine), then the same documents
with a hostile payload written into every string the report shows, plus documents whose fields have the wrong
types. The page is parsed with :class:`html.parser.HTMLParser`: the tags, attributes and classes it holds must be
the report's own, and the payloads must come back only as text.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from chainwatch.app.cli import iter_events
from chainwatch.engine import Engine
from chainwatch.events import iso_ns
from chainwatch.findings.ocsf import to_ocsf
from chainwatch.policy import load_policy
from chainwatch.readiness.coverage import NEEDS, HostCoverage, NeedStatus, Verdict, collect, verdict
from chainwatch.readiness.report import CSP, SCRIPT, render_report
from chainwatch.readiness.timeline import parse_time_ns, relative
from chainwatch.sources import Normalizer
from chainwatch.state.memory import InMemoryStore

EVENTS = Path(__file__).resolve().parents[3] / "events"
GENERATED = 1_772_443_200_000_000_000  # 2026-03-02T09:20:00Z
BIG = "B" * 100_000
MARKUP = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</style><script>alert(1)</script>",
    "'><svg onload=alert(1)>",
    "</code></li></ul></details><iframe src=//evil.example>",
)
JS_URL = "javascript:alert(document.cookie)"
ENTITY = "&lt;script&gt;"
HOSTILE = "".join(MARKUP) + JS_URL + ENTITY + "\u202egpj.exe" + BIG
ALLOWED_TAGS = {"a", "article", "b", "body", "br", "code", "dd", "details", "div", "dl", "dt", "footer", "h1", "h2",
                "h3", "head", "header", "html", "input", "label", "li", "main", "meta", "nav", "ol", "p", "script",
                "section", "small", "span", "style", "summary", "table", "tbody", "td", "th", "thead", "title", "tr",
                "ul",
                # the timeline picture
                "svg", "text", "tspan", "line", "circle", "polygon"}
ALLOWED_ATTRS = {"charset", "class", "colspan", "content", "href", "http-equiv", "id", "lang", "name", "open", "scope",
                 "title", "hidden", "for", "type", "placeholder", "autocomplete", "spellcheck", "aria-controls",
                 "role", "aria-labelledby", "viewbox", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "points"}
ALLOWED_CLASSES = {"alert", "badge", "card", "cards", "chain", "cmd", "conf", "ctx", "dest", "egress", "facts",
                   "files", "finding", "gatekeeper", "host", "in", "link", "mark", "matrix", "ok", "pid", "plain",
                   "playbook", "pname", "quarantine", "role", "s1", "s2", "s3", "s4", "stage", "strong", "t", "tag",
                   "timeline", "top", "tree", "verdict", "weak", "why", "yes", "no", "missing", "unknown", "absent",
                   "nonalert", "suppressed", "omitted", "sev0", "sev1", "sev2", "sev3", "sev4", "sev5",
                   "c0", "c1", "c2", "c3", "c4", "c5", "sx", "search", "index", "pips", "pip", "meta", "cols",
                   "links", "more", "need", "miss", "ready", "lead", "hosts", "short", "h", "d", "fold", "src",
                   "tl", "lt", "lane", "axis", "tick", "tk", "dot", "drop", "egress-rule", "egress-mark", "main",
                   "ml", "rel", "start", "end", "steps", "none"}
VOID = {"br", "meta", "input"}


class Page(HTMLParser):
    """The elements, attributes and text of a page, and whether its open and close tags pair up."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.stack: list[str] = []
        self.mismatched: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.mismatched.append(tag)
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        # The report's own style sheet is not text a reader sees.
        if not self.stack or self.stack[-1] != "style":
            self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def tags(self) -> set[str]:
        return {tag for tag, _ in self.elements}

    def classes(self) -> set[str]:
        return {c for _, attrs in self.elements for c in (attrs.get("class") or "").split()}

    def find(self, tag: str, css: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == tag and css in (a.get("class") or "").split()]


# -- inputs ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> tuple[list[dict[str, Any]], list[Verdict], dict[str, HostCoverage]]:
    """The bundled samples: OCSF findings, verdicts and coverage, as ``chainwatch report`` computes them."""
    policy = load_policy()
    engine = Engine(policy, InMemoryStore())
    coverages: dict[str, HostCoverage] = {}
    for event in iter_events([str(EVENTS)], Normalizer(), None):
        collect((event,), policy, coverages)
        engine.ingest(event)
    engine.flush()
    findings = engine.all_findings()
    for finding in findings:
        coverages[finding.host].note_findings([finding])
    verdicts = [verdict(coverages[h], policy.window_ns) for h in sorted(coverages)]
    return [to_ocsf(f, policy) for f in findings], verdicts, coverages


def _poison(value: Any, key: str = "") -> Any:
    """Every string (except the keys the report needs to find its way) becomes the hostile payload."""
    if isinstance(value, dict):
        return {k: _poison(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v, key) for v in value]
    if isinstance(value, str) and key not in {"uid"}:
        return value[:20] + HOSTILE
    return value


def _hostile_inputs(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Verdict],
                                                          dict[str, HostCoverage]]:
    host = "mac-" + HOSTILE
    coverage = HostCoverage(host)
    coverage.needs = {"app_activity": [3, GENERATED]}
    coverage.sources = {}
    coverage.stalled = {"stage3_no_egress": 2}
    statuses = (NeedStatus("app_activity", "ok", HOSTILE), NeedStatus("file_events", "<b>" + HOSTILE, HOSTILE),
                NeedStatus("network", "missing", HOSTILE))
    hostile_verdict = Verdict(host, False, (HOSTILE, "2 chain(s) " + HOSTILE), statuses)
    return [_poison(copy.deepcopy(d)) for d in docs], [hostile_verdict], {host: coverage}


def _all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_strings(item)
    elif isinstance(value, str):
        yield value


# -- the page ----------------------------------------------------------------------------------------------------


def test_render_report_bundled_samples_has_every_section(bundled: Any) -> None:
    docs, verdicts, coverages = bundled
    page = Page(render_report(docs, verdicts, coverages, GENERATED))
    assert not page.mismatched and not page.stack
    ids = {a.get("id") for _, a in page.elements}
    assert {"coverage", "findings", "f1", "f2", "fleet-summary", "q", "searchbar"} <= ids
    # mac-02 falls short (weak app activity and exec details) and is spelled out; mac-01 meets every need.
    hosts = page.find("tr", "host")
    assert len(hosts) == 1
    assert len(page.find("li", "sx")) == 1 and "1 host(s) fully ready" in page.text
    assert len(page.find("article", "finding")) == 2
    assert len(page.find("ul", "tree")) == 2
    assert len(page.find("svg", "tl")) == 2
    assert len(page.find("table", "timeline")) == 2 and len(page.find("table", "egress")) == 2
    text = page.text
    for need in NEEDS:
        assert {n.need for n in verdicts[0].needs} >= {need}
    assert "mac-02: can complete AN1316: yes" in text
    assert "mac-01(2 records arrived out of order beyond 60 s)" in text
    assert "stage 1 app activity" in text and "stage 4 egress" in text
    assert "2→3 strong" in text and "downloaded as UpdateHelper.zip" in text
    assert "pid_lifetime" in text and "same pid within the process's lifetime (exec..exit)" in text
    assert "/Users/alice/Library/Caches/x.sh" in text
    assert "Gatekeeper" in text and "user_override" in text


def test_render_report_head_declares_strict_csp_and_loads_nothing(bundled: Any) -> None:
    docs, verdicts, coverages = bundled
    text = render_report(docs, verdicts, coverages, GENERATED)
    head = text[: text.index("<style>")]
    assert f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP)}">' in head
    # The CSP comes before anything it governs: only the charset meta precedes it.
    assert head.index("Content-Security-Policy") < head.index("<title>")
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'none'" and directives["style-src"] == "'unsafe-inline'"
    # Scripts: only the one whose SHA-256 is in the policy; no 'unsafe-inline', no host, no scheme.
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert directives["script-src"] == f"'sha256-{digest}'"
    lowered = text.lower()
    assert lowered.count("<script") == 1 and f"<script>{SCRIPT}</script>" in text
    for marker in ("<img", "<link", "<iframe", "src=", "url(", "@import", "xmlns", "<base", "<form"):
        assert marker not in lowered, marker
    # A URL may appear only as escaped text (a curl command line): never in an attribute, never a link out.
    assert "https://cdn.update-check.example/p" in Page(text).text
    page = Page(text)
    assert not any("//" in (value or "") or "http" in (value or "") for _, attrs in page.elements
                   for name, value in attrs.items() if name != "content")
    assert all((a.get("href") or "").startswith("#") for t, a in page.elements if t == "a")


def test_render_report_tags_attributes_and_classes_are_the_reports_own(bundled: Any) -> None:
    docs, _verdicts, _coverages = bundled
    page = Page(render_report(*_hostile_inputs(docs), GENERATED))
    assert page.tags() <= ALLOWED_TAGS, page.tags() - ALLOWED_TAGS
    attrs = {name for _, a in page.elements for name in a}
    assert attrs <= ALLOWED_ATTRS, attrs - ALLOWED_ATTRS
    assert page.classes() <= ALLOWED_CLASSES, page.classes() - ALLOWED_CLASSES
    hrefs = [a["href"] for t, a in page.elements if t == "a"]
    assert hrefs and all(h is not None and re.fullmatch(r"#(coverage|findings|f\d+)", h) for h in hrefs)
    assert all(re.fullmatch(r"[a-z0-9-]+", a["id"] or "") for _, a in page.elements if "id" in a)


def test_render_report_hostile_strings_appear_only_as_escaped_text(bundled: Any) -> None:
    docs, _verdicts, _coverages = bundled
    hostile_docs, hostile_verdicts, hostile_coverages = _hostile_inputs(docs)
    text = render_report(hostile_docs, hostile_verdicts, hostile_coverages, GENERATED)
    for payload in MARKUP:
        assert payload not in text, payload
        # The same characters are there, escaped: the analyst sees what the attacker wrote.
        assert html.escape(payload, quote=True) in text, payload
    # An entity in the data is shown as typed, not decoded into markup.
    assert "&amp;lt;script&amp;gt;" in text
    page = Page(text)
    assert "<script>alert(1)</script>" in page.text
    assert '"><img src=x onerror=alert(1)>' in page.text
    assert not page.mismatched and not page.stack
    # A javascript: URL has no markup characters: it is text too, never an attribute value.
    assert JS_URL in page.text
    assert not any("javascript" in (v or "") for _, a in page.elements for v in a.values())


def test_render_report_every_poisoned_field_is_bounded(bundled: Any) -> None:
    docs, _verdicts, _coverages = bundled
    hostile = _hostile_inputs(docs)
    assert any(len(s) > 100_000 for s in _all_strings(hostile[0]))
    text = render_report(*hostile, GENERATED)
    assert BIG not in text and "B" * 3000 not in text
    # Each shown value is cut at a few hundred characters; the page stays small whatever the input.
    assert len(text) < 600_000
    assert max(len(t) for t in Page(text).texts) < 4000


def test_render_report_direction_override_is_shown_escaped(bundled: Any) -> None:
    docs, _verdicts, _coverages = bundled
    text = render_report(*_hostile_inputs(docs), GENERATED)
    assert "\u202e" not in text
    assert "\\u202egpj.exe" in text


def test_render_report_coverage_matrix_marks_status_and_verdict() -> None:
    coverage = HostCoverage("mac-nopid")
    coverage.stalled = {"stage3_no_egress": 3}
    needs = (NeedStatus("app_activity", "ok", "7 unified-log app events"),
             NeedStatus("file_events", "weak", "few"),
             NeedStatus("process_exec", "ok", "9 execs"),
             NeedStatus("quarantine", "ok", "1 event"),
             NeedStatus("network", "missing", "4 connections; with process 0%"))
    item = Verdict("mac-nopid", False, ("network events carry no process",), needs)
    page = Page(render_report([], [item], {"mac-nopid": coverage}, GENERATED))
    cells = [a.get("class") for t, a in page.elements if t == "td" and a.get("class") in {"ok", "weak", "missing"}]
    assert cells == ["ok", "weak", "ok", "ok", "missing"]
    assert page.find("td", "no")
    assert "mac-nopid: can complete AN1316: no, because network events carry no process" in page.text
    assert "mac-nopid: 3 chain(s) reached stage 3 with no egress seen" in page.text
    assert "0 of 1 host(s) can complete AN1316." in page.text
    assert "No findings." in page.text


def test_render_report_unknown_status_gets_no_class_from_data() -> None:
    needs = (NeedStatus("network", 'ok" onclick="alert(1)', "x"),)
    page = Page(render_report([], [Verdict("h", True, (), needs)], {}, GENERATED))
    assert page.find("td", "unknown")
    assert all("onclick" not in name for _, a in page.elements for name in a)


# -- finding headers and trees -----------------------------------------------------------------------------------


def _doc(**chainwatch: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"severity_id": 3, "severity": "Medium", "confidence_id": 2, "confidence": "Medium",
                            "is_alert": False, "time": 1, "finding_info": {"uid": "cw-1", "title": "t"},
                            "device": {"hostname": "h"}, "evidences": [],
                            "unmapped": {"chainwatch": {"stages_present": [1, 3], "suppressed_by": None}}}
    base["unmapped"]["chainwatch"].update(chainwatch)
    return base


def test_render_report_suppressed_finding_header_names_rule() -> None:
    doc = _doc(suppressed_by="reviewed-<b>rule</b>")
    page = Page(render_report([doc], [], {}, GENERATED))
    assert page.find("span", "suppressed")
    assert "SUPPRESSED" in page.text and "allowlist rule reviewed-<b>rule</b>" in page.text
    # A non-alert finding starts collapsed; its facts still say it is not an alert.
    assert not any("open" in a for t, a in page.elements if t == "details")
    assert "not an alert" in page.text


def test_render_report_alerts_sorted_first_and_open() -> None:
    quiet = _doc()
    quiet["finding_info"]["title"] = "quiet"
    loud = _doc()
    loud.update(is_alert=True, severity_id=5)
    loud["finding_info"]["title"] = "loud"
    page = Page(render_report([quiet, loud], [], {}, GENERATED))
    titles = [t for t in page.texts if t in {"quiet", "loud"}]
    assert titles[0] == "loud"
    details = [a for t, a in page.elements if t == "details"]
    assert "open" in details[0] and "open" not in details[1]
    assert page.find("span", "alert") and page.find("span", "sev5")


def test_render_report_tree_nests_by_depth_and_marks_links() -> None:
    nodes = [{"depth": d, "pid": 100 + i, "uid": f"u{i}", "path": f"/bin/p{i}", "role": "r", "seen": "exec"}
             for i, d in enumerate((0, 1, 2, 1, 7, -3, 0))]
    doc = _doc(process_tree=nodes,
               links=[{"from": 1, "to": 2, "strength": "strong", "reason": "wrote it"},
                      {"from": 2, "to": 3, "strength": "weak", "reason": "same name only"},
                      {"from": 3, "to": 4, "strength": "strong", "reason": "same process entity"}],
               egress=[{"uid": "u2", "pid": 102, "ip": "203.0.113.9", "port": 443, "attribution": "entity",
                        "confidence": 3}])
    doc["evidences"] = [{"data": {"stage": 1}, "process": {"pid": 100, "uid": "u0"}},
                        {"data": {"stage": 3}, "process": {"pid": 101, "uid": "u1"}},
                        {"data": {"stage": 4}, "process": {"pid": 102, "uid": "u2"}}]
    text = render_report([doc], [], {}, GENERATED)
    page = Page(text)
    assert not page.mismatched and not page.stack
    tree = text[text.index('<ul class="tree">'):]
    tree = tree[: tree.index("<h3>")]
    # Depths 0,1,2,1 nest; 7 is clamped to one level under its predecessor; -3 and 0 return to the top.
    assert tree.count("<ul") == tree.count("</ul>") == 4
    assert tree.count("<li>") == 7
    assert page.find("div", "strong") and page.find("div", "weak")
    assert "2→3 weak" in page.text and "same name only" in page.text
    assert "→ 203.0.113.9:443 (entity)" in page.text
    assert "stage 3 execution" in page.text and "stage 4 egress" in page.text


def test_render_report_missing_stage_link_marked_not_linked() -> None:
    doc = _doc(process_tree=[{"depth": 0, "pid": 1, "path": "/Applications/Safari.app/Contents/MacOS/Safari"}],
               links=[])
    page = Page(render_report([doc], [], {}, GENERATED))
    assert "1→2 not linked" in page.text
    assert page.find("li", "unknown") and page.find("tr", "absent")


def test_render_report_quarantined_route_shows_app_as_root_recorded_by_sender() -> None:
    doc = _doc(process_tree=[{"depth": 0, "pid": 1377, "uid": "es:1377:1", "path": "/x/UpdateHelper.app/M/U"}])
    doc["evidences"] = [{"name": "stage 1: Safari launch (unified log)", "data": {"stage": 1},
                         "process": {"pid": 164, "name": "runningboardd"}},
                        {"data": {"stage": 3}, "process": {"pid": 1377, "uid": "es:1377:1"}}]
    text = render_report([doc], [], {}, GENERATED)
    tree = text[text.index('<ul class="tree">'):]
    assert tree.index("Safari launch (unified log)") < tree.index("UpdateHelper.app")
    assert "recorded by runningboardd pid 164" in tree
    assert tree.count("<ul") == 2


@pytest.mark.parametrize("garbage", [
    "not a dict", None, 7,
    {"unmapped": {"chainwatch": {"process_tree": "x", "timeline": {"a": 1}, "links": [None, 3, {"from": "1"}],
                                 "egress": [None, {"port": "443", "confidence": "high"}], "files": 5,
                                 "quarantine": [1, None], "stages_present": "1234"}}},
    {"finding_info": [], "evidences": [None, {"data": "x"}, {"data": {"stage": 9}}], "severity_id": True,
     "unmapped": {"chainwatch": {"process_tree": [None, {"depth": "3"}, {"depth": 10**9, "pid": "x"}]}}},
])
def test_render_report_mistyped_fields_render_without_error(garbage: Any) -> None:
    text = render_report([garbage], [], {}, GENERATED)
    page = Page(text)
    assert not page.mismatched and not page.stack
    assert len(page.find("article", "finding")) == 1


def test_render_report_many_findings_bounded_with_note() -> None:
    docs = [_doc() for _ in range(510)]
    page = Page(render_report(docs, [], {}, GENERATED))
    assert len(page.find("article", "finding")) == 500
    assert "… 10 more findings not shown" in page.text


# -- the redesign: findings first, timeline picture, compact matrix, one hashed script ---------------------------


def _articles(text: str) -> list[str]:
    """The raw HTML of each finding card, in page order."""
    return [chunk[: chunk.index("</article>")] for chunk in text.split('<article class="finding')[1:]]


def test_render_report_findings_lead_sorted_by_severity_before_coverage() -> None:
    docs = []
    for title, severity, alert in (("low", 2, True), ("crit-quiet", 5, False), ("medium", 3, True),
                                   ("crit-alert", 5, True), ("high", 4, False)):
        doc = _doc()
        doc.update(severity_id=severity, is_alert=alert)
        doc["finding_info"]["title"] = title
        docs.append(doc)
    verdicts = [Verdict("h", False, ("no network",), (NeedStatus("network", "missing", "none"),))]
    text = render_report(docs, verdicts, {}, GENERATED)
    # The findings (index and cards) come before the coverage matrix in the document.
    assert text.index('id="findings"') < text.index('<table class="index"') < text.index('id="f1"') \
        < text.index('id="coverage"') < text.index('<table class="matrix"')
    page = Page(text)
    expected = ["crit-alert", "crit-quiet", "high", "medium", "low"]
    index_titles = [t for t in page.texts if t in set(expected)][: len(expected)]
    assert index_titles == expected
    cards = [next(t for t in expected if f"</span> {t}<span" in card) for card in _articles(text)]
    assert cards == expected
    rows = [a.get("class") for t, a in page.elements if t == "tr" and "sx" in (a.get("class") or "").split()
            and "host" not in (a.get("class") or "")]
    assert rows == ["sx c5", "sx c5", "sx c4", "sx c3", "sx c2"]
    assert [a["href"] for t, a in page.elements if t == "a" and a["href"] not in {"#findings", "#coverage"}] == \
        ["#f1", "#f2", "#f3", "#f4", "#f5"]


def test_render_report_each_finding_has_timeline_svg_with_egress_marked(bundled: Any) -> None:
    docs, verdicts, coverages = bundled
    text = render_report(docs, verdicts, coverages, GENERATED)
    cards = _articles(text)
    assert len(cards) == 2
    for card in cards:
        page = Page(card)
        svgs = page.find("svg", "tl")
        assert len(svgs) == 1
        assert svgs[0]["role"] == "img" and svgs[0]["aria-labelledby"]
        # The main egress marker (a diamond) and one per attributed connection, each with a rule to the axis.
        assert len(page.find("polygon", "main")) == 1
        assert len(page.find("polygon", "egress-mark")) == len(page.find("line", "egress-rule")) + 1 >= 2
        # Stages 1-3 as markers, each lane titled.
        assert {c for a in page.find("circle", "mark") for c in (a["class"] or "").split()} >= {"s1", "s2", "s3"}
        title = next(t for t in page.texts if t.startswith("Timeline: "))
        assert "stage 1 app activity +0 s" in title and "stage 4 egress +" in title
    mac02 = Page(next(c for c in cards if "mac-02" in c)).text
    # Relative times on the markers, and the waits between stages (10 minutes, then about a second each).
    assert "+10 min 30 s" in mac02 and "+10 min 32 s" in mac02
    assert "between stages: 1→2 10 min 30 s   ·   2→3 1.2 s   ·   3→4 513 ms" in mac02
    assert "curl connected to 203.0.113.7:443" in mac02


def test_render_report_timeline_svg_without_egress_or_times_says_so() -> None:
    doc = _doc(timeline=[{"time": "2026-03-02T09:15:02.118Z", "stage": 1, "text": "Safari launch"},
                         {"time": "2026-03-02T09:17:02.118Z", "stage": 3, "text": "sh ran"}])
    card = Page(_articles(render_report([doc], [], {}, GENERATED))[0])
    assert not card.find("polygon", "egress-mark")
    assert card.find("text", "absent") and "not seen" in card.text
    assert "+2 min" in card.text and "between stages: 1→3 2 min" in card.text
    bare = Page(_articles(render_report([_doc()], [], {}, GENERATED))[0])
    assert "no event time was recorded" in bare.text


def _verdict(host: str, can: bool, **statuses: str) -> Verdict:
    needs = tuple(NeedStatus(need, statuses.get(need, "ok"), f"{need} detail of {host}") for need in NEEDS)
    reasons = tuple(f"{need} is {status}" for need, status in statuses.items())
    return Verdict(host, can, reasons, needs)


def test_render_report_matrix_spells_out_only_hosts_that_fall_short() -> None:
    verdicts = [_verdict(f"ready-{i}", True) for i in range(5)]
    verdicts.insert(2, _verdict("weak-host", True, process_exec="weak"))
    verdicts.append(_verdict("blind-host", False, network="missing", app_activity="weak"))
    page = Page(render_report([], verdicts, {}, GENERATED))
    rows = page.find("tr", "host")
    assert len(rows) == 2
    short_text = "".join(page.texts[page.texts.index("blind-host"):page.texts.index("✓ 5 host(s) fully ready: "
                                                                                    "every need of the chain has "
                                                                                    "telemetry")])
    # The host that cannot complete the chain comes first; each row names what it misses, and only that.
    assert short_text.index("blind-host") < short_text.index("weak-host")
    assert "network detail of blind-host" in short_text and "app_activity detail of blind-host" in short_text
    assert "process_exec detail of weak-host" in short_text
    assert "file_events detail" not in short_text and "ready-" not in short_text
    # The ready hosts: a count, and their names folded away (the search box still reaches them).
    ready = page.find("li", "sx")
    assert len(ready) == 5
    assert "5 host(s) meet every need; 2 fall short" in page.text
    marks = [a.get("class") for t, a in page.elements if t == "td" and a.get("class") in {"ok", "weak", "missing"}]
    assert marks == ["weak", "ok", "ok", "ok", "missing", "ok", "ok", "weak", "ok", "ok"]


def test_render_report_script_close_and_quotes_in_host_stay_text() -> None:
    host = '</script><script>alert(1)</script>"\'\u202e<!--'
    doc = _doc()
    doc["device"]["hostname"] = host
    doc["unmapped"]["chainwatch"]["process_tree"] = [{"depth": 0, "pid": 1, "name": host, "path": "/x"}]
    doc["unmapped"]["chainwatch"]["timeline"] = [{"time": "2026-03-02T09:15:02Z", "stage": 1, "text": host}]
    text = render_report([doc], [_verdict(host, False, network="missing")], {}, GENERATED)
    # One script element, the page's own, at the end; the host is text wherever it is shown.
    assert text.lower().count("<script") == 1 and text.lower().count("</script") == 1
    assert text.rstrip().endswith(f"<script>{SCRIPT}</script></body></html>")
    assert "<!--" not in text and "\u202e" not in text
    page = Page(text)
    assert not page.mismatched and not page.stack
    shown = '</script><script>alert(1)</script>"\'\\u202e<!--'
    assert page.text.count(shown) >= 4  # index row, card summary, tree, matrix row


def test_timeline_parse_time_and_relative() -> None:
    assert parse_time_ns("2026-03-02T09:15:02.118000000Z") == 1_772_442_902_118_000_000
    assert parse_time_ns(iso_ns(1_772_442_902_118_000_123)) == 1_772_442_902_118_000_123
    for bad in ("2026-13-02T09:15:02Z", "2026-03-02 09:15:02", None, 5, "x" * 100):
        assert parse_time_ns(bad) is None
    cases = {0: "+0 s", 513_000_000: "+513 ms", 41_800_000_000: "+41.8 s", 60 * 10**9: "+1 min",
             631 * 10**9: "+10 min 31 s", 7500 * 10**9: "+2 h 05 min", 90_000 * 10**9: "+1 d 1 h"}
    for delta, expected in cases.items():
        assert relative(delta) == expected
    assert relative(-2 * 10**9) == "\N{MINUS SIGN}2 s" and relative(2 * 10**9, sign=False) == "2 s"
