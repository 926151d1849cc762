"""The worker pool with real processes and shared memory: frames out of raw slots, compressed once into output
slots, handed on in frame order, each series with its own settings."""

from __future__ import annotations

import multiprocessing as mp
import queue
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from pipeline_reference import reference_image

from opendcu.app_detector.daq.assembler import NO_SLOT, AssembledFrame
from opendcu.app_detector.pipeline.arrays import PipelineArrays, image_shape
from opendcu.app_detector.pipeline.pool import PipelinePool
from opendcu.app_detector.pipeline.worker import ProcessedImage
from opendcu.app_detector.series import SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.codecs import get_codec
from opendcu.geometry import DetectorLayout, get_model

DETECTOR = "eiger2-500k"


def test_pool_keeps_order_and_compresses_once():
    """Three series (the third reuses id 1, as after an initialize), each with its own settings."""
    model = get_model(DETECTOR)
    layout = DetectorLayout(model)
    nsub, n_slots = 2, 6
    raw_ring = SlotRing(n_slots, nsub * model.module.raw_pixels * 2)
    out_ring = SlotRing(n_slots, 4 * layout.shape[0] * layout.shape[1] + 65536)
    ctx = mp.get_context("spawn")
    raw_free, out_free = ctx.Queue(), ctx.Queue()
    for i in range(n_slots):
        raw_free.put(i)
        out_free.put(i)
    received: list[tuple[int, int, bytes]] = []
    done = threading.Event()

    def on_images(images: list[ProcessedImage]) -> None:
        for image in images:
            data = out_ring.bytes(image.out_slot, image.nbytes).tobytes()
            received.append((image.series_id, image.frame_number, data))
            out_free.put(image.out_slot)
        if len(received) in (12, 20, 25):  # a series' last image (a batch never spans two series here)
            done.set()

    rng = np.random.default_rng(3)
    mask = layout.default_pixel_mask()
    mask[rng.random(mask.shape) < 0.01] = 2
    flatfield = rng.normal(1, 0.05, mask.shape).astype(np.float32)
    pool = PipelinePool(DETECTOR, raw_ring, out_ring, raw_free, out_free, on_images, n_workers=2)
    pool.start()
    series = [
        SeriesSettings(
            1,
            DETECTOR,
            12,
            32,
            "bslz4",
            True,
            False,
            countrate_correction_applied=True,
            frame_count_time=0.01,
            nframes_sum=nsub,
            count_cutoff=10**6,
            flatfield_correction_applied=True,
        ),
        SeriesSettings(
            2,
            DETECTOR,
            8,
            8,
            "lz4",
            True,
            True,
            float8_encoding_applied=True,
            binning_2x2_applied=True,
            nframes_sum=nsub,
            count_cutoff=2 * 65534,
        ),
        SeriesSettings(1, DETECTOR, 5, 32, "none", False, False, nframes_sum=nsub, count_cutoff=2 * 65534),
    ]
    calibration_blocks = []
    frames: dict[tuple[int, int, int], np.ndarray] = {}
    done_settings = []
    try:
        for index, settings in enumerate(series):
            settings = replace(settings, image_shape=image_shape(settings))
            block = PipelineArrays.for_detector(settings, mask, flatfield).publish()
            calibration_blocks.append(block)
            settings = replace(settings, calibration_shm=block.name)
            pool.start_series(settings)
            done.clear()
            for n in range(1, settings.nimages_total + 1):
                raw = rng.poisson(n * 3, (nsub, 1, 512, 1024)).astype(np.uint16)
                raw[0, 0, n, :] = 0xFFFF
                slot = raw_free.get(timeout=30)
                raw_ring.array(slot, np.uint16, raw.shape)[:] = raw
                frames[index, settings.series_id, n] = raw
                pool.submit(AssembledFrame(settings.series_id, n, slot, 64, 64, nsubframes=nsub))
            assert done.wait(60), f"only {len(received)} images came back"
            assert pool.wait_published(settings.nimages_total, timeout=5) == settings.nimages_total
            done_settings.append(settings)
    finally:
        pool.close()
        for block in calibration_blocks:
            block.close()
        raw_ring.close()
        out_ring.close()

    order = [(index, s.series_id, n) for index, s in enumerate(done_settings) for n in range(1, s.nimages_total + 1)]
    assert [(s, n) for s, n, _ in received] == [(s, n) for _, s, n in order]
    for (index, series_id, n), (_, _, payload) in zip(order, received, strict=True):
        settings = done_settings[index]
        image = get_codec(settings.compression).decode(payload, settings.dtype, settings.image_shape)
        np.testing.assert_array_equal(image, reference_image(frames[index, series_id, n], settings, mask, flatfield))


