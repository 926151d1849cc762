"""The 8-bit floating-point counter E3M5 (spec/codecs.md §4, our reading of the seed's figures).

A code holds a 3-bit exponent e and a 5-bit mantissa m:
- e = 0: value m (0..31, exact);
- e >= 1: value (32 + m) * 2^(e-1), so every count up to 63 is exact and the step doubles each octave
  (2, 4, ... 64 on [2048, 4032)).

Encoding truncates (drops the low bits, as counter hardware does). The top code 0xFF (= 4032) means "4032 or
more", i.e. saturated, and is also what 8-bit images carry for masked and error pixels (2^8 - 1), so a reader
treats 0xFF as invalid. Two decodings are offered: the interval's lower end (`decode`), and its middle
(`decode_unbiased`), which removes the truncation bias (for integer counts: lower + (step - 1) / 2).
"""

from __future__ import annotations

import numpy as np

#: the value of the top code; counts >= this saturate
FLOAT8_MAX = 4032
TOP_CODE = 0xFF


def _code_values() -> np.ndarray:
    codes = np.arange(256)
    e, m = codes >> 5, codes & 31
    return np.where(e == 0, m, (32 + m) << np.maximum(e - 1, 0)).astype(np.int64)


_LOWER = _code_values()
_STEP = np.where(np.arange(256) >> 5 <= 1, 1, 1 << np.maximum((np.arange(256) >> 5) - 1, 0))

#: code -> lowest count it stands for
DECODE_TABLE = _LOWER.astype(np.uint32)
#: code -> mean of the integer counts it stands for (unbiased under truncation); 0xFF stays 4032
DECODE_UNBIASED_TABLE = np.where(np.arange(256) == TOP_CODE, FLOAT8_MAX, _LOWER + (_STEP - 1) / 2).astype(np.float32)
#: code -> the integer count nearest the middle of its interval (uint16), 0xFF -> 0xFFFF (invalid): for integer
#: image kernels (live analysis) that need counts, not codes
DECODE_NEAREST_TABLE = np.where(np.arange(256) == TOP_CODE, 0xFFFF, _LOWER + _STEP // 2).astype(np.uint16)
#: count (clipped to FLOAT8_MAX) -> code; the fused pipeline kernel indexes it with min(count, FLOAT8_MAX)
ENCODE_TABLE = (np.searchsorted(_LOWER, np.arange(FLOAT8_MAX + 1), side="right") - 1).astype(np.uint8)
#: how files and stream headers describe the decode table they carry (DECODE_UNBIASED_TABLE)
DECODE_DESCRIPTION = {"encoding": "E3M5", "decode": "interval_mean", "invalid_code": TOP_CODE}

for _table in (DECODE_TABLE, DECODE_UNBIASED_TABLE, DECODE_NEAREST_TABLE, ENCODE_TABLE):
    _table.setflags(write=False)


class Float8E3M5:
    """Array codec: integer counts -> E3M5 codes (uint8). The input's top value (2^bits - 1: masked, error,
    saturated) becomes the top code."""

    name = "float8_e3m5"

    def encode(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        invalid = image == np.iinfo(image.dtype).max
        codes = ENCODE_TABLE[np.minimum(image, FLOAT8_MAX)]
        codes[invalid] = TOP_CODE
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> the lowest count of each code's interval (uint32)."""
        return DECODE_TABLE[np.asarray(codes, dtype=np.uint8)]

    def decode_unbiased(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> the mean count of each code's interval (float32), unbiased for truncated counts."""
        return DECODE_UNBIASED_TABLE[np.asarray(codes, dtype=np.uint8)]

    def encoded_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return shape

    def encoded_dtype(self, dtype) -> np.dtype:
        return np.dtype(np.uint8)
