"""Auto-summation end to end (real processes): REST keys -> arm (nsubframes to the modules, DAQ, pipeline) ->
HDF5 images that are the 32-bit sums of the sub-frames the simulated modules rendered; and the arm refusal when
an image needs more sub-frames than the DAQ's raw slots hold (`dcu serve --max-nframes-sum`)."""

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


def put(http, key: str, value, module: str = "detector") -> None:
    r = http.put(f"/{module}/api/1.8.0/config/{key}", json={"value": value})
    assert r.status_code == 200, (key, r.text)


def get(http, key: str, task: str = "config"):
    return http.get(f"{V}/{task}/{key}").json()["value"]


def summed_reference(series_id: int, frame_number: int, count_time: float, nsub: int, cutoff: int) -> np.ndarray:
    """The image the DCU must produce: the sum of the module's `nsub` rendered sub-frames, each placed into
    virtual pixels (the pipeline's order: placement, then summation); a pixel that is saturated in any sub-frame
    (or sums beyond the cutoff) is the 32-bit error value."""
    model = get_model("eiger2-500k")
    layout = DetectorLayout(model)
    scene = make_scene(model, series_id, {**SCENE, "experiment": {"count_time_s": COUNT_TIME}})
    renderer = ModuleRenderer(scene, model, 0, series_id, COUNT_TIME, nsub, photon_energy=8047.78,
                              threshold_energy=4023.89)
    placed = np.stack([layout.place_module_reference(renderer.render(frame_number, s, count_time), SATURATED)
                       for s in range(nsub)])
    total = placed.sum(axis=0)
    total[(placed == SATURATED).any(axis=0) | (total > cutoff)] = ERROR32
    image = np.full(model.shape, ERROR32, dtype=np.int64)
    image[layout.module_slices(0)] = total
    return image


def test_summed_series_and_refused_arm(tmp_path):
    server = start_dcu(tmp_path, extra=["--max-nframes-sum", "4", "--scene", json.dumps(SCENE)])
    try:
        with server.client() as http:
            assert http.put(f"{V}/command/initialize").status_code == 200
            # raw sums: no count-rate correction, no flatfield
            put(http, "countrate_correction_applied", False)
            put(http, "flatfield_correction_applied", False)

            # (c) 80 ms needs 5 sub-frames of <= 17.5 ms, the raw slots hold 4: arm is refused, the DCU stays idle
            put(http, "frame_time", 0.1)
            put(http, "count_time", 0.08)
            assert get(http, "nframes_sum") == 5
            r = http.put(f"{V}/command/arm")
            assert r.status_code == 400
            assert "5 sub-frames" in r.text and "at most 4" in r.text and "--max-nframes-sum" in r.text
            assert get(http, "state", "status") == "idle"

            # (b) 45 ms: three sub-frames of 15 ms summed into 32-bit images
            put(http, "trigger_mode", "inte")
            put(http, "ntrigger", 2)
            put(http, "frame_time", FRAME_TIME)
            put(http, "count_time", COUNT_TIME)
            assert get(http, "nframes_sum") == 3 and get(http, "bit_depth_image") == 32
            assert get(http, "frame_count_time") == pytest.approx(COUNT_TIME / 3)
            assert get(http, "frame_period") == pytest.approx(FRAME_TIME / 3)
            cutoff = get(http, "countrate_correction_count_cutoff")
            put(http, "mode", "enabled", module="filewriter")
            r = http.put(f"{V}/command/arm")  # the next valid arm works
            assert r.status_code == 200, r.text
            series_id = r.json()["sequence id"]
            # image 1: the configured count time; image 2: a longer inte trigger whose 20 ms sub-frames saturate
            assert http.put(f"{V}/command/trigger").status_code == 200
            assert http.put(f"{V}/command/trigger", json={"value": LONG_GATE}).status_code == 200
            assert get(http, "state", "status") == "idle"
            npackets = PacketLayout.for_module(get_model("eiger2-500k").module, DEFAULT_PAYLOAD).npackets
            assert get(http, "daq/packets_expected", "status") == 2 * 3 * npackets
            assert get(http, "daq/packets_lost", "status") == 0
            assert get(http, "daq/efficiency", "status") == 1.0
        with h5py.File(server.data_dir / f"series_{series_id}_master.h5") as f:
            images = f["/entry/data/data_000001"][()]
            mask = f["/entry/instrument/detector/detectorSpecific/pixel_mask"][()]
            assert f["/entry/instrument/detector/bit_depth_image"][()] == 32
        assert images.dtype == np.uint32 and images.shape == (2, 512, 1028)
        valid = mask == 0
        assert np.all(images[:, ~valid] == ERROR32)  # gaps and defective pixels carry the mask value
        for i, count_time in enumerate((COUNT_TIME, LONG_GATE)):
            want = summed_reference(series_id, i + 1, count_time, 3, cutoff)
            np.testing.assert_array_equal(images[i][valid], want[valid])
        first, second = images[0][valid], images[1][valid]
        assert first.max() > 0xFFFF and not (first == ERROR32).any()  # sums beyond 16 bit, none saturated
        saturated = (second == ERROR32).mean()
        assert 0.05 < saturated < 0.95  # saturated sub-frames came through as the error value, the rest as sums
    finally:
        server.stop()
