"""Detector geometry: real EIGER2 sizes, gaps, and the virtual-pixel split rule."""

from __future__ import annotations

import numpy as np
import pytest
from detector_sizes import REAL_EIGER2_SIZES

from opendcu.geometry import MODELS, DetectorLayout, get_model


@pytest.mark.parametrize("name", sorted(n for n in MODELS if n.startswith("eiger")))
def test_every_eiger_model_has_a_real_eiger_size(name):
    assert get_model(name).shape in REAL_EIGER2_SIZES


def test_4m_size_and_gap_count_match_pyfai():
    layout = DetectorLayout(get_model("eiger2-4m"))
    assert layout.shape == (2162, 2068)
    assert int(layout.gap_mask.sum()) == 260328  # pyFAI eiger2_4m calc_mask()


def test_16m_layout():
    model = get_model("eiger2-16m")
    assert model.shape == (4362, 4148) and model.n_modules == 32
    assert model.module_origin(5) == (550, 1040)  # row 1, column 1: 512+38, 1028+12


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="unknown detector model"):
        get_model("eiger3-1g")


def test_split_conserves_counts_and_keeps_special_values():
    layout = DetectorLayout(get_model("eiger2-500k"))
    raw = np.random.default_rng(1).integers(0, 1000, (512, 1024)).astype(np.uint16)
    raw[10, 255] = 7
    raw[11, 256] = 0xFFFF
    placed = layout.place_module_reference(raw, special=0xFFFF)
    assert placed.shape == (512, 1028)
    # raw column 255 becomes virtual columns 255, 256: 7 -> 4 + 3
    assert placed[10, 255] == 4 and placed[10, 256] == 3
    # raw column 256 becomes virtual 257, 258: the error value is copied, not divided
    assert placed[11, 257] == 0xFFFF and placed[11, 258] == 0xFFFF
    ok = raw != 0xFFFF
    assert placed[placed != 0xFFFF].sum() == raw[ok].sum()
    # columns away from chip borders are copied unchanged
    np.testing.assert_array_equal(placed[:, :255], raw[:, :255])
    np.testing.assert_array_equal(placed[:, 259:769], raw[:, 257:767])
    np.testing.assert_array_equal(placed[:, 773:], raw[:, 769:])
