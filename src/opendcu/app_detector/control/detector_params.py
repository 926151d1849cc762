"""The `detector` SIMPLON subsystem: config keys, their dependencies, status keys (spec/simplon-api.md §6-7).

Physics of the linked keys:
- photon_energy / wavelength: lambda[A] = 12398.42 / E[eV]; thresholds default to 0.5 E;
- count_time / frame_time: frame_time >= count_time + detector_readout_time; writing one moves the other.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from opendcu import __version__
from opendcu.app_detector.control.errors import ParameterNotFound
from opendcu.app_detector.control.parameters import Parameter, StatusParameter, Subsystem
from opendcu.app_detector.control.state import STATE_VALUES, DetectorState
from opendcu.app_detector.daq.params import daq_status_parameters
from opendcu.app_detector.pipeline.params import image_processing_parameters
from opendcu.geometry import DetectorModel

if TYPE_CHECKING:
    from opendcu.app_detector.control.acquisition import AcquisitionController

HC_KEV_ANGSTROM = 12398.42  # h*c in eV*Angstrom
CU_KALPHA1_EV = 8047.78
READOUT_TIME = 1e-7  # EIGER2 detector_readout_time (E2-cap)
TIME_CHANGES = ("bit_depth_image", "bit_depth_readout", "count_time", "countrate_correction_count_cutoff",
                "frame_count_time", "frame_time")
ENERGY_CHANGES = ("element", "flatfield", "incident_energy", "photon_energy", "threshold/1/energy",
                  "threshold/1/flatfield", "threshold/2/energy", "threshold/2/flatfield", "threshold_energy", "wavelength")


def _on_count_time(det: Subsystem, _key: str, value: float) -> list[str]:
    if det["frame_time"] < value + READOUT_TIME:
        det.values["frame_time"] = value + READOUT_TIME
    det.values["frame_count_time"] = det["count_time"]
    return []


def _on_frame_time(det: Subsystem, _key: str, value: float) -> list[str]:
    if det["count_time"] > value - READOUT_TIME:
        det.values["count_time"] = max(value - READOUT_TIME, det.config["count_time"].min)
    det.values["frame_count_time"] = det["count_time"]
    return []


def _set_energy(det: Subsystem, energy: float) -> None:
    det.values["photon_energy"] = energy
    det.values["wavelength"] = HC_KEV_ANGSTROM / energy
    det.values["threshold_energy"] = 0.5 * energy


def _on_photon_energy(det: Subsystem, _key: str, value: float) -> list[str]:
    _set_energy(det, value)
    det.values["element"] = ""
    return []


def _on_wavelength(det: Subsystem, _key: str, value: float) -> list[str]:
    _set_energy(det, HC_KEV_ANGSTROM / value)
    det.values["element"] = ""
    return []


def build_detector_subsystem(model: DetectorModel, controller: "AcquisitionController") -> Subsystem:
    """The detector config/status keys and commands for `model`, bound to the acquisition controller."""
    h, w = model.shape
    min_frame_time = 1.0 / model.max_frame_rate
    det = Subsystem("detector")
    ro = "r"
    det.add(
        # timing
        Parameter("count_time", "float", 1.0 - READOUT_TIME, unit="s", min=min_frame_time - READOUT_TIME, max=3600.0,
                  affects=TIME_CHANGES, on_change=_on_count_time),
        Parameter("frame_time", "float", 1.0, unit="s", min=min_frame_time, max=3600.0,
                  affects=TIME_CHANGES, on_change=_on_frame_time),
        Parameter("frame_count_time", "float", 1.0 - READOUT_TIME, access_mode=ro, unit="s"),
        Parameter("detector_readout_time", "float", READOUT_TIME, access_mode=ro, unit="s"),
        Parameter("nimages", "uint", 1, min=1, max=2_000_000_000),
        Parameter("ntrigger", "uint", 1, min=1, max=2_000_000_000),
        Parameter("trigger_mode", "string", "ints", allowed_values=["ints", "inte", "exts", "exte"]),
        Parameter("bit_depth_readout", "uint", model.module.bit_depth_readout, access_mode=ro),
        # energy
        Parameter("photon_energy", "float", CU_KALPHA1_EV, unit="eV", min=2000.0, max=100000.0,
                  affects=ENERGY_CHANGES, on_change=_on_photon_energy),
        Parameter("wavelength", "float", HC_KEV_ANGSTROM / CU_KALPHA1_EV, unit="angstrom", min=0.12, max=6.2,
                  listed=False, affects=ENERGY_CHANGES, on_change=_on_wavelength),
        Parameter("threshold_energy", "float", 0.5 * CU_KALPHA1_EV, unit="eV", min=1000.0, max=100000.0),
        Parameter("element", "string", "Cu"),
        # geometry and goniometer (file metadata)
        Parameter("beam_center_x", "float", w / 2, unit="pixel"),
        Parameter("beam_center_y", "float", h / 2, unit="pixel"),
        Parameter("detector_distance", "float", 0.1, unit="m", min=0.0),
        Parameter("omega_start", "float", 0.0, unit="degree"),
        Parameter("omega_increment", "float", 0.0, unit="degree"),
        # description of the hardware
        Parameter("description", "string", model.description, access_mode=ro),
        Parameter("detector_number", "string", model.detector_number, access_mode=ro),
        Parameter("software_version", "string", __version__, access_mode=ro),
        Parameter("sensor_material", "string", model.module.sensor_material, access_mode=ro),
        Parameter("sensor_thickness", "float", model.module.sensor_thickness_m, access_mode=ro, unit="m"),
        Parameter("x_pixel_size", "float", model.module.pixel_size_m, access_mode=ro, unit="m"),
        Parameter("y_pixel_size", "float", model.module.pixel_size_m, access_mode=ro, unit="m"),
        Parameter("x_pixels_in_detector", "uint", w, access_mode=ro),
        Parameter("y_pixels_in_detector", "uint", h, access_mode=ro),
        Parameter("data_collection_date", "string", "", access_mode=ro),
        *image_processing_parameters(model),  # pipeline switches: app_detector/pipeline/params.py
    )
    det.add_status(
        StatusParameter("state", "string", lambda: controller.state.value, allowed_values=STATE_VALUES,
                        critical_values=["na", "error"]),
        StatusParameter("error", "string[]", lambda: list(controller.errors), listed=False),
        StatusParameter("time", "string", lambda: datetime.now().astimezone().isoformat(timespec="seconds")),
        StatusParameter("series_unique_id", "string", lambda: controller.series_unique_id),
        *daq_status_parameters(controller.datapath.assembler),  # packet accounting: app_detector/daq/params.py
    )

    def gate(task: str, key: str) -> None:
        # before initialize only status/state exists (D16 info #1, D18 caution #9)
        if controller.state is DetectorState.NA and not (task == "status" and key == "state"):
            raise ParameterNotFound(key)

    det.gate = gate
    return det


def snapshot(det: Subsystem) -> dict[str, Any]:
    """Scalar config values at arm time (arrays excluded), for file and stream headers."""
    snap = {k: v for k, v in det.values.items() if det.config[k].value_type not in ("uint[][]", "float[][]")}
    snap["data_collection_date"] = datetime.now().astimezone().isoformat(timespec="milliseconds")
    det.values["data_collection_date"] = snap["data_collection_date"]
    return snap
