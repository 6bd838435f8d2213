"""The analytic's lists and allowlists, loaded from YAML a detection engineer edits.

:func:`load_policy` validates the file and reports problems as :class:`~chainwatch.errors.PolicyError` with the
file and line of the offending entry. The result is an immutable :class:`Policy` whose matching methods are pure
and cached (they run on every process the engine sees).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from chainwatch.errors import PolicyError
from chainwatch.events import CodeSignature, ProcessRef

DEFAULT_POLICY = Path(__file__).with_name("default.yaml")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
            "d": 86_400_000_000_000}
_LINE = "__line__"
_KEY_LINES = "__key_lines__"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_duration_ns(text: Any) -> int:
    """``"1h"``, ``"30m"``, ``"90s"``, ``"250ms"`` or a number of seconds, to nanoseconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return int(text * 1_000_000_000)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"invalid duration {text!r} (use e.g. 90s, 30m, 1h)")
    return int(float(match.group(1)) * _UNIT_NS[match.group(2) or "s"])


class Role(StrEnum):
    """What a process is to the analytic."""

    APP = "app"
    HELPER = "helper"
    INTERPRETER = "interpreter"
    INTERMEDIATE = "intermediate"
    INSTALLER = "installer"


@dataclass(frozen=True, slots=True)
class Classification:
    role: Role
    name: str
    technique: str | None = None


class GlobSet:
    """Shell-style globs compiled into one case-insensitive regex; ``~/`` means any user's home."""

    __slots__ = ("_regex", "patterns")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        parts = []
        for pattern in patterns:
            expanded = re.escape("/Users/") + "[^/]+/" + _glob(pattern[2:]) if pattern.startswith("~/") \
                else _glob(pattern)
            parts.append(expanded)
        # DOTALL: names are attacker-controlled and may hold newlines; `*` must still match them.
        self._regex = re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE | re.DOTALL) if parts else None

    def match(self, value: str | None) -> bool:
        return bool(value) and self._regex is not None and self._regex.fullmatch(value or "") is not None

    def __bool__(self) -> bool:
        return bool(self.patterns)


def _glob(pattern: str) -> str:
    translated = fnmatch.translate(pattern)
    # fnmatch.translate returns "(?s:...)\Z"; keep the inner expression for embedding.
    return translated[4:-3] if translated.startswith("(?s:") else translated


@dataclass(frozen=True)
class AppSpec:
    name: str
    kind: str
    bundle_ids: frozenset[str]
    signing_ids: frozenset[str]
    team_ids: frozenset[str]
    executables: frozenset[str]
    helper_signing_ids: frozenset[str]
    helper_paths: GlobSet
    line: int | None = None
    group: str = "apps"


@dataclass(frozen=True)
class BinarySpec:
    name: str
    signing_ids: frozenset[str]
    paths: GlobSet
    technique: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class AllowRule:
    """One allowlist entry; every condition given must hold."""

    id: str
    description: str
    applies_to: str
    team_ids: frozenset[str] = frozenset()
    signing_ids: GlobSet = field(default_factory=lambda: GlobSet(()))
    parent_signing_ids: GlobSet = field(default_factory=lambda: GlobSet(()))
    paths: GlobSet = field(default_factory=lambda: GlobSet(()))
    cmdline: re.Pattern[str] | None = None
    hostnames: GlobSet = field(default_factory=lambda: GlobSet(()))
    destinations: tuple[Network, ...] = ()
    line: int | None = None

    def matches_process(self, executable: str | None, signature: CodeSignature | None, cmdline: str,
                        parent_signing_id: str | None) -> bool:
        """Whether a stage-3 process (or the app) satisfies every process condition of this rule."""
        if not (self.team_ids or self.signing_ids or self.parent_signing_ids or self.paths or self.cmdline):
            return False
        team = signature.team_id if signature else None
        signing = signature.signing_id if signature else None
        if self.team_ids and team not in self.team_ids:
            return False
        if self.signing_ids and not self.signing_ids.match(signing):
            return False
        if self.parent_signing_ids and not self.parent_signing_ids.match(parent_signing_id):
            return False
        if self.paths and not self.paths.match(executable):
            return False
        return not (self.cmdline and not self.cmdline.search(cmdline))

    def matches_destination(self, ip: str | None, hostname: str | None) -> bool:
        """Whether an egress destination satisfies every destination condition of this rule."""
        if not (self.hostnames or self.destinations):
            return False
        if self.hostnames and not self.hostnames.match(hostname):
            return False
        if self.destinations:
            address = _ip(ip)
            if address is None or not any(address in net for net in self.destinations):
                return False
        return True


