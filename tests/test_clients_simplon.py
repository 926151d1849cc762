"""The real SIMPLON clients beamlines run, installed from PyPI into .venv-clients, against a running DCU
(spec/clients.md §2): fastcs-eiger, DECTRIS' DEigerClient and the eiger-simulator client.

The stream and monitor modules and the FileWriter's file listing come from the interfaces (issue #6); the
tests that need them are separate, so that each failure names what is missing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, DcuServer, find_shared, start_dcu

pytestmark = pytest.mark.integration
SCRIPTS = REPO / "tests" / "client_scripts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    dcu = start_dcu(tmp_path_factory.mktemp("dcu"))
    try:
        yield dcu
    finally:
        dcu.stop()


def run_client(clients_python: Path, script: Path, *args: object, timeout: float = 240) -> dict:
    done = subprocess.run(
        [str(clients_python), str(script), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def failed(report: dict, steps: list[str]) -> dict:
    return {s: report[s] for s in steps if not report[s]["ok"]}


# -- fastcs-eiger ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fastcs_report(server: DcuServer, clients_python: Path) -> dict:
    return run_client(
        clients_python,
        SCRIPTS / "fastcs_introspect.py",
        "127.0.0.1",
        server.port,
        "detector",
        "stream",
        "monitor",
        "controller",
    )


def test_fastcs_eiger_introspects_the_detector(fastcs_report):
    det = fastcs_report["detector"]
    assert det["ok"], det
    assert det["attributes"] >= 70  # every listed key + wavelength and status/error
    assert "Failed to find updater" not in det["stdout"]  # every key of every change list can be re-read
    values = det["values"]
    assert values["count_time"] == pytest.approx(0.01) and values["nimages"] == 3
    assert values["photon_energy"] == 12000.0 and values["wavelength"] == pytest.approx(12398.42 / 12000)
    assert values["threshold_energy"] == 6500.0 and values["trigger_mode"] == "exts"
    assert values["state"] == "idle" and values["error"] == ""


@pytest.mark.parametrize("subsystem", ["stream", "monitor", "controller"])
def test_fastcs_eiger_introspects_stream_monitor_and_whole_ioc(fastcs_report, subsystem):
    """Needs the stream and monitor modules (issue #6)."""
    report = fastcs_report[subsystem]
    assert report["ok"], report.get("error")


def test_fastcs_eiger_smoke_script(server: DcuServer, clients_python: Path):
    """The shared acceptance script as it stands (needs stream and monitor, issue #6)."""
    shared = find_shared()
    done = subprocess.run(
        [str(clients_python), str(shared / "clients" / "fastcs_eiger_smoke.py"), "127.0.0.1", str(server.port)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-2000:]
    assert "state -> idle" in done.stdout


# -- DEigerClient ------------------------------------------------------------------------------------------------------
DETECTOR_STEPS = [
    "version",
    "filewriter version",
    "initialize",
    "state",
    "config keys",
    "commands",
    "full config",
    "set multiple",
    "read back",
    "pixel_mask tiff",
    "fw clear",
    "fw mode",
    "fw name_pattern",
    "arm",
    "state armed",
    "trigger",
    "disarm",
    "state after",
    "fw status files",
    "fw download",
    "fw file bytes",
    "fw delete",
    "system restart",
    "state after restart",
]
INTERFACE_STEPS = ["stream mode", "monitor mode", "fw files", "stream state", "monitor images", "monitor image"]


@pytest.fixture(scope="module")
def deiger_report(server: DcuServer, clients_python: Path, tmp_path_factory) -> dict:
    return run_client(
        clients_python, SCRIPTS / "deiger_workflow.py", "127.0.0.1", server.port, tmp_path_factory.mktemp("downloads")
    )


def test_deigerclient_workflow(deiger_report):
    r = deiger_report
    assert failed(r, DETECTOR_STEPS) == {}
    assert r["version"]["result"]["value"] == "1.8.0"
    assert r["arm"]["result"] == {"sequence id": 1} and r["state armed"]["result"] == "ready"
    assert r["trigger"]["result"] == {} and r["disarm"]["result"] == {"sequence id": 1}
    assert r["state after"]["result"] == "idle" and r["state after restart"]["result"] == "na"
    assert r["read back"]["result"] == [3, "ints"]
    assert {"count_time", "frame_time", "nimages", "trigger_mode"} <= set(r["set multiple"]["result"])
    assert r["pixel_mask tiff"]["result"] == [[512, 1028], 4, 0]
    assert r["fw status files"]["result"] == ["deiger_1_data_000001.h5", "deiger_1_master.h5"]
    assert r["fw download"]["result"] == ["deiger_1_data_000001.h5", "deiger_1_master.h5"]
    assert r["fw file bytes"]["result"] > 1000 and r["fw delete"]["ok"]


@pytest.mark.parametrize("step", INTERFACE_STEPS)
def test_deigerclient_stream_monitor_and_file_listing(deiger_report, step):
    """Needs the stream and monitor modules, `/filewriter/api/<v>/files/` and the monitor images (issue #6)."""
    assert deiger_report[step]["ok"], deiger_report[step]


# -- eiger-simulator client --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eigersim_report(server: DcuServer, clients_python: Path) -> dict:
    return run_client(clients_python, SCRIPTS / "eigersim_client.py", "127.0.0.1", server.port)


def test_eigersim_client_sets_values_and_runs_commands(eigersim_report):
    r = eigersim_report
    steps = [
        "version",
        "state before",
        "initialize",
        "state",
        "set values",
        "read only",
        "status",
        "arm",
        "trigger",
        "disarm",
        "cancel",
        "abort",
        "filewriter",
    ]
    assert failed(r, steps) == {}
    assert r["version"]["result"] == "1.8.0" and r["state"]["result"] == "idle"
    assert r["set values"]["result"][:5] == [2, 0.02, 0.03, "ints", 9000.0]
    assert r["set values"]["result"][5] == pytest.approx(12398.42 / 9000)
    # sequence ids go on across initialize (#16): the clients before this one on the same DCU armed too
    assert list(r["arm"]["result"]) == ["sequence id"] and r["arm"]["result"]["sequence id"] >= 1
    assert r["trigger"]["result"] == [200, "idle"]
    assert r["filewriter"]["result"] == ["disabled", "series_$id", 1000]


@pytest.mark.parametrize("step", ["stream", "monitor"])
def test_eigersim_client_stream_and_monitor(eigersim_report, step):
    """Needs the stream and monitor modules (issue #6)."""
    assert eigersim_report[step]["ok"], eigersim_report[step]
