"""Radial (azimuthal) integration with a precomputed pixel -> bin map (spec/edge-analysis.md §1.5, §1.7).

No pixel splitting: a pixel goes wholly into the bin of its centre, as pyFAI's ("no", *, *) methods. Per bin b:

    I_b = sum(signal_i) / sum(norm_i),   norm_i = solid_angle_i * polarization_i * flat_i,
    sigma_b = sqrt(sum variance_i) / sum(norm_i),   variance_i = max(signal_i, 1)   (Poisson, as pyFAI)

Everything that depends only on the geometry (bin of each pixel, norm per pixel, sum of norm per bin) is built
once; each frame is one scatter-add of the raw counts (numba, several threads), which reads the image in its
own dtype. Pixels whose value is the detector's error value (gaps, masked or lost pixels) leave both sums.

Bins are linear in the binning unit over [lo, hi]; as pyFAI, the upper edge is widened by one float32 epsilon
so that the outermost pixel is counted. Unlike pyFAI (which truncates towards zero), pixels just below `lo` are
not put into the first bin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numba
import numpy as np

from opendcu.analysis.geometry import EPS32, RADIAL_UNITS, Geometry, polarization

#: rows per block when building maps (bounds the float64 temporaries for a 16M detector)
_BUILD_ROWS = 512

#: each unit is binned in its SI-like base unit and scaled for output, as pyFAI does (so that bin edges round
#: exactly as pyFAI's): unit -> (base unit, scale = unit / base)
_BASE_UNITS = {
    "q_nm^-1": ("q_nm^-1", 1.0),
    "q_A^-1": ("q_nm^-1", 0.1),
    "2th_rad": ("2th_rad", 1.0),
    "2th_deg": ("2th_rad", 180.0 / np.pi),
    "r_mm": ("r_m", 1000.0),
    "d*2_A^-2": ("d*2_nm^-2", 0.01),
}


@dataclass(frozen=True)
class IntegrationSettings:
    """What a profile is binned in and which corrections apply."""

    npt: int = 1000
    unit: str = "q_A^-1"
    #: (lo, hi) in `unit`; None = the range of the unmasked pixels
    radial_range: tuple[float, float] | None = None
    #: azimuthal bins; 1 = a 1D profile, more = a 2D (radial x chi) cake
    npt_azim: int = 1
    #: (lo, hi) chi in degrees for cakes (pyFAI's chi); None = the range of the unmasked pixels
    azimuth_range: tuple[float, float] | None = None
    solid_angle: bool = True
    #: pyFAI's polarization factor (None = no polarization correction)
    polarization_factor: float | None = None
    polarization_offset: float = 0.0

    def check(self) -> None:
        if self.unit not in RADIAL_UNITS:
            raise ValueError(f"unknown radial unit {self.unit!r}; known: {', '.join(RADIAL_UNITS)}")
        if not 1 <= self.npt <= 100_000 or not 1 <= self.npt_azim <= 3600:
            raise ValueError("npt must be in [1, 100000] and npt_azim in [1, 3600]")
        for name, rng in (("radial_range", self.radial_range), ("azimuth_range", self.azimuth_range)):
            if rng is not None and not (len(rng) == 2 and rng[0] < rng[1]):
                raise ValueError(f"{name} must be (lo, hi) with lo < hi")
        if self.polarization_factor is not None and not -1 <= self.polarization_factor <= 1:
            raise ValueError("polarization_factor must be in [-1, 1]")


@dataclass
class Profile:
    """The result of one integration: sums per bin and the normalised intensity.

    Arrays are 1D [npt] for profiles and 2D [npt_azim, npt] for cakes (pyFAI's layout). Keeping the sums lets
    profiles be added exactly over frames or detectors.
    """

    radial: np.ndarray  # bin centres in `unit`
    unit: str
    sum_signal: np.ndarray
    sum_normalization: np.ndarray
    count: np.ndarray  # valid pixels per bin
    sum_variance: np.ndarray
    azimuthal: np.ndarray | None = None  # chi bin centres (deg) for cakes
    geometry: Geometry | None = field(default=None, repr=False)

    @property
    def intensity(self) -> np.ndarray:
        """sum signal / sum norm; NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum_signal / self.sum_normalization, np.nan)

    @property
    def sigma(self) -> np.ndarray:
        """Poisson error of the intensity (a pixel's variance is its count, at least 1)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, np.sqrt(self.sum_variance) / self.sum_normalization, np.nan)

    @property
    def mean_counts(self) -> np.ndarray:
        """Mean raw counts per valid pixel (uncorrected), e.g. for per-ring thresholds."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum_signal / self.count, np.nan)

    def radial_as(self, unit: str) -> np.ndarray:
        """Bin centres converted to another unit (also 'd_A')."""
        if unit == self.unit:
            return self.radial
        if self.geometry is None:
            raise ValueError("profile has no geometry to convert units")
        return self.geometry.convert_radial(self.radial, self.unit, unit)


