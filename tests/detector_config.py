"""The detector subsystem (SIMPLON keys and their dependencies) without a running detector, for tests that
check what the keys derive (the status keys need a controller; here they read constants)."""

from __future__ import annotations

from types import SimpleNamespace

from opendcu.app_detector.control.detector_params import build_detector_subsystem
from opendcu.app_detector.control.parameters import Subsystem
from opendcu.app_detector.control.state import DetectorState
from opendcu.geometry import DetectorModel


def offline_detector(model: DetectorModel) -> Subsystem:
    controller = SimpleNamespace(
        state=DetectorState.IDLE,
        errors=[],
        series_unique_id="",
        datapath=None,
        high_voltage_state=lambda: "READY",
        buffer_free_percent=lambda: 100.0,
        environment=lambda: (25.0, 10.0),
        link_state=lambda _i: "up",
    )
    return build_detector_subsystem(model, controller)


def default_energies(model: DetectorModel) -> dict[str, float]:
    """The photon and threshold energies (eV) an initialized DCU configures its modules with."""
    det = offline_detector(model)
    return {"photon_energy": det["photon_energy"], "threshold_energy": det["threshold_energy"]}
