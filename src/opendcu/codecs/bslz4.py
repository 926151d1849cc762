"""bitshuffle-LZ4 in the exact HDF5-filter (id 32008) framing that EIGER2 detectors emit.

Chunk layout (spec/codecs.md §1): u64 BE uncompressed bytes, u32 BE block bytes (8192), then the LZ4 blocks of
the bit-transposed data as produced by `bitshuffle.compress_lz4`. That combination is byte-identical to the
DECTRIS bytes in shared/golden.
"""

from __future__ import annotations

import struct

import bitshuffle
import numpy as np

from opendcu.codecs.base import Hdf5Filter

BSLZ4_FILTER_ID = 32008
BLOCK_BYTES = 8192
#: cd_values given to H5Pset_filter: default block size, LZ4. The filter's set_local (hdf5plugin) prepends its
#: version and the element size, so files store (0, 4, elem_size, 0, 2), the full 5-value form readers need.
_CD_DEFAULT_BLOCK, _CD_LZ4 = 0, 2
_HEADER = struct.Struct(">QI")


def block_elems(itemsize: int) -> int:
    """bitshuffle's default block size in elements (8192 bytes worth, a multiple of 8)."""
    return max(128, (BLOCK_BYTES // itemsize) // 8 * 8)


class Bslz4Codec:
    """The DECTRIS `bslz4` compression."""

    name = "bslz4"

    def encode(self, image: np.ndarray) -> np.ndarray:
        """Return the chunk as a uint8 array: 12-byte header + bitshuffle-LZ4 blocks."""
        flat = np.ascontiguousarray(image).reshape(-1)
        block = block_elems(flat.dtype.itemsize)
        body = bitshuffle.compress_lz4(flat, block)
        out = np.empty(_HEADER.size + body.nbytes, dtype=np.uint8)
        _HEADER.pack_into(out, 0, flat.nbytes, block * flat.dtype.itemsize)
        out[_HEADER.size :] = body
        return out

    def decode(self, payload, dtype, shape) -> np.ndarray:
        buf = np.frombuffer(payload, dtype=np.uint8)
        if buf.size < _HEADER.size:
            raise ValueError(f"bslz4 chunk of {buf.size} bytes is shorter than its 12-byte header")
        nbytes, block = _HEADER.unpack_from(buf, 0)
        dtype = np.dtype(dtype)
        n = nbytes // dtype.itemsize
        if n != int(np.prod(shape)):
            raise ValueError(f"bslz4 chunk holds {nbytes} bytes, expected {np.prod(shape)} x {dtype.itemsize}")
        if block % (8 * dtype.itemsize):
            raise ValueError(f"bslz4 block size {block} is not a multiple of 8 elements of {dtype.itemsize} bytes")
        try:
            flat = bitshuffle.decompress_lz4(buf[_HEADER.size :], (n,), dtype, block // dtype.itemsize)
        except RuntimeError as exc:  # bitshuffle reports corrupt or truncated streams this way
            raise ValueError(f"corrupt bslz4 chunk: {exc}") from exc
        return flat.reshape(shape)

    def hdf5_filter(self, dtype) -> Hdf5Filter:
        return Hdf5Filter(BSLZ4_FILTER_ID, (_CD_DEFAULT_BLOCK, _CD_LZ4))

    def stream_elem_size(self, dtype) -> int:
        return np.dtype(dtype).itemsize
