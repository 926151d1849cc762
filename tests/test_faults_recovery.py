"""Fault scenarios of whole series, continued (issue #16): a disk that runs full and is freed again, SIGKILL of the
simulated modules' process and of app-calibration mid-series, `dcu serve` stopped and started again on the same
data directory, and a module that refuses arm.

Each scenario asserts: the series hit by the fault never reports success with fewer images (status key
`series`, the log line, `dcu wait`'s exit code say what was lost); the next series holds all its images; no file
of an earlier series changed (checksums); no answer of the REST API was a server error (a 503 "restarting" is
the documented answer while an app restarts, nothing else of 5xx is accepted).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import DcuServer, child_pids, start_dcu
from simplon_helpers import V, command, put, value, wait_state
from test_faults_series import (
    NIMAGES,
    assert_success,
    checksums,
    dcu_cli,
    images_in_series,
    run_series,
    series_summary,
    setup_series,
)

pytestmark = pytest.mark.integration


class Answers:
    """Every HTTP status code a test's client got (an httpx response hook)."""

    def __init__(self) -> None:
        self.codes: list[tuple[int, str]] = []

    def __call__(self, response: httpx.Response) -> None:
        self.codes.append((response.status_code, str(response.request.url.path)))

    def server_errors(self) -> list[tuple[int, str]]:
        return [(code, path) for code, path in self.codes if code >= 500 and code != 503]


def client(server: DcuServer, answers: Answers) -> httpx.Client:
    return server.client(event_hooks={"response": [answers]})


