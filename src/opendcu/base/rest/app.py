"""The base system's web application: SIMPLON REST gateway, file serving, OpenAPI docs at /docs."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from opendcu import __version__
from opendcu.base.apps import AppDirectory, ControlClient
from opendcu.base.rest import analysis, data_files, filewriter_files, monitor_images, simplon, ui_support, webdav
from opendcu.base.rest.auth import TokenAuth
from opendcu.base.rest.limits import MAX_BODY_BYTES, BodyLimit
from opendcu.base.rest.responses import text_error
from opendcu.base.system import SystemApp

DESCRIPTION = """The DECTRIS SIMPLON REST API (1.8.0, and 1.6.0 for legacy clients) of an opendcu Detector Control Unit.

`/<module>/api/<version>/<task>/<parameter>`: modules `detector`, `stream`, `filewriter`, `monitor`, `system`
(and `simulator`, the inputs of the simulated detector); tasks `config`, `status`, `command`; parameter names may
contain `/`. `GET …/<task>/keys` lists the keys. GET answers `{"value", "value_type", "access_mode", …}`; a config
PUT takes `{"value": x}` and answers the list of changed keys; errors are short texts (404 unknown, 400 refused).
"""


def create_app(
    detector_address: str,
    data_dir: Path,
    restart: Callable[[], None] | None = None,
    calibration_address: str | None = None,
    auth_token: str = "",
    manager=None,
) -> FastAPI:
    """A FastAPI app that forwards SIMPLON calls to app-detector at `detector_address` (a gRPC target) and,
    for the `calibration` module, to app-calibration at `calibration_address`.

    `restart` restarts app-detector (the system module's `restart` command); with `auth_token` every request
    must carry it (auth.py); `manager` (the AppManager) feeds the Web-UI's System page.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = ControlClient(detector_address)  # grpc.aio channels belong to the running event loop
        clients = [client] + ([ControlClient(calibration_address)] if calibration_address else [])
        app.state.apps = AppDirectory(apps=[*clients, SystemApp(restart or _no_restart)])
        yield
        for c in clients:
            await c.close()

    app = FastAPI(
        title="opendcu SIMPLON API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
    )
    app.openapi_version = "3.0.3"  # the bundled Swagger UI (4.x) renders OpenAPI 3.0
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    if auth_token:
        app.add_middleware(TokenAuth, token=auth_token)  # added last: runs first
    _describe_real_answers(app)
    app.state.data_dir = Path(data_dir).resolve()
    _add_docs(app)
    _add_error_handlers(app)
    app.include_router(data_files.router)
    app.include_router(filewriter_files.router)  # before simplon: its routes would take /files/ and /images/
    app.include_router(monitor_images.router)
    app.include_router(analysis.router)  # results and live events of module analysis
    ui_support.install(app, manager)  # the Web-UI at / and /ui/ (src/opendcu/base/webui)
    app.mount(webdav.MOUNT, webdav.create_webdav_app(app.state.data_dir))
    app.include_router(simplon.router)
    return app


def _no_restart() -> None:
    raise RuntimeError("restart is not available in this server")


def _add_docs(app: FastAPI) -> None:
    """Swagger UI served from the swagger-ui-bundle package: works on a beamline network without internet."""
    app.mount("/docs/static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )

    for path in ("/docs", "/docs/"):
        app.add_api_route(path, docs, methods=["GET"], include_in_schema=False)


#: the refusals every route may answer, each as a short text (spec/simplon-api.md §5)
ERROR_ANSWERS = {
    "400": "refused: wrong type, out of range, not allowed in this state, unreadable body",
    "404": "unknown module, version, key, command or file",
    "405": "method not allowed on this path",
    "408": "timed out waiting for data (e.g. a monitor image)",
    "413": "request body too large",
    "503": "the detector application is restarting",
}
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_VALUE_BODY = {"type": "object", "required": ["value"], "properties": {"value": {}}}


def _describe_real_answers(app: FastAPI) -> None:
    """The OpenAPI says what the API really answers: the error codes with their text bodies (never FastAPI's
    422), and the SIMPLON PUT bodies ({"value": ...}; a TIFF for array keys; {"<key>": {"value": ...}} on a
    config root; an optional {"value": argument} for commands)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for code, text in ERROR_ANSWERS.items():
                    responses.setdefault(code, {"description": text, "content": _TEXT})
                if method == "put" and "/api/{version}/" in path:
                    operation["requestBody"] = _put_body(path)
        schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _put_body(path: str) -> dict:
    if path.endswith("/config"):
        return {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "minProperties": 1, "additionalProperties": _VALUE_BODY}
                }
            },
        }
    if "/config/" in path:
        return {
            "required": True,
            "content": {
                "application/json": {"schema": _VALUE_BODY},
                "image/tiff": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    if "/command/" in path:
        return {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object", "properties": {"value": {}}}}},
        }
    return {"required": False, "content": {"application/json": {"schema": _VALUE_BODY}}}


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is a short text with the right code, never a framework JSON body."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return text_error(404, f"{request.url.path} does not exist")
        if exc.status_code == 405:
            return text_error(405, f"{request.method} is not allowed on {request.url.path}")
        return text_error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return text_error(400, f"bad request: {exc.errors()}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return text_error(500, f"internal error: {exc}")
