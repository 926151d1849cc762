"""Stream V2 (CBOR) messages: start at arm, one image message per image, end (spec/streams.md §3).

Every message is `d9 d9 f7` + a map whose first key is `type`. Image data is
`tag40([[h, w], tag64|69|70(tag56500([algorithm, elem_size, chunk]))])`, where `chunk` is the exact HDF5 chunk
the pipeline produced (never recompressed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from opendcu.app_detector.interfaces.stream import cbor
from opendcu.app_detector.interfaces.stream.timing import Rational, image_times, start_ticks
from opendcu.app_detector.series import Series
from opendcu.codecs.float8 import DECODE_DESCRIPTION, DECODE_UNBIASED_TABLE

CHANNEL = "threshold_1"
#: opendcu's key (V2 start message, V1 header config) with the decode table of 8-bit float images
FLOAT8_KEY = "opendcu_float8"
GONIOMETER_AXES = ("chi", "kappa", "omega", "phi", "two_theta")
#: algorithm names on the wire for our codec names; "none" is a plain byte string
WIRE_ALGORITHM = {"bslz4": "bslz4", "lz4": "lz4", "none": None}
_UNSET = object()


@dataclass(frozen=True)
class Channel:
    """One channel of an image: the chunk bytes and how to read them."""

    shape: tuple[int, int]
    dtype: np.dtype
    algorithm: str | None  # "bslz4", "lz4" or None (uncompressed)
    payload: Any  # bytes-like


def image_message(
    series_id: int,
    series_unique_id: str,
    image_id: int,
    real_time: Rational,
    series_date: str,
    start_time: Rational,
    stop_time: Rational,
    data: Mapping[str, Channel],
    user_data: Any = _UNSET,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The image message in DECTRIS key order; `extra` keys (annotations) follow `data`."""
    message: dict[str, Any] = {
        "type": "image",
        "series_id": series_id,
        "series_unique_id": series_unique_id,
        "image_id": image_id,
        "real_time": list(real_time),
        "series_date": cbor.Tagged(cbor.TAG_DATETIME, series_date),
        "start_time": list(start_time),
        "stop_time": list(stop_time),
    }
    if user_data is not _UNSET:
        message["user_data"] = user_data
    message["data"] = {
        name: cbor.compressed_array(c.shape, c.dtype, c.algorithm, c.payload) for name, c in data.items()
    }
    _append_extra(message, extra, _STANDARD_IMAGE_KEYS)
    return cbor.dumps(message)


def _append_extra(message: dict[str, Any], extra: Mapping[str, Any] | None, standard: Any) -> None:
    """Add our own keys after the standard ones (DECTRIS consumers skip keys they do not know)."""
    for key, value in (extra or {}).items():
        if key in standard:
            raise ValueError(f"annotation {key!r} would replace a standard {message['type']} key")
        message[key] = value


def end_message(series_id: int, series_unique_id: str, extra: Mapping[str, Any] | None = None) -> bytes:
    """The end message; `extra` keys (`Series.end_annotations`) follow the standard ones (DECTRIS consumers
    skip keys they do not know, in the end message as in the others)."""
    message: dict[str, Any] = {"type": "end", "series_id": series_id, "series_unique_id": series_unique_id}
    _append_extra(message, extra, tuple(message))
    return cbor.dumps(message)


