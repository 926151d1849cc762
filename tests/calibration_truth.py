"""The simulated detector's hidden truth as a calibration (tests only): what a perfect calibration would find.

app-calibration never computes this; its procedures measure the detector through app-detector. Tests compare
their results (and the images they correct) with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.physics import NO_VARIANT, PhysicsVariant, readout_response


@dataclass(frozen=True)
class TrueCalibration:
    pixel_mask: np.ndarray  # uint32 [h, w]: gaps + the defect bits of the simulated sensor
    flatfield: np.ndarray  # float32 [h, w]: 1 / true relative efficiency (1 on gaps and dead pixels)
    efficiency: np.ndarray  # float32 [h, w]: true relative efficiency per virtual pixel's physical pixel
    calibration_id: str


def true_calibration(
    detector: str, photon_energy: float, threshold_energy: float, variant: PhysicsVariant = NO_VARIANT
) -> TrueCalibration:
    """The truth at the given energies (eV), placed like the image (split pixels: both halves)."""
    model = get_model(detector)
    layout = DetectorLayout(model)
    mask = layout.default_pixel_mask()
    flatfield = np.ones(layout.shape, dtype=np.float32)
    efficiency_image = np.zeros(layout.shape, dtype=np.float32)
    rows, cols = layout.row_map.src, layout.col_map.src
    for module_id in range(model.n_modules):
        efficiency, bits = readout_response(model, module_id, photon_energy, threshold_energy, variant)
        region = layout.module_slices(module_id)
        mask[region] |= bits[np.ix_(rows, cols)]
        placed = efficiency[np.ix_(rows, cols)]
        efficiency_image[region] = placed
        flatfield[region] = np.where(placed > 0, 1.0 / np.where(placed > 0, placed, 1.0), 1.0)
    return TrueCalibration(
        mask, flatfield, efficiency_image, f"{detector}/truth/E={photon_energy:.2f}eV/T={threshold_energy:.2f}eV"
    )


def install_truth_set(calibration_dir, detector: str, energies=(8000.0, 12000.0, 20000.0)) -> str:
    """Write the truth as the active calibration set of `detector` under `calibration_dir` (tests of
    app-detector's use of a calibration, which need one without spending minutes measuring it)."""
    from opendcu.app_calibration.store import CalibrationSet, CalibrationStore, Flatfield, utc_now

    store = CalibrationStore(calibration_dir, detector)
    truths = {e: true_calibration(detector, e, e / 2) for e in energies}
    cal = CalibrationSet(
        set_id="truth-fixture",
        detector=detector,
        kind="factory",
        created=utc_now(),
        pixel_mask=truths[energies[0]].pixel_mask,
        flatfields=[Flatfield(e, e / 2, t.flatfield, {"procedure": "truth (test fixture)"}) for e, t in truths.items()],
        provenance={"pixel_mask": {"procedure": "truth (test fixture)"}},
    )
    store.add(cal, activate=True)
    return cal.set_id
