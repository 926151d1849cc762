"""The Web-UI (src/opendcu/base/webui/) and the few REST resources it needs beyond SIMPLON:

    GET /                                     -> redirect to /ui/
    GET /ui/, /ui/<page>                      the single-page app; /ui/static/... its files (no CDN)
    GET /ui/api/system?log=<lines>            the apps (state, pid, uptime, restarts, last output lines), server config
    PUT /ui/api/apps/<name>/restart           restart one app (app-detector comes back in state `na`)
    GET /ui/api/files                         the data directory: name, size, modification time
    GET /ui/api/files/<name>/summary          a master file's images, geometry, bit depth, compression (h5py)
    GET /ui/api/calibration/map?kind=&bin=    the active calibration's flatfield or mask, binned, per module
                                              (ui_calibration.py)

Everything else the UI shows comes from the SIMPLON, monitor and analysis routes, so bad input from the UI gets
the same 4xx texts as any REST client.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from opendcu.base.rest.responses import json_response, text_error
from opendcu.simplon.paths import UnsafePath, list_data_files, resolve_in

if TYPE_CHECKING:
    from opendcu.base.app_manager import AppManager

WEBUI_DIR = Path(__file__).resolve().parent.parent / "webui"
#: the app's pages (tabs); each is also a URL that answers the app
PAGES = ("overview", "control", "configuration", "live", "analysis", "calibration", "files", "system")
MAX_LOG_LINES = 1000

router = APIRouter()


def install(app: FastAPI, manager: AppManager | None) -> None:
    """Serve the Web-UI and its REST resources; `manager` (None in servers without apps) backs the System page."""
    from opendcu.base.rest import ui_calibration, ui_images

    app.state.manager = manager
    app.mount("/ui/static", StaticFiles(directory=WEBUI_DIR), name="ui-static")
    app.include_router(router)
    app.include_router(ui_images.router)
    app.include_router(ui_calibration.router)


@router.get("/", include_in_schema=False)
async def root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
async def index() -> Response:
    return FileResponse(WEBUI_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/ui/{page}", include_in_schema=False)
async def page(page: str) -> Response:
    if page not in PAGES:
        return text_error(404, f"/ui/{page} does not exist (pages: {', '.join(PAGES)})")
    return await index()


# -- apps and server configuration ---------------------------------------------------------------------------------
@router.get("/ui/api/system", tags=["ui"], summary="Apps (state, pid, uptime, restarts, last output) and server config")
async def system(request: Request) -> Response:
    raw = request.query_params.get("log", "50")
    if not raw.isdigit() or int(raw) > MAX_LOG_LINES:
        return text_error(400, f"log must be a number of lines 0..{MAX_LOG_LINES}, got {raw!r}")
    lines = int(raw)
    manager = request.app.state.manager
    apps = [] if manager is None else manager.describe()
    for a in apps:
        a["log"] = a["log"][-lines:] if lines else []
    config: dict[str, Any] = {"data_dir": str(request.app.state.data_dir)}
    if manager is not None:
        config.update({k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(manager.config).items()})
        config["data_dir"] = str(request.app.state.data_dir)
    return json_response({"apps": apps, "config": config})


@router.put("/ui/api/apps/{name}/restart", tags=["ui"], summary="Restart one app (blocks until it is ready again)")
async def restart_app(name: str, request: Request) -> Response:
    manager = request.app.state.manager
    if manager is None:
        return text_error(503, "this server does not manage its apps")
    names = [a["name"] for a in manager.describe()]
    if name not in names:
        return text_error(404, f"app {name} does not exist (apps: {', '.join(names)})")
    try:
        await asyncio.to_thread(manager.restart_app, name)
    except Exception as exc:  # the manager logs the details; the UI shows the reason
        return text_error(503, f"restarting {name} failed: {exc}")
    return json_response({})


# -- files -----------------------------------------------------------------------------------------------------------
@router.get("/ui/api/files", tags=["ui"], summary="The data directory's files with size and modification time")
async def files(request: Request) -> Response:
    root: Path = request.app.state.data_dir
    out = []
    for name in list_data_files(root):
        try:
            st = (root / name).stat()
        except FileNotFoundError:  # deleted meanwhile
            continue
        out.append({"name": name, "size": st.st_size, "mtime": st.st_mtime})
    return json_response(out)


@router.get("/ui/api/files/{name:path}/summary", tags=["ui"], summary="A master file's summary (images, geometry, ...)")
async def file_summary(name: str, request: Request) -> Response:
    try:
        path = resolve_in(request.app.state.data_dir, name)
    except UnsafePath as exc:
        return text_error(400, str(exc))
    if not path.is_file() or path.name.startswith("."):
        return text_error(404, f"file {name} does not exist")
    try:
        return json_response(await asyncio.to_thread(master_summary, path))
    except OSError as exc:
        return text_error(400, f"{name} is not a readable HDF5 file: {exc}")


def _scalar(group: h5py.Group, key: str) -> Any:
    if key not in group:
        return None
    value = group[key][()]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _filters(ds: h5py.Dataset) -> list[str]:
    names = []
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _flags, _values, name = plist.get_filter(i)
        names.append(name.decode(errors="replace") if name else str(code))
    return names


def master_summary(path: Path) -> dict[str, Any]:
    """What a user checks first in a master file: images, geometry, bit depth, compression."""
    with h5py.File(path, "r") as f:
        det = f.get("/entry/instrument/detector")
        spec = det.get("detectorSpecific") if det is not None else None
        out: dict[str, Any] = {"name": path.name, "size": path.stat().st_size}
        data = f.get("/entry/data")
        datasets: list[dict[str, Any]] = []
        images, shape, dtype = 0, None, None
        filters: list[str] = []
        if data is not None:
            for key in sorted(data):
                try:
                    ds = data[key]
                except (KeyError, OSError):  # an external link to a data file that is not there (yet)
                    datasets.append({"name": key, "images": None})
                    continue
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                    continue
                datasets.append({"name": key, "images": int(ds.shape[0])})
                images += int(ds.shape[0])
                shape, dtype, filters = list(ds.shape[1:]), ds.dtype.str, filters or _filters(ds)
        out.update(images=images, image_shape=shape, dtype=dtype, data=datasets, hdf5_filters=filters)
        if det is not None:
            out.update(
                {
                    k: _scalar(det, k)
                    for k in (
                        "description",
                        "beam_center_x",
                        "beam_center_y",
                        "detector_distance",
                        "x_pixel_size",
                        "y_pixel_size",
                        "count_time",
                        "frame_time",
                        "bit_depth_image",
                        "bit_depth_readout",
                        "sensor_thickness",
                    )
                }
            )
        if spec is not None:
            out.update(
                {
                    k: _scalar(spec, k)
                    for k in ("nimages", "ntrigger", "compression", "x_pixels_in_detector", "y_pixels_in_detector")
                }
            )
        beam = f.get("/entry/instrument/beam")
        out["wavelength"] = _scalar(beam, "incident_wavelength") if beam is not None else None
        return out
