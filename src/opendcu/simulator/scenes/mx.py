"""An MX rotation series from a random crystal (spec/edge-analysis.md §5.2), with its ground truth.

Per dataset: a unit cell, a space group and a random orientation U (uniform on SO(3)) give A = U.B; every
reflection the space group allows gets a Wilson intensity E^2.exp(-B/2d^2) (E^2 ~ Exp(1), one draw per set of
symmetry equivalents and Friedel mates, fixed for the series), with a smooth taper past `d_min` instead of a
cut. Each reflection's rotation angles on the Ewald sphere are solved exactly: with r(phi) = r_par +
cos(phi) r_perp + sin(phi) r_cross, the condition |r + s0| = |s0| is a.cos(phi) + b.sin(phi) = c.

Per frame (phi from omega_start + (n-1).omega_increment over one increment), a reflection contributes its
partiality p, the fraction of a Gaussian rocking curve inside the frame. The rocking curve is that of the Kabsch
model DIALS uses: sigma_phi = sigma_m / zeta_K, zeta_K = |e.(s1^ x s0^)| / |s1^ x s0^| (so it does not depend on
the Bragg angle), sigma_m = sqrt(mosaicity^2 + divergence^2). The photons are p times the Lorentz factor
1/|e.(s1^ x s0^)| times the polarization, spread over a 2-D Gaussian spot integrated exactly over each pixel. The
background is a smooth function of q (air scatter + diffuse solvent + a water ring + optional hexagonal-ice rings)
times solid angle and polarization.

Where a spot lands: where s1 meets the detector, moved outwards by the parallax of the sensor (the mean depth at
which the sensor absorbs the ray, times the tangent of its incidence, as dxtbx's parallax correction models it),
and by a fixed random offset per reflection whose angular spread is `beam_divergence_deg` (the part of a
divergent beam and a mosaic crystal that a spot's centroid shows: observed centroids scatter 0.2-0.5 px around
the predictions, as in real data). `omega_increment = 0` gives stills (the rocking curve within +-mosaicity/2).

Units: `spot_flux` = photons of a fully recorded reflection with E^2 = 1 at low resolution (Lorentz factor 1)
per second of count time; `background_flux` = photons per pixel per second at the PONI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from opendcu.analysis.crystal import UnitCell, miller_indices, random_rotation
from opendcu.analysis.geometry import Geometry, polarization
from opendcu.analysis.scoring import ICE_RING_D
from opendcu.geometry import DetectorLayout
from opendcu.simulator.scenes.base import Experiment, register_scene
from opendcu.simulator.scenes.symmetry import SpaceGroup, space_group

WATER_RING_Q = 2 * math.pi / 3.7  # vitreous ice / cryo solvent ring, A^-1
MIN_ZETA = 0.05  # bounds the Lorentz factor and the rocking width of reflections near the rotation axis
#: the linear polarization the NXmx master states (Stokes S1/S0; DIALS' synchrotron default, fraction 0.999)
DEFAULT_POLARIZATION = 0.998
#: the intensity taper past d_min: Gaussian in 1/d^2 with this width relative to 1/d_min^2; reflections are made
#: out to where it is below 1e-3
TAPER_WIDTH = 0.06
TAPER_SIGMAS = 3.7


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
    #: the rocking curve's sigma (deg): sigma_m / zeta_K (Kabsch), large for reflections near the rotation axis
    rocking_width_deg: np.ndarray
    #: a spot finder should find it: on a module, not crowded, and min_spot_size pixels clearly strong
    findable: np.ndarray
    cell: UnitCell
    U: np.ndarray
    B: np.ndarray
    rotation_axis: np.ndarray
    wavelength_a: float
    #: the simulated resolution limit (no reflection beyond it; past the scene's `d_min` they fade out)
    d_min: float
    geometry: Geometry = field(repr=False)
    #: the space group whose symmetry the intensities obey
    space_group: str = "P1"
    #: where s1 meets the detector surface (the spots lie at x, y: moved by parallax and the centroid scatter)
    x_ideal: np.ndarray | None = None
    y_ideal: np.ndarray | None = None

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

    def __init__(
        self,
        experiment: Experiment,
        cell: Sequence[float] = (79.1, 79.1, 37.9, 90.0, 90.0, 90.0),
        centring: str | None = None,
        d_min: float = 2.0,
        mosaicity_deg: float = 0.1,
        wilson_b: float = 25.0,
        spot_flux: float = 2e4,
        spot_sigma_px: float = 0.7,
        background_flux: float = 10.0,
        water_ring: float = 1.0,
        ice_rings: float = 0.0,
        air_scatter: float = 0.3,
        rotation_axis: Sequence[float] | None = None,
        polarization_factor: float = DEFAULT_POLARIZATION,
        space_group: str | None = None,
        beam_divergence_deg: float = 0.012,
        parallax: bool = True,
        crystal_seed: int | None = None,
    ):
        if not d_min > 0 or mosaicity_deg <= 0 or spot_sigma_px <= 0 or min(spot_flux, background_flux) < 0:
            raise ValueError("need d_min > 0, mosaicity_deg > 0, spot_sigma_px > 0 and non-negative fluxes")
        if not -1 <= polarization_factor <= 1:
            raise ValueError("polarization_factor must be in [-1, 1]")
        if beam_divergence_deg < 0 or air_scatter < 0:
            raise ValueError("beam_divergence_deg and air_scatter must not be negative")
        self.cell = UnitCell.from_sequence(cell)
        self.group = _choose_space_group(space_group, centring, self.cell)
        if rotation_axis is None:  # the DCU's omega axis (the one the NXmx master states), or +x
            rotation_axis = experiment.rotation_axis or (1.0, 0.0, 0.0)
        axis = np.asarray(rotation_axis, float)
        if axis.shape != (3,) or not np.linalg.norm(axis) > 0:
            raise ValueError("rotation_axis must be a non-zero 3-vector")
        self.experiment = experiment
        self.d_min = float(d_min)
        self.mosaicity = math.radians(mosaicity_deg)
        self.divergence = math.radians(beam_divergence_deg)
        #: sigma_m of the Kabsch model: the crystal's mosaic spread and the beam's divergence together
        self.sigma_m = math.hypot(self.mosaicity, self.divergence)
        self.air_scatter = float(air_scatter)
        self.parallax = bool(parallax)
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
            model.shape,
            experiment.beam_center_x_px,
            experiment.beam_center_y_px,
            experiment.distance_m,
            experiment.wavelength_a,
            model.module.pixel_size_m,
        )
        seed = experiment.seed if crystal_seed is None else int(crystal_seed)
        rng = np.random.default_rng([0x6D78, seed])
        self.U = random_rotation(rng)
        self.B = self.cell.B
        s_min2 = 1.0 / self.d_min**2
        self.d_limit = 1.0 / math.sqrt(s_min2 * (1 + TAPER_SIGMAS * TAPER_WIDTH))
        hkl = miller_indices(self.cell, self.d_limit, self.group.centring)
        self.hkl = hkl[~self.group.absent(hkl)]
        self.intensity = _wilson_intensities(self.hkl, self.cell, self.wilson_b, self.d_min, self.group, rng)
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
        x0, y0, hits = self.geometry.project(s1)
        x, y = self._recorded_position(s1, x0, y0, index)
        h, w = self.geometry.shape
        margin = 5.0
        on = hits & (x > -margin) & (x < w + margin) & (y > -margin) & (y < h + margin)
        s1_unit = s1 / np.linalg.norm(s1, axis=1)[:, None]
        cross = np.cross(s1_unit, [0.0, 0.0, 1.0])  # s1^ x s0^: its length is sin 2theta
        lorentz_zeta = np.abs(cross @ e)
        kabsch_zeta = lorentz_zeta / np.maximum(np.linalg.norm(cross, axis=1), 1e-12)
        tth = np.arccos(np.clip(s1_unit[:, 2], -1, 1))
        chi = np.arctan2(s1_unit[:, 1], s1_unit[:, 0])
        pol = polarization(tth, chi, self.polarization_factor)
        keep = np.flatnonzero(on)
        self._ref = {
            "index": index[keep],
            "phi": phi[keep],
            "x": x[keep],
            "y": y[keep],
            "x0": x0[keep],
            "y0": y0[keep],
            "zeta": np.maximum(lorentz_zeta[keep], MIN_ZETA),
            "kabsch_zeta": np.maximum(kabsch_zeta[keep], MIN_ZETA),
            "pol": pol[keep],
        }

    def _recorded_position(
        self, s1: np.ndarray, x0: np.ndarray, y0: np.ndarray, index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Where each reflection's photons are centred: the sensor's parallax moves a spot away from the normal
        by the mean absorption depth along the ray times sin(incidence); each reflection (both crossings) gets a
        fixed random angular offset of spread `divergence`."""
        g = self.geometry
        direction = s1 / np.linalg.norm(s1, axis=1)[:, None]
        cos_in = np.clip(direction[:, 2], 1e-6, 1.0)  # the detector is untilted: its normal is the beam
        x, y = x0.copy(), y0.copy()
        if self.parallax:
            from opendcu.simulator.physics import absorption_length  # lazy: physics imports the scenes

            module = self.experiment.detector.module
            energy = 12398.419843320026 / self.experiment.wavelength_a
            length = absorption_length(module.sensor_material, energy)
            path = module.sensor_thickness_m / cos_in  # the whole sensor along the ray
            absorbed = -np.expm1(-path / length)
            mean_path = length - path * np.exp(-path / length) / np.maximum(absorbed, 1e-300)
            lateral = mean_path * np.sqrt(1 - cos_in**2) / g.pixel1  # pixels, away from the PONI
            bx, by = g.beam_center_px
            r = np.hypot(x0 - bx, y0 - by)
            safe = np.where(r > 0, r, 1.0)
            x = x + np.where(r > 0, lateral * (x0 - bx) / safe, 0.0)
            y = y + np.where(r > 0, lateral * (y0 - by) / safe, 0.0)
        if self.divergence > 0:
            rng = np.random.default_rng([0x6469, int(self.experiment.seed), len(self.hkl)])
            offsets = rng.normal(0.0, 1.0, (len(self.hkl), 2))[index]
            scale = self.divergence * g.dist / cos_in**2 / g.pixel1  # an angle at the sample -> pixels
            x = x + offsets[:, 0] * scale
            y = y + offsets[:, 1] * scale
        return x, y

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
        width = self.sigma_m / ref["kabsch_zeta"]
        near = np.flatnonzero(np.abs(offset) <= half + 5 * width)
        w = width[near] * math.sqrt(2)
        partiality = 0.5 * (_erf((half - offset[near]) / w) - _erf((-half - offset[near]) / w))
        index = ref["index"][near]
        photons = (
            self.spot_flux
            * self.experiment.count_time_s
            * self.intensity[index]
            * partiality
            * ref["pol"][near]
            / ref["zeta"][near]
        )
        keep = photons >= 0.05
        spots = {
            "x": ref["x"][near][keep],
            "y": ref["y"][near][keep],
            "photons": photons[keep],
            "index": index[keep],
            "phi": ref["phi"][near][keep],
            "partiality": partiality[keep],
            "width": width[near][keep],
            "x0": ref["x0"][near][keep],
            "y0": ref["y0"][near][keep],
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
        shape = (
            0.6
            + 0.4 * np.exp(-((q / 1.2) ** 2))
            + self.water_ring * np.exp(-0.5 * ((q - WATER_RING_Q) / 0.12) ** 2)
            + self.air_scatter / (1 + (q / 0.25) ** 2)
        )  # air along the beam: strongest at small angles
        if self.ice_rings:
            for d in ICE_RING_D:
                shape = shape + self.ice_rings * np.exp(-0.5 * ((q - 2 * math.pi / d) / 0.008) ** 2)
        corrections = arrays["solid_angle"][:, cols] * polarization(
            tth, arrays["chi"][:, cols], self.polarization_factor
        )
        return self.background_flux * self.experiment.count_time_s * shape * corrections

    # -- ground truth --------------------------------------------------------------------------------------------------
    def truth(
        self, frame_number: int, min_spot_size: int = 3, sigma_strong: float = 3.0, noise_margin: float = 1.0
    ) -> MxTruth:
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
            findable[findable] = self._clearly_strong(
                x[findable], y[findable], photons[findable], min_spot_size, sigma_strong, noise_margin
            )
        hkl = self.hkl[spots["index"]]
        start, end = self.phi_range(frame_number)
        return MxTruth(
            frame_number=frame_number,
            phi_range_deg=(math.degrees(start), math.degrees(end)),
            x=x,
            y=y,
            photons=photons,
            hkl=hkl,
            d=self.cell.d_spacing(hkl),
            phi_deg=np.degrees(spots["phi"]),
            partiality=spots["partiality"],
            rocking_width_deg=np.degrees(spots["width"]),
            findable=findable,
            cell=self.cell,
            U=self.U,
            B=self.B,
            rotation_axis=self.axis,
            wavelength_a=self.experiment.wavelength_a,
            d_min=self.d_limit,
            geometry=self.geometry,
            space_group=self.group.name,
            x_ideal=spots["x0"],
            y_ideal=spots["y0"],
        )

    def _on_module(self, x: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
        model = self.layout.model
        mh, mw = model.module.shape
        inside = np.zeros(x.shape, bool)
        for module_id in range(model.n_modules):
            r0, c0 = model.module_origin(module_id)
            inside |= (x >= c0 + margin) & (x <= c0 + mw - margin) & (y >= r0 + margin) & (y <= r0 + mh - margin)
        return inside

    def _clearly_strong(
        self, x: np.ndarray, y: np.ndarray, photons: np.ndarray, min_size: int, sigma_strong: float, noise_margin: float
    ) -> np.ndarray:
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


def _choose_space_group(name: str | None, centring: str | None, cell: UnitCell) -> SpaceGroup:
    """The scene's space group: as named; else P4(3)2(1)2 for a tetragonal cell (as lysozyme), else P1 (or the
    centring given, for the lattice only)."""
    lengths, angles = tuple(cell.lengths), tuple(cell.angles)
    if name is None:
        tetragonal = abs(lengths[0] - lengths[1]) < 1e-6 * lengths[0] and all(abs(a - 90) < 1e-6 for a in angles)
        if centring not in (None, "P") or not tetragonal:
            return _lattice_only(centring or "P")
        name = "P43212"
    group = space_group(name)
    if centring is not None and centring != group.centring:
        raise ValueError(f"centring {centring!r} contradicts space group {group.name}")
    group.check_cell(lengths, angles)
    return group


def _lattice_only(centring: str) -> SpaceGroup:
    if centring not in ("P", "A", "B", "C", "I", "F", "R"):
        raise ValueError(f"unknown centring {centring!r}")
    return SpaceGroup(f"{centring}1", "-1", centring, "triclinic", ())


def _wilson_intensities(
    hkl: np.ndarray, cell: UnitCell, wilson_b: float, d_min: float, group: SpaceGroup, rng: np.random.Generator
) -> np.ndarray:
    """E^2 ~ Exp(1), one draw per set of equivalents (the Laue group with Friedel's law), times the Wilson fall-off
    exp(-B / 2d^2) and a Gaussian taper in 1/d^2 past d_min."""
    _unique, inverse = np.unique(group.asu_keys(hkl), return_inverse=True)
    e2 = rng.exponential(1.0, int(inverse.max(initial=-1)) + 1)[inverse]
    d = cell.d_spacing(hkl)
    s2, s_min2 = 1.0 / d**2, 1.0 / d_min**2
    taper = np.exp(-0.5 * (np.maximum(s2 - s_min2, 0.0) / (TAPER_WIDTH * s_min2)) ** 2)
    return e2 * np.exp(-wilson_b / (2 * d * d)) * taper


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


def _add_spots(
    out: np.ndarray, row0: int, col0: int, x: np.ndarray, y: np.ndarray, photons: np.ndarray, sigma: float
) -> None:
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
