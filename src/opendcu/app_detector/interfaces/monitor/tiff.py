"""Monitor TIFFs as DECTRIS serves them (spec/monitor-tiff.md §2).

Layout: little-endian header `II*\\0`, the pixels as ONE uncompressed strip right after it (StripOffsets = 8),
then the first IFD with the basic tags inline (count 1, so naive parsers such as ADEiger's read them from the
value field), RowsPerStrip = height, and the private tag 51192 pointing to DECTRIS' metadata IFD.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

DECTRIS_PRIVATE_TAG = 51192  # 0xC7F8

_SHORT, _LONG, _ASCII, _DOUBLE = 3, 4, 2, 12
_TYPE_FORMAT = {_SHORT: "H", _LONG: "I", _DOUBLE: "d"}
_TYPE_SIZE = {_SHORT: 2, _LONG: 4, _ASCII: 1, _DOUBLE: 8}


@dataclass(frozen=True)
class MonitorMetadata:
    """What the private IFD (tag 51192) tells about the image."""

    series_unique_id: str
    series_number: int
    image_number: int
    image_date_time: str  # RFC 3339 with ns
    threshold_id: int
    threshold_energy: float  # eV
    exposure_time: float  # s
    incident_energy: float  # eV
    incident_wavelength: float  # angstrom
    lost_pixel_count: int
    beam_center: tuple[float, float]  # pixels
    detector_distance: float  # m


Entry = tuple[int, int, object]  # (tag, type, value: int | float | str | tuple)


def _values(typ: int, value: object) -> tuple:
    if typ == _ASCII:
        return tuple(value.encode() + b"\0")  # type: ignore[union-attr]
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _ifd(entries: list[Entry], ifd_offset: int) -> tuple[bytes, bytes]:
    """An IFD at `ifd_offset` and its out-of-line values (placed right after it)."""
    entries = sorted(entries, key=lambda e: e[0])
    n = len(entries)
    extra_offset = ifd_offset + 2 + 12 * n + 4
    table = bytearray(struct.pack("<H", n))
    extra = bytearray()
    for tag, typ, value in entries:
        values = _values(typ, value)
        raw = bytes(values) if typ == _ASCII else struct.pack(f"<{len(values)}{_TYPE_FORMAT[typ]}", *values)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\0")
        else:
            if (extra_offset + len(extra)) % 2:
                extra.append(0)  # values start on a word boundary
            field = struct.pack("<I", extra_offset + len(extra))
            extra += raw
        table += struct.pack("<HHI", tag, typ, len(values)) + field
    table += struct.pack("<I", 0)  # no next IFD
    return bytes(table), bytes(extra)


def encode_tiff(pixels: np.ndarray, meta: MonitorMetadata | None = None) -> bytes:
    """A single-strip, uncompressed, little-endian TIFF of a 2-D uint8/16/32 image."""
    if pixels.ndim != 2 or pixels.dtype.kind != "u" or pixels.dtype.itemsize not in (1, 2, 4):
        raise ValueError(f"monitor TIFFs hold 2-D uint8/16/32 images, not {pixels.ndim}-D {pixels.dtype}")
    h, w = pixels.shape
    # the pixels go into the answer with one copy (b"".join below): a 4M image is 17 MB, and every intermediate
    # bytes object of that size costs fresh pages (the concatenation this replaces took 22 ms, 90 ms under load)
    data = memoryview(np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<"))).cast("B")
    ifd_offset = 8 + len(data) + (len(data) % 2)
    size_type = _SHORT if max(h, w) < 0x10000 else _LONG
    entries: list[Entry] = [
        (256, size_type, w),
        (257, size_type, h),
        (258, _SHORT, pixels.dtype.itemsize * 8),
        (259, _SHORT, 1),  # no compression
        (262, _SHORT, 1),  # BlackIsZero
        (273, _LONG, 8),  # the strip starts right after the header
        (277, _SHORT, 1),
        (278, _LONG, h),
        (279, _LONG, len(data)),
        (339, _SHORT, 1),  # unsigned integers
    ]
    private = b""
    if meta is not None:
        main_size = 2 + 12 * (len(entries) + 1) + 4
        private_offset = ifd_offset + main_size
        entries.append((DECTRIS_PRIVATE_TAG, _LONG, private_offset))
        table, extra = _ifd(_private_entries(meta), private_offset)
        private = table + extra
    table, extra = _ifd(entries, ifd_offset)
    assert not extra  # every basic tag is inline
    header = b"II*\0" + struct.pack("<I", ifd_offset)
    return b"".join((header, data, b"\0" * (len(data) % 2), table, private))


def _private_entries(m: MonitorMetadata) -> list[Entry]:
    return [
        (0x0000, _LONG, 0),  # IfdVersion
        (0x0001, _ASCII, m.series_unique_id),
        (0x0002, _LONG, m.series_number),
        (0x0003, _LONG, m.image_number),
        (0x0004, _ASCII, m.image_date_time),
        (0x0005, _SHORT, m.threshold_id),
        (0x0006, _DOUBLE, m.threshold_energy),
        (0x0007, _DOUBLE, m.exposure_time),
        (0x0009, _DOUBLE, m.incident_energy),
        (0x000A, _DOUBLE, m.incident_wavelength),
        (0x0012, _LONG, m.lost_pixel_count),
        (0x0016, _DOUBLE, tuple(m.beam_center)),
        (0x0017, _DOUBLE, m.detector_distance),
    ]
