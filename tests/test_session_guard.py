"""The session guard of tests/conftest.py: a process that outlives its test is killed, named in the report, and
fails the session, with one pytest process and under pytest-xdist (where each worker guards its own tests and the
controller reports for them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

LEAKING_TEST = """
import sys
from conftest import popen_in_own_group

MARK = {mark!r}


def test_that_leaves_a_process_behind():
    popen_in_own_group([sys.executable, "-c", "import sys, time; time.sleep(600)", MARK])


def test_that_is_clean():
    pass
"""


def _alive(mark: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist, 2 workers"])
def test_a_leftover_process_is_killed_named_and_fails_the_session(tmp_path: Path, workers: list[str]):
    mark = f"opendcu-guard-probe-{os.getpid()}-{len(workers)}"
    (tmp_path / "test_leak.py").write_text(LEAKING_TEST.format(mark=mark))
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", *workers, "test_leak.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # both tests passed: only the guard fails the session
    assert "2 passed" in out and "LEFTOVER PROCESSES" in out and mark in out, out
    deadline = time.monotonic() + 10
    while _alive(mark) and time.monotonic() < deadline:  # SIGKILLed; gone once its parent reaped it
        time.sleep(0.05)
    assert not _alive(mark)
