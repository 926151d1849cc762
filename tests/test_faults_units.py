"""Fault handling in single components (issue #16): the rules arm applies to file names, the sequence-id store,
the series summary, the bounds on client input, access control, and junk datagrams on a config socket."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.control.outcome import InterfaceCounts, SeriesLedger, summarize
from opendcu.app_detector.control.parameters import check_type
from opendcu.app_detector.control.recovery import remove_partial_files
from opendcu.app_detector.control.sequence import STATE_FILE, SUMMARY_FILE, SequenceStore
from opendcu.app_detector.daq.assembler import DaqCounters
from opendcu.app_detector.interfaces.filewriter import paths
from opendcu.base.rest.app import create_app
from opendcu.base.rest.limits import json_depth_exceeded
from opendcu.hardware.config_packet import ConfigPacket, Kind
from opendcu.hardware.module_driver import ModuleAddress, ModuleLink
from opendcu.proto.values import from_proto, to_proto


# -- file names ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pattern", ["x\n", "a" * 300, "../x", "/abs", "a//b", "a/./b", "sp ace", "x" * 1025, ".hidden_$id", "a/.h/b"]
)
def test_unsafe_name_patterns_are_refused(pattern: str):
    with pytest.raises(paths.UnsafePath):
        paths.check_name_pattern(pattern)


def test_series_files_check_refuses_symlinks_existing_files_and_too_many_files(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("x")
    assert paths.check_series_files(tmp_path, "new/series_1", 3) == tmp_path.resolve() / "new"
    with pytest.raises(paths.UnsafePath, match="symbolic link"):
        paths.check_series_files(tmp_path, "link/series_1", 1)
    with pytest.raises(paths.UnsafePath, match="not a folder"):
        paths.check_series_files(tmp_path, "file/series_1", 1)
    with pytest.raises(paths.UnsafePath, match="100001 data files"):
        paths.check_series_files(tmp_path, "series_1", paths.MAX_DATA_FILES + 1)
    for name in (
        "series_1_master.h5",
        ".series_1_master.h5.part",
        "series_1_data_000002.h5",
        ".series_1_data_000001.h5.part",
    ):
        path = tmp_path / "real" / name
        path.write_text("x")
        with pytest.raises(paths.SeriesFilesExist, match=name.replace(".", r"\.")):
            paths.check_series_files(tmp_path, "real/series_1", 1)
        path.unlink()
    (tmp_path / "real" / "series_10_master.h5").write_text("x")  # another series: not a collision
    paths.check_series_files(tmp_path, "real/series_1", 1)


def test_partial_files_are_removed_and_nothing_else(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    for name in (".a_data_000001.h5.part", "sub/.b_master.h5.part", "keep.h5", "sub/keep.part", STATE_FILE):
        (tmp_path / name).write_text("x")
    assert remove_partial_files(tmp_path) == [".a_data_000001.h5.part", "sub/.b_master.h5.part"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        STATE_FILE,
        "keep.h5",
        "sub/keep.part",
    ]


# -- sequence ids --------------------------------------------------------------------------------------------------
def test_sequence_ids_persist_atomically(tmp_path: Path, caplog):
    store = SequenceStore(tmp_path)
    assert store.last == 0 and store.running is None
    store.record(7, {"series_id": 7, "prefix": "series_7", "data_files": 2})
    again = SequenceStore(tmp_path)
    assert (again.last, again.running) == (7, {"series_id": 7, "prefix": "series_7", "data_files": 2})
    again.record(7)
    assert json.loads((tmp_path / STATE_FILE).read_text()) == {"last_sequence_id": 7}
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temporary file left
    (tmp_path / STATE_FILE).write_text("{broken")
    with caplog.at_level(logging.WARNING):
        assert SequenceStore(tmp_path).last == 0
    assert "unreadable" in caplog.text


def test_the_last_series_summary_persists_beside_the_data(tmp_path: Path, caplog):
    store = SequenceStore(tmp_path)
    assert store.last_summary is None
    summary = {"series_id": 4, "outcome": "failure", "images_lost": 3, "problems": ["3 of 9 images lost"]}
    store.record_summary(summary)
    assert SequenceStore(tmp_path).last_summary == summary
    assert sorted(p.name for p in tmp_path.iterdir()) == [SUMMARY_FILE]  # no temporary file left
    for broken in ("{broken", "[1]", '{"series_id": "4"}'):
        (tmp_path / SUMMARY_FILE).write_text(broken)
        with caplog.at_level(logging.WARNING):
            assert SequenceStore(tmp_path).last_summary is None
    assert "no last series summary" in caplog.text


# -- series summary --------------------------------------------------------------------------------------------------
def _image(image_id: int, received: int, expected: int = 10) -> SimpleNamespace:
    released = []
    return SimpleNamespace(
        series_id=3,
        image_id=image_id,
        packets_received=received,
        packets_expected=expected,
        release=lambda: released.append(1),
        released=released,
    )


def test_ledger_and_summary_count_every_image():
    series = SimpleNamespace(series_id=3, unique_id="U", nimages_total=6)
    ledger = SeriesLedger()
    ledger.start_series(series)
    images = [_image(0, 10), _image(1, 7), _image(2, 10), _image(4, 10)]  # image 3 (id) never arrives
    for image in images:
        ledger.offer(image)
    assert [len(i.released) for i in images] == [1, 1, 1, 1]
    ledger.offer(
        SimpleNamespace(series_id=2, image_id=0, packets_received=0, packets_expected=10, release=lambda: None)
    )  # a stale series: not counted
    counters = DaqCounters(packets_expected=50, packets_received=47, frames_complete=4, frames_incomplete=1)
    s = summarize(series, ledger, counters, 6, InterfaceCounts(filewriter_written=3, stream_dropped=1), "done", 2.0)
    assert (
        s["images_expected"],
        s["images_settled"],
        s["images_complete"],
        s["images_incomplete"],
        s["images_lost"],
    ) == (6, 4, 3, 1, 2)
    assert (s["packets_lost"], s["efficiency"], s["rate_hz"]) == (3, 0.94, 2.0)
    assert s["interfaces"] == {"filewriter": {"written": 3, "missing": 1}, "stream": {"sent": 3, "dropped": 1}}
    assert s["outcome"] == "failure"
    assert s["problems"] == [
        "2 of 6 images lost (never delivered)",
        "1 images incomplete (3 packets lost)",
        "FileWriter wrote 3 of 4 images",
        "Stream dropped 1 images",
    ]
    received, expected = ledger.per_image(6)
    assert received.tolist() == [10, 7, 10, 0, 10, 0] and expected.tolist() == [10] * 6
    running = summarize(series, ledger, counters, 6, InterfaceCounts(), "running", 1.0)
    assert (running["outcome"], running["images_lost"]) == ("running", 0)


def test_ledger_grows_without_allocating_per_image_at_arm():
    ledger = SeriesLedger()
    ledger.start_series(SimpleNamespace(series_id=3, nimages_total=10**9))
    assert ledger._received.size == 4096
    ledger.offer(_image(10_000, 10))
    assert ledger._received.size >= 10_001 and ledger.delivered == 1


# -- input bounds ----------------------------------------------------------------------------------------------------
def test_integers_beyond_64_bits_travel_and_are_refused():
    for value in (2**64, -(2**63) - 1, 2**200):
        assert from_proto(to_proto(value, "uint")) == value
        assert from_proto(to_proto([1, value])) == [1, value]
        with pytest.raises(InvalidValue, match="64 bits"):
            check_type("nimages", "uint" if value > 0 else "int", value)
    assert from_proto(to_proto(2**64 - 1, "uint")) == 2**64 - 1
    with pytest.raises(InvalidValue, match="at most 4096"):
        check_type("name_pattern", "string", "x" * 4097)


def test_json_depth_is_counted_outside_strings():
    assert json_depth_exceeded(b"[" * 33 + b"]" * 33)
    assert not json_depth_exceeded(b"[" * 32 + b"]" * 32)
    assert not json_depth_exceeded(json.dumps({"value": "[" * 100}).encode())
    assert json_depth_exceeded(json.dumps({"value": '"\\"' + "x"}).encode() + b"[" * 40)


# -- access control ----------------------------------------------------------------------------------------------------
def test_token_or_basic_auth_guards_every_route(tmp_path: Path):
    (tmp_path / "f.txt").write_text("data")
    app = create_app("unix:/nonexistent.sock", tmp_path, auth_token="s3cret")
    with TestClient(app) as client:
        for path in ("/data/f.txt", "/webdav/f.txt", "/detector/api/1.8.0/status/state", "/openapi.json"):
            r = client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), path
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/data/f.txt", headers={"Authorization": "Bearer s3cret"}).text == "data"
        basic = base64.b64encode(b"anyone:s3cret").decode()
        assert client.get("/webdav/f.txt", headers={"Authorization": f"Basic {basic}"}).text == "data"
    with TestClient(create_app("unix:/nonexistent.sock", tmp_path)) as client:  # no token: open
        assert client.get("/data/f.txt").text == "data"


def test_loopback_hosts_need_no_warning():
    from opendcu.base.rest.auth import is_loopback

    assert [
        is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.1.2.3", "0.0.0.0", "10.0.0.5", "dcu.lan")
    ] == [True, True, True, True, False, False, False]


# -- junk on a config socket -------------------------------------------------------------------------------------------
def test_junk_datagrams_on_the_config_socket_give_one_warning(caplog):
    module = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    module.bind(("127.0.0.1", 0))
    link = ModuleLink(ModuleAddress(0, "127.0.0.1", module.getsockname()[1]))

    def answer() -> None:
        data, peer = module.recvfrom(65536)
        for i in range(1000):
            module.sendto(b"junk %d" % i, peer)
            if i % 50 == 49:
                time.sleep(0.005)  # within the receiver's socket buffer: every datagram arrives
        module.sendto(ConfigPacket.decode(data).ack(state="idle").encode(), peer)

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="opendcu.hardware.module_driver"):
            ack = link.request(Kind.STATUS)
        thread.join(5)
        assert ack.fields["state"] == "idle"
        assert link._junk.total == 1000
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "ignored 1 malformed answer(s)" in warnings[0].getMessage()
    finally:
        link.close()
        module.close()