class ImageMessageEncoder:
    """The image messages of one series, fast: everything that is the same for every image of the series is
    encoded once at arm; per image only the id, the times, the chunk's length head and the annotations are.
    Produces exactly the bytes of `image_message` (tested), with one copy of the chunk (into the message)."""

    def __init__(self, series: Series, shape: tuple[int, int], dtype: np.dtype, compression: str, image_appendix: Any):
        def enc(*items: Any) -> bytes:
            out: list[Any] = []
            for item in items:
                cbor.encode_into(out, item)
            return b"".join(out)

        self.series = series
        self.compression = compression
        ids = enc("type", "image", "series_id", series.series_id, "series_unique_id", series.unique_id)
        date = enc("series_date", cbor.Tagged(cbor.TAG_DATETIME, series_date(series)))
        has_user_data = not appendix_empty(image_appendix)
        user_data = enc("user_data", image_appendix) if has_user_data else b""
        self._nkeys = 10 if has_user_data else 9
        # "data": {"threshold_1": tag40([[h, w], tagNN(tag56500([alg, elem_size, <bytes>]))])} up to the bytes
        marker = b"\x00opendcu-payload\x00"
        template = enc("data", {CHANNEL: cbor.compressed_array(shape, dtype, WIRE_ALGORITHM[compression], marker)})
        data_prefix = template[: template.index(cbor.head(2, len(marker)) + marker)]
        # the message in pieces: constant bytes between the few integers that change from image to image
        # (the times are [ticks, frequency] pairs; real_time is the same for every image of a series)
        (count, frequency), _, _ = image_times(series, 0)
        self._count, self._frequency = count, frequency
        self._frequency_head = cbor.head(0, frequency)
        pair = cbor.head(4, 2)
        self._after_map_head = ids + enc("image_id")
        self._before_id = cbor.SELF_DESCRIBED + cbor.head(5, self._nkeys) + self._after_map_head
        self._before_start = enc("real_time", [count, frequency]) + date + enc("start_time") + pair
        self._before_stop = enc("stop_time") + pair
        self._before_data = user_data + data_prefix

    def encode(self, image_id: int, payload: Any, annotations: Mapping[str, Any] | None = None) -> bytes:
        start = start_ticks(self.series, image_id, self._frequency)
        if isinstance(payload, np.ndarray):
            payload = memoryview(np.ascontiguousarray(payload)).cast("B")
        before_id = self._before_id
        if annotations:  # more keys in the map: its head changes
            map_head = cbor.head(5, self._nkeys + len(annotations))
            before_id = cbor.SELF_DESCRIBED + map_head + self._after_map_head
        head_of = cbor.head
        out: list[Any] = [
            before_id,
            head_of(0, image_id),
            self._before_start,
            head_of(0, start),
            self._frequency_head,
            self._before_stop,
            head_of(0, start + self._count),
            self._frequency_head,
            self._before_data,
            head_of(2, payload.nbytes),
            payload,
        ]
        if not annotations:
            return b"".join(out)
        for key, value in annotations.items():
            if key in _STANDARD_IMAGE_KEYS:
                raise ValueError(f"annotation {key!r} would replace a standard image key")
            cbor.encode_into(out, key)
            cbor.encode_into(out, value)
        return b"".join(out)


_STANDARD_IMAGE_KEYS = frozenset(
    (
        "type",
        "series_id",
        "series_unique_id",
        "image_id",
        "real_time",
        "series_date",
        "start_time",
        "stop_time",
        "user_data",
        "data",
    )
)


def appendix_empty(value: Any) -> bool:
    return value is None or value == ""


def series_date(series: Series) -> str:
    return series.detector_config.get("data_collection_date", "") or "1970-01-01T00:00:00.000+00:00"


