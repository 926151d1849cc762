"""Flat-detector diffraction geometry in pyFAI's PONI convention (spec/edge-analysis.md §1.1-1.2).

Coordinates used throughout opendcu.analysis:
- image coordinates (x, y) in *pixels*, edge based: pixel (row r, col c) covers x in [c, c+1), y in [r, r+1),
  so its centre is (c + 0.5, r + 0.5). SIMPLON `beam_center_x/y` and DIALS/XDS use the same convention.
- the lab frame: x along the detector's fast axis (columns), y along the slow axis (rows), z along the beam,
  the sample at the origin. Right-handed. The rotation axis of a goniometer is given in this frame.

pyFAI's parameters (all SI): `dist` (sample to detector plane along its normal), `poni1/poni2` (the point of
normal incidence from the detector corner, along rows/columns), `rot1..3` (detector rotations, applied in that
order; rot1 turns the other way round than rot2/rot3) and `wavelength`. With no tilt the PONI is the beam centre.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

HC_KEV_ANGSTROM = 12.398419843320026
EPS32 = float(np.finfo(np.float32).eps)

#: radial units: pyFAI names, the quantity's scale, and how to get it from 2theta (rad) and the wavelength (A)
RADIAL_UNITS = ("q_nm^-1", "q_A^-1", "2th_deg", "2th_rad", "r_mm", "d*2_A^-2")
#: units a profile can be *reported* in besides the binning units (d is not linear in anything we bin)
OUTPUT_UNITS = RADIAL_UNITS + ("d_A",)


def _axis_rotation(axis: int, angle: float) -> np.ndarray:
    """Right-handed rotation by `angle` about coordinate axis `axis` (0, 1, 2)."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i] = m[j, j] = c
    m[i, j], m[j, i] = -s, s
    return m


