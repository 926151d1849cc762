"""Monitor images: `GET /monitor/api/<v>/images/` (list), `images/next`, `images/monitor` (`?timeout=` ms, 408
when no image arrives in time) and `images/<series>/<id>[/<threshold>]` (404 when not buffered), as TIFF.

The images live in app-detector; this router fetches them over gRPC (proto/interfaces.proto) on the channel
the gateway already holds to app-detector.
"""

from __future__ import annotations

import grpc
from fastapi import APIRouter, Request, Response

from opendcu.base.rest.responses import app_error, json_response, text_error
from opendcu.base.rest.simplon import API_VERSIONS
from opendcu.proto import interfaces_pb2 as pb
from opendcu.proto import interfaces_pb2_grpc

router = APIRouter()

DEFAULT_TIMEOUT_MS = 500  # D16 §4.2.2, D18 §5.2.2
MAX_TIMEOUT_MS = 24 * 3600 * 1000
TIFF = "image/tiff"


async def _stub(request: Request) -> interfaces_pb2_grpc.MonitorStub | None:
    """The Monitor service of the app that serves the `monitor` module, on the channel already open to it."""
    app = await request.app.state.apps.for_module("monitor")
    channel = getattr(app, "channel", None)
    return None if channel is None else interfaces_pb2_grpc.MonitorStub(channel)


def _timeout_ms(request: Request) -> int | Response:
    raw = request.query_params.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT_MS
    try:
        value = int(float(raw))
    except ValueError:
        return text_error(400, f"timeout must be a number of milliseconds, got {raw!r}")
    if not 0 <= value <= MAX_TIMEOUT_MS:
        return text_error(400, f"timeout {value} ms is outside 0..{MAX_TIMEOUT_MS}")
    return value


async def _image(request: Request, version: str, **fields) -> Response:
    if version not in API_VERSIONS:
        return text_error(404, f"API version {version} is not supported")
    timeout = _timeout_ms(request)
    if isinstance(timeout, Response):
        return timeout
    stub = await _stub(request)
    if stub is None:
        return text_error(404, "the monitor is not available")
    try:
        reply = await stub.GetImage(pb.MonitorImageRequest(timeout_ms=timeout, **fields))
    except grpc.aio.AioRpcError as exc:
        return app_error(exc)  # DEADLINE_EXCEEDED -> 408 with a short text
    return Response(reply.tiff, media_type=TIFF)


@router.get("/monitor/api/{version}/images")
@router.get("/monitor/api/{version}/images/")
async def list_images(version: str, request: Request) -> Response:
    if version not in API_VERSIONS:
        return text_error(404, f"API version {version} is not supported")
    stub = await _stub(request)
    if stub is None:
        return text_error(404, "the monitor is not available")
    try:
        reply = await stub.ListImages(pb.MonitorListRequest())
    except grpc.aio.AioRpcError as exc:
        return app_error(exc)
    return json_response([[s.series_id, list(s.image_ids)] for s in reply.series])


@router.get("/monitor/api/{version}/images/next")
async def next_image(version: str, request: Request) -> Response:
    return await _image(request, version, which=pb.MonitorImageRequest.NEXT)


@router.get("/monitor/api/{version}/images/monitor")
async def latest_image(version: str, request: Request) -> Response:
    return await _image(request, version, which=pb.MonitorImageRequest.LATEST)


@router.get("/monitor/api/{version}/images/{series_id}/{image_id}")
@router.get("/monitor/api/{version}/images/{series_id}/{image_id}/{threshold}")
async def image_by_id(version: str, series_id: str, image_id: str, request: Request, threshold: str = "1") -> Response:
    try:
        ids = [int(series_id), int(image_id), int(threshold)]
    except ValueError:
        return text_error(404, f"monitor image {series_id}/{image_id}/{threshold} does not exist")
    if min(ids) < 0:
        return text_error(404, f"monitor image {series_id}/{image_id}/{threshold} does not exist")
    return await _image(
        request, version, which=pb.MonitorImageRequest.BY_ID, series_id=ids[0], image_id=ids[1], threshold=ids[2]
    )
