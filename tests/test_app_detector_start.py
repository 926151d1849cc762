"""app-detector's start: it builds its data path before the simulated modules' addresses are known and reads
them on stdin (the app manager starts the three apps at once); a DCU gone before it wrote them leaves no
process behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, group_pids, kill_group, popen_in_own_group

pytestmark = pytest.mark.integration


def app_detector(tmp_path: Path, **config) -> subprocess.Popen:
    config = {
        "detector": "eiger2-500k",
        "data_dir": str(tmp_path / "data"),
        "calibration_address": f"unix:{tmp_path / 'no-calibration.sock'}",
        "grpc_address": f"unix:{tmp_path / 'app-detector.sock'}",
        "stream_v1_port": free_port(),
        "stream_v2_port": free_port(),
        "raw_buffer_mib": 64,
        **config,
    }
    cmd = [sys.executable, "-m", "opendcu.app_detector", "--config", json.dumps(config)]
    return popen_in_own_group(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_module_addresses_on_stdin_then_ready(tmp_path: Path) -> None:
    process = app_detector(tmp_path)
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"modules": [{"module_id": 0, "host": "127.0.0.1", "config_port": 9}]}) + "\n")
        process.stdin.close()
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("OPENDCU-READY "):
                break
        assert json.loads(lines[-1].split(" ", 1)[1]) == {"grpc": f"unix:{tmp_path / 'app-detector.sock'}"}, lines
    finally:
        kill_group(process.pid)


def test_end_of_stdin_before_the_addresses_ends_it_with_its_workers(tmp_path: Path) -> None:
    """The base system stopped (or died) while app-detector waited for the addresses: it says why and exits,
    and its pipeline and analysis workers go with it."""
    process = app_detector(tmp_path)
    try:
        assert process.stdin is not None
        time.sleep(1)  # let it start its workers first (no harm if it has not yet)
        process.stdin.close()
        assert process.wait(60) != 0
        deadline = time.monotonic() + 10
        while group_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_pids(process.pid) == []
        assert process.stdout is not None
        output = process.stdout.read()  # EOF: its workers, which hold the pipe too, are gone
        assert "no module addresses on stdin" in output, output[-3000:]
    finally:
        kill_group(process.pid)
