"""Per-frame image processing in the seed's order, from raw module frames to the final image.

Steps (each switched by its SIMPLON key):
1. count-rate correction            (countrate_correction_applied)   -- issue #4
2. placement into virtual pixels and the full image with gaps
3. auto-summation of sub-frames      (auto_summation)                 -- issue #4
4. virtual-pixel correction          (virtual_pixel_correction_applied) -- issue #4
5. flatfield                         (flatfield_correction_applied)   -- issue #4
6. pixel mask                        (pixel_mask_applied, mask_to_zero)
then conversion to `bit_depth_image`. Compression follows in the worker.
"""

from __future__ import annotations

import numpy as np

from opendcu.app_detector.daq.assembler import RAW_ERROR
from opendcu.app_detector.series import SeriesSettings
from opendcu.geometry.layout import FIRST_HALF, SECOND_HALF, DetectorLayout


class ImageProcessor:
    """Turns one raw frame (all modules' physical pixels) into the final image of a series."""

    def __init__(self, settings: SeriesSettings, layout: DetectorLayout, pixel_mask: np.ndarray):
        self.settings = settings
        self.layout = layout
        self.error_value = settings.error_value
        self.image = np.empty(layout.shape, dtype=settings.dtype)
        masked = pixel_mask != 0 if settings.pixel_mask_applied else layout.gap_mask
        self.masked_index = np.flatnonzero(masked)
        self.masked_value = 0 if (settings.pixel_mask_applied and settings.mask_to_zero) else self.error_value
        self._cols = layout.col_map
        self._rows = layout.row_map

    def process(self, raw: np.ndarray) -> np.ndarray:
        """raw: uint16 [n_modules, raw_rows, raw_cols] -> image [height, width] of the series dtype."""
        image = self.image
        for module_id in range(raw.shape[0]):
            image[self.layout.module_slices(module_id)] = self._place_module(raw[module_id])
        image.reshape(-1)[self.masked_index] = self.masked_value
        return image

    def _place_module(self, raw: np.ndarray) -> np.ndarray:
        block = raw[:, self._cols.src].astype(np.uint32)
        block = _split(block, self._cols.part, axis=1)
        block = block[self._rows.src, :]
        block = _split(block, self._rows.part, axis=0)
        # readout errors (lost packets, saturated counters) become the image's error value
        return np.where(block == RAW_ERROR, self.error_value, block)


def _split(values: np.ndarray, part: np.ndarray, axis: int) -> np.ndarray:
    if not part.any():
        return values
    index = [slice(None), slice(None)]
    for which, take in ((FIRST_HALF, lambda v: v - v // 2), (SECOND_HALF, lambda v: v // 2)):
        index[axis] = np.flatnonzero(part == which)
        sel = values[tuple(index)]
        values[tuple(index)] = np.where(sel == RAW_ERROR, sel, take(sel))
    return values
