"""The `detector` SIMPLON subsystem: config keys, their dependencies, status keys (spec/simplon-api.md §6-8, §14).

The subsystem is assembled from groups declared next to the code they control:
- timing, energy, geometry/goniometer, hardware description (here);
- image processing (compression, bit depth, pixel mask, ...): `pipeline/params.py`;
- the PUT change lists of spec §4 (CHANGE_LISTS below) are applied to whatever keys exist.

Physics of the linked keys:
- photon_energy = incident_energy, wavelength[A] = 12398.42 / E[eV], element = the Kalpha1 line of E;
  thresholds follow E: threshold/1 = 0.5 E, threshold/2 = 1.4 E (UM2 §7.4.1);
- frame_time >= count_time + detector_readout_time; writing one moves the other when needed (UM2 §7.4.2);
  its minimum is that of the modules read out (roi_mode 4M: the ROI's rate);
- nframes_sum, frame_count_time, frame_period (read-only): with auto_summation, count_time split into sub-frames
  the 16-bit counters can hold (hardware/summation.py); bit_depth_image is 32 when nframes_sum > 1;
- detector_translation = (0, 0, distance) - beam_center_x * x_pixel_size * fast - beam_center_y * y_pixel_size * slow,
  with fast/slow the two columns of detector_orientation (D18 §4.2); writing it solves for beam centre and distance.
  The beam centre is in detector pixels: with 2x2 binning (x/y_pixel_size doubled) the unbinned pixel size counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from opendcu import __version__
from opendcu.app_detector.control.errors import InvalidValue, ParameterNotFound
from opendcu.app_detector.control.outcome import HEALTH_OF_OUTCOME
from opendcu.app_detector.control.parameters import (
    ARRAY_TYPES,
    DIFFERENCE_MODE_QUIRK,
    Parameter,
    StatusParameter,
    Subsystem,
)
from opendcu.app_detector.control.state import STATE_VALUES, DetectorState
from opendcu.app_detector.daq.params import daq_status_parameters
from opendcu.app_detector.interfaces.filewriter.nxmx import EIGER_FW_VERSION
from opendcu.app_detector.pipeline.params import image_binning, image_processing_parameters
from opendcu.geometry import DetectorLayout, DetectorModel
from opendcu.hardware import summation

if TYPE_CHECKING:
    from opendcu.app_detector.control.acquisition import AcquisitionController

HC_EV_ANGSTROM = 12398.42  # h*c in eV*Angstrom
READOUT_TIME = 1e-7  # EIGER2 detector_readout_time (E2-cap)
MAX_TIME = 3600.0  # EIGER2 count_time / frame_time maximum (spec §6)
#: photon energy range of E1-rec (5000-36000 eV <-> 2.4797-0.3444 A)
PHOTON_ENERGY_RANGE = (5000.0, 36000.0)
THRESHOLD_RANGES = {1: (2500.0, 18000.0), 2: (3500.0, 50400.0)}
THRESHOLD_FACTORS = {1: 0.5, 2: 1.4}
#: Kalpha1 emission lines, eV (X-ray data booklet, table 1-2): anode and liquid-metal-jet materials
KALPHA1_EV = {
    "Cr": 5414.72,
    "Mn": 5898.75,
    "Fe": 6403.84,
    "Co": 6930.32,
    "Ni": 7478.15,
    "Cu": 8047.78,
    "Zn": 8638.86,
    "Ga": 9251.74,
    "Ge": 9886.42,
    "Mo": 17479.34,
    "Rh": 20216.1,
    "Ag": 22162.92,
    "In": 24209.7,
}
DEFAULT_ELEMENT = "Cu"
GONIOMETER_AXES = {  # axis -> default rotation vector (NXmx/DECTRIS conventions: omega about -x)
    "omega": [-1.0, 0.0, 0.0],
    "chi": [0.0, 0.0, 1.0],
    "phi": [-1.0, 0.0, 0.0],
    "kappa": [-0.9135, 0.0, -0.4067],
    "two_theta": [-1.0, 0.0, 0.0],
}
DEFAULT_ORIENTATION = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]  # 180 deg about the beam: fast = -x, slow = -y

# -- PUT change lists (spec §4, modelled on a real EIGER2 16M) ---------------------------------------------------------
TIME_CHANGES = (
    "bit_depth_image",
    "bit_depth_readout",
    "count_time",
    "countrate_correction_count_cutoff",
    "frame_count_time",
    "frame_time",
    "frame_period",
    "nframes_sum",
)
ENERGY_CHANGES = (
    "element",
    "flatfield",
    "incident_energy",
    "photon_energy",
    "threshold/1/energy",
    "threshold/1/flatfield",
    "threshold/2/energy",
    "threshold/2/flatfield",
    "threshold_energy",
    "wavelength",
    "countrate_correction_count_cutoff",
)
GEOMETRY_CHANGES = ("beam_center_x", "beam_center_y", "detector_distance", "detector_translation")
CHANGE_LISTS: dict[str, tuple[str, ...]] = {
    "auto_summation": (
        "auto_summation",
        "bit_depth_image",
        "countrate_correction_count_cutoff",
        "frame_count_time",
        "frame_period",
        "nframes_sum",
    ),
    "count_time": TIME_CHANGES,
    "frame_time": TIME_CHANGES,
    "flatfield": ("flatfield", "threshold/1/flatfield"),
    "incident_energy": ENERGY_CHANGES,
    "photon_energy": ENERGY_CHANGES,
    "wavelength": ENERGY_CHANGES,
    "element": ENERGY_CHANGES,
    "pixel_mask": (
        "pixel_mask",
        "threshold/1/pixel_mask",
        "number_of_excluded_pixels",
        "threshold/1/number_of_excluded_pixels",
    ),
    "roi_mode": (*TIME_CHANGES, "roi_mode", "x_pixels_in_detector", "y_pixels_in_detector"),
    "threshold/1/energy": (
        "flatfield",
        "threshold/1/energy",
        "threshold/1/flatfield",
        "threshold/2/flatfield",
        "threshold_energy",
    ),
    "threshold/2/energy": ("flatfield", "threshold/1/flatfield", "threshold/2/energy", "threshold/2/flatfield"),
    "threshold/1/mode": ("threshold/1/mode", "threshold/difference/mode"),
    "threshold/2/mode": ("threshold/2/mode", "threshold/difference/mode"),
    "threshold/difference/mode": (DIFFERENCE_MODE_QUIRK,),  # sic: what a real EIGER2 answers
    "beam_center_x": ("beam_center_x", "detector_translation"),
    "beam_center_y": ("beam_center_y", "detector_translation"),
    "detector_distance": ("detector_distance", "detector_translation"),
    "detector_translation": GEOMETRY_CHANGES,
    "detector_orientation": (
        "detector_orientation",
        "detector_orientation_angle",
        "detector_orientation_axis",
        "detector_translation",
    ),
    "detector_orientation_angle": ("detector_orientation", "detector_orientation_angle", "detector_translation"),
    "detector_orientation_axis": ("detector_orientation", "detector_orientation_axis", "detector_translation"),
}


# -- timing ----------------------------------------------------------------------------------------------------------
def _min_frame_time(det: Subsystem, model: DetectorModel) -> float:
    """The frame period limit: the ROI's modules alone read out faster than the whole detector."""
    return 1.0 / model.roi(det.values.get("roi_mode", "disabled")).max_frame_rate


