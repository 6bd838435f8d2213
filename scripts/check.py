"""The whole test suite: lint (ruff), types (mypy, strict on the library), then pytest.

Run from the repository root with the project's virtual environment:
``.venv/bin/python scripts/check.py [pytest args...]``. Exits non-zero on the first failing step.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(step: str, *command: str) -> None:
    print(f"== {step}: {' '.join(command)}", flush=True)
    result = subprocess.run(command, cwd=ROOT, check=False)  # noqa: S603 - fixed argv, our own tools
    if result.returncode != 0:
        print(f"== {step} failed (exit {result.returncode})", flush=True)
        sys.exit(result.returncode)


def main() -> None:
    python = sys.executable
    run("ruff", python, "-m", "ruff", "check", ".")
    run("mypy", python, "-m", "mypy")
    # Set-up, not a test: the SAM CLI for the template tests goes into its own venv (its pins clash with ours),
    # from the package registry, once per machine. Tests themselves only talk to loopback; without it they skip.
    print("== tools: scripts/sam_cli.py (aws-sam-cli in its own environment)", flush=True)
    tools = subprocess.run([python, str(ROOT / "scripts" / "sam_cli.py")], cwd=ROOT, check=False)  # noqa: S603
    if tools.returncode != 0:
        print("== tools: the SAM CLI could not be installed; its tests will skip", flush=True)
    run("pytest", python, "-m", "pytest", *sys.argv[1:])


if __name__ == "__main__":
    main()