@dataclass(frozen=True)
class KnownVendor:
    """A vendor a site trusts: its Developer ID teams and the domains its apps talk to."""

    name: str
    team_ids: frozenset[str]
    hostnames: GlobSet
    line: int | None = None


@dataclass(frozen=True)
class Behaviour:
    """A behaviour recognised in a chain's process tree: a process (by basename) whose command line matches."""

    id: str
    description: str
    processes: frozenset[str]
    cmdline: re.Pattern[str]
    technique: str | None = None
    line: int | None = None
    #: Files a chain process writes that show the behaviour (``~/Library/LaunchAgents/*``).
    paths: GlobSet = field(default_factory=lambda: GlobSet(()))
    #: The behaviour's own tests: (process, command line, whether it must match).
    examples: tuple[tuple[str, str, bool], ...] = ()

    def matches(self, name: str, cmdline: str) -> bool:
        return (not self.processes or name.lower() in self.processes) and self.cmdline.search(cmdline) is not None


@dataclass(frozen=True)
class SeverityRule:
    """Raise (to at least ``to``) or cap (to at most ``to``) a finding's severity when ``signal`` holds."""

    id: str
    signal: str
    to: int  # an OCSF severity_id (chainwatch.findings.model.Severity)
    score: int
    reason: str
    line: int | None = None


SEVERITY_NAMES = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


@dataclass(frozen=True)
class SeverityPolicy:
    alert_from: int
    base_all_strong: int
    base_all_weak: int
    base_three: int
    raises: tuple[SeverityRule, ...]
    caps: tuple[SeverityRule, ...]
    #: Behaviours that make an opened download an alert without all four stages (the behavioural floor).
    floor_behaviours: frozenset[str]
    #: Behaviours a known vendor's installer shows every day (its postinstall strips quarantine from its own app).
    vendor_tolerated: frozenset[str] = frozenset()


_DEFAULT_SEVERITY = SeverityPolicy(alert_from=3, base_all_strong=4, base_all_weak=3, base_three=2, raises=(),
                                   caps=(), floor_behaviours=frozenset())


