"""Detector models: EIGER2 (with the 4M ROI of 9M/16M), PILATUS4-like and the fast ASIC in its readout modes."""

from __future__ import annotations

import pytest
from detector_sizes import REAL_EIGER2_SIZES, REAL_PILATUS4_SIZES

from opendcu.geometry import MODELS, DetectorLayout, get_model


@pytest.mark.parametrize("name", sorted(n for n in MODELS if n.startswith("pilatus4")))
def test_pilatus4_models_have_real_pilatus4_sizes_and_150um_pixels(name):
    model = get_model(name)
    assert model.shape in REAL_PILATUS4_SIZES and model.module.shape == (255, 513)
    assert model.module.pixel_size_m == 150e-6 and (model.gap_rows, model.gap_cols) == (20, 7)
    assert DetectorLayout(model).col_map.size == 513  # the split chip-border pixel


def test_pilatus4_4m_matches_pyfai():
    assert get_model("pilatus4-4m").shape == (2180, 2073) and get_model("pilatus4-1m").shape == (1080, 1033)


@pytest.mark.parametrize(
    "parent,modules",
    [
        ("eiger2-9m", [3, 4, 6, 7, 9, 10, 12, 13]),
        ("eiger2-16m", [9, 10, 13, 14, 17, 18, 21, 22]),
    ],
)
def test_roi_4m_of_9m_and_16m(parent, modules):
    full = get_model(parent)
    roi = full.roi("4M")
    assert roi.shape == (2162, 2068) in REAL_EIGER2_SIZES and roi.n_modules == 8
    assert [roi.physical_module(m) for m in range(8)] == modules
    assert roi.physical_model is full and roi.module is full.module
    assert roi.module_position(0) == full.module_position(modules[0])
    assert full.roi("disabled") is full
    with pytest.raises(ValueError, match="no roi_mode '2M'"):
        full.roi("2M")
    with pytest.raises(ValueError, match="no roi_mode"):
        get_model("eiger2-4m").roi("4M")


@pytest.mark.parametrize(
    "name,shape,pixel,bits,counter",
    [
        ("fastasic", (192, 192), 100e-6, 12, "uint12"),
        ("fastasic-8bit", (192, 192), 100e-6, 8, "float8"),
        ("fastasic-bin2", (96, 96), 200e-6, 12, "uint12"),
        ("fastasic-bin2-8bit", (96, 96), 200e-6, 8, "float8"),
    ],
)
def test_fast_asic_readout_modes(name, shape, pixel, bits, counter):
    model = get_model(name)
    assert model.shape == shape and model.module.pixel_size_m == pixel
    assert model.module.bit_depth_readout == bits and model.module.counter == counter
    assert model.module.sensor_shape == (192, 192) and model.max_frame_rate == 120_000


def test_module_type_codes_are_distinct():
    codes = {m.module.name.split("-")[0]: m.module.udp_detector_type for m in MODELS.values()}
    assert len(set(codes.values())) == len(codes) == 3
