"""The ``chainwatch`` command line.

``chainwatch normalize PATH...``
    read telemetry files or folders and print canonical events as JSON lines;
``chainwatch detect PATH...``
    correlate them into AN1316 findings (one JSON finding per line);
``chainwatch coverage PATH...``
    readiness: can each host's telemetry complete AN1316 (a verdict per host and a fleet summary);
``chainwatch report PATH... --out report.html``
    one self-contained HTML report: the fleet coverage matrix and each finding's timeline and process tree.

Summaries go to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from chainwatch.errors import ChainwatchError
from chainwatch.events import AnyEvent, SourceFormat
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import Rejection, iter_files, read_path

if TYPE_CHECKING:
    from chainwatch.findings.model import Finding
    from chainwatch.policy import Policy
    from chainwatch.readiness.coverage import HostCoverage, Verdict

_FORMATS = ("auto", *(f.value for f in SourceFormat))


def fallback_host(path: Path, explicit: str | None) -> str:
    """Host id for records that carry none: ``--host``, else the name of the folder holding the file."""
    if explicit:
        return explicit
    return path.resolve().parent.name or "unknown-host"


def iter_events(
    paths: Sequence[str],
    normalizer: Normalizer,
    host: str | None,
    on_file: Callable[[Path], None] | None = None,
) -> Iterator[AnyEvent]:
    """Canonical events of every file under ``paths``, in file order."""
    for path in iter_files(paths):
        if on_file is not None:
            on_file(path)
        yield from normalizer.run(read_path(path, normalizer.gate), fallback_host(path, host))


def _rejects_writer(stack: ExitStack, target: str | None) -> Callable[[Rejection], None] | None:
    if not target:
        return None
    handle: IO[bytes] = stack.enter_context(open(target, "wb"))  # noqa: SIM115 - closed by the ExitStack

    def write(rejection: Rejection) -> None:
        handle.write(orjson.dumps(rejection.to_dict()) + b"\n")

    return write


def _normalizer(args: argparse.Namespace, stack: ExitStack) -> Normalizer:
    forced = None if args.format == "auto" else SourceFormat(args.format)
    return Normalizer(forced_format=forced, on_reject=_rejects_writer(stack, args.rejects))


def cmd_normalize(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    with ExitStack() as stack:
        normalizer = _normalizer(args, stack)
        for event in iter_events(args.paths, normalizer, args.host):
            out.write(orjson.dumps(event.to_dict()) + b"\n")
        out.flush()
    print(normalizer.stats.summary(), file=sys.stderr)
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from chainwatch.pipeline.detect import run_detect

    with ExitStack() as stack:
        normalizer = _normalizer(args, stack)
        return run_detect(args, normalizer, iter_events, stack)


def _correlate(args: argparse.Namespace) -> tuple[Policy, list[Finding], dict[str, HostCoverage], list[Verdict]]:
    """Read the files once: findings from the engine, and per-host coverage counters with their verdicts."""
    from chainwatch.engine import Engine
    from chainwatch.policy import load_policy
    from chainwatch.readiness.coverage import collect, verdict
    from chainwatch.state.memory import InMemoryStore

    policy = load_policy(args.policy, window=args.window)
    engine = Engine(policy, InMemoryStore())
    coverages: dict[str, HostCoverage] = {}
    with ExitStack() as stack:
        normalizer = _normalizer(args, stack)
        for event in iter_events(args.paths, normalizer, args.host):
            collect((event,), policy, coverages)
            engine.ingest(event)
        engine.flush()
    findings = engine.all_findings()
    for finding in findings:
        if finding.host in coverages:
            coverages[finding.host].note_findings([finding])
    verdicts = [verdict(coverages[h], policy.window_ns) for h in sorted(coverages)]
    return policy, findings, coverages, verdicts


def cmd_coverage(args: argparse.Namespace) -> int:
    from chainwatch.readiness.coverage import fleet_summary, read_table, render_text, verdict

    if args.table:
        import boto3

        from chainwatch.policy import load_policy

        policy = load_policy(args.policy, window=args.window)
        client = boto3.client("dynamodb", region_name=args.region, endpoint_url=args.endpoint_url)
        coverages = read_table(client, args.table)
        verdicts = [verdict(coverages[h], policy.window_ns) for h in sorted(coverages)]
    elif args.paths:
        _policy, _findings, coverages, verdicts = _correlate(args)
    else:
        print("chainwatch: error: coverage needs PATH... or --table", file=sys.stderr)
        return 2
    if args.json:
        doc = {"hosts": [{"host": v.host, "can_complete": v.can_complete, "reasons": list(v.reasons),
                          "needs": [{"need": n.need, "status": n.status, "detail": n.detail} for n in v.needs],
                          "counters": coverages[v.host].to_dict()} for v in verdicts],
               "fleet": fleet_summary(verdicts)}
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render_text(verdicts, coverages))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from chainwatch.findings.ocsf import to_ocsf
    from chainwatch.readiness.report import render_report

    policy, findings, coverages, verdicts = _correlate(args)
    docs = [to_ocsf(f, policy) for f in findings if f.is_alert or args.all]
    page = render_report(docs, verdicts, coverages, time.time_ns())
    out = Path(args.out)
    # Written whole to a temporary file, then renamed: a reader never sees half a report.
    partial = out.with_name(out.name + ".partial")
    try:
        partial.write_text(page, encoding="utf-8")
        partial.replace(out)
    except OSError as exc:
        print(f"chainwatch: error: cannot write the report to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    alerts = sum(1 for f in findings if f.is_alert)
    ready = sum(1 for v in verdicts if v.can_complete)
    print(f"report: {len(docs)} finding(s) shown ({alerts} alert(s) of {len(findings)} finding(s)); "
          f"{ready} of {len(verdicts)} host(s) can complete AN1316; wrote {out}", file=sys.stderr)
    return 0


def _repo_root(args: argparse.Namespace) -> Path | None:
    root = Path(args.root).resolve()
    if not (root / "template.yaml").is_file():
        print(f"chainwatch: error: {root} has no template.yaml (run from the repository or pass --root)",
              file=sys.stderr)
        return None
    return root


def cmd_local(args: argparse.Namespace) -> int:
    from chainwatch.app.local import run_local, standins

    root = _repo_root(args)
    if root is None:
        return 2
    out_dir = Path(args.out_dir)
    extra: list[dict[str, Any]] = []
    if args.sinks:
        loaded = orjson.loads(Path(args.sinks).read_bytes())
        if not isinstance(loaded, list) or not all(isinstance(c, dict) for c in loaded):
            print(f"chainwatch: error: {args.sinks} must hold a JSON list of sink settings", file=sys.stderr)
            return 2
        extra = loaded
    with standins(root, out_dir) as local:
        result = run_local(root, [Path(p) for p in args.paths] or [root / "events"], sinks=local.sinks + extra,
                           secrets=local.secrets, batch_size=args.batch_size)
        delivered = local.summary()
    for finding in result.findings:
        story = finding.get("unmapped", {}).get("chainwatch", {}).get("story", finding.get("message", ""))
        if finding.get("is_alert") or args.all:
            print(story + "\n")
    alerts = sum(1 for f in result.findings if f.get("is_alert"))
    hops = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result.hops.items())
    print(f"local pipeline: {result.records_put} records put on Kinesis; correlate invoked "
          f"{result.correlate_invocations}x, dispatch {result.dispatch_invocations}x; findings: "
          f"{len(result.findings)} ({alerts} alerts); {delivered}; findings also in {out_dir / 'findings.jsonl'}; "
          f"{hops}", file=sys.stderr)
    print("deliveries per sink:", file=sys.stderr)
    for line in result.sink_lines():
        print(line, file=sys.stderr)
    if result.dead_lettered:
        print(f"chainwatch local: {result.dead_lettered} delivery(ies) went to the dead-letter queue (see above)",
              file=sys.stderr)
        return 1
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    from chainwatch.policy import load_policy
    from chainwatch.readiness.canary import CanaryResult, aws_hops, build_canary, run_canary

    policy = load_policy(args.policy, window=args.window)
    chain = build_canary(policy)
    if args.local:
        from chainwatch.app.local import run_local, standins

        root = _repo_root(args)
        if root is None:
            return 2
        with standins(root, Path(args.out_dir)) as local:
            outcome = run_local(root, [], records=list(chain.records), sinks=local.sinks, secrets=local.secrets)
        expected = {s["name"] for s in local.sinks}
        got = outcome.deliveries.get(chain.finding_id, set())
        result = CanaryResult(ok=False, finding_id=chain.finding_id,
                              hops={"stream put + correlate -> outbox": outcome.hops.get("correlate", 0.0),
                                    "dispatch -> sinks": outcome.hops.get("dispatch", 0.0)})
        if not any(f["finding_info"]["uid"] == chain.finding_id for f in outcome.findings):
            result.stopped_at, result.message = "correlate", "the canary finding never reached the outbox"
        elif not expected <= got:
            result.stopped_at = "dispatch"
            result.message = f"not settled at sink(s): {', '.join(sorted(expected - got))}"
        else:
            result.ok, result.message = True, f"canary {chain.run_id} settled at {', '.join(sorted(got))}"
    else:
        import boto3

        if not (args.stream and args.findings_table and args.deliveries_table):
            print("chainwatch: error: canary needs --local, or --stream, --findings-table and --deliveries-table "
                  "(the deployed stack's outputs)", file=sys.stderr)
            return 2
        session = boto3.session.Session(region_name=args.region) if args.region else boto3.session.Session()
        put, revision, sinks = aws_hops(session, stream=args.stream, findings_table=args.findings_table,
                                        deliveries_table=args.deliveries_table, endpoint_url=args.endpoint_url)
        result = run_canary(chain, put_records=put, finding_revision=revision, delivered_to=sinks,
                            expected_sinks=set(args.sink or []), timeout_s=args.timeout)
    print(f"canary host {chain.host}, finding {chain.finding_id}")
    for hop, seconds in result.hops.items():
        print(f"  {hop:<36} {seconds:8.2f} s")
    if result.ok:
        print(f"OK: {result.message}")
        return 0
    print(f"FAILED at {result.stopped_at}: {result.message}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainwatch", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_input_options(p: argparse.ArgumentParser, nargs: str = "+") -> None:
        p.add_argument("paths", nargs=nargs, metavar="PATH", help="files or folders (read recursively)")
        p.add_argument("--host", help="host id for records that carry none (default: the file's folder name)")
        p.add_argument("--format", choices=_FORMATS, default="auto", help="telemetry format (default: auto)")
        p.add_argument("--rejects", metavar="FILE", help="write rejected records (with reasons) to FILE")

    normalize = sub.add_parser("normalize", help="print canonical events as JSON lines")
    add_input_options(normalize)
    normalize.set_defaults(func=cmd_normalize)

    detect = sub.add_parser("detect", help="correlate telemetry into AN1316 findings")
    add_input_options(detect)
    detect.add_argument("--policy", metavar="FILE", help="policy file (default: the bundled policy)")
    detect.add_argument("--window", metavar="DURATION", help="stage-1 to stage-4 window, e.g. 1h, 30m")
    detect.add_argument("--all", action="store_true", help="also write non-alert findings")
    detect.add_argument("--out", metavar="FILE", help="write findings here instead of stdout")
    detect.add_argument("--story", action="store_true", help="print each finding's story on stderr")
    detect.add_argument("--no-progress", action="store_true", help="no progress bar")
    detect.set_defaults(func=cmd_detect)

    coverage = sub.add_parser("coverage", help="readiness: can each host's telemetry complete AN1316?")
    add_input_options(coverage, nargs="*")
    coverage.add_argument("--table", help="read the deployed state table's coverage items instead of files")
    coverage.add_argument("--region", help="AWS region of the table")
    coverage.add_argument("--endpoint-url", help="an alternative AWS endpoint")
    coverage.add_argument("--policy", metavar="FILE", help="policy file (default: the bundled policy)")
    coverage.add_argument("--window", metavar="DURATION", help="stage-1 to stage-4 window, e.g. 1h")
    coverage.add_argument("--json", action="store_true", help="machine-readable report")
    coverage.set_defaults(func=cmd_coverage)

    report = sub.add_parser("report", help="write one self-contained HTML report: findings and fleet coverage")
    add_input_options(report)
    report.add_argument("--policy", metavar="FILE", help="policy file (default: the bundled policy)")
    report.add_argument("--window", metavar="DURATION", help="stage-1 to stage-4 window, e.g. 1h")
    report.add_argument("--all", action="store_true", help="also show non-alert findings")
    report.add_argument("--out", metavar="FILE", required=True, help="the HTML file to write, e.g. report.html")
    report.set_defaults(func=cmd_report)

    local = sub.add_parser("local", help="run the serverless pipeline on an embedded moto server (no AWS account)")
    local.add_argument("paths", nargs="*", metavar="PATH", help="telemetry to put on the stream (default: events/)")
    local.add_argument("--root", default=".", help="repository root holding template.yaml and functions/")
    local.add_argument("--out-dir", default="out/local", help="where the local sinks write")
    local.add_argument("--batch-size", type=int, default=100, help="Kinesis records per correlate invocation")
    local.add_argument("--all", action="store_true", help="also print non-alert findings")
    local.add_argument("--sinks", metavar="FILE", help="a JSON list of more sink settings, used beside the stand-ins")
    local.set_defaults(func=cmd_local)

    canary = sub.add_parser("canary", help="send a harmless, marked synthetic chain through the pipeline and time it")
    canary.add_argument("--local", action="store_true", help="through the embedded local pipeline")
    canary.add_argument("--root", default=".", help="repository root (with --local)")
    canary.add_argument("--out-dir", default="out/canary", help="where the local sinks write (with --local)")
    canary.add_argument("--stream", help="Kinesis stream of the deployed stack")
    canary.add_argument("--findings-table", help="the stack's findings outbox table")
    canary.add_argument("--deliveries-table", help="the stack's deliveries table")
    canary.add_argument("--sink", action="append", help="a sink name that must settle the canary (repeatable)")
    canary.add_argument("--region", help="AWS region of the stack")
    canary.add_argument("--endpoint-url", help="an alternative AWS endpoint")
    canary.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at each hop")
    canary.add_argument("--policy", metavar="FILE", help="policy file (default: the bundled policy)")
    canary.add_argument("--window", metavar="DURATION", help="policy window override")
    canary.set_defaults(func=cmd_canary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chainwatch`` console script."""
    parser = build_parser()
    args: Any = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except ChainwatchError as exc:
        print(f"chainwatch: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