def _summation(det: Subsystem, model: DetectorModel) -> summation.SummationPlan:
    return summation.plan(model.module, det["count_time"], det["frame_time"], det["auto_summation"])


def _on_count_time(det: Subsystem, _key: str, value: float) -> list[str]:
    if det["frame_time"] < value + READOUT_TIME:
        det.values["frame_time"] = min(value + READOUT_TIME, MAX_TIME)
    return []


def _on_frame_time(det: Subsystem, _key: str, value: float) -> list[str]:
    if det["count_time"] > value - READOUT_TIME:
        det.values["count_time"] = value - READOUT_TIME
    return []


# -- energy ----------------------------------------------------------------------------------------------------------
def _clamp(value: float, limits: tuple[float, float]) -> float:
    return min(max(value, limits[0]), limits[1])


def set_photon_energy(det: Subsystem, energy: float, element: str = "") -> None:
    """Move every energy key to `energy` (eV): wavelength, incident energy, element, thresholds."""
    det.values["photon_energy"] = det.values["incident_energy"] = energy
    det.values["wavelength"] = HC_EV_ANGSTROM / energy
    det.values["element"] = element
    for n, factor in THRESHOLD_FACTORS.items():
        det.values[f"threshold/{n}/energy"] = _clamp(factor * energy, THRESHOLD_RANGES[n])