@dataclass(frozen=True)
class Policy:
    """The analytic's data: apps, paths, interpreters, destination ranges, windows and allowlists."""

    source: str
    analytic_uid: str
    analytic_name: str
    attacks: tuple[dict[str, str], ...]
    window_ns: int
    app_to_file_ns: int
    file_to_exec_ns: int
    exec_to_egress_ns: int
    prompt_to_launch_ns: int
    apps: tuple[AppSpec, ...]
    watched_paths: GlobSet
    interpreters: tuple[BinarySpec, ...]
    intermediates: tuple[BinarySpec, ...]
    suspicious_exec_paths: GlobSet
    not_egress: tuple[Network, ...]
    internal: tuple[Network, ...]
    allowlist: tuple[AllowRule, ...]
    installers: tuple[BinarySpec, ...] = ()
    known_vendors: tuple[KnownVendor, ...] = ()
    behaviours: tuple[Behaviour, ...] = ()
    severity: SeverityPolicy = _DEFAULT_SEVERITY
    _cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    # -- processes ---------------------------------------------------------------------------------------------
    def classify(self, executable: str | None, signature: CodeSignature | None) -> Classification | None:
        """The role of an executable image, identified by signing id and path, never by name alone."""
        signing = signature.signing_id if signature else None
        platform = signature.platform_binary if signature else None
        key = (executable, signing, signature.team_id if signature else None, platform)
        cache = self._cache
        if key in cache:
            return cache[key]  # type: ignore[no-any-return]
        result = self._classify(executable, signing, signature.team_id if signature else None, platform)
        if len(cache) > 65536:
            cache.clear()
        cache[key] = result
        return result

    def _classify(self, executable: str | None, signing: str | None, team: str | None,
                  platform: bool | None) -> Classification | None:
        for app in self.apps:
            if executable in app.executables and not _contradicts(app, signing, team, platform):
                return Classification(Role.APP, app.name)
            if signing in app.signing_ids and (team in app.team_ids or platform
                                               or (not app.team_ids and not _contradicts(app, signing, team,
                                                                                         platform))):
                return Classification(Role.APP, app.name)
        for group, role in ((self.interpreters, Role.INTERPRETER), (self.intermediates, Role.INTERMEDIATE),
                            (self.installers, Role.INSTALLER)):
            for spec in group:
                if signing is not None:
                    # A signature decides: Apple's signing id on a platform binary, wherever the file lives.
                    if signing in spec.signing_ids and platform is not False:
                        return Classification(role, spec.name, spec.technique)
                    continue
                if spec.paths.match(executable):
                    return Classification(role, spec.name, spec.technique)
        for app in self.apps:
            if (signing in app.helper_signing_ids or app.helper_paths.match(executable)) \
                    and not _contradicts(app, signing, team, platform):
                return Classification(Role.HELPER, app.name)
        return None

    def tracks_process(self, ref: ProcessRef) -> tuple[bool, Classification | None]:
        """Whether the engine keeps a process image, and its role (:meth:`tracks_image` of its record)."""
        return self.tracks_image(ref.executable, ref.signature, ref.parent_executable)

    def tracks_image(self, executable: str | None, signature: CodeSignature | None,
                     parent_executable: str | None) -> tuple[bool, Classification | None]:
        """Whether a process image can be part of a chain, and its role; a decision on the image alone.

        Tracked: images with a role (apps and their helpers, interpreters, intermediates, installers), children
        of an app or helper, images running from a suspicious place (downloads, ``~/Library``, temp, volumes) or
        whose parent does (a stealer re-launching a copy of itself from a hidden folder is part of it, wherever
        the copy lives), and apps in ``/Applications`` that no signature vouches for (:meth:`unvetted_app`).
        """
        key = (_TRACKS_KEY, executable, signature, parent_executable)
        cache = self._cache
        found = cache.get(key)
        if found is None:
            found = cache[key] = self._tracks_image(executable, signature, parent_executable)
            if len(cache) > 65536:
                cache.clear()
        return found

    def _tracks_image(self, executable: str | None, signature: CodeSignature | None,
                      parent_executable: str | None) -> tuple[bool, Classification | None]:
        role = self.classify(executable, signature)
        if role is not None:
            return True, role
        if parent_executable:
            parent_role = self.classify(parent_executable, None)
            if parent_role is not None and parent_role.role in (Role.APP, Role.HELPER):
                return True, None
        return (self.is_suspicious_exec_path(executable) or self.unvetted_app(executable, signature)
                or self.is_suspicious_exec_path(parent_executable)), None

    def unvetted_app(self, executable: str | None, signature: CodeSignature | None) -> bool:
        """An app bundle in ``/Applications`` not signed by Apple or a known vendor (or whose record has no signature).

        A stealer dragged off its disk image runs from ``/Applications``, which is not a suspicious place; tracking
        every app there would keep all their traffic, so only the ones whose signature does not vouch for them are.
        """
        if not executable or not executable.startswith("/Applications/") or ".app/Contents/MacOS/" not in executable:
            return False
        if signature is None:
            return True
        if signature.platform_binary:
            return False
        return self.vendor_for_team(signature.team_id) is None

    def app_by_name(self, name: str | None) -> AppSpec | None:
        for app in self.apps:
            if name and app.name.lower() == name.lower():
                return app
        return None

    def app_for_activity(self, bundle_id: str | None, app_name: str | None, app_path: str | None) -> AppSpec | None:
        """The policy app named by unified-log activity (bundle id, app name or bundle path)."""
        for app in self.apps:
            if bundle_id and bundle_id in app.bundle_ids:
                return app
            if app_name and app_name.lower() == app.name.lower():
                return app
            if app_path and any(exe.lower().startswith(app_path.rstrip("/").lower() + "/")
                                for exe in app.executables):
                return app
        return None

    def vendor_for_team(self, team_id: str | None) -> KnownVendor | None:
        """The known vendor signing with ``team_id``, if any."""
        if not team_id:
            return None
        return next((v for v in self.known_vendors if team_id in v.team_ids), None)

    def is_watched(self, path: str | None) -> bool:
        return self.watched_paths.match(path)

    def is_suspicious_exec_path(self, path: str | None) -> bool:
        return self.suspicious_exec_paths.match(path)

    # -- destinations ------------------------------------------------------------------------------------------
    def destination_class(self, ip: str | None) -> str:
        """``"not_egress"``, ``"internal"``, ``"external"`` or ``"unknown"`` (no parseable address)."""
        key = (_DESTINATION_KEY, ip)
        cache = self._cache
        found = cache.get(key)
        if found is None:
            found = cache[key] = self._destination_class(ip)
            if len(cache) > 65536:
                cache.clear()
        return found

    def _destination_class(self, ip: str | None) -> str:
        address = _ip(ip)
        if address is None:
            return "unknown"
        if any(address in net for net in self.not_egress if net.version == address.version):
            return "not_egress"
        if any(address in net for net in self.internal if net.version == address.version):
            return "internal"
        return "external"


