"""The walking skeleton end to end: REST -> gRPC -> app-detector -> UDP modules -> DAQ -> pipeline ->
FileWriter -> HDF5 files, over real processes, checked pixel by pixel against the simulator's frames."""

from __future__ import annotations

import signal
import threading
import time
from functools import lru_cache
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from calibration_truth import install_truth_set, true_calibration
from conftest import DcuServer, child_pids, start_dcu
from detector_config import default_energies

from opendcu.app_calibration.store import nominal_set
from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.physics import render_module_frame
from opendcu.simulator.scenes import make_scene

pytestmark = pytest.mark.integration
V = "/detector/api/1.8.0"


def expected_image(detector: str, series_id: int, frame_number: int, count_time: float) -> np.ndarray:
    """What the file must hold on unmasked pixels: the simulator's read-out frames, placed with the reference
    placement (masked pixels: see `calibration_mask`)."""
    model = get_model(detector)
    layout = DetectorLayout(model)
    scene = _flood(detector, series_id, count_time)
    image = np.full(model.shape, 0xFFFF, dtype=np.int64)
    for m in range(model.n_modules):
        # the DCU seeds with the series id and configures its default energies
        raw = render_module_frame(scene, layout, m, frame_number, seed=series_id, **default_energies(model))
        image[layout.module_slices(m)] = layout.place_module_reference(raw, 0xFFFF)
    return image


@lru_cache(maxsize=8)
def _flood(detector: str, series_id: int, count_time: float):
    """The scene of a series (one object per series, so that its modules' noise banks are built once)."""
    return make_scene(detector, series_id, {"kind": "flood", "flux": 2.0, "experiment": {"count_time_s": count_time}})


def calibration_mask(detector: str) -> np.ndarray:
    """The pixel mask of a fresh calibration dir (nothing measured yet): the nominal one, gaps only."""
    return nominal_set(detector).pixel_mask


