"""The image-processing SIMPLON keys: defaults, validation, derived read-only keys, changed-key lists, and the
series settings and arrays they give at arm."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from detector_config import offline_detector

from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.pipeline.countrate import CountRateCorrection, counter_model
from opendcu.app_detector.pipeline.params import apply_calibration, saturation_value, series_arrays, series_settings
from opendcu.geometry import DetectorLayout, get_model


def detector(name: str = "eiger2-1m"):
    model = get_model(name)
    return offline_detector(model), model


def test_switch_defaults_and_listing():
    det, _ = detector()
    assert det["compression"] == "bslz4" and det.config["compression"].allowed_values == ["lz4", "bslz4", "none"]
    expected = {
        "auto_summation": True,
        "countrate_correction_applied": True,
        "flatfield_correction_applied": True,
        "pixel_mask_applied": True,
        "mask_to_zero": False,
        "virtual_pixel_correction_applied": False,
        "binning_2x2_applied": False,
        "float8_encoding_applied": False,
    }
    assert {k: det[k] for k in expected} == expected
    keys = det.keys("config")
    assert {"countrate_correction_count_cutoff", "bit_depth_image", *expected} <= set(keys)
    for big in ("flatfield", "pixel_mask", "countrate_correction_table"):
        assert big not in keys  # arrays are served but not listed (fastcs-eiger)
    for key in ("bit_depth_image", "countrate_correction_count_cutoff", "countrate_correction_table"):
        with pytest.raises(InvalidValue, match="read-only"):
            det.set(key, 1)


def test_count_time_sets_cutoff_and_table():
    det, model = detector()
    counter = counter_model(model.module)
    det.set("frame_time", 0.01)
    assert det["bit_depth_image"] == 16
    cutoff = CountRateCorrection(counter, det["frame_count_time"]).cutoff
    assert det["countrate_correction_count_cutoff"] == min(cutoff, 65534)
    table = det["countrate_correction_table"]
    assert table.shape[0] == 2 and np.array_equal(table[0], np.arange(table.shape[1]))
    assert "countrate_correction_count_cutoff" in det.set("count_time", 0.002)
    assert det["countrate_correction_count_cutoff"] == CountRateCorrection(counter, 0.002).cutoff < cutoff


def test_switches_change_bit_depth_and_image_size():
    det, model = detector()
    h, w = model.shape
    det.set("frame_time", 0.01)  # one sub-frame per image (auto-summation sums from 17.5 ms on)
    assert "bit_depth_image" in det.set("countrate_correction_applied", False)
    assert det["countrate_correction_count_cutoff"] == 65534
    changed = det.set("binning_2x2_applied", True)
    assert {"bit_depth_image", "countrate_correction_count_cutoff", "x_pixels_in_detector", "x_pixel_size"} <= set(
        changed
    )
    assert det["bit_depth_image"] == 32 and det["countrate_correction_count_cutoff"] == 4 * 65534
    assert (det["y_pixels_in_detector"], det["x_pixels_in_detector"]) == (h // 2, w // 2)
    assert det["x_pixel_size"] == 2 * model.module.pixel_size_m
    det.set("float8_encoding_applied", True)
    assert det["bit_depth_image"] == 8 and det["countrate_correction_count_cutoff"] == 4031
    det.set("binning_2x2_applied", False)
    assert (det["y_pixels_in_detector"], det["x_pixels_in_detector"]) == (h, w)
    assert det.set("mask_to_zero", True) == ["mask_to_zero"]


def test_bad_values_are_rejected():
    det, model = detector()
    h, w = model.shape
    cases = [
        ("compression", "zstd", "not one of"),
        ("auto_summation", 1, "expected a bool"),
        ("flatfield", np.ones((h, w + 1), np.float32), "shape"),
        ("flatfield", np.full((h, w), np.nan, np.float32), "NaN"),
        ("flatfield", -np.ones((h, w), np.float32), ">= 0"),
        ("pixel_mask", -np.ones((h, w), np.int64), "unsigned"),
    ]
    for key, value, text in cases:
        before = det[key]
        with pytest.raises(InvalidValue, match=text):
            det.set(key, value)
        assert det[key] is before


def test_calibration_is_stored_and_restored_by_delete():
    det, model = detector()
    mask = DetectorLayout(model).default_pixel_mask()
    mask[3, 3] = 2
    flatfield = np.full(model.shape, 1.1, np.float32)
    apply_calibration(det, SimpleNamespace(pixel_mask=mask, flatfield=flatfield))
    assert det["number_of_excluded_pixels"] == int(np.count_nonzero(mask))
    det.set("flatfield", np.ones(model.shape, np.float32))
    det.reset_key("flatfield")
    assert det["flatfield"] is flatfield


def test_series_settings_and_arrays_at_arm():
    det, model = detector("eiger2-16m")
    rng = np.random.default_rng(1)
    mask = DetectorLayout(model).default_pixel_mask()
    mask[2000, 2000] = 2
    flatfield = rng.normal(1, 0.01, model.shape).astype(np.float32)
    apply_calibration(det, SimpleNamespace(pixel_mask=mask, flatfield=flatfield))
    det.set("roi_mode", "4M")
    det.set("frame_time", 0.01)
    det.set("binning_2x2_applied", True)
    settings = series_settings(det, model, 7, 10)
    assert settings.image_shape == (1081, 1034) == (det["y_pixels_in_detector"], det["x_pixels_in_detector"])
    assert settings.binning == 2 and settings.bit_depth_image == 32
    assert settings.roi_mode == "4M" and settings.series_id == 7 and settings.nimages_total == 10
    assert saturation_value(settings) == det["countrate_correction_count_cutoff"]
    arrays = series_arrays(det, settings)
    assert arrays["pixel_mask"].shape == arrays["flatfield"].shape == (1081, 1034)
    # the 4M ROI of a 16M starts at module row 2, column 1: detector pixel (1100, 1040); 2000 -> ROI 900 / 960
    assert arrays["pixel_mask"][(2000 - 1100) // 2, (2000 - 1040) // 2] == 2
    block = flatfield[1100:1102, 1040:1042]
    assert arrays["flatfield"][0, 0] == pytest.approx(block.mean(), rel=1e-6)
    np.testing.assert_array_equal(arrays["countrate_table"], det["countrate_correction_table"])
    assert arrays["detector_pixel_mask"] is det["pixel_mask"]
