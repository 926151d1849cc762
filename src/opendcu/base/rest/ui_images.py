"""Monitor images made small for the Web-UI's live view, next to the monitor routes:

    GET /ui/api/monitor/view?series=&image=&since_series=&since_image=&bin=&x0=&y0=&w=&h=&scale=&lo=&hi=&timeout=
        one region of an image, max-binned `bin` x `bin`, as one byte per output pixel (application/octet-stream):
        0..LEVELS-1 the contrast-scaled counts, GAP for module gaps, MASKED for masked/defective pixels. The
        browser maps the bytes through its colour table straight onto a canvas. Headers X-Opendcu-* say which
        image, region, binning and contrast range it is. Without series/image: the newest monitor image
        (204 when it is still the one named by since_series/since_image).
    GET /ui/api/monitor/pixel?series=&image=&x=&y=
        the counts of one pixel of a recently viewed (or buffered) monitor image, as JSON.

A 4M image (17 MB of uint32) is sent as ~0.5 MB when it is shown binned 2 x 2; binning and scaling are numba
kernels. Decoded images are kept for a few frames so that hovering and zooming do not fetch them again.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import grpc
import numba
import numpy as np
from fastapi import APIRouter, Request, Response

from opendcu.base.rest.background import in_background
from opendcu.base.rest.monitor_chunks import ChunkError, decode_chunk
from opendcu.base.rest.responses import app_error, json_response, text_error
from opendcu.proto import interfaces_pb2 as pb
from opendcu.proto import interfaces_pb2_grpc
from opendcu.proto.values import from_proto

router = APIRouter()

LEVELS = 250  # output codes 0..249: contrast levels
GAP = 250
MASKED = 251
SCALES = ("auto", "linear", "log")
MAX_OUTPUT_PIXELS = 4096 * 4096
MAX_BIN = 64
AUTO_PERCENTILES = (50.0, 99.7)  # median (background) .. the brightest 0.3 %
CACHED_IMAGES = 4
GAP_BIT = 1  # pixel_mask bit 0: gap pixel (SIMPLON pixel_mask)


@dataclass
class MonitorFrame:
    series_id: int
    image_id: int
    pixels: np.ndarray  # 2-D uint8/16/32 as the monitor serves it
    gaps: np.ndarray | None  # bool, True where the pixel mask says gap (None: mask unknown)


class BadRequest(Exception):
    pass


class FrameCache:
    """The last few decoded monitor images, and the gap mask of each series (read once per series)."""

    def __init__(self) -> None:
        self.frames: OrderedDict[tuple[int, int], MonitorFrame] = OrderedDict()
        self.gap_masks: OrderedDict[int, np.ndarray | None] = OrderedDict()

    def put(self, frame: MonitorFrame) -> None:
        self.frames[(frame.series_id, frame.image_id)] = frame
        self.frames.move_to_end((frame.series_id, frame.image_id))
        while len(self.frames) > CACHED_IMAGES:
            self.frames.popitem(last=False)


# -- kernels ---------------------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def bin_max(pixels, gaps, use_gaps, invalid, y0, x0, h, w, b, out):
    """Max of the valid pixels of each b x b block of pixels[y0:y0+h, x0:x0+w]; -1 for all-gap, -2 for all-invalid."""
    oh, ow = out.shape
    for oy in range(oh):
        ya, yb = y0 + oy * b, min(y0 + h, y0 + (oy + 1) * b)
        for ox in range(ow):
            xa, xb = x0 + ox * b, min(x0 + w, x0 + (ox + 1) * b)
            best = np.int64(-1)
            all_gap = True
            for y in range(ya, yb):
                for x in range(xa, xb):
                    v = np.int64(pixels[y, x])
                    if v == invalid:
                        if not (use_gaps and gaps[y, x]):
                            all_gap = False
                        continue
                    if v > best:
                        best = v
            out[oy, ox] = best if best >= 0 else (-1 if all_gap else -2)


@numba.njit(cache=True, nogil=True)
def to_codes(values, lo, hi, log, gap_code, masked_code, levels, out):
    """Contrast-scale binned counts into codes 0..levels-1 (linear or log between lo and hi)."""
    span = hi - lo if hi > lo else 1.0
    log_span = math.log1p(span)
    oh, ow = values.shape
    for y in range(oh):
        for x in range(ow):
            v = values[y, x]
            if v == -1:
                out[y, x] = gap_code
            elif v == -2:
                out[y, x] = masked_code
            else:
                d = v - lo
                if d <= 0:
                    t = 0.0
                elif log:
                    t = math.log1p(d) / log_span
                else:
                    t = d / span
                code = int(t * levels)
                out[y, x] = levels - 1 if code >= levels else code


def contrast_range(values: np.ndarray, scale: str, lo: float | None, hi: float | None) -> tuple[float, float]:
    valid = values[values >= 0]
    if valid.size == 0:
        return 0.0, 1.0
    if scale == "auto":
        sample = valid[:: max(1, valid.size // 200_000)]  # percentiles of a sample: fast for 16M images
        p_lo, p_hi = np.percentile(sample, AUTO_PERCENTILES)
        low = float(p_lo) if lo is None else lo
        high = float(p_hi) if hi is None else hi
    else:
        low = 0.0 if lo is None else lo
        high = float(valid.max()) if hi is None else hi
    return low, max(high, low + 1.0)


def render(
    frame: MonitorFrame, x0: int, y0: int, w: int, h: int, b: int, scale: str, lo: float | None, hi: float | None
) -> tuple[np.ndarray, float, float, int]:
    """The codes of one region (uint8, ceil(h/b) x ceil(w/b)), the contrast range used and the region's max."""
    pixels = frame.pixels
    invalid = int(np.iinfo(pixels.dtype).max)
    gaps = frame.gaps if frame.gaps is not None else np.zeros((1, 1), dtype=np.bool_)
    values = np.empty((-(-h // b), -(-w // b)), dtype=np.int64)
    bin_max(pixels, gaps, frame.gaps is not None, invalid, y0, x0, h, w, b, values)
    low, high = contrast_range(values, scale, lo, hi)
    codes = np.empty(values.shape, dtype=np.uint8)
    to_codes(values, low, high, scale == "log", GAP, MASKED, LEVELS, codes)
    return codes, low, high, int(values.max(initial=-1))


# -- fetching images -------------------------------------------------------------------------------------------------
def _cache(request: Request) -> FrameCache:
    state = request.app.state
    if not hasattr(state, "ui_frames"):
        state.ui_frames = FrameCache()
    return state.ui_frames


def _maybe_int(request: Request, name: str, low: int = 0) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer, got {raw!r}") from None
    if value < low:
        raise BadRequest(f"query parameter {name} must be >= {low}, got {value}")
    return value


def _int(request: Request, name: str, default: int, low: int = 0) -> int:
    value = _maybe_int(request, name, low)
    return default if value is None else value


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise BadRequest(f"query parameter {name} must be finite, got {raw!r}")
    return value


async def _gap_mask(request: Request, series_id: int, shape: tuple[int, int]) -> np.ndarray | None:
    """Gap pixels from the detector's pixel_mask (bit 0), read once per series; None if it does not fit."""
    cache = _cache(request)
    if series_id not in cache.gap_masks:
        gaps = None
        app = await request.app.state.apps.for_module("detector")
        try:
            descriptor = await app.get("1.8.0", "detector", "config", "pixel_mask")
            mask = from_proto(descriptor.value)
            if isinstance(mask, np.ndarray) and mask.shape == shape:
                gaps = (mask & GAP_BIT).astype(np.bool_)
        except Exception:  # no mask (app restarting, key unknown): gaps show in the masked colour
            gaps = None
        cache.gap_masks[series_id] = gaps
        while len(cache.gap_masks) > 2:
            cache.gap_masks.popitem(last=False)
    return cache.gap_masks[series_id]


async def _frame(request: Request, series: int | None, image: int | None, timeout_ms: int) -> MonitorFrame:
    """A decoded monitor image: from the cache, or fetched over gRPC (LATEST without series/image)."""
    cache = _cache(request)
    if series is not None and image is not None and (series, image) in cache.frames:
        return cache.frames[(series, image)]
    app = await request.app.state.apps.for_module("monitor")
    channel = getattr(app, "channel", None)
    if channel is None:
        raise LookupError("the monitor is not available")
    stub = interfaces_pb2_grpc.MonitorStub(channel)
    if series is None or image is None:
        query = pb.MonitorImageRequest(which=pb.MonitorImageRequest.LATEST, timeout_ms=timeout_ms, chunk=True)
    else:
        query = pb.MonitorImageRequest(
            which=pb.MonitorImageRequest.BY_ID, series_id=series, image_id=image, threshold=1, chunk=True
        )
    reply = await stub.GetImage(query)
    key = (reply.series_id, reply.image_id)
    if key in cache.frames:
        return cache.frames[key]
    pixels = await in_background(decode_chunk, reply.chunk, reply.compression, reply.dtype, tuple(reply.shape))
    frame = MonitorFrame(
        reply.series_id, reply.image_id, pixels, await _gap_mask(request, reply.series_id, pixels.shape)
    )
    cache.put(frame)
    return frame


async def _answer(call) -> Response:
    try:
        return await call()
    except BadRequest as exc:
        return text_error(400, str(exc))
    except LookupError as exc:
        return text_error(404, str(exc))
    except grpc.aio.AioRpcError as exc:
        return app_error(exc)  # 408 no image in time, 404 not buffered, 503 restarting
    except ChunkError as exc:  # app-detector answered a chunk that does not decode: not the client's fault
        return text_error(502, f"app-detector's monitor image does not decode: {exc}")


def _ids(request: Request) -> tuple[int | None, int | None]:
    series, image = _maybe_int(request, "series"), _maybe_int(request, "image")
    if (series is None) != (image is None):
        raise BadRequest("give both series and image, or neither (the newest image)")
    return series, image


@router.get("/ui/api/monitor/view", tags=["ui"], summary="A monitor image binned and contrast-scaled for a canvas")
async def view(request: Request) -> Response:
    async def call() -> Response:
        series, image = _ids(request)
        b = _int(request, "bin", 1, low=1)
        if b > MAX_BIN:
            raise BadRequest(f"bin must be 1..{MAX_BIN}, got {b}")
        scale = request.query_params.get("scale", "auto")
        if scale not in SCALES:
            raise BadRequest(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        lo, hi = _float(request, "lo"), _float(request, "hi")
        timeout = _int(request, "timeout", 500)
        if timeout > 60_000:
            raise BadRequest(f"timeout must be 0..60000 ms, got {timeout}")
        x0, y0 = _int(request, "x0", 0), _int(request, "y0", 0)
        frame = await _frame(request, series, image, timeout)
        since = (_maybe_int(request, "since_series"), _maybe_int(request, "since_image"))
        if series is None and since == (frame.series_id, frame.image_id):
            return Response(status_code=204)
        height, width = frame.pixels.shape
        if x0 >= width or y0 >= height:
            raise BadRequest(f"region start ({x0}, {y0}) is outside the {width} x {height} image")
        w = min(_int(request, "w", width, low=1), width - x0)
        h = min(_int(request, "h", height, low=1), height - y0)
        if -(-w // b) * -(-h // b) > MAX_OUTPUT_PIXELS:
            raise BadRequest(f"{w} x {h} pixels at bin {b} exceed {MAX_OUTPUT_PIXELS} output pixels: bin more")
        codes, low, high, peak = await in_background(render, frame, x0, y0, w, h, b, scale, lo, hi)
        headers = {
            "X-Opendcu-Series": str(frame.series_id),
            "X-Opendcu-Image": str(frame.image_id),
            "X-Opendcu-Image-Width": str(width),
            "X-Opendcu-Image-Height": str(height),
            "X-Opendcu-X0": str(x0),
            "X-Opendcu-Y0": str(y0),
            "X-Opendcu-W": str(w),
            "X-Opendcu-H": str(h),
            "X-Opendcu-Bin": str(b),
            "X-Opendcu-Cols": str(codes.shape[1]),
            "X-Opendcu-Rows": str(codes.shape[0]),
            "X-Opendcu-Lo": repr(low),
            "X-Opendcu-Hi": repr(high),
            "X-Opendcu-Max": str(peak),
            "X-Opendcu-Dtype": frame.pixels.dtype.name,
            "Cache-Control": "no-store",
        }
        return Response(codes.tobytes(), media_type="application/octet-stream", headers=headers)

    return await _answer(call)


@router.get("/ui/api/monitor/pixel", tags=["ui"], summary="Counts of one pixel of a monitor image")
async def pixel(request: Request) -> Response:
    async def call() -> Response:
        series, image = _ids(request)
        x, y = _maybe_int(request, "x"), _maybe_int(request, "y")
        if x is None or y is None:
            raise BadRequest("give the pixel as x and y")
        frame = await _frame(request, series, image, 500)
        height, width = frame.pixels.shape
        if x >= width or y >= height:
            raise BadRequest(f"pixel ({x}, {y}) is outside the {width} x {height} image")
        value = int(frame.pixels[y, x])
        invalid = value == int(np.iinfo(frame.pixels.dtype).max)
        kind = "counts"
        if invalid:
            kind = "gap" if frame.gaps is not None and frame.gaps[y, x] else "masked"
        return json_response(
            {"series": frame.series_id, "image": frame.image_id, "x": x, "y": y, "counts": value, "kind": kind}
        )

    return await _answer(call)
