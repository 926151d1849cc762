"""Configuration packets: round trips, and no datagram can make the decoder fail other than cleanly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opendcu.hardware.config_packet import ConfigPacket, ConfigPacketError, Kind, Status
from opendcu.hardware.udp_packet import HEADER_SIZE, pack_header, unpack_headers


def test_configure_roundtrip_and_ack():
    packet = ConfigPacket(
        Kind.CONFIGURE,
        seq=7,
        module_id=3,
        fields={
            "count_time": 0.01,
            "frame_time": 0.02,
            "nimages": 100,
            "ntrigger": 2,
            "trigger_mode": 0,
            "dest_host": "127.0.0.1",
            "dest_port": 40000,
            "series_id": 5,
            "content": '{"kind": "flood"}',
        },
    )
    decoded = ConfigPacket.decode(packet.encode())
    assert decoded == packet
    ack = ConfigPacket.decode(decoded.ack(Status.ERROR, message="no").encode())
    assert ack.is_ack and ack.kind == Kind.CONFIGURE | 0x80 and ack.seq == 7 and ack.status == Status.ERROR
    assert ack.fields == {"message": "no"}


def test_unknown_tags_are_skipped():
    data = bytearray(ConfigPacket(Kind.STATUS, 1, fields={"nimages": 3}).encode())
    data[14] = 2  # claim two fields ...
    data += (999).to_bytes(2, "little") + (3).to_bytes(2, "little") + b"abc"  # ... the second one unknown
    assert ConfigPacket.decode(bytes(data)).fields == {"nimages": 3}


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "short"),
        (b"XXXX" + bytes(12), "magic"),
        (b"ODCF\x09" + bytes(11), "version"),
        (b"ODCF\x01\x63" + bytes(10), "kind"),
    ],
)
def test_malformed_packets_are_refused(data, reason):
    with pytest.raises(ConfigPacketError, match=reason):
        ConfigPacket.decode(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_bytes_decode_or_raise_config_packet_error(data):
    try:
        ConfigPacket.decode(b"ODCF\x01\x01" + data)
    except ConfigPacketError:
        pass


def test_data_header_is_48_bytes_little_endian():
    raw = pack_header(frame_number=0x0102030405060708, packet_number=9, module_id=2, det_type=0x20)
    assert len(raw) == HEADER_SIZE == 48
    assert raw[:8] == bytes([8, 7, 6, 5, 4, 3, 2, 1]) and raw[12:16] == b"\x09\x00\x00\x00"
    assert raw[47] == 2  # version
    h = unpack_headers(raw)[0]
    assert h["frame_number"] == 0x0102030405060708 and h["module_id"] == 2 and h["det_type"] == 0x20
