"""HTTP answers as real DCUs send them: JSON with Content-Type and Content-Length, errors as short text."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import numpy as np
from fastapi import Response

from opendcu.proto import control_pb2 as pb
from opendcu.proto.values import from_proto

JSON = "application/json"

_GRPC_TO_HTTP = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON answer; Starlette adds Content-Length for a fixed body."""
    body = json.dumps(content, separators=(", ", ": "), allow_nan=False).encode()
    return Response(body, status_code=status_code, media_type=JSON)


def text_error(status_code: int, message: str) -> Response:
    return Response(message.encode(), status_code=status_code, media_type="text/plain")


def grpc_error(exc: grpc.aio.AioRpcError) -> Response:
    code = exc.code()
    status = _GRPC_TO_HTTP.get(code, 500)
    if code is grpc.StatusCode.UNAVAILABLE:
        return text_error(status, "detector application is not available (restarting?)")
    return text_error(status, exc.details() or code.name)


def darray(array: np.ndarray) -> dict[str, Any]:
    """SIMPLON's darray object; shape in numpy order [height, width] (spec/simplon-api.md §4, §16)."""
    a = np.ascontiguousarray(array)
    return {
        "__darray__": [1, 0, 0],
        "type": a.dtype.newbyteorder("<").str,
        "shape": list(a.shape),
        "filters": ["base64"],
        "data": base64.b64encode(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).decode(),
    }


def to_json_value(value: pb.Value) -> Any:
    v = from_proto(value)
    return darray(v) if isinstance(v, np.ndarray) else v


def descriptor_json(d: pb.Descriptor) -> dict[str, Any]:
    """The SIMPLON GET object: value, value_type, then only the applicable fields."""
    out: dict[str, Any] = {"value": to_json_value(d.value), "value_type": d.value_type}
    if d.HasField("access_mode"):
        out["access_mode"] = d.access_mode
    if d.HasField("min"):
        out["min"] = to_json_value(d.min)
    if d.HasField("max"):
        out["max"] = to_json_value(d.max)
    if d.has_allowed_values:
        out["allowed_values"] = [to_json_value(v) for v in d.allowed_values]
    if d.HasField("unit"):
        out["unit"] = d.unit
    if d.HasField("time"):
        out["time"] = d.time
    if d.HasField("health"):
        out["state"] = d.health
    if d.has_critical_limits:
        out["critical_limits"] = [to_json_value(v) for v in d.critical_limits]
    if d.has_critical_values:
        out["critical_values"] = [to_json_value(v) for v in d.critical_values]
    return out
