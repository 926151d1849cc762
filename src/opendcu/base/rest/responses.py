"""HTTP answers as real DCUs send them: JSON with Content-Type and Content-Length, errors as short text."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import grpc
import numpy as np
import tifffile
from fastapi import Response

from opendcu.base.apps import AppError
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


class BadRequest(Exception):
    """A request the gateway itself refuses (HTTP 400): unreadable body, bad darray or TIFF."""


def darray_to_array(obj: dict[str, Any]) -> np.ndarray:
    """Decode a SIMPLON darray object (D18 §5.1.1) into a numpy array; BadRequest if it is inconsistent."""
    try:
        dtype = np.dtype(str(obj["type"]))
        shape = [int(n) for n in obj["shape"]]
        filters = list(obj.get("filters", []))
        data = obj["data"]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"darray: missing or invalid field ({exc})") from None
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise BadRequest(f"darray: unsupported element type {obj['type']!r}")
    if filters not in ([], ["base64"]) or not isinstance(data, str):
        raise BadRequest('darray: only filters ["base64"] with a base64 string in "data" are supported')
    if len(shape) != 2 or min(shape) < 1:
        raise BadRequest(f"darray: expected a 2-D shape [height, width], got {shape}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise BadRequest("darray: data is not valid base64") from None
    if len(raw) != shape[0] * shape[1] * dtype.itemsize:
        raise BadRequest(f"darray: {len(raw)} bytes of data do not fill shape {shape} of {dtype.str}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def is_darray(value: Any) -> bool:
    return isinstance(value, dict) and "__darray__" in value


def tiff_bytes(array: np.ndarray) -> bytes:
    """An uncompressed single-image TIFF of a 2-D array (pixel_mask uint32, flatfield float32)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(array), photometric="minisblack")
    return buffer.getvalue()


def tiff_to_array(data: bytes, max_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The 2-D image of an uploaded TIFF; BadRequest if it is not one, or if it declares more pixels than
    `max_shape` (the detector's): checked before anything is decoded, so a small compressed file cannot
    declare a huge image and fill the memory."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            shape = tuple(int(n) for n in page.shape)
            if max_shape is not None and (
                len(shape) < 2
                or shape[-2] > max_shape[0]
                or shape[-1] > max_shape[1]
                or int(np.prod(shape)) > max_shape[0] * max_shape[1]
            ):
                raise BadRequest(
                    f"the TIFF declares an image of {' x '.join(map(str, shape))} pixels; the detector "
                    f"has {max_shape[0]} x {max_shape[1]}"
                )
            array = page.asarray()
    except BadRequest:
        raise
    except Exception as exc:  # tifffile raises many kinds of errors on broken input
        raise BadRequest(f"the body is not a readable TIFF image: {exc}") from None
    if array.ndim != 2:
        raise BadRequest(f"the TIFF holds a {array.ndim}-D image; expected one 2-D image")
    return array


def app_error(exc: grpc.aio.AioRpcError | AppError) -> Response:
    """An app's refusal as the SIMPLON HTTP code with a short text (spec §5 error table)."""
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else exc.code
    details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
    status = _GRPC_TO_HTTP.get(code, 500)
    if code is grpc.StatusCode.UNAVAILABLE:
        return text_error(status, "the detector application is not available (restarting?)")
    return text_error(status, details or code.name)


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
