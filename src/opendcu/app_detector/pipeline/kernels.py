"""The fused correction pass (numba): raw sub-frames -> final image, one module row at a time.

Per module row, in the seed's order:
1. count-rate correction: `lut[raw]` (one table per series; the identity with the correction off);
2. placement: contiguous runs of normal pixels, double pixels split (ceil/floor halves), errors copied;
3. summation of the sub-frames into 64 bit, an invalid sub-frame carried as a flag bit;
4. virtual-pixel correction: each double pixel's total re-split by interpolation (`VirtualPixelPairs`);
5. flatfield: floor(v * f + 1/2) in double precision;
6. pixel mask: masked pixels (a per-row list; gaps are pre-filled once per series) get the masked value;
7. bit depth: values above `max_valid` and flagged values become the error value 2^bits - 1; or the E3M5 code.
With 2x2 binning, steps 1-6 write a uint32 staging image with sentinels, and `bin_and_emit` sums the blocks.

Fast path: with one sub-frame, a row's runs of normal pixels go straight from the raw row to the output in
vectorised loops (the table is the identity below its `identity_limit`); only values at or above that limit and
the double pixels go through the table and the small row buffer `val`.

Values in `val` are uint32 where SATURATED (0xFFFFFFFF) flags an invalid pixel (lost packet, saturated counter or
count rate). In the staging image MASKED (0xFFFFFFFE) additionally marks masked pixels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from opendcu.codecs.compiled import encode_chunk

SATURATED = np.uint32(0xFFFFFFFF)
MASKED = np.uint32(0xFFFFFFFE)
#: set in a 64-bit sub-frame sum once any sub-frame was invalid (valid sums stay far below it)
_SUM_FLAG = np.uint64(1) << np.uint64(56)
FLOAT8_MAX = 4032

#: what `correct_frame` writes
EMIT_INTEGER, EMIT_FLOAT8, EMIT_STAGING = 0, 1, 2


@njit(cache=True, nogil=True, inline="always")
def _halve(v, part):
    """The split rule for one value: first half ceil(v/2), second floor(v/2); SATURATED stays."""
    if v == SATURATED or part == 0:
        return v
    if part == 1:
        return v - v // 2
    return v // 2


@njit(cache=True, nogil=True, inline="always")
def _lookup_row(raw_row, row_part, lut, col_src, col_part, val):
    """Count-rate correction (table lookup) + placement of one raw sub-frame row into the virtual-pixel row."""
    for c in range(val.size):
        val[c] = _halve(_halve(lut[raw_row[col_src[c]]], col_part[c]), row_part)


@njit(cache=True, nogil=True, inline="always")
def _add(acc, c, v, first):
    """Step 3 for one value: start or extend the 64-bit sum; an invalid value sets the flag bit for good."""
    base = np.uint64(0) if first else acc[c]
    acc[c] = (base | _SUM_FLAG) if v == SATURATED else base + np.uint64(v)


@njit(cache=True, nogil=True, inline="always")
def _accumulate_row(raw_row, lut, identity_limit, col_runs, col_splits, first, acc):
    """Steps 1-3 for one sub-frame row: the runs are summed straight from the raw row (vectorised, the table
    taken as the identity), values at or above the table's identity limit are then corrected through it;
    double pixels are split and added one by one."""
    top = 0
    for k in range(col_runs.shape[0]):
        v0, r0, n = col_runs[k, 0], col_runs[k, 1], col_runs[k, 2]
        src, dst = raw_row[r0 : r0 + n], acc[v0 : v0 + n]
        if first:
            for i in range(n):
                dst[i] = src[i]
        else:
            for i in range(n):
                dst[i] += src[i]
        for i in range(n):
            top = max(top, src[i])
    if top >= identity_limit:
        for k in range(col_runs.shape[0]):
            v0, r0, n = col_runs[k, 0], col_runs[k, 1], col_runs[k, 2]
            for i in range(n):
                x = raw_row[r0 + i]
                if x >= identity_limit:
                    acc[v0 + i] -= np.uint64(x)
                    _add(acc, v0 + i, lut[x], False)
    for k in range(col_splits.shape[0]):
        _add(acc, col_splits[k, 0], _halve(lut[raw_row[col_splits[k, 1]]], col_splits[k, 2]), first)


@njit(cache=True, nogil=True, inline="always")
def _interpolate_pairs(val, pairs, t):
    """Virtual-pixel correction of one row: re-split each double pixel's total by linear interpolation."""
    for k in range(pairs.shape[0]):
        a, b, left, right = pairs[k, 0], pairs[k, 1], pairs[k, 2], pairs[k, 3]
        va, vb = val[a], val[b]
        if va == SATURATED or vb == SATURATED:
            continue
        total = np.uint64(va) + np.uint64(vb)
        first = total - total // np.uint64(2)
        if left >= 0 and right >= 0 and val[left] != SATURATED and val[right] != SATURATED:
            vl, vr = np.float64(val[left]), np.float64(val[right])
            w1 = vl * (1.0 - t[k, 0]) + vr * t[k, 0]
            w2 = vl * (1.0 - t[k, 1]) + vr * t[k, 1]
            if w1 + w2 > 0.0:
                first = np.uint64(np.floor(np.float64(total) * w1 / (w1 + w2) + 0.5))
        val[a] = np.uint32(first)
        val[b] = np.uint32(total - first)


