"""The SIMPLON parameter model without a server: type checks, limits, change lists, aliases, all-or-nothing
multi-key writes and the physics that links keys (spec/simplon-api.md §3-4, §14)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from opendcu.app_detector.control.detector_params import HC_EV_ANGSTROM, build_detector_subsystem
from opendcu.app_detector.control.errors import InvalidValue, ParameterNotFound
from opendcu.app_detector.control.parameters import LISTABLE_TYPES, check_type
from opendcu.app_detector.control.state import DetectorState
from opendcu.geometry import get_model


@pytest.fixture
def det():
    controller = SimpleNamespace(
        state=DetectorState.IDLE, errors=[], series_unique_id="", high_voltage_state=str, buffer_free_percent=float
    )
    return build_detector_subsystem(get_model("eiger2-16m"), controller)


@pytest.mark.parametrize(
    "value_type, value, expected",
    [
        ("uint", 5, 5),
        ("uint", 5.0, 5),
        ("int", -3, -3),
        ("float", 1, 1.0),
        ("bool", True, True),
        ("string[]", ["a"], ["a"]),
        ("float[]", [1, 2.5], [1.0, 2.5]),
    ],
)
def test_check_type_accepts(value_type, value, expected):
    got = check_type("k", value_type, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "value_type, value",
    [
        ("uint", -1),
        ("uint", True),
        ("uint", 2.5),
        ("uint", "3"),
        ("float", float("inf")),
        ("float", "1.0"),
        ("float", None),
        ("bool", 1),
        ("string", 3),
        ("string[]", ["a", 1]),
        ("float[]", [1, float("nan")]),
        ("uint[][]", np.array([[-1]])),
        ("uint[][]", np.zeros(3, np.uint32)),
        ("float[][]", np.array([[np.nan]])),
        ("uint[][]", np.array([[2**40]])),
    ],
)
def test_check_type_rejects(value_type, value):
    with pytest.raises(InvalidValue):
        check_type("k", value_type, value)


def test_listed_keys_only_have_types_fastcs_eiger_accepts(det):
    for key in det.keys("config"):
        assert det.config[det.aliases.get(key, key)].value_type in LISTABLE_TYPES, key
    assert "wavelength" not in det.keys("config") and "pixel_mask" not in det.keys("config")
    assert "threshold_energy" in det.keys("config") and "error" not in det.keys("status")


def test_energy_keys_move_together(det):
    changed = det.set("incident_energy", 12398.42)
    assert det["wavelength"] == pytest.approx(1.0) and det["photon_energy"] == 12398.42 and det["element"] == ""
    assert det["threshold/1/energy"] == det["threshold_energy"] == pytest.approx(6199.21)
    assert {"threshold_energy", "threshold/1/energy", "wavelength", "element"} <= set(changed)
    det.set("element", "Mo")
    assert det["photon_energy"] == 17479.34 and det["wavelength"] == pytest.approx(HC_EV_ANGSTROM / 17479.34)
    det.set("photon_energy", 36000.0)
    assert det["threshold/2/energy"] == 50400.0  # 1.4 E
    det.set("threshold_energy", 9000.0)  # a threshold alone does not move the energy
    assert det["photon_energy"] == 36000.0 and det["threshold/1/energy"] == 9000.0


def test_roi_resets_timing_and_size(det):
    det.set("frame_time", 0.5)
    with pytest.raises(InvalidValue):
        det.set("frame_time", 1 / 500)  # a 16M does not run at 500 Hz
    changed = det.set("roi_mode", "4M")
    assert {"count_time", "frame_time", "x_pixels_in_detector", "y_pixels_in_detector"} <= set(changed)
    assert (det["x_pixels_in_detector"], det["y_pixels_in_detector"]) == (2068, 2162)
    det.set("frame_time", 1 / 500)  # the 4M ROI does
    det.set("roi_mode", "disabled")
    assert det["frame_time"] == 1.0 and det["y_pixels_in_detector"] == 4362


def test_orientation_axis_angle_and_translation_agree(det):
    det.set("detector_orientation_axis", [1.0, 0.0, 0.0])
    det.set("detector_orientation_angle", 30.0)
    o = np.array(det["detector_orientation"])
    assert o[:3] == pytest.approx([1, 0, 0]) and o[3:] == pytest.approx([0, np.cos(np.pi / 6), np.sin(np.pi / 6)])
    det.set("detector_orientation", [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    assert det["detector_orientation_angle"] == pytest.approx(180.0) and det["detector_orientation_axis"] == [0, 0, 1]
    det.set("detector_orientation", list(o))  # tilted detector: the translation inverts exactly
    t = [0.01, -0.02, 0.3]
    det.set("detector_translation", t)
    assert det["detector_translation"] == pytest.approx(t)
    with pytest.raises(InvalidValue):
        det.set("detector_translation", [0.0, 0.0, -1.0])


def test_multi_key_write_is_all_or_nothing(det):
    before = dict(det.values)
    with pytest.raises(InvalidValue, match="no key of this request was changed"):
        det.set_many([("nimages", 4), ("count_time", 0.5), ("trigger_mode", "never")])
    assert det.values == before
    assert set(det.set_many([("nimages", 4), ("ntrigger", 2)])) == {"nimages", "ntrigger"}


def test_na_gate_and_unknown_keys(det):
    det.gate = lambda task, key: (_ for _ in ()).throw(ParameterNotFound(key)) if key != "state" else None
    assert det.keys("config") == [] and det.keys("status") == ["state"]
    with pytest.raises(ParameterNotFound, match="Parameter count_time does not exist"):
        det.describe("config", "count_time")


def test_delete_restores_only_arrays(det):
    mask = np.ones(det["pixel_mask"].shape, np.uint32)
    det.set("threshold/1/pixel_mask", mask)
    assert det["number_of_excluded_pixels"] == mask.size
    assert "pixel_mask" in det.reset_key("pixel_mask") and det["number_of_excluded_pixels"] < mask.size
    with pytest.raises(InvalidValue):
        det.reset_key("nimages")
