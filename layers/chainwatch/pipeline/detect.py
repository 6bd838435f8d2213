"""``chainwatch detect``: read files, correlate, write findings as OCSF JSON lines, summarize on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import orjson

from chainwatch.engine import Engine
from chainwatch.events import AnyEvent
from chainwatch.findings.model import Finding
from chainwatch.findings.ocsf import to_ocsf
from chainwatch.findings.story import story_text
from chainwatch.policy import load_policy
from chainwatch.sources import Normalizer
from chainwatch.state.memory import InMemoryStore

EventSource = Callable[[Sequence[str], Normalizer, str | None, Callable[[Path], None] | None], Iterator[AnyEvent]]


class Progress:
    """A one-line progress display on stderr, only when stderr is a terminal (or forced)."""

    def __init__(self, enabled: bool, total_bytes: int) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = max(total_bytes, 1)
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0

    def file_started(self, path: Path) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= 0.2:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\r[{bar:<30}] {share:5.1%} {path.name[:40]:<40}")
            sys.stderr.flush()
            self._last = now
        try:
            self.done += path.stat().st_size
        except OSError:
            return

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 80 + "\r")
            sys.stderr.flush()


def run_detect(args: Any, normalizer: Normalizer, iter_events: EventSource, stack: ExitStack) -> int:
    """Run detection as the CLI asked. Returns the process exit code."""
    from chainwatch.sources.reader import iter_files

    policy = load_policy(args.policy, window=args.window)
    # Detection needs only what the engine keeps: records it would drop are left unmapped (findings unchanged).
    normalizer.tracked_only = policy
    engine = Engine(policy, InMemoryStore())
    files = list(iter_files(args.paths))
    total = 0
    for path in files:
        try:
            total += path.stat().st_size
        except OSError:
            continue
    progress = Progress(not args.no_progress and total > 5_000_000, total)
    for event in iter_events(args.paths, normalizer, args.host, progress.file_started):
        engine.ingest(event)
    engine.flush()
    progress.close()

    findings = engine.all_findings()
    out: IO[bytes] = stack.enter_context(open(args.out, "wb")) if args.out else sys.stdout.buffer  # noqa: SIM115
    written = 0
    for finding in findings:
        if finding.is_alert or args.all:
            out.write(orjson.dumps(to_ocsf(finding, policy)) + b"\n")
            written += 1
    out.flush()
    if args.story:
        for finding in findings:
            if finding.is_alert or args.all:
                print(story_text(finding) + "\n", file=sys.stderr)
    print(summary_line(normalizer, findings), file=sys.stderr)
    return 0


def summary_line(normalizer: Normalizer, findings: list[Finding]) -> str:
    stats = normalizer.stats
    alerts = sum(1 for f in findings if f.is_alert)
    suppressed = sum(1 for f in findings if f.suppressed_by)
    return (f"events: {stats.event_count}; findings: {len(findings)}; alerts: {alerts}; "
            f"suppressed: {suppressed}; rejected: {stats.rejected}; records: {stats.records}")