@njit(cache=True, nogil=True, inline="always")
def e3m5_code(count):
    """The E3M5 code of a count (opendcu.codecs.float8), branch-free so that loops over it vectorise (faster
    than a gather from the codec's table): exponent e = number of octaves from 32 up, mantissa = the 5 bits below
    the leading one."""
    n = min(np.int64(count), FLOAT8_MAX)
    e = (
        np.int64(n >= 32)
        + np.int64(n >= 64)
        + np.int64(n >= 128)
        + np.int64(n >= 256)
        + np.int64(n >= 512)
        + np.int64(n >= 1024)
        + np.int64(n >= 2048)
    )
    code = n if e == 0 else e * 32 + (n >> max(e - 1, 0)) - 32
    return 255 if n >= FLOAT8_MAX else code


@njit(cache=True, nogil=True, inline="always")
def _emit_one(x, gain, flatfield, max_valid, error_value, mode):
    """Steps 5 and 7 for one value: flatfield floor(v * f + 1/2) in double precision, saturation above
    `max_valid`, then the output encoding. x == SATURATED flags an invalid value."""
    y = np.floor(np.float64(x) * np.float64(gain) + 0.5) if flatfield else np.float64(x)
    bad = x == SATURATED or y > max_valid
    if mode == EMIT_FLOAT8:
        return np.float64(error_value) if bad else np.float64(e3m5_code(min(y, FLOAT8_MAX)))
    if mode == EMIT_STAGING:
        return np.float64(SATURATED) if bad else y
    return np.float64(error_value) if bad else y


@njit(cache=True, nogil=True, inline="always")
def _emit(src, gain, flatfield, max_valid, error_value, mode, dst):
    """_emit_one over a run. When every valid value fits in int32 (all but extreme 32-bit sums) the loop works
    in int32, which AVX2 vectorises (float64 -> unsigned conversions do not); the switches are loop-invariant."""
    if max_valid >= 2.0**31:
        for i in range(src.size):
            dst[i] = _emit_one(src[i], gain[i], flatfield, max_valid, error_value, mode)
        return
    limit = np.int32(max_valid)
    err = np.int32(SATURATED if mode == EMIT_STAGING else error_value)
    # four plain loops (flatfield or not, E3M5 code or integer) rather than tests inside one loop
    if flatfield and mode == EMIT_FLOAT8:
        for i in range(src.size):
            y = _flatfield_int32(src[i], gain[i])
            dst[i] = err if (src[i] == SATURATED or y > limit) else e3m5_code(y)
    elif flatfield:
        for i in range(src.size):
            y = _flatfield_int32(src[i], gain[i])
            dst[i] = err if (src[i] == SATURATED or y > limit) else y
    elif mode == EMIT_FLOAT8:
        for i in range(src.size):
            y = _int32(src[i])
            dst[i] = err if (src[i] == SATURATED or y > limit) else e3m5_code(y)
    else:
        for i in range(src.size):
            y = _int32(src[i])
            dst[i] = err if (src[i] == SATURATED or y > limit) else y


