"""Configuration packets: how the DCU configures, starts and stops detector modules over UDP.

Wire format (little-endian), one UDP datagram per packet:

    header, 16 bytes:  magic b"ODCF" | version u8 (=1) | kind u8 | status u16 | seq u32 | module_id u16 | nfields u16
    nfields times:     tag u16 | length u16 | value (length bytes)

`kind` is a request (CONFIGURE, TRIGGER, STOP, STATUS) or an acknowledgement (request kind | 0x80) that echoes
`seq`. `status` is 0 in requests and OK/ERROR in acknowledgements; an ERROR acknowledgement carries a
`message` field. Fields are typed by their tag (FIELDS below); unknown tags are skipped so that old and new
peers interoperate. A module answers every well-formed request with exactly one acknowledgement.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"ODCF"
VERSION = 1
_HEADER = struct.Struct("<4sBBHIHH")
_FIELD = struct.Struct("<HH")
ACK_BIT = 0x80
MAX_DATAGRAM = 8192


class Kind(enum.IntEnum):
    CONFIGURE = 1  # set acquisition parameters (and arm)
    TRIGGER = 2  # software trigger: acquire the images of one trigger
    STOP = 3  # abort the running series
    STATUS = 4  # report state and counters
    EXT_TRIGGER = 5  # simulated external trigger input (exts: edge, exte: gate of `count_time`)


class Status(enum.IntEnum):
    OK = 0
    ERROR = 1


class TriggerMode(enum.IntEnum):
    INTS = 0
    INTE = 1
    EXTS = 2
    EXTE = 3


# tag -> (name, struct format or "str")
FIELDS: dict[int, tuple[str, str]] = {
    1: ("count_time", "d"),
    2: ("frame_time", "d"),
    3: ("nimages", "I"),
    4: ("ntrigger", "I"),
    5: ("threshold_energy", "d"),
    6: ("trigger_mode", "B"),
    7: ("test_pattern", "B"),  # non-zero: send the exact test pattern instead of the scene
    8: ("dest_host", "str"),
    9: ("dest_port", "H"),
    10: ("payload_size", "H"),
    11: ("series_id", "Q"),
    12: ("seed", "Q"),
    13: ("content", "str"),  # simulator only: a JSON scene spec that replaces the simulator's own (test harnesses)
    14: ("nsubframes", "H"),
    15: ("photon_energy", "d"),
    16: ("message", "str"),
    17: ("state", "str"),
    18: ("frames_sent", "Q"),
    19: ("packets_sent", "Q"),
    20: ("trigger_count_time", "d"),  # inte: count time of this trigger; exte: length of this gate
    21: ("roi_mode", "str"),  # SIMPLON roi_mode of the series ("" / "disabled" / "4M")
    22: ("drop_packets", "str"),  # loss injection (simulator only): JSON [[frame, (subframe,) packet], ...]
    # the experiment at arm as JSON (wavelength, distance, beam centre, count and frame time, omega): what a
    # simulated module renders its scene for; a real module ignores it, as it ignores every unknown field
    23: ("experiment", "str"),
    24: ("data_source_host", "str"),  # CONFIGURE ack: the address the module's data packets come from
    25: ("data_source_port", "H"),  # ... and their source port (the DAQ accepts data only from there)
}
TAGS = {name: (tag, fmt) for tag, (name, fmt) in FIELDS.items()}


class ConfigPacketError(ValueError):
    """A datagram that is not a valid configuration packet."""


@dataclass
class ConfigPacket:
    kind: int
    seq: int
    module_id: int = 0
    status: int = Status.OK
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def is_ack(self) -> bool:
        return bool(self.kind & ACK_BIT)

    def ack(self, status: Status = Status.OK, **fields: Any) -> ConfigPacket:
        """The acknowledgement that answers this request."""
        return ConfigPacket(self.kind | ACK_BIT, self.seq, self.module_id, status, fields)

    def encode(self) -> bytes:
        parts = [_HEADER.pack(MAGIC, VERSION, self.kind, self.status, self.seq, self.module_id, len(self.fields))]
        for name, value in self.fields.items():
            try:
                tag, fmt = TAGS[name]
            except KeyError:
                raise ConfigPacketError(f"unknown config field {name!r}") from None
            data = str(value).encode() if fmt == "str" else struct.pack("<" + fmt, value)
            parts.append(_FIELD.pack(tag, len(data)) + data)
        out = b"".join(parts)
        if len(out) > MAX_DATAGRAM:
            raise ConfigPacketError(f"config packet of {len(out)} bytes exceeds {MAX_DATAGRAM}")
        return out

    @classmethod
    def decode(cls, data: bytes) -> ConfigPacket:
        if len(data) < _HEADER.size:
            raise ConfigPacketError(f"short config packet ({len(data)} bytes)")
        magic, version, kind, status, seq, module_id, nfields = _HEADER.unpack_from(data, 0)
        if magic != MAGIC:
            raise ConfigPacketError("bad magic")
        if version != VERSION:
            raise ConfigPacketError(f"unsupported config packet version {version}")
        if (kind & ~ACK_BIT) not in Kind._value2member_map_:
            raise ConfigPacketError(f"unknown packet kind {kind}")
        fields: dict[str, Any] = {}
        offset = _HEADER.size
        for _ in range(nfields):
            if offset + _FIELD.size > len(data):
                raise ConfigPacketError("truncated field header")
            tag, length = _FIELD.unpack_from(data, offset)
            offset += _FIELD.size
            value = data[offset : offset + length]
            if len(value) != length:
                raise ConfigPacketError("truncated field value")
            offset += length
            if tag not in FIELDS:
                continue
            name, fmt = FIELDS[tag]
            try:
                fields[name] = value.decode() if fmt == "str" else struct.unpack("<" + fmt, value)[0]
            except (struct.error, UnicodeDecodeError) as exc:
                raise ConfigPacketError(f"bad value for {name}: {exc}") from None
        return cls(kind, seq, module_id, status, fields)
