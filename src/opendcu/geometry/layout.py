"""Where each physical pixel of each module lands in the full image.

Two steps, both described here as index maps so that the pipeline can apply them with compiled code:
1. inside a module, double-width (-height) chip-border pixels are split into two virtual pixels;
2. modules are placed into the full image with the inter-module gaps between them.

Split rule (opendcu's choice, documented in ARCHITECTURE.md): a double pixel's count c becomes
ceil(c/2) in the first virtual pixel and floor(c/2) in the second, so counts are conserved (7 -> 4 + 3).
Special values (the error/saturation value 2^bits - 1) are copied undivided into both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from opendcu.geometry.models import DetectorModel

#: pixel_mask bits (DECTRIS, spec/detector-geometry.md §3)
MASK_GAP = 1 << 0
MASK_DEAD = 1 << 1
MASK_UNDER = 1 << 2
MASK_OVER = 1 << 3
MASK_NOISY = 1 << 4

WHOLE, FIRST_HALF, SECOND_HALF = 0, 1, 2


@dataclass(frozen=True)
class AxisMap:
    """For each virtual index along one axis: the raw index it comes from and which half of it it is."""

    src: np.ndarray  # int32, length = virtual size
    part: np.ndarray  # int8, WHOLE / FIRST_HALF / SECOND_HALF

    @classmethod
    def build(cls, raw_len: int, doubles: tuple[int, ...]) -> "AxisMap":
        src: list[int] = []
        part: list[int] = []
        double_set = set(doubles)
        for i in range(raw_len):
            if i in double_set:
                src += [i, i]
                part += [FIRST_HALF, SECOND_HALF]
            else:
                src.append(i)
                part.append(WHOLE)
        return cls(np.asarray(src, dtype=np.int32), np.asarray(part, dtype=np.int8))

    @property
    def size(self) -> int:
        return int(self.src.size)


def split_values(values: np.ndarray, part: np.ndarray, axis: int, special: int) -> np.ndarray:
    """Apply the split rule along `axis` to values already gathered by an AxisMap (reference, numpy)."""
    shape = [1, 1]
    shape[axis] = part.size
    p = part.reshape(shape)
    out = np.where(p == FIRST_HALF, values - values // 2, values)
    out = np.where(p == SECOND_HALF, values // 2, out)
    return np.where(values == special, values, out)


@dataclass(frozen=True)
class DetectorLayout:
    """The index maps and masks for one detector model."""

    model: DetectorModel

    @cached_property
    def row_map(self) -> AxisMap:
        m = self.model.module
        return AxisMap.build(m.raw_shape[0], m.double_rows)

    @cached_property
    def col_map(self) -> AxisMap:
        m = self.model.module
        return AxisMap.build(m.raw_shape[1], m.double_cols)

    @property
    def shape(self) -> tuple[int, int]:
        return self.model.shape

    def module_slices(self, module_id: int) -> tuple[slice, slice]:
        """The region of the full image that module `module_id` covers."""
        r0, c0 = self.model.module_origin(module_id)
        mh, mw = self.model.module.shape
        return slice(r0, r0 + mh), slice(c0, c0 + mw)

    @cached_property
    def gap_mask(self) -> np.ndarray:
        """True where the full image has no module (inter-module gaps)."""
        gaps = np.ones(self.shape, dtype=bool)
        for module_id in range(self.model.n_modules):
            gaps[self.module_slices(module_id)] = False
        gaps.setflags(write=False)
        return gaps

    def default_pixel_mask(self) -> np.ndarray:
        """The detector's built-in pixel mask: the gap bit on every gap pixel (uint32, [height, width])."""
        mask = np.zeros(self.shape, dtype=np.uint32)
        mask[self.gap_mask] = MASK_GAP
        return mask

    def unplace_module(self, block: np.ndarray) -> np.ndarray:
        """Virtual-pixel module block -> physical pixels, summing what the split pixels share (simulator)."""
        x = np.zeros((self.model.module.raw_shape[0], block.shape[1]), dtype=np.float64)
        np.add.at(x, self.row_map.src, block)
        out = np.zeros(self.model.module.raw_shape, dtype=np.float64)
        np.add.at(out.T, self.col_map.src, x.T)
        return out

    def place_module_reference(self, raw: np.ndarray, special: int) -> np.ndarray:
        """Plain numpy reference: one raw module frame -> its virtual-pixel block (int64)."""
        x = raw.astype(np.int64)[:, self.col_map.src]
        x = split_values(x, self.col_map.part, axis=1, special=special)
        x = x[self.row_map.src, :]
        return split_values(x, self.row_map.part, axis=0, special=special)
