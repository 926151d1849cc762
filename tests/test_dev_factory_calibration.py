"""The main job's setup (`python3 dev.py run`): the first time for a detector it measures the simulated detector's
factory calibration through a DCU of its own (app-calibration's procedures, `dcu calibrate factory`) into the
calibration dir that `dcu serve` then reads; a second time it finds the set there and starts nothing.

The set is checked against the simulator's hidden truth (tests/calibration_truth.py), which dev.py and
app-calibration never read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from calibration_truth import true_calibration

from opendcu.app_calibration.store import CalibrationStore
from opendcu.geometry import get_model
from opendcu.geometry.layout import MASK_GAP

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
DETECTOR = "eiger2-500k"
PRECISION = 0.05  # coarse: the procedures' accuracy is test_calibration_procedures.py's


def load_dev():
    spec = importlib.util.spec_from_file_location("dev_py", ROOT / "dev.py")
    assert spec and spec.loader
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    return dev


def test_the_main_jobs_setup_measures_the_factory_calibration_once(tmp_path, capfd) -> None:
    dev = load_dev()
    cal_dir = tmp_path / "cal"
    serve_args = ["--detector", DETECTOR, f"--calibration-dir={cal_dir}"]
    serve_args += ["--raw-buffer-mib", "256", "--image-buffer-mib", "128"]

    assert dev.ensure_factory_calibration(serve_args, precision=PRECISION) == 0
    out = capfd.readouterr().out
    assert f"measuring the factory calibration of the simulated {DETECTOR} into {cal_dir.resolve()}" in out, out
    assert "factory calibration measured in" in out, out

    store = CalibrationStore(cal_dir, DETECTOR)
    (set_id,) = store.set_ids()
    assert set_id.startswith("factory-") and store.active_id == set_id
    cal = store.active()
    assert cal.kind == "factory"
    assert sorted((f.photon_energy, f.threshold_energy) for f in cal.flatfields) == [
        (8000.0, 4000.0),
        (12000.0, 6000.0),
        (20000.0, 10000.0),
    ]
    # measured, not copied: each flatfield corrects the true response to the Poisson limit of the floods it took
    # (and to the precision asked), and no better than a measurement can
    for ff in cal.flatfields:
        truth = true_calibration(DETECTOR, ff.photon_energy, ff.threshold_energy)
        ok = (truth.pixel_mask == 0) & (cal.pixel_mask == 0)
        corrected = (ff.factors * truth.efficiency)[ok].astype(np.float64)
        spread = corrected.std() / corrected.mean()
        limit = 1.0 / np.sqrt(ff.info["counts_median"])
        print(f"flatfield {ff.photon_energy:.0f} eV: residual {100 * spread:.2f} %, Poisson limit {100 * limit:.2f} %")
        assert 0.5 * limit < spread <= min(1.2 * limit, PRECISION), (ff.photon_energy, spread, limit)
    truth = true_calibration(DETECTOR, 8000.0, 4000.0)
    defective = (truth.pixel_mask & ~np.uint32(MASK_GAP)) > 0
    found = (cal.pixel_mask & ~np.uint32(MASK_GAP)) > 0
    assert (defective & found).sum() >= 0.99 * defective.sum()
    assert np.array_equal(cal.pixel_mask & MASK_GAP, truth.pixel_mask & MASK_GAP)
    assert len(cal.dead_time) == get_model(DETECTOR).n_modules and all(tau > 0 for tau in cal.dead_time)

    # the second start finds the set and starts no DCU
    capfd.readouterr()
    assert dev.ensure_factory_calibration(serve_args) == 0
    assert capfd.readouterr().out == ""
    assert store.set_ids() == [set_id]


def test_a_detector_calibrated_before_or_unknown_is_left_alone(tmp_path, capfd) -> None:
    dev = load_dev()
    chosen = CalibrationStore(tmp_path, DETECTOR)
    chosen.activate("nominal")  # a user's choice (no stored set) counts
    assert not chosen.untouched
    for args in (["--detector", DETECTOR], ["--detector", "eiger2-99m"]):
        assert dev.ensure_factory_calibration([*args, "--calibration-dir", str(tmp_path)]) == 0
    assert capfd.readouterr().out == ""
    assert not (tmp_path / "eiger2-99m").exists()
    assert chosen.set_ids() == []
