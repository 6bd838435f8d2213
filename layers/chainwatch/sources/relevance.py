"""The relevance gate: decide from a record's raw bytes, before decoding it, that it cannot matter to a chain.

Most telemetry is noise to AN1316: nine in ten eslogger records are ``open`` and unmodified ``close`` events, and
most unified-log lines match no pattern. Decoding them fully only to find that out is most of a run's cost, so the
reader asks this gate first, and a record the gate sets aside is counted (per source, under the very label the
source module would have given it) and never decoded.

The gate never keeps a second, hand-written list of what matters. It is derived from the source modules' own data:

- **eslogger**: the event name (the single key inside ``event``) is an Endpoint Security event
  (``eslogger.EVENT_NAMES``) not in ``eslogger.MAPPED``, or it is a
  ``close`` whose ``modified`` is ``false`` (exactly the two cases where ``eslogger.map_record`` returns a label
  before reading anything else);
- **unified log**: no pattern of ``unifiedlog_patterns.yaml`` can match the record: every pattern its process (the
  basename of ``processImagePath``) is tried against, its own and those for any process (``"*"``), needs a
  subsystem, a message prefix or a substring that is not in the line.

It only ever says "drop" on positive evidence, and everything it is unsure of goes the full way:

- every telemetry string is attacker-controlled, but JSON strings cannot hold an unescaped ``"``, so a key token
  like ``"modified":false`` or ``"event":{"open"`` found in the bytes is the producer's structure, never a name;
- a line is only gated when it is one compact object (``{"`` ... ``}``) whose *first key* belongs to the format
  (:data:`ESLOGGER_FIRST_KEYS`, :data:`UNIFIED_LOG_FIRST_KEYS`): a wrapper (an Elasticsearch hit or response, a
  Jamf alert, a Kinesis envelope) opens with a key of its own, so a record inside one is always decoded;
- a name read from the bytes that holds an escape (``\\``) is never trusted;
- a pattern literal is looked for only through its longest run of characters that no JSON encoder escapes, so an
  encoder that writes ``\\/`` or ``\\u003c`` cannot hide a match from it.

A record the gate drops would have produced no event (the source module returns a label for it), so gating
changes neither the events, nor the findings, nor the engine's watermarks; the test suite checks that on every
corpus and fixture. What it does change: a broken record of a dropped kind is counted as skipped, not rejected
(its bytes are not decoded, so its damage is not seen).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chainwatch.events import SourceFormat
from chainwatch.sources.eslogger import EVENT_NAMES, MAPPED
from chainwatch.sources.unifiedlog import ANY_PROCESS, PATTERNS, SKIP_UNCLASSIFIED, Pattern, PatternSet


@dataclass(frozen=True, slots=True)
class Gated:
    """Records the gate set aside unread: the source, the label its source module would give them, how many.

    The gate returns one shared instance per label (it allocates nothing per record); the reader counts them and
    hands on one instance per label with its ``count``.
    """

    source: str
    label: str
    count: int = 1


#: Characters some JSON encoder escapes (``\\/``, ``\\u003c``, ``\\u0026``, ``\\u0027``), besides ``"``, ``\\``,
#: controls and non-ASCII: a literal is searched only through a run of characters outside this set.
_ESCAPABLE = frozenset('"\\/<>&\'')
#: Top-level keys of an eslogger record (every key of the captures and fixtures). A line whose *first* key is one
#: of them is an eslogger record at the top level, never a wrapper around one: Elasticsearch hits and responses
#: and Jamf Protect's wrappers open with keys of their own (``_index``, ``took``, ``responses``, ``caid`` ...).
#: A wrapper that opens with ``event`` (chainwatch's Kinesis envelope, ``{"event": {...}, "host": ...}``) is
#: still never gated: the key after ``"event":{`` is then the wrapped document's first key, never an Endpoint
#: Security event name, and only those are gated.
ESLOGGER_FIRST_KEYS = frozenset({b"process", b"event", b"schema_version", b"event_type", b"es_event_type", b"time",
                                 b"mach_time", b"seq_num", b"global_seq_num", b"thread", b"version", b"action",
                                 b"action_type"})
#: Top-level keys of a ``log show|stream --style ndjson`` record (``shared/reference/macos-telemetry.md`` 3.1)
#: except ``source``, which an envelope may open with.
UNIFIED_LOG_FIRST_KEYS = frozenset({b"traceID", b"eventMessage", b"eventType", b"formatString",
                                    b"activityIdentifier", b"subsystem", b"category", b"threadID",
                                    b"senderImageUUID", b"backtrace", b"bootUUID", b"processImagePath",
                                    b"senderImagePath", b"machTimestamp", b"messageType", b"processImageUUID",
                                    b"processID", b"senderProgramCounter", b"parentActivityIdentifier",
                                    b"creatorActivityID", b"timezoneName", b"timestamp", b"userID"})
_IMAGE_PATH_KEY = b'"processImagePath":"'
_OBJECT_ENDS = (b"}\n", b"}\r\n", b"}")


def _safe_run(literal: str) -> bytes | None:
    """The longest run of ``literal`` that every JSON encoder writes as the same bytes, or ``None`` if too short."""
    best = ""
    current: list[str] = []
    for char in literal + "\0":
        if char in _ESCAPABLE or not (" " <= char <= "~"):
            if len(current) > len(best):
                best = "".join(current)
            current = []
        else:
            current.append(char)
    # A run of one or two characters would pass almost every line anyway: not worth a search.
    return best.encode("ascii") if len(best) >= 3 else None


def _subsystem_tokens(subsystems: Iterable[str]) -> tuple[bytes, ...] | None:
    tokens = []
    for name in subsystems:
        run = _safe_run(name)
        if run is None or run != name.encode("ascii", "replace"):
            return None
        tokens.append(b'"' + run + b'"')
    return tuple(tokens)


@dataclass(frozen=True, slots=True)
class _PatternGuard:
    """What a line must contain for one pattern to possibly match it (every entry of a tuple is an OR)."""

    subsystems: tuple[bytes, ...] | None
    literal: bytes | None

    def may_match(self, line: bytes) -> bool:
        if self.subsystems is not None and not any(token in line for token in self.subsystems):
            return False
        return self.literal is None or self.literal in line


class UnifiedLogGate:
    """Drops unified-log lines that no pattern of a :class:`PatternSet` can classify (see the module docstring).

    Each process name meets only its own patterns and the ``"*"`` ones (the order :meth:`PatternSet.candidates`
    tries them in), so a line is dropped when none of those patterns' subsystem, prefix or substring is in it.
    """

    def __init__(self, patterns: PatternSet) -> None:
        self.usable = True
        names = {name for p in patterns.patterns for name in p.processes if name != ANY_PROCESS}
        #: Per process name (bytes), the guards of its candidate patterns; ``None``: some pattern cannot be
        #: guarded (nothing but a regex), so every line of that process is decoded.
        self.by_process: dict[bytes, tuple[_PatternGuard, ...] | None] = {
            name.encode(): _guards(patterns.candidates(name)) for name in names}
        anyone = _guards(patterns.candidates(""))
        if anyone is None:
            self.usable = False  # a "*" pattern with nothing but a regex: any line may match it
        self.anyone: tuple[_PatternGuard, ...] = anyone or ()
        self.unclassified = Gated(SourceFormat.UNIFIED_LOG.value, SKIP_UNCLASSIFIED)

    def __call__(self, line: bytes) -> Gated | None:
        start = line.find(_IMAGE_PATH_KEY)
        if start < 0 or b'"eventMessage":' not in line:
            return None
        start += len(_IMAGE_PATH_KEY)
        end = line.find(b'"', start)
        if end < 0:
            return None
        image = line[start:end]
        name = image[image.rfind(b"/") + 1:]
        if b"\\" in name:
            # An escape in the name could spell any process: decode it and let the source module decide.
            return None
        guards = self.by_process.get(name, self.anyone) if name else self.anyone
        if guards is None:
            return None
        for guard in guards:
            if guard.may_match(line):
                return None
        if b'"lossEvent"' in line:
            return None  # labelled differently by the source module: not the gate's to say
        return self.unclassified


def _guards(patterns: Iterable[Pattern]) -> tuple[_PatternGuard, ...] | None:
    """The guards of ``patterns``, or ``None`` when one of them has nothing a guard can look for."""
    guards = []
    for pattern in patterns:
        subsystems = _subsystem_tokens(pattern.subsystems) if pattern.subsystems is not None else None
        text = pattern.prefix if pattern.prefix is not None else pattern.contains
        literal = _safe_run(text) if text is not None else None
        if pattern.subsystems is not None and subsystems is None:
            return None  # a subsystem name the gate cannot search for safely
        if subsystems is None and literal is None:
            return None
        guards.append(_PatternGuard(subsystems, literal))
    return tuple(guards)


class EsloggerGate:
    """Drops eslogger records whose event ``eslogger.map_record`` never maps (see the module docstring)."""

    def __init__(self, mapped: frozenset[str], known: frozenset[str]) -> None:
        #: The label of every eslogger event that is never mapped (one shared object each); a line naming any
        #: other event is decoded (a newer event, or a document of another format whose ``event`` opens with a
        #: key of its own).
        self.unmapped = {name.encode(): Gated(SourceFormat.ESLOGGER.value, f"eslogger:{name}")
                         for name in known - mapped}
        self.unmodified_close = Gated(SourceFormat.ESLOGGER.value, "eslogger:close(unmodified)")

    def __call__(self, line: bytes) -> Gated | None:
        # Compact eslogger output only: ``"event": {`` with spaces is not found and the line is decoded.
        start = line.find(b'"event":{"') + 10
        if start < 10:
            return None
        end = line.find(b'"', start, start + 66)
        if end < 0:
            return None
        name = line[start:end]
        label = self.unmapped.get(name)
        if label is not None:
            return label
        if name == b"close":
            # The first ``modified`` after the event name is the close's own (an es_file_t has none), and only
            # an explicit ``false`` is unmodified for certain.
            flag = line.find(b'"modified":', end)
            if flag > 0 and line.startswith(b"false", flag + 11):
                return self.unmodified_close
        return None


class RelevanceGate:
    """The gate the reader consults for every JSON line after a file's first: one of the per-source gates above.

    Parameters
    ----------
    forced_format:
        The format every record is read as (``--format``), or ``None`` to detect it per record. A gate is only
        used for the format forced, and none at all for formats it does not know.
    patterns:
        The unified-log patterns in use (the packaged ones by default).
    """

    def __init__(self, forced_format: SourceFormat | None = None, patterns: PatternSet | None = None) -> None:
        ul = UnifiedLogGate(patterns or PATTERNS)
        self._eslogger: EsloggerGate | None = EsloggerGate(MAPPED, EVENT_NAMES)
        self._unified: UnifiedLogGate | None = ul if ul.usable else None
        if forced_format is not None:
            if forced_format is not SourceFormat.ESLOGGER:
                self._eslogger = None
            if forced_format is not SourceFormat.UNIFIED_LOG:
                self._unified = None

    @property
    def active(self) -> bool:
        return self._eslogger is not None or self._unified is not None

    def __call__(self, line: bytes) -> Gated | None:
        """The label of a line that cannot matter, or ``None`` when it must be decoded and mapped."""
        if line[:2] != b'{"' or not line.endswith(_OBJECT_ENDS):
            return None  # not one compact object on its own line: left to the decoder
        first_key = line[2:line.find(b'"', 2)]
        if first_key in ESLOGGER_FIRST_KEYS:
            if self._eslogger is None or (first_key == b"event" and not line.startswith(b'{"event":{"')):
                return None  # an ``event`` that is not an object opening the line is not an eslogger event
            return self._eslogger(line)
        if first_key in UNIFIED_LOG_FIRST_KEYS:
            return self._unified(line) if self._unified is not None else None
        return None
