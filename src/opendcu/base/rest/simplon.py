"""SIMPLON REST routes (spec/simplon-api.md §1-5): `/<module>/api/<version>/<task>/<parameter>` translated into
calls to the app that serves the module.

- Parameter names may contain '/', so the parameter is a path tail; trailing slashes are normalised.
- The task is a literal in each route (config, status, command), so other routers can serve their own
  resources under a module (`/filewriter/api/<v>/files/`, `/monitor/api/<v>/images/...`).
- Bodies are JSON whatever the Content-Type says (clients send text/html or none); commands accept an
  empty body, `{}` or `{"value": argument}`; 2-D arrays travel as darray objects or as TIFF.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from fastapi import APIRouter, Request, Response

from opendcu.base.apps import AppDirectory, AppError, ControlApp
from opendcu.base.rest.limits import MAX_JSON_DEPTH, json_depth_exceeded
from opendcu.base.rest.responses import (
    BadRequest,
    app_error,
    darray_to_array,
    descriptor_json,
    is_darray,
    json_response,
    text_error,
    tiff_bytes,
    tiff_to_array,
    to_json_value,
)
from opendcu.proto.values import from_proto

API_VERSIONS = ("1.6.0", "1.8.0")
#: the largest detector's shape (EIGER2 16M, geometry/models.py): the bound of an uploaded TIFF when the detector
#: cannot be asked (base knows the apps only over gRPC)
LARGEST_SHAPE = (4362, 4148)
REPORTED_VERSION = "1.8.0"
TIFF_TYPES = ("application/tiff", "image/tiff")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

router = APIRouter()


class NotFound(Exception):
    """An unknown module, version or key (HTTP 404)."""


async def _app(request: Request, module: str, version: str) -> ControlApp:
    directory: AppDirectory = request.app.state.apps
    app = await directory.for_module(module)
    if app is None:
        raise NotFound(f"module {module} does not exist")
    if version not in API_VERSIONS:
        raise NotFound(f"API version {version} is not supported (use {' or '.join(API_VERSIONS)})")
    return app


async def _answer(call) -> Response:
    """Run one gateway call, mapping every refusal to its SIMPLON status and a short text."""
    try:
        return await call()
    except NotFound as exc:
        return text_error(404, str(exc))
    except BadRequest as exc:
        return text_error(400, str(exc))
    except (grpc.aio.AioRpcError, AppError) as exc:
        return app_error(exc)


async def read_json_body(request: Request) -> Any:
    """The body as JSON whatever Content-Type says; None if empty."""
    raw = await request.body()
    if not raw.strip():
        return None
    if json_depth_exceeded(raw):
        raise BadRequest(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


ShapeSource = Callable[[], Awaitable[tuple[int, int]]]


async def read_value(request: Request, key: str, max_shape: ShapeSource | None = None) -> Any:
    """The new value of a config PUT: `{"value": x}` (x may be a darray), or a TIFF image body (no larger than
    `max_shape()`, the detector's shape)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if content_type in TIFF_TYPES or raw[:4] in TIFF_MAGIC:
        return tiff_to_array(raw, await max_shape() if max_shape is not None else None)
    if content_type == "application/hdf5" or raw.startswith(HDF5_MAGIC):
        raise BadRequest(f"Parameter {key}: HDF5 uploads are not supported; send a TIFF or a darray")
    body = await read_json_body(request)
    if not isinstance(body, dict) or "value" not in body:
        raise BadRequest('a config PUT needs a JSON object {"value": <new value>}')
    return _decode_value(body["value"])


def _decode_value(value: Any) -> Any:
    return darray_to_array(value) if is_darray(value) else value


def _wants_tiff(request: Request) -> str | None:
    accept = request.headers.get("accept", "").lower()
    return next((t for t in TIFF_TYPES if t in accept), None)


# -- version and key lists ---------------------------------------------------------------------------------------------
@router.get("/{module}/api/version", summary="API version of a module (ADEiger form, no trailing slash)")
@router.get("/{module}/api/version/", summary="API version of a module")
async def get_version(module: str, request: Request) -> Response:
    async def call() -> Response:
        await _app(request, module, REPORTED_VERSION)
        return json_response({"value": REPORTED_VERSION, "value_type": "string"})

    return await _answer(call)


@router.get("/{module}/api/{version}/keys", summary="All config and status keys of a module (bare list)")
async def get_module_keys(module: str, version: str, request: Request) -> Response:
    async def call() -> Response:
        app = await _app(request, module, version)
        return json_response(await app.keys(version, module, "config") + await app.keys(version, module, "status"))

    return await _answer(call)


# -- config / status / command -----------------------------------------------------------------------------------------
async def _get(request: Request, module: str, version: str, task: str, key: str) -> Response:
    async def call() -> Response:
        app = await _app(request, module, version)
        name = key.strip("/")
        if name == "keys":
            return json_response(await app.keys(version, module, task))
        if task == "command":
            raise NotFound(f"Parameter {name or task} does not exist (commands are sent with PUT)")
        if not name:  # `…/config/`: every listed key with its GET object
            keys = await app.keys(version, module, task)
            return json_response({k: descriptor_json(await app.get(version, module, task, k)) for k in keys})
        descriptor = await app.get(version, module, task, name)
        tiff_type = _wants_tiff(request)
        if tiff_type and descriptor.value.WhichOneof("kind") == "array":
            return Response(tiff_bytes(from_proto(descriptor.value)), media_type=tiff_type)
        return json_response(descriptor_json(descriptor))

    return await _answer(call)


async def _put(request: Request, module: str, version: str, task: str, key: str) -> Response:
    async def call() -> Response:
        app = await _app(request, module, version)
        name = key.strip("/")
        if task == "command":
            return await _command(app, request, version, module, name)
        if task == "status":
            raise BadRequest(f"Parameter {name or 'status'} is a status value and read-only")
        if not name:
            return json_response(await app.set_many(version, module, await _multi_key_items(request)))

        async def detector_shape() -> tuple[int, int]:
            try:
                h = from_proto((await app.get(version, "detector", "config", "y_pixels_in_detector")).value)
                w = from_proto((await app.get(version, "detector", "config", "x_pixels_in_detector")).value)
                return int(h), int(w)
            except (grpc.aio.AioRpcError, AppError, TypeError, ValueError):  # not initialized: the largest model
                return LARGEST_SHAPE

        return json_response(await app.set(version, module, name, await read_value(request, name, detector_shape)))

    return await _answer(call)


async def _multi_key_items(request: Request) -> list[tuple[str, Any]]:
    """`PUT …/config` with `{"key": {"value": v}, ...}` (DECTRIS docs): the (key, value) pairs in order."""
    body = await read_json_body(request)
    if not isinstance(body, dict) or not body:
        raise BadRequest('a PUT on the config root needs a JSON object {"<key>": {"value": <value>}, ...}')
    items = []
    for k, v in body.items():
        if not isinstance(v, dict) or "value" not in v:
            raise BadRequest(f'{k}: expected {{"value": <value>}}')
        items.append((k, _decode_value(v["value"])))
    return items


async def _command(app: ControlApp, request: Request, version: str, module: str, command: str) -> Response:
    if not command:
        raise NotFound("Parameter command does not exist")
    body = await read_json_body(request)
    if body is not None and not isinstance(body, dict):
        raise BadRequest('a command body must be empty, {} or {"value": <argument>}')
    argument = body.get("value") if body else None
    reply = await app.command(version, module, command, argument)
    if reply.HasField("sequence_id"):
        return json_response({"sequence id": reply.sequence_id})
    if reply.HasField("result"):
        return json_response(to_json_value(reply.result))
    if version == "1.6.0" and command == "trigger":
        return json_response({"sequence id": -1})  # EIGER R 1M answer; BAM's IOC waits for it (spec §16)
    if version == "1.6.0" and command == "initialize":
        return Response(b"")  # SIMPLON 1.6 answers initialize with an empty body
    return json_response({})


async def _delete(request: Request, module: str, version: str, key: str) -> Response:
    async def call() -> Response:
        app = await _app(request, module, version)
        return json_response(await app.reset(version, module, key.strip("/")))

    return await _answer(call)


def _add_task_routes(task: str) -> None:
    async def get_root(module: str, version: str, request: Request) -> Response:
        return await _get(request, module, version, task, "")

    async def get_key(module: str, version: str, key: str, request: Request) -> Response:
        return await _get(request, module, version, task, key)

    async def put_root(module: str, version: str, request: Request) -> Response:
        return await _put(request, module, version, task, "")

    async def put_key(module: str, version: str, key: str, request: Request) -> Response:
        return await _put(request, module, version, task, key)

    root, tail = f"/{{module}}/api/{{version}}/{task}", f"/{{module}}/api/{{version}}/{task}/{{key:path}}"
    what = {"config": "configuration parameter", "status": "status value", "command": "command"}[task]
    tags = [task]
    if task != "command":
        router.add_api_route(
            root, get_root, methods=["GET"], tags=tags, summary=f"Every listed {what} with its GET object"
        )
        router.add_api_route(
            tail,
            get_key,
            methods=["GET"],
            tags=tags,
            summary=f"Read a {what} (`keys` lists them; Accept: image/tiff for 2-D arrays)",
        )
    else:
        router.add_api_route(tail, get_key, methods=["GET"], tags=tags, summary="List the commands (`keys`)")
    router.add_api_route(
        root,
        put_root,
        methods=["PUT"],
        tags=tags,
        summary='Multi-key write: {"<key>": {"value": v}, ...}, in order, all or nothing',
    )
    router.add_api_route(
        tail,
        put_key,
        methods=["PUT"],
        tags=tags,
        summary={
            "config": 'Write {"value": v} (or a TIFF); answers the list of changed keys',
            "status": "Status values are read-only (400)",
            "command": 'Run a command; body empty, {} or {"value": argument}',
        }[task],
    )
    if task == "config":

        async def delete_key(module: str, version: str, key: str, request: Request) -> Response:
            return await _delete(request, module, version, key)

        router.add_api_route(
            tail,
            delete_key,
            methods=["DELETE"],
            tags=tags,
            summary="Restore the default of a custom pixel_mask / flatfield",
        )


for _task in ("config", "status", "command"):
    _add_task_routes(_task)
