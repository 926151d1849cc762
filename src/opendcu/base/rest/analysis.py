"""REST routes of the live analysis (issue #7), next to the SIMPLON modules:

    GET  /analysis/api/<version>/results?series=&start=&limit=&spots=&profile=   results of a series (JSON)
    GET  /analysis/api/<version>/results/<image_id>?series=                     one image, spots and profile
    GET  /analysis/api/<version>/summary?series=                                counts, hit/indexing rates
    GET  /analysis/api/<version>/events?spots=&profile=                         server-sent events, live
         (with `Accept: text/event-stream`, as EventSource sends it; the stream never ends by itself)

`series` 0 or absent = the latest series. Results come from app-detector's Analysis gRPC service. The settings
are the SIMPLON-style module "analysis" of its Control service (`/analysis/api/<version>/config/...`, served by
the generic SIMPLON routes).
"""

from __future__ import annotations

import asyncio
import json

import grpc
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from opendcu.base.rest.responses import app_error, json_response, text_error
from opendcu.base.rest.simplon import API_VERSIONS
from opendcu.proto import analysis_pb2 as pb
from opendcu.proto import analysis_pb2_grpc
from opendcu.proto.analysis_values import result_to_json, summary_to_json

MODULE = "analysis"
KEEPALIVE_S = 10.0

router = APIRouter()


class BadRequest(Exception):
    pass


class AppUnavailable(Exception):
    """No app serves module "analysis" (app-detector down or restarting)."""


async def _stub(request: Request) -> analysis_pb2_grpc.AnalysisStub:
    """The Analysis service, on the channel of the app that serves module "analysis" (app-detector)."""
    app = await request.app.state.apps.for_module(MODULE)
    channel = getattr(app, "channel", None)
    if channel is None:
        raise AppUnavailable()
    return analysis_pb2_grpc.AnalysisStub(channel)


def _unavailable() -> Response:
    return text_error(503, "detector application is not available (restarting?)")


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _uint(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise BadRequest(f"query parameter {name} must be a non-negative integer, got {raw!r}")
    return int(raw)


async def _answer(version: str, call) -> Response:
    """Run one call, mapping refusals to their HTTP status and a short text."""
    if version not in API_VERSIONS:
        return text_error(404, f"API version {version} is not supported (use {' or '.join(API_VERSIONS)})")
    try:
        return await call()
    except BadRequest as exc:
        return text_error(400, str(exc))
    except AppUnavailable:
        return _unavailable()
    except grpc.aio.AioRpcError as exc:
        return app_error(exc)


@router.get("/analysis/api/{version}/results", tags=["analysis"], summary="Analysis results of a series")
async def get_results(version: str, request: Request) -> Response:
    async def call() -> Response:
        query = pb.ResultsRequest(
            series_id=_uint(request, "series", 0),
            start=_uint(request, "start", 0),
            limit=min(_uint(request, "limit", 1000), 100_000),
            spots=_flag(request.query_params.get("spots")),
            profile=_flag(request.query_params.get("profile")),
        )
        reply = await (await _stub(request)).GetResults(query)
        return json_response(
            {"summary": summary_to_json(reply.summary), "results": [result_to_json(r) for r in reply.results]}
        )

    return await _answer(version, call)


@router.get(
    "/analysis/api/{version}/results/{image_id}",
    tags=["analysis"],
    summary="One analysed image: scores, spots, radial profile",
)
async def get_result(version: str, image_id: str, request: Request) -> Response:
    async def call() -> Response:
        if not image_id.isdigit():
            raise BadRequest(f"image id must be a non-negative integer, got {image_id!r}")
        query = pb.ImageRequest(series_id=_uint(request, "series", 0), image_id=int(image_id))
        return json_response(result_to_json(await (await _stub(request)).GetResult(query)))

    return await _answer(version, call)


@router.get("/analysis/api/{version}/summary", tags=["analysis"], summary="Counts and rates of a series")
async def get_summary(version: str, request: Request) -> Response:
    async def call() -> Response:
        query = pb.ResultsRequest(series_id=_uint(request, "series", 0), limit=1)
        return json_response(summary_to_json((await (await _stub(request)).GetResults(query)).summary))

    return await _answer(version, call)


@router.get("/analysis/api/{version}/events", tags=["analysis"], summary="Live results (server-sent events)")
async def get_events(version: str, request: Request) -> Response:
    """Server-sent events: `series_start`, `result` (one per analysed image) and `series_end`, as JSON data."""
    if version not in API_VERSIONS:
        return text_error(404, f"API version {version} is not supported")
    if "text/event-stream" not in request.headers.get("accept", ""):
        # an endless answer only for clients that ask for one (EventSource does); others would just hang
        return text_error(400, "this is a server-sent event stream: ask with the header Accept: text/event-stream")
    try:
        stub = await _stub(request)
    except AppUnavailable:
        return _unavailable()
    call = stub.Watch(
        pb.WatchRequest(
            spots=_flag(request.query_params.get("spots")), profile=_flag(request.query_params.get("profile"))
        )
    )

    async def events():
        reader = call.__aiter__()
        pending = None
        try:
            yield ": opendcu analysis events\n\n"
            while True:
                pending = pending or asyncio.ensure_future(reader.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                try:
                    event = pending.result()
                except (StopAsyncIteration, grpc.aio.AioRpcError):
                    yield 'event: error\ndata: {"error": "detector application went away"}\n\n'
                    return
                pending = None
                kind = event.WhichOneof("event")
                body = result_to_json(event.result) if kind == "result" else summary_to_json(getattr(event, kind))
                yield f"event: {kind}\ndata: {json.dumps(body, allow_nan=False)}\n\n"
        finally:
            if pending is not None:
                pending.cancel()
            call.cancel()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