class RadialIntegrator:
    """A pixel -> bin map for one geometry, mask and settings; integrate() is then cheap per frame."""

    def __init__(
        self,
        geometry: Geometry,
        settings: IntegrationSettings | None = None,
        mask: np.ndarray | None = None,
        flat: np.ndarray | None = None,
    ):
        """mask: non-zero = invalid pixel (pyFAI's convention), shape = geometry.shape; flat: per-pixel efficiency."""
        settings = settings or IntegrationSettings()
        settings.check()
        geometry.check()
        self.geometry = geometry
        self.settings = settings
        shape = geometry.shape
        if mask is not None and tuple(mask.shape) != tuple(shape):
            raise ValueError(f"mask shape {mask.shape} != detector shape {shape}")
        if flat is not None and tuple(flat.shape) != tuple(shape):
            raise ValueError(f"flat shape {flat.shape} != detector shape {shape}")
        self.shape = tuple(shape)
        valid = np.ones(shape, bool) if mask is None else (np.asarray(mask) == 0)
        radial, chi, norm = self._pixel_values(valid, flat)
        scale = _BASE_UNITS[settings.unit][1]
        if settings.radial_range is not None:
            lo, hi = settings.radial_range[0] / scale, settings.radial_range[1] / scale
        else:
            lo, hi = _full_range(radial, valid)
        # pyFAI widens the upper edge by one float32 epsilon so that the outermost pixel falls inside
        self._edges = (float(lo), _widen(hi))  # base unit
        self.radial_range = (self._edges[0] * scale, float(hi) * scale)  # in `unit`, as given or found
        delta = (self._edges[1] - self._edges[0]) / settings.npt
        rbin = np.floor((radial - lo) / delta)
        inside = valid & (rbin >= 0) & (rbin < settings.npt)
        bins = rbin
        self.nbins = settings.npt
        self.azimuth_edges: tuple[float, float] | None = None
        if settings.npt_azim > 1:  # chi is binned in radians, as pyFAI
            if settings.azimuth_range is not None:
                alo, ahi = np.radians(settings.azimuth_range[0]), np.radians(settings.azimuth_range[1])
            else:
                alo, ahi = _full_range(chi, valid)
            self.azimuth_edges = (float(alo), _widen(ahi))
            adelta = (self.azimuth_edges[1] - self.azimuth_edges[0]) / settings.npt_azim
            abin = np.floor((chi - alo) / adelta)
            inside &= (abin >= 0) & (abin < settings.npt_azim)
            bins = abin * settings.npt + rbin  # row-major [azim, radial] as pyFAI's cakes
            self.nbins = settings.npt * settings.npt_azim
        self.bin_index = np.where(inside, bins, -1).astype(np.int32).reshape(-1)
        self.runs = _runs(self.bin_index >= 0)
        self._gaps = _runs(self.bin_index < 0)
        self._bins = self.bin_index.view(np.uint32)  # the same memory, unsigned (excluded pixels are never read)
        self.norm = np.where(inside, norm, 0).astype(np.float32).reshape(-1)
        flat_bins = self.bin_index[self.bin_index >= 0]
        # per-bin constants summed in float64 from the float64 per-pixel values (pyFAI accumulates in float64)
        self.sum_norm = np.bincount(
            flat_bins, np.where(inside, norm, 0).reshape(-1)[self.bin_index >= 0], minlength=self.nbins
        )
        self.count = np.bincount(flat_bins, minlength=self.nbins).astype(np.int64)
        self.radial = (self._edges[0] + (np.arange(settings.npt) + 0.5) * delta) * scale
        self.azimuthal = None
        if self.azimuth_edges is not None:
            adelta = (self.azimuth_edges[1] - self.azimuth_edges[0]) / settings.npt_azim
            self.azimuthal = np.degrees(self.azimuth_edges[0] + (np.arange(settings.npt_azim) + 0.5) * adelta)

    def _pixel_values(self, valid: np.ndarray, flat: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Radial position (base unit), chi (rad) and normalisation of every pixel centre, built in row blocks."""
        s = self.settings
        g = self.geometry
        radial = np.empty(self.shape)
        chi = np.empty(self.shape) if s.npt_azim > 1 else None
        norm = np.ones(self.shape)
        for r0 in range(0, self.shape[0], _BUILD_ROWS):
            rows = slice(r0, min(r0 + _BUILD_ROWS, self.shape[0]))
            arrays = g.pixel_arrays(rows)
            radial[rows] = _base_position(g, arrays, s.unit)
            if chi is not None:
                chi[rows] = arrays["chi"]
            if s.solid_angle:
                norm[rows] *= arrays["solid_angle"]
            if s.polarization_factor is not None:
                norm[rows] *= polarization(arrays["2th"], arrays["chi"], s.polarization_factor, s.polarization_offset)
        if flat is not None:
            norm *= flat
        return radial, chi, norm

    @cached_property
    def pixel_radial(self) -> np.ndarray:
        """The radial bin of each pixel (-1 = not integrated), [rows, cols]; for per-ring thresholds."""
        if self.settings.npt_azim == 1:
            return self.bin_index.reshape(self.shape)
        return np.where(self.bin_index >= 0, self.bin_index % self.settings.npt, -1).reshape(self.shape)

    def sums(
        self,
        image: np.ndarray,
        invalid_value: int | float | None = None,
        threads: int | None = None,
        variance: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sum signal, sum norm, count, sum variance) per bin for one frame; `invalid_value` pixels are left out.

        variance=False skips counting zero pixels (then sum variance = sum signal, a little faster)."""
        if tuple(image.shape) != self.shape:
            raise ValueError(f"image shape {image.shape} != integrator shape {self.shape}")
        flat_image = np.ascontiguousarray(image).reshape(-1)
        nthreads = max(1, min(threads or numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        has_invalid = invalid_value is not None
        invalid = _invalid_scalar(flat_image.dtype, invalid_value)
        signal, lost_norm, lost_count, zeros = _scatter_sums(
            flat_image,
            self._bins,
            self.norm,
            self.runs,
            self._gaps,
            self._split(nthreads),
            self.nbins,
            has_invalid,
            invalid,
            variance,
        )
        return signal, self.sum_norm - lost_norm, self.count - lost_count, signal + zeros

    def _split(self, nthreads: int) -> np.ndarray:
        """Run boundaries giving each thread about the same number of pixels."""
        lengths = np.cumsum((self.runs[:, 1] - self.runs[:, 0]).astype(np.int64))
        if lengths.size == 0:
            return np.zeros(2, np.int64)
        targets = lengths[-1] * np.arange(1, nthreads) / nthreads
        return np.concatenate([[0], np.searchsorted(lengths, targets) + 1, [len(self.runs)]]).astype(np.int64)

    def integrate(
        self,
        image: np.ndarray,
        invalid_value: int | float | None = None,
        threads: int | None = None,
        variance: bool = True,
    ) -> Profile:
        """Integrate one frame. For cakes the arrays are [npt_azim, npt]."""
        sums = self.sums(image, invalid_value, threads, variance)
        if self.settings.npt_azim > 1:
            sums = tuple(a.reshape(self.settings.npt_azim, self.settings.npt) for a in sums)
        signal, norm, count, variance = sums
        return Profile(self.radial, self.settings.unit, signal, norm, count, variance, self.azimuthal, self.geometry)


def _base_position(geometry: Geometry, arrays: dict[str, np.ndarray], unit: str) -> np.ndarray:
    base = _BASE_UNITS[unit][0]
    if base == "r_m":  # pyFAI's r is the distance from the beam axis (not dist * tan 2theta under tilt)
        return arrays["r"]
    if base == "2th_rad":
        return arrays["2th"]
    q_nm = 4e-9 * np.pi * np.sin(arrays["2th"] / 2) / geometry.wavelength
    return q_nm if base == "q_nm^-1" else (q_nm / (2 * np.pi)) ** 2


def _runs(binned: np.ndarray) -> np.ndarray:
    """(start, stop) of every stretch of consecutive True values of a flat mask, int64 [n, 2]."""
    edges = np.diff(np.concatenate([[0], binned.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1).astype(np.uint64)


def _widen(hi: float) -> float:
    """The upper bin edge moved up by one float32 epsilon (relative), as pyFAI does, so the last pixel counts."""
    return float(hi) + abs(float(hi)) * EPS32 if hi != 0 else EPS32


def _full_range(radial: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    values = radial[valid]
    if values.size == 0:
        raise ValueError("every pixel is masked")
    return float(values.min()), float(values.max())


def _invalid_scalar(dtype: np.dtype, value: int | float | None):
    if value is None:
        return dtype.type(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return dtype.type(value) if info.min <= value <= info.max else dtype.type(info.max)
    return dtype.type(value)


#: interleaved partial histograms per thread: neighbouring pixels usually share a bin, and adding into one
#: memory cell over and over waits for each add to finish; four cells in turn keep four adds in flight
LANES = 4


@numba.njit(nogil=True, cache=True)
def _count_value(image, runs, value):
    """How many pixels of the stretches `runs` equal `value` (a tight loop: it vectorises)."""
    n = 0
    for r in range(runs.shape[0]):
        for i in range(runs[r, 0], runs[r, 1]):
            n += image[i] == value
    return n


@numba.njit(nogil=True, cache=True)
def _scatter_runs(image, bins, norm, runs, first, last, nbins, count_zeros):
    """Histogram runs[first:last] (contiguous stretches of binned pixels: no masked pixel is ever read).
    Indices are unsigned so that numba adds no negative-index handling in the hot loop."""
    signal = np.zeros((LANES, nbins), np.float64)
    zeros = np.zeros(nbins, np.int64)
    lane_mask = np.uint64(LANES - 1)
    for r in range(first, last):
        for i in range(runs[r, 0], runs[r, 1]):
            v = image[i]
            b = bins[i]
            signal[i & lane_mask, b] += v
            if count_zeros:
                zeros[b] += v <= 0  # branch-free: zeros are too frequent to predict
    return signal, zeros


@numba.njit(nogil=True, cache=True)
def _take_out_invalid(image, bins, norm, runs, invalid, signal, lost_norm, lost_count):
    """Remove pixels equal to `invalid` from the sums (exact: the sums are of integers in float64)."""
    for r in range(runs.shape[0]):
        for i in range(runs[r, 0], runs[r, 1]):
            if image[i] == invalid:
                b = bins[i]
                signal[b] -= image[i]
                lost_norm[b] += norm[i]
                lost_count[b] += 1


@numba.njit(parallel=True, nogil=True, cache=True)
def _scatter_sums(image, bins, norm, runs, gaps, split, nbins, has_invalid, invalid, count_zeros):
    """Per-thread histograms of the pixel values (thread t takes runs[split[t]:split[t+1]]), then one
    reduction. Invalid pixels (lost packets, ...) are rare: they are counted in a pass that vectorises (all
    pixels minus those in the `gaps` stretches, where the error value is normal) and only if some are binned
    are they found and taken back out. Returns (signal, norm and count of invalid pixels, zero-count pixels)."""
    nthreads = split.size - 1
    signal = np.zeros((nthreads, nbins), np.float64)
    zeros = np.zeros((nthreads, nbins), np.int64)
    for t in numba.prange(nthreads):
        lanes, z = _scatter_runs(image, bins, norm, runs, split[t], split[t + 1], nbins, count_zeros)
        signal[t] = lanes.sum(axis=0)
        zeros[t] = z
    total = signal.sum(axis=0)
    lost_norm = np.zeros(nbins, np.float64)
    lost_count = np.zeros(nbins, np.int64)
    if has_invalid:
        everywhere = 0
        for i in range(image.size):
            everywhere += image[i] == invalid
        if everywhere > _count_value(image, gaps, invalid):
            _take_out_invalid(image, bins, norm, runs, invalid, total, lost_norm, lost_count)
    return total, lost_norm, lost_count, zeros.sum(axis=0)
