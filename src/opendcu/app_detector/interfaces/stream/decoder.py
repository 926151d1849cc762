"""Decoders of both streams, for tests, tools and users' receivers: V2 (CBOR) messages and V1 multipart messages.

V2 follows RFC 8746 and the DECTRIS tag-56500 description: tag 40/1040 multi-dimensional arrays (row/column
major), typed arrays 64..87, tag 56500 [algorithm, elem_size, bytes] decompressed with bitshuffle ("bslz4") or
imagecodecs' HDF5-LZ4 ("lz4"). Maps come back as plain dicts in wire order.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import bitshuffle
import cbor2
import imagecodecs
import numpy as np

from opendcu.app_detector.interfaces.stream.cbor import SELF_DESCRIBED

_CHUNK_HEADER = struct.Struct(">QI")


class StreamDecodeError(ValueError):
    """A message that is not a valid DECTRIS stream message."""


def typed_array_dtype(tag: int) -> np.dtype:
    """numpy dtype of an RFC 8746 typed-array tag (0b010_f_s_e_ll)."""
    if not 64 <= tag <= 87 or tag == 76:
        raise StreamDecodeError(f"unsupported typed-array tag {tag}")
    bits = tag - 64
    is_float, signed, little, ll = bits >> 4 & 1, bits >> 3 & 1, bits >> 2 & 1, bits & 3
    order = "<" if little else ">"
    if is_float:
        return np.dtype(f"{order}f{2 << ll}")
    size = 1 << ll
    return np.dtype(("|" if size == 1 else order) + ("i" if signed else "u") + str(size))


def decompress(algorithm: str, elem_size: int, payload: bytes) -> bytes:
    """The raw bytes of a tag-56500 payload (12-byte header framings of the HDF5 filters)."""
    raw = np.frombuffer(payload, dtype=np.uint8)
    total, block = _CHUNK_HEADER.unpack_from(raw, 0)
    if algorithm == "bslz4":
        if elem_size not in (1, 2, 4, 8) or total % elem_size:
            raise StreamDecodeError(f"bslz4 payload of {total} bytes with elem_size {elem_size}")
        dtype = np.dtype(f"u{elem_size}")
        return bitshuffle.decompress_lz4(raw[12:], (total // elem_size,), dtype, block // elem_size).tobytes()
    if algorithm == "lz4":
        return bytes(imagecodecs.lz4h5_decode(payload, out=total))
    raise StreamDecodeError(f"unknown compression algorithm {algorithm!r}")


def _tag_hook(*args: Any) -> Any:
    tag = args[0] if isinstance(args[0], cbor2.CBORTag) else args[1]  # cbor2 >= 6: (tag, immutable)
    if tag.tag == 56500:
        algorithm, elem_size, payload = tag.value
        return decompress(algorithm, elem_size, payload)
    if 64 <= tag.tag <= 87:
        return np.frombuffer(tag.value, dtype=typed_array_dtype(tag.tag))
    if tag.tag in (40, 1040):
        dims, array = tag.value
        return np.asarray(array).reshape(tuple(dims), order="C" if tag.tag == 40 else "F")
    return tag


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _keep_compressed(*args: Any) -> Any:
    tag = args[0] if isinstance(args[0], cbor2.CBORTag) else args[1]
    if tag.tag == 56500 or _holds_compressed(tag.value):  # the typed array around a compressed one stays too
        return tag
    return _tag_hook(*args)


def _holds_compressed(value: Any) -> bool:
    if isinstance(value, cbor2.CBORTag):
        return True
    return isinstance(value, (list, tuple)) and any(isinstance(v, cbor2.CBORTag) for v in value)


def decode_v2(raw: bytes | memoryview, decompress_arrays: bool = True) -> dict[str, Any]:
    """One V2 message as a dict (arrays decompressed to numpy); checks the prefix and that `type` is first.

    With `decompress_arrays=False` compressed arrays stay `CBORTag`s (the tag-56500 [algorithm, elem_size, bytes]
    and the array tags around it): a receiver that only counts or forwards images spends no CPU on them."""
    if bytes(raw[:3]) != SELF_DESCRIBED:
        raise StreamDecodeError("missing the self-described CBOR prefix d9 d9 f7")
    try:
        message = cbor2.loads(raw, tag_hook=_tag_hook if decompress_arrays else _keep_compressed)
    except (cbor2.CBORDecodeError, ValueError, struct.error) as exc:
        raise StreamDecodeError(f"invalid CBOR: {exc}") from exc
    if not isinstance(message, Mapping) or next(iter(message), None) != "type":
        raise StreamDecodeError("the message is not a map whose first key is 'type'")
    return _thaw(message)


def decode_v1(parts: list[bytes]) -> dict[str, Any]:
    """One V1 multipart message: the first part's JSON, plus `config`, `data` (image), `dconfig`, `appendix`."""
    head = json.loads(parts[0])
    htype = head.get("htype")
    if htype == "dimage-1.0":
        desc = json.loads(parts[1])
        w, h = desc["shape"]
        dtype = np.dtype(desc["type"]).newbyteorder("<")
        blob = np.frombuffer(parts[2], dtype=np.uint8)
        enc = desc["encoding"]
        if enc.startswith("bs") and "-lz4" in enc:
            data = np.frombuffer(decompress("bslz4", dtype.itemsize, blob), dtype)
        elif enc == "<":
            data = blob.view(dtype)
        else:
            raise StreamDecodeError(f"unsupported V1 encoding {enc!r}")
        head.update(data=data.reshape(h, w), image_desc=desc, dconfig=json.loads(parts[3]))
        if len(parts) > 4:
            head["appendix"] = parts[4]
    elif htype == "dheader-1.0":
        if len(parts) > 1:
            head["config"] = json.loads(parts[1])
        if len(parts) >= 8:
            for i, name in ((2, "flatfield"), (4, "pixel_mask"), (6, "countrate_table")):
                desc = json.loads(parts[i])
                shape = desc["shape"] if name == "countrate_table" else desc["shape"][::-1]
                head[name] = np.frombuffer(parts[i + 1], np.dtype(desc["type"]).newbyteorder("<")).reshape(shape)
        if len(parts) > 8:
            head["appendix"] = parts[8]
    return head