def _on_energy(det: Subsystem, key: str, value: Any) -> list[str]:
    if key == "element":
        if value:  # "" (the value after a numeric energy write) leaves the energy as it is
            set_photon_energy(det, KALPHA1_EV[value], value)
    elif key == "wavelength":
        set_photon_energy(det, HC_EV_ANGSTROM / value)
    else:  # photon_energy, incident_energy
        set_photon_energy(det, value)
    return []


#: keys whose write moves the photon or threshold energy the counting threshold works with (threshold 1; the
#: simulated modules have no second counter): the factory flatfield is recalculated for the new energies
CALIBRATION_ENERGY_KEYS = ("photon_energy", "incident_energy", "wavelength", "element", "threshold/1/energy")


def follow_energies(det: Subsystem, reload: Callable[[], None]) -> None:
    """Call `reload` once after every write that sets the energies, a multi-key PUT included (spec §14: the
    flatfield depends on the photon and threshold energies and is recalculated when they change). If it
    raises, the whole write is undone (`Subsystem.after_write`)."""

    def after_write(sub: Subsystem, written: set[str]) -> None:
        # element "" (the value a numeric energy write leaves) does not move the energy
        moved = [k for k in written if k in CALIBRATION_ENERGY_KEYS and not (k == "element" and not sub["element"])]
        if moved:
            reload()

    det.after_write = after_write


# -- geometry --------------------------------------------------------------------------------------------------------
def _axes(det: Subsystem) -> tuple[np.ndarray, np.ndarray]:
    o = np.asarray(det.values["detector_orientation"], dtype=float)
    return o[:3], o[3:]


def _detector_pixel_size(det: Subsystem) -> tuple[float, float]:
    """(x, y) size of a detector pixel, the unit of beam_center_x/y (x/y_pixel_size are the images' pixels)."""
    binning = image_binning(det)
    return det["x_pixel_size"] / binning, det["y_pixel_size"] / binning


def _translation(det: Subsystem) -> list[float]:
    fast, slow = _axes(det)
    px, py = _detector_pixel_size(det)
    t = (
        np.array([0.0, 0.0, det["detector_distance"]])
        - det["beam_center_x"] * px * fast
        - det["beam_center_y"] * py * slow
    )
    return [float(v) + 0.0 for v in t]  # + 0.0 turns -0.0 into 0.0


def _on_translation(det: Subsystem, _key: str, value: list[float]) -> list[str]:
    fast, slow = _axes(det)
    px, py = _detector_pixel_size(det)
    # solve T + bx*px*fast + by*py*slow = (0, 0, D) for (bx, by, D)
    a = np.column_stack([px * fast, py * slow, [0.0, 0.0, -1.0]])
    try:
        bx, by, distance = np.linalg.solve(a, -np.asarray(value, dtype=float))
    except np.linalg.LinAlgError:
        raise InvalidValue("detector_translation: the detector plane contains the beam") from None
    if distance < 0:
        raise InvalidValue(f"detector_translation {value} puts the detector behind the sample")
    det.values.update(beam_center_x=float(bx), beam_center_y=float(by), detector_distance=float(distance))
    return []


def _check_translation(value: list[float]) -> None:
    if len(value) != 3:
        raise InvalidValue("detector_translation: expected 3 components [x, y, z] in metres")


