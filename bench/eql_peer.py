"""The peer: AN1316 as an EQL sequence in the Python ``eql`` engine, over the same generated fleet.

``eql`` (PyPI, AGPL-3.0) is a bench-only dependency (``bench/requirements.txt``): it is never imported by the
library or its tests, and nothing of it is vendored or shipped.

Three steps, timed separately:

1. **convert** the raw telemetry (eslogger, Elastic Defend network, unified log) into the slim event shape
   ``eql`` expects (``event_type``, numeric ``timestamp`` in ns with ``time_unit`` set to match, and flat
   fields), in the order the fleet *arrived* (every host merged by arrival time, from the ``.arrival``
   sidecars): ``eql`` takes arrival order as event order. Every record becomes one event (what a user streams
   into ``eql``); a second, *prefiltered* file keeps only the events the query can ever match (process
   exec/fork/exit, file create/rename/modify, connections), which favours ``eql`` and is reported beside it;
2. **run** the query with :class:`eql.PythonEngine` over the slim events;
3. **score** its sequences against ``truth.json``: a detection is *found* when its stage-3 event is a planted
   chain's stage-3 process (host and pid), otherwise *false*.

The query (generated from ``layers/chainwatch/policy/default.yaml`` so that both engines use the same apps,
paths, interpreters, allowlisted updaters and non-egress ranges)::

    sequence by host_id with maxspan=1h
      [process where subtype == "exec" and signing_id in (<apps>)]
      [file where subtype in ("create", "rename", "modify") and wildcard(file_path, <watched>)
                  and signing_id in (<apps and helpers>)]
      [process where subtype == "exec" and (<stage 3a> or <stage 3b>)]
      [network where not cidrMatch(destination_address, <not egress>)
                     and (event of [process where <stage 3>] or descendant of [process where <stage 3>])]

    stage 3a: signing_id in (<interpreters>) and platform_binary == true
              and descendant of [process where signing_id in (<apps and helpers>)]
              and not descendant of [process where wildcard(signing_id, <allowlisted updaters>)]
    stage 3b: ppid == 1 and wildcard(process_path, "*/AppTranslocation/*.app/Contents/MacOS/*", ...)

What EQL cannot say that AN1316 needs (and what that does on the planted truth):

- *the join key changes*: stages 1-2 belong to the app process, stages 3-4 to the child and its descendants. A
  sequence has one join key for all terms, so the only key that spans the chain is the host: any app launch,
  any app file write, any interpreter under any app and any connection by any stage-3-like process on the same
  host make a sequence. ``descendant of`` / ``event of`` are global pid sets, not tied to the sequence's own
  stage-3 process;
- *arrival order is event order*: a connection that arrives before its process's exec (``net_first``) never
  matches, and a crash logged after the child (``office_crash``) cannot be stage 1;
- *no pid lifetime*: attribution is "this pid is in a set" (added on exec, removed on terminate), so a late or
  early record is matched against whatever the pid means at arrival time;
- *no download lineage*: route (b) is "any app launched by launchd from a translocation or download folder"; the
  path, translocation, quarantine and Gatekeeper evidence that ties it to the download cannot be expressed
  across terms, nor can an app that was running before the window (no exec seen: no ``descendant of``).

Usage: ``python bench/eql_peer.py FLEET_DIR [--slim FILE]`` (converts, runs and prints the scores).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "layers" / "chainwatch" / "policy" / "default.yaml"
NS = 1_000_000_000
TRANSLOCATED = ["*/AppTranslocation/*.app/Contents/MacOS/*", "/Users/*/Downloads/*.app/Contents/MacOS/*",
                "/Volumes/*.app/Contents/MacOS/*", "/private/var/folders/*.app/Contents/MacOS/*"]

# -- the query -----------------------------------------------------------------------------------------------------


def _strings(values: list[str]) -> str:
    return ", ".join(orjson.dumps(v).decode() for v in values)


def build_query(policy_path: Path = POLICY) -> str:
    """The AN1316 sequence, with its lists taken from the chainwatch policy file."""
    policy = yaml.safe_load(policy_path.read_text())
    apps = [s for app in policy["apps"] for s in app.get("signing_ids", [])]
    helpers = [s for app in policy["apps"] for s in app.get("helpers", {}).get("signing_ids", [])]
    interpreters = [s for item in policy["interpreters"] for s in item.get("signing_ids", [])]
    watched = [p.replace("~/", "/Users/*/") for p in policy["watched_paths"]]
    allowed = [s for rule in policy["allowlist"] if rule.get("applies_to") == "child"
               for s in rule.get("signing_ids", [])]
    not_egress = list(policy["not_egress"])
    app_like = _strings(apps + helpers)
    stage3a = (f'(signing_id in ({_strings(interpreters)}) and platform_binary == true '
               f'and descendant of [process where signing_id in ({app_like})] '
               f'and not descendant of [process where wildcard(signing_id, {_strings(allowed)})])')
    stage3b = f'(ppid == 1 and wildcard(process_path, {_strings(TRANSLOCATED)}))'
    stage3 = f"({stage3a} or {stage3b})"
    return (
        "sequence by host_id with maxspan=1h\n"
        f'  [process where subtype == "exec" and signing_id in ({_strings(apps)})]\n'
        f'  [file where subtype in ("create", "rename", "modify") and wildcard(file_path, {_strings(watched)})\n'
        f'      and signing_id in ({app_like})]\n'
        f'  [process where subtype == "exec" and {stage3}]\n'
        f'  [network where not cidrMatch(destination_address, {_strings(not_egress)})\n'
        f'      and (event of [process where {stage3}] or descendant of [process where {stage3}])]\n'
    )


# -- conversion ----------------------------------------------------------------------------------------------------


def _proc_fields(proc: dict[str, Any], host: str, out: dict[str, Any]) -> None:
    token = proc["audit_token"]
    pid = token["pid"]
    ppid = proc.get("ppid")
    path = (proc.get("executable") or {}).get("path") or ""
    out["pid"] = pid
    out["ppid"] = ppid
    out["unique_pid"] = f"{host}:{pid}"
    out["unique_ppid"] = f"{host}:{ppid}"
    out["process_path"] = path
    out["process_name"] = path.rsplit("/", 1)[-1]
    out["signing_id"] = proc.get("signing_id")
    out["team_id"] = proc.get("team_id")
    out["platform_binary"] = proc.get("is_platform_binary")


_FILE_SUBTYPES = {"create": "create", "rename": "rename", "close": "modify", "write": "modify"}


def convert_eslogger(doc: dict[str, Any], host: str) -> dict[str, Any]:
    """An eslogger record as a slim EQL event (every record becomes one event, as a user would stream them)."""
    event = doc["event"]
    name, payload = next(iter(event.items()))
    out: dict[str, Any] = {"host_id": host, "timestamp": _parse_ns(doc["time"])}
    if name == "exec":
        out["event_type"] = "process"
        out["subtype"] = "exec"
        _proc_fields(payload["target"], host, out)
        out["parent_process_path"] = (doc["process"].get("executable") or {}).get("path")
        out["command_line"] = " ".join(payload.get("args") or ())
        return out
    if name == "fork":
        out["event_type"] = "process"
        out["subtype"] = "fork"
        _proc_fields(payload["child"], host, out)
        return out
    _proc_fields(doc["process"], host, out)
    if name == "exit":
        out["event_type"] = "process"
        out["subtype"] = "terminate"
        return out
    if name == "gatekeeper_user_override":
        out["event_type"] = "gatekeeper"
        out["subtype"] = "user_override"
        return out
    out["event_type"] = "file"
    if name in ("create", "rename"):
        out["subtype"] = name
        dest = payload["destination"]
        existing = dest.get("existing_file")
        if existing:
            out["file_path"] = existing["path"]
        else:
            new = dest["new_path"]
            out["file_path"] = f"{new['dir']['path'].rstrip('/')}/{new['filename']}"
        return out
    if name == "close":
        out["subtype"] = "modify" if payload.get("modified") else "close"
        out["file_path"] = payload["target"]["path"]
    elif name == "write":
        out["subtype"] = "modify"
        out["file_path"] = payload["target"]["path"]
    elif name == "open":
        out["subtype"] = "open"
        out["file_path"] = payload["file"]["path"]
    else:  # setextattr, deleteextattr, unlink, ...
        out["subtype"] = name
        out["file_path"] = (payload.get("target") or {}).get("path")
    return out


#: Slim events the AN1316 sequence can ever match; the "prefiltered" run streams only these (which favours eql).
QUERY_SUBTYPES = {"process": {"exec", "fork", "terminate"}, "file": {"create", "rename", "modify"},
                  "network": {"connection_attempted"}}


def convert_unified(doc: dict[str, Any], host: str) -> dict[str, Any]:
    """A unified-log line as a generic EQL event: free text, nothing a sequence can join on."""
    return {"event_type": "log", "host_id": host, "timestamp": _parse_ul_ns(doc["timestamp"]),
            "pid": doc.get("processID"), "process_path": doc.get("processImagePath"),
            "message": doc.get("eventMessage")}


def _parse_ul_ns(text: str) -> int:
    """``YYYY-MM-DD HH:MM:SS.ffffff+hhmm`` (the generator always writes +0100) to UTC ns."""
    local = _parse_ns(text[:10] + "T" + text[11:26] + "Z")
    sign = 1 if text[26] == "+" else -1
    return local - sign * (int(text[27:29]) * 3600 + int(text[29:31]) * 60) * NS


def convert_ecs(doc: dict[str, Any], host: str) -> dict[str, Any]:
    """An Elastic Defend network document as a slim EQL ``network`` event."""
    proc = doc.get("process") or {}
    dst = doc.get("destination") or {}
    pid = proc.get("pid")
    name = (doc.get("host") or {}).get("name") or host
    return {"event_type": "network", "host_id": name, "timestamp": _parse_ns(doc["@timestamp"]), "pid": pid,
            "unique_pid": f"{name}:{pid}", "process_path": proc.get("executable"),
            "process_name": proc.get("name"), "destination_address": dst.get("ip") or dst.get("address"),
            "destination_port": dst.get("port"), "destination_domain": dst.get("domain"),
            "subtype": (doc.get("event") or {}).get("action")}


_SECONDS: dict[str, int] = {}


def _parse_ns(text: str) -> int:
    """RFC 3339 UTC with up to 9 fractional digits to ns (the formats the generator writes)."""
    head = text[:19]
    seconds = _SECONDS.get(head)
    if seconds is None:
        from datetime import UTC, datetime

        seconds = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
        _SECONDS[head] = seconds
    frac = text[20:-1] if len(text) > 20 and text[19] == "." else ""
    return seconds * NS + (int(frac.ljust(9, "0")[:9]) if frac else 0)


def convert(fleet: Path, out: Path, prefiltered: Path | None = None) -> dict[str, Any]:
    """Convert a fleet to slim events in fleet-wide arrival order: every record one event in ``out`` and, in
    ``prefiltered``, only the events the query can match. Returns counts and the time taken (both files)."""
    began = time.perf_counter()
    hosts = sorted(p for p in (fleet / "hosts").iterdir() if p.is_dir())
    chunks = sorted({f.name.split("-", 1)[0] for h in hosts[:50] for f in h.iterdir() if f.is_file()})
    loads = orjson.loads
    dumps = orjson.dumps
    mappers = (("eslogger.jsonl", convert_eslogger), ("network.ndjson", convert_ecs),
               ("unifiedlog.ndjson", convert_unified))
    records = kept = 0
    with out.open("wb") as sink, (prefiltered or Path(os.devnull)).open("wb") as narrow:
        for chunk in chunks:
            batch: list[tuple[int, bytes, bool]] = []
            for host_dir in hosts:
                host = host_dir.name
                for kind, mapper in mappers:
                    path = host_dir / f"{chunk}-{kind}"
                    if not path.exists():
                        continue
                    arrivals = array("q")
                    arrivals.frombytes((host_dir / ".arrival" / f"{path.name}.i64").read_bytes())
                    lines = path.read_bytes().splitlines()
                    records += len(lines)
                    for arrival, line in zip(arrivals, lines, strict=True):
                        slim = mapper(loads(line), host)
                        usable = slim.get("subtype") in QUERY_SUBTYPES.get(slim["event_type"], ())
                        batch.append((arrival, dumps(slim), usable))
            batch.sort(key=lambda item: item[0])
            sink.write(b"".join(line + b"\n" for _, line, _ in batch))
            usable_lines = [line for _, line, usable in batch if usable]
            kept += len(usable_lines)
            if prefiltered is not None:
                narrow.write(b"".join(line + b"\n" for line in usable_lines))
    return {"records": records, "events": records, "prefiltered_events": kept,
            "seconds": time.perf_counter() - began}


# -- running -------------------------------------------------------------------------------------------------------


def _iter_slim(path: Path) -> Any:
    loads = orjson.loads
    with path.open("rb") as handle:
        for line in handle:
            if len(line) > 1:
                yield loads(line)


def run(slim: Path, *, query: str | None = None, marks: int = 0, cap_s: float = 0.0) -> dict[str, Any]:
    """Run the sequence over the slim events. Returns detections, timings (engine only) and peak RSS.

    ``cap_s`` stops the run after that many seconds (``complete`` is then false and the rate is over the part
    processed, which favours eql: its open sequences only grow along the stream)."""
    import eql
    from eql.parser import ignore_missing_fields, parse_query

    with ignore_missing_fields:
        parsed = parse_query(query or build_query())
    found: list[list[dict[str, Any]]] = []

    def hook(output: Any) -> None:
        found.append([event.data for event in output.events])

    engine = eql.PythonEngine({"hooks": [hook], "time_unit": NS, "pid_key": "unique_pid",
                               "ppid_key": "unique_ppid"})
    engine.add_query(parsed)
    event_cls = eql.Event
    # Pass 1: decoding the slim file alone, so that the engine's own time can be told apart.
    began = time.perf_counter()
    count = 0
    for _ in _iter_slim(slim):
        count += 1
    decode_s = time.perf_counter() - began
    rss: list[int] = []
    every = count // marks if marks else 0
    began = time.perf_counter()
    stream = engine.stream_event
    index = 0
    complete = True
    for index, data in enumerate(_iter_slim(slim), 1):
        stream(event_cls(data["event_type"], data["timestamp"], data))
        if every and index % every == 0:
            rss.append(_rss_kib())
        if cap_s and index % 1000 == 0 and time.perf_counter() - began > cap_s:
            complete = False
            break
    engine.finalize()
    total_s = time.perf_counter() - began
    decode_s *= index / max(count, 1)
    return {"events": index, "events_total": count, "complete": complete, "decode_s": decode_s,
            "total_s": total_s, "engine_s": max(total_s - decode_s, 1e-9), "detections": found,
            "peak_rss_kib": peak_rss_kib(), "rss_marks": rss}


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def peak_rss_kib() -> int:
    """This process's own peak RSS (``VmHWM``; ``ru_maxrss`` would carry the parent's peak across fork+exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- scoring -------------------------------------------------------------------------------------------------------


