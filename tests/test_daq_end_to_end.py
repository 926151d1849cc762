"""Other module types through the whole data path (the acquisition on the in-process module backend: real UDP
data packets, DAQ, pipeline workers and FileWriter): a PILATUS4-like detector, the fast module (binned, 8-bit
float counters) and an EIGER2 9M in its 4M ROI; files checked pixel by pixel against the simulator."""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from detector_config import default_energies
from inprocess_dcu import inprocess_dcu

from opendcu.app_calibration.store import nominal_set
from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.physics import ModuleRenderer
from opendcu.simulator.scenes import make_scene


@pytest.mark.parametrize("detector", ["pilatus4-260k", "fastasic-bin2-8bit", "eiger2-9m-roi4m"])
def test_series_of_other_detectors_reach_the_file_exactly(tmp_path, detector):
    with inprocess_dcu(tmp_path, detector) as dcu:
        # one sub-frame per image (auto_summation false; the fast module would sum 71 of its 12-bit frames)
        for key, value in [("nimages", 2), ("frame_time", 0.01), ("count_time", 0.009), ("auto_summation", False)]:
            dcu.detector.set(key, value)
        dcu.filewriter.set("mode", "enabled")
        series_id = dcu.detector.command("arm", None)
        dcu.detector.command("trigger", None)
        assert dcu.status("daq/efficiency") == 1.0
        dcu.detector.command("disarm", None)
        model = get_model(detector)
        layout = DetectorLayout(model)
        with h5py.File(tmp_path / f"series_{series_id}_master.h5") as f:
            images = f["/entry/data/data_000001"][()]
            mask = f["/entry/instrument/detector/detectorSpecific/pixel_mask"][()]
        assert images.shape == (2, *model.shape)
        np.testing.assert_array_equal(mask, nominal_set(detector).pixel_mask)  # a fresh calibration dir: nominal
        scene = make_scene(model, series_id, {"kind": "flood", "flux": 2.0, "experiment": {"count_time_s": 0.009}})
        renderers = [
            ModuleRenderer(scene, model, m, series_id, 0.009, **default_energies(model)) for m in range(model.n_modules)
        ]
        valid = mask == 0
        for i in range(2):
            want = np.full(model.shape, 0xFFFF, dtype=np.int64)
            for m, r in enumerate(renderers):
                want[layout.module_slices(m)] = layout.place_module_reference(r.render(i + 1), 0xFFFF)
            np.testing.assert_array_equal(images[i][valid], want[valid])
