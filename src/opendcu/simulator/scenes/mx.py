"""An MX rotation series from a random crystal (spec/edge-analysis.md §5.2), with its ground truth.

Per dataset: a unit cell and a random orientation U (uniform on SO(3)) give A = U.B; every reflection to
`d_min` gets a Wilson intensity E^2.exp(-B/2d^2) (E^2 ~ Exp(1), shared by Friedel mates, fixed for the series).
Each reflection's rotation angles on the Ewald sphere are solved exactly: with r(phi) = r_par + cos(phi) r_perp +
sin(phi) r_cross, the condition |r + s0| = |s0| is a.cos(phi) + b.sin(phi) = c.

Per frame (phi from omega_start + (n-1).omega_increment over one increment), a reflection contributes its
partiality p (a Gaussian rocking curve of width mosaicity/zeta, zeta = |s1^.(e x s0^)|), times the Lorentz factor
1/zeta and the polarization, spread over a 2-D Gaussian spot integrated exactly over each pixel. The background is a
smooth function of q (diffuse + a water ring + optional hexagonal-ice rings) times solid angle and polarization.
Reflections are recorded at the position where they cross the sphere. `omega_increment = 0` gives stills
(the rocking curve within +-mosaicity/2 of omega_start).

Units: `spot_flux` = photons of a fully recorded reflection with E^2 = 1 at low resolution (zeta = 1) per second
of count time; `background_flux` = photons per pixel per second at the PONI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from opendcu.analysis.crystal import UnitCell, miller_indices, random_rotation, rotation_about
from opendcu.analysis.geometry import Geometry, polarization
from opendcu.analysis.scoring import ICE_RING_D
from opendcu.geometry import DetectorLayout
from opendcu.simulator.scenes.base import Experiment, register_scene

WATER_RING_Q = 2 * math.pi / 3.7  # vitreous ice / cryo solvent ring, A^-1
MIN_ZETA = 0.05  # bounds the Lorentz factor and the rocking width of reflections near the rotation axis


_erf_ufunc = None


def _erf(x: np.ndarray) -> np.ndarray:
    """math.erf as a ufunc, compiled on first use (numpy has no erf; scipy is not a runtime dependency)."""
    global _erf_ufunc
    if _erf_ufunc is None:
        import numba

        _erf_ufunc = numba.vectorize(["float64(float64)"], cache=True)(_erf_scalar)
    return _erf_ufunc(x)


def _erf_scalar(x: float) -> float:
    return math.erf(x)


@dataclass
class MxTruth:
    """What the scene put on one frame: every reflection with photons on it, and the crystal."""

    frame_number: int
    phi_range_deg: tuple[float, float]
    #: per spot: x, y (edge-based pixels), expected photons on this frame, d (A), phi (deg) where it crosses
    x: np.ndarray
    y: np.ndarray
    photons: np.ndarray
    hkl: np.ndarray
    d: np.ndarray
    phi_deg: np.ndarray
    partiality: np.ndarray
    #: the rocking curve's sigma (deg): mosaicity / zeta, large for reflections near the rotation axis
    rocking_width_deg: np.ndarray
    #: a spot finder should find it: on a module, not crowded, and min_spot_size pixels clearly strong
    findable: np.ndarray
    cell: UnitCell
    U: np.ndarray
    B: np.ndarray
    rotation_axis: np.ndarray
    wavelength_a: float
    #: the simulated resolution limit (no reflection beyond it)
    d_min: float
    geometry: Geometry = field(repr=False)

    @property
    def A(self) -> np.ndarray:
        """U.B at phi = 0 (lab frame)."""
        return self.U @ self.B

    def __len__(self) -> int:
        return int(self.x.size)


@register_scene("mx")
class MxScene:
    """A rotating single crystal on a smooth solvent background."""

    exact = False

    def __init__(self, experiment: Experiment, cell: Sequence[float] = (79.1, 79.1, 37.9, 90.0, 90.0, 90.0),
                 centring: str = "P", d_min: float = 2.0, mosaicity_deg: float = 0.1, wilson_b: float = 25.0,
                 spot_flux: float = 2e4, spot_sigma_px: float = 0.7, background_flux: float = 10.0,
                 water_ring: float = 1.0, ice_rings: float = 0.0, rotation_axis: Sequence[float] = (1.0, 0.0, 0.0),
                 polarization_factor: float = 0.99, crystal_seed: int | None = None):
        if not d_min > 0 or mosaicity_deg <= 0 or spot_sigma_px <= 0 or min(spot_flux, background_flux) < 0:
            raise ValueError("need d_min > 0, mosaicity_deg > 0, spot_sigma_px > 0 and non-negative fluxes")
        if not -1 <= polarization_factor <= 1:
            raise ValueError("polarization_factor must be in [-1, 1]")
        axis = np.asarray(rotation_axis, float)
        if axis.shape != (3,) or not np.linalg.norm(axis) > 0:
            raise ValueError("rotation_axis must be a non-zero 3-vector")
        self.experiment = experiment
        self.cell = UnitCell.from_sequence(cell)
        self.d_min = float(d_min)
        self.mosaicity = math.radians(mosaicity_deg)
        self.wilson_b = float(wilson_b)
        self.spot_flux = float(spot_flux)
        self.sigma_px = float(spot_sigma_px)
        self.background_flux = float(background_flux)
        self.water_ring = float(water_ring)
        self.ice_rings = float(ice_rings)
        self.axis = axis / np.linalg.norm(axis)
        self.polarization_factor = float(polarization_factor)
        model = experiment.detector
        self.layout = DetectorLayout(model)
        self.geometry = Geometry.from_beam_center(
            model.shape, experiment.beam_center_x_px, experiment.beam_center_y_px, experiment.distance_m,
            experiment.wavelength_a, model.module.pixel_size_m)
        seed = experiment.seed if crystal_seed is None else int(crystal_seed)
        rng = np.random.default_rng([0x6D78, seed])
        self.U = random_rotation(rng)
        self.B = self.cell.B
        self.hkl = miller_indices(self.cell, self.d_min, centring)
        self.intensity = _wilson_intensities(self.hkl, self.cell, self.wilson_b, rng)
        self._solve_ewald()
        self._frame_cache: tuple[int, dict[str, np.ndarray]] | None = None
        self._background_cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    # -- geometry of the rotation ------------------------------------------------------------------------------------
    def _solve_ewald(self) -> None:
        """Both rotation angles at which each reflection is in diffraction, and where it lands."""
        lam = self.experiment.wavelength_a
        s0 = np.array([0.0, 0.0, 1.0 / lam])
        e = self.axis
        r0 = self.hkl @ (self.U @ self.B).T
        r_par = np.outer(r0 @ e, e)
        r_perp = r0 - r_par
        r_cross = np.cross(e, r0)
        a, b = r_perp @ s0, r_cross @ s0
        c = -0.5 * np.einsum("ij,ij->i", r0, r0) - r_par @ s0
        rho = np.hypot(a, b)
        ok = (rho > 0) & (np.abs(c) <= rho)
        base = np.arctan2(b, a)
        half = np.arccos(np.clip(c / np.where(ok, rho, 1.0), -1, 1))
        index = np.flatnonzero(ok)
        phi = np.concatenate([base[index] + half[index], base[index] - half[index]])
        index = np.concatenate([index, index])
        phi = np.mod(phi + math.pi, 2 * math.pi) - math.pi
        cos, sin = np.cos(phi)[:, None], np.sin(phi)[:, None]
        r = r_par[index] + cos * r_perp[index] + sin * r_cross[index]
        s1 = s0 + r
        x, y, hits = self.geometry.project(s1)
        h, w = self.geometry.shape
        margin = 5.0
        on = hits & (x > -margin) & (x < w + margin) & (y > -margin) & (y < h + margin)
        s1_unit = s1 / np.linalg.norm(s1, axis=1)[:, None]
        zeta = np.abs(s1_unit @ np.cross(e, [0.0, 0.0, 1.0]))
        tth = np.arccos(np.clip(s1_unit[:, 2], -1, 1))
        chi = np.arctan2(s1_unit[:, 1], s1_unit[:, 0])
        pol = polarization(tth, chi, self.polarization_factor)
        keep = np.flatnonzero(on)
        self._ref = {
            "index": index[keep], "phi": phi[keep], "x": x[keep], "y": y[keep],
            "zeta": np.maximum(zeta[keep], MIN_ZETA), "pol": pol[keep],
        }

    def phi_range(self, frame_number: int) -> tuple[float, float]:
        """Rotation range (rad) of a frame; a still integrates the rocking curve within +-mosaicity/2."""
        ex = self.experiment
        start = math.radians(ex.omega_start_deg + (frame_number - 1) * ex.omega_increment_deg)
        if ex.omega_increment_deg == 0:
            return start - self.mosaicity / 2, start + self.mosaicity / 2
        end = start + math.radians(ex.omega_increment_deg)
        return min(start, end), max(start, end)

    def _frame_spots(self, frame_number: int) -> dict[str, np.ndarray]:
        """The reflections recorded on a frame, with their photons (cached: every module asks for the same)."""
        if self._frame_cache is not None and self._frame_cache[0] == frame_number:
            return self._frame_cache[1]
        ref = self._ref
        start, end = self.phi_range(frame_number)
        mid, half = (start + end) / 2, (end - start) / 2
        offset = np.mod(ref["phi"] - mid + math.pi, 2 * math.pi) - math.pi
        width = self.mosaicity / ref["zeta"]
        near = np.flatnonzero(np.abs(offset) <= half + 5 * width)
        w = width[near] * math.sqrt(2)
        partiality = 0.5 * (_erf((half - offset[near]) / w) - _erf((-half - offset[near]) / w))
        index = ref["index"][near]
        photons = (self.spot_flux * self.experiment.count_time_s * self.intensity[index] * partiality
                   * ref["pol"][near] / ref["zeta"][near])
        keep = photons >= 0.05
        spots = {
            "x": ref["x"][near][keep], "y": ref["y"][near][keep], "photons": photons[keep],
            "index": index[keep], "phi": ref["phi"][near][keep], "partiality": partiality[keep],
            "width": width[near][keep],
        }
        self._frame_cache = (frame_number, spots)
        return spots

    # -- Scene protocol ------------------------------------------------------------------------------------------------
    def expected(self, frame_number: int, rows: slice, cols: slice) -> np.ndarray:
        out = self._background(rows, cols).copy()
        spots = self._frame_spots(frame_number)
        _add_spots(out, rows.start, cols.start, spots["x"], spots["y"], spots["photons"], self.sigma_px)
        return out

    def _background(self, rows: slice, cols: slice) -> np.ndarray:
        key = (rows.start, rows.stop, cols.start, cols.stop)
        cached = self._background_cache.get(key)
        if cached is None:
            cached = self.background_image(rows, cols).astype(np.float32)
            self._background_cache[key] = cached
        return cached

    def background_image(self, rows: slice, cols: slice) -> np.ndarray:
        """Expected background photons (float64) of an image region."""
        g = self.geometry
        arrays = g.pixel_arrays(rows)
        tth = arrays["2th"][:, cols]
        q = g.radial_from_2th(tth, "q_A^-1")
        shape = 0.6 + 0.4 * np.exp(-((q / 1.2) ** 2)) + self.water_ring * np.exp(-0.5 * ((q - WATER_RING_Q) / 0.12) ** 2)
        if self.ice_rings:
            for d in ICE_RING_D:
                shape = shape + self.ice_rings * np.exp(-0.5 * ((q - 2 * math.pi / d) / 0.008) ** 2)
        corrections = arrays["solid_angle"][:, cols] * polarization(tth, arrays["chi"][:, cols], self.polarization_factor)
        return self.background_flux * self.experiment.count_time_s * shape * corrections

    # -- ground truth --------------------------------------------------------------------------------------------------
    def truth(self, frame_number: int, min_spot_size: int = 3, sigma_strong: float = 3.0,
              noise_margin: float = 1.0) -> MxTruth:
        """The spots of a frame and the crystal that made them.

        `findable` marks spots a DIALS-like finder should find: centre on a module (>= 2 px from its edges), no
        other spot within 4 px, and at least `min_spot_size` pixels whose expected value, less `noise_margin`
        standard deviations of its Poisson noise, exceeds the strong threshold mean + sigma_strong.sqrt(mean) of
        its expected 7x7 neighbourhood.
        """
        spots = self._frame_spots(frame_number)
        x, y, photons = spots["x"], spots["y"], spots["photons"]
        findable = self._on_module(x, y, margin=2.0) & ~_crowded(x, y, 4.0)
        findable &= photons > 0
        if findable.any():
            findable[findable] = self._clearly_strong(x[findable], y[findable], photons[findable],
                                                      min_spot_size, sigma_strong, noise_margin)
        hkl = self.hkl[spots["index"]]
        start, end = self.phi_range(frame_number)
        return MxTruth(
            frame_number=frame_number, phi_range_deg=(math.degrees(start), math.degrees(end)),
            x=x, y=y, photons=photons, hkl=hkl, d=self.cell.d_spacing(hkl), phi_deg=np.degrees(spots["phi"]),
            partiality=spots["partiality"], rocking_width_deg=np.degrees(spots["width"]), findable=findable,
            cell=self.cell, U=self.U, B=self.B,
            rotation_axis=self.axis, wavelength_a=self.experiment.wavelength_a, d_min=self.d_min,
            geometry=self.geometry,
        )

    def _on_module(self, x: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
        model = self.layout.model
        mh, mw = model.module.shape
        inside = np.zeros(x.shape, bool)
        for module_id in range(model.n_modules):
            r0, c0 = model.module_origin(module_id)
            inside |= (x >= c0 + margin) & (x <= c0 + mw - margin) & (y >= r0 + margin) & (y <= r0 + mh - margin)
        return inside

    def _clearly_strong(self, x: np.ndarray, y: np.ndarray, photons: np.ndarray, min_size: int,
                        sigma_strong: float, noise_margin: float) -> np.ndarray:
        half = 5
        ci, ri = np.floor(x).astype(int), np.floor(y).astype(int)
        offsets = np.arange(-half, half + 1)
        fx = _pixel_fractions(x, ci, offsets, self.sigma_px)
        fy = _pixel_fractions(y, ri, offsets, self.sigma_px)
        stamps = photons[:, None, None] * fy[:, :, None] * fx[:, None, :]  # (n, 11, 11)
        h, w = self.geometry.shape
        full = self._background(slice(0, h), slice(0, w))
        rows = np.clip(ri[:, None] + offsets, 0, h - 1)
        cols = np.clip(ci[:, None] + offsets, 0, w - 1)
        out = np.zeros(x.size, bool)
        for i in range(x.size):
            expected = full[np.ix_(rows[i], cols[i])] + stamps[i]
            # local 7x7 mean around each of the central 5x5 pixels (DIALS' default kernel)
            window = np.lib.stride_tricks.sliding_window_view(expected, (7, 7)).mean(axis=(2, 3))
            centre = expected[3:-3, 3:-3]
            margin = centre - noise_margin * np.sqrt(centre)
            strong = margin > window + sigma_strong * np.sqrt(window)
            out[i] = strong.sum() >= min_size
        return out


def _wilson_intensities(hkl: np.ndarray, cell: UnitCell, wilson_b: float, rng: np.random.Generator) -> np.ndarray:
    """E^2 ~ Exp(1) shared by Friedel mates, times the Wilson fall-off exp(-B / 2d^2)."""
    e2 = rng.exponential(1.0, hkl.shape[0])
    span = int(np.abs(hkl).max()) * 2 + 1
    key = ((hkl[:, 0] * span) + hkl[:, 1]) * span + hkl[:, 2]
    mate = ((-hkl[:, 0] * span) - hkl[:, 1]) * span - hkl[:, 2]
    order = np.argsort(key)
    mate_index = order[np.searchsorted(key, mate, sorter=order)]
    e2 = np.where(key > mate, e2, e2[mate_index])  # the mate with the larger key decides
    d = cell.d_spacing(hkl)
    return e2 * np.exp(-wilson_b / (2 * d * d))


def _crowded(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """True for spots with another spot closer than `radius` pixels."""
    crowded = np.zeros(x.size, bool)
    order = np.argsort(y)
    xs, ys = x[order], y[order]
    for i in range(xs.size):
        j = i + 1
        while j < xs.size and ys[j] - ys[i] < radius:
            if abs(xs[j] - xs[i]) < radius and math.hypot(xs[j] - xs[i], ys[j] - ys[i]) < radius:
                crowded[order[i]] = crowded[order[j]] = True
            j += 1
    return crowded


def _pixel_fractions(centre: np.ndarray, first: np.ndarray, offsets: np.ndarray, sigma: float) -> np.ndarray:
    """Fraction of a 1-D Gaussian (centre, sigma) falling in each pixel first + offset (edge-based pixels)."""
    edges = (first[:, None] + offsets[None, :]).astype(float)
    scale = 1.0 / (sigma * math.sqrt(2))
    return 0.5 * (_erf((edges + 1 - centre[:, None]) * scale) - _erf((edges - centre[:, None]) * scale))


def _add_spots(out: np.ndarray, row0: int, col0: int, x: np.ndarray, y: np.ndarray, photons: np.ndarray,
               sigma: float) -> None:
    """Add Gaussian spots (exactly integrated over pixels) to the region whose corner is (row0, col0)."""
    h, w = out.shape
    half = int(math.ceil(4 * sigma))
    near = (x > col0 - half - 1) & (x < col0 + w + half + 1) & (y > row0 - half - 1) & (y < row0 + h + half + 1)
    if not near.any():
        return
    x, y, photons = x[near], y[near], photons[near]
    offsets = np.arange(-half, half + 1)
    ci, ri = np.floor(x).astype(int), np.floor(y).astype(int)
    fx = _pixel_fractions(x, ci, offsets, sigma)
    fy = _pixel_fractions(y, ri, offsets, sigma)
    values = photons[:, None, None] * fy[:, :, None] * fx[:, None, :]
    rows = (ri[:, None] + offsets)[:, :, None] - row0
    cols = (ci[:, None] + offsets)[:, None, :] - col0
    rows, cols = np.broadcast_arrays(rows, cols)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    np.add.at(out, (rows[inside], cols[inside]), values[inside].astype(out.dtype))
