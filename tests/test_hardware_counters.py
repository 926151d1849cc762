"""Counter formats on the wire (uint16, packed uint12, 8-bit float E3M5) and how packets cut a frame."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opendcu.geometry import get_model
from opendcu.hardware.config_packet import ConfigPacket, Kind
from opendcu.hardware.counters import (
    FLOAT8_DECODE,
    FLOAT8_MAX,
    SATURATED,
    decode_counts,
    encode_counts,
    float8_encode,
    float8_quantize,
)
from opendcu.hardware.udp_packet import PacketLayout


def test_float8_is_e3m5_with_top_value_4032():
    codes = np.arange(255)
    values = FLOAT8_DECODE[codes].astype(np.int64)
    assert list(values[:64]) == list(range(64))  # every count below 64 is exact
    assert FLOAT8_DECODE[0xFF] == SATURATED and float8_encode(np.array([FLOAT8_MAX]))[0] == 0xFF
    assert np.all(np.diff(values) > 0)
    np.testing.assert_array_equal(float8_encode(values), codes)  # decoded values encode back to their code
    # steps 2, 4, ..., 64 on the octaves from 64 on; the module truncates, the DAQ decodes to the middle
    assert float8_encode(np.array([64, 65, 66, 2047, 2048, 4031]))[:3].tolist() == [64, 64, 65]
    assert float8_quantize(np.array([64, 65, 2048, 2111, 4031, 4032, 70000])).tolist() == [
        65,
        65,
        2080,
        2080,
        4000,
        SATURATED,
        SATURATED,
    ]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 5000))
def test_float8_truncation_error_is_below_one_step(n):
    q = int(float8_quantize(np.array([n]))[0])
    if n >= FLOAT8_MAX:
        assert q == SATURATED
    else:
        step = 1 if n < 64 else 1 << (int(np.log2(n)) - 5)
        assert q - step < n <= q + step // 2 and abs(q - n) < step


@pytest.mark.parametrize("counter", ["uint16", "uint12", "float8"])
def test_wire_formats_widen_back_to_the_read_out_values(counter):
    rng = np.random.default_rng(1)
    top = {"uint16": 0xFFFE, "uint12": 0xFFE, "float8": 4000}[counter]
    values = rng.integers(0, top + 1, 4096).astype(np.uint16)
    values[::97] = SATURATED
    if counter == "float8":
        values = float8_quantize(values)
    wire = encode_counts(values, counter)
    assert wire.size == {"uint16": 8192, "uint12": 6144, "float8": 4096}[counter]
    np.testing.assert_array_equal(decode_counts(wire, counter, values.size), values)


def test_uint12_saturates_at_its_top_value():
    wire = encode_counts(np.array([0xFFF, 5000, 0xFFE, 1], dtype=np.uint16), "uint12")
    assert decode_counts(wire, "uint12", 4).tolist() == [SATURATED, SATURATED, 0xFFE, 1]


@pytest.mark.parametrize(
    "model,payload,per_packet,npackets,last",
    [
        ("eiger2-500k", 8192, 4096, 128, 8192),
        ("eiger2-500k", 4096, 2048, 256, 4096),
        ("pilatus4-1m", 8192, 4096, 32, 7168),  # 255 x 512 = 130560 pixels = 31.9 packets
        ("fastasic", 8192, 5460, 7, 6156),  # 12 bit: 2 pixels in 3 bytes, 36864 pixels
        ("fastasic-bin2-8bit", 8192, 8192, 2, 1024),  # 96 x 96 pixels of one byte
    ],
)
def test_packet_layouts(model, payload, per_packet, npackets, last):
    layout = PacketLayout.for_module(get_model(model).module, payload)
    assert (layout.pixels_per_packet, layout.npackets, layout.packet_bytes(npackets - 1)) == (
        per_packet,
        npackets,
        last,
    )
    assert sum(layout.packet_bytes(p) for p in range(npackets)) == layout.frame_bytes
    if model == "pilatus4-1m":
        assert layout.packet_bytes(31) == (130560 - 31 * 4096) * 2


@pytest.mark.parametrize("payload", [0, 63, 100, 8968, 9000])
def test_payload_sizes_outside_the_jumbo_frame_are_refused(payload):
    with pytest.raises(ValueError, match="payload_size"):
        PacketLayout.for_module(get_model("eiger2-500k").module, payload)


def test_new_config_fields_round_trip():
    packet = ConfigPacket(
        Kind.CONFIGURE,
        3,
        fields={
            "roi_mode": "4M",
            "drop_packets": "[[1, 2]]",
            "nsubframes": 4,
            "trigger_count_time": 0.25,
            "test_pattern": 1,
        },
    )
    assert ConfigPacket.decode(packet.encode()) == packet
