"""Stream V1 ("legacy") multipart messages: dheader at arm, dimage per image, dseries_end (spec/streams.md §2).

Decisions (spec §2.6): dconfig times in integer ns, booleans true/false, header_appendix only with `all`,
header at arm, `hash` = MD5 of part 2. The data blob is the pipeline's chunk: `bs<bits>-lz4<` is the HDF5
bitshuffle framing (12-byte header) byte for byte. Legacy `lz4<` is ONE plain LZ4 block without header, which
the HDF5 LZ4 framing is not; rather than recompress, lz4 images go out decoded as raw `<` pixels.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from opendcu.app_detector.interfaces.stream.timing import image_times_ns
from opendcu.app_detector.interfaces.stream.v2 import (
    FLOAT8_KEY,
    countrate_table,
    flatfield,
    float8_decoding,
    pixel_mask,
)
from opendcu.app_detector.series import Series

#: the keys libertem-dectris requires in the config part (spec §2.5)
REQUIRED_CONFIG_KEYS = (
    "ntrigger",
    "nimages",
    "trigger_mode",
    "x_pixels_in_detector",
    "y_pixels_in_detector",
    "bit_depth_image",
)


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def appendix_bytes(value: Any) -> bytes:
    """The appendix part: a string as is, any other JSON value serialised."""
    return value.encode() if isinstance(value, str) else _json(value)


def _scalar(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (bool, int, float, str)) for v in value)
    return isinstance(value, (bool, int, float, str)) or value is None


def header_config(series: Series) -> dict[str, Any]:
    """Part 2: the detector config at arm (scalars and 1-D lists only), with the series' own counts."""
    config = {k: v for k, v in sorted(series.detector_config.items()) if _scalar(v)}
    config.update(
        nimages=series.nimages,
        ntrigger=series.ntrigger,
        trigger_mode=series.trigger_mode,
        bit_depth_image=series.settings.bit_depth_image,
        compression=series.settings.compression,
        count_time=series.count_time,
        frame_time=series.frame_time,
    )
    decoding = float8_decoding(series)
    if decoding is not None:  # E3M5 codes in the images: the decode table (v2.float8_decoding)
        config[FLOAT8_KEY] = {**decoding, "decode_lookup_table": decoding["decode_lookup_table"].tolist()}
    return config


def header_parts(series: Series, header_detail: str, header_appendix: Any) -> list[bytes]:
    """The dheader-1.0 message: 1 part (none), 2 (basic) or 8 (+ appendix) (all)."""
    parts = [_json({"htype": "dheader-1.0", "series": series.series_id, "header_detail": header_detail})]
    if header_detail in ("basic", "all"):
        parts.append(_json(header_config(series)))
    if header_detail == "all":
        for htype, array, dtype in (
            ("dflatfield-1.0", flatfield(series), "float32"),
            ("dpixelmask-1.0", pixel_mask(series), "uint32"),
        ):
            h, w = array.shape
            parts.append(_json({"htype": htype, "shape": [w, h], "type": dtype}))
            parts.append(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())
        table = countrate_table(series)
        parts.append(_json({"htype": "dcountrate_table-1.0", "shape": list(table.shape), "type": "float32"}))
        parts.append(np.ascontiguousarray(table, dtype="<f4").tobytes())
        if header_appendix not in (None, ""):
            parts.append(appendix_bytes(header_appendix))
    return parts


def encoding(compression: str, dtype: np.dtype) -> str:
    """The V1 encoding string of the blob we send for `compression`."""
    if compression == "bslz4":
        return f"bs{np.dtype(dtype).itemsize * 8}-lz4<"
    return "<"  # "none", and "lz4" sent decoded (see module docstring)


def image_parts(series: Series, image: Any, image_appendix: Any) -> list[Any]:
    """dimage-1.0, dimage_d-1.0, the blob, dconfig-1.0 [, appendix] of one CompressedImage."""
    h, w = image.shape
    blob = image.data if image.compression in ("bslz4", "none") else np.ascontiguousarray(image.decode()).view(np.uint8)
    dtype = np.dtype(image.dtype)
    part2 = _json(
        {
            "htype": "dimage_d-1.0",
            "shape": [w, h],
            "type": dtype.name,
            "encoding": encoding(image.compression, dtype),
            "size": int(blob.nbytes),
        }
    )
    part1 = _json(
        {
            "htype": "dimage-1.0",
            "series": series.series_id,
            "frame": image.image_id,
            "hash": hashlib.md5(part2).hexdigest(),
        }
    )
    start, stop, real = image_times_ns(series, image.image_id)
    parts = [
        part1,
        part2,
        blob,
        _json({"htype": "dconfig-1.0", "start_time": start, "stop_time": stop, "real_time": real}),
    ]
    if image_appendix not in (None, ""):
        parts.append(appendix_bytes(image_appendix))
    return parts


def end_parts(series_id: int) -> list[bytes]:
    return [_json({"htype": "dseries_end-1.0", "series": series_id})]
