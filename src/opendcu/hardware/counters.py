"""Counter formats on the wire, and how the DAQ widens each of them to uint16 counts.

Every format reserves a top value: the counter stopped there (saturated). The DAQ widens every format to uint16
with that top value mapped to 0xFFFF, which is also what it writes into the pixels of lost packets, so the
pipeline sees one convention for all module types ("0xFFFF = no trustworthy count").

- "uint16": little-endian 16-bit counts; 0xFFFF = saturated.
- "uint12": 12-bit counts, two pixels in three bytes, little-endian: byte0 = a[7:0], byte1 = a[11:8] | b[3:0] << 4,
  byte2 = b[11:4]; 0xFFF = saturated.
- "float8": the 8-bit float (E3M5) of spec/codecs.md §4: codes 0-31 are exact, code e*32 + m (e >= 1) covers
  [(32 + m) << (e - 1), (33 + m) << (e - 1)); the module truncates; code 0xFF (>= 4032) = saturated. The DAQ
  decodes a code to the integer middle of its interval, lower + step // 2 (the exact count for steps 1).
"""

from __future__ import annotations

import numba
import numpy as np

SATURATED = 0xFFFF
FLOAT8_MAX = 4032  # value of the top code (63 << 6)
UINT12_TOP = 0xFFF

#: numeric ids of the formats inside compiled code
COUNTER_IDS = {"uint16": 0, "uint12": 1, "float8": 2}
#: pixels that share bytes and must travel together in one packet
PIXEL_GROUP = {"uint16": 1, "uint12": 2, "float8": 1}


def _float8_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Lower bound and step of every E3M5 code."""
    codes = np.arange(256)
    e, m = codes >> 5, codes & 31
    lower = np.where(e == 0, m, (32 + m) << np.maximum(e - 1, 0))
    step = np.where(e == 0, 1, 1 << np.maximum(e - 1, 0))
    return lower, step


_LOWER, _STEP = _float8_bounds()
#: code -> widened uint16 count (mid-interval), top code -> SATURATED
FLOAT8_DECODE = (_LOWER + _STEP // 2).astype(np.uint16)
FLOAT8_DECODE[0xFF] = SATURATED
#: count (0..4096) -> code, by truncation; counts above 4032 saturate
FLOAT8_ENCODE = (np.searchsorted(_LOWER, np.arange(4097), side="right") - 1).astype(np.uint8)


def float8_encode(counts: np.ndarray) -> np.ndarray:
    """Counts (any integer dtype; SATURATED or >= 4032 means saturated) -> E3M5 codes (truncating)."""
    c = np.asarray(counts).astype(np.int64)
    return FLOAT8_ENCODE[np.clip(c, 0, 4096)]


def float8_quantize(counts: np.ndarray) -> np.ndarray:
    """What a count becomes after a round trip through the 8-bit float (uint16, saturated -> SATURATED)."""
    return FLOAT8_DECODE[float8_encode(counts)]


def counter_top(counter: str) -> int:
    """Largest count the format carries before it reads as saturated."""
    return {"uint16": 0xFFFE, "uint12": UINT12_TOP - 1, "float8": FLOAT8_MAX - 1}[counter]


def encode_counts(values: np.ndarray, counter: str) -> np.ndarray:
    """Read-out values (uint16, SATURATED marks saturation) -> the wire bytes of the format (uint8, flat)."""
    v = np.ascontiguousarray(values, dtype=np.uint16).reshape(-1)
    if counter == "uint16":
        return v.astype("<u2", copy=False).view(np.uint8)
    if counter == "float8":
        return float8_encode(v)
    if counter == "uint12":
        if v.size % 2:
            raise ValueError("uint12 packing needs an even number of pixels")
        w = np.where(v == SATURATED, UINT12_TOP, np.minimum(v, UINT12_TOP)).astype(np.uint16)
        a, b = w[0::2], w[1::2]
        out = np.empty((a.size, 3), dtype=np.uint8)
        out[:, 0] = a & 0xFF
        out[:, 1] = (a >> 8) | ((b & 0xF) << 4)
        out[:, 2] = b >> 4
        return out.reshape(-1)
    raise ValueError(f"unknown counter format {counter!r}")


@numba.njit(nogil=True, cache=True)
def widen_into(
    counter_id: int, src: np.ndarray, src_start: int, nbytes: int, dst: np.ndarray, dst_start: int, lut: np.ndarray
) -> None:
    """Widen `nbytes` wire bytes src[src_start:] of one format into uint16 counts at dst[dst_start:] (dst: uint16)."""
    if counter_id == 0:
        for i in range(nbytes // 2):
            dst[dst_start + i] = src[src_start + 2 * i] | (np.uint16(src[src_start + 2 * i + 1]) << 8)
    elif counter_id == 2:
        for i in range(nbytes):
            dst[dst_start + i] = lut[src[src_start + i]]
    else:
        for k in range(nbytes // 3):
            b0 = np.uint16(src[src_start + 3 * k])
            b1 = np.uint16(src[src_start + 3 * k + 1])
            b2 = np.uint16(src[src_start + 3 * k + 2])
            a = b0 | ((b1 & 0xF) << 8)
            b = (b1 >> 4) | (b2 << 4)
            dst[dst_start + 2 * k] = SATURATED if a == UINT12_TOP else a
            dst[dst_start + 2 * k + 1] = SATURATED if b == UINT12_TOP else b


def decode_counts(wire: np.ndarray, counter: str, npixels: int) -> np.ndarray:
    """The DAQ's widening of a whole frame's wire bytes (reference for tests and tools)."""
    out = np.empty(npixels, dtype=np.uint16)
    wire = np.ascontiguousarray(wire, dtype=np.uint8)
    widen_into(COUNTER_IDS[counter], wire, 0, wire.size, out, 0, FLOAT8_DECODE)
    return out
