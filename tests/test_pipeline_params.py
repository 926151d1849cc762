"""The image-processing SIMPLON keys: defaults, validation, derived read-only keys, changed-key lists, and the
series settings and arrays they give at arm."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from opendcu.app_detector.control.detector_params import build_detector_subsystem
from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.control.state import DetectorState
from opendcu.app_detector.pipeline.countrate import COUNTERS, CountRateCorrection
from opendcu.app_detector.pipeline.params import (
    apply_calibration,
    refresh_image_parameters,
    saturation_value,
    series_arrays,
    series_settings,
)
from opendcu.geometry import DetectorLayout, get_model

EIGER2 = COUNTERS["eiger2"]


def detector(name: str = "eiger2-1m"):
    model = get_model(name)
    det = build_detector_subsystem(model, SimpleNamespace(state=DetectorState.IDLE, errors=[], series_unique_id=""))
    refresh_image_parameters(det, model)
    return det, model


def test_switch_defaults_and_listing():
    det, _ = detector()
    assert det["compression"] == "bslz4" and det.config["compression"].allowed_values == ["lz4", "bslz4", "none"]
    expected = {"auto_summation": True, "countrate_correction_applied": True, "flatfield_correction_applied": True,
                "pixel_mask_applied": True, "mask_to_zero": False, "virtual_pixel_correction_applied": False,
                "binning_2x2_applied": False, "float8_encoding_applied": False}
    assert {k: det[k] for k in expected} == expected
    keys = det.keys("config")
    assert "countrate_correction_count_cutoff" in keys and "nframes_sum" in keys and "bit_depth_image" in keys
    for big in ("flatfield", "pixel_mask", "countrate_correction_table"):
        assert big not in keys  # arrays are served but not listed (fastcs-eiger)
    for key in ("bit_depth_image", "countrate_correction_count_cutoff", "nframes_sum", "countrate_correction_table"):
        with pytest.raises(InvalidValue, match="read-only"):
            det.set(key, 1)


def test_count_time_sets_subframes_bit_depth_and_cutoff():
    det, _ = detector()
    changed = det.set("count_time", 0.5)
    assert {"bit_depth_image", "nframes_sum", "frame_count_time", "countrate_correction_count_cutoff"} <= set(changed)
    assert det["nframes_sum"] == 5 and det["frame_count_time"] == pytest.approx(0.1)
    assert det["bit_depth_image"] == 32
    assert det["countrate_correction_count_cutoff"] == 5 * CountRateCorrection(EIGER2, 0.1).cutoff
    det.set("frame_time", 0.05)  # lowers count_time below one sub-frame
    assert det["nframes_sum"] == 1 and det["bit_depth_image"] == 16
    assert det["countrate_correction_count_cutoff"] == min(CountRateCorrection(EIGER2, det["count_time"]).cutoff, 65534)
    table = det["countrate_correction_table"]
    assert table.shape[0] == 2 and np.array_equal(table[0], np.arange(table.shape[1]))


def test_switches_change_bit_depth():
    det, _ = detector()
    det.set("frame_time", 0.5)
    det.set("count_time", 0.45)
    assert det.set("auto_summation", False) == sorted(
        ["auto_summation", "bit_depth_image", "countrate_correction_count_cutoff", "countrate_correction_table",
         "frame_count_time", "nframes_sum"])
    assert (det["bit_depth_image"], det["nframes_sum"]) == (16, 1)
    det.set("countrate_correction_applied", False)
    assert det["countrate_correction_count_cutoff"] == 65534
    det.set("binning_2x2_applied", True)
    assert det["bit_depth_image"] == 32 and det["countrate_correction_count_cutoff"] == 4 * 65534
    det.set("float8_encoding_applied", True)
    assert det["bit_depth_image"] == 8 and det["countrate_correction_count_cutoff"] == 4031
    assert det.set("mask_to_zero", True) == ["mask_to_zero"]


def test_bad_values_are_rejected():
    det, model = detector()
    h, w = model.shape
    cases = [
        ("compression", "zstd", "not one of"),
        ("auto_summation", 1, "expected a bool"),
        ("flatfield", np.ones((h, w + 1), np.float32), "shape"),
        ("flatfield", np.full((h, w), np.nan, np.float32), "finite"),
        ("flatfield", -np.ones((h, w), np.float32), ">= 0"),
        ("pixel_mask", -np.ones((h, w), np.int64), "uint32"),
        ("roi_mode", "4M", "not one of"),  # a 1M has no ROI
    ]
    for key, value, text in cases:
        before = det[key]
        with pytest.raises(InvalidValue, match=text):
            det.set(key, value)
        assert det[key] is before


def test_pixel_mask_upload_counts_excluded_pixels():
    det, model = detector()
    mask = DetectorLayout(model).default_pixel_mask()
    gaps = int(np.count_nonzero(mask))
    assert det["number_of_excluded_pixels"] == gaps
    mask[3, 3] = 2
    assert "number_of_excluded_pixels" in det.set("pixel_mask", mask)
    assert det["number_of_excluded_pixels"] == gaps + 1


def test_series_settings_and_arrays_at_arm():
    det, model = detector("eiger2-16m")
    rng = np.random.default_rng(1)
    mask = DetectorLayout(model).default_pixel_mask()
    mask[2000, 2000] = 2
    flatfield = rng.normal(1, 0.01, model.shape).astype(np.float32)
    apply_calibration(det, model, SimpleNamespace(pixel_mask=mask, flatfield=flatfield))
    det.set("frame_time", 0.01)
    det.set("roi_mode", "4M")
    det.set("binning_2x2_applied", True)
    settings = series_settings(det, model, 7, 10)
    assert settings.image_shape == (1081, 1034) and settings.binning == 2 and settings.bit_depth_image == 32
    assert settings.roi_mode == "4M" and settings.series_id == 7 and settings.nimages_total == 10
    assert saturation_value(settings) == det["countrate_correction_count_cutoff"]
    arrays = series_arrays(det, settings)
    assert arrays["pixel_mask"].shape == arrays["flatfield"].shape == (1081, 1034)
    # the 4M ROI of a 16M starts at module row 2, column 1: detector pixel (1100, 1040); 2000 -> ROI 900 / 960
    assert arrays["pixel_mask"][(2000 - 1100) // 2, (2000 - 1040) // 2] == 2
    block = flatfield[1100:1102, 1040:1042]
    assert arrays["flatfield"][0, 0] == pytest.approx(block.mean(), rel=1e-6)
    assert arrays["countrate_table"] is det["countrate_correction_table"]
    assert arrays["detector_pixel_mask"] is det["pixel_mask"]