def _check_orientation(value: list[float]) -> None:
    """detector_orientation: the first two columns of a rotation matrix (two orthonormal vectors)."""
    if len(value) != 6:
        raise InvalidValue("detector_orientation: expected 6 numbers (the first two columns of the rotation matrix)")
    fast, slow = np.asarray(value[:3]), np.asarray(value[3:])
    if not (
        np.isclose(fast @ fast, 1, atol=1e-6) and np.isclose(slow @ slow, 1, atol=1e-6) and abs(fast @ slow) < 1e-6
    ):
        raise InvalidValue("detector_orientation: the two columns must be orthonormal vectors")


def _check_unit_vector(key: str) -> Callable[[list[float]], None]:
    def check(value: list[float]) -> None:
        if len(value) != 3 or not np.isclose(np.linalg.norm(value), 1.0, atol=1e-3):
            raise InvalidValue(f"{key}: expected a unit vector [x, y, z]")

    return check


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rodrigues' rotation matrix."""
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = math.radians(angle_deg)
    return np.eye(3) + math.sin(a) * kx + (1 - math.cos(a)) * kx @ kx


def _on_orientation_axis_angle(det: Subsystem, _key: str, _value: Any) -> list[str]:
    r = _rotation(np.asarray(det.values["detector_orientation_axis"]), det.values["detector_orientation_angle"])
    det.values["detector_orientation"] = [float(v) + 0.0 for v in np.round(np.concatenate([r[:, 0], r[:, 1]]), 12)]
    return []


def _on_orientation(det: Subsystem, _key: str, value: list[float]) -> list[str]:
    fast, slow = np.asarray(value[:3]), np.asarray(value[3:])
    r = np.column_stack([fast, slow, np.cross(fast, slow)])
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(r) - 1) / 2))))
    if angle < 1e-9:
        axis = np.array([0.0, 0.0, 1.0])
    elif abs(angle - 180) < 1e-6:  # axis = the eigenvector of eigenvalue 1
        w, v = np.linalg.eig(r)
        axis = np.real(v[:, np.argmin(abs(w - 1))])
        axis = axis * (1 if axis[np.argmax(abs(axis))] > 0 else -1)
    else:
        axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2 * math.sin(math.radians(angle)))
    det.values["detector_orientation_angle"] = angle
    det.values["detector_orientation_axis"] = [float(v) + 0.0 for v in np.round(axis, 12)]
    return []


# -- assembly --------------------------------------------------------------------------------------------------------
def _timing_parameters(model: DetectorModel) -> list[Parameter]:
    def count_limits(det: Subsystem) -> tuple[float, float]:
        return (_min_frame_time(det, model) - READOUT_TIME, MAX_TIME)

    def frame_limits(det: Subsystem) -> tuple[float, float]:
        return (_min_frame_time(det, model), MAX_TIME)

    fast = 1.0 / model.max_frame_rate
    ro = "r"
    return [
        Parameter(
            "count_time",
            "float",
            1.0 - READOUT_TIME,
            unit="s",
            min=fast - READOUT_TIME,
            max=MAX_TIME,
            on_change=_on_count_time,
            limits=count_limits,
        ),
        Parameter(
            "frame_time", "float", 1.0, unit="s", min=fast, max=MAX_TIME, on_change=_on_frame_time, limits=frame_limits
        ),
        # auto-summation: the modules take each image as nframes_sum sub-frames (hardware/summation.py)
        Parameter("nframes_sum", "uint", 1, access_mode=ro, compute=lambda det: _summation(det, model).nframes_sum),
        Parameter(
            "frame_count_time",
            "float",
            0.0,
            access_mode=ro,
            unit="s",
            compute=lambda det: _summation(det, model).frame_count_time,
        ),
        Parameter(
            "frame_period",
            "float",
            0.0,
            access_mode=ro,
            unit="s",
            compute=lambda det: _summation(det, model).frame_period,
        ),
        Parameter("detector_readout_time", "float", READOUT_TIME, access_mode=ro, unit="s"),
        Parameter("nimages", "uint", 1, min=1, max=2_000_000_000),
        Parameter("ntrigger", "uint", 1, min=1, max=2_000_000_000),
        Parameter("trigger_mode", "string", "ints", allowed_values=["ints", "inte", "exts", "exte"]),
        Parameter("trigger_start_delay", "float", 0.0, unit="s", min=0.0, max=MAX_TIME),
        Parameter("bit_depth_readout", "uint", model.module.bit_depth_readout, access_mode=ro),
        Parameter("counting_mode", "string", "normal", allowed_values=["normal"]),
        Parameter(
            "roi_mode",
            "string",
            "disabled",
            allowed_values=["disabled", *model.roi_modes],
            on_change=lambda det, _k, _v: _on_roi(det, model),
        ),
    ]


