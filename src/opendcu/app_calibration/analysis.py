"""The numbers of a calibration from measured images (pure numpy; no acquisition here).

Images come in the detector's image geometry (virtual pixels, gaps). Split chip-border pixels share the counts
of one physical pixel, so the responses are worked out per physical read-out pixel (`to_physical`) and placed
back (`to_image`): both virtual halves of a split pixel get the physical pixel's factor and mask bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from opendcu.geometry import DetectorLayout
from opendcu.geometry.layout import MASK_DEAD, MASK_OVER, MASK_UNDER

#: response (relative to the detector's median) below which a pixel counts as dead, under-, over-responding
DEAD_RESPONSE, UNDER_RESPONSE, OVER_RESPONSE = 0.05, 0.8, 1.25


def to_physical(layout: DetectorLayout, image: np.ndarray) -> np.ndarray:
    """Image [..., h, w] -> per module physical read-out pixels [..., n_modules, raw_h, raw_w] (float64 sums)."""
    model = layout.model
    lead = image.shape[:-2]
    out = np.zeros((*lead, len(layout.modules), *model.module.raw_shape), dtype=np.float64)
    rows, cols = layout.row_map.src, layout.col_map.src
    for k, module_id in enumerate(layout.modules):
        block = image[(..., *layout.module_slices(module_id))].astype(np.float64)
        x = np.zeros((*lead, model.module.raw_shape[0], block.shape[-1]))
        np.add.at(np.moveaxis(x, -2, 0), rows, np.moveaxis(block, -2, 0))
        y = np.zeros((*lead, *model.module.raw_shape))
        np.add.at(np.moveaxis(y, -1, 0), cols, np.moveaxis(x, -1, 0))
        out[..., k, :, :] = y
    return out


def to_image(layout: DetectorLayout, physical: np.ndarray, fill) -> np.ndarray:
    """Per-module physical values [n_modules, raw_h, raw_w] -> image [h, w]; gaps get `fill`."""
    image = np.full(layout.shape, fill, dtype=physical.dtype)
    ix = np.ix_(layout.row_map.src, layout.col_map.src)
    for k, module_id in enumerate(layout.modules):
        image[layout.module_slices(module_id)] = physical[k][ix]
    return image


def whole_pixels(layout: DetectorLayout) -> np.ndarray:
    """Physical pixels that are one virtual pixel each (bool [n_modules, raw_h, raw_w])."""
    model = layout.model
    rows = np.bincount(layout.row_map.src, minlength=model.module.raw_shape[0]) == 1
    cols = np.bincount(layout.col_map.src, minlength=model.module.raw_shape[1]) == 1
    one = rows[:, None] & cols[None, :]
    return np.broadcast_to(one, (len(layout.modules), *one.shape)).copy()


def pixel_areas(layout: DetectorLayout) -> np.ndarray:
    """How many virtual pixels of the nominal size each physical pixel is (1, 2 or 4)."""
    model = layout.model
    rows = np.bincount(layout.row_map.src, minlength=model.module.raw_shape[0])
    cols = np.bincount(layout.col_map.src, minlength=model.module.raw_shape[1])
    area = (rows[:, None] * cols[None, :]).astype(np.float64)
    return np.broadcast_to(area, (len(layout.modules), *area.shape)).copy()


@dataclass
class FloodResult:
    """A flood series reduced per physical pixel."""

    counts: np.ndarray  # summed counts per physical pixel [n_modules, raw_h, raw_w]
    response: np.ndarray  # counts / area / median of the ordinary pixels (float64)
    ordinary: np.ndarray  # bool: pixels within the ordinary response range
    median_counts: float  # median counts of an ordinary pixel of nominal size


def reduce_flood(layout: DetectorLayout, counts: np.ndarray, exclude: np.ndarray | None = None) -> FloodResult:
    """Relative response of each physical pixel from its summed flood counts (`exclude`: pixels known bad)."""
    area = pixel_areas(layout)
    per_area = counts / area
    usable = np.ones(counts.shape, dtype=bool) if exclude is None else ~exclude
    median = float(np.median(per_area[usable & (per_area > 0)])) if np.any(usable & (per_area > 0)) else 0.0
    if median <= 0:
        raise ValueError("the flood has no counts: is the beam on?")
    response = per_area / median
    ordinary = usable & (response > UNDER_RESPONSE) & (response < OVER_RESPONSE)
    median = float(np.median(per_area[ordinary]))  # again, without the defective pixels
    return FloodResult(counts, per_area / median, ordinary, median)


def flood_precision(flood: FloodResult, percentile: float = 0.1) -> float:
    """Relative Poisson precision per pixel reached: 1 / sqrt(counts) of the `percentile` % lowest ordinary pixel."""
    low = float(np.percentile(flood.counts[flood.ordinary], percentile))
    return math.inf if low <= 0 else 1.0 / math.sqrt(low)


def flood_mask_bits(flood: FloodResult, noisy: np.ndarray | None = None) -> np.ndarray:
    """Dead / under / over bits (uint32, physical pixels) from a flood; noisy pixels are judged by the darks."""
    r = flood.response
    bits = np.zeros(r.shape, dtype=np.uint32)
    judged = np.ones(r.shape, dtype=bool) if noisy is None else ~noisy
    bits[judged & (r < DEAD_RESPONSE)] |= MASK_DEAD
    bits[judged & (r >= DEAD_RESPONSE) & (r < UNDER_RESPONSE)] |= MASK_UNDER
    bits[judged & (r > OVER_RESPONSE)] |= MASK_OVER
    return bits


def dark_noisy(
    darks: np.ndarray, count_time: float, rate_limit: float, dispersion_sigmas: float = 6.0
) -> tuple[np.ndarray, dict]:
    """Hot and noisy pixels from dark images [n, n_modules, raw_h, raw_w]: a dark rate above `rate_limit`
    (counts/s), or a variance in excess of Poisson (dispersion index var/mean above 1 by `dispersion_sigmas`
    standard errors, sqrt(2 / (n - 1)))."""
    n = darks.shape[0]
    mean = darks.mean(axis=0)
    hot = mean / count_time > rate_limit
    noisy = np.zeros_like(hot)
    if n >= 3:
        var = darks.var(axis=0, ddof=1)
        limit = 1.0 + dispersion_sigmas * math.sqrt(2.0 / (n - 1))
        noisy = (mean > 0) & (var > limit * np.maximum(mean, 1.0 / n))
    stats = {
        "hot": int(hot.sum()),
        "excess_variance": int((noisy & ~hot).sum()),
        "images": n,
        "count_time": count_time,
        "rate_limit": rate_limit,
        "median_dark_rate": float(np.median(mean) / count_time),
    }
    return hot | noisy, stats


def fit_dead_time(fluxes: np.ndarray, counts: np.ndarray, count_time: float) -> tuple[float, float, float]:
    """Paralysable model m = a F t exp(-a F tau) fitted to mean counts per pixel `counts` at photon fluxes
    `fluxes` (per s): ln(m / F) = ln(a t) - a tau F is a straight line. Returns (tau, a, rms of the residuals
    of ln m)."""
    x = np.asarray(fluxes, dtype=np.float64)
    y = np.log(np.asarray(counts, dtype=np.float64) / x)
    slope, intercept = np.polyfit(x, y, 1)
    a = math.exp(intercept) / count_time
    tau = -slope / a
    rms = float(np.sqrt(np.mean((y - (intercept + slope * x)) ** 2)))
    return float(tau), float(a), rms


def erfc_inverse(y: np.ndarray) -> np.ndarray:
    """x with erfc(x) = y for y in (0, 2) (Newton's method from a rough start; float64)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.zeros_like(y)
    erfc = np.vectorize(math.erfc)
    for _ in range(60):
        step = (erfc(x) - y) / (-2.0 / math.sqrt(math.pi) * np.exp(-x * x))
        x = x - np.clip(step, -1.0, 1.0)
    return x


def fit_s_curve(thresholds: np.ndarray, fraction: np.ndarray) -> tuple[float, float]:
    """Midpoint and width (eV) of an S-curve fraction = 0.5 erfc((T - mid) / (sqrt 2 width)), from the points
    between 3 % and 97 % (there erfc^-1(2 f) is a straight line in T)."""
    t = np.asarray(thresholds, dtype=np.float64)
    f = np.asarray(fraction, dtype=np.float64)
    use = (f > 0.03) & (f < 0.97)
    if use.sum() < 3:
        raise ValueError(
            f"the threshold scan has only {int(use.sum())} points on the S-curve; scan closer to "
            "the photon energy or more finely"
        )
    x = erfc_inverse(2.0 * f[use])
    slope, intercept = np.polyfit(x, t[use], 1)  # T = mid + sqrt(2) width x
    return float(intercept), float(slope / math.sqrt(2.0))
