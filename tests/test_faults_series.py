"""Fault scenarios of whole series on a real `dcu serve` (issue #16, #15 item 4).

One DCU per test, several scenarios in order on it: each refusal of arm leaves every stage as it was and the
next series holds all its images; sequence ids never repeat across initialize and app-detector restarts, and
no file of an earlier series changes (checksums); injected packet loss is reported with exact counts in the
status keys' `state`, the series summary, the NXmx master, the log and the exit code of `dcu trigger` /
`dcu wait` / `dcu watch`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import httpx
import pytest
from conftest import DcuServer
from simplon_helpers import V, command, put, value, wait_state

pytestmark = pytest.mark.integration

NIMAGES = 6
#: eiger2-500k: one module of 512 x 1024 16-bit pixels in 8192-byte payloads
PACKETS_PER_IMAGE = 128
DETAIL = "/entry/instrument/detector/detectorSpecific"


def checksums(data_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*.h5"))
        if p.is_file()
    }


def images_in_series(data_dir: Path, prefix: str) -> int:
    total = 0
    for path in sorted(data_dir.glob(f"{prefix}_data_*.h5")):
        with h5py.File(path, "r") as f:
            total += f["/entry/data/data"].shape[0]
    return total


def series_summary(http: httpx.Client) -> dict:
    r = http.get(f"{V}/status/series")
    assert r.status_code == 200, r.text
    return r.json()


def run_series(http: httpx.Client, expect_id: int) -> dict:
    r = command(http, "arm")
    assert r.status_code == 200, r.text
    assert r.json() == {"sequence id": expect_id}
    r = command(http, "trigger")
    assert r.status_code == 200, r.text
    assert wait_state(http, "idle") == "idle"
    return series_summary(http)["value"]


def dcu_cli(server: DcuServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "opendcu", *args, "--url", server.url], capture_output=True, text=True, timeout=120
    )


def trigger_on_a_terminal(server: DcuServer) -> tuple[str, str, int]:
    """`dcu trigger` with its output on a pseudo-terminal (the rich progress bar draws there): (everything it
    drew, the summary line, exit code)."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "opendcu", "trigger", "--url", server.url], stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    code = process.wait(60)
    text = b"".join(chunks).decode(errors="replace")
    line = next(line for line in text.splitlines() if '{"series_id"' in line)
    summary = line[line.index('{"series_id"') :]
    return text, summary, code


def assert_success(summary: dict, series_id: int, nimages: int = NIMAGES) -> None:
    assert summary["series_id"] == series_id
    assert summary["outcome"] == "success", summary
    assert (
        summary["images_expected"],
        summary["images_complete"],
        summary["images_incomplete"],
        summary["images_lost"],
    ) == (nimages, nimages, 0, 0)
    assert (summary["packets_expected"], summary["packets_received"], summary["packets_lost"]) == (
        nimages * PACKETS_PER_IMAGE,
        nimages * PACKETS_PER_IMAGE,
        0,
    )
    assert summary["interfaces"]["filewriter"] == {"written": nimages, "missing": 0}


def setup_series(http: httpx.Client) -> None:
    assert command(http, "initialize").status_code == 200
    # 20 Hz: far below what even a loaded 2-core machine receives without loss (the scenarios are about faults)
    for key, v in [("nimages", NIMAGES), ("ntrigger", 1), ("frame_time", 0.05), ("count_time", 0.01)]:
        assert put(http, key, v).status_code == 200
    assert put(http, "mode", "enabled", module="filewriter").status_code == 200
    assert put(http, "nimages_per_file", 2, module="filewriter").status_code == 200