def _on_roi(det: Subsystem, model: DetectorModel) -> list[str]:
    """A ROI changes the image size and the frame-rate limit, and resets the timing (D18 caution #5)."""
    h, w = DetectorLayout(model, det.values["roi_mode"]).shape
    if det.values.get("binning_2x2_applied"):  # images are 2x2 binned (pipeline/params.py)
        h, w = h // 2, w // 2
    det.values.update(x_pixels_in_detector=w, y_pixels_in_detector=h)
    fast = _min_frame_time(det, model)
    det.values.update(frame_time=max(det.config["frame_time"].default, fast))
    det.values["count_time"] = det.values["frame_time"] - READOUT_TIME
    return []


def _energy_parameters() -> list[Parameter]:
    e0 = KALPHA1_EV[DEFAULT_ELEMENT]
    low, high = PHOTON_ENERGY_RANGE
    params = [
        Parameter("photon_energy", "float", e0, unit="eV", min=low, max=high, on_change=_on_energy),
        Parameter("incident_energy", "float", e0, unit="eV", min=low, max=high, on_change=_on_energy),
        Parameter(
            "wavelength",
            "float",
            HC_EV_ANGSTROM / e0,
            unit="angstrom",
            min=HC_EV_ANGSTROM / high,
            max=HC_EV_ANGSTROM / low,
            listed=False,
            on_change=_on_energy,
        ),  # real DCUs leave it out of keys
        Parameter("element", "string", DEFAULT_ELEMENT, allowed_values=["", *KALPHA1_EV], on_change=_on_energy),
        Parameter("threshold/difference/mode", "string", "disabled", allowed_values=["disabled"]),
        Parameter("threshold/difference/lower_threshold", "uint", 1, access_mode="r"),
        Parameter("threshold/difference/upper_threshold", "uint", 2, access_mode="r"),
    ]
    for n, factor in THRESHOLD_FACTORS.items():
        params += [
            Parameter(
                f"threshold/{n}/energy",
                "float",
                _clamp(factor * e0, THRESHOLD_RANGES[n]),
                unit="eV",
                min=THRESHOLD_RANGES[n][0],
                max=THRESHOLD_RANGES[n][1],
            ),
            # the simulated modules have one counter: threshold 1 counts, a second threshold is not simulated
            Parameter(
                f"threshold/{n}/mode",
                "string",
                "enabled" if n == 1 else "disabled",
                allowed_values=["enabled"] if n == 1 else ["disabled"],
            ),
        ]
    return params


def _geometry_parameters(model: DetectorModel) -> list[Parameter]:
    h, w = model.shape
    params = [
        Parameter("beam_center_x", "float", w / 2, unit="pixel", min=-1e6, max=1e6),
        Parameter("beam_center_y", "float", h / 2, unit="pixel", min=-1e6, max=1e6),
        Parameter("detector_distance", "float", 0.1, unit="m", min=0.0, max=1e3),
        Parameter(
            "detector_translation",
            "float[]",
            [0.0, 0.0, 0.0],
            unit="m",
            compute=_translation,
            check=_check_translation,
            on_change=_on_translation,
        ),
        Parameter(
            "detector_orientation", "float[]", DEFAULT_ORIENTATION, check=_check_orientation, on_change=_on_orientation
        ),
        Parameter(
            "detector_orientation_angle",
            "float",
            180.0,
            unit="degree",
            min=-360.0,
            max=360.0,
            on_change=_on_orientation_axis_angle,
        ),
        Parameter(
            "detector_orientation_axis",
            "float[]",
            [0.0, 0.0, 1.0],
            check=_check_unit_vector("detector_orientation_axis"),
            on_change=_on_orientation_axis_angle,
        ),
        Parameter("transformation_order", "string[]", ["omega"], check=lambda v: _check_axes_names(v)),
    ]
    for axis, vector in GONIOMETER_AXES.items():
        params += [
            Parameter(f"{axis}_start", "float", 0.0, unit="degree", min=-1e6, max=1e6),
            Parameter(f"{axis}_increment", "float", 0.0, unit="degree", min=-1e6, max=1e6),
            Parameter(f"{axis}_axis", "float[]", vector, check=_check_unit_vector(f"{axis}_axis")),
        ]
    return params