#: Sentinels that open the cache keys of tracks_image and destination_class: equal to no string, so no key of
#: theirs can ever equal one of classify's (whose first element is an attacker-chosen executable path).
_TRACKS_KEY = object()
_DESTINATION_KEY = object()


def _contradicts(app: AppSpec, signing: str | None, team: str | None, platform: bool | None) -> bool:
    """Whether a signature says an image is *not* the app its path or signing id names (an impostor).

    Paths and ad-hoc signing ids are the attacker's to choose (a stealer installs itself as ``/Applications/Arc.app``
    signed ad hoc as ``company.thebrowser.Browser``); a Developer ID team or Apple's platform signature is not. With
    no signing data at all (sources without it) the path decides.
    """
    if signing is None and team is None and platform is None:
        return False
    if platform:
        return False
    if app.team_ids:
        return team not in app.team_ids
    return not team  # an Apple app signed ad hoc or not at all


@lru_cache(maxsize=16384)
def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


# -- loading ---------------------------------------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's line under ``__line__`` and each key's under ``__key_lines__``."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping[_LINE] = node.start_mark.line + 1
    # The key's own line: a bad `window:` is reported where it is, not where the enclosing mapping starts.
    mapping[_KEY_LINES] = {str(key.value): key.start_mark.line + 1 for key, _ in node.value
                           if isinstance(key, yaml.ScalarNode)}
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Reader:
    """Typed access to one YAML mapping with errors that name the file and line."""

    def __init__(self, data: Any, path: str, where: str) -> None:
        if not isinstance(data, dict):
            raise PolicyError(f"{where} must be a mapping", path=path)
        self.data, self.path, self.where = data, path, where
        self.line: int | None = data.get(_LINE)
        self.key_lines: dict[str, int] = data.get(_KEY_LINES, {})

    def fail(self, reason: str, key: str | None = None) -> PolicyError:
        """An error at ``key``'s line when the file has it, else at the mapping's line."""
        line = self.key_lines.get(key, self.line) if key is not None else self.line
        return PolicyError(f"{self.where}: {reason}", path=self.path, line=line)

    def check_keys(self, allowed: set[str]) -> None:
        unknown = set(self.data) - allowed - {_LINE, _KEY_LINES}
        if unknown:
            first = min(unknown, key=lambda k: (self.key_lines.get(k, 0), k))
            raise self.fail(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}", first)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"'{key}' must be a non-empty string", key)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"'{key}' must be a list of non-empty strings", key)
        return tuple(value)

    def items(self, key: str) -> list[_Reader]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.fail(f"'{key}' must be a list", key)
        return [_Reader(item, self.path, f"{key}[{i}]") for i, item in enumerate(value)]

    def duration(self, key: str, default: str) -> int:
        try:
            return parse_duration_ns(self.data.get(key, default))
        except ValueError as exc:
            raise self.fail(f"'{key}': {exc}", key) from exc

    def networks(self, key: str) -> tuple[Network, ...]:
        nets = []
        for text in self.strings(key):
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise self.fail(f"'{key}': {exc}", key) from exc
        return tuple(nets)


