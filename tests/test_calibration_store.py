"""The calibration store and the procedures' arithmetic, without a DCU: HDF5 sets with provenance, the active
set, flatfields by energy, refusals; S-curve and dead-time fits on synthetic data with known answers."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from opendcu.app_calibration import analysis
from opendcu.app_calibration.procedures import ParameterError, validate
from opendcu.app_calibration.store import (
    CalibrationSet,
    CalibrationStore,
    Flatfield,
    StoreError,
    UnknownSet,
    compare_sets,
    nominal_set,
    utc_now,
)
from opendcu.geometry import DetectorLayout, get_model

DETECTOR = "eiger2-500k"


def a_set(set_id: str, energies=(8000.0, 12000.0), scale: float = 1.0) -> CalibrationSet:
    base = nominal_set(DETECTOR)
    rng = np.random.default_rng(1)
    noise = [0.01 * rng.standard_normal(base.pixel_mask.shape) for _ in energies]
    fields = [
        Flatfield(e, e / 2, (scale * e / 8000.0 + n).astype(np.float32), {"precision": 0.01})
        for e, n in zip(energies, noise, strict=True)
    ]
    mask = base.pixel_mask.copy()
    mask[10, 20] |= 2
    return CalibrationSet(
        set_id=set_id,
        detector=DETECTOR,
        kind="measured",
        created=utc_now(),
        pixel_mask=mask,
        flatfields=fields,
        dead_time=np.array([1.02e-7]),
        threshold_gain=np.array([1.01]),
        threshold_offset=np.array([-12.0]),
        provenance={"flatfield": [{"series": 3}]},
    )


def test_sets_round_trip_through_hdf5_with_provenance(tmp_path) -> None:
    store = CalibrationStore(tmp_path, DETECTOR)
    assert store.active_id == "nominal" and store.set_ids() == []
    cal = a_set("measured-1")
    store.add(cal)
    again = CalibrationStore(tmp_path, DETECTOR).get("measured-1")  # a fresh store reads the file
    np.testing.assert_array_equal(again.pixel_mask, cal.pixel_mask)
    np.testing.assert_array_equal(again.flatfields[1].factors, cal.flatfields[1].factors)
    assert again.dead_time.tolist() == [1.02e-7] and again.threshold_offset.tolist() == [-12.0]
    assert again.provenance == {"flatfield": [{"series": 3}]} and again.software_version
    assert CalibrationStore(tmp_path, DETECTOR).active_id == "measured-1"
    size = (tmp_path / DETECTOR / "measured-1.h5").stat().st_size
    assert size < 0.8 * 2 * cal.pixel_mask.size * 4  # compressed (the noise of the flatfields does not shrink much)


def test_flatfields_are_chosen_and_interpolated_by_energy(tmp_path) -> None:
    cal = a_set("x")
    low, high = cal.flatfields
    f, how = cal.flatfield_for(8000.0, 4000.0)
    np.testing.assert_array_equal(f, low.factors)
    f, how = cal.flatfield_for(10000.0, 5000.0)
    assert "interpolated" in how
    np.testing.assert_allclose(f, 0.5 * low.factors + 0.5 * high.factors, rtol=1e-6)
    f, how = cal.flatfield_for(13000.0, 6500.0)  # a little beyond the measured range: the nearest
    np.testing.assert_array_equal(f, high.factors)
    with pytest.raises(StoreError, match="no flatfield near 20000"):
        cal.flatfield_for(20000.0, 10000.0)
    with pytest.raises(StoreError, match="no flatfield for threshold 7600"):
        cal.flatfield_for(8000.0, 7600.0)  # a threshold near the photon energy needs its own flatfield
    np.testing.assert_array_equal(nominal_set(DETECTOR).flatfield_for(20000.0, 10000.0)[0], 1.0)


def test_the_active_set_cannot_be_deleted_and_unknown_sets_are_refused(tmp_path) -> None:
    store = CalibrationStore(tmp_path, DETECTOR)
    store.add(a_set("a"))
    store.add(a_set("b"))
    assert store.active_id == "b" and store.set_ids() == ["a", "b"]
    with pytest.raises(StoreError, match="active"):
        store.delete("b")
    with pytest.raises(UnknownSet):
        store.activate("nope")
    with pytest.raises(UnknownSet):
        store.get("../../etc/passwd")
    store.activate("a")
    store.delete("b")
    assert store.set_ids() == ["a"] and store.active_id == "a"
    store.activate("nominal")
    assert store.active().kind == "nominal"


def test_compare_reports_what_differs() -> None:
    a, b = a_set("a"), a_set("b", scale=1.1)
    b.pixel_mask[30, 40] |= 16
    diff = compare_sets(a, b, 8000.0, 4000.0)
    assert diff["pixel_mask"]["noisy"] == {"only_a": 0, "only_b": 1}
    assert diff["flatfield"]["ratio_mean"] == pytest.approx(1 / 1.1, rel=2e-3)


def test_bad_procedure_parameters_are_refused() -> None:
    for procedure, params, text in [
        ("flatfield", {"precision": -0.01}, "precision"),
        ("flatfield", {"photon_energy": 100.0}, "photon_energy"),
        ("flatfield", {"photon_energy": "8 keV"}, "photon_energy"),
        ("threshold", {"energies": [8000.0]}, "two different"),
        ("countrate", {"fluxes": [1.0, -2.0, 3.0]}, "fluxes"),
        ("flatfield", {"bogus": 1}, "unknown parameters"),
        ("teleport", {}, "unknown procedure"),
    ]:
        with pytest.raises(ParameterError, match=text):
            validate(procedure, params)
    assert validate("flatfield", {"precision": 0.005}).params["threshold_energy"] == 4000.0


def test_physical_pixels_sum_the_virtual_halves() -> None:
    layout = DetectorLayout(get_model(DETECTOR))
    raw = np.random.default_rng(2).integers(0, 100, (1, *layout.model.module.raw_shape))
    image = np.zeros(layout.shape)
    image[layout.module_slices(0)] = layout.place_module_reference(raw[0].astype(np.uint16), 0xFFFF)
    np.testing.assert_array_equal(analysis.to_physical(layout, image), raw)
    back = analysis.to_image(layout, raw.astype(np.float64), 0.0)
    assert back[0, 255] == back[0, 256] == raw[0, 0, 255]


def test_s_curve_and_dead_time_fits_recover_known_values() -> None:
    t = np.linspace(6400, 9600, 13)
    f = np.array([0.5 * math.erfc((x - 8040.0) / (math.sqrt(2) * 405.0)) for x in t])
    mid, width = analysis.fit_s_curve(t, f)
    assert mid == pytest.approx(8040.0, abs=0.01) and width == pytest.approx(405.0, rel=1e-4)
    tau, a, count_time = 1.0e-7, 0.97, 0.002
    fluxes = np.array([2e5, 1e6, 2e6, 3.5e6, 5e6])
    m = a * fluxes * count_time * np.exp(-a * fluxes * tau)
    fit_tau, fit_a, rms = analysis.fit_dead_time(fluxes, m, count_time)
    assert fit_tau == pytest.approx(tau, rel=1e-9) and fit_a == pytest.approx(a, rel=1e-9) and rms < 1e-9


def test_app_calibration_imports_nothing_of_the_simulator() -> None:
    code = (
        "import sys, opendcu.app_calibration.__main__, opendcu.cli.calibrate; "
        "bad = [m for m in sys.modules if m.startswith('opendcu.simulator')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
