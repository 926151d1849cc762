"""The factory flatfield follows the photon and threshold energies (spec/simplon-api.md §14).

The simulated sensor's response depends on the energy (thickness against the absorption length, trim residuals
against the threshold), the factory calibration measures it at the requested energies, and app-detector reloads
it whenever an energy key is written: all or nothing, replacing a custom flatfield."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from calibration_truth import true_calibration as calibration_for

from opendcu.app_detector.control.acquisition import AcquisitionController
from opendcu.app_detector.control.detector_params import build_detector_subsystem
from opendcu.app_detector.control.errors import WrongState
from opendcu.app_detector.control.state import DetectorState
from opendcu.app_detector.imagemux import ImageMux
from opendcu.app_detector.interfaces.filewriter.writer import FileWriter
from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.physics import ModuleRenderer
from opendcu.simulator.scenes import make_scene

EIGER = get_model("eiger2-500k")
ENERGIES = (8000.0, 20000.0)
FLUX, FRAMES = 500.0, 16
BLOCK = 32


@pytest.fixture(scope="module")
def calibrations():
    return {e: calibration_for(EIGER.name, e, e / 2) for e in ENERGIES}


@pytest.fixture(scope="module")
def floods():
    """The sum of FRAMES flood frames of the simulated module at each energy, placed like the image."""
    layout = DetectorLayout(EIGER)
    out = {}
    for energy in ENERGIES:
        scene = make_scene(EIGER, 3, {"kind": "flood", "flux": FLUX, "experiment": {"count_time_s": 1.0}})
        renderer = ModuleRenderer(
            scene, EIGER, 0, 3, 1.0, bank_frames=FRAMES, photon_energy=energy, threshold_energy=energy / 2
        )
        total = np.stack([renderer.render(f) for f in range(1, FRAMES + 1)]).astype(np.uint32).sum(axis=0)
        out[energy] = layout.place_module_reference(total, 0xFFFFFFFF).astype(np.float64)
    return out


def ordinary_pixels(calibration) -> np.ndarray:
    ok = calibration.pixel_mask == 0
    ok[:, 255:259] = ok[:, 767:771] = False  # split chip-border pixels halve their counts
    return ok


def flatness(corrected: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """(pixel spread / Poisson spread, chi^2 per block of the BLOCK x BLOCK block means against their mean)."""
    values = corrected[ok]
    mean = values.mean()
    pixel_ratio = (values.std() / mean) / (1 / np.sqrt(mean))  # relative spread over the Poisson one
    h, w = corrected.shape
    means, counts = [], []
    for r in range(0, h - BLOCK + 1, BLOCK):
        for c in range(0, w - BLOCK + 1, BLOCK):
            good = ok[r : r + BLOCK, c : c + BLOCK]
            if good.sum() > BLOCK * BLOCK // 2:
                means.append(corrected[r : r + BLOCK, c : c + BLOCK][good].mean())
                counts.append(good.sum())
    chi2 = np.mean((np.array(means) - mean) ** 2 / (mean / np.array(counts)))
    return float(pixel_ratio), float(chi2)


def test_the_factory_flatfield_depends_on_the_photon_energy(calibrations) -> None:
    low, high = calibrations[8000.0], calibrations[20000.0]
    ok = ordinary_pixels(low)
    ratio = (low.flatfield / high.flatfield)[ok]
    assert ratio.std() > 0.003  # silicon turns transparent above ~12 keV: the thickness pattern shows
    np.testing.assert_array_equal(low.pixel_mask, high.pixel_mask)  # the mask bits do not follow the energy
    assert low.calibration_id != high.calibration_id
    # a threshold near the photon energy makes the pixels' trim residuals matter
    near = calibration_for(EIGER.name, 8000.0, 7600.0)
    assert (near.flatfield / low.flatfield)[ok].std() > 0.02


def test_a_flood_corrected_with_the_flatfield_of_its_energy_is_flat(calibrations, floods) -> None:
    for energy in ENERGIES:
        other = ENERGIES[1 - ENERGIES.index(energy)]
        ok = ordinary_pixels(calibrations[energy])
        raw = floods[energy][ok]
        assert raw.std() / raw.mean() > 0.025  # the 3 % gain spread before correction
        pixel_ratio, chi2 = flatness(floods[energy] * calibrations[energy].flatfield, ok)
        assert pixel_ratio == pytest.approx(1.0, abs=0.03), energy  # only photon noise left
        assert chi2 == pytest.approx(1.0, abs=0.3), energy  # no structure over the module either
        wrong_ratio, wrong_chi2 = flatness(floods[energy] * calibrations[other].flatfield, ok)
        assert wrong_ratio > 1.1 and wrong_chi2 > 50, energy  # the other energy's flatfield leaves a pattern


class FlakyCalibration:
    """app-calibration's store behind a switch that makes it unreachable."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []
        self.down = False

    def __call__(self, energy: float, threshold: float):
        if self.down:
            raise ConnectionError("app-calibration unavailable")
        self.calls.append((energy, threshold))
        return calibration_for(EIGER.name, energy, threshold)


def test_energy_writes_reload_the_flatfield_all_or_nothing(tmp_path: Path) -> None:
    source = FlakyCalibration()
    # no series, so no modules and only the parts of a data path the controller attaches to (the data dir of its
    # sequence ids, the ImageMux and the FileWriter), all real
    no_datapath = SimpleNamespace(
        config=SimpleNamespace(data_dir=tmp_path), mux=ImageMux(), filewriter=FileWriter(tmp_path, EIGER)
    )
    controller = AcquisitionController(EIGER, no_datapath, None, calibration=source)
    det = build_detector_subsystem(EIGER, controller)
    controller.bind(det)
    controller.state = DetectorState.IDLE
    det.set("photon_energy", 8000.0)
    np.testing.assert_array_equal(det["flatfield"], calibration_for(EIGER.name, 8000.0, 4000.0).flatfield)
    custom = np.full(EIGER.shape, 2.0, dtype=np.float32)
    det.set("flatfield", custom)

    changes = det.set("photon_energy", 20000.0)
    assert "flatfield" in changes and source.calls[-1] == (20000.0, 10000.0)
    factory = calibration_for(EIGER.name, 20000.0, 10000.0).flatfield
    np.testing.assert_array_equal(det["flatfield"], factory)  # the custom flatfield is replaced
    det.set("flatfield", custom)
    det.reset_key("flatfield")
    np.testing.assert_array_equal(det["flatfield"], factory)  # DELETE restores the new energies' flatfield

    n = len(source.calls)
    det.set_many([("wavelength", 1.0), ("threshold_energy", 7000.0)])  # one reload for the whole write
    assert len(source.calls) == n + 1 and source.calls[-1] == pytest.approx((12398.42, 7000.0), rel=1e-5)
    det.set("element", "")  # leaves the energy as it is
    assert len(source.calls) == n + 1

    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in det.values.items()}
    source.down = True
    for write in ([("photon_energy", 9000.0)], [("count_time", 0.5), ("element", "Mo")]):
        with pytest.raises(WrongState, match="could not be loaded"):
            det.set_many(write)
        for key, value in before.items():
            assert np.array_equal(det.values[key], value), key  # nothing changed, the flatfield neither
    det.set("count_time", 0.5)  # writes that do not move the energies do not need app-calibration
