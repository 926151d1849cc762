"""Spot finding: DIALS' dispersion threshold on a sparse candidate list, connected components, centroids.

The classic DIALS `dispersion` algorithm (spec/edge-analysis.md §2.1): over a (2k+1)^2 window of *valid* pixels
(m of them, sums Sx and Sx^2; the pixel itself included) a pixel is strong when

    dispersion:  m.Sx2 - Sx^2 - g.Sx.(m-1)  >  g.Sx.n_b.sqrt(2(m-1))      (variance/mean above Poisson)
    strong:      m.I - Sx  >  n_s.sqrt(g.Sx.m)                            (I above mean + n_s sqrt(g.mean))
    and m >= min_local, Sx >= 0, I > global_threshold.

Doing that for every pixel of a 4M frame costs ~100 ms in numpy. Here (§2.7) the exact test runs only on
candidates: pixels above a per-ring prefilter mu_ring + k.sqrt(g.mu_ring) (k < n_s), with mu_ring the mean of the
ring from a radial pass. Strong pixels are grouped into 8-connected spots by union-find on the sorted sparse list
(never a dense label image); each spot gets its pixel count, summed and background-subtracted intensity,
centroid (weights I - mu_ring), peak and resolution. Spot sizes outside [min_spot_size, max_spot_size] are
dropped; an image with more than max_strong_pixel_fraction strong pixels gives no spots (DIALS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numba
import numpy as np

from opendcu.analysis.geometry import Geometry
from opendcu.analysis.integrate import IntegrationSettings, RadialIntegrator, _invalid_scalar

#: DIALS treats pixels at or above 2^24 as invalid
MAX_TRUSTED = 1 << 24


@dataclass(frozen=True)
class SpotFinderSettings:
    """DIALS' dispersion parameters (their defaults) plus the prefilter and resolution limits."""

    sigma_strong: float = 3.0
    sigma_background: float = 6.0
    kernel_size: int = 3  # window half-width: 3 -> 7 x 7
    min_local: int = 2
    global_threshold: float = 0.0
    gain: float = 1.0
    min_spot_size: int = 3  # DIALS' Auto for pixel-array detectors
    max_spot_size: int = 1000
    max_strong_pixel_fraction: float = 0.25
    d_min: float | None = None  # A; spots at higher resolution are dropped
    d_max: float | None = None  # A; spots at lower resolution are dropped
    #: candidate prefilter mu_ring + prefilter_sigma.sqrt(gain.mu_ring); must stay below sigma_strong
    prefilter_sigma: float = 2.5
    n_rings: int = 200
    #: more candidates than this fraction of the valid pixels: the image is not analysed for spots
    max_candidate_fraction: float = 0.05

    def check(self) -> None:
        if not 1 <= self.kernel_size <= 15:
            raise ValueError("kernel_size (window half-width) must be in [1, 15]")
        if self.sigma_strong <= 0 or self.sigma_background <= 0 or self.gain <= 0:
            raise ValueError("sigma_strong, sigma_background and gain must be positive")
        if not 0 <= self.prefilter_sigma < self.sigma_strong:
            raise ValueError("prefilter_sigma must be in [0, sigma_strong)")
        if self.min_spot_size < 1 or self.max_spot_size < self.min_spot_size:
            raise ValueError("need 1 <= min_spot_size <= max_spot_size")
        if self.d_min is not None and self.d_max is not None and self.d_min >= self.d_max:
            raise ValueError("d_min must be below d_max")


@dataclass
class Spots:
    """Spots of one image (arrays of equal length)."""

    x: np.ndarray  # centroid, edge-based pixels (fast axis)
    y: np.ndarray  # centroid, slow axis
    intensity: np.ndarray  # sum of (I - background) over the spot's strong pixels
    raw_sum: np.ndarray  # sum of I
    background: np.ndarray  # per-pixel background (ring mean) at the spot
    npix: np.ndarray
    peak: np.ndarray  # highest pixel value
    d: np.ndarray  # resolution of the centroid (A)
    #: strong pixels found on the image (before the size filters) and whether the image was too busy
    n_strong_pixels: int = 0
    overloaded: bool = False

    def __len__(self) -> int:
        return int(self.x.size)

    @property
    def sigma(self) -> np.ndarray:
        """Poisson error of the intensity (raw counts as variance)."""
        return np.sqrt(np.maximum(self.raw_sum, 1.0))

    def select(self, keep: np.ndarray) -> Spots:
        arrays = {
            f.name: getattr(self, f.name)[keep] for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)
        }
        return Spots(**arrays, n_strong_pixels=self.n_strong_pixels, overloaded=self.overloaded)

    @classmethod
    def empty(cls, n_strong_pixels: int = 0, overloaded: bool = False) -> Spots:
        z = np.zeros(0)
        return cls(z, z, z, z, z, np.zeros(0, np.int64), z, z, n_strong_pixels, overloaded)