_TOP_KEYS = {"analytic", "window", "links", "apps", "watched_paths", "interpreters", "intermediates",
             "suspicious_exec_paths", "not_egress", "internal", "allowlist", "disabled_groups", "installers",
             "known_vendors", "behaviours", "severity"}
_APPLIES_TO = {"app", "child", "egress"}


def load_policy(path: str | Path | None = None, *, window: str | None = None) -> Policy:
    """Load and validate a policy file (the bundled default when ``path`` is ``None``).

    Parameters
    ----------
    path:
        YAML policy file.
    window:
        Overrides the file's ``window`` (e.g. ``"30m"``).

    Raises
    ------
    PolicyError
        With the file and line of the first problem found.
    """
    file = Path(path) if path else DEFAULT_POLICY
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy: {exc.strerror or exc}", path=name) from exc
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError(f"invalid YAML: {exc}", path=name, line=mark.line + 1 if mark else None) from exc
    top = _Reader(data, name, "policy")
    top.check_keys(_TOP_KEYS)

    analytic = _Reader(data.get("analytic", {"uid": "AN1316", "name": "AN1316"}), name, "analytic")
    attacks = []
    for item in analytic.items("attack"):
        attacks.append({"technique": item.text("technique"), "name": item.text("name", item.text("technique")),
                        "tactic": item.text("tactic", "TA0002")})
    links = _Reader(data.get("links", {}), name, "links")
    links.check_keys({"app_to_file", "file_to_exec", "exec_to_egress", "prompt_to_launch"})

    apps = []
    disabled = set(top.strings("disabled_groups"))
    for item in top.items("apps"):
        item.check_keys({"name", "kind", "group", "bundle_ids", "signing_ids", "team_ids", "executables",
                         "helpers"})
        helpers = _Reader(item.data.get("helpers", {}), name, f"{item.where}.helpers")
        helpers.check_keys({"signing_ids", "paths"})
        apps.append(AppSpec(
            name=item.text("name"), kind=item.text("kind", "app"),
            bundle_ids=frozenset(item.strings("bundle_ids")), signing_ids=frozenset(item.strings("signing_ids")),
            team_ids=frozenset(item.strings("team_ids")), executables=frozenset(item.strings("executables")),
            helper_signing_ids=frozenset(helpers.strings("signing_ids")),
            helper_paths=GlobSet(helpers.strings("paths")), line=item.line,
            group=item.text("group", item.text("kind", "apps")),
        ))
        if not apps[-1].executables and not apps[-1].signing_ids:
            raise item.fail("an app needs 'executables' or 'signing_ids'")
        if apps[-1].group in disabled:
            apps.pop()

    def binaries(key: str) -> tuple[BinarySpec, ...]:
        specs = []
        for item in top.items(key):
            item.check_keys({"name", "signing_ids", "paths", "technique"})
            spec = BinarySpec(name=item.text("name"), signing_ids=frozenset(item.strings("signing_ids")),
                              paths=GlobSet(item.strings("paths")),
                              technique=item.data.get("technique"), line=item.line)
            if not spec.signing_ids and not spec.paths:
                raise item.fail("needs 'signing_ids' or 'paths'")
            specs.append(spec)
        return tuple(specs)

    rules = []
    seen: set[str] = set()
    for item in top.items("allowlist"):
        item.check_keys({"id", "description", "applies_to", "team_ids", "signing_ids", "parent_signing_ids",
                         "paths", "cmdline", "hostnames", "destinations"})
        rule_id = item.text("id")
        if rule_id in seen:
            raise item.fail(f"duplicate allowlist id {rule_id!r}", "id")
        seen.add(rule_id)
        applies_to = item.text("applies_to", "child")
        if applies_to not in _APPLIES_TO:
            raise item.fail(f"'applies_to' must be one of {sorted(_APPLIES_TO)}", "applies_to")
        cmdline = item.data.get("cmdline")
        try:
            compiled = re.compile(cmdline) if cmdline else None
        except re.error as exc:
            raise item.fail(f"'cmdline' is not a valid regex: {exc}", "cmdline") from exc
        rule = AllowRule(
            id=rule_id, description=item.text("description", rule_id), applies_to=applies_to,
            team_ids=frozenset(item.strings("team_ids")), signing_ids=GlobSet(item.strings("signing_ids")),
            parent_signing_ids=GlobSet(item.strings("parent_signing_ids")), paths=GlobSet(item.strings("paths")),
            cmdline=compiled, hostnames=GlobSet(item.strings("hostnames")),
            destinations=item.networks("destinations"), line=item.line,
        )
        if applies_to == "egress" and not (rule.hostnames or rule.destinations):
            raise item.fail("an egress rule needs 'hostnames' or 'destinations'")
        if applies_to != "egress" and not (rule.team_ids or rule.signing_ids or rule.parent_signing_ids
                                           or rule.paths or rule.cmdline):
            raise item.fail("a process rule needs at least one of team_ids, signing_ids, parent_signing_ids, "
                            "paths, cmdline")
        rules.append(rule)

    vendors = []
    for item in top.items("known_vendors"):
        item.check_keys({"name", "team_ids", "hostnames"})
        vendors.append(KnownVendor(item.text("name"), frozenset(item.strings("team_ids")),
                                   GlobSet(item.strings("hostnames")), item.line))
        if not vendors[-1].team_ids:
            raise item.fail("a known vendor needs 'team_ids'")
    behaviours = _behaviours(top)
    severity = _severity(top, {b.id for b in behaviours})

    try:
        window_ns = parse_duration_ns(window) if window else top.duration("window", "1h")
    except ValueError as exc:
        raise PolicyError(f"--window: {exc}", path=name) from exc
    return Policy(
        source=name,
        analytic_uid=analytic.text("uid", "AN1316"),
        analytic_name=analytic.text("name", "AN1316"),
        attacks=tuple(attacks),
        window_ns=window_ns,
        app_to_file_ns=links.duration("app_to_file", "1h"),
        file_to_exec_ns=links.duration("file_to_exec", "1h"),
        exec_to_egress_ns=links.duration("exec_to_egress", "30m"),
        prompt_to_launch_ns=links.duration("prompt_to_launch", "10m"),
        apps=tuple(apps),
        watched_paths=GlobSet(top.strings("watched_paths")),
        interpreters=binaries("interpreters"),
        intermediates=binaries("intermediates"),
        suspicious_exec_paths=GlobSet(top.strings("suspicious_exec_paths")),
        not_egress=top.networks("not_egress"),
        internal=top.networks("internal"),
        allowlist=tuple(rules),
        installers=binaries("installers"),
        known_vendors=tuple(vendors),
        behaviours=behaviours,
        severity=severity,
    )


