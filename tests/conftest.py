"""Shared test fixtures: free ports, the shared golden data, and a real `dcu serve` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_shared() -> Path | None:
    """The `shared/` folder with spec, golden data and client scripts (not part of this repository)."""
    candidates = [os.environ.get("OPENDCU_SHARED")]
    candidates += [str(p / "shared") for p in [REPO, *REPO.parents]]
    candidates.append("/work/shared")
    for c in candidates:
        if c and (Path(c) / "golden" / "expected.json").is_file():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = find_shared()
    if path is None:
        pytest.fail("shared/ (golden data) not found: set OPENDCU_SHARED to its path")
    return path


@pytest.fixture(scope="session")
def clients_python() -> Path:
    """The python of .venv-clients (fastcs-eiger, DEigerClient, libertem-dectris, nxmx, fabio, silx, ...).

    `python3 dev.py test` creates it and sets $OPENDCU_CLIENTS_PYTHON; in CI its absence is a failure.
    """
    path = os.environ.get("OPENDCU_CLIENTS_PYTHON")
    if path and Path(path).exists():
        return Path(path)
    if os.environ.get("CI"):
        pytest.fail("OPENDCU_CLIENTS_PYTHON is not set: run the tests with `python3 dev.py test`")
    pytest.skip("external clients venv not set up (run the tests with `python3 dev.py test`)")


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return shared_dir / "golden"


def child_pids(pid: int) -> list[int]:
    """All descendants of `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@dataclass
class DcuServer:
    """A running `dcu serve` started by a test."""

    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen
    stream_v1_port: int
    stream_v2_port: int
    detector: str
    output: list[str] = field(default_factory=list)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 120), **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_dcu(tmp_path: Path, detector: str = "eiger2-500k", extra: list[str] | None = None, timeout: float = 90) -> DcuServer:
    port, v1, v2 = free_port(), free_port(), free_port()
    data_dir = tmp_path / "data"
    cmd = [
        sys.executable, "-m", "opendcu", "serve", "--detector", detector, "--port", str(port), "--data-dir", str(data_dir),
        "--stream-v1-port", str(v1), "--stream-v2-port", str(v2), *(extra or []),
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    server = DcuServer(f"http://127.0.0.1:{port}", port, data_dir, process, v1, v2, detector)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line)
            if line.startswith("opendcu ready"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("dcu serve did not start:\n" + "".join(server.output[-50:]))
    return server


@pytest.fixture
def dcu(tmp_path: Path) -> Iterator[DcuServer]:
    """A fresh DCU with a simulated EIGER2 500K, stopped after the test."""
    server = start_dcu(tmp_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()
