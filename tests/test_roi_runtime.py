"""roi_mode 4M at run time (the acquisition on the in-process module backend, real UDP data packets): an EIGER2
9M reads out only the 8 modules of its 4M region; only they are configured and triggered and send, the DAQ
expects only their packets, and the images have the 4M shape with the pixels those modules rendered."""

from __future__ import annotations

import threading
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from inprocess_dcu import inprocess_dcu

from opendcu.geometry import DetectorLayout, get_model
from opendcu.hardware.udp_packet import DEFAULT_PAYLOAD, PacketLayout
from opendcu.simplon.errors import InvalidValue
from opendcu.simulator.physics import ModuleRenderer
from opendcu.simulator.scenes import make_scene

SCENE = {"kind": "flood", "flux": 2.0}
NIMAGES, COUNT_TIME = 3, 0.009


def test_roi_4m_of_a_9m_reads_out_only_its_modules(tmp_path):
    detector = get_model("eiger2-9m")
    roi = detector.roi("4M")
    with inprocess_dcu(tmp_path, "eiger2-9m", scene=SCENE) as dcu:
        det = dcu.detector
        # the whole 9M cannot run at 500 Hz; its 4M region can (frame_time minimum of the ROI)
        with pytest.raises(InvalidValue):
            det.set("frame_time", 0.002)
        det.set("roi_mode", "4M")
        assert (det["y_pixels_in_detector"], det["x_pixels_in_detector"]) == roi.shape == (2162, 2068)
        det.set("frame_time", 0.002)
        for key, value in [("nimages", NIMAGES), ("frame_time", 0.01), ("count_time", COUNT_TIME)]:
            det.set(key, value)
        dcu.filewriter.set("mode", "enabled")
        series_id = det.command("arm", None)
        det.command("trigger", None)
        assert dcu.status("state") == "idle"
        npackets = PacketLayout.for_module(detector.module, DEFAULT_PAYLOAD).npackets
        assert dcu.status("daq/modules_read_out") == 8
        assert dcu.status("daq/packets_expected") == NIMAGES * 8 * npackets
        assert dcu.status("daq/packets_received") == NIMAGES * 8 * npackets
        assert dcu.status("daq/packets_lost") == 0
        assert dcu.status("daq/packets_foreign") == 0  # the other 10 modules were never triggered
        assert dcu.status("daq/frames_complete") == NIMAGES
        assert dcu.status("daq/efficiency") == 1.0
        sent = {m.module_id: m.frames_sent for m in dcu.modules.modules.values()}
        assert sorted(i for i, n in sent.items() if n) == list(DetectorLayout(detector, "4M").modules)

        # a long ROI series aborted: only the ROI's modules are stopped; every image they sent is complete
        det.set("nimages", 1000)
        det.command("arm", None)
        trigger = threading.Thread(target=lambda: det.command("trigger", None))
        trigger.start()
        deadline = time.monotonic() + 20
        while dcu.status("daq/frames_complete") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        det.command("abort", None)
        trigger.join(30)
        assert dcu.status("state") == "idle" and dcu.status("daq/modules_read_out") == 8
        done = dcu.status("daq/frames_complete")
        assert 3 <= done < 1000 and dcu.status("daq/packets_foreign") == 0
        assert dcu.status("daq/packets_received") >= done * 8 * npackets
    with h5py.File(tmp_path / f"series_{series_id}_master.h5") as f:
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
