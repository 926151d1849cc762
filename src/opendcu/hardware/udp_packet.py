"""UDP data packets sent by detector modules: a 48-byte header modelled on the SLS detector header v2.

Layout (little-endian, spec/detector-geometry.md §6):

| off | size | field         | opendcu meaning                                                   |
|-----|------|---------------|-------------------------------------------------------------------|
| 0   | 8    | frame_number  | image number within the series, from 1                            |
| 8   | 4    | exp_length    | count time of this frame in 0.1 us units                          |
| 12  | 4    | packet_number | packet index within the module frame, from 0                      |
| 16  | 8    | det_spec1     | series id (arm's sequence id): packets of another series are foreign |
| 24  | 8    | timestamp     | since start of acquisition, 0.1 us units                          |
| 32  | 2    | module_id     | module index, row-major in the module grid                        |
| 34  | 2    | row           | module row in the detector                                        |
| 36  | 2    | column        | module column in the detector                                     |
| 38  | 2    | det_spec2     | sub-frame index (auto-summation), from 0                          |
| 40  | 4    | det_spec3     | flags: bit 31 = external trigger input level                      |
| 44  | 2    | det_spec4     | number of sub-frames per image                                    |
| 46  | 1    | det_type      | detector type code (ModuleType.udp_detector_type)                 |
| 47  | 1    | version       | 2                                                                 |

The payload follows the header: consecutive bytes of the module's raw frame (row-major, little-endian
counters), `payload_size` bytes per packet (8192 by default), the last packet possibly shorter.
"""

from __future__ import annotations

import numpy as np

HEADER_DTYPE = np.dtype(
    [
        ("frame_number", "<u8"),
        ("exp_length", "<u4"),
        ("packet_number", "<u4"),
        ("series_id", "<u8"),
        ("timestamp", "<u8"),
        ("module_id", "<u2"),
        ("row", "<u2"),
        ("column", "<u2"),
        ("subframe", "<u2"),
        ("flags", "<u4"),
        ("nsubframes", "<u2"),
        ("det_type", "u1"),
        ("version", "u1"),
    ]
)
HEADER_SIZE = HEADER_DTYPE.itemsize
assert HEADER_SIZE == 48
HEADER_VERSION = 2
DEFAULT_PAYLOAD = 8192
FLAG_EXTERNAL_TRIGGER = 1 << 31


def packets_per_frame(frame_bytes: int, payload_size: int) -> int:
    """Number of packets one module frame needs."""
    return -(-frame_bytes // payload_size)


def pack_header(**fields: int) -> bytes:
    """Encode one header (fields not given are 0; version defaults to 2)."""
    header = np.zeros((), dtype=HEADER_DTYPE)
    header["version"] = HEADER_VERSION
    for name, value in fields.items():
        header[name] = value
    return header.tobytes()


def unpack_headers(buf: bytes | memoryview | np.ndarray, count: int = 1, stride: int = HEADER_SIZE) -> np.ndarray:
    """View `count` headers spaced `stride` bytes apart in `buf` as a structured array (no copy)."""
    raw = np.frombuffer(buf, dtype=np.uint8)
    return np.ndarray((count,), dtype=HEADER_DTYPE, buffer=raw, strides=(stride,))
