"""Auto-summation end to end (real processes): REST keys -> arm (nsubframes to the modules, DAQ, pipeline) ->
HDF5 images that are the 32-bit sums of the sub-frames the simulated modules rendered; the raw buffer re-cut per
series (`daq/raw_slots`) between single-frame and summed series; and the arm refusal when fewer than two images
of a series fit the raw buffer (`dcu serve --raw-buffer-mib`)."""

from __future__ import annotations

import json

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from conftest import start_dcu

from opendcu.geometry import DetectorLayout, get_model
from opendcu.hardware.counters import SATURATED
from opendcu.hardware.udp_packet import DEFAULT_PAYLOAD, PacketLayout
from opendcu.simulator.physics import ModuleRenderer
from opendcu.simulator.scenes import make_scene

pytestmark = pytest.mark.integration
V = "/detector/api/1.8.0"
#: photons per pixel and second: a 15 ms sub-frame counts ~49k (three of them exceed 16 bit), a 20 ms one ~66k,
#: around the counter's top, so that some sub-frames saturate
FLUX = 6e6
SCENE = {"kind": "flood", "flux": FLUX}
COUNT_TIME, FRAME_TIME, LONG_GATE = 0.045, 0.05, 0.06
ERROR32 = 0xFFFFFFFF
ERROR16 = 0xFFFF
#: raw buffer of the test server: 8 frames of the 500K's single module (1 MiB of raw pixels each)
RAW_MIB = 8


def put(http, key: str, value, module: str = "detector") -> None:
    r = http.put(f"/{module}/api/1.8.0/config/{key}", json={"value": value})
    assert r.status_code == 200, (key, r.text)


def get(http, key: str, task: str = "config"):
    return http.get(f"{V}/{task}/{key}").json()["value"]


def summed_reference(
    series_id: int,
    frame_number: int,
    count_time: float,
    nsub: int,
    cutoff: int,
    error: int = ERROR32,
    scene_count_time: float = COUNT_TIME,
) -> np.ndarray:
    """The image the DCU must produce: the sum of the module's `nsub` rendered sub-frames, each placed into
    virtual pixels (the pipeline's order: placement, then summation); a pixel that is saturated in any sub-frame
    (or sums beyond the cutoff) is the error value (32-bit images; 16-bit without summation)."""
    model = get_model("eiger2-500k")
    layout = DetectorLayout(model)
    scene = make_scene(model, series_id, {**SCENE, "experiment": {"count_time_s": scene_count_time}})
    renderer = ModuleRenderer(
        scene, model, 0, series_id, scene_count_time, nsub, photon_energy=8047.78, threshold_energy=4023.89
    )
    placed = np.stack(
        [layout.place_module_reference(renderer.render(frame_number, s, count_time), SATURATED) for s in range(nsub)]
    )
    total = placed.sum(axis=0)
    total[(placed == SATURATED).any(axis=0) | (total > cutoff)] = error
    image = np.full(model.shape, error, dtype=np.int64)
    image[layout.module_slices(0)] = total
    return image


def single_frame_series(http, nimages: int) -> int:
    """Acquire `nimages` 16-bit images of one sub-frame each (auto_summation false); returns the series id."""
    put(http, "auto_summation", False)
    put(http, "trigger_mode", "ints")
    put(http, "ntrigger", 1)
    put(http, "nimages", nimages)
    put(http, "frame_time", SINGLE_FRAME_TIME)
    put(http, "count_time", SINGLE_COUNT_TIME)
    assert get(http, "nframes_sum") == 1 and get(http, "bit_depth_image") == 16
    r = http.put(f"{V}/command/arm")
    assert r.status_code == 200, r.text
    assert http.put(f"{V}/command/trigger").status_code == 200
    assert get(http, "state", "status") == "idle"
    return r.json()["sequence id"]


def assert_images(server, series_id: int, count_times: list[float], nsub: int, cutoff: int, error: int) -> None:
    """The series' HDF5 images equal the renders of the simulated module, pixel for pixel."""
    with h5py.File(server.data_dir / f"series_{series_id}_master.h5") as f:
        images = f["/entry/data/data_000001"][()]
        mask = f["/entry/instrument/detector/detectorSpecific/pixel_mask"][()]
    assert images.shape == (len(count_times), 512, 1028)
    assert images.dtype == (np.uint32 if error == ERROR32 else np.uint16)
    valid = mask == 0
    assert np.all(images[:, ~valid] == error)  # gaps and defective pixels carry the mask value
    scene_count_time = count_times[0] if nsub == 1 else COUNT_TIME
    for i, count_time in enumerate(count_times):
        want = summed_reference(series_id, i + 1, count_time, nsub, cutoff, error, scene_count_time)
        np.testing.assert_array_equal(images[i][valid], want[valid])


#: single-frame series: 5 ms counts ~30k photons per pixel (16 bit)
SINGLE_COUNT_TIME, SINGLE_FRAME_TIME = 0.005, 0.01


