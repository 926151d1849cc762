"""Per-frame image processing in the seed's order, from raw module sub-frames to the final image.

Steps (each switched by its SIMPLON key), fused into one compiled pass (`kernels.py`):
1. count-rate correction            (countrate_correction_applied, countrate_correction_count_cutoff)
2. placement into virtual pixels and the image with gaps (roi_mode)
3. auto-summation of sub-frames      (auto_summation -> nframes_sum)
4. virtual-pixel correction          (virtual_pixel_correction_applied)
5. flatfield                         (flatfield_correction_applied, flatfield)
6. pixel mask                        (pixel_mask_applied, pixel_mask, mask_to_zero)
7. bit depth 8/16/32                 (bit_depth_image), with the opendcu options 2x2 binning
                                     (binning_2x2_applied) and the 8-bit float counter (float8_encoding_applied)
Compression (compression) follows in the worker.
"""

from __future__ import annotations

import numpy as np

from opendcu.app_detector.pipeline import kernels
from opendcu.app_detector.pipeline.arrays import PipelineArrays, layout_of
from opendcu.app_detector.pipeline.countrate import CountRateCorrection, counter_model, identity_lut, lut_identity_limit
from opendcu.app_detector.series import SeriesSettings
from opendcu.codecs.binning import binned_shape
from opendcu.codecs.bslz4 import block_elems
from opendcu.codecs.compiled import CHUNK_KINDS, chunk_bound
from opendcu.codecs.float8 import FLOAT8_MAX, TOP_CODE
from opendcu.geometry.layout import DetectorLayout

_STAGING_MAX = int(kernels.MASKED) - 1


def placement_tables(layout: DetectorLayout) -> tuple[np.ndarray, ...]:
    """The index tables `kernels.correct_frame` places modules with (int64, C-contiguous)."""
    origins = np.array([[s.start for s in layout.module_slices(m)] for m in layout.modules], dtype=np.int64)
    pairs = layout.column_pairs
    tables = (
        np.array(layout.modules, dtype=np.int64),
        origins.reshape(-1, 2),
        layout.col_map.whole_runs(),
        layout.col_map.split_pixels(),
        layout.col_map.src.astype(np.int64),
        layout.col_map.part.astype(np.int64),
        layout.row_map.src.astype(np.int64),
        layout.row_map.part.astype(np.int64),
        pairs.table,
        pairs.t,
    )
    return tuple(np.ascontiguousarray(t) for t in tables)


