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

The payload follows the header: the module's raw (sub-)frame in its counter format (hardware/counters.py),
row-major, cut into packets of whole pixels: `PacketLayout` says which pixels each packet carries. With the
default uint16 counters and 8192-byte payloads a packet carries 4096 pixels (an EIGER2 module frame is 128
packets); only the last packet of a frame may be shorter. Packet numbers restart at 0 in every sub-frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendcu.geometry.models import COUNTER_BITS, ModuleType
from opendcu.hardware.counters import PIXEL_GROUP

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


MIN_PAYLOAD, MAX_PAYLOAD = 64, 8960  # jumbo frames: 9000-byte MTU minus IP/UDP and our header


def packets_per_frame(frame_bytes: int, payload_size: int) -> int:
    """Number of packets one module frame of uint16 counters needs."""
    return -(-frame_bytes // payload_size)


@dataclass(frozen=True)
class PacketLayout:
    """How one module (sub-)frame is cut into data packets."""

    counter: str
    npixels: int  # read-out pixels of one module frame
    pixels_per_packet: int
    npackets: int

    @classmethod
    def for_module(cls, module: ModuleType, payload_size: int) -> PacketLayout:
        """The layout for `module` with packets of at most `payload_size` payload bytes."""
        if not MIN_PAYLOAD <= payload_size <= MAX_PAYLOAD or payload_size % 8:
            raise ValueError(
                f"payload_size must be a multiple of 8 in [{MIN_PAYLOAD}, {MAX_PAYLOAD}], got {payload_size}"
            )
        group = PIXEL_GROUP[module.counter]
        pixels = payload_size * 8 // module.counter_bits // group * group
        return cls(module.counter, module.raw_pixels, pixels, -(-module.raw_pixels // pixels))

    @property
    def bits(self) -> int:
        return COUNTER_BITS[self.counter]

    def packet_pixels(self, packet: int) -> tuple[int, int]:
        """[start, stop) of the pixels packet `packet` carries."""
        start = packet * self.pixels_per_packet
        return start, min(start + self.pixels_per_packet, self.npixels)

    def packet_bytes(self, packet: int) -> int:
        """Payload bytes of packet `packet`."""
        start, stop = self.packet_pixels(packet)
        return (stop - start) * self.bits // 8

    @property
    def frame_bytes(self) -> int:
        return self.npixels * self.bits // 8


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