def process_of(server: DcuServer, module: bytes) -> int:
    """The pid of the app process started as `python -m <module>` below `dcu serve`."""
    for pid in child_pids(server.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if module in cmdline:
            return pid
    raise AssertionError(f"{module.decode()} is not running")


def wait_for_restart(server: DcuServer, http: httpx.Client, module: bytes, old: int, timeout: float = 180) -> int:
    """Poll until the app manager has started `module` again (a new pid) and app-detector answers (state na or
    idle); the new pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = process_of(server, module)
            if pid != old and http.get(f"{V}/status/state").json()["value"] in ("na", "idle"):
                if module == b"opendcu.app_detector" or process_of(server, b"opendcu.app_detector"):
                    return pid
        except (AssertionError, httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{module.decode()} was not restarted within {timeout} s:\n" + "".join(server.output[-30:]))


def trigger_in_background(server: DcuServer) -> dict:
    """Start `PUT command/trigger` in a thread; the dict gets its status code (or the exception)."""
    result: dict = {}

    def run() -> None:
        try:
            result["code"] = httpx.put(f"{server.url}{V}/command/trigger", timeout=300).status_code
        except httpx.HTTPError as exc:
            result["error"] = repr(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def wait_settled(http: httpx.Client, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while series_summary(http)["value"].get("images_settled", 0) < at_least:
        assert time.monotonic() < deadline, series_summary(http)
        time.sleep(0.02)


def start_series_in_background(server: DcuServer, http: httpx.Client, nimages: int, series_id: int = 1) -> dict:
    """Arm a series of `nimages` at 10 Hz, 10 per file, trigger it from another thread and return once 12 images
    settled: a series in the middle of its run, for a fault to hit."""
    set_images(http, nimages)
    assert command(http, "arm").json() == {"sequence id": series_id}
    trigger = trigger_in_background(server)
    wait_settled(http, 12)
    return trigger


def set_images(http: httpx.Client, nimages: int) -> None:
    """nimages at 10 Hz (count time 10 ms), 10 images per data file."""
    for key, v in [("nimages", nimages), ("frame_time", 0.1), ("count_time", 0.01)]:
        assert put(http, key, v).status_code == 200
    assert put(http, "nimages_per_file", 10, module="filewriter").status_code == 200


def log_lines(server: DcuServer, text: str) -> list[str]:
    return [line for line in server.output if text in line]


# -- disk full, then freed ---------------------------------------------------------------------------------------------
def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> None:
    """Grow the hidden file `path` until `leave` bytes (about) are free on its filesystem."""
    with open(path, "ab") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, os.fstat(f.fileno()).st_size + free_bytes(path.parent) - leave))


@pytest.fixture
def small_data_dir(tmp_path: Path):
    """A 64 MiB tmpfs mounted as the data directory of the DCU the test starts (root only; unmounted after)."""
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() != 0:
        pytest.fail("the disk-full scenario mounts a small tmpfs as the data directory: run it as root")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(data)], capture_output=True)
    if out.returncode != 0:
        pytest.fail(f"the disk-full scenario cannot mount a small tmpfs here: {out.stderr.decode().strip()}")
    try:
        yield data
    finally:
        out = subprocess.run(["umount", str(data)], capture_output=True)
        if out.returncode != 0:
            subprocess.run(["umount", "-l", str(data)], capture_output=True)


def test_disk_full_fails_the_series_loudly_and_the_next_series_after_freeing_holds_every_image(
    tmp_path: Path, small_data_dir: Path
):
    data = small_data_dir
    filler = data / ".filler"  # hidden: no files list shows it
    answers = Answers()
    server = start_dcu(tmp_path)
    try:
        with client(server, answers) as http:
            setup_series(http)
            assert_success(run_series(http, 1), 1)
            first = checksums(data)
            master = (data / "series_1_master.h5").stat().st_size
            data_file = (data / "series_1_data_000001.h5").stat().st_size

            # -- a disk with room for the master and one and a half data files: the second data file fails ------------
            fill(filler, master + data_file + data_file // 2)
            r = command(http, "arm")
            assert r.status_code == 200 and r.json() == {"sequence id": 2}, r.text
            trigger = dcu_cli(server, "trigger")
            assert trigger.returncode == 3, (trigger.stdout, trigger.stderr)
            assert wait_state(http, "idle") == "idle"
            s = series_summary(http)
            v = s["value"]
            assert json.loads(trigger.stdout) == v
            written = v["interfaces"]["filewriter"]["written"]
            print(f"disk full: {written} of {NIMAGES} images written, {free_bytes(data)} bytes free after the series")
            assert (s["state"], v["series_id"], v["outcome"]) == ("error", 2, "failure"), v
            assert (v["images_expected"], v["images_complete"], v["images_lost"]) == (NIMAGES, NIMAGES, 0)
            assert written == 2, v  # the first data file; the second was removed when it could not be written
            assert v["interfaces"]["filewriter"]["missing"] == NIMAGES - 2
            assert images_in_series(data, "series_2") == 2
            assert sorted(p.name for p in data.glob("series_2_*")) == ["series_2_data_000001.h5", "series_2_master.h5"]
            assert any("No space left on device" in p for p in v["problems"]), v["problems"]
            assert f"FileWriter wrote 2 of {NIMAGES} images" in v["problems"]
            assert value(http, "state", module="filewriter", task="status") == "error"
            wait = dcu_cli(server, "wait")
            assert wait.returncode == 3 and json.loads(wait.stdout)["outcome"] == "failure", wait.stderr
            assert len([line for line in log_lines(server, "series 2 done: failure") if "WARNING" in line]) == 1
            assert [p.name for p in data.rglob("*.part")] == []

            # -- a disk that is full at arm: arm refuses with 400 and says why, nothing changes ------------------------
            fill(filler, 0)
            kept = checksums(data)
            for _ in range(2):
                r = command(http, "arm")
                assert r.status_code == 400 and "No space left on device" in r.text, r.text
                assert value(http, "state", task="status") == "idle"
            assert checksums(data) == kept
            assert not list(data.glob("series_3_*"))

            # -- space freed: the next series holds all its images, under the next id, and the FileWriter recovers -----
            filler.unlink()
            assert_success(run_series(http, 3), 3)
            assert images_in_series(data, "series_3") == NIMAGES
            assert value(http, "state", module="filewriter", task="status") == "ready"
            assert dcu_cli(server, "wait").returncode == 0
            assert {k: checksums(data)[k] for k in kept} == kept
            assert {k: kept[k] for k in first} == first
        assert answers.server_errors() == []
    finally:
        if server.process.poll() is None:
            server.stop()


# -- SIGKILL of the simulated modules' process and of app-calibration --------------------------------------------------
def test_sigkill_of_the_module_process_mid_series_fails_the_series_and_the_dcu_recovers(server: DcuServer):
    """The simulated modules die mid-series: the app manager stops app-detector (it aborts the series and closes
    its files), starts the modules and app-detector again (state na). The series reports the images it lost
    (status `series`, log, `dcu wait`), never success; after initialize the next series holds all its images."""
    nimages, answers = 40, Answers()
    data = server.data_dir
    with client(server, answers) as http:
        setup_series(http)
        trigger = start_series_in_background(server, http, nimages)
        simulator, detector = process_of(server, b"opendcu.simulator"), process_of(server, b"opendcu.app_detector")
        os.kill(simulator, signal.SIGKILL)
        wait_for_restart(server, http, b"opendcu.app_detector", detector)
        assert process_of(server, b"opendcu.simulator") != simulator
        trigger["thread"].join(60)
        assert trigger == {"code": 200, "thread": trigger["thread"]}  # the abort ended the trigger
        assert value(http, "state", task="status") == "na"
        assert command(http, "initialize").status_code == 200  # before, only status/state exists (SIMPLON)
        s = series_summary(http)
        v = s["value"]
        written = v["interfaces"]["filewriter"]["written"]
        assert (s["state"], v["series_id"], v["state"], v["outcome"]) == ("error", 1, "aborted", "failure"), v
        assert v["images_expected"] == nimages and v["images_settled"] + v["images_lost"] == nimages, v
        assert 12 <= v["images_settled"] < nimages and written == v["images_settled"], v
        assert images_in_series(data, "series_1") == written
        assert v["problems"][0] == f"{v['images_lost']} of {nimages} images lost (never delivered)", v
        assert v["problems"][1].startswith("the modules did not answer the stop: module 0"), v
        assert v["problems"][2:] == ["app-detector was stopped during the series"], v
        wait = dcu_cli(server, "wait")
        assert wait.returncode == 3 and json.loads(wait.stdout) == v, (wait.stdout, wait.stderr)
        assert len([line for line in log_lines(server, "series 1 aborted: failure") if "WARNING" in line]) == 1
        assert [p.name for p in data.rglob("*.part")] == []
        print(f"SIGKILL of the modules: {written} of {nimages} images written, {v['images_lost']} lost")
        kept = checksums(data)

        setup_series(http)
        assert_success(run_series(http, 2), 2)
        assert images_in_series(data, "series_2") == NIMAGES
        assert dcu_cli(server, "wait").returncode == 0
        assert {k: checksums(data)[k] for k in kept} == kept
    assert answers.server_errors() == []


def test_modules_held_up_past_their_images_due_time_are_stopped_and_the_series_says_so(server: DcuServer):
    """The simulated modules' process is held (SIGSTOP) mid-series past the time the trigger's images were due,
    so the DAQ settles what arrived; then it goes on (SIGCONT) while the DCU asks the modules how many images they
    sent. The modules are behind: they are stopped, the series fails and says so. Before, the trigger returned,
    the modules went on acquiring into the next arm, and that arm was refused ("module 0 rejected CONFIGURE:
    cannot configure while acquiring")."""
    nimages, answers = 40, Answers()
    with client(server, answers) as http:
        setup_series(http)
        trigger = start_series_in_background(server, http, nimages)
        simulator = process_of(server, b"opendcu.simulator")
        os.kill(simulator, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 60
            while not log_lines(server, "not all arrived: asking the modules") and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            os.kill(simulator, signal.SIGCONT)
        trigger["thread"].join(60)
        assert trigger == {"code": 200, "thread": trigger["thread"]}
        assert wait_state(http, "idle") == "idle"
        v = series_summary(http)["value"]
        assert (v["state"], v["outcome"], v["images_expected"]) == ("done", "failure", nimages), v
        assert 12 <= v["images_settled"] < nimages and v["images_settled"] + v["images_lost"] == nimages, v
        assert any(
            p.startswith("the modules were still sending when the trigger's images were due") for p in v["problems"]
        ), v
        assert dcu_cli(server, "wait").returncode == 3
        setup_series(http)  # the modules were stopped: the next arm is taken and holds every image
        assert_success(run_series(http, 2), 2)
        assert images_in_series(server.data_dir, "series_2") == NIMAGES
    assert answers.server_errors() == []


def test_sigkill_of_app_calibration_mid_series_costs_no_image_and_it_comes_back(server: DcuServer):
    """app-calibration dies mid-series: the series does not need it (the calibration was loaded at initialize) and
    holds all its images; the app manager starts app-calibration again, and what needs it works again: a new
    photon energy's flatfield, initialize, the next series."""
    nimages, answers = 40, Answers()
    data = server.data_dir
    with client(server, answers) as http:
        setup_series(http)
        trigger = start_series_in_background(server, http, nimages)
        calibration, detector = (
            process_of(server, b"opendcu.app_calibration"),
            process_of(server, b"opendcu.app_detector"),
        )
        os.kill(calibration, signal.SIGKILL)
        trigger["thread"].join(60)
        assert trigger == {"code": 200, "thread": trigger["thread"]}
        assert wait_state(http, "idle") == "idle"
        assert_success(series_summary(http)["value"], 1, nimages)
        assert images_in_series(data, "series_1") == nimages
        assert dcu_cli(server, "wait").returncode == 0
        new = wait_for_restart(server, http, b"opendcu.app_calibration", calibration)
        assert process_of(server, b"opendcu.app_detector") == detector  # app-detector was not restarted
        assert log_lines(server, "app-calibration crashed (exit code -9); restarting it")
        print(f"SIGKILL of app-calibration: {nimages} of {nimages} images written, pid {calibration} -> {new}")
        kept = checksums(data)

        assert put(http, "photon_energy", 12000).status_code == 200  # app-detector asks app-calibration
        assert value(http, "photon_energy") == 12000
        setup_series(http)
        assert_success(run_series(http, 2), 2)
        assert images_in_series(data, "series_2") == NIMAGES
        assert {k: checksums(data)[k] for k in kept} == kept
    assert answers.server_errors() == []


# -- restart of dcu serve and initialize ------------------------------------------------------------------------------
def test_restarts_of_dcu_serve_and_initialize_never_overwrite_a_file(tmp_path: Path):
    """`dcu serve` stopped and started again on the same data directory, twice, with initialize between the
    series: the sequence ids go on, no file of an earlier series changes, every series holds all its images, and
    the last series' summary is still there after the restart."""
    answers = Answers()
    expected_id, kept = 0, {}
    for _ in range(3):
        server = start_dcu(tmp_path)
        try:
            with client(server, answers) as http:
                assert value(http, "state", task="status") == "na"
                setup_series(http)
                if expected_id:  # the summary of the series before the restart
                    s = series_summary(http)
                    assert (s["state"], s["value"]["series_id"], s["value"]["outcome"]) == (
                        "normal",
                        expected_id,
                        "success",
                    )
                    assert dcu_cli(server, "wait").returncode == 0
                for _ in range(2):
                    expected_id += 1
                    assert_success(run_series(http, expected_id), expected_id)
                    assert command(http, "initialize").status_code == 200
                    setup_series(http)
                now = checksums(server.data_dir)
                assert {k: now[k] for k in kept} == kept
                assert len(now) == len(kept) + 2 * 4  # a master and 3 data files per series
                kept = now
            assert server.stop() == 0
        finally:
            if server.process.poll() is None:
                server.kill()
    data = tmp_path / "data"
    assert json.loads((data / ".opendcu-sequence.json").read_text()) == {"last_sequence_id": 6}
    for sid in range(1, 7):
        assert images_in_series(data, f"series_{sid}") == NIMAGES
    assert checksums(data) == kept
    assert answers.server_errors() == []
    print(f"restarts: 3 starts, series 1-6 with {NIMAGES} of {NIMAGES} images each, {len(kept)} files unchanged")


# -- a module that refuses arm ----------------------------------------------------------------------------------------
def test_a_module_refusing_arm_is_all_or_nothing_and_the_next_arm_holds_every_image(server: DcuServer):
    """The simulated module refuses the CONFIGURE of arm by its own checks (a physics change or a scene it does not
    know: the DCU's `simulator` module passes them on unchecked, as a real module's settings): arm answers 400
    with the module's reason, the state stays idle, no file and no sequence id is used, and the next arm works."""
    answers = Answers()
    data = server.data_dir
    with client(server, answers) as http:
        setup_series(http)
        assert_success(run_series(http, 1), 1)
        kept = checksums(data)
        refusals = [
            ("physics", '{"dead_time_scale": 100}', "module 0 rejected CONFIGURE: physics:"),
            ("scene", '{"kind": "no-such-scene"}', "module 0 rejected CONFIGURE:"),
        ]
        for key, bad, text in refusals:
            assert put(http, key, bad, module="simulator").status_code == 200
            for _ in range(2):
                r = command(http, "arm")
                assert r.status_code == 400 and r.text.startswith("arm failed: ") and text in r.text, r.text
                assert value(http, "state", task="status") == "idle"
                assert value(http, "state", module="filewriter", task="status") == "ready"
            assert put(http, key, "", module="simulator").status_code == 200
        print(f"module refusal: {r.text}")
        assert checksums(data) == kept and not list(data.glob("series_2_*"))
        assert json.loads((data / ".opendcu-sequence.json").read_text()) == {"last_sequence_id": 1}
        assert series_summary(http)["value"]["series_id"] == 1  # still the last series that ran
        assert_success(run_series(http, 2), 2)
        assert images_in_series(data, "series_2") == NIMAGES
        assert dcu_cli(server, "wait").returncode == 0
        assert {k: checksums(data)[k] for k in kept} == kept
    assert answers.server_errors() == []


def test_sigkill_of_dcu_serve_mid_series_and_a_new_start_on_the_same_data(tmp_path: Path):
    """The base system is SIGKILLed mid-series: its apps end with it (parent-death signal, app-detector closes the
    series' files), the next `dcu serve` on the same data directory reports the cut-short series as a failure
    with the images it lost, goes on with the next sequence id and changes no file of it."""
    from conftest import group_pids

    nimages, answers = 40, Answers()
    data = tmp_path / "data"
    server = start_dcu(tmp_path)
    try:
        with client(server, answers) as http:
            setup_series(http)
            start_series_in_background(server, http, nimages)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
        deadline = time.monotonic() + 60
        while group_pids(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_pids(server.process.pid) == []
    finally:
        server.kill()
    assert [p.name for p in data.rglob("*.part")] == []
    written = images_in_series(data, "series_1")
    kept = checksums(data)
    server = start_dcu(tmp_path)
    try:
        with client(server, answers) as http:
            setup_series(http)
            s = series_summary(http)
            v = s["value"]
            assert (s["state"], v["series_id"], v["outcome"]) == ("error", 1, "failure"), v
            assert v["images_expected"] == nimages and v["images_lost"] == nimages - written, v
            assert v["interfaces"]["filewriter"]["written"] == written and v["state"] == "aborted"
            assert v["problems"] == [
                f"{nimages - written} of {nimages} images lost (never delivered)",
                "app-detector was stopped during the series",
            ], v
            wait = dcu_cli(server, "wait")
            assert wait.returncode == 3 and json.loads(wait.stdout) == v, (wait.stdout, wait.stderr)
            assert_success(run_series(http, 2), 2)
            assert images_in_series(data, "series_2") == NIMAGES
            assert {k: checksums(data)[k] for k in kept} == kept
            print(f"SIGKILL of dcu serve: {written} of {nimages} images written, {v['images_lost']} lost")
    finally:
        if server.process.poll() is None:
            server.stop()
    assert answers.server_errors() == []
