#!/usr/bin/env python3
"""Set up opendcu in a local virtual environment and run it or its tests.

Needs only Python >= 3.11 on the machine:

    python3 dev.py run  [dcu serve options]   # set up .venv, start the DCU with a simulated detector
    python3 dev.py test [pytest options]      # set up .venv, run the whole test suite

Both commands are idempotent: the venv is reused and only refreshed when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"


def _stamp_for(extras: str) -> tuple[Path, str]:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return VENV / f".installed-{extras or 'base'}", digest


def ensure_venv(extras: str = "") -> None:
    """Create .venv and install opendcu (editable) with the given extras, unless already done."""
    if sys.version_info < (3, 11):
        sys.exit(f"opendcu needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
        subprocess.check_call([BIN / "python", "-m", "pip", "install", "-q", "--upgrade", "pip"])
    stamp, digest = _stamp_for(extras)
    if stamp.exists() and stamp.read_text() == digest:
        return
    target = f".[{extras}]" if extras else "."
    print(f"dev.py: installing opendcu{f'[{extras}]' if extras else ''} into {VENV}", flush=True)
    subprocess.check_call([BIN / "python", "-m", "pip", "install", "-q", "-e", target], cwd=ROOT)
    stamp.write_text(digest)


def run(args: list[str]) -> int:
    ensure_venv()
    return subprocess.call([BIN / "dcu", "serve", *args], cwd=ROOT)


def test(args: list[str]) -> int:
    ensure_venv("test")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.call([BIN / "python", "-m", "pytest", *args], cwd=ROOT, env=env)


def main() -> int:
    commands = {"run": run, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