#: The signals the engine computes for severity rules (``behaviour:<id>`` names a policy behaviour).
SIGNALS = frozenset({"unsigned_process", "revoked_signature", "unknown_team", "gatekeeper_override",
                     "raw_ip_egress", "payload_executed", "known_vendor_quiet"})


def _behaviours(top: _Reader) -> tuple[Behaviour, ...]:
    out = []
    seen: set[str] = set()
    for item in top.items("behaviours"):
        item.check_keys({"id", "description", "technique", "processes", "cmdline", "paths", "examples"})
        ident = item.text("id")
        if ident in seen:
            raise item.fail(f"duplicate behaviour id {ident!r}", "id")
        seen.add(ident)
        try:
            pattern = re.compile(item.text("cmdline"), re.IGNORECASE)
        except re.error as exc:
            raise item.fail(f"'cmdline' is not a valid regex: {exc}", "cmdline") from exc
        examples = []
        for example in item.items("examples"):
            example.check_keys({"process", "cmdline", "matches"})
            expected = example.data.get("matches")
            if not isinstance(expected, bool):
                raise example.fail("'matches' must be true or false", "matches")
            examples.append((example.text("process"), example.text("cmdline"), expected))
        out.append(Behaviour(ident, item.text("description", ident),
                             frozenset(p.lower() for p in item.strings("processes")), pattern,
                             item.data.get("technique"), item.line, GlobSet(item.strings("paths")),
                             tuple(examples)))
    return tuple(out)


