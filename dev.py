#!/usr/bin/env python3
"""Set up opendcu in a local virtual environment and run it or its tests.

Needs only Python >= 3.11 on the machine:

    python3 dev.py run  [dcu serve options]   # set up .venv, start the DCU with a simulated detector
                                              # (an MX rotation series unless --scene is given)
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

# Third-party clients and readers the tests drive against opendcu (spec/clients.md). They live in their own
# venv so that their pins never clash with opendcu's; tests find it through $OPENDCU_CLIENTS_PYTHON.
CLIENTS_VENV = ROOT / ".venv-clients"
CLIENT_PACKAGES = [
    "numpy", "h5py", "hdf5plugin", "bitshuffle", "dectris-compression", "cbor2", "pyzmq", "nxmx", "fabio", "silx",
    "tifffile", "pillow", "libertem-dectris", "opentelemetry-api", "fastcs-eiger", "eiger-simulator", "httpx",
    "nxvalidate",
]
CLIENT_PACKAGES_NO_DEPS = ["libertem-live==0.3.0"]  # only for DECTRIS' DEigerClient.py inside its wheel


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


def ensure_clients_venv() -> Path:
    """Create .venv-clients with the external clients, unless it is up to date; return its python."""
    python = CLIENTS_VENV / "bin" / "python"
    digest = hashlib.sha256(repr((CLIENT_PACKAGES, CLIENT_PACKAGES_NO_DEPS)).encode()).hexdigest()[:16]
    stamp = CLIENTS_VENV / ".installed"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"dev.py: installing external clients into {CLIENTS_VENV} (a few minutes the first time)", flush=True)
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(CLIENTS_VENV)
        subprocess.check_call([python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    subprocess.check_call([python, "-m", "pip", "install", "-q", *CLIENT_PACKAGES])
    subprocess.check_call([python, "-m", "pip", "install", "-q", "--no-deps", *CLIENT_PACKAGES_NO_DEPS])
    stamp.write_text(digest)
    return python


#: what the main job shows unless told otherwise: a crystal rotating in the beam (`dcu serve` alone: a flood)
DEMO_SCENE = '{"kind": "mx"}'


def run(args: list[str]) -> int:
    ensure_venv()
    scene = [] if any(a == "--scene" or a.startswith("--scene=") for a in args) else ["--scene", DEMO_SCENE]
    return subprocess.call([BIN / "dcu", "serve", *scene, *args], cwd=ROOT)


def test(args: list[str]) -> int:
    ensure_venv("test")
    clients = ensure_clients_venv()
    env = dict(os.environ, PYTHONUNBUFFERED="1", OPENDCU_CLIENTS_PYTHON=str(clients))
    return subprocess.call([BIN / "python", "-m", "pytest", *args], cwd=ROOT, env=env)


def main() -> int:
    commands = {"run": run, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
