"""The active calibration set made small for the Web-UI's Calibration page:

    GET /ui/api/calibration/map?kind=flatfield|pixel_mask&bin=<b>
        the active set's flatfield (at the detector's present energies) or pixel mask, as JSON: the whole
        detector mean-binned (flatfield) or OR-binned (mask) `bin` x `bin` into one byte per output pixel
        (base64; the codes of `ui_images`: 0..LEVELS-1 the contrast levels between `lo` and `hi`, GAP, MASKED),
        and per module its place, statistics and a histogram (flatfield: of the gain values; mask: pixels per
        mask bit).

The arrays come from app-calibration's `calibration` module (config/flatfield, config/pixel_mask), as any REST
client reads them. Modules are found from the mask's gap bit (rows and columns that are gaps everywhere), so the
base system needs no detector geometry.
"""

from __future__ import annotations

import base64
from typing import Any

import grpc
import numpy as np
from fastapi import APIRouter, Request, Response

from opendcu.base.rest.background import in_background
from opendcu.base.rest.responses import app_error, json_response, text_error
from opendcu.base.rest.ui_images import GAP, GAP_BIT, LEVELS, MASKED
from opendcu.proto.values import from_proto

router = APIRouter()

KINDS = ("flatfield", "pixel_mask")
#: pixel_mask bits (SIMPLON, spec/detector-geometry.md §3)
MASK_BITS = {0: "gap", 1: "dead", 2: "under-responding", 3: "over-responding", 4: "noisy"}
HISTOGRAM_BINS = 60
MAX_BIN = 64
#: the default binning keeps the map at most this many pixels wide or high
DEFAULT_MAP_PIXELS = 640
#: the flatfield's contrast range: these percentiles of the valid pixels
RANGE_PERCENTILES = (0.5, 99.5)


class BadRequest(Exception):
    pass