def _severity_name(reader: _Reader, key: str, default: str) -> int:
    value = reader.data.get(key, default)
    if value not in SEVERITY_NAMES:
        raise reader.fail(f"'{key}' must be one of {sorted(SEVERITY_NAMES, key=SEVERITY_NAMES.__getitem__)}", key)
    return SEVERITY_NAMES[value]


def _severity(top: _Reader, behaviour_ids: set[str]) -> SeverityPolicy:
    if "severity" not in top.data:
        return _DEFAULT_SEVERITY
    sev = _Reader(top.data["severity"], top.path, "severity")
    sev.check_keys({"alert_from", "base", "raise", "cap", "behavioural_floor", "known_vendor_tolerates"})
    base = _Reader(sev.data.get("base", {}), top.path, "severity.base")
    base.check_keys({"all_stages_strong", "all_stages_weak", "three_stages"})
    seen: set[str] = set()

    def rules(key: str) -> tuple[SeverityRule, ...]:
        out = []
        for item in sev.items(key):
            item.check_keys({"id", "signal", "to", "score", "reason"})
            ident = item.text("id")
            if ident in seen:
                raise item.fail(f"duplicate severity rule id {ident!r}", "id")
            seen.add(ident)
            signal = item.text("signal")
            known = signal in SIGNALS or (signal.startswith("behaviour:") and signal[10:] in behaviour_ids)
            if not known:
                raise item.fail(f"unknown signal {signal!r}: one of {sorted(SIGNALS)} or behaviour:<id> of a "
                                "listed behaviour", "signal")
            score = item.data.get("score", 0)
            if not isinstance(score, int) or isinstance(score, bool):
                raise item.fail("'score' must be an integer", "score")
            out.append(SeverityRule(ident, signal, _severity_name(item, "to", "high"), score,
                                    item.text("reason", ident), item.line))
        return tuple(out)

    floor = sev.strings("behavioural_floor")
    tolerated = sev.strings("known_vendor_tolerates")
    for key, names in (("behavioural_floor", floor), ("known_vendor_tolerates", tolerated)):
        unknown = sorted(set(names) - behaviour_ids)
        if unknown:
            raise sev.fail(f"'{key}' names unknown behaviours {unknown}", key)
    return SeverityPolicy(
        alert_from=_severity_name(sev, "alert_from", "medium"),
        base_all_strong=_severity_name(base, "all_stages_strong", "high"),
        base_all_weak=_severity_name(base, "all_stages_weak", "medium"),
        base_three=_severity_name(base, "three_stages", "low"),
        raises=rules("raise"), caps=rules("cap"), floor_behaviours=frozenset(floor),
        vendor_tolerated=frozenset(tolerated),
    )
