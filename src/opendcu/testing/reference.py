"""Dense reference implementations (oracles for the tests and the benchmark; need scipy, in the `test` extra).

`dense_dispersion_spots` evaluates DIALS' dispersion tests on *every* pixel with exact summed-area tables, labels
the strong-pixel mask with `scipy.ndimage.label` (8-connectivity) and measures spots with ndimage: the
straightforward "scipy.ndimage spot finder" that opendcu.analysis.spots must reproduce.
"""

from __future__ import annotations

import numpy as np

from opendcu.analysis.spots import MAX_TRUSTED, SpotFinderSettings


def _window_sums(values: np.ndarray, k: int) -> np.ndarray:
    """Sum over the (2k+1)^2 window of each pixel, clipped at the borders (summed-area table)."""
    h, w = values.shape
    sat = np.zeros((h + 1, w + 1), dtype=values.dtype)
    sat[1:, 1:] = values.cumsum(0).cumsum(1)
    r = np.arange(h)
    c = np.arange(w)
    r0, r1 = np.clip(r - k, 0, h), np.clip(r + k + 1, 0, h)
    c0, c1 = np.clip(c - k, 0, w), np.clip(c + k + 1, 0, w)
    return sat[r1][:, c1] - sat[r0][:, c1] - sat[r1][:, c0] + sat[r0][:, c0]


def dense_strong_pixels(
    image: np.ndarray, valid: np.ndarray, settings: SpotFinderSettings, invalid_value: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(strong mask, local mean) of DIALS' dispersion threshold on every pixel."""
    s = settings
    ok = valid.astype(bool) & (image < MAX_TRUSTED)
    if invalid_value is not None:
        ok &= image != invalid_value
    x = np.where(ok, image, 0).astype(np.float64)
    m = _window_sums(ok.astype(np.int64), s.kernel_size)
    sx = _window_sums(x, s.kernel_size)
    sxx = _window_sums(x * x, s.kernel_size)
    g, n_b, n_s = s.gain, s.sigma_background, s.sigma_strong
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersed = m * sxx - sx * sx - g * sx * (m - 1) > g * sx * n_b * np.sqrt(2.0 * (m - 1))
        bright = m * x - sx > n_s * np.sqrt(g * sx * m)
        mean = np.where(m > 0, sx / np.maximum(m, 1), 0.0)
    strong = ok & (m >= s.min_local) & (m >= 2) & (sx >= 0) & (x > s.global_threshold) & dispersed & bright
    return strong, mean


def dense_dispersion_spots(
    image: np.ndarray,
    valid: np.ndarray,
    background: np.ndarray,
    settings: SpotFinderSettings | None = None,
    invalid_value: int | None = None,
) -> dict[str, np.ndarray]:
    """Spots (x, y, npix, raw_sum) from a dense evaluation; `background` is the per-pixel background used for
    the centroid weights (I - background), as the sparse finder uses its ring means."""
    from scipy import ndimage

    s = settings or SpotFinderSettings()
    strong, _ = dense_strong_pixels(image, valid, s, invalid_value)
    labels, n = ndimage.label(strong, structure=np.ones((3, 3), int))
    index = np.arange(1, n + 1)
    values = image.astype(np.float64)
    weights = np.maximum(values - background, 0.0)
    npix = ndimage.sum_labels(np.ones_like(values), labels, index)
    rows, cols = np.indices(image.shape, dtype=np.float64)
    wsum = ndimage.sum_labels(weights, labels, index)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(
            wsum > 0,
            ndimage.sum_labels(weights * (cols + 0.5), labels, index) / wsum,
            ndimage.mean(cols + 0.5, labels, index),
        )
        y = np.where(
            wsum > 0,
            ndimage.sum_labels(weights * (rows + 0.5), labels, index) / wsum,
            ndimage.mean(rows + 0.5, labels, index),
        )
    raw = ndimage.sum_labels(values, labels, index)
    keep = (npix >= s.min_spot_size) & (npix <= s.max_spot_size)
    return {
        "x": x[keep],
        "y": y[keep],
        "npix": npix[keep].astype(int),
        "raw_sum": raw[keep],
        "n_strong_pixels": int(strong.sum()),
        "strong": strong,
    }