def _sigterm_while_waiting() -> None:
    """Run in a fresh interpreter (see the test below): print the worker's exit code after SIGTERM."""
    model = get_model(DETECTOR)
    raw_ring, out_ring = SlotRing(1, model.module.raw_pixels * 2), SlotRing(1, 1 << 20)
    ctx = mp.get_context("spawn")
    raw_free, out_free = ctx.Queue(), ctx.Queue()  # no output slot at all: the worker waits for one
    pool = PipelinePool(DETECTOR, raw_ring, out_ring, raw_free, out_free, lambda images: None, n_workers=1)
    try:
        pool.start()
        worker = pool.workers[0]
        worker.terminate()  # SIGTERM
        # the pool's collector reaps it (never join it here too: two waiters race for one exit status)
        ended, code = pool.wait_ended(worker.pid, timeout=60)  # returns at once; the budget is for a loaded machine
        print("ended", ended, "exitcode", code, flush=True)
    finally:
        pool.close()
        raw_ring.close()
        out_ring.close()


def test_workers_stop_on_sigterm_while_waiting():
    """A worker blocked waiting for work (or for an output slot) still stops on SIGTERM, as on parent death.

    Checked in a fresh interpreter, so that nothing earlier tests left in pytest's process can change it. (It once
    failed because the test and the pool's collector both waited for the worker: one reaped it, the other saw no
    exit code. Only the collector reaps workers now.)"""
    code = "import test_pipeline_pool as t; t._sigterm_while_waiting()"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ended True exitcode 0" in result.stdout, result.stdout + result.stderr  # a clean exit, not killed


def test_a_frame_handed_on_after_many_newer_ones_cannot_starve_the_output_ring():
    """Frames settle out of order (one missing packets closes by its timeout, after newer complete ones; a frame
    without pixels, NO_SLOT, after its neighbours). With 4 output slots, frames 2..9 handed on first would hold
    every slot while waiting in order for frame 1, and frame 1 would wait for a slot: every image comes, in
    order, and frames without pixels come all invalid."""
    model = get_model(DETECTOR)
    n_raw, n_out, nimages = 12, 4, 12
    raw_ring = SlotRing(n_raw, model.module.raw_pixels * 2)
    out_ring = SlotRing(n_out, 2 * model.module.raw_pixels + 65536)
    raw_free: queue.Queue[int] = queue.Queue()
    out_free: queue.Queue[int] = queue.Queue()
    for i in range(n_out):
        out_free.put(i)
    received: list[tuple[int, np.ndarray]] = []
    settings = SeriesSettings(1, DETECTOR, nimages, 16, "bslz4", False, False)
    settings = replace(settings, image_shape=image_shape(settings))
    codec = get_codec("bslz4")
    everything = threading.Event()

    def on_images(images: list[ProcessedImage]) -> None:
        for image in images:
            data = out_ring.bytes(image.out_slot, image.nbytes).tobytes()
            received.append((image.frame_number, codec.decode(data, settings.dtype, settings.image_shape)))
            out_free.put(image.out_slot)
        if len(received) == nimages:
            everything.set()

    pool = PipelinePool(DETECTOR, raw_ring, out_ring, raw_free, out_free, on_images, n_workers=2)
    pool.start()
    block = PipelineArrays.for_detector(settings, None, None).publish()
    rng = np.random.default_rng(4)
    raws = {}
    try:
        pool.start_series(replace(settings, calibration_shm=block.name))
        without_pixels = {5, 1}
        late = [f for f in range(2, nimages + 1) if f not in without_pixels]
        frames = []
        for slot, n in enumerate(late):
            raws[n] = rng.poisson(n, (1, 1, *model.module.raw_shape)).astype(np.uint16)
            raw_ring.array(slot, np.uint16, raws[n].shape)[:] = raws[n]
            frames.append(AssembledFrame(1, n, slot, 64, 64))
        pool.submit_many(frames)  # 2, 3, 4, 6, ... 12 first
        deadline = time.monotonic() + 60  # until what went to the workers came back and waits for frame 1
        while not (pool._held and not any(w.outstanding for w in pool._workers)) and time.monotonic() < deadline:
            time.sleep(0.01)
        pool.submit_many([AssembledFrame(1, 5, NO_SLOT, 64, 0)])
        pool.submit_many([AssembledFrame(1, 1, NO_SLOT, 64, 0)])  # the first image, last
        assert everything.wait(60), f"only {[n for n, _ in received]} came back"
    finally:
        pool.close()
        block.close()
        raw_ring.close()
        out_ring.close()
    assert [n for n, _ in received] == list(range(1, nimages + 1))
    invalid = np.full(settings.image_shape, 0xFFFF, settings.dtype)  # gaps are the error value too, unmasked
    no_mask, no_gain = np.zeros(model.shape, np.uint32), np.ones(model.shape, np.float32)
    for n, image in received:
        if n in without_pixels:
            np.testing.assert_array_equal(image, invalid)
        else:
            np.testing.assert_array_equal(image, reference_image(raws[n], settings, no_mask, no_gain))
    assert sorted(raw_free.get_nowait() for _ in range(raw_free.qsize())) == list(range(len(late)))