def mask_lists(masked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masked pixels as per-row column lists (CSR: row start offsets, columns)."""
    rows, cols = np.nonzero(masked)
    starts = np.searchsorted(rows, np.arange(masked.shape[0] + 1)).astype(np.int64)
    return starts, cols.astype(np.int64)


class ImageProcessor:
    """Turns one raw frame (all modules' sub-frames of physical pixels) into the final image of a series."""

    def __init__(self, settings: SeriesSettings, arrays: PipelineArrays):
        self.settings = settings
        layout = layout_of(settings)
        if settings.virtual_pixel_correction_applied and layout.row_map.part.any():
            raise ValueError(f"virtual-pixel interpolation across double rows is not supported ({layout.model.name})")
        self.layout = layout
        self.geometry = placement_tables(layout)
        counter = counter_model(layout.model.module, settings.dead_time or None)
        if settings.countrate_correction_applied:
            self.lut = CountRateCorrection(counter, settings.frame_count_time).lut()
        else:
            self.lut = identity_lut(counter.bits)
        self.identity_limit = lut_identity_limit(self.lut)
        self.flatfield = np.ascontiguousarray(arrays.flatfield, dtype=np.float32)

        float8 = settings.float8_encoding_applied
        self.error_value = int(TOP_CODE if float8 else settings.error_value)
        self.masked_value = 0 if (settings.pixel_mask_applied and settings.mask_to_zero) else self.error_value
        masked = arrays.pixel_mask != 0 if settings.pixel_mask_applied else np.zeros(layout.shape, bool)
        self.mask_rows, self.mask_cols = mask_lists(masked & ~layout.gap_mask)
        self.mode = kernels.EMIT_FLOAT8 if float8 else kernels.EMIT_INTEGER
        # what the bit depth can hold besides the error value; E3M5 codes saturate by their table
        dtype_max = FLOAT8_MAX if float8 else settings.error_value - 1
        pixel_cutoff = settings.count_cutoff
        self.image = np.empty(settings.image_shape or layout.shape, dtype=settings.dtype)
        if settings.binning_2x2_applied:
            self.staging = np.empty(layout.shape, dtype=np.uint32)
            self._fill_gaps(self.staging, masked, kernels.MASKED, kernels.SATURATED)
            self.pixel_max = min(pixel_cutoff, _STAGING_MAX)
            self.image_max = min(4 * pixel_cutoff, dtype_max)
            if self.image.shape != binned_shape(layout.shape):
                raise ValueError(f"image shape {self.image.shape} does not match binned {binned_shape(layout.shape)}")
        else:
            self.staging = None
            self._fill_gaps(self.image, masked, self.masked_value, self.error_value)
            self.pixel_max = min(pixel_cutoff, dtype_max)
            self.image_max = self.pixel_max

    def _fill_gaps(self, target: np.ndarray, masked: np.ndarray, masked_value: int, error_value: int) -> None:
        """Gap pixels never receive data: set them once per series (masked value if their mask bit applies)."""
        gaps = self.layout.gap_mask
        target[gaps] = np.where(masked[gaps], masked_value, error_value)

    def _frame_arguments(self) -> tuple:
        """`kernels.correct_frame`'s arguments after the raw frame, its target last."""
        s = self.settings
        if self.staging is None:
            target, mode, error_value, masked_value = self.image, self.mode, self.error_value, self.masked_value
        else:
            target, mode = self.staging, kernels.EMIT_STAGING
            error_value, masked_value = int(kernels.SATURATED), int(kernels.MASKED)
        return (
            self.geometry,
            self.lut,
            self.identity_limit,
            s.virtual_pixel_correction_applied,
            self.flatfield,
            s.flatfield_correction_applied,
            self.mask_rows,
            self.mask_cols,
            int(masked_value),
            float(self.pixel_max),
            int(error_value),
            mode,
            target,
        )

    def process(self, raw: np.ndarray) -> np.ndarray:
        """raw: uint16 [nsubframes, n_modules, raw_rows, raw_cols] -> the image (a buffer reused by the next call)."""
        model = self.layout.model
        if raw.ndim != 4 or raw.shape[1] != model.n_modules or raw.shape[2:] != model.module.raw_shape:
            raise ValueError(f"raw frame of shape {raw.shape} does not fit {model.name}")
        kernels.correct_frame(raw, *self._frame_arguments())
        if self.staging is not None:
            kernels.bin_and_emit(
                self.staging, float(self.image_max), self.error_value, self.masked_value, self.mode, self.image
            )
        return self.image

    def chunk_bound(self) -> int:
        """The most bytes `process_batch` writes into an output slot (codecs of `CHUNK_KINDS` only)."""
        return chunk_bound(CHUNK_KINDS[self.settings.compression], self.image.size, self.image.itemsize)

    def process_batch(
        self, raw_buf: np.ndarray, slots: np.ndarray, nsub: int, out_buf: np.ndarray, out_slots: np.ndarray
    ) -> np.ndarray:
        """Correct and compress the frames in raw slots `slots` (of `nsub` sub-frames) into the chunks of output
        slots `out_slots`, in one compiled call: the chunks' sizes (-1: failed). Only for the codecs of
        `CHUNK_KINDS`; the output slots must hold `chunk_bound()` bytes."""
        model = self.layout.model
        raw_shape = (nsub, model.n_modules, *model.module.raw_shape)
        if raw_buf.shape[1] < nsub * model.n_modules * model.module.raw_pixels * 2:
            raise ValueError(f"raw slots of {raw_buf.shape[1]} bytes cannot hold {nsub} sub-frames of {model.name}")
        binning = (self.staging is not None, float(self.image_max), self.error_value, self.masked_value, self.mode)
        kind = CHUNK_KINDS[self.settings.compression]
        chunk = (kind, block_elems(self.image.itemsize))
        sizes = np.empty(len(slots), dtype=np.int64)
        kernels.process_frames(
            raw_buf,
            np.array(slots, dtype=np.int64),  # a copy: a read-only view (a message's rows) is another numba type
            raw_shape,
            self._frame_arguments(),
            binning,
            self.image,
            chunk,
            out_buf,
            np.array(out_slots, dtype=np.int64),
            sizes,
        )
        return sizes


def warm_up(detector: str = "eiger2-500k") -> None:
    """Run every kernel specialisation once (numba compiles it, or loads it from its on-disk cache), so that a
    worker's first image of a series is not delayed by compilation."""
    from dataclasses import replace

    from opendcu.app_detector.pipeline.arrays import image_shape
    from opendcu.geometry import get_model

    model = get_model(detector)
    base = SeriesSettings(0, detector, 1, 16, "bslz4", True, False, flatfield_correction_applied=True)
    variants = [
        {},
        {"bit_depth_image": 32, "nframes_sum": 2},
        {"bit_depth_image": 8, "float8_encoding_applied": True},
        {"bit_depth_image": 32, "binning_2x2_applied": True},
        {"bit_depth_image": 8, "binning_2x2_applied": True, "float8_encoding_applied": True},
    ]
    for changes in variants:
        settings = replace(base, **changes)
        settings = replace(settings, image_shape=image_shape(settings))
        raw = np.zeros((settings.nframes_sum, model.n_modules, *model.module.raw_shape), dtype=np.uint16)
        processor = ImageProcessor(settings, PipelineArrays.for_detector(settings, None, None))
        processor.process(raw)
        out = np.zeros((1, processor.chunk_bound()), dtype=np.uint8)
        slot = np.zeros(1, dtype=np.int64)
        processor.process_batch(raw.reshape(1, -1).view(np.uint8), slot, settings.nframes_sum, out, slot)
