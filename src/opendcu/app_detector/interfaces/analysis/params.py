"""The `analysis` subsystem: SIMPLON-style config/status/command keys of the live analysis.

Config values are sampled at arm, like every interface's: a change applies from the next series. The geometry
comes from the detector config at arm (beam centre, distance, wavelength) unless `poni` holds a PONI file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opendcu.analysis.crystal import UnitCell
from opendcu.analysis.geometry import RADIAL_UNITS, Geometry
from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.control.parameters import Command, Parameter, StatusParameter, Subsystem

if TYPE_CHECKING:
    from opendcu.app_detector.interfaces.analysis.interface import AnalysisInterface

STATES = ["disabled", "ready", "acquire", "error"]


def _check_cell(value: list[float]) -> None:
    if value:
        try:
            UnitCell.from_sequence(value)
        except ValueError as exc:
            raise InvalidValue(f"Parameter unit_cell: {exc}") from None


def _check_range(name: str, size: int = 2):
    def check(value: list[float]) -> None:
        if value and (len(value) != size or (size == 2 and not value[0] < value[1])):
            raise InvalidValue(f"Parameter {name}: expected [] or {size} numbers" + (" lo < hi" if size == 2 else ""))

    return check


def _check_axis(value: list[float]) -> None:
    if len(value) != 3 or not any(value):
        raise InvalidValue("Parameter rotation_axis: expected a non-zero 3-vector [x, y, z]")


def _check_poni(value: str) -> None:
    if value.strip():
        try:
            Geometry.from_poni(value, shape=(1, 1))
        except ValueError as exc:
            raise InvalidValue(f"Parameter poni: {exc}") from None


def build_analysis_subsystem(interface: AnalysisInterface) -> Subsystem:
    sub = Subsystem("analysis")
    sub.add(
        Parameter("mode", "string", "disabled", allowed_values=["enabled", "disabled"]),
        # live operation
        Parameter("stride", "uint", 1, min=1, max=1_000_000),
        Parameter("workers", "uint", 1, min=1, max=8),
        Parameter("threads_per_worker", "uint", 1, min=1, max=16),
        Parameter("max_spots", "uint", 256, min=1, max=10_000),
        # geometry (empty: from the detector config at arm)
        Parameter("poni", "string", "", check=_check_poni),
        # radial integration
        Parameter("integration", "bool", True),
        Parameter("radial_bins", "uint", 1000, min=1, max=100_000),
        Parameter("radial_unit", "string", "q_A^-1", allowed_values=list(RADIAL_UNITS)),
        Parameter("radial_range", "float[]", [], check=_check_range("radial_range")),
        Parameter("azimuthal_bins", "uint", 1, min=1, max=3600),
        Parameter("solid_angle_correction", "bool", True),
        Parameter("polarization_factor", "float", 0.99, min=-1.0, max=1.0),
        Parameter("polarization_correction", "bool", True),
        # spot finding (DIALS dispersion)
        Parameter("spot_finding", "bool", True),
        Parameter("sigma_strong", "float", 3.0, min=0.5, max=100.0),
        Parameter("sigma_background", "float", 6.0, min=0.5, max=100.0),
        Parameter("kernel_size", "uint", 3, min=1, max=15),
        Parameter("min_local", "uint", 2, min=0, max=1000),
        Parameter("global_threshold", "float", 0.0, min=0.0),
        Parameter("gain", "float", 1.0, min=1e-3, max=1e6),
        Parameter("min_spot_size", "uint", 3, min=1, max=10_000),
        Parameter("max_spot_size", "uint", 1000, min=1, max=1_000_000),
        Parameter("resolution_range", "float[]", [], unit="angstrom", check=_check_range("resolution_range")),
        # scoring
        Parameter("ice_ring_width", "float", 0.025, unit="1/angstrom", min=0.0, max=1.0),
        Parameter("hit_min_spots", "uint", 10, min=0, max=1_000_000),
        # indexing: with a unit cell (any setting of the lattice: centred cells index in their conventional cell),
        # or without one: a cell search over the spots of the first images of a rotation, then indexing with it
        Parameter("indexing", "bool", True),
        Parameter("unit_cell", "float[]", [], check=_check_cell),
        Parameter("hkl_tolerance", "float", 0.3, min=0.01, max=0.49),
        Parameter("rotation_axis", "float[]", [1.0, 0.0, 0.0], check=_check_axis),
    )
    sub.add_status(
        StatusParameter("state", "string", lambda: interface.state, allowed_values=STATES),
        StatusParameter("error", "string[]", lambda: list(interface.errors)),
        # workers build their maps and compile their kernels at arm; images before that are skipped
        StatusParameter("workers_ready", "uint", interface.workers_ready),
        StatusParameter("series_id", "uint", lambda: interface.status("series_id", 0)),
        StatusParameter("images_received", "uint", lambda: interface.status("images_received", 0)),
        StatusParameter("images_analysed", "uint", lambda: interface.status("images_analysed", 0)),
        StatusParameter("images_skipped", "uint", lambda: interface.status("images_skipped", 0)),
        # images handed to a worker that died before it answered: no result (the files hold them all the same)
        StatusParameter("images_lost", "uint", lambda: interface.status("images_lost", 0)),
        StatusParameter("decimated", "bool", lambda: interface.status("decimated", False)),
        StatusParameter("hit_rate", "float", lambda: interface.status("hit_rate", 0.0) or 0.0),
        StatusParameter("indexing_rate", "float", lambda: interface.status("indexing_rate", 0.0) or 0.0),
        StatusParameter(
            "median_latency", "float", lambda: interface.status("median_latency_ms", 0.0) or 0.0, unit="ms"
        ),
        StatusParameter("found_cell", "float[]", lambda: interface.status("found_cell") or []),
    )
    sub.add_command(
        Command("clear", lambda _arg: interface.clear()), Command("initialize", lambda _arg: interface.initialize())
    )
    return sub


def setup_options(values: dict[str, Any]) -> dict[str, Any]:
    """The analysis settings (as plain dicts for the workers) from the subsystem's config values."""
    v = values
    integration = None
    if v["integration"]:
        integration = {
            "npt": v["radial_bins"],
            "unit": v["radial_unit"],
            "radial_range": tuple(v["radial_range"]) if v["radial_range"] else None,
            "npt_azim": v["azimuthal_bins"],
            "solid_angle": v["solid_angle_correction"],
            "polarization_factor": v["polarization_factor"] if v["polarization_correction"] else None,
        }
    spots = None
    if v["spot_finding"]:
        d_range = v["resolution_range"]
        spots = {
            "sigma_strong": v["sigma_strong"],
            "sigma_background": v["sigma_background"],
            "kernel_size": v["kernel_size"],
            "min_local": v["min_local"],
            "global_threshold": v["global_threshold"],
            "gain": v["gain"],
            "min_spot_size": v["min_spot_size"],
            "max_spot_size": v["max_spot_size"],
            "d_min": d_range[0] if d_range else None,
            "d_max": d_range[1] if d_range else None,
            "prefilter_sigma": min(2.5, 0.8 * v["sigma_strong"]),
        }
    indexing = None
    if v["indexing"] and v["spot_finding"]:  # without a unit cell the workers search one from the spots
        indexing = {
            "cell": list(v["unit_cell"]) or None,
            "rotation_axis": tuple(v["rotation_axis"]),
            "hkl_tolerance": v["hkl_tolerance"],
        }
    return {
        "integration": integration,
        "spots": spots,
        "indexing": indexing,
        "scoring": {"ice_ring_width_q": v["ice_ring_width"], "hit_min_spots": v["hit_min_spots"]},
        "threads": v["threads_per_worker"],
        "max_spots": v["max_spots"],
    }
