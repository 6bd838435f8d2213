"""``chainwatch report`` opened in a real browser: Debian's ``chromium``, headless.

Two reports are made through the command line: one of the bundled samples (``events/``), one of hostile telemetry
in the real formats: the mac-01 eslogger, unified-log and Elastic Defend records and the mac-02 OCSF records,
rewritten so that app names, paths, command lines, destination names and host names carry ``<script>``,
attribute-breaking ``"><img onerror>``, ``</style><script>``, ``javascript:`` URLs, a right-to-left override and
100 KB strings. Both still correlate into full chains, so every hostile string reaches the page.

Chromium then renders each file. ``--dump-dom`` gives the DOM after parsing (and after any script that ran), which
must hold only the report's own elements, the payloads as text and every section; ``--screenshot`` must give a
picture that is not blank; ``--enable-logging=stderr`` shows the console, which must stay silent (no script error,
no Content Security Policy violation: nothing even tried to run or load).

The hostile payloads that could run set ``data-pwned`` on the document when they do. The page is also rendered
with its CSP removed, so escaping alone is shown to hold; and a control copy with one payload pasted in unescaped
shows the checks catch an injection (the attribute appears without the CSP, a violation is logged with it).

The browser tests skip when ``/usr/bin/chromium`` is absent (developer machines); CI installs it (``.ci/run``).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import zlib
from contextlib import redirect_stderr
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from chainwatch.app.cli import main
from chainwatch.readiness.report import CSP
from chainwatch.readiness.report import SCRIPT as PAGE_SCRIPT

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0")
SCREEN = "--window-size=1400,2000"


def pwn(tag: str) -> str:
    """JavaScript that leaves a mark on the document if it ever runs."""
    return f"document.documentElement.setAttribute('data-pwned','{tag}')"


SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
STYLE = "</style><script>alert(1)</script>"
JS_URL = "javascript:alert(document.cookie)"
RLO = "\u202e"
BIG = "A" * 100_000
# Path components cannot hold "/": the app name carries the payloads that fit in one.
APP = f'UpdateHelper{RLO}ppa.exe"><img src=x onerror="{pwn("app")}">{IMG}'
URL = f"{JS_URL}//<script>{pwn('url')}</script>{SCRIPT}"
BIG_ARG = f"use scripting additions <script>{pwn('big')}</script>{BIG}{STYLE}"
HOST1 = f"mac-01{SCRIPT}<script>{pwn('host')}</script>{RLO}"
HOST2 = f"mac-02{IMG}{STYLE}<svg onload=\"{pwn('svg')}\">"
SCRIPT_PATH = f"/Users/alice/Library/Caches/{STYLE}<script>{pwn('path')}</script>.sh"
WORD = f"Microsoft Word{SCRIPT}{RLO}"
DESTINATION = f"cdn.{SCRIPT}.example"
#: Strings that must come back as text in the rendered DOM (bounded values keep their beginning).
SHOWN = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "</style><script>alert(1)</script>",
         "javascript:alert(document.cookie)", "\\u202e", f"<script>{pwn('host')}</script>")

ALLOWED_TAGS = {"a", "article", "b", "body", "br", "code", "dd", "details", "div", "dl", "dt", "footer", "h1", "h2",
                "h3", "head", "header", "html", "input", "label", "li", "main", "meta", "nav", "ol", "p", "script",
                "section", "small", "span", "style", "summary", "table", "tbody", "td", "th", "thead", "title", "tr",
                "ul", "svg", "text", "tspan", "line", "circle", "polygon"}
ALLOWED_ATTRS = {"charset", "class", "colspan", "content", "href", "http-equiv", "id", "lang", "name", "open", "scope",
                 "title", "hidden", "for", "type", "placeholder", "autocomplete", "spellcheck", "aria-controls",
                 "role", "aria-labelledby", "viewbox", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "points"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# -- hostile telemetry in the real formats -----------------------------------------------------------------------


def _rewrite(value: Any, replace: list[tuple[str, str]], exact: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite(v, replace, exact) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, replace, exact) for v in value]
    if isinstance(value, str):
        if value in exact:
            return exact[value]
        for old, new in replace:
            value = value.replace(old, new)
    return value


def _rewrite_file(source: Path, target: Path, replace: list[tuple[str, str]], exact: dict[str, str]) -> None:
    records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    target.write_text("".join(json.dumps(_rewrite(r, replace, exact), ensure_ascii=False) + "\n" for r in records),
                      encoding="utf-8")


def write_hostile_telemetry(root: Path) -> list[Path]:
    """The bundled stories with hostile strings in app names, paths, arguments, destinations and host names.

    mac-01's eslogger and unified-log records carry no host (the CLI's ``--host`` names them ``HOST1``); its
    Elastic Defend records and mac-02's OCSF records name their hosts, rewritten to ``HOST1`` and ``HOST2``.
    """
    mac01, mac02 = root / "h1", root / "h2"
    mac01.mkdir(parents=True)
    mac02.mkdir(parents=True)
    replace1 = [("UpdateHelper", APP), ("https://cdn.update-check.example/p", URL),
                ("use scripting additions", BIG_ARG)]
    exact1 = {"mac-01": HOST1, "cdn.update-check.example": DESTINATION}
    for name in ("eslogger.jsonl", "unifiedlog.ndjson", "elastic-network.ndjson", "elastic-network-terminal.ndjson"):
        _rewrite_file(EVENTS / "mac-01" / name, mac01 / name, replace1, exact1)
    replace2 = [("/Users/alice/Library/Caches/x.sh", SCRIPT_PATH),
                ("https://203.0.113.7/stage2?id=mac-02", URL + BIG)]
    _rewrite_file(EVENTS / "mac-02" / "ocsf.json", mac02 / "ocsf.json", replace2,
                  {"mac-02": HOST2, "Microsoft Word": WORD})
    return [mac01, mac02]


# -- running the CLI and the browser -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    path: Path
    code: int
    stderr: str


def _report(out: Path, *args: str) -> Report:
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        code = main(["report", *args, "--all", "--out", str(out)])
    return Report(out, code, stderr.getvalue())


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return _report(tmp_path_factory.mktemp("bundled") / "report.html", str(EVENTS))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Report:
    root = tmp_path_factory.mktemp("hostile")
    paths = write_hostile_telemetry(root / "telemetry")
    return _report(root / "report.html", *map(str, paths), "--host", HOST1)


def _chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip("headless browser tests need Debian's chromium at /usr/bin/chromium "
                    "(apt-get install chromium; CI installs it in .ci/run)")
    return CHROMIUM


@dataclass(frozen=True)
class Rendered:
    stdout: str
    console: list[str]


def _browse(page: Path, profile: Path, *extra: str, fragment: str = "") -> Rendered:
    """Open ``page`` (with ``#fragment``) in headless chromium with ``extra`` flags; the console messages are taken
    from its log."""
    command = [str(_chromium()), *FLAGS, f"--user-data-dir={profile}", *extra,
               page.as_uri() + (f"#{fragment}" if fragment else "")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    console = [line for line in result.stderr.splitlines() if re.search(r":CONSOLE\b", line)]
    return Rendered(result.stdout, console)


@dataclass
class Item:
    """One element the search box filters (class ``sx``): whether the browser left it hidden, and its text."""

    tag: str
    hidden: bool
    text: str = ""


class Dom(HTMLParser):
    """Elements and visible text of a serialized DOM, and the search box's items with their own text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.scripts: list[str] = []
        self.items: list[Item] = []
        self._raw: str | None = None  # inside <style> or <script>
        self._open: list[tuple[str, Item | None]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.elements.append((tag, found))
        self._raw = tag if tag in {"style", "script"} else None
        if tag == "script":
            self.scripts.append("")
        if tag in VOID:
            return
        item = None
        if "sx" in (found.get("class") or "").split():
            item = Item(tag, "hidden" in found)
            self.items.append(item)
        self._open.append((tag, item))

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "script"}:
            self._raw = None
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._raw == "script":
            self.scripts[-1] += data
        elif self._raw is None:
            self.texts.append(data)
            for _, item in self._open:
                if item is not None:
                    item.text += data

    def shown(self) -> list[Item]:
        return [i for i in self.items if not i.hidden]

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def with_class(self, tag: str, css: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == tag and css in (a.get("class") or "").split()]

    def ids(self) -> set[str]:
        return {a["id"] or "" for _, a in self.elements if "id" in a}


def _dump(page: Path, tmp_path: Path, name: str = "dom", fragment: str = "") -> tuple[Dom, Rendered]:
    rendered = _browse(page, tmp_path / f"profile-{name}", "--dump-dom", fragment=fragment)
    assert "<html" in rendered.stdout, rendered.stdout[:500]
    return Dom(rendered.stdout), rendered


def _assert_only_report_markup(dom: Dom) -> None:
    tags = {t for t, _ in dom.elements}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    attrs = {name for _, a in dom.elements for name in a}
    assert attrs <= ALLOWED_ATTRS, attrs - ALLOWED_ATTRS
    assert not any(name.startswith("on") or name == "data-pwned" for _, a in dom.elements for name in a)
    hrefs = [a.get("href") or "" for t, a in dom.elements if t == "a"]
    assert hrefs and all(re.fullmatch(r"#(coverage|findings|f\d+)", h) for h in hrefs), hrefs
    # One script, the report's own search box; one picture per finding, the report's own timeline.
    assert dom.scripts == [PAGE_SCRIPT]
    assert all(t != "svg" or a.get("class") == "tl" for t, a in dom.elements)
    assert len([t for t, _ in dom.elements if t == "svg"]) == len(dom.with_class("article", "finding"))


def _png(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct pixel rows of a PNG (a blank page has one)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, header = 8, [], b""
    while position < len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, color = header[8], header[9]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    stride = 1 + (width * channels * depth + 7) // 8
    raw = zlib.decompress(b"".join(chunks))
    assert len(raw) == stride * height
    # Rows are compared as stored (filter byte and filtered bytes): identical pixel rows give identical bytes.
    rows = {raw[i * stride + 1:(i + 1) * stride] for i in range(height)}
    return width, height, len(rows)


# -- the command line --------------------------------------------------------------------------------------------


def test_report_cli_bundled_samples_writes_one_self_contained_file(bundled: Report) -> None:
    assert bundled.code == 0, bundled.stderr
    text = bundled.path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert f'content="{CSP}"'.replace("'", "&#x27;") in text
    assert not re.search(r"<link|<img|<iframe|<base|src=|url\(|@import|xmlns", text, re.IGNORECASE)
    assert text.lower().count("<script") == 1 and f"<script>{PAGE_SCRIPT}</script></body>" in text
    # No address to fetch anywhere: a URL is only ever escaped text (a command line), never an attribute.
    assert not re.search(r"""(?:href|src|action|data|poster|srcset)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert "report: 2 finding(s) shown (2 alert(s) of 2 finding(s)); 2 of 2 host(s) can complete AN1316" in \
        bundled.stderr
    assert not bundled.path.with_name(bundled.path.name + ".partial").exists()


def test_report_cli_hostile_telemetry_still_correlates_both_chains(hostile: Report) -> None:
    assert hostile.code == 0, hostile.stderr
    assert "report: 2 finding(s) shown (2 alert(s)" in hostile.stderr
    text = hostile.path.read_text(encoding="utf-8")
    lowered = text.lower()
    assert lowered.count("<script") == 1 and lowered.count("</script") == 1 and "<img" not in lowered
    assert lowered.count("<svg") == lowered.count('<svg class="tl" viewbox="0 0 1200 ') == 2
    assert RLO not in text and BIG[:3000] not in text


def test_report_cli_without_out_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", str(EVENTS)])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_report_cli_unwritable_out_exits_2_with_message(tmp_path: Path) -> None:
    target = tmp_path / "missing-folder" / "report.html"
    report = _report(target, str(EVENTS / "mac-02"))
    assert report.code == 2
    assert f"cannot write the report to {target}" in report.stderr
    assert not target.exists()


# -- in the browser: the bundled samples -------------------------------------------------------------------------


def test_report_browser_bundled_samples_dom_has_every_section(bundled: Report, tmp_path: Path) -> None:
    dom, rendered = _dump(bundled.path, tmp_path)
    _assert_only_report_markup(dom)
    assert {"coverage", "findings", "fleet-summary", "f1", "f2"} <= dom.ids()
    # mac-02 falls short and is spelled out; mac-01 meets every need and is folded into the count.
    hosts = dom.with_class("tr", "host")
    assert len(hosts) == 1
    assert "1 host(s) fully ready" in dom.text
    assert dom.with_class("td", "weak") and dom.with_class("td", "ok")
    assert len(dom.with_class("article", "finding")) == 2
    assert len(dom.with_class("ul", "tree")) == 2
    assert len(dom.with_class("table", "timeline")) == 2 and len(dom.with_class("table", "egress")) == 2
    assert len(dom.with_class("div", "strong")) >= 6
    text = dom.text
    assert "mac-02: can complete AN1316: yes" in text and "mac-01(2 records arrived out of order" in text
    assert "Safari launch (unified log)" in text and "UpdateHelper" in text and "osascript" in text
    assert "2→3 strong" in text and "3→4 strong" in text and "stage 4 egress" in text
    assert "pid_lifetime" in text and "entity" in text
    assert "Gatekeeper" in text and "com.apple.quarantine" in text
    assert rendered.console == []


def test_report_browser_bundled_samples_screenshot_not_blank(bundled: Report, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _browse(bundled.path, tmp_path / "profile", f"--screenshot={shot}", SCREEN)
    width, height, rows = _png(shot.read_bytes())
    assert (width, height) == (1400, 2000)
    assert rows > 200, f"only {rows} distinct pixel rows: the page looks blank"


# -- in the browser: hostile telemetry ---------------------------------------------------------------------------


def test_report_browser_hostile_dom_holds_payloads_only_as_text(hostile: Report, tmp_path: Path) -> None:
    dom, rendered = _dump(hostile.path, tmp_path)
    _assert_only_report_markup(dom)
    assert not any(t in {"img", "iframe", "object", "embed", "link"} for t, _ in dom.elements)
    assert len(dom.with_class("article", "finding")) == 2
    text = dom.text
    for shown in SHOWN:
        assert shown in text, shown
    assert RLO not in text
    # Every value is bounded: no 100 KB run of the payload reaches the page.
    assert "A" * 3000 not in rendered.stdout
    assert max(len(t) for t in dom.texts) < 4000
    assert rendered.console == []


def test_report_browser_hostile_without_csp_still_runs_nothing(hostile: Report, tmp_path: Path) -> None:
    text = hostile.path.read_text(encoding="utf-8")
    meta = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', text)
    assert meta is not None
    bare = tmp_path / "no-csp.html"
    bare.write_text(text.replace(meta.group(0), ""), encoding="utf-8")
    dom, rendered = _dump(bare, tmp_path)
    assert not any("data-pwned" in a for _, a in dom.elements)
    assert next(t for t in dom.texts if "AN1316 report" in t) == "chainwatch AN1316 report"
    assert rendered.console == []


def test_report_browser_control_unescaped_payload_is_caught(hostile: Report, tmp_path: Path) -> None:
    """The checks above can fail: one payload pasted in raw is seen, by the DOM without CSP and by the console
    with it."""
    text = hostile.path.read_text(encoding="utf-8")
    injected = text.replace("<main>", f"<main><script>{pwn('control')}</script>", 1)
    with_csp = tmp_path / "control-csp.html"
    with_csp.write_text(injected, encoding="utf-8")
    meta = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', injected)
    assert meta is not None
    without_csp = tmp_path / "control-bare.html"
    without_csp.write_text(injected.replace(meta.group(0), ""), encoding="utf-8")

    dom, _ = _dump(without_csp, tmp_path, "bare")
    assert any(a.get("data-pwned") == "control" for _, a in dom.elements)
    dom, rendered = _dump(with_csp, tmp_path, "csp")
    assert not any("data-pwned" in a for _, a in dom.elements)
    assert any("Content Security Policy" in line for line in rendered.console), rendered.console


def test_report_browser_hostile_screenshot_not_blank(hostile: Report, tmp_path: Path) -> None:
    shot = tmp_path / "hostile.png"
    _browse(hostile.path, tmp_path / "profile", f"--screenshot={shot}", SCREEN)
    width, height, rows = _png(shot.read_bytes())
    assert (width, height) == (1400, 2000)
    assert rows > 200, f"only {rows} distinct pixel rows: the page looks blank"


# -- in the browser: findings first, the timeline picture, the search box ---------------------------------------


def test_report_browser_findings_lead_and_each_has_timeline_with_egress(bundled: Report, tmp_path: Path) -> None:
    dom, rendered = _dump(bundled.path, tmp_path)
    order = [a.get("id") for _, a in dom.elements if a.get("id") in {"findings", "f1", "f2", "coverage"}]
    assert order == ["findings", "f1", "f2", "coverage"]
    severities = [next(c for c in (a.get("class") or "").split() if re.fullmatch(r"c\d", c))
                  for a in dom.with_class("article", "finding")]
    assert severities == sorted(severities, reverse=True)
    assert len(dom.with_class("svg", "tl")) == 2 and len(dom.with_class("polygon", "main")) == 2
    assert len(dom.with_class("polygon", "egress-mark")) >= 4
    assert sum(t.startswith("Timeline: stage 1 app activity +0 s") for t in dom.texts) == 2
    assert rendered.console == []


def test_report_browser_search_box_filters_hosts_and_findings(bundled: Report, tmp_path: Path) -> None:
    dom, rendered = _dump(bundled.path, tmp_path, "all")
    # The script ran (CSP allows it by hash, nothing logged): the box is shown and every item still is.
    assert not any("hidden" in a for _, a in dom.elements if a.get("id") == "searchbar")
    assert dom.items and len(dom.shown()) == len(dom.items) == 6
    assert rendered.console == []

    dom, rendered = _dump(bundled.path, tmp_path, "mac02", fragment="q=MAC-02")
    shown = dom.shown()
    # Case-insensitive: mac-02's index row, its card and its matrix row; mac-01's row, card and name are hidden.
    assert [(i.tag, "mac-02" in i.text) for i in shown] == [("tr", True), ("article", True), ("tr", True)]
    assert all("mac-01" in i.text for i in dom.items if i.hidden)
    assert "3 of 6 match" in dom.text
    assert rendered.console == []
    # The fold of ready hosts stays closed: nothing in it matches.
    assert not any("open" in a for t, a in dom.elements if t == "details" and "fold" in (a.get("class") or ""))

    dom, _ = _dump(bundled.path, tmp_path, "mac01", fragment="q=mac-01(2")
    # A ready host is found inside its fold, which the search opens: the name with its note, and nothing else.
    assert [(i.tag, i.text) for i in dom.shown()] == [("li", "mac-01(2 records arrived out of order beyond 60 s)")]
    assert any("open" in a for t, a in dom.elements if t == "details" and "fold" in (a.get("class") or ""))

    dom, _ = _dump(bundled.path, tmp_path, "terms", fragment="q=osascript%20%20pid_lifetime")
    # Every term must match: only mac-01's card holds both (its index row names neither).
    assert [(i.tag, "osascript" in i.text) for i in dom.shown()] == [("article", True)]

    dom, _ = _dump(bundled.path, tmp_path, "none", fragment="q=no-such-host")
    assert dom.shown() == [] and "0 of 6 match" in dom.text


def test_report_browser_search_over_hostile_names_stays_text(hostile: Report, tmp_path: Path) -> None:
    # A query holding </script>, both quote kinds and the escaped override as shown: it is only ever compared.
    query = "'host')</script>\\u202e"
    dom, rendered = _dump(hostile.path, tmp_path, "q1", fragment="q=" + quote(query, safe=""))
    _assert_only_report_markup(dom)
    assert not any("data-pwned" in a for _, a in dom.elements)
    shown = dom.shown()
    assert len(shown) >= 2 and all(query in i.text for i in shown)
    assert any(i.tag == "article" for i in shown)
    assert all(query not in i.text for i in dom.items if i.hidden)
    assert any("mac-02" in i.text for i in dom.items if i.hidden)
    assert rendered.console == []

    app = f'onerror="{pwn("app")}"'
    dom, rendered = _dump(hostile.path, tmp_path, "q2", fragment="q=" + quote(app, safe=""))
    shown = dom.shown()
    assert shown and all(app in i.text for i in shown) and all("UpdateHelper" in i.text for i in shown)
    assert not any("data-pwned" in a for _, a in dom.elements)
    assert rendered.console == []


def test_report_browser_scripts_blocked_page_reads_the_same(bundled: Report, tmp_path: Path) -> None:
    """With scripts blocked (a viewer's policy, here the CSP's script-src set to 'none') the search box stays
    hidden and every section, finding and host is there and shown."""
    text = bundled.path.read_text(encoding="utf-8")
    blocked = tmp_path / "no-script.html"
    policy = re.sub(r"script-src &#x27;sha256-[^&]+&#x27;", "script-src &#x27;none&#x27;", text, count=1)
    assert policy != text
    blocked.write_text(policy, encoding="utf-8")
    dom, rendered = _dump(blocked, tmp_path, "blocked", fragment="q=mac-02")
    assert any("hidden" in a for _, a in dom.elements if a.get("id") == "searchbar")
    assert len(dom.items) == 6 and dom.shown() == dom.items
    assert {"coverage", "findings", "fleet-summary", "f1", "f2"} <= dom.ids()
    assert len(dom.with_class("svg", "tl")) == 2 and len(dom.with_class("ul", "tree")) == 2
    assert "mac-01" in dom.text and "mac-02: can complete AN1316: yes" in dom.text
    # The one thing that differs: the browser reports the blocked script.
    assert any("Content Security Policy" in line for line in rendered.console), rendered.console
