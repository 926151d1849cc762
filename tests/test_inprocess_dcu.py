"""The in-process module backend (tests/inprocess_dcu.py) is a ModuleBackend, and on it the real acquisition,
DAQ, pipeline, FileWriter and Stream take series that arrive whole: the file's images and the stream's are the
same bytes, the pixels are what the modules sent, and a refusal or a lost packet says so as it does in
`dcu serve`."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from inprocess_dcu import InProcessModules, inprocess_dcu
from stream_consumer import StreamConsumer

from opendcu.app_detector.datapath import compressed_bound, stream_buffer_images
from opendcu.app_detector.interfaces.stream.decoder import decode_v2
from opendcu.app_detector.shared_memory import slot_stride
from opendcu.geometry import get_model
from opendcu.hardware.backend import ModuleBackend
from opendcu.hardware.module_driver import ModuleError
from opendcu.simplon.errors import WrongState


def stream_chunk(raw: bytes) -> bytes:
    """The compressed bytes of a V2 image message (typed array 40 > 69 > 56500 [algorithm, elem size, bytes])."""
    tag = decode_v2(raw, decompress_arrays=False)["data"]["threshold_1"]
    algorithm, _, payload = tag.value[1].value.value
    assert algorithm == "bslz4"
    return bytes(payload)


def test_the_in_process_modules_are_a_module_backend_and_refuse_as_the_udp_driver_does():
    modules = InProcessModules(get_model("eiger2-1m"))
    try:
        assert isinstance(modules, ModuleBackend)
        assert modules.module_ids == sorted(modules.modules) and len(modules.module_ids) == 2
        assert modules.status() == dict.fromkeys(modules.module_ids)
        with pytest.raises(ModuleError, match=r"module \d+ rejected TRIGGER: trigger while idle"):
            modules.trigger(modules.module_ids)
        with pytest.raises(ModuleError, match="rejected CONFIGURE: missing config fields"):
            modules.configure(modules.module_ids, {}, count_time=0.01)
    finally:
        modules.close()


def test_a_series_arrives_whole_in_the_file_and_on_the_stream_with_the_same_bytes(tmp_path: Path):
    with inprocess_dcu(tmp_path, "eiger2-500k") as dcu:
        dcu.filewriter.set("mode", "enabled")
        dcu.stream.set("mode", "enabled")
        dcu.stream.set("format", "cbor")
        recorder = StreamConsumer(dcu.stream_v2, keep=True)
        try:
            series_id = dcu.series(40, 0.005)
            assert recorder.wait_end(60)
            dcu.detector.command("disarm", None)
        finally:
            recorder.close()
        summary = dcu.status("series")
        assert summary["outcome"] == "success", summary
        assert summary["images_expected"] == 40 and summary["images_complete"] == 40
        assert dcu.status("daq/packets_lost") == 0

        assert recorder.kinds[0] == "start" and recorder.kinds[-1] == "end"
        assert recorder.images == list(range(40))
        images = [decode_v2(raw) for raw, kind in zip(recorder.raw, recorder.kinds, strict=True) if kind == "image"]
        image_messages = [raw for raw, kind in zip(recorder.raw, recorder.kinds, strict=True) if kind == "image"]
        with h5py.File(tmp_path / f"series_{series_id}_master.h5") as master:
            data = master["/entry/data/data_000001"]
            assert data.shape[0] == 40
            for i, (message, raw) in enumerate(zip(images, image_messages, strict=True)):
                pixels = data[i]
                np.testing.assert_array_equal(message["data"]["threshold_1"], pixels)
                assert int(pixels.max()) > 0  # the flood, not an empty image
                # compressed once: the stream carries the file's chunk, byte for byte
                _, chunk = data.id.read_direct_chunk((i, 0, 0))
                assert stream_chunk(raw) == chunk
            gaps = master["/entry/instrument/detector/pixel_mask"][()] & 1 != 0
            assert (data[0][gaps] == np.iinfo(data.dtype).max).all()  # gaps carry the error value, as real


def test_a_refused_arm_changes_nothing_of_the_armed_series(tmp_path: Path):
    with inprocess_dcu(tmp_path, "eiger2-500k") as dcu:
        dcu.filewriter.set("mode", "enabled")
        dcu.detector.set("nimages", 5)
        dcu.detector.set("frame_time", 0.01)
        dcu.detector.set("count_time", 0.01)
        series_id = dcu.detector.command("arm", None)
        with pytest.raises(WrongState, match="arm"):
            dcu.detector.command("arm", None)
        dcu.detector.command("trigger", None)
        dcu.detector.command("disarm", None)
        with h5py.File(tmp_path / f"series_{series_id}_master.h5") as master:
            assert master["/entry/data/data_000001"].shape[0] == 5
        summary = dcu.status("series")
        assert summary["series_id"] == series_id and summary["images_complete"] == 5
        assert summary["outcome"] == "success", summary


def test_a_lost_packet_is_counted_and_the_series_says_so(tmp_path: Path):
    with inprocess_dcu(tmp_path, "eiger2-500k") as dcu:
        dcu.filewriter.set("mode", "enabled")
        dcu.simulator.set("drop_packets", "[[3, 1]]")  # frame 3 leaves out its packet 1
        series_id = dcu.series(6, 0.01)
        dcu.detector.command("disarm", None)
        summary = dcu.status("series")
        assert dcu.status("daq/packets_lost") == 1
        assert summary["images_incomplete"] == 1 and summary["images_complete"] == 5, summary
        assert summary["outcome"] == "incomplete" and "1 images incomplete (1 packets lost)" in summary["problems"]
        with h5py.File(tmp_path / f"series_{series_id}_master.h5") as master:
            assert master["/entry/data/data_000001"].shape[0] == 6  # the incomplete image is written, its gap flagged


def test_the_image_ring_is_cut_per_series_by_bit_depth_and_every_image_comes_through(tmp_path: Path):
    """16-bit images take half the slot of 32-bit ones, so a single-frame series gets twice the image slots (and
    a Stream buffer twice as deep). Series of 16, 32 (six sub-frames summed) and 16 bits in a row: the DataPath,
    the workers and the interfaces view the ring alike each time, so every image decodes to the flood."""
    # a flood of 1e6 photons per pixel and second: 10k in a 10 ms image, 100k in a 100 ms one (6 sub-frames)
    with inprocess_dcu(tmp_path, "eiger2-500k", scene={"kind": "flood", "flux": 1e6}) as dcu:
        ring, (h, w) = dcu.datapath.out_ring, dcu.model.shape
        dcu.filewriter.set("mode", "enabled")
        nimages = 24  # more images than the pipeline has workers: slots beyond the first are used
        slots: dict[int, int] = {}
        for depth, frame_time in ((16, 0.01), (32, 0.1), (16, 0.01)):
            series_id = dcu.series(nimages, frame_time, auto_summation=True)
            dcu.detector.command("disarm", None)
            assert dcu.detector["bit_depth_image"] == depth
            summary = dcu.status("series")
            assert summary["outcome"] == "success" and summary["images_complete"] == nimages, summary
            assert ring.slot_bytes == compressed_bound(h * w * depth // 8)
            assert ring.n_slots == min(dcu.datapath.config.max_image_slots, ring.size // slot_stride(ring.slot_bytes))
            assert dcu.datapath.stream.buffer.capacity == stream_buffer_images(ring.n_slots)
            slots[depth] = ring.n_slots
            with h5py.File(tmp_path / f"series_{series_id}_master.h5") as master:
                images = master["/entry/data/data_000001"][()]
                valid = master["/entry/instrument/detector/pixel_mask"][()] == 0
            assert images.shape == (nimages, h, w) and images.dtype == np.dtype(f"uint{depth}")
            counts = images[:, valid]
            # each image is the flood (a misplaced slot would be another image's bytes or no valid chunk at all)
            median = np.median(counts, axis=1)
            np.testing.assert_allclose(median, 1e6 * frame_time, rtol=0.1)
            if depth == 32:  # sub-frames summed beyond what 16 bits hold
                assert median.min() > 0xFFFF
        assert slots[16] >= 2 * slots[32] - 1
