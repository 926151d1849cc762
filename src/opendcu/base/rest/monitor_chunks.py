"""Decoding a monitor image's compressed chunk in the base system, for the Web-UI's live view.

The base asks app-detector for the chunk as the pipeline made it (`MonitorImageRequest.chunk`), not for a TIFF: a
4M image is 1-4 MB of bslz4 instead of 17 MB of pixels, and app-detector spends no time on it (a TIFF fetch cost
it ~50 ms of CPU per 4M image, under its GIL, next to the data path). The formats are those of
`opendcu.codecs` (spec/codecs.md §1-2), decoded here with the same libraries: the base system talks to the apps
over gRPC only and imports none of their packages. `tests/test_monitor_chunks.py` checks this decoder against
`opendcu.codecs` for every compression and bit depth.
"""

from __future__ import annotations

import struct

import bitshuffle
import imagecodecs
import numpy as np

_BSLZ4_HEADER = struct.Struct(">QI")  # uncompressed bytes, block bytes


class ChunkError(ValueError):
    """A chunk that does not decode to the image it claims to be."""


def decode_chunk(chunk: bytes, compression: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The pixels of one monitor chunk."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = np.frombuffer(chunk, dtype=np.uint8)
    if compression == "none":
        raw = buf
    elif compression == "bslz4":
        if buf.size < _BSLZ4_HEADER.size:
            raise ChunkError(f"bslz4 chunk of {buf.size} bytes is shorter than its header")
        nbytes, block = _BSLZ4_HEADER.unpack_from(chunk, 0)
        if nbytes != n * dt.itemsize or block % (8 * dt.itemsize):
            raise ChunkError(f"bslz4 chunk of {nbytes} bytes in blocks of {block} is no {list(shape)} {dt} image")
        try:
            raw = bitshuffle.decompress_lz4(buf[_BSLZ4_HEADER.size :], (n,), dt, block // dt.itemsize).view(np.uint8)
        except RuntimeError as exc:
            raise ChunkError(f"corrupt bslz4 chunk: {exc}") from exc
    elif compression == "lz4":
        try:
            raw = np.frombuffer(imagecodecs.lz4h5_decode(chunk), dtype=np.uint8)
        except imagecodecs.Lz4h5Error as exc:
            raise ChunkError(f"corrupt lz4 chunk: {exc}") from exc
    else:
        raise ChunkError(f"unknown compression {compression!r}")
    if raw.size != n * dt.itemsize:
        raise ChunkError(f"{compression} chunk holds {raw.size} bytes, expected {n} x {dt.itemsize}")
    return raw.view(dt).reshape(shape)
