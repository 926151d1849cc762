"""MX image scoring: spot counts, ice rings, resolution estimate, hit/blank (spec/edge-analysis.md §4).

Resolution (`estimate_d_min`): DISTL method 2 in spirit (§4.1) - the density of spots per reciprocal volume, in
shells of equal d*^3 width, is flat out to where the crystal stops diffracting. Shell counts are divided by the
fraction of each shell's ring that falls on valid pixels (gaps, mask, detector edge), so a ring cut by the
detector corners is not mistaken for the end of diffraction (shells seen by less than 5 % are skipped). Going
outwards, the limit is the first place where two consecutive seen shells fall below `fraction` (5 %) of the
low-resolution density; the estimate is the d of the highest-resolution spot before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from opendcu.analysis.geometry import Geometry

if TYPE_CHECKING:  # (integrate imports numba; the simulator uses this module's ice rings without it)
    from opendcu.analysis.integrate import Profile

#: hexagonal ice Ih d-spacings (A) (the DIALS ice model, spec/edge-analysis.md §5.2)
ICE_RING_D = (3.895, 3.669, 3.441, 2.671, 2.249, 2.071, 1.948, 1.917, 1.883, 1.835)


@dataclass(frozen=True)
class ScoringSettings:
    #: half-width of an ice ring in q (A^-1); Jungfraujoch measured FWHM ~0.06
    ice_ring_width_q: float = 0.025
    #: an image is a hit with at least this many spots outside ice rings
    hit_min_spots: int = 10
    #: d window (A) of the background estimate (Jungfraujoch 2022: 5-3 A)
    background_d_range: tuple[float, float] = (3.0, 5.0)
    low_resolution_d: float = 4.0


@dataclass
class ImageScore:
    """Per-image numbers a beamline user watches."""

    n_spots: int
    n_spots_no_ice: int
    n_spots_low_res: int  # d > 4 A (low_resolution_d)
    total_intensity: float  # summed spot intensities outside ice rings
    d_min: float | None  # estimated resolution (A); None with too few spots
    is_hit: bool
    background: float | None  # mean photons/pixel in the background d window
    ice_score: float | None  # intensity in ice rings over their neighbourhood, minus 1

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def in_ice_ring(d: np.ndarray, width_q: float) -> np.ndarray:
    """True for resolutions (A) within +-width_q (A^-1) of a hexagonal-ice ring."""
    q = 2 * np.pi / np.asarray(d, float)
    ice_q = 2 * np.pi / np.asarray(ICE_RING_D)
    return (np.abs(q[..., None] - ice_q) <= width_q).any(axis=-1)


class ShellCoverage:
    """Fraction of each resolution shell's full ring that valid pixels see (precomputed per geometry+mask)."""

    def __init__(self, geometry: Geometry, mask: np.ndarray | None = None, n_fine: int = 2000):
        valid = np.ones(geometry.shape, bool) if mask is None else (np.asarray(mask) == 0)
        lam = geometry.wavelength_a
        area = geometry.pixel1 * geometry.pixel2 / geometry.dist**2
        d_star3 = np.empty(geometry.shape)
        omega = np.empty(geometry.shape)
        for r0 in range(0, geometry.shape[0], 512):
            rows = slice(r0, min(r0 + 512, geometry.shape[0]))
            arrays = geometry.pixel_arrays(rows)
            d_star3[rows] = (2 * np.sin(arrays["2th"] / 2) / lam) ** 3
            omega[rows] = area * arrays["solid_angle"]
        self.d_star3_max = float(d_star3.max())
        self.edges = np.linspace(0.0, self.d_star3_max, n_fine + 1)
        seen = np.histogram(d_star3[valid], self.edges, weights=omega[valid])[0]
        # the full ring's solid angle between 2theta_1 and 2theta_2: 2 pi (cos 2theta_1 - cos 2theta_2)
        tth = 2 * np.arcsin(np.clip(np.cbrt(self.edges) * lam / 2, 0, 1))
        full = 2 * np.pi * (np.cos(tth[:-1]) - np.cos(tth[1:]))
        with np.errstate(invalid="ignore", divide="ignore"):
            self.fine = np.clip(np.where(full > 0, seen / full, 0.0), 0.0, 1.0)

    @property
    def detector_d_min(self) -> float:
        """Highest resolution any pixel sees (A)."""
        return self.d_star3_max ** (-1 / 3)

    def coverage(self, lo: float, hi: float) -> float:
        """Mean coverage of the d*^3 interval [lo, hi)."""
        centres = 0.5 * (self.edges[:-1] + self.edges[1:])
        sel = (centres >= lo) & (centres < hi)
        return float(self.fine[sel].mean()) if sel.any() else 0.0


