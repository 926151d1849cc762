"""2x2 binning: each output pixel is the sum of a 2x2 block (spec/codecs.md §5.1).

A block with any invalid pixel (the input's top value 2^bits - 1: masked, gap, error or saturated) is invalid
as a whole, so that gap values never poison a sum; sums go into uint32 and saturate at 2^32 - 1. EIGER module
sizes, gaps and detector sizes are all even, so blocks never straddle a gap border.
"""

from __future__ import annotations

import numpy as np

UINT32_TOP = 0xFFFFFFFF


def binned_shape(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape
    if h % 2 or w % 2:
        raise ValueError(f"2x2 binning needs an even image size, got {h} x {w}")
    return h // 2, w // 2


class Bin2x2:
    """Array codec: image (h, w) of uint8/16/32 -> uint32 (h/2, w/2) block sums."""

    name = "bin2x2"

    def encode(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        h2, w2 = binned_shape(image.shape)
        blocks = image.reshape(h2, 2, w2, 2)
        invalid = (blocks == np.iinfo(image.dtype).max).any(axis=(1, 3))
        sums = blocks.sum(axis=(1, 3), dtype=np.uint64)
        return np.where(invalid | (sums >= UINT32_TOP), UINT32_TOP, sums).astype(np.uint32)

    def encoded_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return binned_shape(shape)

    def encoded_dtype(self, dtype) -> np.dtype:
        return np.dtype(np.uint32)