@dataclass(frozen=True)
class Geometry:
    """One detector position and wavelength, and the image shape (rows, cols) it applies to."""

    shape: tuple[int, int]
    dist: float = 0.1
    poni1: float = 0.0
    poni2: float = 0.0
    rot1: float = 0.0
    rot2: float = 0.0
    rot3: float = 0.0
    pixel1: float = 75e-6
    pixel2: float = 75e-6
    wavelength: float = 1e-10

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_beam_center(
        cls,
        shape: tuple[int, int],
        beam_x_px: float,
        beam_y_px: float,
        distance_m: float,
        wavelength_a: float,
        pixel_m: float = 75e-6,
    ) -> Geometry:
        """An untilted detector: the beam centre (edge-based pixels, as SIMPLON) is the PONI."""
        return cls(
            shape=tuple(shape),
            dist=distance_m,
            poni1=beam_y_px * pixel_m,
            poni2=beam_x_px * pixel_m,
            pixel1=pixel_m,
            pixel2=pixel_m,
            wavelength=wavelength_a * 1e-10,
        )

    @classmethod
    def from_detector_config(cls, config: dict[str, Any], shape: tuple[int, int]) -> Geometry:
        """From the SIMPLON detector config snapshot taken at arm (beam centre, distance, wavelength)."""
        return cls.from_beam_center(
            shape,
            float(config["beam_center_x"]),
            float(config["beam_center_y"]),
            float(config["detector_distance"]),
            float(config["wavelength"]),
            float(config.get("x_pixel_size", 75e-6)),
        )

    @classmethod
    def from_poni(cls, text: str, shape: tuple[int, int] | None = None) -> Geometry:
        """Parse a PONI file (versions 1, 2 and 2.1; unknown keys are ignored). Raises ValueError."""
        values: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"PONI line {number}: expected 'key: value', got {line!r}")
            values[key.strip().lower()] = value.strip()
        pixel1 = pixel2 = 75e-6
        if "detector_config" in values:
            try:
                config = json.loads(values["detector_config"])
            except json.JSONDecodeError as exc:
                raise ValueError(f"PONI Detector_config is not JSON: {exc}") from None
            pixel1 = float(config.get("pixel1", pixel1))
            pixel2 = float(config.get("pixel2", pixel2))
            if shape is None and config.get("max_shape"):
                shape = tuple(config["max_shape"])
        pixel1 = float(values.get("pixelsize1", pixel1))
        pixel2 = float(values.get("pixelsize2", pixel2))
        if shape is None:
            raise ValueError("the PONI file does not give the detector shape; pass it explicitly")

        def number(key: str, default: float | None = None) -> float:
            if key not in values:
                if default is None:
                    raise ValueError(f"PONI file lacks '{key}'")
                return default
            try:
                return float(values[key])
            except ValueError:
                raise ValueError(f"PONI {key}: {values[key]!r} is not a number") from None

        geometry = cls(
            shape=tuple(shape),
            dist=number("distance"),
            poni1=number("poni1"),
            poni2=number("poni2"),
            rot1=number("rot1", 0.0),
            rot2=number("rot2", 0.0),
            rot3=number("rot3", 0.0),
            pixel1=pixel1,
            pixel2=pixel2,
            wavelength=number("wavelength"),
        )
        geometry.check()
        return geometry

    def to_poni(self) -> str:
        """The geometry as a PONI 2.1 file."""
        config = {"pixel1": self.pixel1, "pixel2": self.pixel2, "max_shape": list(self.shape), "orientation": 3}
        lines = [
            "# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis",
            "# written by opendcu",
            "poni_version: 2.1",
            "Detector: Detector",
            f"Detector_config: {json.dumps(config)}",
            f"Distance: {self.dist!r}",
            f"Poni1: {self.poni1!r}",
            f"Poni2: {self.poni2!r}",
            f"Rot1: {self.rot1!r}",
            f"Rot2: {self.rot2!r}",
            f"Rot3: {self.rot3!r}",
            f"Wavelength: {self.wavelength!r}",
        ]
        return "\n".join(lines) + "\n"

    def check(self) -> None:
        """Raise ValueError for geometries no detector can have."""
        if not (self.dist > 0 and self.wavelength > 0 and self.pixel1 > 0 and self.pixel2 > 0):
            raise ValueError("distance, wavelength and pixel sizes must be positive")
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"bad detector shape {self.shape}")
        if not all(math.isfinite(v) for v in (self.poni1, self.poni2, self.rot1, self.rot2, self.rot3)):
            raise ValueError("PONI and rotations must be finite")

    def with_changes(self, **changes: Any) -> Geometry:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- derived quantities -----------------------------------------------------------------------------------------
    @property
    def wavelength_a(self) -> float:
        return self.wavelength * 1e10

    @property
    def beam_center_px(self) -> tuple[float, float]:
        """(x, y) of the PONI in pixels (the beam centre when there is no tilt)."""
        return self.poni2 / self.pixel2, self.poni1 / self.pixel1

    @property
    def rotation(self) -> np.ndarray:
        """Matrix taking a detector-frame vector (along rows, along cols, along the normal) to pyFAI's
        (y, x, z) lab axes: rot1 about axis 1 (left-handed, as pyFAI), then rot2 about axis 2, then rot3."""
        return _axis_rotation(2, self.rot3) @ _axis_rotation(1, self.rot2) @ _axis_rotation(0, -self.rot1)

    def lab_vectors(self, x_px: np.ndarray, y_px: np.ndarray) -> np.ndarray:
        """Lab-frame positions (m, shape (..., 3) as x, y, z) of image points (x, y) in edge-based pixels."""
        x_px, y_px = np.broadcast_arrays(np.asarray(x_px, float), np.asarray(y_px, float))
        detector = np.stack(
            [y_px * self.pixel1 - self.poni1, x_px * self.pixel2 - self.poni2, np.full(x_px.shape, self.dist)], axis=-1
        )
        t = detector @ self.rotation.T  # (..., [y, x, z])
        return np.stack([t[..., 1], t[..., 0], t[..., 2]], axis=-1)

    def project(self, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where rays from the sample along lab `directions` (..., 3) hit the detector plane.

        Returns (x_px, y_px, hits): hits is False for rays that go away from the detector.
        """
        d = np.asarray(directions, float)
        t = np.stack([d[..., 1], d[..., 0], d[..., 2]], axis=-1) @ self.rotation  # back to detector frame
        normal = t[..., 2]
        hits = normal > 1e-12
        scale = np.where(hits, self.dist / np.where(hits, normal, 1.0), np.nan)
        y_px = (t[..., 0] * scale + self.poni1) / self.pixel1
        x_px = (t[..., 1] * scale + self.poni2) / self.pixel2
        return x_px, y_px, hits

    def two_theta_chi(self, x_px: np.ndarray, y_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """2theta and pyFAI's chi (rad) of image points."""
        v = self.lab_vectors(x_px, y_px)
        return np.arctan2(np.hypot(v[..., 0], v[..., 1]), v[..., 2]), np.arctan2(v[..., 1], v[..., 0])

    def d_spacing(self, x_px: np.ndarray, y_px: np.ndarray) -> np.ndarray:
        """Resolution d (A) of image points (inf at the beam centre)."""
        tth, _ = self.two_theta_chi(x_px, y_px)
        with np.errstate(divide="ignore"):
            return self.wavelength_a / (2 * np.sin(tth / 2))

    def pixel_arrays(self, rows: slice | None = None) -> dict[str, np.ndarray]:
        """Per-pixel-centre arrays for the image (or a band of rows): 2theta, chi (rad), r (m from the beam
        axis), solid angle relative to the PONI, each float64 [rows, cols]."""
        r = range(*(rows or slice(0, self.shape[0])).indices(self.shape[0]))
        y = (np.arange(r.start, r.stop, r.step, dtype=float) + 0.5)[:, None]
        x = (np.arange(self.shape[1], dtype=float) + 0.5)[None, :]
        v = self.lab_vectors(x, y)
        length = np.sqrt(np.einsum("...i,...i->...", v, v))
        r = np.hypot(v[..., 0], v[..., 1])
        return {
            "2th": np.arctan2(r, v[..., 2]),
            "r": r,
            "chi": np.arctan2(v[..., 1], v[..., 0]),
            "solid_angle": (self.dist / length) ** 3,
        }

    # -- units ---------------------------------------------------------------------------------------------------
    def radial_from_2th(self, tth: np.ndarray, unit: str) -> np.ndarray:
        """Convert 2theta (rad) to a radial unit (see RADIAL_UNITS / OUTPUT_UNITS)."""
        lam_a = self.wavelength_a
        if unit == "q_A^-1":
            return 4 * np.pi * np.sin(tth / 2) / lam_a
        if unit == "q_nm^-1":
            return 40 * np.pi * np.sin(tth / 2) / lam_a
        if unit == "2th_deg":
            return np.degrees(tth)
        if unit == "2th_rad":
            return np.asarray(tth, dtype=float)
        if unit == "r_mm":  # exact without tilt; per pixel, integrate.py uses the distance from the beam axis
            return self.dist * np.tan(tth) * 1e3
        if unit == "d*2_A^-2":
            return (2 * np.sin(tth / 2) / lam_a) ** 2
        if unit == "d_A":
            with np.errstate(divide="ignore"):
                return lam_a / (2 * np.sin(tth / 2))
        raise ValueError(f"unknown radial unit {unit!r}; known: {', '.join(OUTPUT_UNITS)}")

    def radial_to_2th(self, value: np.ndarray, unit: str) -> np.ndarray:
        """Inverse of radial_from_2th."""
        lam_a = self.wavelength_a
        value = np.asarray(value, dtype=float)
        if unit == "q_A^-1":
            return 2 * np.arcsin(np.clip(value * lam_a / (4 * np.pi), -1, 1))
        if unit == "q_nm^-1":
            return 2 * np.arcsin(np.clip(value * lam_a / (40 * np.pi), -1, 1))
        if unit == "2th_deg":
            return np.radians(value)
        if unit == "2th_rad":
            return value
        if unit == "r_mm":
            return np.arctan(value * 1e-3 / self.dist)
        if unit == "d*2_A^-2":
            return 2 * np.arcsin(np.clip(np.sqrt(np.maximum(value, 0)) * lam_a / 2, -1, 1))
        if unit == "d_A":
            with np.errstate(divide="ignore"):
                return 2 * np.arcsin(np.clip(lam_a / (2 * value), -1, 1))
        raise ValueError(f"unknown radial unit {unit!r}; known: {', '.join(OUTPUT_UNITS)}")

    def convert_radial(self, value: np.ndarray, from_unit: str, to_unit: str) -> np.ndarray:
        return self.radial_from_2th(self.radial_to_2th(value, from_unit), to_unit)


def polarization(tth: np.ndarray, chi: np.ndarray, factor: float, offset: float = 0.0) -> np.ndarray:
    """pyFAI's polarization factor P(2theta, chi) = (1 + cos^2 2theta - f cos(2(chi + offset)) sin^2 2theta) / 2.

    f = 0: unpolarized; f = 1: fully polarized in the horizontal plane (no correction in the vertical).
    """
    cos2 = np.cos(tth) ** 2
    return 0.5 * (1 + cos2 - factor * np.cos(2 * (chi + offset)) * (1 - cos2))