def _check_axes_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in GONIOMETER_AXES]
    if unknown or len(set(names)) != len(names):
        raise InvalidValue(f"transformation_order: axes must be distinct names of {list(GONIOMETER_AXES)}")


def _metadata_parameters(model: DetectorModel) -> list[Parameter]:
    """Experiment metadata carried into files and stream headers (NXmx, D18 2024.1)."""
    return [
        Parameter("instrument_name", "string", ""),
        Parameter("sample_name", "string", ""),
        Parameter("source_name", "string", ""),
        Parameter(
            "flux_type",
            "string",
            "",
            allowed_values=[
                "",
                "flux",
                "flux_area_integrated",
                "flux_time_integrated",
                "flux_area_and_time_integrated",
            ],
        ),
        Parameter("flux_value", "float", 0.0, min=0.0, max=1e30),
        Parameter("total_flux", "float", 0.0, min=0.0, max=1e30),
        Parameter("incident_particle_type", "string", "photons", access_mode="r"),
    ]


def _hardware_parameters(model: DetectorModel) -> list[Parameter]:
    ro = "r"
    h, w = model.shape
    return [
        Parameter("description", "string", model.description, access_mode=ro),
        Parameter("detector_number", "string", model.detector_number, access_mode=ro),
        Parameter("software_version", "string", __version__, access_mode=ro),
        Parameter("eiger_fw_version", "string", EIGER_FW_VERSION, access_mode=ro),
        Parameter("sensor_material", "string", model.module.sensor_material, access_mode=ro),
        Parameter("sensor_thickness", "float", model.module.sensor_thickness_m, access_mode=ro, unit="m"),
        Parameter("x_pixel_size", "float", model.module.pixel_size_m, access_mode=ro, unit="m"),
        Parameter("y_pixel_size", "float", model.module.pixel_size_m, access_mode=ro, unit="m"),
        Parameter("x_pixels_in_detector", "uint", w, access_mode=ro),
        Parameter("y_pixels_in_detector", "uint", h, access_mode=ro),
        Parameter("data_collection_date", "string", "", access_mode=ro),
    ]


def _excluded_pixels(det: Subsystem) -> int:
    mask = det.values.get("pixel_mask")
    return int(np.count_nonzero(mask)) if mask is not None else 0


def _status_parameters(model: DetectorModel, controller: AcquisitionController) -> list[StatusParameter]:
    return [
        StatusParameter(
            "state",
            "string",
            lambda: controller.state.value,
            allowed_values=STATE_VALUES,
            critical_values=["na", "error"],
        ),
        StatusParameter("error", "string[]", lambda: list(controller.errors), listed=False),
        StatusParameter("time", "string", lambda: datetime.now().astimezone().isoformat(timespec="seconds")),
        StatusParameter("series_unique_id", "string", lambda: controller.series_unique_id),
        StatusParameter(
            "high_voltage/state",
            "string",
            controller.high_voltage_state,
            allowed_values=["NA", "OFF", "RAMPING", "READY"],
        ),
        # the simulated modules sit in a regulated enclosure: constant environment readings
        StatusParameter(
            "temperature", "float", lambda: controller.environment()[0], unit="degC", critical_limits=[15.0, 37.5]
        ),
        StatusParameter(
            "humidity", "float", lambda: controller.environment()[1], unit="%", critical_limits=[0.0, 35.0]
        ),
        StatusParameter(
            "board_000/th0_temp",
            "float",
            lambda: controller.environment()[0],
            unit="degC",
            critical_limits=[15.0, 37.5],
        ),
        StatusParameter(
            "board_000/th0_humidity",
            "float",
            lambda: controller.environment()[1],
            unit="%",
            critical_limits=[0.0, 35.0],
        ),
        StatusParameter(
            "builder/dcu_buffer_free", "float", controller.buffer_free_percent, unit="%", critical_limits=[2.0, None]
        ),
        *[
            StatusParameter(
                f"link_{i}", "string", (lambda i=i: controller.link_state(i)), allowed_values=["up", "down"]
            )
            for i in range(model.n_modules)
        ],
        *_with_loss_health(daq_status_parameters(lambda: controller.datapath.assembler)),  # daq/params.py
        # opendcu: what became of the running (or last) series, control/outcome.py; JSON, so not listed
        StatusParameter("series", "json", lambda: controller.summary(), listed=False, health=_series_health),
    ]


