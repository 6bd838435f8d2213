"""The AWS SAM CLI in a virtual environment of its own, created on first use; prints the ``sam`` executable.

aws-sam-cli pins boto3 and click at versions that conflict with this project's, so it can never be installed
into ``.venv``. This script installs ``requirements-sam.lock`` (every version pinned) into
``$CHAINWATCH_SAM_VENV`` or, by default, ``${XDG_CACHE_HOME:-~/.cache}/chainwatch/sam-cli-<digest>``, where the
digest covers the lock file and the Python version: a changed pin gets a fresh environment, an unchanged one is
reused by every checkout and CI run on the machine (the first install takes about a minute, later calls are
instant). Concurrent callers (pytest-xdist workers, two checkouts) wait on a file lock; an interrupted install is
detected (no completion marker) and redone.

Usage: ``python scripts/sam_cli.py`` prints the path; ``"$(python scripts/sam_cli.py)" validate --lint``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-sam.lock"
_MARKER = ".chainwatch-complete"


def venv_dir() -> Path:
    """Where the SAM CLI environment for this lock file and Python lives."""
    override = os.environ.get("CHAINWATCH_SAM_VENV")
    if override:
        return Path(override)
    digest = hashlib.sha256(LOCK.read_bytes() + sys.version.encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "chainwatch" / f"sam-cli-{digest}"


def installed() -> Path | None:
    """The ``sam`` executable when its environment is complete, else ``None`` (never installs anything)."""
    venv = venv_dir()
    sam = venv / "bin" / "sam"
    return sam if (venv / _MARKER).is_file() and sam.is_file() else None


def ensure() -> Path:
    """The ``sam`` executable, installing the environment first when it is missing or incomplete.

    Raises
    ------
    subprocess.CalledProcessError
        venv or pip failed (the output is in the exception).
    """
    venv = venv_dir()
    sam = venv / "bin" / "sam"
    if (venv / _MARKER).is_file() and sam.is_file():
        return sam
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / _MARKER).is_file() and sam.is_file():
            return sam  # another process finished it while we waited
        if venv.exists():
            shutil.rmtree(venv)  # an interrupted install
        # A venv records its own path in its scripts, so it is built in place, and marked complete last.
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)  # noqa: S603
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",  # noqa: S603
                        "-r", str(LOCK)], check=True, capture_output=True, text=True)
        (venv / _MARKER).write_text(LOCK.read_text())
    return sam


def main() -> int:
    try:
        print(ensure())
    except subprocess.CalledProcessError as exc:
        print(f"sam_cli: {' '.join(map(str, exc.cmd))} failed (exit {exc.returncode}):\n{exc.stdout}{exc.stderr}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