def score(detections: list[list[dict[str, Any]]], truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Found / missed / false against the planted chains.

    A sequence is *found* when its stage-3 event is one of a planted chain's processes from stage 3 down (EQL
    cannot tell the interpreter nearest the app from its descendants, so any of them counts); each planted chain
    counts once. Any other sequence is *false*, once per stage-3 process.
    """
    planted = {(t["host"], t["stage3_pid"]): t for t in truth}
    members = {(t["host"], pid): (t["host"], t["stage3_pid"]) for t in truth for pid in t["tree_pids"]}
    hit: set[tuple[str, int]] = set()
    false: set[tuple[str, int]] = set()
    wrong_egress = 0
    for sequence in detections:
        stage3 = sequence[2]
        key = members.get((stage3["host_id"], stage3["pid"]))
        if key is not None:
            if key not in hit and sequence[3].get("destination_address") != planted[key]["egress_dst"]:
                wrong_egress += 1
            hit.add(key)
        else:
            false.add((stage3["host_id"], stage3["pid"]))
    missed = [t for k, t in planted.items() if k not in hit]
    return {"planted": len(planted), "found": len(hit), "missed": len(missed), "false": len(false),
            "wrong_egress": wrong_egress, "missed_by_kind": _by_kind(missed)}


def _by_kind(items: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        key = item["kind"].split("/", 1)[0] + "".join(f"+{v}" for v in item["variants"])
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def rescan_cost(open_sequences: int, events: int = 5_000) -> float:
    """Seconds per event when ``open_sequences`` hosts each hold a partial sequence (at stage 2).

    eql's ``maxspan`` check walks every open sequence of every join key on every event of the sequence's types,
    so this grows with the number of hosts, whatever the events are.
    """
    import eql
    from eql.parser import ignore_missing_fields, parse_query

    with ignore_missing_fields:
        parsed = parse_query(build_query())
    engine = eql.PythonEngine({"hooks": [lambda _: None], "time_unit": NS, "pid_key": "unique_pid",
                               "ppid_key": "unique_ppid"})
    engine.add_query(parsed)
    t0 = 1_772_438_400 * NS
    for index in range(open_sequences):
        host = f"mac-{index:05d}"
        base = {"host_id": host, "pid": 812, "unique_pid": f"{host}:812", "ppid": 1, "unique_ppid": f"{host}:1",
                "signing_id": "com.apple.Safari"}
        engine.stream_event(eql.Event("process", t0, {**base, "event_type": "process", "subtype": "exec"}))
        engine.stream_event(eql.Event("file", t0 + 1, {**base, "event_type": "file", "subtype": "modify",
                                                       "file_path": "/Users/a/Library/Safari/History.db"}))
    noise = [eql.Event("file", t0 + 10 + i, {"event_type": "file", "subtype": "open", "pid": 5, "unique_pid": "x:5",
                                             "host_id": f"mac-{i % open_sequences:05d}",
                                             "file_path": "/usr/lib/libSystem.B.dylib"})
             for i in range(events)]
    began = time.perf_counter()
    for event in noise:
        engine.stream_event(event)
    return (time.perf_counter() - began) / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fleet", type=Path, nargs="?")
    parser.add_argument("--rescan", type=int, nargs="+", metavar="HOSTS",
                        help="only measure eql's cost per event with this many open sequences")
    parser.add_argument("--slim", type=Path, help="slim-event file (default: FLEET/eql-events.ndjson)")
    parser.add_argument("--print-query", action="store_true")
    args = parser.parse_args()
    if args.print_query:
        print(build_query())
        return
    if args.rescan:
        for hosts in args.rescan:
            print(f"{hosts:>7,} open sequences: {rescan_cost(hosts) * 1e6:10,.1f} us per event")
        return
    if args.fleet is None:
        parser.error("FLEET is required")
    slim = args.slim or args.fleet / "eql-events.ndjson"
    narrow = slim.with_suffix(".prefiltered.ndjson")
    converted = convert(args.fleet, slim, narrow)
    print(f"converted {converted['records']:,} records to slim events ({converted['prefiltered_events']:,} the "
          f"query can match) in {converted['seconds']:.1f} s", file=sys.stderr)
    truth = orjson.loads((args.fleet / "truth.json").read_bytes())["chains"]
    for label, path in (("all events", slim), ("prefiltered", narrow)):
        result = run(path)
        scores = score(result["detections"], truth)
        print(label, orjson.dumps({"eql_engine_events_per_s": round(result["events"] / result["engine_s"]),
                                   "engine_s": round(result["engine_s"], 2), "peak_rss_kib": result["peak_rss_kib"],
                                   **scores}, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