def estimate_d_min(
    d: np.ndarray, coverage: ShellCoverage | None = None, fraction: float = 0.05, min_spots: int = 10
) -> float | None:
    """Resolution limit (A) from spot resolutions (ice-ring spots should be removed first); None if too few."""
    d = np.asarray(d, float)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size <= min_spots:
        return None
    d_star3 = d**-3.0
    top = coverage.d_star3_max if coverage is not None else float(d_star3.max())
    n_shells = int(np.clip(d.size // 8, 8, 40))
    edges = np.linspace(0.0, top * (1 + 1e-9), n_shells + 1)
    counts = np.histogram(d_star3, edges)[0].astype(float)
    cover = np.array(
        [coverage.coverage(edges[i], edges[i + 1]) if coverage is not None else 1.0 for i in range(n_shells)]
    )
    seen = cover >= 0.05  # shells the detector hardly sees say nothing either way
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(seen, counts / np.maximum(cover, 1e-9), np.nan)
    # the low-resolution reference: shells holding the lower-resolution half of the spots
    median_shell = int(np.searchsorted(edges, np.median(d_star3), side="right"))
    reference = np.nanmedian(density[: max(1, median_shell)])
    if not reference > 0:
        return float(d.min())
    low = density < fraction * reference
    unseen = ~seen
    end = n_shells
    for k in range(median_shell, n_shells):
        if unseen[k]:
            continue
        following = [j for j in range(k + 1, n_shells) if seen[j]][:1]
        if low[k] and (not following or low[following[0]]):
            end = k
            break
    inside = d_star3 < edges[end]
    return float(d[inside].min()) if inside.any() else float(d.max())


def score_image(
    spot_d: np.ndarray,
    spot_intensity: np.ndarray,
    settings: ScoringSettings | None = None,
    coverage: ShellCoverage | None = None,
    profile: Profile | None = None,
) -> ImageScore:
    """Score one image from its spots' resolutions/intensities (and optionally its radial profile)."""
    s = settings or ScoringSettings()
    spot_d = np.asarray(spot_d, float)
    ice = in_ice_ring(spot_d, s.ice_ring_width_q) if spot_d.size else np.zeros(0, bool)
    no_ice = ~ice
    n_no_ice = int(no_ice.sum())
    background = ice_score = None
    if profile is not None:
        background, ice_score = _profile_scores(profile, s)
    return ImageScore(
        n_spots=int(spot_d.size),
        n_spots_no_ice=n_no_ice,
        n_spots_low_res=int((spot_d[no_ice] > s.low_resolution_d).sum()),
        total_intensity=float(np.asarray(spot_intensity, float)[no_ice].sum()),
        d_min=estimate_d_min(spot_d[no_ice], coverage),
        is_hit=n_no_ice >= s.hit_min_spots,
        background=background,
        ice_score=ice_score,
    )


def _profile_scores(profile: Profile, s: ScoringSettings) -> tuple[float | None, float | None]:
    """Mean raw counts per pixel in the background window (ice bands left out), and the ice rings' excess:
    the mean over rings of (ring intensity / its baseline - 1), the baseline interpolated linearly between the
    flanks on either side (1.5 to 4 half-widths away, outside every ice band)."""
    if profile.sum_signal.ndim != 1:
        return None, None
    d = profile.radial_as("d_A")
    q = 2 * np.pi / d
    counts = profile.count
    intensity = profile.intensity
    ice_q = 2 * np.pi / np.asarray(ICE_RING_D)
    w = s.ice_ring_width_q
    in_band = (np.abs(q[:, None] - ice_q[None, :]) <= 1.5 * w).any(axis=1)
    lo, hi = s.background_d_range
    window = (d >= lo) & (d <= hi) & (counts > 0) & ~in_band
    background = float(profile.sum_signal[window].sum() / counts[window].sum()) if window.any() else None
    excess = []
    usable = np.isfinite(intensity) & (counts > 0)
    for centre in ice_q:
        offset = q - centre
        ring = usable & (np.abs(offset) <= w)
        left = usable & ~in_band & (offset < -1.5 * w) & (offset >= -4 * w)
        right = usable & ~in_band & (offset > 1.5 * w) & (offset <= 4 * w)
        if not (ring.any() and left.any() and right.any()):
            continue
        ql, qr = q[left].mean(), q[right].mean()
        il, ir = intensity[left].mean(), intensity[right].mean()
        baseline = il + (ir - il) * (centre - ql) / (qr - ql)
        if baseline > 0:
            excess.append(intensity[ring].mean() / baseline - 1)
    ice_score = float(np.mean(excess)) if excess else None
    return background, (ice_score if ice_score is not None and math.isfinite(ice_score) else None)
