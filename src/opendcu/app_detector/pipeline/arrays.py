"""The per-pixel arrays of a series (pixel mask, flatfield): cut to the ROI, shared with the workers, and
described in the image geometry for file and stream headers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendcu.app_detector.series import SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.codecs.binning import binned_shape
from opendcu.geometry import DetectorLayout, get_model


def layout_of(settings: SeriesSettings) -> DetectorLayout:
    """The placement of this series' images (detector model + ROI mode)."""
    return DetectorLayout(get_model(settings.detector), settings.roi_mode)


def image_shape(settings: SeriesSettings) -> tuple[int, int]:
    shape = layout_of(settings).shape
    return binned_shape(shape) if settings.binning_2x2_applied else shape


@dataclass
class PipelineArrays:
    """Pixel mask (uint32) and flatfield (float32) in the placed image geometry (ROI, before binning)."""

    pixel_mask: np.ndarray
    flatfield: np.ndarray

    @classmethod
    def for_detector(cls, settings: SeriesSettings, pixel_mask: np.ndarray | None, flatfield: np.ndarray | None):
        """Cut the detector-size arrays (None: the built-in defaults) to the series' ROI."""
        layout = layout_of(settings)
        full = DetectorLayout(layout.model)
        mask = full.default_pixel_mask() if pixel_mask is None else np.asarray(pixel_mask, dtype=np.uint32)
        gain = np.ones(full.shape, np.float32) if flatfield is None else np.asarray(flatfield, dtype=np.float32)
        return cls(np.ascontiguousarray(layout.crop(mask)), np.ascontiguousarray(layout.crop(gain)))

    def publish(self) -> SlotRing:
        """Copy into a new shared-memory block (one slot: mask, then flatfield); the caller owns it."""
        n = self.pixel_mask.size
        ring = SlotRing(1, n * 8)
        ring.bytes(0)[: n * 4].view(np.uint32)[:] = self.pixel_mask.reshape(-1)
        ring.bytes(0)[n * 4 : n * 8].view(np.float32)[:] = self.flatfield.reshape(-1)
        return ring

    @classmethod
    def attach(cls, name: str, shape: tuple[int, int]) -> PipelineArrays:
        """Copy the arrays out of a block made by `publish` (in a worker process)."""
        n = shape[0] * shape[1]
        ring = SlotRing.attach((name, 1, n * 8))
        try:
            mask = ring.bytes(0)[: n * 4].view(np.uint32).reshape(shape).copy()
            flatfield = ring.bytes(0)[n * 4 : n * 8].view(np.float32).reshape(shape).copy()
        finally:
            ring.close()
        return cls(mask, flatfield)

    def in_image_geometry(self, settings: SeriesSettings) -> tuple[np.ndarray, np.ndarray]:
        """(pixel_mask, flatfield) as the images are delivered: with 2x2 binning a block's mask is the OR of its
        pixels' bits and its flatfield the mean of their factors."""
        if not settings.binning_2x2_applied:
            return self.pixel_mask, self.flatfield
        h2, w2 = binned_shape(self.pixel_mask.shape)
        blocks = self.pixel_mask.reshape(h2, 2, w2, 2)
        mask = np.bitwise_or.reduce(np.bitwise_or.reduce(blocks, axis=3), axis=1)
        flatfield = self.flatfield.reshape(h2, 2, w2, 2).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
        return mask, flatfield