@njit(cache=True, nogil=True, inline="always")
def _flatfield_int32(x, gain):
    """floor(x * f + 1/2) in double precision, clipped to int32 (only values below 2^31 are valid here)."""
    return np.int32(min(np.floor(np.float64(x) * np.float64(gain) + 0.5), 2147483647.0))


@njit(cache=True, nogil=True, inline="always")
def _int32(x):
    return np.int32(min(np.uint32(x), np.uint32(2147483647)))


@njit(cache=True, nogil=True, inline="always")
def _emit_direct(src, gain, flatfield, max_valid, error_value, mode, dst):
    """_emit of raw values taken as they are (no lookup); returns the run's maximum, found in the same loop."""
    top = src[0]
    for i in range(src.size):
        top = max(top, src[i])
    _emit(src, gain, flatfield, max_valid, error_value, mode, dst)
    return top


@njit(cache=True, nogil=True, inline="always")
def _direct_row(
    raw_row,
    gain_row,
    lut,
    identity_limit,
    col_runs,
    col_splits,
    col_src,
    interpolate,
    pairs,
    pair_t,
    val,
    flatfield,
    max_valid,
    error_value,
    mode,
    out_row,
):
    """One sub-frame row without split rows: the contiguous runs go straight from the raw row to the output,
    as if the count-rate table were the identity; the few values at or above its identity limit (large counts,
    the error value 0xFFFF) are then redone through the table. Double pixels always pass through `val`."""
    top = 0
    for k in range(col_runs.shape[0]):
        v0, r0, n = col_runs[k, 0], col_runs[k, 1], col_runs[k, 2]
        top = max(
            top,
            _emit_direct(
                raw_row[r0 : r0 + n],
                gain_row[v0 : v0 + n],
                flatfield,
                max_valid,
                error_value,
                mode,
                out_row[v0 : v0 + n],
            ),
        )
    if top >= identity_limit:
        for k in range(col_runs.shape[0]):
            v0, r0, n = col_runs[k, 0], col_runs[k, 1], col_runs[k, 2]
            for i in range(n):
                x = raw_row[r0 + i]
                if x >= identity_limit:
                    out_row[v0 + i] = _emit_one(lut[x], gain_row[v0 + i], flatfield, max_valid, error_value, mode)
    for k in range(col_splits.shape[0]):
        val[col_splits[k, 0]] = _halve(lut[raw_row[col_splits[k, 1]]], col_splits[k, 2])
    if interpolate:
        for k in range(pairs.shape[0]):
            for j in (2, 3):  # the normal neighbours the interpolation reads
                if pairs[k, j] >= 0:
                    val[pairs[k, j]] = lut[raw_row[col_src[pairs[k, j]]]]
        _interpolate_pairs(val, pairs, pair_t)
    for k in range(col_splits.shape[0]):
        c = col_splits[k, 0]
        out_row[c] = _emit_one(val[c], gain_row[c], flatfield, max_valid, error_value, mode)


