"""The data path end to end at rate, through `dcu serve` driven over REST: a 500K series of 2000 frames at 500 Hz
through FileWriter and Stream V2 (a real PULL consumer) loses nothing; forged data packets from another socket
harm no frame and count as foreign; a SIGKILLed pipeline worker is replaced and no image goes missing unsaid.
(Speed itself is measured in bench/e2e.py, never asserted here.)"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from conftest import DcuServer, child_pids, start_dcu
from stream_consumer import StreamConsumer

from opendcu.hardware.udp_packet import HEADER_DTYPE

API = "api/1.8.0"

# 2000 frames at 500 Hz are about half this 2-core machine's bound: no other test may run beside them
pytestmark = pytest.mark.alone


@pytest.fixture
def server(tmp_path: Path):
    dcu = start_dcu(tmp_path, timeout=600, buffers=None)
    try:
        yield dcu
    finally:
        dcu.stop()


def put(http, module: str, task: str, key: str, value=None, timeout: float = 300):
    r = http.put(f"/{module}/{API}/{task}/{key}", json=None if value is None else {"value": value}, timeout=timeout)
    assert r.status_code == 200, r.text
    return r.json() if r.content else None


def get(http, module: str, task: str, key: str):
    r = http.get(f"/{module}/{API}/{task}/{key}")
    assert r.status_code == 200, r.text
    return r.json()["value"]


def set_up(http, nimages: int, frame_time: float) -> None:
    put(http, "detector", "command", "initialize")
    put(http, "filewriter", "config", "mode", "enabled")
    put(http, "stream", "config", "mode", "enabled")
    put(http, "stream", "config", "format", "cbor")
    readout = get(http, "detector", "config", "detector_readout_time")
    for key, value in {
        "nimages": nimages,
        "ntrigger": 1,
        "trigger_mode": "ints",
        "frame_time": frame_time,
        "count_time": frame_time - readout,
    }.items():
        put(http, "detector", "config", key, value)


def images_in_files(data_dir: Path, series_id: int) -> int:
    with h5py.File(data_dir / f"series_{series_id}_master.h5") as f:
        return sum(f["/entry/data"][k].shape[0] for k in f["/entry/data"] if k.startswith("data_"))


#: the rate of the 2000-frame series (Hz), unless this machine's cores carry less than twice that
TARGET_HZ = 500.0
#: the share of the machine's bound the series may ask for (the issue: 500 Hz is "about half" of the bound)
SHARE_OF_BOUND = 0.5
#: the warm-up series that measures the bound (fast enough that the idle load is small per frame)
WARM_UP_FRAMES, WARM_UP_HZ = 600, 200.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (all their threads, /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_series(server: DcuServer, http, nimages: int, rate: float) -> tuple[int, int, StreamConsumer, float]:
    """One series through FileWriter and Stream V2: (packets lost, images in the files, the consumer, CPU seconds
    the whole DCU and this test's process spent on it)."""
    set_up(http, nimages, 1 / rate)
    consumer = StreamConsumer(f"tcp://127.0.0.1:{server.stream_v2_port}")
    try:
        time.sleep(0.5)
        series_id = put(http, "detector", "command", "arm")["sequence id"]
        pids = [server.process.pid, *child_pids(server.process.pid), os.getpid()]
        cpu = cpu_seconds(pids)
        put(http, "detector", "command", "trigger", timeout=600)
        assert consumer.wait_end(120)
        put(http, "detector", "command", "wait", 120)
        cpu = cpu_seconds(pids) - cpu
        lost = get(http, "detector", "status", "daq/packets_lost")
        in_files = images_in_files(server.data_dir, series_id)
    finally:
        consumer.close()
    return lost, in_files, consumer, cpu


def assert_everything_arrived(lost: int, in_files: int, consumer: StreamConsumer, nimages: int) -> None:
    assert lost == 0
    assert in_files == nimages
    assert consumer.images == list(range(nimages))
    assert consumer.kinds[0] == "start" and consumer.kinds[-1] == "end"


def test_2000_frames_at_500_hz_through_filewriter_and_stream(server: DcuServer):
    """2000 frames at 500 Hz lose nothing: 0 packets lost, 2000 images in the files and 2000 on the stream.

    500 Hz is about half of what a 2-core machine's cores carry for a 500K (bench/e2e.py), but machines differ by
    2x and more. A warm-up series measures this machine's bound (cores / CPU seconds per frame of the whole DCU,
    simulated module and consumer included); where half of it is below 500 Hz the series runs at that half, so
    that the test checks what it means to (nothing lost at half the machine's bound) on every machine."""
    cores = len(os.sched_getaffinity(0))
    with server.client(timeout=600) as http:
        lost, _, _, cpu = run_series(server, http, WARM_UP_FRAMES, WARM_UP_HZ)  # a measurement, not the check
        bound = cores / (cpu / WARM_UP_FRAMES)
        rate = min(TARGET_HZ, SHARE_OF_BOUND * bound)
        per_frame = 1e6 * cpu / WARM_UP_FRAMES
        print(f"this machine's bound: {bound:.0f} Hz ({cores} cores, {per_frame:.0f} us/frame; warm-up lost {lost})")
        assert_warned_at_arm_beyond_the_bound(http, bound)
        print(f"2000 frames at {rate:.0f} Hz")
        lost, in_files, consumer, _ = run_series(server, http, 2000, rate)
    assert_everything_arrived(lost, in_files, consumer, 2000)


#: the eiger2-500k's fastest frame rate (Hz)
MAX_HZ = 2000.0


def assert_warned_at_arm_beyond_the_bound(http, bound: float) -> None:
    """After the warm-up the DCU knows what the machine carried: a series at the model's top rate, beyond it, is
    warned of at arm in the series summary, with the numbers (then disarmed without a trigger)."""
    set_up(http, 2000, 1 / MAX_HZ)
    for module in ("filewriter", "stream"):  # no files, no start/end message for a series never triggered
        put(http, module, "config", "mode", "disabled")
    put(http, "detector", "command", "arm")
    summary = get(http, "detector", "status", "series")
    put(http, "detector", "command", "disarm")
    # the DCU counts the whole machine's busy time, this test only the DCU's processes: its bound is the lower one
    if bound < 0.8 * MAX_HZ:
        assert len(summary["warnings"]) == 1, summary
        assert summary["warnings"][0].startswith("frame rate 2000 Hz (2097 MB/s of raw data) is beyond"), summary
        assert summary["outcome"] == "running" and summary["problems"] == []
    else:
        print(f"the machine carries {bound:.0f} Hz: no rate of this detector is beyond it, no warning to see")


def forged(series_id: int, frame: int, packet: int, payload: bytes) -> bytes:
    h = np.zeros((), dtype=HEADER_DTYPE)
    h["frame_number"], h["packet_number"], h["series_id"], h["module_id"] = frame, packet, series_id, 0
    h["subframe"], h["nsubframes"], h["det_type"], h["version"] = 0, 1, 0x20, 2
    return h.tobytes() + payload


def test_forged_data_packets_from_another_socket_harm_no_frame(server: DcuServer):
    """Datagrams with the right series id and frame = nimages, sent to the DAQ's data port from another socket
    before and during the series: every frame complete, the forged ones counted as foreign, exactly."""
    nimages = 200
    with server.client(timeout=600) as http:
        set_up(http, nimages, 0.01)
        series_id = put(http, "detector", "command", "arm")["sequence id"]
        daq_port = get(http, "detector", "status", "daq/data_port")
        payload = bytes(8192)
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in range(64):
                s.sendto(forged(series_id, nimages, p, payload), ("127.0.0.1", daq_port))
                sent += 1
            done = threading.Event()
            trigger = threading.Thread(target=lambda: (put(http, "detector", "command", "trigger"), done.set()))
            trigger.start()
            while not done.wait(0.01):
                s.sendto(forged(series_id, nimages, sent % 128, payload), ("127.0.0.1", daq_port))
                sent += 1
            trigger.join()
        put(http, "detector", "command", "wait", 60)
        foreign = get(http, "detector", "status", "daq/packets_foreign")
        lost = get(http, "detector", "status", "daq/packets_lost")
        in_files = images_in_files(server.data_dir, series_id)
    assert lost == 0 and in_files == nimages
    assert foreign == sent


def test_a_killed_pipeline_worker_is_replaced_and_no_image_goes_missing_unsaid(server: DcuServer):
    nimages = 1000
    with server.client(timeout=600) as http:
        set_up(http, nimages, 0.005)
        series_id = put(http, "detector", "command", "arm")["sequence id"]
        app = [
            p
            for p in child_pids(server.process.pid)
            if b"opendcu.app_detector" in Path(f"/proc/{p}/cmdline").read_bytes()
        ][0]
        workers = [p for p in child_pids(app) if Path(f"/proc/{p}/comm").read_text().startswith("pipeline-w")]
        assert len(workers) == 2
        trigger = threading.Thread(target=lambda: put(http, "detector", "command", "trigger"))
        trigger.start()
        time.sleep(1.5)
        os.kill(workers[0], signal.SIGKILL)
        trigger.join()
        put(http, "detector", "command", "wait", 120)
        in_files = images_in_files(server.data_dir, series_id)
        lost_in_pipeline = get(http, "detector", "status", "daq/images_lost_in_pipeline")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = [p for p in child_pids(app) if Path(f"/proc/{p}/comm").read_text().startswith("pipeline-w")]
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.5)
    assert workers[0] not in now and len(now) == 2  # replaced
    assert any("pipeline worker 0" in line and "replaced" in line for line in server.output)
    assert in_files + lost_in_pipeline == nimages
    assert lost_in_pipeline == 0 and in_files == nimages  # the frames the dead worker held went to the others