def test_raw_buffer_repartitioned_per_series_and_refused_arm(tmp_path):
    """One server with an 8 MiB raw buffer: single frames (8 slots), a refused 5-sub-frame arm (two images need
    10 MiB), 3 sub-frames summed (2 slots), single frames again (8 slots); every image as the modules rendered it."""
    server = start_dcu(tmp_path, extra=["--raw-buffer-mib", str(RAW_MIB), "--scene", json.dumps(SCENE)])
    npackets = PacketLayout.for_module(get_model("eiger2-500k").module, DEFAULT_PAYLOAD).npackets
    try:
        with server.client() as http:
            assert http.put(f"{V}/command/initialize").status_code == 200
            # raw sums: no count-rate correction, no flatfield
            put(http, "countrate_correction_applied", False)
            put(http, "flatfield_correction_applied", False)
            put(http, "mode", "enabled", module="filewriter")
            cutoff16 = get(http, "countrate_correction_count_cutoff")

            # (1) single frames: the raw buffer holds 8 of them
            first = single_frame_series(http, 6)
            assert get(http, "daq/raw_slots", "status") == RAW_MIB
            assert get(http, "daq/packets_expected", "status") == 6 * npackets
            assert get(http, "daq/packets_lost", "status") == 0

            # (2) 80 ms needs 5 sub-frames of <= 17.5 ms: two such images need 10 MiB, the buffer has 8: refused,
            # the DCU stays idle and keeps its raw slots
            put(http, "auto_summation", True)
            put(http, "frame_time", 0.1)
            put(http, "count_time", 0.08)
            assert get(http, "nframes_sum") == 5
            r = http.put(f"{V}/command/arm")
            assert r.status_code == 400
            assert "5 sub-frames" in r.text and "10 MiB" in r.text and "--raw-buffer-mib" in r.text, r.text
            assert get(http, "state", "status") == "idle"
            assert get(http, "daq/raw_slots", "status") == RAW_MIB

            # (3) 45 ms: three sub-frames of 15 ms summed into 32-bit images; 2 raw slots of 3 MiB
            put(http, "trigger_mode", "inte")
            put(http, "ntrigger", 2)
            put(http, "frame_time", FRAME_TIME)
            put(http, "count_time", COUNT_TIME)
            assert get(http, "nframes_sum") == 3 and get(http, "bit_depth_image") == 32
            assert get(http, "frame_count_time") == pytest.approx(COUNT_TIME / 3)
            assert get(http, "frame_period") == pytest.approx(FRAME_TIME / 3)
            cutoff = get(http, "countrate_correction_count_cutoff")
            r = http.put(f"{V}/command/arm")  # the next valid arm works
            assert r.status_code == 200, r.text
            summed = r.json()["sequence id"]
            assert get(http, "daq/raw_slots", "status") == 2
            # image 1: the configured count time; image 2: a longer inte trigger whose 20 ms sub-frames saturate
            assert http.put(f"{V}/command/trigger").status_code == 200
            assert http.put(f"{V}/command/trigger", json={"value": LONG_GATE}).status_code == 200
            assert get(http, "state", "status") == "idle"
            assert get(http, "daq/packets_expected", "status") == 2 * 3 * npackets
            assert get(http, "daq/packets_lost", "status") == 0
            assert get(http, "daq/efficiency", "status") == 1.0

            # (4) single frames again: back to 8 slots, more images than slots (slots are reused)
            last = single_frame_series(http, 12)
            assert get(http, "daq/raw_slots", "status") == RAW_MIB
            assert get(http, "daq/packets_expected", "status") == 12 * npackets
            assert get(http, "daq/packets_lost", "status") == 0
            assert get(http, "daq/frames_lost", "status") == 0

        assert_images(server, first, [SINGLE_COUNT_TIME] * 6, 1, cutoff16, ERROR16)
        assert_images(server, last, [SINGLE_COUNT_TIME] * 12, 1, cutoff16, ERROR16)
        assert_images(server, summed, [COUNT_TIME, LONG_GATE], 3, cutoff, ERROR32)
        with h5py.File(server.data_dir / f"series_{summed}_master.h5") as f:
            images = f["/entry/data/data_000001"][()]
            valid = f["/entry/instrument/detector/detectorSpecific/pixel_mask"][()] == 0
        first_image, second_image = images[0][valid], images[1][valid]
        assert first_image.max() > 0xFFFF and not (first_image == ERROR32).any()  # sums beyond 16 bit, none saturated
        saturated = (second_image == ERROR32).mean()
        assert 0.05 < saturated < 0.95  # saturated sub-frames came through as the error value, the rest as sums
    finally:
        server.stop()


def test_4m_default_server_arms_a_one_second_image(tmp_path):
    """`dcu serve` as it starts by default (a 4M, 1 GiB raw buffer): the default count time of 1 s is 58 summed
    sub-frames of 8 modules, 464 MiB per image; two fit, so arm is accepted."""
    server = start_dcu(tmp_path, detector="eiger2-4m", buffers=None)
    try:
        with server.client() as http:
            assert http.put(f"{V}/command/initialize").status_code == 200
            assert get(http, "daq/raw_slots", "status") == 128  # single frames until a series says otherwise
            put(http, "nimages", 1)
            assert get(http, "auto_summation") is True and get(http, "count_time") == pytest.approx(1.0, abs=1e-6)
            assert get(http, "nframes_sum") == 58
            r = http.put(f"{V}/command/arm")
            assert r.status_code == 200, r.text
            assert get(http, "state", "status") == "ready"
            assert get(http, "daq/raw_slots", "status") == 2
            assert http.put(f"{V}/command/disarm").status_code == 200
            assert get(http, "state", "status") == "idle"
    finally:
        server.stop()
