"""Where each physical pixel of each module lands in the image.

Three steps, all described here as index tables so that the pipeline can apply them with compiled code:
1. inside a module, double-width (-height) chip-border pixels are split into two virtual pixels;
2. modules are placed into the image with the inter-module gaps between them;
3. in ROI mode (e.g. `roi_mode = "4M"` on a 16M) only the ROI's modules are placed (`DetectorModel.roi`).

Split rule (opendcu's choice, documented in ARCHITECTURE.md): a double pixel's count c becomes
ceil(c/2) in the first virtual pixel and floor(c/2) in the second, so counts are conserved (7 -> 4 + 3).
Special values (the error/saturation value 2^bits - 1) are copied undivided into both.

Virtual-pixel correction (SIMPLON `virtual_pixel_correction_applied`) re-splits each double pixel's total by
linear interpolation between the normal pixels left and right of its chip border (`VirtualPixelPairs`).
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
    def build(cls, raw_len: int, doubles: tuple[int, ...]) -> AxisMap:
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

    def whole_runs(self) -> np.ndarray:
        """Runs of WHOLE pixels as rows (virtual start, raw start, length): contiguous copies."""
        runs: list[tuple[int, int, int]] = []
        for v in np.flatnonzero(self.part == WHOLE):
            last = runs[-1] if runs else None
            if last and last[0] + last[2] == v and last[1] + last[2] == self.src[v]:
                runs[-1] = (last[0], last[1], last[2] + 1)
            else:
                runs.append((int(v), int(self.src[v]), 1))
        return np.asarray(runs, dtype=np.int64).reshape(-1, 3)

    def split_pixels(self) -> np.ndarray:
        """Virtual indices fed by a double pixel, as rows (virtual index, raw index, part)."""
        v = np.flatnonzero(self.part != WHOLE)
        return np.stack([v, self.src[v], self.part[v]], axis=1).astype(np.int64).reshape(-1, 3)


@dataclass(frozen=True)
class VirtualPixelPairs:
    """The virtual-pixel pairs of one axis and their interpolation weights.

    For the pair (first, second) of a double pixel inside a run of split pixels between the normal pixels
    `left` and `right`, the interpolated shape at virtual index x is v_left * (1 - t) + v_right * t with
    t = (x - left) / (right - left); the pair's total S is divided in the ratio of the shape at first and
    second: first = floor(S * w1 / (w1 + w2) + 1/2), second = S - first. Without both neighbours (module edge),
    or when a neighbour is invalid or both weights are 0, the plain split applies: ceil(S/2), floor(S/2).
    """

    table: np.ndarray  # int64 rows (first, second, left, right); left/right = -1 if missing
    t: np.ndarray  # float64 rows (t_first, t_second)

    @classmethod
    def build(cls, axis: AxisMap) -> VirtualPixelPairs:
        rows, ts = [], []
        n = axis.size
        split = axis.part != WHOLE
        i = 0
        while i < n:
            if not split[i]:
                i += 1
                continue
            start = i
            while i < n and split[i]:
                i += 1
            left, right = start - 1, (i if i < n else -1)
            for first in range(start, i):
                if axis.part[first] != FIRST_HALF:
                    continue
                second = first + 1
                if left >= 0 and right >= 0:
                    t = ((first - left) / (right - left), (second - left) / (right - left))
                else:
                    t = (0.5, 0.5)
                rows.append((first, second, left if right >= 0 else -1, right if left >= 0 else -1))
                ts.append(t)
        return cls(np.asarray(rows, dtype=np.int64).reshape(-1, 4), np.asarray(ts, dtype=np.float64).reshape(-1, 2))


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
    """The index maps and masks for one detector model, read out in one ROI mode."""

    model: DetectorModel
    roi_mode: str = "disabled"

    def __post_init__(self) -> None:
        if self.roi_mode not in ("", "disabled") and self.roi_mode not in self.model.roi_modes:
            allowed = ", ".join(("disabled", *self.model.roi_modes))
            raise ValueError(f"roi_mode {self.roi_mode!r} is not available on {self.model.name} (allowed: {allowed})")

    @cached_property
    def row_map(self) -> AxisMap:
        m = self.model.module
        return AxisMap.build(m.raw_shape[0], m.double_rows)

    @cached_property
    def col_map(self) -> AxisMap:
        m = self.model.module
        return AxisMap.build(m.raw_shape[1], m.double_cols)

    # -- modules in the image ---------------------------------------------------------------------------------
    @cached_property
    def image_model(self) -> DetectorModel:
        """The detector as the image shows it: the model itself, or its ROI."""
        return self.model.roi(self.roi_mode) if self.roi_mode not in ("", "disabled") else self.model

    @cached_property
    def modules(self) -> tuple[int, ...]:
        """The modules placed in the image, as indices of `model`'s modules (a raw frame's module axis)."""
        if self.image_model is self.model:
            return tuple(range(self.model.n_modules))
        return tuple(self.image_model.physical_module(i) for i in range(self.image_model.n_modules))

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (height, width) in virtual pixels, gaps included."""
        return self.image_model.shape

    def module_slices(self, module_id: int) -> tuple[slice, slice]:
        """The region of the image that module `module_id` (an index of `model`'s modules) covers."""
        r0, c0 = self.image_model.module_origin(self.modules.index(module_id))
        mh, mw = self.model.module.shape
        return slice(r0, r0 + mh), slice(c0, c0 + mw)

    def roi_slices(self) -> tuple[slice, slice]:
        """The region of the full detector image that this layout's image covers (to crop full-size arrays)."""
        r0, c0 = self.model.module_origin(self.modules[0])
        h, w = self.shape
        return slice(r0, r0 + h), slice(c0, c0 + w)

    def crop(self, full: np.ndarray) -> np.ndarray:
        """A full-detector array (pixel_mask, flatfield) cut to this layout's image."""
        if full.shape != self.model.shape:
            raise ValueError(f"array of shape {full.shape} does not match the detector's {self.model.shape}")
        return full[self.roi_slices()]

    @cached_property
    def gap_mask(self) -> np.ndarray:
        """True where the image has no module (inter-module gaps)."""
        gaps = np.ones(self.shape, dtype=bool)
        for module_id in self.modules:
            gaps[self.module_slices(module_id)] = False
        gaps.setflags(write=False)
        return gaps

    def default_pixel_mask(self) -> np.ndarray:
        """The detector's built-in pixel mask: the gap bit on every gap pixel (uint32, [height, width])."""
        mask = np.zeros(self.shape, dtype=np.uint32)
        mask[self.gap_mask] = MASK_GAP
        return mask

    @cached_property
    def column_pairs(self) -> VirtualPixelPairs:
        """Virtual-pixel pairs along a module row (double-width pixels)."""
        return VirtualPixelPairs.build(self.col_map)

    # -- simulator and reference ------------------------------------------------------------------------------
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