@njit(cache=True, nogil=True)
def correct_frame(
    raw,
    geometry,
    lut,
    identity_limit,
    interpolate,
    gain,
    flatfield,
    mask_rows,
    mask_cols,
    masked_value,
    max_valid,
    error_value,
    mode,
    out,
):
    """Every correction of one frame, fused. `raw`: uint16 [nsub, n_modules, rows, cols]; `out`: the image
    (uint8/16/32, gaps pre-filled) or, for EMIT_STAGING, the uint32 staging image."""
    modules, origins, col_runs, col_splits, col_src, col_part, row_src, row_part, pairs, pair_t = geometry
    nsub = raw.shape[0]
    width = col_src.size
    val = np.empty(width, dtype=np.uint32)
    acc = np.empty(width, dtype=np.uint64)
    for k in range(modules.size):
        module = modules[k]
        r0, c0 = origins[k, 0], origins[k, 1]
        for r in range(row_src.size):
            rs, rp = row_src[r], row_part[r]
            row = r0 + r
            out_row = out[row, c0 : c0 + width]
            gain_row = gain[row, c0 : c0 + width]
            if nsub == 1 and rp == 0:
                _direct_row(
                    raw[0, module, rs],
                    gain_row,
                    lut,
                    identity_limit,
                    col_runs,
                    col_splits,
                    col_src,
                    interpolate,
                    pairs,
                    pair_t,
                    val,
                    flatfield,
                    max_valid,
                    error_value,
                    mode,
                    out_row,
                )
            else:
                for sub in range(nsub):
                    if rp == 0:
                        _accumulate_row(raw[sub, module, rs], lut, identity_limit, col_runs, col_splits, sub == 0, acc)
                    else:  # a double-height row: every value is halved, through the general lookup
                        _lookup_row(raw[sub, module, rs], rp, lut, col_src, col_part, val)
                        for c in range(width):
                            _add(acc, c, val[c], sub == 0)
                for c in range(width):
                    val[c] = SATURATED if acc[c] >= SATURATED else np.uint32(acc[c])
                if interpolate:
                    _interpolate_pairs(val, pairs, pair_t)
                _emit(val, gain_row, flatfield, max_valid, error_value, mode, out_row)
            for i in range(mask_rows[row], mask_rows[row + 1]):
                col = mask_cols[i] - c0
                if 0 <= col < width:
                    out_row[col] = masked_value


@njit(cache=True, nogil=True)
def bin_and_emit(staging, max_valid, error_value, masked_value, mode, out):
    """2x2 binning of the staging image: a block with a masked pixel is masked, else with an invalid pixel
    invalid (error value), else its sum, saturated above `max_valid`, as integer or E3M5 code."""
    h, w = out.shape
    for i in range(h):
        top = staging[2 * i]
        bottom = staging[2 * i + 1]
        for j in range(w):
            a, b, c, d = top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]
            masked = a == MASKED or b == MASKED or c == MASKED or d == MASKED
            invalid = a >= MASKED or b >= MASKED or c >= MASKED or d >= MASKED
            total = np.uint64(a) + np.uint64(b) + np.uint64(c) + np.uint64(d)
            bad = invalid or total > max_valid
            value = e3m5_code(min(total, np.uint64(FLOAT8_MAX))) if mode == EMIT_FLOAT8 else total
            out[i, j] = masked_value if masked else (error_value if bad else value)


@njit(cache=True, nogil=True)
def process_frames(raw_buf, slots, raw_shape, frame, binning, image, chunk, out_buf, out_slots, sizes):
    """A batch of raw frames -> chunks in their output slots, in one call (no Python per frame).

    raw_buf / out_buf: the raw and compressed-image rings ([slots, stride] uint8); slots / out_slots: each frame's
    raw and output slot; raw_shape: (nsub, n_modules, rows, cols). frame: `correct_frame`'s arguments after
    `raw`, its target last; binning: (applied, max_valid, error_value, masked_value, mode) of `bin_and_emit` into
    `image`; chunk: (kind, block) of `encode_chunk` (output slots hold `chunk_bound`). sizes: each chunk's
    bytes, -1 for a frame that failed."""
    nsub, n_modules, rows, cols = raw_shape
    raw_bytes = nsub * n_modules * rows * cols * 2
    target = frame[12]
    for i in range(slots.size):
        raw = raw_buf[slots[i], :raw_bytes].view(np.uint16).reshape((nsub, n_modules, rows, cols))
        correct_frame(
            raw,
            frame[0],
            frame[1],
            frame[2],
            frame[3],
            frame[4],
            frame[5],
            frame[6],
            frame[7],
            frame[8],
            frame[9],
            frame[10],
            frame[11],
            target,
        )
        if binning[0]:
            bin_and_emit(target, binning[1], binning[2], binning[3], binning[4], image)
        sizes[i] = encode_chunk(image, chunk[0], chunk[1], out_buf[out_slots[i]])
