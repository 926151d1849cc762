"""The calibration procedures through the real server (`dcu serve`, a simulated EIGER2 500K), checked against the
simulated detector's hidden truth (tests/calibration_truth.py, simulator/physics.py), which app-calibration
never sees: it measures through app-detector like any client.

- flatfield: residual spread against the true response <= 1.2 x the Poisson limit of the floods it took;
- pixel mask: >= 99 % of the defective pixels, <= 0.1 % false positives;
- dead time within 3 %, threshold relation within 1 %;
- a flood after the calibration is flat (block chi^2/dof ~ 1), with the other energy's flatfield it is not;
- a changed sensor (another gain map, a new hot pixel) is found by re-running, the new set becomes active and
  the previous one stays available;
- bad parameters, a procedure during a series, a cancelled procedure: 4xx / nothing changes.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import tifffile
from calibration_truth import true_calibration
from conftest import DcuServer, start_dcu

from opendcu.app_calibration.store import CalibrationStore
from opendcu.base.rest.responses import darray_to_array
from opendcu.geometry import DetectorLayout, get_model
from opendcu.geometry.layout import MASK_GAP, MASK_NOISY
from opendcu.simulator.physics import PhysicsVariant, effective_threshold, module_dead_time

pytestmark = pytest.mark.integration
DETECTOR = "eiger2-500k"
MODEL = get_model(DETECTOR)
C = "/calibration/api/1.8.0"
D = "/detector/api/1.8.0"
PRECISION = 0.01
BLOCK = 32


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    dcu = start_dcu(root, detector=DETECTOR, extra=["--calibration-dir", str(root / "cal")])
    dcu.calibration_dir = root / "cal"
    with dcu.client() as http:
        assert http.put(f"{D}/command/initialize").status_code == 200
    yield dcu
    dcu.stop()


def status(http, key: str):
    r = http.get(f"{C}/status/{key}")
    assert r.status_code == 200, r.text
    return r.json()["value"]


def run(http, procedure: str, budget: float = 600.0, **params) -> str:
    """Start a procedure, wait for it to end (generous budget: the machine is shared) and return the new set."""
    r = http.put(f"{C}/command/start", json={"value": {"procedure": procedure, **params}})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + budget
    while status(http, "state") == "running":
        assert time.monotonic() < deadline, f"{procedure} still running: {status(http, 'message')}"
        time.sleep(0.2)
    assert status(http, "state") == "done", status(http, "error")
    return status(http, "result")


def store(server: DcuServer) -> CalibrationStore:
    return CalibrationStore(server.calibration_dir, DETECTOR)


def defect_rates(measured_mask: np.ndarray, true_mask: np.ndarray) -> tuple[float, float, int]:
    """(recall, false-positive rate, number of defective pixels) over the module pixels (not gaps)."""
    module = (true_mask & MASK_GAP) == 0
    truth = ((true_mask & ~np.uint32(MASK_GAP)) > 0) & module
    found = ((measured_mask & ~np.uint32(MASK_GAP)) > 0) & module
    recall = (truth & found).sum() / truth.sum()
    false_rate = (found & ~truth).sum() / (module & ~truth).sum()
    return float(recall), float(false_rate), int(truth.sum())


def residual_spread(flatfield: np.ndarray, truth, mask: np.ndarray) -> float:
    """Relative spread of measured flatfield x true efficiency over ordinary pixels (1 if perfect)."""
    ok = (truth.pixel_mask == 0) & (mask == 0)
    r = (flatfield * truth.efficiency)[ok].astype(np.float64)
    return float(r.std() / r.mean())


@pytest.fixture(scope="module")
def measured(server):
    """The factory calibration measured once: mask, flatfields at 8 and 20 keV, dead time, threshold relation."""
    with server.client() as http:
        t0 = time.monotonic()
        set_id = run(http, "factory", energies=[8000.0, 20000.0], precision=PRECISION)
        print(f"factory calibration of {DETECTOR}: {time.monotonic() - t0:.1f} s")
        assert status(http, "active_set") == set_id
    return store(server).get(set_id)


def test_bad_parameters_are_refused_and_nothing_changes(server) -> None:
    with server.client() as http:
        sets, active = status(http, "sets"), status(http, "active_set")
        for body, text in [
            ({"procedure": "flatfield", "precision": -0.005}, "precision"),
            ({"procedure": "flatfield", "photon_energy": 1.0e6}, "photon_energy"),
            ({"procedure": "threshold", "energies": [8000.0, 30000.0]}, "highest threshold"),
            ({"procedure": "warp"}, "unknown procedure"),
            ("flatfield", "procedure"),
        ]:
            r = http.put(f"{C}/command/start", json={"value": body})
            assert r.status_code == 400 and text in r.text, (body, r.status_code, r.text)
        assert http.put(f"{C}/command/activate", json={"value": "no-such-set"}).status_code == 404
        assert http.put(f"{C}/command/cancel").status_code == 400  # nothing runs
        # a procedure while a series runs
        for key, value in (("nimages", 1), ("trigger_mode", "ints")):
            assert http.put(f"{D}/config/{key}", json={"value": value}).status_code == 200
        assert http.put(f"{D}/command/arm").status_code == 200
        r = http.put(f"{C}/command/start", json={"value": {"procedure": "flatfield"}})
        assert r.status_code == 400 and "ready" in r.text, r.text
        assert http.put(f"{D}/command/disarm").status_code == 200
        assert status(http, "sets") == sets and status(http, "active_set") == active
        assert status(http, "state") == "idle"


def test_the_measured_flatfield_matches_the_true_response_to_the_requested_precision(measured) -> None:
    for ff in measured.flatfields:
        truth = true_calibration(DETECTOR, ff.photon_energy, ff.threshold_energy)
        limit = 1.0 / np.sqrt(ff.info["counts_median"])  # Poisson limit of the floods it took
        spread = residual_spread(ff.factors, truth, measured.pixel_mask)
        print(
            f"flatfield {ff.photon_energy:.0f} eV: residual {100 * spread:.3f} %, Poisson limit "
            f"{100 * limit:.3f} %, ratio {spread / limit:.3f}, {ff.info['images']} images"
        )
        assert ff.info["precision"] <= PRECISION
        assert spread <= 1.2 * limit
        assert spread > 0.5 * limit  # it is a measurement, not the truth copied
        raw = truth.efficiency[truth.pixel_mask == 0]
        assert raw.std() / raw.mean() > 3 * spread  # the gain spread it corrects is far larger


def test_the_mask_finds_the_defective_pixels(measured) -> None:
    truth = true_calibration(DETECTOR, 8000.0, 4000.0)
    recall, false_rate, n = defect_rates(measured.pixel_mask, truth.pixel_mask)
    print(f"mask: {n} defective pixels, recall {100 * recall:.2f} %, false positives {100 * false_rate:.4f} %")
    assert n >= 10 and recall >= 0.99 and false_rate <= 0.001
    assert np.array_equal(measured.pixel_mask & MASK_GAP > 0, DetectorLayout(MODEL).gap_mask)
    hot = (truth.pixel_mask & MASK_NOISY) > 0
    assert np.all(measured.pixel_mask[hot] & MASK_NOISY)  # hot pixels found in the darks, with their bit


def test_the_dead_time_and_the_threshold_relation(measured) -> None:
    true_tau = module_dead_time(MODEL, 0) / MODEL.module.binning**2
    error = abs(measured.dead_time[0] / true_tau - 1)
    print(f"dead time: measured {measured.dead_time[0]:.4e} s, true {true_tau:.4e} s, error {100 * error:.2f} %")
    assert error <= 0.03
    worst = 0.0
    for t in np.linspace(3000.0, 12000.0, 10):
        true = effective_threshold(MODEL, 0, t)
        got = measured.threshold_gain[0] * t + measured.threshold_offset[0]
        worst = max(worst, abs(got / true - 1))
        assert abs(got - true) < 0.2 * abs(t - true) + 1.0  # far better than taking the set value as the energy
    print(f"threshold relation: worst relative error {100 * worst:.3f} %")
    assert worst <= 0.01


def flood_image(http, flux: float, count_time: float) -> np.ndarray:
    """One flood image as app-detector delivers it (monitor), with the scene set through the simulator module."""
    scene = json.dumps({"kind": "flood", "flux": flux})
    for module, key, value in (
        ("simulator", "scene", scene),
        ("monitor", "mode", "enabled"),
        ("detector", "nimages", 1),
        ("detector", "trigger_mode", "ints"),
        ("detector", "frame_time", count_time + 0.001),
        ("detector", "count_time", count_time),
    ):
        assert http.put(f"/{module}/api/1.8.0/config/{key}", json={"value": value}).status_code == 200
    assert http.put("/monitor/api/1.8.0/command/clear").status_code == 200
    assert http.put(f"{D}/command/arm").status_code == 200
    assert http.put(f"{D}/command/trigger").status_code == 200
    r = http.get("/monitor/api/1.8.0/images/next", params={"timeout": 30000})
    assert r.status_code == 200, r.text
    assert http.put("/simulator/api/1.8.0/config/scene", json={"value": ""}).status_code == 200
    return tifffile.imread(io.BytesIO(r.content)).astype(np.float64)


def block_chi2(image: np.ndarray, ok: np.ndarray) -> float:
    """chi^2 per degree of freedom of the BLOCK x BLOCK block means against their mean (Poisson errors)."""
    mean = image[ok].mean()
    chi = []
    h, w = image.shape
    for r in range(0, h - BLOCK + 1, BLOCK):
        for c in range(0, w - BLOCK + 1, BLOCK):
            good = ok[r : r + BLOCK, c : c + BLOCK]
            if good.sum() > BLOCK * BLOCK // 2:
                block = image[r : r + BLOCK, c : c + BLOCK][good]
                chi.append((block.mean() - mean) ** 2 / (mean / good.sum()))
    return float(np.sum(chi) / (len(chi) - 1))


def test_a_flood_after_the_calibration_is_flat_and_with_the_wrong_energy_it_is_not(server, measured) -> None:
    layout = DetectorLayout(MODEL)
    with server.client() as http:
        for key, value in (
            ("photon_energy", 8000.0),
            ("flatfield_correction_applied", True),
            ("pixel_mask_applied", True),
            ("countrate_correction_applied", True),
        ):
            assert http.put(f"{D}/config/{key}", json={"value": value}).status_code == 200
        served = darray_to_array(http.get(f"{D}/config/flatfield").json()["value"])
        mask = darray_to_array(http.get(f"{D}/config/pixel_mask").json()["value"])
        ff8, _ = measured.flatfield_for(8000.0, 4000.0)
        ff20, _ = measured.flatfield_for(20000.0, 10000.0)
        np.testing.assert_array_equal(served, ff8)  # the SIMPLON keys show the active set
        np.testing.assert_array_equal(mask, measured.pixel_mask)
        corrected = flood_image(http, 1000.0 / 0.017, 0.017)  # ~1000 counts, one sub-frame
    ok = mask == 0
    for c in np.flatnonzero(layout.col_map.part[:] != 0):
        ok[:, c] = False  # split pixels carry half a pixel's counts each
    flat = block_chi2(corrected, ok)
    wrong = block_chi2(corrected * ff20 / ff8, ok)
    pixels = corrected[ok]
    spread = pixels.std() / np.sqrt(pixels.mean())  # pixel spread over the Poisson one
    raw = (corrected / ff8)[ok]
    raw_spread = raw.std() / np.sqrt(raw.mean())
    print(
        f"block chi2/dof: calibrated {flat:.2f}, with the 20 keV set {wrong:.1f}; pixel spread / Poisson: "
        f"calibrated {spread:.3f}, uncorrected {raw_spread:.3f}"
    )
    assert flat == pytest.approx(1.0, abs=0.35)
    assert wrong > 5.0  # the 20 keV set leaves the sensor's thickness pattern
    assert spread < 1.1 and raw_spread > 1.2  # and pixel by pixel only photon noise is left


def test_a_changed_sensor_is_found_and_the_previous_set_stays(server, measured) -> None:
    layout = DetectorLayout(MODEL)
    variant = PhysicsVariant(gain_seed=11, hot_pixels=((0, 300, 600),))
    physics = json.dumps({"gain_seed": 11, "hot_pixels": [[0, 300, 600]]})
    with server.client() as http:
        assert http.put("/simulator/api/1.8.0/config/physics", json={"value": physics}).status_code == 200
        try:
            run(http, "pixel_mask")
            new_id = run(http, "flatfield", photon_energy=8000.0, precision=PRECISION)
        finally:
            assert http.put("/simulator/api/1.8.0/config/physics", json={"value": ""}).status_code == 200
        assert status(http, "active_set") == new_id and measured.set_id in status(http, "sets")
        new = store(server).get(new_id)
        truth_new = true_calibration(DETECTOR, 8000.0, 4000.0, variant)
        truth_old = true_calibration(DETECTOR, 8000.0, 4000.0)
        recall, false_rate, _ = defect_rates(new.pixel_mask, truth_new.pixel_mask)
        assert recall >= 0.99 and false_rate <= 0.001
        assert new.pixel_mask[300, np.searchsorted(layout.col_map.src, 600)] & MASK_NOISY  # the new hot pixel
        ff, _ = new.flatfield_for(8000.0, 4000.0)
        limit = 1.0 / np.sqrt(new.flatfields[0].info["counts_median"])
        assert residual_spread(ff, truth_new, new.pixel_mask) <= 1.2 * limit
        assert residual_spread(ff, truth_old, new.pixel_mask) > 3 * limit  # the old gain map is gone
        diff = http.put(f"{C}/command/compare", json={"value": {"a": measured.set_id, "b": new_id}}).json()
        assert diff["flatfield"]["ratio_std"] > 0.03 and diff["pixel_mask"]["noisy"]["only_b"] >= 1
        # the previous set is still there and can be made active again: app-detector shows it
        assert http.put(f"{C}/command/activate", json={"value": measured.set_id}).status_code == 200
        assert http.put(f"{D}/config/photon_energy", json={"value": 8000.0}).status_code == 200
        served = darray_to_array(http.get(f"{D}/config/flatfield").json()["value"])
        np.testing.assert_array_equal(served, measured.flatfield_for(8000.0, 4000.0)[0])
        assert http.put(f"{C}/command/delete", json={"value": measured.set_id}).status_code == 400  # active


def test_a_cancelled_procedure_leaves_the_active_set_and_the_config(server) -> None:
    with server.client() as http:
        sets, active = status(http, "sets"), status(http, "active_set")
        before = {k: http.get(f"{D}/config/{k}").json()["value"] for k in ("count_time", "photon_energy", "nimages")}
        r = http.put(f"{C}/command/start", json={"value": {"procedure": "flatfield", "precision": 0.002}})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 120
        while status(http, "series") < 2:
            assert time.monotonic() < deadline and status(http, "state") == "running", status(http, "error")
            time.sleep(0.1)
        assert http.get(f"{D}/status/state").status_code == 200  # app-detector's REST answers meanwhile
        assert http.put(f"{C}/command/cancel").status_code == 200
        while status(http, "state") == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert status(http, "state") == "cancelled"
        assert status(http, "sets") == sets and status(http, "active_set") == active
        after = {k: http.get(f"{D}/config/{k}").json()["value"] for k in before}
        assert after == before and http.get(f"{D}/status/state").json()["value"] == "idle"


def test_dcu_calibrate_on_the_terminal(server) -> None:
    import subprocess
    import sys

    def dcu(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "opendcu", "calibrate", *args, "--url", server.url],
            capture_output=True,
            text=True,
            timeout=600,
        )

    bad = dcu("flatfield", "--precision", "-0.01")
    assert bad.returncode == 1 and "error 400" in bad.stderr and "precision" in bad.stderr
    done = dcu("pixel-mask")
    assert done.returncode == 0, done.stderr
    new_id = done.stdout.strip().splitlines()[-1].split()[-1]
    assert "100%" in done.stdout  # the progress bar reached its end
    listing = dcu("sets")
    assert f"* {new_id}" in listing.stdout.splitlines()
    shown = json.loads(dcu("show", new_id).stdout)
    assert shown["id"] == new_id and shown["provenance"]["pixel_mask"]["dark"]["hot"] >= 1


def test_a_custom_upload_is_kept_as_a_set_of_its_own(server) -> None:
    from opendcu.base.rest.responses import darray

    with server.client() as http:
        before, sets = status(http, "active_set"), status(http, "sets")
        mask = darray_to_array(http.get(f"{C}/config/pixel_mask").json()["value"]).copy()
        mask[5, 7] |= 8
        wrong = np.zeros((3, 3), dtype=np.uint32)
        assert http.put(f"{C}/config/pixel_mask", json={"value": darray(wrong)}).status_code == 400
        assert status(http, "sets") == sets
        assert http.put(f"{C}/config/pixel_mask", json={"value": darray(mask)}).status_code == 200
        custom = status(http, "active_set")
        assert custom.startswith("custom-") and set(status(http, "sets")) == {*sets, custom}
        np.testing.assert_array_equal(store(server).get(custom).pixel_mask, mask)
        served = darray_to_array(http.get(f"{D}/config/pixel_mask").json()["value"])
        np.testing.assert_array_equal(served, mask)  # app-detector shows it
        assert http.put(f"{C}/command/activate", json={"value": before}).status_code == 200
