"""Conversion between Python/JSON values and the typed protobuf `Value`."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from opendcu.proto import control_pb2 as pb

INT64_MIN, INT64_MAX, UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1


def array_to_proto(array: np.ndarray) -> pb.NdArray:
    """numpy array -> NdArray (little-endian, C order)."""
    a = np.ascontiguousarray(array)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return pb.NdArray(dtype=a.dtype.str, shape=list(a.shape), data=a.tobytes())


def array_from_proto(msg: pb.NdArray) -> np.ndarray:
    """NdArray -> numpy array (read-only view of the message bytes)."""
    return np.frombuffer(msg.data, dtype=np.dtype(msg.dtype)).reshape(tuple(msg.shape))


def to_proto(value: Any, value_type: str | None = None) -> pb.Value:
    """Python value -> Value. `value_type` ("uint", "int", "float", ...) picks the integer flavour."""
    if value is None:
        return pb.Value(null=True)
    if isinstance(value, (bool, np.bool_)):
        return pb.Value(bool_value=bool(value))
    if isinstance(value, (int, np.integer)):
        if value_type == "float":
            return pb.Value(float_value=float(value))
        if value_type == "uint" and 0 <= value <= UINT64_MAX:
            return pb.Value(uint_value=int(value))
        if INT64_MIN <= value <= INT64_MAX:
            return pb.Value(int_value=int(value))
        if 0 <= value <= UINT64_MAX:
            return pb.Value(uint_value=int(value))
        return pb.Value(json=json.dumps(int(value)))  # beyond 64 bits: the receiver refuses it with a clear text
    if isinstance(value, (float, np.floating)):
        return pb.Value(float_value=float(value))
    if isinstance(value, str):
        return pb.Value(string_value=value)
    if isinstance(value, np.ndarray):
        return pb.Value(array=array_to_proto(value))
    if isinstance(value, (list, tuple)):
        items = list(value)
        if all(isinstance(i, str) for i in items):
            return pb.Value(string_list=pb.StringList(items=items))
        if (
            all(
                isinstance(i, (int, np.integer)) and not isinstance(i, bool) and INT64_MIN <= i <= INT64_MAX
                for i in items
            )
            and value_type != "float"
        ):
            return pb.Value(int_list=pb.IntList(items=[int(i) for i in items]))
        if all(
            isinstance(i, (float, np.floating))
            or (isinstance(i, (int, np.integer)) and not isinstance(i, bool) and INT64_MIN <= i <= INT64_MAX)
            for i in items
        ):
            return pb.Value(float_list=pb.FloatList(items=[float(i) for i in items]))
    return pb.Value(json=json.dumps(value))


def from_proto(msg: pb.Value) -> Any:
    """Value -> Python value (arrays become numpy arrays)."""
    kind = msg.WhichOneof("kind")
    if kind is None or kind == "null":
        return None
    if kind in ("string_list", "float_list", "int_list"):
        return list(getattr(msg, kind).items)
    if kind == "array":
        return array_from_proto(msg.array)
    if kind == "json":
        return json.loads(msg.json)
    return getattr(msg, kind)
