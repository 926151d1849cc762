"""A plain, obviously-correct numpy implementation of every pipeline step, one step at a time, for the tests.

Values are int64 with markers: INVALID (lost packet, saturated counter or count rate), MASKED and GAP.
It shares no code with the compiled kernel beyond the definitions it checks: the detector layout (which raw
pixel goes where), the dead-time model's inversion (physics, tested on its own) and the E3M5 rule (also tested
on its own).
"""

from __future__ import annotations

import numpy as np

from opendcu.app_detector.pipeline.countrate import counter_model
from opendcu.app_detector.series import SeriesSettings
from opendcu.geometry import DetectorLayout, get_model

INVALID, MASKED, GAP = -1, -2, -3
RAW_ERROR = 0xFFFF


def countrate_correct(raw: np.ndarray, settings: SeriesSettings) -> np.ndarray:
    """Step 1: raw sub-frame counts -> corrected counts (INVALID for the error value and above the cutoff)."""
    counter = counter_model(get_model(settings.detector).module)
    raw = raw.astype(np.int64)
    if settings.countrate_correction_applied:
        t = settings.frame_count_time
        corrected = np.floor(counter.true_counts(raw.astype(np.float64), t) + 0.5).astype(np.int64)
        corrected[raw > counter.measured_cutoff(t)] = INVALID
    else:
        corrected = raw.copy()
    corrected[raw == RAW_ERROR] = INVALID
    return corrected


def place(values: np.ndarray, layout: DetectorLayout) -> np.ndarray:
    """Step 2: [n_modules, rows, cols] -> image with GAP between modules (ROI modules only)."""
    image = np.full(layout.shape, GAP, dtype=np.int64)
    for m in layout.modules:
        image[layout.module_slices(m)] = layout.place_module_reference(values[m], special=INVALID)
    return image


def summed(images: list[np.ndarray]) -> np.ndarray:
    """Step 3: sum sub-frame images; a pixel invalid in any sub-frame stays invalid."""
    stack = np.stack(images)
    total = np.where(stack == INVALID, 0, stack).sum(axis=0)
    total[(stack == INVALID).any(axis=0)] = INVALID
    total[stack[0] == GAP] = GAP
    return total


def interpolate_virtual_pixels(image: np.ndarray, layout: DetectorLayout) -> np.ndarray:
    """Step 4: each double pixel's total re-split in the ratio of the line between its normal neighbours."""
    out = image.copy()
    pairs = layout.column_pairs
    for m in layout.modules:
        rows, cols = layout.module_slices(m)
        block = out[rows, cols]
        for (a, b, left, right), (ta, tb) in zip(pairs.table, pairs.t, strict=True):
            va, vb = block[:, a].copy(), block[:, b].copy()
            total = va + vb
            first = total - total // 2
            if left >= 0 and right >= 0:
                vl, vr = block[:, left].astype(np.float64), block[:, right].astype(np.float64)
                w1, w2 = vl * (1 - ta) + vr * ta, vl * (1 - tb) + vr * tb
                usable = (block[:, left] != INVALID) & (block[:, right] != INVALID) & (w1 + w2 > 0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    shaped = np.floor(total * w1 / (w1 + w2) + 0.5)
                first = np.where(usable, shaped, first).astype(np.int64)
            ok = (va != INVALID) & (vb != INVALID)
            block[:, a] = np.where(ok, first, va)
            block[:, b] = np.where(ok, total - first, vb)
    return out


def flatfield_correct(image: np.ndarray, flatfield: np.ndarray) -> np.ndarray:
    """Step 5: multiply by the flatfield factor, round half up (double precision)."""
    valid = image >= 0
    out = image.copy()
    out[valid] = np.floor(image[valid].astype(np.float64) * flatfield[valid].astype(np.float64) + 0.5).astype(np.int64)
    return out


def saturate(image: np.ndarray, max_valid: int) -> np.ndarray:
    out = image.copy()
    out[out > max_valid] = INVALID
    return out


def apply_mask(image: np.ndarray, pixel_mask: np.ndarray, applied: bool) -> np.ndarray:
    """Step 6: masked pixels (any bit) are MASKED when the mask is applied; gaps are then masked or invalid."""
    out = image.copy()
    if applied:
        out[pixel_mask != 0] = MASKED
    out[out == GAP] = INVALID
    return out


def bin2x2(image: np.ndarray, max_valid: int) -> np.ndarray:
    h, w = image.shape
    blocks = image.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    out = blocks.sum(axis=2)
    out[out > max_valid] = INVALID
    out[(blocks == INVALID).any(axis=2)] = INVALID
    out[(blocks == MASKED).any(axis=2)] = MASKED
    return out


def e3m5(n: int) -> int:
    """The E3M5 code of a count, straight from the definition (truncating)."""
    if n < 32:
        return n
    if n >= 4032:
        return 255
    e = n.bit_length() - 5
    return e * 32 + (n >> (e - 1)) - 32


def emit(image: np.ndarray, settings: SeriesSettings) -> np.ndarray:
    """Step 7: to the bit depth: INVALID -> 2^bits - 1, MASKED -> that or 0 (mask_to_zero); or E3M5 codes."""
    top = (1 << settings.bit_depth_image) - 1
    masked_value = 0 if settings.mask_to_zero else top
    if settings.float8_encoding_applied:
        values = np.vectorize(e3m5, otypes=[np.int64])(np.maximum(image, 0))
    else:
        values = image
    out = np.where(image == INVALID, top, np.where(image == MASKED, masked_value, values))
    return out.astype(settings.dtype)


def reference_image(
    raw: np.ndarray, settings: SeriesSettings, pixel_mask: np.ndarray, flatfield: np.ndarray
) -> np.ndarray:
    """The whole pipeline: raw [nsub, n_modules, rows, cols] uint16 + detector-size mask and flatfield -> image."""
    layout = DetectorLayout(get_model(settings.detector), settings.roi_mode)
    mask, gain = layout.crop(pixel_mask), layout.crop(flatfield)
    images = [place(countrate_correct(sub, settings), layout) for sub in raw]
    image = summed(images)
    if settings.virtual_pixel_correction_applied:
        image = interpolate_virtual_pixels(image, layout)
    if settings.flatfield_correction_applied:
        image = flatfield_correct(image, gain)
    top_valid = 4031 if settings.float8_encoding_applied else (1 << settings.bit_depth_image) - 2
    if settings.binning_2x2_applied:
        image = apply_mask(saturate(image, min(settings.count_cutoff, 2**32 - 3)), mask, settings.pixel_mask_applied)
        image = bin2x2(
            image, min(4 * settings.count_cutoff, top_valid if not settings.float8_encoding_applied else 2**40)
        )
    else:
        limit = settings.count_cutoff if settings.float8_encoding_applied else min(settings.count_cutoff, top_valid)
        image = apply_mask(saturate(image, limit), mask, settings.pixel_mask_applied)
    return emit(image, settings)
