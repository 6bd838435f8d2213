"""The policy loader (errors name file:line), classification by signing id vs path, windows and destinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainwatch.errors import PolicyError
from chainwatch.events import CodeSignature
from chainwatch.policy import DEFAULT_POLICY, Role, load_policy, parse_duration_ns

POLICY = load_policy()
DEFAULT_TEXT = DEFAULT_POLICY.read_text(encoding="utf-8")
MINUTE = 60_000_000_000


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def _error(tmp_path: Path, text: str) -> PolicyError:
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")
    return caught.value


def _edited(old: str, new: str) -> str:
    assert DEFAULT_TEXT.count(old) == 1, old
    return DEFAULT_TEXT.replace(old, new)


# -- loader errors --------------------------------------------------------------------------------------------------


def test_policy_default_loads() -> None:
    assert POLICY.analytic_uid == "AN1316"
    assert POLICY.window_ns == 60 * MINUTE and POLICY.exec_to_egress_ns == 30 * MINUTE
    assert {a.name for a in POLICY.apps} >= {"Safari", "Google Chrome", "Microsoft Word", "Preview", "Keka"}
    assert {r.id for r in POLICY.allowlist} >= {"google-software-update", "microsoft-autoupdate"}


def test_policy_bad_duration_error_has_line_of_key(tmp_path: Path) -> None:
    text = _edited("\nwindow: 1h\n", "\nwindow: 1 fortnight\n")
    error = _error(tmp_path, text)
    assert error.line == _line_of(text, "window: 1 fortnight")
    assert "invalid duration '1 fortnight'" in error.reason


def test_policy_bad_link_duration_error_has_line_of_key(tmp_path: Path) -> None:
    text = _edited("  exec_to_egress: 30m ", "  exec_to_egress: soon ")
    error = _error(tmp_path, text)
    assert error.line == _line_of(text, "exec_to_egress: soon")
    assert error.reason.startswith("links: 'exec_to_egress'")


def test_policy_unknown_top_key_error_has_its_line(tmp_path: Path) -> None:
    text = _edited("\nwindow: 1h\n", "\nwindow: 1h\nwindw: 2h\n")
    error = _error(tmp_path, text)
    assert error.line == _line_of(text, "windw: 2h") and "['windw']" in error.reason


def test_policy_unknown_allowlist_key_error_has_its_line(tmp_path: Path) -> None:
    text = _edited("    applies_to: egress\n", "    applies_to: egress\n    hostname: [x.example]\n")
    error = _error(tmp_path, text)
    assert error.line == _line_of(text, "hostname: [x.example]")
    assert "unknown key(s) ['hostname']" in error.reason


def test_policy_bad_regex_error_has_line(tmp_path: Path) -> None:
    text = _edited('    paths: ["/Library/Application Support/ExampleCorp/automation/*"]\n',
                   '    cmdline: "(unclosed"\n')
    error = _error(tmp_path, text)
    assert error.line == _line_of(text, 'cmdline: "(unclosed"')
    assert "'cmdline' is not a valid regex" in error.reason


def test_policy_duplicate_id_error_has_line(tmp_path: Path) -> None:
    text = _edited("  - id: approved-automation-example\n", "  - id: management-agents\n")
    error = _error(tmp_path, text)
    lines = [i for i, line in enumerate(text.splitlines(), 1) if "- id: management-agents" in line]
    assert error.line == lines[1]  # the second one, not the first
    assert "duplicate allowlist id 'management-agents'" in error.reason


def test_policy_egress_rule_without_destinations_error(tmp_path: Path) -> None:
    text = _edited('    hostnames: ["*.apple.com", "*.mzstatic.com", "*.icloud.com"]\n', "")
    error = _error(tmp_path, text)
    assert error.line == _line_of(text, "- id: apple-update-destinations")
    assert "an egress rule needs 'hostnames' or 'destinations'" in error.reason


def test_policy_bad_cidr_error_has_line(tmp_path: Path) -> None:
    text = _edited("  - 10.0.0.0/8\n", "  - 10.0.0.0/33\n")
    error = _error(tmp_path, text)
    assert "'internal'" in error.reason and error.line is not None


def test_policy_invalid_yaml_error_has_line(tmp_path: Path) -> None:
    error = _error(tmp_path, "window: 1h\napps: [\n  - name: x\n")
    assert error.line is not None and "invalid YAML" in error.reason


def test_policy_missing_file_error_names_path(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "absent.yaml")
    assert caught.value.path.endswith("absent.yaml") and "cannot read policy" in caught.value.reason


# -- windows --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "ns"), [("30m", 30 * MINUTE), ("90s", 90_000_000_000), ("250ms", 250_000_000),
                                          ("1.5h", 90 * MINUTE), ("2d", 2880 * MINUTE), (45, 45_000_000_000)])
def test_policy_parse_duration_units(text: str | int, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "soon", "-5m", "1w", True])
def test_policy_parse_duration_rejects(text: str | bool) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration_ns(text)


def test_policy_window_override_replaces_window_only() -> None:
    policy = load_policy(window="30m")
    assert policy.window_ns == 30 * MINUTE
    assert (policy.app_to_file_ns, policy.exec_to_egress_ns) == (POLICY.app_to_file_ns, POLICY.exec_to_egress_ns)


def test_policy_window_override_invalid_fails() -> None:
    with pytest.raises(PolicyError, match="--window: invalid duration"):
        load_policy(window="half an hour")


# -- classification ---------------------------------------------------------------------------------------------------


def _apple(signing_id: str) -> CodeSignature:
    return CodeSignature(signing_id=signing_id, platform_binary=True)


@pytest.mark.parametrize(("executable", "signature", "role", "name"), [
    # Apple's curl renamed and copied into ~/Library: the signature decides, it is still curl.
    ("/Users/alice/Library/Caches/wupd", _apple("com.apple.curl"), Role.INTERPRETER, "curl"),
    # No signature known (a source without signing data): the path decides.
    ("/usr/bin/curl", None, Role.INTERPRETER, "curl"),
    ("/opt/homebrew/bin/python3.12", None, Role.INTERPRETER, "python"),
    ("/usr/bin/env", _apple("com.apple.env"), Role.INTERMEDIATE, "env"),
    ("/Applications/Safari.app/Contents/MacOS/Safari", None, Role.APP, "Safari"),
    ("/Applications/Renamed.app/Contents/MacOS/x",
     CodeSignature(signing_id="com.google.Chrome", team_id="EQHXZ8M8AV", platform_binary=False), Role.APP,
     "Google Chrome"),
    ("/System/Library/Frameworks/WebKit.framework/Versions/A/XPCServices/com.apple.WebKit.Networking.xpc/Contents/"
     "MacOS/com.apple.WebKit.Networking", _apple("com.apple.WebKit.Networking"), Role.HELPER, "Safari"),
    ("/Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Framework.framework/Helpers/x", None,
     Role.HELPER, "Google Chrome"),
])
def test_policy_classify_by_signing_id_or_path(executable: str, signature: CodeSignature | None, role: Role,
                                               name: str) -> None:
    found = POLICY.classify(executable, signature)
    assert found is not None and (found.role, found.name) == (role, name)


@pytest.mark.parametrize(("executable", "signature"), [
    # A file merely named osascript in /tmp, ad-hoc signed: not Apple's osascript.
    ("/tmp/osascript", CodeSignature(signing_id="osascript-55554944", platform_binary=False)),
    # At Apple's path but with another signature: the signature says it is not osascript.
    ("/usr/bin/osascript", CodeSignature(signing_id="osascript-55554944", platform_binary=False)),
    # Apple's signing id claimed by a non-platform binary.
    ("/tmp/curl", CodeSignature(signing_id="com.apple.curl", platform_binary=False)),
    # Chrome's signing id from another team is not Chrome.
    ("/tmp/Chrome", CodeSignature(signing_id="com.google.Chrome", team_id="ABCDE12345", platform_binary=False)),
    ("/usr/bin/git", _apple("com.apple.git")),
])
def test_policy_classify_impostors_are_nothing(executable: str, signature: CodeSignature) -> None:
    assert POLICY.classify(executable, signature) is None


def test_policy_classify_cached_result_is_stable() -> None:
    first = POLICY.classify("/usr/bin/curl", _apple("com.apple.curl"))
    assert POLICY.classify("/usr/bin/curl", _apple("com.apple.curl")) is first


# -- paths and destinations -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "watched"), [
    ("/Users/alice/Downloads/CleanMyMac.dmg", True),
    ("/users/ALICE/downloads/x.zip", True),  # APFS is case-insensitive by default
    ("/private/var/folders/x4/abc/T/AppTranslocation/1/d/X.app", True),
    ("/Users/alice/Library/LaunchAgents/~$com.x.plist", True),
    ("/Users/alice/Documents/report.docx", False),
    ("/Applications/Slack.app/Contents/MacOS/Slack", False),
])
def test_policy_watched_paths(path: str, watched: bool) -> None:
    assert POLICY.is_watched(path) is watched


@pytest.mark.parametrize(("ip", "kind"), [
    ("127.0.0.1", "not_egress"), ("::1", "not_egress"), ("::ffff:127.0.0.1", "not_egress"),
    ("169.254.169.254", "not_egress"), ("fe80::1%en0", "not_egress"), ("224.0.0.251", "not_egress"),
    ("10.1.2.3", "internal"), ("192.168.1.1", "internal"), ("fd00::1", "internal"),
    ("185.106.93.154", "external"), ("2606:4700::6810:84e5", "external"), (None, "unknown"), ("not-ip", "unknown"),
])
def test_policy_destination_class(ip: str | None, kind: str) -> None:
    assert POLICY.destination_class(ip) == kind


def test_policy_allowlist_egress_hostname_glob() -> None:
    rule = next(r for r in POLICY.allowlist if r.id == "apple-update-destinations")
    assert rule.matches_destination("17.253.144.10", "swcdn.apple.com")
    assert not rule.matches_destination("17.253.144.10", "apple.com.evil.example")
    assert not rule.matches_destination("17.253.144.10", None)


def test_policy_allowlist_child_rule_needs_team_and_signing_id() -> None:
    rule = next(r for r in POLICY.allowlist if r.id == "google-software-update")
    genuine = CodeSignature(signing_id="com.google.Keystone.Agent", team_id="EQHXZ8M8AV")
    lookalike = CodeSignature(signing_id="com.google.Keystone.Agent", team_id=None)
    assert rule.matches_process("/x", genuine, "", None)
    assert not rule.matches_process("/x", lookalike, "", None)
