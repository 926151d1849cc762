"""The base system's web application: SIMPLON REST gateway and file serving."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from opendcu import __version__
from opendcu.base.apps import AppDirectory, ControlClient
from opendcu.base.rest import analysis, data_files, simplon


def create_app(detector_address: str, data_dir: Path) -> FastAPI:
    """A FastAPI app that forwards SIMPLON calls to app-detector at `detector_address` (a gRPC target)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = ControlClient(detector_address)  # grpc.aio channels belong to the running event loop
        app.state.apps = AppDirectory(detector_app=client)
        yield
        await client.close()

    app = FastAPI(title="opendcu SIMPLON API", version=__version__, lifespan=lifespan, redirect_slashes=False)
    app.state.data_dir = Path(data_dir).resolve()
    app.include_router(data_files.router)
    app.include_router(analysis.router)  # before simplon: /analysis/api/... is not a SIMPLON module path
    app.include_router(simplon.router)
    return app
