"""SIMPLON REST routes: `/<module>/api/<version>/<task>/<parameter>` translated into gRPC calls to the apps.

Parameter names may contain '/', so the parameter is a path tail. Trailing slashes are normalised.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from fastapi import APIRouter, Request, Response

from opendcu.base.apps import AppDirectory
from opendcu.base.rest.responses import descriptor_json, grpc_error, json_response, text_error, to_json_value

API_VERSIONS = ("1.6.0", "1.8.0")
REPORTED_VERSION = "1.8.0"
MODULES = ("detector", "filewriter", "monitor", "stream", "system")
TASKS = ("config", "status", "command")

router = APIRouter()


class BadRequest(Exception):
    pass


async def read_json_body(request: Request) -> Any:
    """The body as JSON whatever Content-Type says (clients send text/html or none); None if empty."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def _check_path(module: str, version: str, task: str) -> Response | None:
    if module not in MODULES:
        return text_error(404, f"module {module} does not exist")
    if version not in API_VERSIONS:
        return text_error(404, f"API version {version} is not supported (use {' or '.join(API_VERSIONS)})")
    if task not in TASKS:
        return text_error(404, f"task {task} does not exist")
    return None


def _apps(request: Request) -> AppDirectory:
    return request.app.state.apps


@router.get("/{module}/api/version")
@router.get("/{module}/api/version/")
async def get_version(module: str) -> Response:
    if module not in MODULES:
        return text_error(404, f"module {module} does not exist")
    return json_response({"value": REPORTED_VERSION, "value_type": "string"})


@router.get("/{module}/api/{version}/{task}/{key:path}")
async def get_parameter(module: str, version: str, task: str, key: str, request: Request) -> Response:
    if (error := _check_path(module, version, task)) is not None:
        return error
    key = key.strip("/")
    app = _apps(request).for_module(module)
    if app is None:
        return text_error(404, f"Parameter {key} does not exist")
    try:
        if key == "keys":
            return json_response(await app.keys(version, module, task))
        if task == "command" or not key:
            return text_error(404, f"Parameter {key or task} does not exist")
        return json_response(descriptor_json(await app.get(version, module, task, key)))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)


@router.put("/{module}/api/{version}/{task}/{key:path}")
async def put_parameter(module: str, version: str, task: str, key: str, request: Request) -> Response:
    if (error := _check_path(module, version, task)) is not None:
        return error
    key = key.strip("/")
    app = _apps(request).for_module(module)
    if app is None:
        return text_error(404, f"Parameter {key} does not exist")
    try:
        body = await read_json_body(request)
        if task == "command":
            return await _command(app, version, module, key, body)
        if task != "config":
            return text_error(400, f"{task} parameters are read-only")
        if not isinstance(body, dict) or "value" not in body:
            return text_error(400, 'PUT body must be a JSON object {"value": <value>}')
        return json_response(await app.set(version, module, key, body["value"]))
    except BadRequest as exc:
        return text_error(400, str(exc))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)


async def _command(app, version: str, module: str, command: str, body: Any) -> Response:
    if body is not None and not isinstance(body, dict):
        return text_error(400, 'a command body must be empty, {} or {"value": <argument>}')
    argument = body.get("value") if body else None
    reply = await app.command(version, module, command, argument)
    if reply.HasField("sequence_id"):
        return json_response({"sequence id": reply.sequence_id})
    if reply.HasField("result"):
        return json_response(to_json_value(reply.result))
    if command == "trigger" and version == "1.6.0":
        return json_response({"sequence id": -1})
    return json_response({})


@router.delete("/{module}/api/{version}/{task}/{key:path}")
async def delete_parameter(module: str, version: str, task: str, key: str, request: Request) -> Response:
    """DELETE on a config array (pixel_mask, flatfield) restores its default."""
    if (error := _check_path(module, version, task)) is not None:
        return error
    app = _apps(request).for_module(module)
    if app is None or task != "config":
        return text_error(404, f"Parameter {key} does not exist")
    try:
        return json_response(await app.reset(version, module, key.strip("/")))
    except grpc.aio.AioRpcError as exc:
        return grpc_error(exc)
