"""Other module types through the whole DCU: `dcu serve` with a PILATUS4-like detector, the fast module (binned,
8-bit float counters) and an EIGER2 9M in its 4M ROI; files checked pixel by pixel against the simulator."""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from conftest import start_dcu
from detector_config import default_energies

from opendcu.app_calibration.store import nominal_set
from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.physics import ModuleRenderer
from opendcu.simulator.scenes import make_scene

pytestmark = pytest.mark.integration
V = "/detector/api/1.8.0"


@pytest.mark.parametrize("detector", ["pilatus4-260k", "fastasic-bin2-8bit", "eiger2-9m-roi4m"])
def test_series_of_other_detectors_reach_the_file_exactly(tmp_path, detector):
    server = start_dcu(tmp_path, detector=detector)
    try:
        with server.client() as http:
            assert http.put(f"{V}/command/initialize").status_code == 200
            # one sub-frame per image (auto_summation false; the fast module would sum 71 of its 12-bit frames)
            for key, value in [("nimages", 2), ("frame_time", 0.01), ("count_time", 0.009), ("auto_summation", False)]:
                assert http.put(f"{V}/config/{key}", json={"value": value}).status_code == 200
            assert http.put("/filewriter/api/1.8.0/config/mode", json={"value": "enabled"}).status_code == 200
            series_id = http.put(f"{V}/command/arm").json()["sequence id"]
            assert http.put(f"{V}/command/trigger").status_code == 200
            assert http.get(f"{V}/status/daq/efficiency").json()["value"] == 1.0
        model = get_model(detector)
        layout = DetectorLayout(model)
        with h5py.File(server.data_dir / f"series_{series_id}_master.h5") as f:
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
    finally:
        server.stop()
