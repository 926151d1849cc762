"""Fault scenarios of whole series, continued (issue #16): SIGKILL of an analysis worker and of a parallel FileWriter
worker mid-series, and forged data packets and absurd sizes on one DCU.

Each scenario asserts the common checks of the suite: the series hit by the fault reports what it lost (status,
summary, log, `dcu wait`'s exit code) and never success with fewer images in the files; the dead worker is
replaced; the next series holds all its images; no file of an earlier series changed (checksums); no answer of
the REST API was a server error.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import DcuServer, child_pids
from simplon_helpers import V, command, put, value, wait_state
from test_data_path_rate import forged
from test_faults_input import raw_request, status_of
from test_faults_recovery import (
    Answers,
    client,
    log_lines,
    process_of,
    set_images,
    trigger_in_background,
    wait_settled,
)
from test_faults_series import (
    NIMAGES,
    PACKETS_PER_IMAGE,
    assert_success,
    checksums,
    dcu_cli,
    images_in_series,
    run_series,
    series_summary,
    setup_series,
)

pytestmark = pytest.mark.integration

A = "/analysis/api/1.8.0"


def workers_named(server: DcuServer, prefix: str) -> list[int]:
    """The pids of app-detector's worker processes whose /proc comm starts with `prefix`, oldest first."""
    out = []
    for pid in child_pids(process_of(server, b"opendcu.app_detector")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if comm.startswith(prefix) and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                out.append((int(comm[len(prefix) :] or 0), pid))
        except (OSError, ValueError):
            continue
    return [pid for _, pid in sorted(out)]


def poll(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return result


# -- SIGKILL of an analysis worker --------------------------------------------------------------------------------
def test_sigkill_of_an_analysis_worker_loses_its_results_only_and_it_is_replaced(server: DcuServer):
    """Two analysis workers, both stopped (SIGSTOP) mid-series until each holds its two slots, then one is
    SIGKILLed and the other continued: exactly the dead worker's 2 images have no result, and the analysis
    summary, status keys, error and log say so; every image still reaches the files (the series is a success);
    the next arm starts a new worker and its series is analysed with nothing lost."""
    nimages, answers = 40, Answers()
    data = server.data_dir
    with client(server, answers) as http:
        setup_series(http)
        for key, v in [("mode", "enabled"), ("workers", 2)]:
            assert put(http, key, v, module="analysis").status_code == 200
        assert_success(run_series(http, 1), 1)
        kept = checksums(data)

        set_images(http, nimages)
        assert command(http, "arm").json() == {"sequence id": 2}
        poll(lambda: value(http, "workers_ready", module="analysis", task="status") == 2, 300, "workers not ready")
        workers = workers_named(server, "analysis-w")
        assert len(workers) == 2, workers
        trigger = trigger_in_background(server)
        wait_settled(http, 5)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        skipped = value(http, "images_skipped", module="analysis", task="status")
        # two images skipped after the stop: for 0.1 s no worker had a free slot, so each holds its 2
        poll(lambda: value(http, "images_skipped", module="analysis", task="status") >= skipped + 2, 60, "no skips")
        os.kill(workers[0], signal.SIGKILL)
        os.kill(workers[1], signal.SIGCONT)
        trigger["thread"].join(120)
        assert trigger == {"code": 200, "thread": trigger["thread"]}
        assert wait_state(http, "idle") == "idle"

        # the images: all in the files, the series a success
        assert_success(series_summary(http)["value"], 2, nimages)
        assert images_in_series(data, "series_2") == nimages
        assert dcu_cli(server, "wait").returncode == 0
        # the analysis: exactly the dead worker's images have no result, and it says so everywhere
        summary = http.get(f"{A}/summary?series=2").json()
        assert summary["finished"] and summary["images_lost"] == 2, summary
        assert summary["images_received"] == nimages and summary["images_strided"] == 0, summary
        assert summary["images_analysed"] + summary["images_skipped"] + summary["images_lost"] == nimages, summary
        assert value(http, "images_lost", module="analysis", task="status") == 2
        assert value(http, "state", module="analysis", task="status") == "error"
        died = "died (exit code -9) holding 2 images"
        assert any(died in e for e in value(http, "error", module="analysis", task="status"))
        assert len([line for line in log_lines(server, died) if "ERROR" in line]) == 1
        print(
            f"SIGKILL of an analysis worker: {nimages} of {nimages} images written; analysis "
            f"{summary['images_analysed']} analysed + {summary['images_skipped']} skipped + "
            f"{summary['images_lost']} lost of {nimages}"
        )
        kept.update({k: v for k, v in checksums(data).items() if k.startswith("series_2_")})

        # the next arm replaces the dead worker; its series loses nothing
        setup_series(http)
        assert command(http, "arm").json() == {"sequence id": 3}
        poll(lambda: value(http, "workers_ready", module="analysis", task="status") == 2, 300, "workers not ready")
        now = workers_named(server, "analysis-w")
        assert len(now) == 2 and workers[0] not in now, (workers, now)
        assert command(http, "trigger").status_code == 200
        assert wait_state(http, "idle") == "idle"
        assert_success(series_summary(http)["value"], 3)
        assert images_in_series(data, "series_3") == NIMAGES
        summary = http.get(f"{A}/summary?series=3").json()
        assert summary["images_lost"] == 0 and summary["images_received"] == NIMAGES, summary
        assert summary["images_analysed"] + summary["images_skipped"] == NIMAGES, summary
        assert value(http, "state", module="analysis", task="status") == "ready"
        assert dcu_cli(server, "wait").returncode == 0
        assert {k: checksums(data)[k] for k in kept} == kept
    assert answers.server_errors() == []


# -- SIGKILL of a parallel FileWriter worker ----------------------------------------------------------------------
def test_sigkill_of_a_parallel_filewriter_worker_fails_the_series_honestly_and_a_new_pool_writes_the_next(
    server: DcuServer,
):
    """writer_mode parallel (two writer processes memcpy the chunks into one file): one is SIGKILLed while the
    second of four data files is written. That file is given up at once; the series reports exactly what the
    files hold (10 of 40 written, failure, the dead worker named) in status, summary, master, log and `dcu wait`;
    the next arm starts a new pool and its series holds all its images."""
    import h5py

    nimages, answers = 40, Answers()
    data = server.data_dir
    with client(server, answers) as http:
        setup_series(http)
        for key, v in [("writer_mode", "parallel"), ("writer_processes", 2)]:
            assert put(http, key, v, module="filewriter").status_code == 200
        assert_success(run_series(http, 1), 1)
        kept = checksums(data)
        writers = workers_named(server, "filewriter-w")
        assert len(writers) == 2, writers

        for key, v in [("nimages", nimages), ("frame_time", 0.2), ("count_time", 0.01)]:
            assert put(http, key, v).status_code == 200
        assert put(http, "nimages_per_file", 10, module="filewriter").status_code == 200
        assert command(http, "arm").json() == {"sequence id": 2}
        assert workers_named(server, "filewriter-w") == writers  # the pool stays from series to series
        trigger = trigger_in_background(server)
        poll(lambda: (data / "series_2_data_000001.h5").exists(), 60, "the first data file did not appear")
        wait_settled(http, 13)  # 3 images into the second file, 7 (1.4 s) before it is complete
        os.kill(writers[0], signal.SIGKILL)
        trigger["thread"].join(120)
        assert trigger == {"code": 200, "thread": trigger["thread"]}
        assert wait_state(http, "idle") == "idle"

        s = series_summary(http)
        v = s["value"]
        written = v["interfaces"]["filewriter"]["written"]
        assert (s["state"], v["series_id"], v["outcome"]) == ("error", 2, "failure"), v
        assert (v["images_expected"], v["images_complete"], v["images_lost"]) == (nimages, nimages, 0), v
        assert (v["packets_lost"], v["packets_received"]) == (0, nimages * PACKETS_PER_IMAGE), v
        assert v["interfaces"]["filewriter"] == {"written": 10, "missing": nimages - 10}, v
        assert images_in_series(data, "series_2") == written == 10
        assert sorted(p.name for p in data.glob("series_2_*")) == ["series_2_data_000001.h5", "series_2_master.h5"]
        assert f"FileWriter wrote 10 of {nimages} images" in v["problems"], v["problems"]
        died = f"filewriter worker 0 (pid {writers[0]}) died (exit code -9)"
        assert any(died in p for p in v["problems"]), v["problems"]
        assert value(http, "state", module="filewriter", task="status") == "error"
        with h5py.File(data / "series_2_master.h5", "r") as f:
            outcome = f["/entry/instrument/detector/detectorSpecific/series_outcome"]
            assert (outcome["outcome"][()], outcome["images_written"][()]) == (b"failure", 10)
            assert sorted(f["/entry/data"]) == ["data", "data_000001"]  # the virtual dataset over what was written
            assert f["/entry/data/data"].shape[0] == 10
        wait = dcu_cli(server, "wait")
        assert wait.returncode == 3 and json.loads(wait.stdout) == v, (wait.stdout, wait.stderr)
        assert len([line for line in log_lines(server, "series 2 done: failure") if "WARNING" in line]) == 1
        assert log_lines(server, died)
        assert [p.name for p in data.rglob("*.part")] == []
        print(f"SIGKILL of a parallel filewriter worker: {written} of {nimages} images written, outcome failure")
        kept.update({k: v for k, v in checksums(data).items() if k.startswith("series_2_")})

        # the next arm starts a new pool; its series holds all its images, the FileWriter is ready again
        setup_series(http)
        for key, v in [("writer_mode", "parallel"), ("writer_processes", 2)]:
            assert put(http, key, v, module="filewriter").status_code == 200
        assert_success(run_series(http, 3), 3)
        now = workers_named(server, "filewriter-w")
        assert len(now) == 2 and not set(now) & set(writers), (writers, now)
        assert images_in_series(data, "series_3") == NIMAGES
        assert value(http, "state", module="filewriter", task="status") == "ready"
        assert dcu_cli(server, "wait").returncode == 0
        assert {k: checksums(data)[k] for k in kept} == kept
    assert answers.server_errors() == []


# -- forged packets and absurd sizes ------------------------------------------------------------------------------
def test_forged_packets_and_absurd_sizes_harm_no_series_and_no_file(server: DcuServer):
    """On one DCU: forged data packets (the right series id, frame = nimages, from another socket) before and
    during a series leave it a success with every packet its own and count exactly as foreign; then absurd sizes
    (2·10⁹ x 2·10⁹ images, a 200 MB body, a 5000-character string, JSON 5000 deep, a TIFF declaring 12000 x
    12000) are refused with 4xx and a text. The next series holds all its images and no earlier file changed."""
    answers = Answers()
    data = server.data_dir
    with client(server, answers) as http:
        setup_series(http)
        assert_success(run_series(http, 1), 1)
        kept = checksums(data)

        # -- forged packets -------------------------------------------------------------------------------------------
        foreign_before = value(http, "daq/packets_foreign", task="status")
        assert command(http, "arm").json() == {"sequence id": 2}
        daq_port = value(http, "daq/data_port", task="status")
        payload, sent = bytes(8192), 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in range(64):
                s.sendto(forged(2, NIMAGES, p, payload), ("127.0.0.1", daq_port))
                sent += 1
            done = threading.Event()
            answer: dict = {}
            threading.Thread(
                target=lambda: (answer.update(code=command(http, "trigger").status_code), done.set()), daemon=True
            ).start()
            while not done.wait(0.01):
                s.sendto(forged(2, sent % NIMAGES, sent % PACKETS_PER_IMAGE, payload), ("127.0.0.1", daq_port))
                sent += 1
        assert answer == {"code": 200}
        assert wait_state(http, "idle") == "idle"
        assert_success(series_summary(http)["value"], 2)  # every packet counted is the module's own
        assert images_in_series(data, "series_2") == NIMAGES
        assert dcu_cli(server, "wait").returncode == 0
        foreign = poll(
            lambda: (n := value(http, "daq/packets_foreign", task="status") - foreign_before) >= sent and n,
            30,
            "forged packets not all counted",
        )
        assert foreign == sent
        print(f"forged packets: {sent} sent, {foreign} counted foreign, series 2 {NIMAGES} of {NIMAGES} images")
        kept.update({k: v for k, v in checksums(data).items() if k.startswith("series_2_")})

        # -- absurd sizes: each refused with a text, nothing written, state idle ---------------------------------
        assert put(http, "nimages_per_file", 1, module="filewriter").status_code == 200
        for key in ("nimages", "ntrigger"):
            assert put(http, key, 2_000_000_000).status_code == 200
        r = command(http, "arm")
        assert r.status_code == 400 and "4000000000000000000 images" in r.text, r.text
        answer = raw_request(
            server,
            b"PUT /filewriter/api/1.8.0/config/name_pattern HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{",
        )
        assert status_of(answer) == 413 and b"larger than" in answer
        r = put(http, "name_pattern", "a" * 5000, module="filewriter")
        assert r.status_code == 400 and "at most 4096" in r.text, r.text
        r = http.put(f"{V}/config/nimages", content=b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}")
        assert r.status_code == 400 and "deeper than 32" in r.text, r.text
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.zeros((12000, 12000), np.uint32), compression="zlib")
        r = http.put(f"{V}/config/pixel_mask", content=buffer.getvalue(), headers={"Content-Type": "image/tiff"})
        assert r.status_code == 400 and "12000 x 12000" in r.text, r.text
        assert value(http, "state", task="status") == "idle"
        assert value(http, "name_pattern", module="filewriter") == "series_$id"
        assert checksums(data) == kept and not list(data.glob("series_3_*"))

        # -- the next series holds all its images, under the next id ------------------------------------------------
        for key, v in [("nimages", NIMAGES), ("ntrigger", 1)]:
            assert put(http, key, v).status_code == 200
        assert put(http, "nimages_per_file", 2, module="filewriter").status_code == 200
        assert_success(run_series(http, 3), 3)
        assert images_in_series(data, "series_3") == NIMAGES
        assert dcu_cli(server, "wait").returncode == 0
        assert {k: checksums(data)[k] for k in kept} == kept
    assert answers.server_errors() == []