def start_message(series: Series, header_detail: str, header_appendix: Any) -> bytes:
    """The start message (spec §3.2): `type`, `series_id`, `series_unique_id`, then the rest alphabetically.

    Flatfield, pixel mask and the count-rate lookup table are only sent with header_detail `all`.
    """
    cfg = series.detector_config
    h, w = series_shape(series)
    px, py = float(cfg.get("x_pixel_size", 75e-6)), float(cfg.get("y_pixel_size", 75e-6))
    bcx, bcy = float(cfg.get("beam_center_x", 0.0)), float(cfg.get("beam_center_y", 0.0))
    energy = float(cfg.get("photon_energy", cfg.get("incident_energy", 0.0)))
    rest: dict[str, Any] = {
        "arm_date": cbor.Tagged(cbor.TAG_DATETIME, series_date(series)),
        "beam_center_x": bcx,
        "beam_center_y": bcy,
        "channels": [CHANNEL],
        "count_time": float(series.count_time),
        "countrate_correction_enabled": bool(cfg.get("countrate_correction_applied", False)),
        "detector_description": str(cfg.get("description", "")),
        "detector_serial_number": str(cfg.get("detector_number", "")),
        "detector_translation": [bcx * px, bcy * py, float(cfg.get("detector_distance", 0.0))],
        "flatfield_enabled": bool(cfg.get("flatfield_correction_applied", False)),
        "frame_time": float(series.frame_time),
        "goniometer": {
            axis: {"increment": float(cfg.get(f"{axis}_increment", 0.0)), "start": float(cfg.get(f"{axis}_start", 0.0))}
            for axis in GONIOMETER_AXES
        },
        "image_dtype": series.settings.dtype.name,
        "image_size_x": w,
        "image_size_y": h,
        "incident_energy": energy,
        "incident_wavelength": float(cfg.get("wavelength", 12398.42 / energy if energy else 0.0)),
        "number_of_images": series.nimages_total,
        "pixel_mask_enabled": bool(cfg.get("pixel_mask_applied", series.settings.pixel_mask_applied)),
        "pixel_size_x": px,
        "pixel_size_y": py,
        "saturation_value": int(cfg.get("countrate_correction_count_cutoff", series.settings.error_value - 1)),
        "sensor_material": str(cfg.get("sensor_material", "Si")),
        "sensor_thickness": float(cfg.get("sensor_thickness", 0.00045)),
        "threshold_energy": {CHANNEL: float(cfg.get("threshold_energy", energy / 2))},
        "virtual_pixel_interpolation_enabled": bool(cfg.get("virtual_pixel_correction_applied", False)),
    }
    if header_detail == "all":
        rest["countrate_correction_lookup_table"] = cbor.typed_array(countrate_lookup_table(series))
        rest["flatfield"] = {CHANNEL: np.asarray(flatfield(series), dtype=np.float32)}
        rest["pixel_mask"] = {CHANNEL: np.asarray(pixel_mask(series), dtype=np.uint32)}
    if not appendix_empty(header_appendix):
        rest["user_data"] = header_appendix
    message = {"type": "start", "series_id": series.series_id, "series_unique_id": series.unique_id}
    message.update(sorted(rest.items()))
    decoding = float8_decoding(series)
    if decoding is not None:  # opendcu's 8-bit float counter, after the standard keys: codes -> counts
        message[FLOAT8_KEY] = {**decoding, "decode_lookup_table": cbor.typed_array(decoding["decode_lookup_table"])}
    return cbor.dumps(message)


# -- header arrays of a series (shared by V1 and V2) ----------------------------------------------------------------
def float8_decoding(series: Series) -> dict[str, Any] | None:
    """With the 8-bit float counter: how to turn the image codes into counts (`FLOAT8_KEY` of the V2 start message
    and of the V1 header config; consumers that do not know it skip it). counts = decode_lookup_table[code], the
    middle of the code's interval (unbiased for the truncating encoder); `invalid_code` 255 marks saturated,
    masked and invalid pixels. None for other series."""
    if not series.settings.float8_encoding_applied:
        return None
    return {**DECODE_DESCRIPTION, "decode_lookup_table": DECODE_UNBIASED_TABLE}


def series_shape(series: Series) -> tuple[int, int]:
    cfg = series.detector_config
    return int(cfg["y_pixels_in_detector"]), int(cfg["x_pixels_in_detector"])


def pixel_mask(series: Series) -> np.ndarray:
    return series.pixel_mask if series.pixel_mask is not None else np.zeros(series_shape(series), np.uint32)


def flatfield(series: Series) -> np.ndarray:
    return series.flatfield if series.flatfield is not None else np.ones(series_shape(series), np.float32)


def countrate_table(series: Series) -> np.ndarray:
    """The count-rate correction table as 2 x N float32 [measured, corrected]; identity when none is set."""
    table = series.countrate_table
    if table is not None:
        return np.asarray(table, dtype=np.float32).reshape(2, -1)
    cutoff = int(series.detector_config.get("countrate_correction_count_cutoff", 4000))
    n = max(1, min(cutoff, 4000))
    axis = np.arange(n, dtype=np.float32)
    return np.stack([axis, axis])


def countrate_lookup_table(series: Series) -> np.ndarray:
    """corrected = LUT[measured], uint32, from the [measured, corrected] table."""
    table = countrate_table(series)
    measured = np.arange(int(table[0].max()) + 1 if table.size else 1)
    return np.rint(np.interp(measured, table[0], table[1])).astype(np.uint32)
