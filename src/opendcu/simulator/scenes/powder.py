"""Powder rings of calibrants: LaB6 (NIST SRM 660c) and silver behenate (spec/edge-analysis.md §5.3).

I(pixel) = [background(q) + sum_k A_k G(2theta - 2theta_k; w_k)] x solid angle x polarization, with Gaussian rings
whose FWHM follows Caglioti (FWHM^2 = U tan^2 theta + V tan theta + W) plus the angle one pixel subtends. Ring
positions follow Bragg's law from the calibrant's d-spacings; the relative intensities are pyFAI's calibrant
tables for the listed rings (LaB6) or a 1/n^1.5 fall-off of the lamellar orders (AgBh).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from opendcu.analysis.geometry import Geometry, polarization
from opendcu.simulator.scenes.base import Experiment, register_scene

LAB6_A = 4.156826  # A, NIST SRM 660c
#: (h, k, l) and relative intensity of the first LaB6 rings (pyFAI LaB6.D)
LAB6_RINGS = (
    ((1, 0, 0), 64.27),
    ((1, 1, 0), 100.0),
    ((1, 1, 1), 41.54),
    ((2, 0, 0), 20.21),
    ((2, 1, 0), 43.1),
    ((2, 1, 1), 21.17),
)
AGBH_D001 = 58.380  # A, lamellar spacing
AGBH_ORDERS = 12


@dataclass(frozen=True)
class Ring:
    d: float  # A
    intensity: float  # relative


def calibrant_rings(name: str) -> tuple[Ring, ...]:
    """The rings of a calibrant ("LaB6" or "AgBh"), strongest = 100."""
    key = name.lower()
    if key == "lab6":
        return tuple(Ring(LAB6_A / math.sqrt(h * h + k * k + l * l), i) for (h, k, l), i in LAB6_RINGS)
    if key == "agbh":
        return tuple(Ring(AGBH_D001 / n, 100.0 / n**1.5) for n in range(1, AGBH_ORDERS + 1))
    raise ValueError(f"unknown calibrant {name!r}; known: LaB6, AgBh")


@register_scene("powder")
class PowderScene:
    """A calibrant powder in the beam: rings on a smooth background (the same on every frame)."""

    exact = False
    static = True  # the modules replay noise-bank frames (simulator/physics.py)

    def __init__(
        self,
        experiment: Experiment,
        calibrant: str = "LaB6",
        ring_flux: float = 200.0,
        background_flux: float = 10.0,
        caglioti: tuple[float, float, float] = (0.0, 0.0, 0.0025),
        polarization_factor: float = 0.99,
    ):
        """ring_flux: peak photons per pixel per second of count time of the strongest ring (before corrections);
        caglioti: U, V, W in deg^2 (W = 0.0025 -> 0.05 deg FWHM)."""
        if min(ring_flux, background_flux) < 0:
            raise ValueError("fluxes must be non-negative")
        if len(caglioti) != 3:
            raise ValueError("caglioti needs (U, V, W)")
        self.experiment = experiment
        self.rings = calibrant_rings(calibrant)
        self.ring_flux = float(ring_flux)
        self.background_flux = float(background_flux)
        self.caglioti = tuple(float(c) for c in caglioti)
        self.polarization_factor = float(polarization_factor)
        model = experiment.detector
        self.geometry = Geometry.from_beam_center(
            model.shape,
            experiment.beam_center_x_px,
            experiment.beam_center_y_px,
            experiment.distance_m,
            experiment.wavelength_a,
            model.module.pixel_size_m,
        )
        self._cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    def ring_two_theta_deg(self) -> np.ndarray:
        """2theta (deg) of each ring (NaN when the wavelength cannot reach it)."""
        ratio = np.array([self.experiment.wavelength_a / (2 * r.d) for r in self.rings])
        with np.errstate(invalid="ignore"):
            return np.degrees(2 * np.arcsin(np.where(ratio <= 1, ratio, np.nan)))

    def expected(self, frame_number: int, rows: slice, cols: slice) -> np.ndarray:
        key = (rows.start, rows.stop, cols.start, cols.stop)
        if key not in self._cache:
            self._cache[key] = self._render(rows, cols).astype(np.float32)
        return self._cache[key]

    def _render(self, rows: slice, cols: slice) -> np.ndarray:
        g = self.geometry
        arrays = g.pixel_arrays(rows)
        tth = np.degrees(arrays["2th"][:, cols])
        q = g.radial_from_2th(arrays["2th"][:, cols], "q_A^-1")
        signal = self.background_flux * (0.5 + 0.5 * np.exp(-((q / 1.5) ** 2)))
        u, v, w = self.caglioti
        pixel_deg = math.degrees(g.pixel1 / g.dist)
        for ring, centre in zip(self.rings, self.ring_two_theta_deg(), strict=True):
            if not np.isfinite(centre):
                continue
            tan_theta = math.tan(math.radians(centre / 2))
            fwhm = math.sqrt(max(u * tan_theta**2 + v * tan_theta + w, 0.0) + pixel_deg**2)
            sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
            near = np.abs(tth - centre) < 6 * sigma
            if near.any():
                peak = self.ring_flux * ring.intensity / 100.0
                signal[near] += peak * np.exp(-0.5 * ((tth[near] - centre) / sigma) ** 2)
        corrections = arrays["solid_angle"][:, cols] * polarization(
            arrays["2th"][:, cols], arrays["chi"][:, cols], self.polarization_factor
        )
        return signal * corrections * self.experiment.count_time_s
