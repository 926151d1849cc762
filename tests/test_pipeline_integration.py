"""The image-processing switches end to end: SIMPLON PUTs -> simulated modules -> DAQ -> pipeline workers ->
FileWriter, with the file's pixels and chunk bytes checked against the numpy reference of the raw frames."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from conftest import start_dcu
from detector_config import default_energies, offline_detector
from pipeline_reference import reference_image

from opendcu.app_detector.pipeline.params import apply_calibration, series_settings
from opendcu.codecs import get_codec
from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.physics import render_module_frame
from opendcu.simulator.scenes import make_scene

pytestmark = pytest.mark.integration
V = "/detector/api/1.8.0"
DETECTOR = "eiger2-500k"
SCENE = '{"kind": "pattern"}'  # exact counts up to 4092: the count-rate table, E3M5 steps and flatfield all act

CASES = [
    {"virtual_pixel_correction_applied": True, "mask_to_zero": True, "compression": "lz4"},
    {"float8_encoding_applied": True, "compression": "none"},
    {"binning_2x2_applied": True, "countrate_correction_applied": False},
    {"flatfield_correction_applied": False, "pixel_mask_applied": False, "compression": "bslz4"},
]
DEFAULTS = {
    "virtual_pixel_correction_applied": False,
    "mask_to_zero": False,
    "compression": "bslz4",
    "float8_encoding_applied": False,
    "binning_2x2_applied": False,
    "countrate_correction_applied": True,
    "flatfield_correction_applied": True,
    "pixel_mask_applied": True,
}


def from_darray(value: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(value["data"]), dtype=value["type"]).reshape(value["shape"])


def raw_frames(series_id: int, frame_number: int, nsub: int) -> np.ndarray:
    """What the simulated modules sent: [nsub sub-frames (auto-summation), modules, rows, cols]."""
    model = get_model(DETECTOR)
    layout = DetectorLayout(model)
    scene = make_scene(model, series_id, SCENE)
    energies = default_energies(model)
    return np.stack(
        [
            np.stack(
                [
                    render_module_frame(
                        scene, layout, m, frame_number, seed=series_id, subframe=s, nsubframes=nsub, **energies
                    )
                    for m in range(model.n_modules)
                ]
            )
            for s in range(nsub)
        ]
    )


def test_switches_end_to_end(tmp_path):
    model = get_model(DETECTOR)
    mirror = offline_detector(model)
    server = start_dcu(tmp_path, detector=DETECTOR, extra=["--scene", SCENE])
    try:
        with server.client() as http:
            assert http.put(f"{V}/command/initialize").status_code == 200
            mask = from_darray(http.get(f"{V}/config/pixel_mask").json()["value"])
            flatfield = from_darray(http.get(f"{V}/config/flatfield").json()["value"])
            apply_calibration(mirror, SimpleNamespace(pixel_mask=mask, flatfield=flatfield))
            assert http.put("/filewriter/api/1.8.0/config/mode", json={"value": "enabled"}).status_code == 200
            for key, value in [("nimages", 2), ("frame_time", 0.05), ("count_time", 0.045)]:
                assert http.put(f"{V}/config/{key}", json={"value": value}).status_code == 200
                mirror.set(key, value)
            for case in CASES:
                for key, value in {**DEFAULTS, **case}.items():
                    r = http.put(f"{V}/config/{key}", json={"value": value})
                    assert r.status_code == 200, r.text
                    assert r.json() == mirror.set(key, value)  # the same changed keys as the local mirror
                assert http.get(f"{V}/config/bit_depth_image").json()["value"] == mirror["bit_depth_image"]
                series_id = http.put(f"{V}/command/arm").json()["sequence id"]
                assert http.put(f"{V}/command/trigger").status_code == 200
                settings = series_settings(mirror, model, series_id, 2)
                assert settings.nframes_sum == 3  # auto-summation: 45 ms are three 15 ms sub-frames
                check_files(server.data_dir, settings, mask, flatfield)
    finally:
        server.stop()


def check_files(data_dir, settings, mask: np.ndarray, flatfield: np.ndarray) -> None:
    codec = get_codec(settings.compression)
    with h5py.File(data_dir / f"series_{settings.series_id}_data_000001.h5") as f:
        data = f["/entry/data/data"]
        assert data.shape == (2, *settings.image_shape) and data.dtype == settings.dtype
        filt = codec.hdf5_filter(settings.dtype)
        if filt is not None:
            assert data.id.get_create_plist().get_filter(0)[0] == filt.filter_id
        for i in range(2):
            want = reference_image(
                raw_frames(settings.series_id, i + 1, settings.nframes_sum), settings, mask, flatfield
            )
            np.testing.assert_array_equal(data[i], want)
            _, chunk = data.id.read_direct_chunk((i, 0, 0))
            assert chunk == codec.encode(want).tobytes()  # compressed once: the file holds the pipeline's bytes
