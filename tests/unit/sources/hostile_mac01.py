"""Rewrite the bundled mac-01 sample with a hostile app name (a test helper, also runnable as a script).

Every name, path and message in telemetry is attacker-controlled: the app in ``events/mac-01`` is called
``UpdateHelper.app`` only because its author chose so. :func:`write_hostile_copy` copies the sample into a folder
with the app renamed to ``name`` consistently across all three sources:

- JSON string values (eslogger, Elastic, unified-log records) get the new name and are re-encoded, so every file
  stays valid JSON whatever the name holds (quotes, brackets, ``"}]``, newlines, U+202E, NUL). A name holding
  lone surrogates (a file name's invalid UTF-8 bytes as Python's ``surrogateescape`` keeps them) is written as
  ``\\udcff`` escapes, the way a Python-based shipper would (``json.dumps``); orjson cannot write them;
- in a unified-log ``eventMessage`` the name appears raw, the way ``os_log`` formats a ``%{public}@`` path, except
  inside a ``file://`` URL, where it is percent-encoded as ``NSURL`` writes it. ``os_log`` text is always valid
  Unicode, so there a lone surrogate is already U+FFFD (:func:`scrubbed`);
- the bundle id (``com.example.UpdateHelper``, also in signing ids and runningboardd job labels) is kept unless
  ``rename_bundle_id`` is set: a file name is what anyone can change with ``mv``, a bundle id needs a re-signed app;
- ``extra_args`` hostile arguments of about 50 characters each are appended to the app's exec (the default, 220,
  makes a 10 kB argument list), and the same padding goes into the ``sh -c`` command *before* the payload.

Run ``.venv/bin/python tests/unit/sources/hostile_mac01.py OUT_DIR`` to write a copy by hand, then
``.venv/bin/chainwatch detect OUT_DIR --all``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "events" / "mac-01"
APP = "UpdateHelper"
BUNDLE_ID = "com.example.UpdateHelper"
#: The name the bug report used: quotes, brackets, a JSON-closing ``"}]``, a newline and an RTL override.
HOSTILE_NAME = 'Up"date [Helper] "}]\n\u202eppa.exe'
#: Characters NSURL leaves unescaped in a file URL's path (RFC 3986 pchar plus "/").
_URL_SAFE = "/!$&'()*+,;=:@~-._"
_TOKENS = re.compile(r'(?P<url>file://[^\s,"]+)|(?P<bundle>com\.example\.UpdateHelper)|UpdateHelper')
_SURROGATE = re.compile("[\ud800-\udfff]")
_MESSAGE_KEYS = frozenset({"eventMessage", "composedMessage"})


def scrubbed(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (what the reader makes of one, and what os_log logs)."""
    return _SURROGATE.sub("\ufffd", text)


def hostile_arg(index: int) -> str:
    """One ~50-character argument full of the characters that break naive parsers."""
    return f'--opt{index}="}}]\\n\n\u202e[x] \'q\' {index:04d} %s %n $(id) `id`;|&<>'


def renamer(name: str, rename_bundle_id: bool = False) -> Callable[[str], str]:
    """The rename applied to every string: ``UpdateHelper`` becomes ``name`` (``file://`` URLs percent-encoded).

    One pass over the text, so a new name that itself contains ``UpdateHelper`` is not renamed again.
    """
    encoded = quote(scrubbed(name), safe=_URL_SAFE)

    def one(match: re.Match[str]) -> str:
        if match.group("url") is not None:
            return match.group("url").replace(APP, encoded)
        if match.group("bundle") is not None:
            return match.group("bundle") if not rename_bundle_id else BUNDLE_ID.replace(APP, name)
        return name

    def rename(text: str) -> str:
        return _TOKENS.sub(one, text) if APP in text else text

    return rename


def _walk(value: Any, rename: Callable[[str], str], key: str = "") -> Any:
    if isinstance(value, str):
        renamed = rename(value)
        return scrubbed(renamed) if key in _MESSAGE_KEYS else renamed
    if isinstance(value, list):
        return [_walk(item, rename) for item in value]
    if isinstance(value, dict):
        return {k: _walk(item, rename, k) for k, item in value.items()}
    return value


def pad_args(executable: str, args: list[str], padding: list[str]) -> list[str]:
    """An exec's arguments with the hostile padding: appended for the app, before the payload of ``sh -c``."""
    if not padding:
        return args
    if "/AppTranslocation/" in executable and "/Contents/MacOS/" in executable:  # the app (its name is renamed)
        return [*args, *padding]
    if args[:2] == ["/bin/sh", "-c"] and len(args) == 3:
        # A shell no-op of junk before the real commands: still one argument, still runs the payload.
        junk = " ".join(p.replace("\n", " ") for p in padding).replace("'", "")
        return [args[0], args[1], f": '{junk}'\n{args[2]}"]
    return args


def _pad_exec(doc: dict[str, Any], padding: list[str]) -> None:
    exec_ = doc.get("event", {}).get("exec")
    if not isinstance(exec_, dict):
        return
    args = exec_.get("args")
    target = exec_.get("target", {}).get("executable", {}).get("path", "")
    if isinstance(args, list) and isinstance(target, str):
        exec_["args"] = pad_args(target, args, padding)


def _dumps(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:  # lone surrogates: orjson refuses them, json writes \\udXXX escapes
        return json.dumps(doc, separators=(",", ":")).encode()


def rewrite_lines(data: bytes, rename: Callable[[str], str], padding: list[str]) -> bytes:
    """Rewrite JSON lines (every line is one JSON value)."""
    out: list[bytes] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        doc = _walk(orjson.loads(line), rename)
        if isinstance(doc, dict):
            _pad_exec(doc, padding)
        out.append(_dumps(doc))
    return b"\n".join(out) + b"\n"


def hostile_files(
    name: str = HOSTILE_NAME, *, rename_bundle_id: bool = False, extra_args: int = 220, sample: Path = SAMPLE,
) -> dict[str, bytes]:
    """The renamed sample in memory: file name to content."""
    rename = renamer(name, rename_bundle_id)
    padding = [hostile_arg(i) for i in range(extra_args)]
    return {path.name: rewrite_lines(path.read_bytes(), rename, padding)
            for path in sorted(sample.iterdir()) if path.is_file()}


def write_hostile_copy(
    dest: Path, name: str = HOSTILE_NAME, *, rename_bundle_id: bool = False, extra_args: int = 220,
    sample: Path = SAMPLE,
) -> Path:
    """Write the renamed copy of ``sample`` to ``dest/mac-01`` and return that folder."""
    folder = dest / "mac-01"
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, data in hostile_files(name, rename_bundle_id=rename_bundle_id, extra_args=extra_args,
                                         sample=sample).items():
        (folder / file_name).write_bytes(data)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (mac-01/ is created inside)")
    parser.add_argument("--name", default=HOSTILE_NAME, help="the new app name (default: the bug report's)")
    parser.add_argument("--rename-bundle-id", action="store_true", help="rename the bundle id as well")
    parser.add_argument("--extra-args", type=int, default=220, help="hostile arguments added to the app's exec")
    ns = parser.parse_args(argv)
    folder = write_hostile_copy(ns.out, ns.name, rename_bundle_id=ns.rename_bundle_id, extra_args=ns.extra_args)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