def runs(inside: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], inside.astype(np.int8), [0]))))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def module_regions(gaps: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(y0, x0, h, w) of each module, row by row: the blocks between rows and columns that are gap throughout."""
    row_runs, col_runs = runs(np.asarray(~gaps.all(axis=1))), runs(np.asarray(~gaps.all(axis=0)))
    return [(y, x, h, w) for y, h in row_runs for x, w in col_runs]


def binned_codes(kind: str, values: np.ndarray, mask: np.ndarray, b: int, lo: float, hi: float) -> np.ndarray:
    """One code per `b` x `b` block: the flatfield's mean over its valid pixels scaled into 0..LEVELS-1 (GAP when
    the block is all gap, MASKED when all its non-gap pixels are masked); the mask's OR (MASKED when any pixel of
    the block is masked, GAP when all are gaps, else level 0)."""
    h, w = values.shape
    rows, cols = -(-h // b), -(-w // b)
    gap = np.ones((rows * b, cols * b), dtype=bool)
    gap[:h, :w] = (mask & GAP_BIT) != 0
    masked = np.zeros_like(gap)
    masked[:h, :w] = (mask & ~np.uint32(GAP_BIT)) != 0
    blocks = (rows, b, cols, b)
    all_gap = gap.reshape(blocks).all(axis=(1, 3))
    if kind == "pixel_mask":
        codes = np.where(masked.reshape(blocks).any(axis=(1, 3)), MASKED, 0).astype(np.uint8)
        return np.where(all_gap, GAP, codes).astype(np.uint8)
    padded = np.zeros(gap.shape, dtype=np.float64)
    padded[:h, :w] = values
    valid = ~gap & ~masked & np.isfinite(padded)
    n = valid.reshape(blocks).sum(axis=(1, 3))
    total = np.where(valid, padded, 0.0).reshape(blocks).sum(axis=(1, 3))
    mean = total / np.maximum(n, 1)
    span = hi - lo if hi > lo else 1.0
    levels = np.clip((mean - lo) / span * LEVELS, 0, LEVELS - 1).astype(np.uint8)
    codes = np.where(n > 0, levels, MASKED).astype(np.uint8)
    return np.where(all_gap, GAP, codes).astype(np.uint8)


def module_statistics(kind: str, values: np.ndarray, mask: np.ndarray, lo: float, hi: float) -> list[dict[str, Any]]:
    """Per module: where it is, and its statistics and histogram."""
    out = []
    for index, (y, x, h, w) in enumerate(module_regions((mask & GAP_BIT) != 0)):
        m = mask[y : y + h, x : x + w]
        entry: dict[str, Any] = {"index": index, "y0": y, "x0": x, "h": h, "w": w}
        inside = (m & GAP_BIT) == 0
        entry["masked_by_bit"] = {
            name: int(np.count_nonzero((m & np.uint32(1 << bit)) != 0)) for bit, name in MASK_BITS.items() if bit
        }
        entry["masked"] = int(np.count_nonzero(inside & (m != 0)))
        entry["pixels"] = int(np.count_nonzero(inside))
        if kind == "flatfield":
            v = values[y : y + h, x : x + w][inside & (m == 0)].astype(np.float64)
            v = v[np.isfinite(v)]
            counts, edges = np.histogram(v, bins=HISTOGRAM_BINS, range=(lo, hi))
            entry.update(
                mean=float(v.mean()) if v.size else None,
                std=float(v.std()) if v.size else None,
                min=float(v.min()) if v.size else None,
                max=float(v.max()) if v.size else None,
                histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
            )
        out.append(entry)
    return out


def describe(kind: str, values: np.ndarray, mask: np.ndarray, b: int | None) -> dict[str, Any]:
    """The whole answer of GET /ui/api/calibration/map (computed off the event loop)."""
    h, w = mask.shape
    if b is None:
        b = max(1, -(-max(h, w) // DEFAULT_MAP_PIXELS))
    valid = (mask == 0) & np.isfinite(values)
    if kind == "flatfield" and valid.any():
        lo, hi = (float(p) for p in np.percentile(values[valid], RANGE_PERCENTILES))
    else:
        lo, hi = 0.0, 1.0
    codes = binned_codes(kind, values, mask, b, lo, hi)
    return {
        "kind": kind,
        "shape": [h, w],
        "bin": b,
        "rows": int(codes.shape[0]),
        "cols": int(codes.shape[1]),
        "lo": lo,
        "hi": hi,
        "codes": base64.b64encode(codes.tobytes()).decode(),
        "mask_bits": {str(bit): name for bit, name in MASK_BITS.items()},
        "modules": module_statistics(kind, values, mask, lo, hi),
    }


async def _array(request: Request, key: str) -> np.ndarray:
    app = await request.app.state.apps.for_module("calibration")
    if app is None:
        raise LookupError("app-calibration is not available")
    value = from_proto((await app.get("1.8.0", "calibration", "config", key)).value)
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        raise LookupError(f"the calibration module has no {key} array")
    return value


@router.get("/ui/api/calibration/map", tags=["ui"], summary="The active calibration set's flatfield or mask, small")
async def calibration_map(request: Request) -> Response:
    try:
        kind = request.query_params.get("kind", "flatfield")
        if kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}, got {kind!r:.40}")
        raw_bin = request.query_params.get("bin")
        b = None
        if raw_bin is not None:
            try:
                b = int(raw_bin)
            except ValueError:
                raise BadRequest(f"bin must be an integer 1..{MAX_BIN}, got {raw_bin!r:.40}") from None
            if not 1 <= b <= MAX_BIN:
                raise BadRequest(f"bin must be 1..{MAX_BIN}, got {b}")
        mask = (await _array(request, "pixel_mask")).astype(np.uint32)
        values = (await _array(request, "flatfield")).astype(np.float32) if kind == "flatfield" else mask
        if values.shape != mask.shape:
            raise LookupError(f"flatfield {list(values.shape)} and pixel mask {list(mask.shape)} differ in shape")
        return json_response(await in_background(describe, kind, values, mask, b))
    except BadRequest as exc:
        return text_error(400, str(exc))
    except LookupError as exc:
        return text_error(404, str(exc))
    except grpc.aio.AioRpcError as exc:
        return app_error(exc)
