"""A small CBOR (RFC 8949) writer that produces DECTRIS Stream V2 bytes exactly.

Why our own writer and not `cbor2.dumps`: the image message must splice the compressed chunk (already in shared
memory) into the message with a single copy, the map keys must keep the DECTRIS order, and every float must be
float64 (spec/streams.md §3.1). Integers, lengths and tags use the shortest head, as DECTRIS' messages do, so
the result is byte-identical to the golden messages. Values of unknown types (user_data can be any JSON) go
through cbor2.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
import numpy as np

SELF_DESCRIBED = b"\xd9\xd9\xf7"  # tag 55799
TAG_DATETIME = 0
TAG_MULTI_DIM_ARRAY = 40
TAG_DECTRIS_COMPRESSION = 56500

_UINT, _NEGINT, _BYTES, _TEXT, _ARRAY, _MAP, _TAG = range(7)


@dataclass(frozen=True)
class Tagged:
    """A CBOR tag around a value."""

    tag: int
    value: Any


def head(major: int, argument: int) -> bytes:
    """The initial byte(s) of a data item: major type + the shortest encoding of its argument."""
    if argument < 24:
        return bytes((major << 5 | argument,))
    if argument < 0x100:
        return bytes((major << 5 | 24, argument))
    if argument < 0x10000:
        return bytes((major << 5 | 25,)) + argument.to_bytes(2, "big")
    if argument < 0x100000000:
        return bytes((major << 5 | 26,)) + argument.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + argument.to_bytes(8, "big")


def typed_array_tag(dtype: np.dtype) -> int:
    """RFC 8746 typed-array tag of a numpy dtype: 0b010_f_s_e_ll (little-endian for multi-byte types)."""
    dtype = np.dtype(dtype)
    size = dtype.itemsize
    if dtype.kind == "f":
        ll = {2: 0, 4: 1, 8: 2, 16: 3}[size]
        return 64 | 16 | (4 if dtype.byteorder != ">" else 0) | ll
    if dtype.kind not in "ui":
        raise TypeError(f"no typed-array tag for {dtype}")
    ll = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    little = 4 if size > 1 and dtype.byteorder != ">" else 0
    return 64 | (8 if dtype.kind == "i" else 0) | little | ll


def encode_into(out: list[bytes | memoryview], value: Any) -> None:
    """Append the encoding of `value` to `out` (byte-like pieces, joined later)."""
    if value is None:
        out.append(b"\xf6")
    elif isinstance(value, (bool, np.bool_)):
        out.append(b"\xf5" if value else b"\xf4")
    elif isinstance(value, (int, np.integer)):
        v = int(value)
        out.append(head(_UINT, v) if v >= 0 else head(_NEGINT, -1 - v))
    elif isinstance(value, (float, np.floating)):
        out.append(b"\xfb" + struct.pack(">d", float(value)))
    elif isinstance(value, str):
        raw = value.encode()
        out.append(head(_TEXT, len(raw)))
        out.append(raw)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out.append(head(_BYTES, memoryview(value).nbytes))
        out.append(value)
    elif isinstance(value, Tagged):
        out.append(head(_TAG, value.tag))
        encode_into(out, value.value)
    elif isinstance(value, np.ndarray):
        encode_into(out, multi_dim_array(value))
    elif isinstance(value, Mapping):
        out.append(head(_MAP, len(value)))
        for k, v in value.items():
            encode_into(out, k)
            encode_into(out, v)
    elif isinstance(value, (list, tuple)):
        out.append(head(_ARRAY, len(value)))
        for v in value:
            encode_into(out, v)
    elif isinstance(value, dt.datetime):
        encode_into(out, Tagged(TAG_DATETIME, value.isoformat(timespec="milliseconds")))
    else:
        out.append(cbor2.dumps(value))


def typed_array(array: np.ndarray) -> Tagged:
    """A 1-D RFC 8746 typed array (little-endian)."""
    a = np.ascontiguousarray(array)
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return Tagged(typed_array_tag(a.dtype), memoryview(a).cast("B"))


def multi_dim_array(array: np.ndarray) -> Tagged:
    """tag 40 [[dims], typed array] (row-major); 1-D arrays become a bare typed array."""
    if array.ndim == 1:
        return typed_array(array)
    return Tagged(TAG_MULTI_DIM_ARRAY, [list(array.shape), typed_array(array.reshape(-1))])


def compressed_array(shape: tuple[int, int], dtype: np.dtype, algorithm: str | None, payload: Any) -> Tagged:
    """tag 40 [[h, w], tagNN(tag 56500 [algorithm, elem_size, payload])]; no tag 56500 if uncompressed.

    elem_size is the bitshuffle element size for "bslz4" and 0 (a placeholder) for "lz4" (spec §3.1).
    """
    dtype = np.dtype(dtype)
    if isinstance(payload, np.ndarray):  # a chunk in shared memory: its bytes, not an array of uint8
        payload = memoryview(np.ascontiguousarray(payload)).cast("B")
    if algorithm is None:
        inner: Any = payload
    else:
        elem_size = dtype.itemsize if algorithm == "bslz4" else 0
        inner = Tagged(TAG_DECTRIS_COMPRESSION, [algorithm, elem_size, payload])
    return Tagged(TAG_MULTI_DIM_ARRAY, [list(shape), Tagged(typed_array_tag(dtype.newbyteorder("<")), inner)])


def dumps(message: Mapping[str, Any]) -> bytes:
    """One Stream V2 message: self-described CBOR prefix + the map, keys in the given order."""
    out: list[bytes | memoryview] = [SELF_DESCRIBED]
    encode_into(out, message)
    return b"".join(out)