def _series_health(summary: dict[str, Any]) -> str:
    return HEALTH_OF_OUTCOME.get(summary.get("outcome", "success"), "normal")


#: SIMPLON GET `state` of the DAQ's loss counters: warning when anything was lost, error when images were
_LOSS_HEALTH: dict[str, Callable[[Any], str]] = {
    "daq/packets_lost": lambda v: "warning" if v else "normal",
    "daq/packets_overflow": lambda v: "warning" if v else "normal",
    "daq/frames_incomplete": lambda v: "warning" if v else "normal",
    "daq/frames_lost": lambda v: "error" if v else "normal",
    "daq/efficiency": lambda v: "warning" if v < 1.0 else "normal",
}


def _with_loss_health(params: list[StatusParameter]) -> list[StatusParameter]:
    for p in params:
        p.health = _LOSS_HEALTH.get(p.key, p.health)
    return params


def build_detector_subsystem(model: DetectorModel, controller: AcquisitionController) -> Subsystem:
    """The detector config/status keys and commands for `model`, bound to the acquisition controller."""
    det = Subsystem("detector")
    det.add(
        *_timing_parameters(model),
        *_energy_parameters(),
        *_geometry_parameters(model),
        *_metadata_parameters(model),
        *_hardware_parameters(model),
        *image_processing_parameters(model),  # pipeline switches: app_detector/pipeline/params.py
    )
    if "number_of_excluded_pixels" not in det.config:
        det.add(Parameter("number_of_excluded_pixels", "uint", 0, access_mode="r", compute=_excluded_pixels))
    det.alias("threshold_energy", "threshold/1/energy")
    for name in ("pixel_mask", "flatfield", "number_of_excluded_pixels"):
        if name in det.config:
            det.alias(f"threshold/1/{name}", name)
    for key, changes in CHANGE_LISTS.items():
        if key in det.config:
            det.config[key].affects = tuple(changes)
    det.add_status(*_status_parameters(model, controller))

    def gate(task: str, key: str) -> None:
        # before initialize only status/state exists (D16 info #1, D18 caution #9)
        if controller.state is DetectorState.NA and task != "command" and not (task == "status" and key == "state"):
            raise ParameterNotFound(key)

    det.gate = gate
    return det


def snapshot(det: Subsystem) -> dict[str, Any]:
    """Config values at arm time (2-D arrays excluded), for file and stream headers; sets data_collection_date.

    The snapshot describes the images as delivered: with 2x2 binning the beam centre is in image pixels
    (beam_center / 2, like x/y_pixel_size and x/y_pixels_in_detector; see pipeline/params.py)."""
    det.values["data_collection_date"] = datetime.now().astimezone().isoformat(timespec="milliseconds")
    snap = {k: det[k] for k, p in det.config.items() if p.value_type not in ARRAY_TYPES}
    snap.update({alias: snap[key] for alias, key in det.aliases.items() if key in snap})
    binning = image_binning(det)
    snap.update(beam_center_x=snap["beam_center_x"] / binning, beam_center_y=snap["beam_center_y"] / binning)
    return snap