def test_refused_arms_leave_everything_as_it_was_and_ids_never_repeat(server: DcuServer):
    data = server.data_dir
    with server.client() as http:
        setup_series(http)
        assert_success(run_series(http, 1), 1)
        assert images_in_series(data, "series_1") == NIMAGES

        # -- every refusal of arm: 400 with a text, state idle, nothing written; twice each --------------------------
        (data / "real").mkdir()
        (data / "linked").symlink_to(data / "real")
        (data / "taken_master.h5").write_bytes(b"not ours")
        before = checksums(data)
        refusals = [
            ("filewriter", "name_pattern", "linked/s_$id", "symbolic link"),
            ("filewriter", "name_pattern", "taken", "exist already"),  # no $id: refused at the first collision
            ("filewriter", "name_pattern", "series_$id", None),  # back to the default, then too many files:
            ("detector", "nimages", 1_000_000, None),
            ("detector", "ntrigger", 1000, None),
            ("filewriter", "nimages_per_file", 1, "data files"),
        ]
        for module, key, v, refusal in refusals:
            assert put(http, key, v, module=module).status_code == 200
            if refusal is None:
                continue
            for _ in range(2):
                r = command(http, "arm")
                assert r.status_code == 400, (key, r.status_code, r.text)
                assert refusal in r.text, r.text
                assert value(http, "state", task="status") == "idle"
        assert put(http, "nimages_per_file", 1000, module="filewriter").status_code == 200
        r = command(http, "arm")  # 10^9 images in 10^6 files of 1000
        assert r.status_code == 400 and "1000000 data files" in r.text, r.text
        assert put(http, "ntrigger", 2000).status_code == 200
        r = command(http, "arm")
        assert r.status_code == 400 and "2000000000 images" in r.text and "1000000000" in r.text, r.text
        # a 300-character name is refused when it is written, not at arm
        r = put(http, "name_pattern", "x" * 300, module="filewriter")
        assert r.status_code == 400 and "300 characters" in r.text, r.text
        assert put(http, "name_pattern", "x\n", module="filewriter").status_code == 400
        assert checksums(data) == before

        # -- the next series holds all its images, under the next id -------------------------------------------------
        for key, v in [("nimages", NIMAGES), ("ntrigger", 1)]:
            assert put(http, key, v).status_code == 200
        assert put(http, "nimages_per_file", 2, module="filewriter").status_code == 200
        assert_success(run_series(http, 2), 2)
        assert images_in_series(data, "series_2") == NIMAGES

        # -- initialize and an app-detector restart keep counting ------------------------------------------------------
        setup_series(http)
        assert_success(run_series(http, 3), 3)
        assert json.loads((data / ".opendcu-sequence.json").read_text()) == {"last_sequence_id": 3}
        r = http.put("/system/api/1.8.0/command/restart")
        assert r.status_code == 200, r.text
        setup_series(http)
        kept = checksums(data)
        assert_success(run_series(http, 4), 4)
        assert {k: v for k, v in checksums(data).items() if k in kept} == kept
        for sid in (1, 2, 3, 4):
            assert images_in_series(data, f"series_{sid}") == NIMAGES
        # the state file is not a data file: no files list shows it
        files = value(http, "files", module="filewriter", task="status")
        assert ".opendcu-sequence.json" not in files and "taken_master.h5" in files