def alive(pids: list[int], wait: float) -> dict[int, str]:
    """Which of `pids` still run (zombies waiting to be reaped do not count), after waiting up to `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        running = {}
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    running[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                pass
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)


def run_series(http, nimages: int, frame_time: float = 0.05, ntrigger: int = 1) -> int:
    # one sub-frame per image (auto_summation false): the images are the modules' frames as rendered
    for key, value in [
        ("nimages", nimages),
        ("ntrigger", ntrigger),
        ("frame_time", frame_time),
        ("count_time", frame_time * 0.9),
        ("auto_summation", False),
    ]:
        r = http.put(f"{V}/config/{key}", json={"value": value})
        assert r.status_code == 200, r.text
        assert key in r.json()
    assert http.put("/filewriter/api/1.8.0/config/mode", json={"value": "enabled"}).status_code == 200
    r = http.put(f"{V}/command/arm")
    assert r.status_code == 200
    series_id = r.json()["sequence id"]
    for _ in range(ntrigger):
        assert http.put(f"{V}/command/trigger").status_code == 200
    return series_id


def test_full_path_pixels_and_states(dcu: DcuServer):
    with dcu.client() as http:

        def state() -> str:
            answer = http.get(f"{V}/status/state").json()
            assert answer["value_type"] == "string" and answer["access_mode"] == "r"
            return answer["value"]

        seen = [state()]
        # a measured calibration set (here: the simulator's truth as one) in the DCU's calibration dir, active
        # from the initialize on: the master's mask carries the dead, hot and badly responding pixels
        install_truth_set(dcu.data_dir.parent / "opendcu-calibration", dcu.detector, (8047.78,))
        assert http.put(f"{V}/command/initialize").status_code == 200
        seen.append(state())
        # one sub-frame per image (auto_summation false): uint16 images, the module's frames as rendered
        for key, value in [("nimages", 5), ("frame_time", 0.1), ("count_time", 0.09), ("auto_summation", False)]:
            assert http.put(f"{V}/config/{key}", json={"value": value}).status_code == 200
        assert http.put("/filewriter/api/1.8.0/config/mode", json={"value": "enabled"}).status_code == 200
        r = http.put(f"{V}/command/arm")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        series_id = r.json()["sequence id"]
        seen.append(state())
        trigger = threading.Thread(target=lambda: dcu.client().put(f"{V}/command/trigger"))
        trigger.start()
        while trigger.is_alive():  # the ints trigger blocks while the 5 images (0.5 s) are taken
            if (s := state()) != seen[-1]:
                seen.append(s)
        trigger.join()
        if (s := state()) != seen[-1]:
            seen.append(s)
        assert seen == ["na", "idle", "ready", "acquire", "idle"]
        assert series_id == 1

        files = http.get("/filewriter/api/1.8.0/status/files").json()["value"]
        assert files == ["series_1_data_000001.h5", "series_1_master.h5"]

    master = dcu.data_dir / "series_1_master.h5"
    layout = DetectorLayout(get_model(dcu.detector))
    with h5py.File(master) as f:
        data = f["/entry/data/data_000001"]
        assert data.shape == (5, 512, 1028) and data.dtype == np.uint16
        assert data.chunks == (1, 512, 1028)
        assert data.id.get_create_plist().get_filter(0)[0] == 32008
        assert data.attrs["image_nr_low"] == 1 and data.attrs["image_nr_high"] == 5
        assert list(f["/entry/instrument/detector/module/data_size"][()]) == [512, 1028]
        mask = f["/entry/instrument/detector/detectorSpecific/pixel_mask"][()]
        np.testing.assert_array_equal(mask, true_calibration(dcu.detector, 8047.78, 4023.89).pixel_mask)
        assert np.array_equal(mask & 1 != 0, layout.gap_mask) and (mask[~layout.gap_mask] != 0).sum() > 0
        for i in range(5):
            got = data[i]
            want = expected_image(dcu.detector, series_id, i + 1, count_time=0.09)
            valid = mask == 0
            np.testing.assert_array_equal(got[valid], want[valid])
            assert np.all(got[~valid] == 0xFFFF)  # gaps and defective pixels carry the mask value


def test_multi_module_detector_and_data_files(tmp_path: Path):
    """A 1M (2 modules, one gap band) with 2 triggers split over data files of 3 images."""

    server = start_dcu(tmp_path, detector="eiger2-1m")
    try:
        with server.client() as http:
            http.put(f"{V}/command/initialize")
            assert http.put("/filewriter/api/1.8.0/config/nimages_per_file", json={"value": 3}).status_code == 200
            series_id = run_series(http, nimages=2, ntrigger=2, frame_time=0.03)
            assert http.get(f"{V}/status/state").json()["value"] == "idle"
            names = http.get("/filewriter/api/1.8.0/status/files").json()["value"]
            assert names == ["series_1_data_000001.h5", "series_1_data_000002.h5", "series_1_master.h5"]
            r = http.head("/data/series_1_data_000002.h5")
            assert (
                r.status_code == 200 and int(r.headers["content-length"]) == (server.data_dir / names[1]).stat().st_size
            )
            body = http.get("/data/series_1_data_000001.h5").content
            assert body[:8] == b"\x89HDF\r\n\x1a\n"
        with h5py.File(server.data_dir / "series_1_master.h5") as f:
            images = np.concatenate([f["/entry/data/data_000001"][()], f["/entry/data/data_000002"][()]])
            assert f["/entry/data/data_000002"].attrs["image_nr_low"] == 4
        assert images.shape == (4, 1062, 1028)
        for i in range(4):
            want = expected_image("eiger2-1m", series_id, i + 1, count_time=0.03 * 0.9)
            valid = calibration_mask("eiger2-1m") == 0
            np.testing.assert_array_equal(images[i][valid], want[valid])
        assert np.all(images[:, 512:550, :] == 0xFFFF)  # the 38-row gap between the modules
    finally:
        server.stop()


def test_bad_values_are_rejected_and_server_keeps_serving(dcu: DcuServer):
    with dcu.client() as http:
        r = http.get(f"{V}/config/nimages")
        assert r.status_code == 404 and "does not exist" in r.text  # not initialized yet
        http.put(f"{V}/command/initialize")
        cases = [
            ("nimages", "ten", 400, "expected a uint"),
            ("nimages", 0, 400, "below the minimum"),
            ("count_time", -0.5, 400, "below the minimum"),
            ("trigger_mode", "sometimes", 400, "not one of"),
            ("no_such_key", 1, 404, "does not exist"),
            ("description", "mine", 400, "read-only"),
        ]
        for key, value, code, text in cases:
            r = http.put(f"{V}/config/{key}", json={"value": value})
            assert r.status_code == code, (key, r.status_code, r.text)
            assert text in r.text
        assert http.put(f"{V}/config/nimages", content=b"{not json").status_code == 400
        assert http.put(f"{V}/config/nimages", json={"val": 3}).status_code == 400
        assert http.get("/detector/api/9.9.9/config/nimages").status_code == 404
        assert http.put(f"{V}/command/trigger").status_code == 400  # not armed
        assert http.put(f"{V}/command/fly").status_code == 404
        # still serving, and the rejected writes changed nothing
        assert http.get(f"{V}/config/nimages").json()["value"] == 1
        assert http.get(f"{V}/status/state").json()["value"] == "idle"


def test_stop_leaves_no_children_and_no_partial_files(dcu: DcuServer):
    with dcu.client() as http:
        http.put(f"{V}/command/initialize")
        run_series(http, nimages=2, frame_time=0.02)
        # start a long series (1000 s) and stop the server in the middle of it
        http.put(f"{V}/config/nimages", json={"value": 100000})
        http.put(f"{V}/config/frame_time", json={"value": 0.01})
        assert http.put(f"{V}/command/arm").status_code == 200
    children = child_pids(dcu.process.pid)
    assert len(children) >= 3  # simulator, app-calibration, app-detector (+ pipeline workers)
    trigger = threading.Thread(target=lambda: dcu.client().put(f"{V}/command/trigger"), daemon=True)
    trigger.start()
    with dcu.client() as http:  # stop it once images flow (the series is then being written)
        deadline = time.monotonic() + 120
        while http.get(f"{V}/status/daq/frames_complete").json()["value"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert dcu.stop(signal.SIGTERM) == 0
    assert alive(children, wait=5) == {}
    names = sorted(p.name for p in dcu.data_dir.rglob("*"))
    assert not [n for n in names if n.endswith(".part")], names
    # the interrupted series' data file was closed and is readable, truncated to the images written
    with h5py.File(dcu.data_dir / "series_2_master.h5") as f:
        n = f["/entry/data/data_000001"].shape[0]
        assert 0 < n < 100000
        assert f["/entry/data/data_000001"].attrs["image_nr_high"] == n


def test_a_dcu_stopped_right_after_start_stops_cleanly(tmp_path: Path):
    """Ctrl-C while the analysis workers still warm up (load or compile their kernels): every process stops when
    asked, none is terminated or killed by its parent, and no traceback is printed. (The workers were deaf to
    their inbox and, inside numba's kernel load, to SIGTERM: 10 s and two ERROR lines per such stop.)"""
    server = start_dcu(tmp_path)
    assert server.stop(signal.SIGINT) == 0
    output = "".join(server.output)
    for sign in ("did not stop within", "survived SIGTERM", "killing it", "Traceback", "Exception ignored"):
        assert sign not in output, output[-3000:]
