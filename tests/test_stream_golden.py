"""Stream V2 against the real DECTRIS messages: our decoder reads them exactly, our encoder writes them byte for
byte (from their compressed payloads, and for bslz4 from their pixels through our codec)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cbor2
import numpy as np
import pytest

from opendcu.app_detector.interfaces.stream import v2
from opendcu.app_detector.interfaces.stream.decoder import StreamDecodeError, decode_v2, typed_array_dtype
from opendcu.codecs import get_codec


def golden_messages(golden_dir: Path) -> list[Path]:
    return sorted((golden_dir / "stream_v2").glob("*/*.cbor"))


@pytest.fixture(scope="module")
def expected(golden_dir: Path) -> dict:
    return json.loads((golden_dir / "expected.json").read_text())["stream_v2"]


def series_date_text(raw: bytes) -> str:
    """The tag-0 text exactly as on the wire (cbor2 would turn it into a datetime)."""
    i = raw.index(b"\xc0\x78")
    return raw[i + 3 : i + 3 + raw[i + 2]].decode()


def test_decoder_reproduces_expected_values(golden_dir: Path, expected: dict):
    paths = golden_messages(golden_dir)
    assert len(paths) == 20
    for path in paths:
        raw = path.read_bytes()
        want = expected[str(path.relative_to(golden_dir))]
        msg = decode_v2(raw)
        assert list(msg) == want["key_order"]
        for key in ("type", "series_id", "series_unique_id"):
            assert msg[key] == want[key]
        if msg["type"] == "end":
            continue
        for key in ("image_id", "real_time", "start_time", "stop_time", "user_data"):
            assert msg[key] == want[key], key
        assert list(msg["data"]) == list(want["data"])
        for name, arr in msg["data"].items():
            w = want["data"][name]
            assert list(arr.shape) == w["shape"] and arr.dtype.name == w["dtype"]
            assert int(arr.sum(dtype=np.uint64)) == w["sum"]
            assert int((arr == np.iinfo(arr.dtype).max).sum()) == w["n_max"]
            assert hashlib.sha256(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).hexdigest() == w["sha256"]


def test_encoder_reproduces_every_message_byte_for_byte(golden_dir: Path):
    for path in golden_messages(golden_dir):
        raw = path.read_bytes()
        wire = cbor2.loads(raw)
        msg = decode_v2(raw)
        if msg["type"] == "end":
            assert v2.end_message(msg["series_id"], msg["series_unique_id"]) == raw
            continue
        channels = {}
        for name, tagged in wire["data"].items():
            dims, typed = tagged.value
            algorithm, _elem_size, payload = typed.value.value
            channels[name] = v2.Channel(tuple(dims), typed_array_dtype(typed.tag), algorithm, payload)
        out = v2.image_message(
            msg["series_id"],
            msg["series_unique_id"],
            msg["image_id"],
            tuple(msg["real_time"]),
            series_date_text(raw),
            tuple(msg["start_time"]),
            tuple(msg["stop_time"]),
            channels,
            msg["user_data"],
        )
        assert out == raw, path


def test_bslz4_messages_from_pixels_are_identical(golden_dir: Path):
    """Compress the decoded pixels with our codec and encode: the DECTRIS bytes come out."""
    codec = get_codec("bslz4")
    paths = [p for p in golden_messages(golden_dir) if "bslz4" in p.parent.name and p.name != "000011.cbor"]
    assert len(paths) == 9
    for path in paths:
        raw = path.read_bytes()
        msg = decode_v2(raw)
        channels = {
            name: v2.Channel(arr.shape, arr.dtype, "bslz4", codec.encode(arr)) for name, arr in msg["data"].items()
        }
        out = v2.image_message(
            msg["series_id"],
            msg["series_unique_id"],
            msg["image_id"],
            tuple(msg["real_time"]),
            series_date_text(raw),
            tuple(msg["start_time"]),
            tuple(msg["stop_time"]),
            channels,
            msg["user_data"],
        )
        assert out == raw, path


def test_decoder_rejects_what_the_dectris_parser_rejects():
    good = v2.end_message(3, "01J00000000000000000000000")
    assert decode_v2(good)["series_id"] == 3
    with pytest.raises(StreamDecodeError, match="prefix"):
        decode_v2(good[3:])
    with pytest.raises(StreamDecodeError, match="first key"):
        decode_v2(b"\xd9\xd9\xf7" + cbor2.dumps({"series_id": 3, "type": "end"}))
    with pytest.raises(StreamDecodeError):
        decode_v2(b"\xd9\xd9\xf7\xa3\x64type")


@pytest.mark.parametrize("appendix", ["", [1, "💙"], {"k": 1.5}])
def test_fast_series_encoder_equals_the_generic_one(appendix):
    """The per-series encoder the Stream uses gives exactly the bytes of the generic image_message."""
    from series_factory import make_pixels, make_series

    from opendcu.app_detector.interfaces.stream.timing import image_times

    series = make_series(series_id=12, nimages=3)
    codec = get_codec("bslz4")
    encoder = v2.ImageMessageEncoder(series, (512, 1028), np.dtype(np.uint16), "bslz4", appendix)
    for image_id, extra in ((0, {}), (2, {"spots": {"n": 3}, "roi_sums": [1, 2]})):
        chunk = codec.encode(make_pixels(series, image_id))
        real, start, stop = image_times(series, image_id)
        generic = v2.image_message(
            series.series_id,
            series.unique_id,
            image_id,
            real,
            v2.series_date(series),
            start,
            stop,
            {"threshold_1": v2.Channel((512, 1028), np.dtype(np.uint16), "bslz4", chunk)},
            v2._UNSET if appendix == "" else appendix,
            extra,
        )
        assert encoder.encode(image_id, chunk, extra) == generic
    with pytest.raises(ValueError, match="standard image key"):
        encoder.encode(0, chunk, {"data": 1})
