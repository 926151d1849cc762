"""Chunk encoders that compiled code can call: a pipeline worker compresses a whole batch of images in one numba
call instead of one Python call per image (at the fast module's rates that call costs more than the compression).

bslz4 calls bitshuffle's own C function, the one `Bslz4Codec.encode` reaches through the bitshuffle package, so
the chunks are byte-identical (tested). Its address is registered with LLVM under a name of ours (the package's
extension is loaded privately, and another library may carry a `bshuf_compress_lz4` of a different version), so
the kernels that call it can be cached on disk and are resolved again when they are loaded.
"""

from __future__ import annotations

import ctypes

import bitshuffle.ext
import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from opendcu.codecs.bslz4 import block_elems

#: what `encode_chunk` makes: the image's bytes (`none`) or the HDF5 32008 bitshuffle-LZ4 chunk (`bslz4`)
CHUNK_NONE, CHUNK_BSLZ4 = 0, 1
#: codecs with a compiled encoder, by SIMPLON `compression` value
CHUNK_KINDS = {"none": CHUNK_NONE, "bslz4": CHUNK_BSLZ4}
BSLZ4_HEADER_BYTES = 12

_SYMBOL = "opendcu_bshuf_compress_lz4"
_library = ctypes.CDLL(bitshuffle.ext.__file__)
_library.bshuf_compress_lz4_bound.restype = ctypes.c_size_t
_library.bshuf_compress_lz4_bound.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
llvm.add_symbol(_SYMBOL, ctypes.cast(_library.bshuf_compress_lz4, ctypes.c_void_p).value)


@intrinsic
def _bshuf_compress_lz4(typingctx, src, dst, size, elem_size, block_size):
    """int64_t bshuf_compress_lz4(const void *in, void *out, size_t size, size_t elem_size, size_t block_size);
    pointers as int64 (`array.ctypes.data`), as for the libc calls of `hardware/udp_io.py`."""
    sig = types.int64(types.int64, types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64] * 5), _SYMBOL)
        return builder.call(fn, args)

    return sig, codegen


def chunk_bound(kind: int, n_elems: int, itemsize: int) -> int:
    """The most bytes `encode_chunk` writes for an image of `n_elems` elements of `itemsize` bytes."""
    if kind == CHUNK_NONE:
        return n_elems * itemsize
    return BSLZ4_HEADER_BYTES + int(_library.bshuf_compress_lz4_bound(n_elems, itemsize, block_elems(itemsize)))


@njit(cache=True, nogil=True)
def _put_be(out, offset, value, nbytes):
    for i in range(nbytes):
        out[offset + i] = (value >> (8 * (nbytes - 1 - i))) & 0xFF


@njit(cache=True, nogil=True)
def encode_chunk(image, kind, block, out):
    """The chunk of the C-contiguous `image` into the uint8 array `out` (room for `chunk_bound`); `block`: the
    bitshuffle block in elements (`block_elems`). Returns the chunk's size in bytes, or -1 if it failed."""
    flat = image.reshape(-1)
    nbytes = flat.size * flat.itemsize
    if kind == CHUNK_NONE:
        if nbytes > out.size:
            return -1
        out[:nbytes] = flat.view(np.uint8)
        return nbytes
    # HDF5 32008 framing: u64 BE bytes of the image, u32 BE bytes per block, then the LZ4 blocks
    _put_be(out, 0, nbytes, 8)
    _put_be(out, 8, block * flat.itemsize, 4)
    n = _bshuf_compress_lz4(flat.ctypes.data, out.ctypes.data + BSLZ4_HEADER_BYTES, flat.size, flat.itemsize, block)
    if n < 0:
        return -1
    return BSLZ4_HEADER_BYTES + n
