"""REST routes of the live analysis (issue #7), next to the SIMPLON modules:

    GET  /analysis/api/<version>/results?series=&start=&limit=&spots=&profile=   results of a series (JSON)
    GET  /analysis/api/<version>/results/<image_id>?series=                     one image, spots and profile
    GET  /analysis/api/<version>/summary?series=                                counts, hit/indexing rates
    GET  /analysis/api/<version>/events?spots=&profile=                         server-sent events, live
    GET/PUT/DELETE /analysis/api/<version>/{config,status,command}/<key>         settings, SIMPLON-style

`series` 0 or absent = the latest series. Results come from app-detector's Analysis gRPC service; settings
from its Control service (module "analysis").
"""

from __future__ import annotations

import asyncio
import json

import grpc
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from opendcu.base.rest.responses import descriptor_json, grpc_error, json_response, text_error
from opendcu.base.rest.simplon import API_VERSIONS, REPORTED_VERSION, BadRequest, _command, read_json_body
from opendcu.proto import analysis_pb2 as pb
from opendcu.proto import analysis_pb2_grpc
from opendcu.proto.analysis_values import result_to_json, summary_to_json

MODULE = "analysis"
TASKS = ("config", "status", "command")
KEEPALIVE_S = 10.0

router = APIRouter()


def _stub(request: Request) -> analysis_pb2_grpc.AnalysisStub:
    """The Analysis service on app-detector's channel (shared with the Control client)."""
    state = request.app.state
    if getattr(state, "analysis_stub", None) is None:
        state.analysis_stub = analysis_pb2_grpc.AnalysisStub(state.apps.detector_app.channel)
    return state.analysis_stub


def _control(request: Request):
    return request.app.state.apps.detector_app


def _version_error(version: str) -> Response | None:
    if version not in API_VERSIONS:
        return text_error(404, f"API version {version} is not supported (use {' or '.join(API_VERSIONS)})")
    return None


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _uint(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise BadRequest(f"query parameter {name} must be a non-negative integer, got {raw!r}")
    return int(raw)


@router.get("/analysis/api/version")
async def get_version() -> Response:
    return json_response({"value": REPORTED_VERSION, "value_type": "string"})


@router.get("/analysis/api/{version}/results")
async def get_results(version: str, request: Request) -> Response:
    if (error := _version_error(version)) is not None:
        return error
    try:
        query = pb.ResultsRequest(series_id=_uint(request, "series", 0), start=_uint(request, "start", 0),
                                  limit=min(_uint(request, "limit", 1000), 100_000),
                                  spots=_flag(request.query_params.get("spots")),
                                  profile=_flag(request.query_params.get("profile")))
        reply = await _stub(request).GetResults(query)
    except BadRequest as exc:
        return text_error(400, str(exc))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)
    return json_response({"summary": summary_to_json(reply.summary), "results": [result_to_json(r) for r in reply.results]})


@router.get("/analysis/api/{version}/results/{image_id}")
async def get_result(version: str, image_id: str, request: Request) -> Response:
    if (error := _version_error(version)) is not None:
        return error
    if not image_id.isdigit():
        return text_error(400, f"image id must be a non-negative integer, got {image_id!r}")
    try:
        reply = await _stub(request).GetResult(pb.ImageRequest(series_id=_uint(request, "series", 0),
                                                               image_id=int(image_id)))
    except BadRequest as exc:
        return text_error(400, str(exc))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)
    return json_response(result_to_json(reply))


@router.get("/analysis/api/{version}/summary")
async def get_summary(version: str, request: Request) -> Response:
    if (error := _version_error(version)) is not None:
        return error
    try:
        reply = await _stub(request).GetResults(pb.ResultsRequest(series_id=_uint(request, "series", 0), limit=1))
    except BadRequest as exc:
        return text_error(400, str(exc))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)
    return json_response(summary_to_json(reply.summary))


@router.get("/analysis/api/{version}/events")
async def get_events(version: str, request: Request) -> Response:
    """Server-sent events: `series_start`, `result` (one per analysed image) and `series_end`, as JSON data."""
    if (error := _version_error(version)) is not None:
        return error
    call = _stub(request).Watch(pb.WatchRequest(spots=_flag(request.query_params.get("spots")),
                                                profile=_flag(request.query_params.get("profile"))))

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
                    yield "event: error\ndata: {\"error\": \"detector application went away\"}\n\n"
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


# -- settings: the "analysis" module of the Control service, SIMPLON-style ----------------------------------------------
def _check(version: str, task: str) -> Response | None:
    if (error := _version_error(version)) is not None:
        return error
    if task not in TASKS:
        return text_error(404, f"task {task} does not exist")
    return None


@router.get("/analysis/api/{version}/{task}/{key:path}")
async def get_parameter(version: str, task: str, key: str, request: Request) -> Response:
    if (error := _check(version, task)) is not None:
        return error
    key = key.strip("/")
    try:
        if key == "keys":
            return json_response(await _control(request).keys(version, MODULE, task))
        if task == "command" or not key:
            return text_error(404, f"Parameter {key or task} does not exist")
        return json_response(descriptor_json(await _control(request).get(version, MODULE, task, key)))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)


@router.put("/analysis/api/{version}/{task}/{key:path}")
async def put_parameter(version: str, task: str, key: str, request: Request) -> Response:
    if (error := _check(version, task)) is not None:
        return error
    key = key.strip("/")
    try:
        body = await read_json_body(request)
        if task == "command":
            return await _command(_control(request), version, MODULE, key, body)
        if task != "config":
            return text_error(400, f"{task} parameters are read-only")
        if not isinstance(body, dict) or "value" not in body:
            return text_error(400, 'PUT body must be a JSON object {"value": <value>}')
        return json_response(await _control(request).set(version, MODULE, key, body["value"]))
    except BadRequest as exc:
        return text_error(400, str(exc))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)


@router.delete("/analysis/api/{version}/{task}/{key:path}")
async def delete_parameter(version: str, task: str, key: str, request: Request) -> Response:
    if (error := _check(version, task)) is not None:
        return error
    if task != "config":
        return text_error(404, f"Parameter {key} does not exist")
    try:
        return json_response(await _control(request).reset(version, MODULE, key.strip("/")))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)
