"""Score chainwatch on the delivery-chain corpus in ``tests/corpus/`` (one folder per scenario, ``expected.json``).

For every scenario it runs the same reader, normalizer and engine as ``chainwatch detect`` and compares the findings
with the label:

- **recall**: malicious scenarios the analytic can see (``expect_detect``) with an alert whose stage-3 process is
  the labelled one (by pid), of all such scenarios;
- **attribution**: labelled malicious connections (pid, destination, port) that appear in that alert's egress
  attributed to the labelled pid, of all labelled connections;
- **benign alerts**: benign installs with any alert (must be 0);
- **ordering**: every malicious alert ranks above every benign finding, by (severity, score); a benign scenario
  with no finding ranks lowest.

``.venv/bin/python scripts/score_corpus.py [--json]`` prints a table per scenario and the totals; exit 1 when a
target is missed (recall or attribution < 0.95, a benign alert, or an ordering violation).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from chainwatch.engine import Engine
from chainwatch.findings.model import Finding
from chainwatch.policy import Policy, load_policy
from chainwatch.sources import Normalizer
from chainwatch.sources.reader import iter_files, read_path
from chainwatch.state.memory import InMemoryStore

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
TARGET = 0.95


@dataclass
class ScenarioScore:
    name: str
    label: dict[str, Any]
    findings: list[Finding]
    alert: Finding | None = None
    attributed: int = 0
    expected_egress: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def malicious(self) -> bool:
        return bool(self.label.get("malicious"))

    @property
    def rank(self) -> tuple[int, int]:
        """(severity, score) of the scenario's strongest finding (the alert for malicious ones)."""
        chosen = self.alert if self.malicious else max(self.findings, key=_rank, default=None)
        return _rank(chosen) if chosen is not None else (0, 0)


def _rank(finding: Finding) -> tuple[int, int]:
    return int(finding.severity), finding.score


def detect_folder(folder: Path, policy: Policy) -> list[Finding]:
    """Every finding (alerts and non-alerts) in one scenario folder, as ``chainwatch detect --all`` makes them."""
    engine = Engine(policy, InMemoryStore())
    normalizer = Normalizer()
    for path in iter_files([folder]):
        if path.suffix == ".json" and path.name == "expected.json":
            continue
        for event in normalizer.run(read_path(path), folder.name):
            engine.ingest(event)
    engine.flush()
    return engine.all_findings()


def score_scenario(folder: Path, policy: Policy) -> ScenarioScore:
    label = orjson.loads((folder / "expected.json").read_bytes())
    findings = detect_folder(folder, policy)
    result = ScenarioScore(folder.name, label, findings)
    alerts = [f for f in findings if f.is_alert]
    if not result.malicious:
        if alerts:
            result.problems.append(f"benign install alerts: {alerts[0].title}")
        return result
    stage3_pid = label["stage3"]["pid"]
    matching = [f for f in alerts if _stage3_pid(f) == stage3_pid]
    result.alert = max(matching, key=_rank) if matching else (max(alerts, key=_rank) if alerts else None)
    expected = label.get("egress", [])
    result.expected_egress = len(expected) if label.get("expect_detect", True) else 0
    if result.alert is None:
        if label.get("expect_detect", True):
            result.problems.append("no alert")
        return result
    if _stage3_pid(result.alert) != stage3_pid:
        result.problems.append(f"alert's stage 3 is pid {_stage3_pid(result.alert)}, not {stage3_pid}")
    got = {(e.process.pid, e.dst_ip, e.dst_port) for e in result.alert.egress}
    for item in expected if label.get("expect_detect", True) else []:
        if (item["pid"], item["dst"], item["port"]) in got:
            result.attributed += 1
        else:
            result.problems.append(f"egress {item['dst']}:{item['port']} of pid {item['pid']} not attributed")
    floor = label.get("severity_floor")
    if floor and result.alert.severity.name.lower() != floor and int(result.alert.severity) < _level(floor):
        result.problems.append(f"severity {result.alert.severity.name.lower()} below {floor}")
    return result


def _level(name: str) -> int:
    return {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}[name]


def _stage3_pid(finding: Finding) -> int | None:
    return next((s.process.pid for s in finding.stages if int(s.stage) == 3 and s.process), None)


@dataclass
class CorpusScore:
    scenarios: list[ScenarioScore]

    @property
    def detectable(self) -> list[ScenarioScore]:
        return [s for s in self.scenarios if s.malicious and s.label.get("expect_detect", True)]

    @property
    def recall(self) -> float:
        found = [s for s in self.detectable if s.alert is not None and _stage3_pid(s.alert) == s.label["stage3"]["pid"]]
        return len(found) / len(self.detectable) if self.detectable else 1.0

    @property
    def attribution(self) -> float:
        expected = sum(s.expected_egress for s in self.detectable)
        return sum(s.attributed for s in self.detectable) / expected if expected else 1.0

    @property
    def benign_alerts(self) -> list[str]:
        return [s.name for s in self.scenarios if not s.malicious and any(f.is_alert for f in s.findings)]

    @property
    def ordering_violations(self) -> list[tuple[str, str]]:
        benign = [s for s in self.scenarios if not s.malicious]
        bad = []
        for evil in self.detectable:
            for good in benign:
                if evil.alert is None or evil.rank <= good.rank:
                    bad.append((evil.name, good.name))
        return bad

    @property
    def passed(self) -> bool:
        return (self.recall >= TARGET and self.attribution >= TARGET and not self.benign_alerts
                and not self.ordering_violations)


def score_corpus(corpus: Path = CORPUS, policy: Policy | None = None) -> CorpusScore:
    policy = policy or load_policy()
    folders = sorted(p for p in corpus.iterdir() if (p / "expected.json").is_file())
    return CorpusScore([score_scenario(folder, policy) for folder in folders])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=CORPUS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = score_corpus(args.corpus)
    if args.json:
        print(orjson.dumps({
            "recall": result.recall, "attribution": result.attribution, "benign_alerts": result.benign_alerts,
            "ordering_violations": result.ordering_violations,
            "scenarios": [{"name": s.name, "malicious": s.malicious, "alert": s.alert is not None,
                           "severity": s.rank[0], "score": s.rank[1], "problems": s.problems}
                          for s in result.scenarios]}, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"{'scenario':<28} {'label':<10} {'result':<10} {'severity':<9} {'score':>5}  problems")
        for s in result.scenarios:
            best = s.alert if s.malicious else max(s.findings, key=_rank, default=None)
            label = "malicious" if s.malicious else "benign"
            if s.malicious and not s.label.get("expect_detect", True):
                label = "unseeable"
            outcome = "alert" if best is not None and best.is_alert else ("non-alert" if best else "none")
            severity = best.severity.name.lower() if best else "-"
            print(f"{s.name:<28} {label:<10} {outcome:<10} {severity:<9} {s.rank[1]:>5}  {'; '.join(s.problems)}")
        print(f"recall {result.recall:.2f}  attribution {result.attribution:.2f}  benign alerts "
              f"{len(result.benign_alerts)}  ordering violations {len(result.ordering_violations)}  "
              f"({len(result.detectable)} detectable malicious, "
              f"{sum(1 for s in result.scenarios if not s.malicious)} benign)")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