class SpotFinder:
    """Finds spots on images of one geometry and mask."""

    def __init__(
        self,
        geometry: Geometry,
        mask: np.ndarray | None = None,
        settings: SpotFinderSettings | None = None,
        rings: RadialIntegrator | None = None,
    ):
        """mask: non-zero = invalid pixel. `rings` may share an integrator's radial bins for the prefilter."""
        self.settings = settings or SpotFinderSettings()
        self.settings.check()
        self.geometry = geometry
        self.shape = tuple(geometry.shape)
        self.valid = np.ones(self.shape, np.uint8) if mask is None else (np.asarray(mask) == 0).astype(np.uint8)
        if self.valid.shape != self.shape:
            raise ValueError(f"mask shape {self.valid.shape} != detector shape {self.shape}")
        self.rings = rings or RadialIntegrator(
            geometry, IntegrationSettings(npt=self.settings.n_rings, unit="q_A^-1", solid_angle=False), mask
        )
        self.ring_of_pixel = np.ascontiguousarray(self.rings.pixel_radial).reshape(-1)
        if self.rings.settings.npt >= 65535:
            raise ValueError("at most 65534 rings")
        # ring + 1 as uint16 (0 = masked or outside the rings): the candidate scan reads 2 bytes per pixel
        self._ring1 = np.where(self.valid.reshape(-1) != 0, self.ring_of_pixel + 1, 0).astype(np.uint16)

    @staticmethod
    def _integer_thresholds(dtype: np.dtype, thresholds: np.ndarray) -> np.ndarray:
        """Thresholds in the image's dtype with a leading 'never' entry for ring index 0 (not analysed).
        For integer images v >= t  <=>  v >= ceil(t)."""
        if np.issubdtype(dtype, np.integer):
            top = np.iinfo(dtype).max
            t = np.minimum(np.ceil(thresholds), top)
        else:
            top = np.inf
            t = thresholds
        return np.concatenate([[top], t]).astype(dtype)

    def ring_thresholds(self, ring_mean: np.ndarray) -> np.ndarray:
        """Prefilter threshold per ring (pixels below cannot be strong unless the local mean is far below)."""
        s = self.settings
        mean = np.nan_to_num(ring_mean, nan=np.inf)  # rings without valid pixels never pass
        return np.maximum(mean + s.prefilter_sigma * np.sqrt(s.gain * np.maximum(mean, 0)), s.global_threshold)

    def find(self, image: np.ndarray, invalid_value: int | float | None = None, threads: int | None = None) -> Spots:
        """Spots of one image; pixels equal to `invalid_value` (the detector's error value) are not used."""
        if tuple(image.shape) != self.shape:
            raise ValueError(f"image shape {image.shape} != spot finder shape {self.shape}")
        profile = self.rings.integrate(image, invalid_value, threads=threads, variance=False)
        return self.find_with_ring_means(image, profile.mean_counts, invalid_value, threads)

    def find_with_ring_means(
        self,
        image: np.ndarray,
        ring_mean: np.ndarray,
        invalid_value: int | float | None = None,
        threads: int | None = None,
    ) -> Spots:
        """Spots, given the mean counts per ring of this image (e.g. from an integration pass over the same bins)."""
        s = self.settings
        image = np.ascontiguousarray(image)
        if ring_mean.ndim == 2:  # a cake: rings are its radial bins
            with np.errstate(invalid="ignore"):
                ring_mean = np.nanmean(ring_mean, axis=0)
        invalid = _invalid_scalar(image.dtype, invalid_value)
        thresholds1 = self._integer_thresholds(image.dtype, self.ring_thresholds(ring_mean))
        n_valid = max(1, int(self.rings.count.sum()))
        nthreads = max(1, min(threads or numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        candidates = _candidates(image.reshape(-1), self._ring1, thresholds1, invalid, nthreads)
        if candidates.size > max(1024, s.max_candidate_fraction * n_valid):
            return Spots.empty(overloaded=True)
        strong, _ = _dispersion_test(
            image,
            self.valid,
            candidates,
            invalid_value is not None,
            invalid,
            s.kernel_size,
            s.min_local,
            s.gain,
            s.sigma_background,
            s.sigma_strong,
            s.global_threshold,
            nthreads,
        )
        strong_index = candidates[strong]
        if strong_index.size > s.max_strong_pixel_fraction * n_valid:
            return Spots.empty(int(strong_index.size), overloaded=True)
        background = np.nan_to_num(ring_mean, nan=0.0)[self.ring_of_pixel[strong_index]]
        labels = _label_sparse(strong_index, self.shape[1])
        spots = _spot_table(image.reshape(-1), strong_index, labels, background, self.shape[1])
        x, y, intensity, raw, bg, npix, peak = spots
        d = self.geometry.d_spacing(x, y) if x.size else np.zeros(0)
        result = Spots(x, y, intensity, raw, bg, npix, peak, d, int(strong_index.size))
        keep = (npix >= s.min_spot_size) & (npix <= s.max_spot_size)
        if s.d_min is not None:
            keep &= d >= s.d_min
        if s.d_max is not None:
            keep &= d <= s.d_max
        return result.select(keep)


@numba.njit(nogil=True, cache=True)
def _candidates_range(image, ring1, thresholds1, invalid, start, stop, keep):
    """Write the candidates of [start, stop) to keep[start:...]; return how many. Branch-free compaction (most
    pixels are rejected, but unpredictably so) over unsigned indices (no negative-index handling)."""
    n = np.uint64(start)
    for i in range(np.uint64(start), np.uint64(stop)):
        v = image[i]
        b = ring1[i]
        keep[n] = i
        n += np.uint64((v >= thresholds1[b]) & (b != 0) & (v != invalid) & (v < MAX_TRUSTED))
    return n - np.uint64(start)


@numba.njit(parallel=True, nogil=True, cache=True)
def _candidates(image, ring1, thresholds1, invalid, nthreads):
    """Linear indices (ascending) of pixels at or above their ring's threshold; ring1 = ring + 1 (0 = not
    analysed, whose threshold is the dtype's top)."""
    keep = np.empty(image.size, np.uint32)
    counts = np.zeros(nthreads, np.int64)
    chunk = (image.size + nthreads - 1) // nthreads
    for t in numba.prange(nthreads):
        counts[t] = _candidates_range(
            image, ring1, thresholds1, invalid, t * chunk, min(image.size, (t + 1) * chunk), keep
        )
    out = np.empty(counts.sum(), np.int64)
    n = 0
    for t in range(nthreads):
        out[n : n + counts[t]] = keep[t * chunk : t * chunk + counts[t]]
        n += counts[t]
    return out


@numba.njit(nogil=True, cache=True)
def _window(image, valid, width, has_invalid, invalid, rows, cols):
    """(m, Sx, Sx2) of the valid pixels in the window rows x cols (clipped ranges) of flat arrays; branch-free
    over unsigned indices, so the short row loops vectorise."""
    m = 0
    sx = 0.0
    sxx = 0.0
    for r in range(np.uint64(rows[0]), np.uint64(rows[1])):
        base = r * np.uint64(width)
        for i in range(base + np.uint64(cols[0]), base + np.uint64(cols[1])):
            v = image[i]
            ok = (valid[i] != 0) & (v < MAX_TRUSTED) & ~(has_invalid & (v == invalid))
            x = float(v) if ok else 0.0
            m += ok
            sx += x
            sxx += x * x
    return m, sx, sxx


@numba.njit(nogil=True, cache=True)
def _dispersion_range(
    image, valid, candidates, start, stop, has_invalid, invalid, k, min_local, gain, n_b, n_s, threshold, strong, mean
):
    h, w = image.shape
    flat, flat_valid = image.reshape(-1), valid.reshape(-1)
    prev = -2
    m = 0
    sx = 0.0
    sxx = 0.0
    for c in range(start, stop):
        i = candidates[c]
        r0, c0 = i // w, i % w
        rows = (max(0, r0 - k), min(h, r0 + k + 1))
        if i == prev + 1 and c0 > 0:
            # the next pixel of a run: slide the window one column (drop the left column, add the right one)
            left, right = c0 - k - 1, c0 + k
            if left >= 0:
                dm, dsx, dsxx = _window(flat, flat_valid, w, has_invalid, invalid, rows, (left, left + 1))
                m -= dm
                sx -= dsx
                sxx -= dsxx
            if right < w:
                dm, dsx, dsxx = _window(flat, flat_valid, w, has_invalid, invalid, rows, (right, right + 1))
                m += dm
                sx += dsx
                sxx += dsxx
        else:
            m, sx, sxx = _window(flat, flat_valid, w, has_invalid, invalid, rows, (max(0, c0 - k), min(w, c0 + k + 1)))
        prev = i
        value = float(image[r0, c0])
        if m < min_local or m < 2 or sx < 0 or value <= threshold:
            continue
        mean[c] = sx / m
        dispersed = m * sxx - sx * sx - gain * sx * (m - 1) > gain * sx * n_b * math.sqrt(2.0 * (m - 1))
        bright = m * value - sx > n_s * math.sqrt(gain * sx * m)
        strong[c] = dispersed and bright


@numba.njit(parallel=True, nogil=True, cache=True)
def _dispersion_test(image, valid, candidates, has_invalid, invalid, k, min_local, gain, n_b, n_s, threshold, nthreads):
    """DIALS' dispersion + strong tests, exactly, for each candidate pixel; returns (strong, local mean).

    Sums are of integers below 2^24, exact in float64, so sliding the window loses nothing."""
    strong = np.zeros(candidates.size, np.bool_)
    mean = np.zeros(candidates.size, np.float64)
    chunk = (candidates.size + nthreads - 1) // nthreads
    for t in numba.prange(nthreads):
        _dispersion_range(
            image,
            valid,
            candidates,
            t * chunk,
            min(candidates.size, (t + 1) * chunk),
            has_invalid,
            invalid,
            k,
            min_local,
            gain,
            n_b,
            n_s,
            threshold,
            strong,
            mean,
        )
    return strong, mean


@numba.njit(nogil=True, cache=True)
def _find_root(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(nogil=True, cache=True)
def _label_sparse(index, width):
    """8-connected component labels (0..n-1, in order of first pixel) of sorted linear pixel indices."""
    n = index.size
    parent = np.arange(n)
    for p in range(n):
        i = index[p]
        r, c = i // width, i % width
        # earlier neighbours: (r, c-1) and (r-1, c-1..c+1); all have smaller linear indices
        for dr, dc in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
            rr, cc = r + dr, c + dc
            if rr < 0 or cc < 0 or cc >= width:
                continue
            j = np.searchsorted(index[:p], rr * width + cc)
            if j < p and index[j] == rr * width + cc:
                a, b = _find_root(parent, p), _find_root(parent, j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    labels = np.empty(n, np.int64)
    relabel = -np.ones(n, np.int64)
    count = 0
    for p in range(n):
        root = _find_root(parent, p)
        if relabel[root] < 0:
            relabel[root] = count
            count += 1
        labels[p] = relabel[root]
    return labels


@numba.njit(nogil=True, cache=True)
def _spot_table(image, index, labels, background, width):
    n = labels.max() + 1 if labels.size else 0
    sw = np.zeros(n)
    swx = np.zeros(n)
    swy = np.zeros(n)
    sx = np.zeros(n)
    sy = np.zeros(n)
    raw = np.zeros(n)
    bg = np.zeros(n)
    npix = np.zeros(n, np.int64)
    peak = np.zeros(n)
    for p in range(index.size):
        s = labels[p]
        v = float(image[index[p]])
        r, c = index[p] // width, index[p] % width
        x, y = c + 0.5, r + 0.5
        weight = max(v - background[p], 0.0)
        sw[s] += weight
        swx[s] += weight * x
        swy[s] += weight * y
        sx[s] += x
        sy[s] += y
        raw[s] += v
        bg[s] += background[p]
        npix[s] += 1
        peak[s] = max(peak[s], v)
    xc = np.empty(n)
    yc = np.empty(n)
    for s in range(n):
        if sw[s] > 0:
            xc[s], yc[s] = swx[s] / sw[s], swy[s] / sw[s]
        else:
            xc[s], yc[s] = sx[s] / npix[s], sy[s] / npix[s]
    return xc, yc, raw - bg, raw, bg / np.maximum(npix, 1), npix, peak
