"""roi_mode 4M at run time (real processes): an EIGER2 9M reads out only the 8 modules of its 4M region; only
they are configured and triggered and send, the DAQ expects only their packets, and the images have the 4M shape
with the pixels those modules rendered."""

from __future__ import annotations

import json
import threading
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from conftest import start_dcu

from opendcu.geometry import DetectorLayout, get_model
from opendcu.hardware.udp_packet import DEFAULT_PAYLOAD, PacketLayout
from opendcu.simulator.physics import ModuleRenderer
from opendcu.simulator.scenes import make_scene

pytestmark = pytest.mark.integration
V = "/detector/api/1.8.0"
SCENE = {"kind": "flood", "flux": 2.0}
NIMAGES, COUNT_TIME = 3, 0.009


def get(http, key: str, task: str = "config"):
    return http.get(f"{V}/{task}/{key}").json()["value"]


def test_roi_4m_of_a_9m_reads_out_only_its_modules(tmp_path):
    detector = get_model("eiger2-9m")
    roi = detector.roi("4M")
    server = start_dcu(tmp_path, detector="eiger2-9m", extra=["--scene", json.dumps(SCENE)])
    try:
        with server.client() as http:
            assert http.put(f"{V}/command/initialize").status_code == 200
            # the whole 9M cannot run at 500 Hz; its 4M region can (frame_time minimum of the ROI)
            assert http.put(f"{V}/config/frame_time", json={"value": 0.002}).status_code == 400
            assert http.put(f"{V}/config/roi_mode", json={"value": "4M"}).status_code == 200
            assert (get(http, "y_pixels_in_detector"), get(http, "x_pixels_in_detector")) == roi.shape == (2162, 2068)
            assert http.put(f"{V}/config/frame_time", json={"value": 0.002}).status_code == 200
            for key, value in [("nimages", NIMAGES), ("frame_time", 0.01), ("count_time", COUNT_TIME)]:
                assert http.put(f"{V}/config/{key}", json={"value": value}).status_code == 200
            assert http.put("/filewriter/api/1.8.0/config/mode", json={"value": "enabled"}).status_code == 200
            r = http.put(f"{V}/command/arm")
            assert r.status_code == 200, r.text
            series_id = r.json()["sequence id"]
            assert http.put(f"{V}/command/trigger").status_code == 200
            assert get(http, "state", "status") == "idle"
            npackets = PacketLayout.for_module(detector.module, DEFAULT_PAYLOAD).npackets
            assert get(http, "daq/modules_read_out", "status") == 8
            assert get(http, "daq/packets_expected", "status") == NIMAGES * 8 * npackets
            assert get(http, "daq/packets_received", "status") == NIMAGES * 8 * npackets
            assert get(http, "daq/packets_lost", "status") == 0
            assert get(http, "daq/packets_foreign", "status") == 0  # the other 10 modules were never triggered
            assert get(http, "daq/frames_complete", "status") == NIMAGES
            assert get(http, "daq/efficiency", "status") == 1.0

            # a long ROI series aborted: only the ROI's modules are stopped; every image they sent is complete
            assert http.put(f"{V}/config/nimages", json={"value": 1000}).status_code == 200
            assert http.put(f"{V}/command/arm").status_code == 200
            trigger = threading.Thread(target=lambda: server.client().put(f"{V}/command/trigger"))
            trigger.start()
            deadline = time.monotonic() + 20
            while get(http, "daq/frames_complete", "status") < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert http.put(f"{V}/command/abort").status_code == 200
            trigger.join(30)
            assert get(http, "state", "status") == "idle" and get(http, "daq/modules_read_out", "status") == 8
            done = get(http, "daq/frames_complete", "status")
            assert 3 <= done < 1000 and get(http, "daq/packets_foreign", "status") == 0
            assert get(http, "daq/packets_received", "status") >= done * 8 * npackets
        with h5py.File(server.data_dir / f"series_{series_id}_master.h5") as f:
            images = f["/entry/data/data_000001"][()]
            mask = f["/entry/instrument/detector/detectorSpecific/pixel_mask"][()]
        assert images.shape == (NIMAGES, *roi.shape) and images.dtype == np.uint16
        layout = DetectorLayout(roi)
        assert np.array_equal(mask & 1 != 0, layout.gap_mask)
        # the modules render as modules of the ROI (their physical ids: 9M modules 3..10)
        assert [roi.physical_module(i) for i in range(roi.n_modules)] == list(DetectorLayout(detector, "4M").modules)
        scene = make_scene(roi, series_id, {**SCENE, "experiment": {"count_time_s": COUNT_TIME}})
        renderers = [
            ModuleRenderer(scene, roi, m, series_id, COUNT_TIME, photon_energy=8047.78, threshold_energy=4023.89)
            for m in range(roi.n_modules)
        ]
        valid = mask == 0
        for i in range(NIMAGES):
            want = np.full(roi.shape, 0xFFFF, dtype=np.int64)
            for m, renderer in enumerate(renderers):
                want[layout.module_slices(m)] = layout.place_module_reference(renderer.render(i + 1), 0xFFFF)
            np.testing.assert_array_equal(images[i][valid], want[valid])
            assert np.all(images[i][~valid] == 0xFFFF)
    finally:
        server.stop()