def test_injected_loss_is_reported_everywhere_with_exact_counts(server: DcuServer):
    data = server.data_dir
    drops = [[2, 0], [2, 1], [5, 3]]  # image 2 loses packets 0 and 1, image 5 packet 3
    with server.client() as http:
        setup_series(http)
        assert put(http, "drop_packets", json.dumps(drops), module="simulator").status_code == 200
        assert put(http, "mode", "enabled", module="stream").status_code == 200  # no consumer: every image dropped
        assert command(http, "arm").json() == {"sequence id": 1}
        trigger = dcu_cli(server, "trigger")  # not a terminal: the summary only, as JSON
        assert trigger.returncode == 3, (trigger.stdout, trigger.stderr)
        summary = json.loads(trigger.stdout)
        assert wait_state(http, "idle") == "idle"
        final = series_summary(http)
        assert final["state"] == "warning"
        s = final["value"]
        assert s == summary  # the trigger of the last images returns after the automatic disarm
        assert (s["series_id"], s["state"], s["outcome"]) == (1, "done", "incomplete")
        assert (s["images_expected"], s["images_complete"], s["images_incomplete"], s["images_lost"]) == (
            NIMAGES,
            NIMAGES - 2,
            2,
            0,
        )
        assert (s["packets_expected"], s["packets_received"], s["packets_lost"]) == (
            NIMAGES * PACKETS_PER_IMAGE,
            NIMAGES * PACKETS_PER_IMAGE - 3,
            3,
        )
        assert s["efficiency"] == round((NIMAGES * PACKETS_PER_IMAGE - 3) / (NIMAGES * PACKETS_PER_IMAGE), 6)
        assert s["interfaces"] == {
            "filewriter": {"written": NIMAGES, "missing": 0},
            "stream": {"sent": 0, "dropped": NIMAGES},
        }

        # status keys say it in their GET object's state; the detector state stays SIMPLON's
        def status(key: str, module: str = "detector") -> dict:
            return http.get(f"/{module}/api/1.8.0/status/{key}").json()

        assert {
            k: (status(k)["value"], status(k)["state"])
            for k in ("daq/packets_lost", "daq/frames_incomplete", "daq/frames_lost")
        } == {
            "daq/packets_lost": (3, "warning"),
            "daq/frames_incomplete": (2, "warning"),
            "daq/frames_lost": (0, "normal"),
        }
        assert status("daq/efficiency")["state"] == "warning"
        assert (status("dropped", "stream")["value"], status("dropped", "stream")["state"]) == (NIMAGES, "warning")
        assert (status("state")["value"], status("state")["state"]) == ("idle", "normal")

        # the NXmx master records it per image and for the series
        with h5py.File(data / "series_1_master.h5", "r") as f:
            received = f[f"{DETAIL}/image_packets_received"][()]
            expected = f[f"{DETAIL}/image_packets_expected"][()]
            outcome = {k: f[f"{DETAIL}/series_outcome/{k}"][()] for k in f[f"{DETAIL}/series_outcome"]}
        assert expected.tolist() == [PACKETS_PER_IMAGE] * NIMAGES
        assert received.tolist() == [128, 126, 128, 128, 127, 128]
        assert outcome["outcome"] == b"incomplete"
        assert (
            outcome["images_expected"],
            outcome["images_complete"],
            outcome["images_incomplete"],
            outcome["images_lost"],
            outcome["packets_lost"],
            outcome["images_written"],
        ) == (6, 4, 2, 0, 3, 6)
        assert b"Stream dropped 6 images" in outcome["problems"]

        # dcu wait / watch report the last series and exit non-zero; the log says it once, as a WARNING
        wait = dcu_cli(server, "wait")
        assert wait.returncode == 3 and json.loads(wait.stdout)["images_incomplete"] == 2, wait.stderr
        watch = dcu_cli(server, "watch", "--last")
        assert watch.returncode == 3 and "2 images incomplete (3 packets lost)" in watch.stderr
        warnings = [line for line in server.output if "WARNING" in line and "series 1 done: incomplete" in line]
        assert len(warnings) == 1, server.output[-20:]

        # without injected loss and without the stream the next series is a success, exit 0
        assert put(http, "drop_packets", "", module="simulator").status_code == 200
        assert put(http, "mode", "disabled", module="stream").status_code == 200
        # someone else's terminal follows the series live (`dcu watch`), ours triggers it on a terminal
        watch = subprocess.Popen(
            [sys.executable, "-m", "opendcu", "watch", "--url", server.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert command(http, "arm").json() == {"sequence id": 2}
        progress, summary_text, code = trigger_on_a_terminal(server)
        assert code == 0, progress[-3000:]
        assert_success(json.loads(summary_text), 2)
        assert "series 2" in progress and f"{NIMAGES}/{NIMAGES}" in progress, progress
        assert "incomplete 0  lost 0  packets lost 0" in progress, progress
        out, err = watch.communicate(timeout=60)
        assert watch.returncode == 0, err
        assert_success(json.loads(out), 2)
        assert dcu_cli(server, "wait").returncode == 0
        assert (status("daq/packets_lost")["value"], status("daq/packets_lost")["state"]) == (0, "normal")
        assert series_summary(http)["state"] == "normal"


def app_detector_pid(server: DcuServer) -> int:
    from conftest import child_pids

    for pid in child_pids(server.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"opendcu.app_detector" in cmdline:
            return pid
    raise AssertionError("app-detector is not running")


def test_sigkill_of_app_detector_mid_series_leaves_no_leftovers(server: DcuServer):
    """app-detector killed while a data file is open: at its restart the `.part` is removed, the master links no
    file that never appeared and records the failure; initialize stops the modules still sending, the sequence
    id goes on, and the next series holds all its images."""
    import signal
    import threading

    data = server.data_dir
    with server.client() as http:
        setup_series(http)
        for key, v in [("nimages", 20), ("frame_time", 0.2), ("count_time", 0.1)]:
            assert put(http, key, v).status_code == 200
        assert put(http, "nimages_per_file", 100, module="filewriter").status_code == 200
        assert command(http, "arm").json() == {"sequence id": 1}
        threading.Thread(target=lambda: httpx.put(f"{server.url}{V}/command/trigger", timeout=60), daemon=True).start()
        deadline = time.monotonic() + 30
        while not list(data.glob(".series_1_data_000001.h5.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(data.glob(".series_1_data_000001.h5.part")), sorted(p.name for p in data.iterdir())
        old = app_detector_pid(server)
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 120  # the app manager restarts it (state na)
        while time.monotonic() < deadline:
            try:
                if app_detector_pid(server) != old and http.get(f"{V}/status/state").json()["value"] == "na":
                    break
            except (AssertionError, httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        assert http.get(f"{V}/status/state").json()["value"] == "na"
        assert [p.name for p in data.rglob("*.part")] == []
        assert any("crash recovery: removed .series_1_data_000001.h5.part" in line for line in server.output)
        with h5py.File(data / "series_1_master.h5", "r") as f:
            assert list(f["/entry/data"].keys()) == []  # the link to the file that never appeared is gone
            assert f[f"{DETAIL}/series_outcome/outcome"][()] == b"failure"
            assert b"0 of 1 data files" in f[f"{DETAIL}/series_outcome/problems"][()]
        setup_series(http)  # initialize stops the module that was still sending series 1
        # what series 1 lost is still reported after the restart (kept beside the data): status, dcu wait
        s = series_summary(http)
        v = s["value"]
        assert (s["state"], v["series_id"], v["state"], v["outcome"]) == ("error", 1, "interrupted", "failure"), v
        assert (v["images_expected"], v["images_settled"], v["images_lost"]) == (20, 0, 20), v
        assert v["interfaces"] == {"filewriter": {"written": 0, "missing": 0}}
        assert v["problems"][0] == "20 of 20 images lost (app-detector stopped during the series)", v
        wait = dcu_cli(server, "wait")
        assert wait.returncode == 3 and json.loads(wait.stdout) == v, (wait.stdout, wait.stderr)
        assert_success(run_series(http, 2), 2)
        assert images_in_series(data, "series_2") == NIMAGES
        assert json.loads((data / ".opendcu-sequence.json").read_text()) == {"last_sequence_id": 2}


def test_sigterm_to_the_process_group_stops_in_time_and_keeps_the_open_file(tmp_path: Path):
    """What systemd does at stop: SIGTERM to every process of the group at once, mid-series. Every process ends
    within the app manager's 20 s (nobody is SIGKILLed), the open data file is closed valid with the images the
    summary counts, and no `.part` is left."""
    import signal
    import threading

    from conftest import child_pids, free_port

    port, v1, v2 = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opendcu",
            "serve",
            "--detector",
            "eiger2-500k",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--stream-v1-port",
            str(v1),
            "--stream-v2-port",
            str(v2),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    output: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        for line in process.stdout:
            output.append(line)
            if line.startswith("opendcu ready"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(180), "".join(output[-30:])
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as http:
            setup_series(http)
            for key, v in [("nimages", 400), ("frame_time", 0.02), ("count_time", 0.01)]:
                assert put(http, key, v).status_code == 200
            assert put(http, "nimages_per_file", 1000, module="filewriter").status_code == 200
            assert command(http, "arm").json() == {"sequence id": 1}
            threading.Thread(target=lambda: httpx.put(f"{url}{V}/command/trigger", timeout=60), daemon=True).start()
            deadline = time.monotonic() + 30
            while not list(data.glob(".series_1_data_000001.h5.part")) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
        group = [process.pid, *child_pids(process.pid)]
        started = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        took = time.monotonic() - started
        time.sleep(0.5)
        alive = [
            pid
            for pid in group
            if Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        ]
        assert alive == [], alive
        assert took < 20, (took, "".join(output[-25:]))
        log = "".join(output)
        assert "killing it" not in log and "did not stop" not in log, log[-3000:]
        assert [p.name for p in data.rglob("*.part")] == []
        line = next(line for line in output if "series 1 aborted" in line)
        written = int(line.split("filewriter written ")[1].split(",")[0])
        assert 0 < written < 400
        print(f"SIGTERM to the group: stopped in {took:.1f} s, {written} of 400 images in the closed file")
        with h5py.File(data / "series_1_data_000001.h5", "r") as f:
            assert f["/entry/data/data"].shape == (written, 512, 1028)
            assert int(f["/entry/data/data"].attrs["image_nr_high"]) == written
        with h5py.File(data / "series_1_master.h5", "r") as f:
            assert list(f["/entry/data"]) == ["data_000001"]
            assert f[f"{DETAIL}/series_outcome/images_written"][()] == written
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_dead_pipeline_workers_never_leave_a_series_reporting_success_with_fewer_images(server: DcuServer):
    """SIGKILL of the pipeline workers mid-series (a worker killed between frames holds none, so how many images
    are lost is up to chance): whatever is lost is counted, and the summary, the files, the log and `dcu wait`
    agree: images settled + lost = expected, the files hold the settled ones, and the series reports success
    only when nothing was lost."""
    import signal
    import threading

    from conftest import child_pids

    nimages = 100
    with server.client() as http:
        setup_series(http)
        for key, v in [("nimages", nimages), ("frame_time", 0.02), ("count_time", 0.01)]:
            assert put(http, key, v).status_code == 200
        assert put(http, "nimages_per_file", 1000, module="filewriter").status_code == 200
        assert command(http, "arm").json() == {"sequence id": 1}
        detector = app_detector_pid(server)
        # the pipeline workers are the first processes app-detector spawns (DataPath.start)
        workers = sorted(
            pid for pid in child_pids(detector) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        )
        assert len(workers) >= 2, workers
        threading.Thread(target=lambda: httpx.put(f"{server.url}{V}/command/trigger", timeout=300), daemon=True).start()
        deadline = time.monotonic() + 30
        while series_summary(http)["value"].get("images_settled", 0) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in workers[:2]:
            os.kill(pid, signal.SIGKILL)
        assert wait_state(http, "idle", timeout=240) == "idle"
        s = series_summary(http)
        v = s["value"]
        assert v["images_settled"] + v["images_lost"] == nimages, v
        assert v["images_settled"] >= 10
        assert (
            images_in_series(server.data_dir, "series_1")
            == v["images_settled"]
            == v["interfaces"]["filewriter"]["written"]
        )
        wait = dcu_cli(server, "wait")
        if v["images_lost"]:
            assert (s["state"], v["outcome"]) == ("error", "failure"), v
            assert v["problems"][0] == f"{v['images_lost']} of {nimages} images lost (never delivered)"
            assert wait.returncode == 3 and json.loads(wait.stdout)["outcome"] == "failure"
            assert sum("series 1 done: failure" in line and "WARNING" in line for line in server.output) == 1
        else:
            assert (s["state"], v["outcome"]) == ("normal", "success"), v
            assert wait.returncode == 0
        print(f"dead workers: {v['images_lost']} of {nimages} images lost, outcome {v['outcome']}")
