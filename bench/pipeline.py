"""Benchmark of the image pipeline on realistic EIGER2 4M and 16M frames (one command):

    .venv/bin/python bench/pipeline.py

For each detector it prints:
- ms/frame of each step, measured by switching the steps on one after the other in the fused pass
  (count-rate correction, pixel mask, flatfield, virtual-pixel interpolation), plus summation of 2 sub-frames,
  the 8-bit float counter, 2x2 binning and the compressors;
- the whole pipeline (default switches: all corrections + bslz4) against bare `bitshuffle.compress_lz4` of the
  same final images (goal <= 1.25x);
- frames/s of the real worker pool with 1 and 2 worker processes (goal >= 1.8x);
- compression ratios (16-bit image bytes / chunk bytes) of bslz4, lz4, 8-bit float + bslz4, 2x2 + bslz4.

Frames: an MX-like scene (smooth radial background of 0.1-1 photons, a faint powder ring, Bragg spots of
10-10^4 photons), split into physical pixels by the layout and Poisson-sampled, as the simulated modules do.
All timings are single-threaded (OMP_NUM_THREADS=1) and cycle through several frames so that no frame is
cache-hot. Shared machines are noisy: read the ratios.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # single-threaded bitshuffle, set before it is imported

import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import bitshuffle  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultTable, best, time_call  # noqa: E402

from opendcu.app_detector.control.detector_params import build_detector_subsystem  # noqa: E402
from opendcu.app_detector.control.state import DetectorState  # noqa: E402
from opendcu.app_detector.daq.assembler import AssembledFrame  # noqa: E402
from opendcu.app_detector.datapath import compressed_bound  # noqa: E402
from opendcu.app_detector.pipeline.arrays import PipelineArrays  # noqa: E402
from opendcu.app_detector.pipeline.params import apply_calibration, series_settings  # noqa: E402
from opendcu.app_detector.pipeline.pool import PipelinePool  # noqa: E402
from opendcu.app_detector.pipeline.processor import ImageProcessor, warm_up  # noqa: E402
from opendcu.app_detector.series import SeriesSettings  # noqa: E402
from opendcu.app_detector.shared_memory import SlotRing  # noqa: E402
from opendcu.codecs import get_codec  # noqa: E402
from opendcu.codecs.bslz4 import block_elems  # noqa: E402
from opendcu.geometry import DetectorLayout, get_model  # noqa: E402
from opendcu.geometry.layout import MASK_DEAD  # noqa: E402


def mx_photons(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Expected photons per virtual pixel of one MX frame."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - h * 0.52, xx - w * 0.49)
    scale = float(np.hypot(h, w)) / 2
    photons = 0.1 + 0.9 * np.exp(-r / (0.6 * scale))  # background
    photons += 0.8 * np.exp(-((r - 0.45 * scale) ** 2) / (2 * 6.0**2))  # a faint powder ring
    n_spots = int(300 * h * w / (2162 * 2068))
    for y, x, sigma, total in zip(
        rng.uniform(0, h, n_spots),
        rng.uniform(0, w, n_spots),
        rng.uniform(0.7, 1.5, n_spots),
        np.exp(rng.uniform(np.log(10), np.log(1e4), n_spots)),
        strict=True,
    ):
        y0, y1, x0, x1 = int(max(0, y - 7)), int(min(h, y + 8)), int(max(0, x - 7)), int(min(w, x + 8))
        g = np.exp(-((yy[y0:y1, x0:x1] - y) ** 2 + (xx[y0:y1, x0:x1] - x) ** 2) / (2 * sigma**2))
        photons[y0:y1, x0:x1] += total * g / (2 * np.pi * sigma**2)
    return photons


def raw_frames(name: str, n_frames: int, nsub: int = 1) -> list[np.ndarray]:
    """Raw sub-frames [nsub, modules, 512, 1024] of `n_frames` MX frames."""
    model = get_model(name)
    layout = DetectorLayout(model)
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(n_frames):
        photons = mx_photons(model.shape, rng) / nsub
        physical = np.stack([layout.unplace_module(photons[layout.module_slices(m)]) for m in range(model.n_modules)])
        frames.append(
            np.minimum(rng.poisson(np.broadcast_to(physical, (nsub, *physical.shape))), 65534).astype(np.uint16)
        )
    return frames


def calibration(name: str) -> SimpleNamespace:
    model = get_model(name)
    rng = np.random.default_rng(2)
    mask = DetectorLayout(model).default_pixel_mask()
    mask[rng.random(mask.shape) < 1e-3] |= MASK_DEAD
    return SimpleNamespace(pixel_mask=mask, flatfield=rng.normal(1.0, 0.03, model.shape).astype(np.float32))


def offline_detector(model):
    """The detector's SIMPLON keys without a running detector (status keys read constants)."""
    controller = SimpleNamespace(
        state=DetectorState.IDLE,
        errors=[],
        series_unique_id="",
        datapath=None,
        high_voltage_state=lambda: "READY",
        buffer_free_percent=lambda: 100.0,
        environment=lambda: (25.0, 10.0),
        link_state=lambda _i: "up",
    )
    return build_detector_subsystem(model, controller)


def settings_for(name: str, cal: SimpleNamespace, nframes_sum: int = 1, **switches) -> SeriesSettings:
    """Series settings as the detector derives them at arm from its SIMPLON keys, at the detector's fastest
    frame rate; `nframes_sum` > 1: that many sub-frames of that count time summed into 32-bit images."""
    model = get_model(name)
    det = offline_detector(model)
    apply_calibration(det, cal)
    det.set("frame_time", 1 / model.max_frame_rate)
    for key, value in switches.items():
        det.set(key, value)
    settings = series_settings(det, model, 1, 1)
    if nframes_sum > 1:  # the simulated modules deliver one sub-frame per image; the pipeline sums any number
        settings = replace(
            settings, nframes_sum=nframes_sum, bit_depth_image=32, count_cutoff=nframes_sum * settings.count_cutoff
        )
    return settings


def cycle(frames: list[np.ndarray]):
    """A callable that hands out the frames in turn (so no frame stays cache-hot)."""
    state = {"i": 0}

    def take() -> np.ndarray:
        state["i"] = (state["i"] + 1) % len(frames)
        return frames[state["i"]]

    return take


def per_frame_ms(fn, frames: list[np.ndarray], repeat: int) -> float:
    take = cycle(frames)
    return best(time_call(lambda: fn(take()), repeat=repeat, warmup=len(frames))) * 1e3


def step_table(name: str, frames, frames2, cal: SimpleNamespace, repeat: int) -> ResultTable:
    """ms/frame of each step, as the difference between the fused pass with and without it; the reference
    column is bare bslz4 compression of the same images, the ratio the step's share of that."""
    table = ResultTable(f"{name}: ms/frame per step (1 thread; ratio = step / bare bslz4 of the same frames)")
    off = {"countrate_correction_applied": False, "pixel_mask_applied": False, "flatfield_correction_applied": False}
    cumulative = [
        ("placement (gaps, virtual pixels) + 16-bit output", off),
        ("count-rate correction", {**off, "countrate_correction_applied": True}),
        ("pixel mask", {**off, "countrate_correction_applied": True, "pixel_mask_applied": True}),
        ("flatfield", {}),  # = the default switches
        ("virtual-pixel interpolation", {"virtual_pixel_correction_applied": True}),
    ]
    variants = [
        ("summation: 2nd sub-frame (32-bit output)", frames2, {}, 2),
        ("8-bit float counter (instead of 16 bit)", frames, {"float8_encoding_applied": True}, 1),
        ("2x2 binning (32-bit output)", frames, {"binning_2x2_applied": True}, 1),
    ]

    def processor(nframes_sum: int = 1, **switches) -> ImageProcessor:
        settings = settings_for(name, cal, nframes_sum, **switches)
        return ImageProcessor(settings, PipelineArrays.for_detector(settings, cal.pixel_mask, cal.flatfield))

    default = processor()
    images = [default.process(f).copy() for f in frames]
    bare = per_frame_ms(lambda image: bitshuffle.compress_lz4(image.reshape(-1), block_elems(2)), images, repeat)
    rows = []
    previous = 0.0
    for label, switches in cumulative:
        ms = per_frame_ms(processor(**switches).process, frames, repeat)
        rows.append((label, ms - previous))
        previous = ms
    default_ms = per_frame_ms(default.process, frames, repeat)
    for label, data, switches, nframes_sum in variants:
        rows.append((label, per_frame_ms(processor(nframes_sum, **switches).process, data, repeat) - default_ms))
    for label, ms in rows:
        table.add(label, ms, "ms", bare, ms / bare)
    table.add("all corrections, default switches (fused pass)", default_ms, "ms", bare, default_ms / bare)
    image_out = np.empty_like(images[0])
    streaming = per_frame_ms(lambda raw: (raw.max(), cal.flatfield.max(), image_out.fill(0)), frames, repeat)
    table.add("  streaming bound: read raw + flatfield, write image", streaming, "ms", bare, streaming / bare)
    for codec_name in ("bslz4", "lz4", "none"):
        ms = per_frame_ms(get_codec(codec_name).encode, images, repeat)
        table.add(f"compression {codec_name} (16-bit image)", ms, "ms", bare, ms / bare)
    codec = get_codec("bslz4")
    pipeline_ms = per_frame_ms(lambda raw: codec.encode(default.process(raw)), frames, repeat)
    table.add("whole pipeline: corrections + bslz4", pipeline_ms, "ms", bare, pipeline_ms / bare, "<= 1.25x")
    return table


def pool_rate(name: str, frames: list[np.ndarray], cal: SimpleNamespace, n_workers: int, n_images: int) -> float:
    """Images/s through the real worker pool (shared-memory rings, processes, ordered collection)."""
    model = get_model(name)
    settings = settings_for(name, cal)
    raw_bytes = frames[0].nbytes
    n_slots = 8
    raw_ring = SlotRing(n_slots, raw_bytes)
    out_ring = SlotRing(n_slots, compressed_bound(model.shape[0] * model.shape[1] * 4))
    ctx = mp.get_context("spawn")
    raw_free, out_free = ctx.Queue(), ctx.Queue()
    for i in range(n_slots):
        raw_ring.array(i, np.uint16, frames[i % len(frames)].shape)[:] = frames[i % len(frames)]
        raw_free.put(i)
        out_free.put(i)
    arrays = PipelineArrays.for_detector(settings, cal.pixel_mask, cal.flatfield).publish()

    def give_back(images) -> None:
        for image in images:
            out_free.put(image.out_slot)

    pool = PipelinePool(name, raw_ring, out_ring, raw_free, out_free, give_back, n_workers)
    try:
        pool.start()
        results = []
        for series_id in (1, 2):  # the first series warms the workers up
            s = replace(settings, series_id=series_id, nimages_total=n_images, calibration_shm=arrays.name)
            pool.start_series(s)
            t0 = time.perf_counter()
            for n in range(1, n_images + 1):
                pool.submit(AssembledFrame(series_id, n, raw_free.get(timeout=60), 1, 1))
            assert pool.wait_published(n_images, timeout=600) == n_images
            results.append(n_images / (time.perf_counter() - t0))
        return results[-1]
    finally:
        pool.close()
        arrays.close()
        raw_ring.close()
        out_ring.close()


def _bare_compress_worker(args) -> float:
    images, n_images, barrier = args
    block = block_elems(images[0].dtype.itemsize)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(n_images):
        bitshuffle.compress_lz4(images[i % len(images)].reshape(-1), block)
    return time.perf_counter() - t0


def bare_rate(images: list[np.ndarray], n_procs: int, n_images: int) -> float:
    """Images/s of bare bslz4 compression in `n_procs` processes at once: what the machine allows right now."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n_procs)
        with ctx.Pool(n_procs) as pool:
            elapsed = pool.map(_bare_compress_worker, [(images, n_images, barrier)] * n_procs)
    return n_procs * n_images / max(elapsed)


def compression_ratios(name: str, frames, cal: SimpleNamespace, table: ResultTable) -> None:
    default = settings_for(name, cal)
    base = ImageProcessor(default, PipelineArrays.for_detector(default, cal.pixel_mask, cal.flatfield))
    image16 = [base.process(f).copy() for f in frames]
    raw_bytes = sum(i.nbytes for i in image16)

    def ratio(codec_name: str, images: list[np.ndarray]) -> float:
        return raw_bytes / sum(get_codec(codec_name).encode(i).size for i in images)

    def images_with(**switches) -> list[np.ndarray]:
        s = settings_for(name, cal, **switches)
        p = ImageProcessor(s, PipelineArrays.for_detector(s, cal.pixel_mask, cal.flatfield))
        return [p.process(f).copy() for f in frames]

    table.add("bslz4", ratio("bslz4", image16), "x")
    table.add("lz4", ratio("lz4", image16), "x")
    table.add("8-bit float + bslz4", ratio("bslz4", images_with(float8_encoding_applied=True)), "x")
    table.add("2x2 binning + bslz4", ratio("bslz4", images_with(binning_2x2_applied=True)), "x")


def main() -> None:
    console = Console(width=130)
    warm_up()
    for name, n_frames, repeat, n_images in (("eiger2-4m", 4, 12, 120), ("eiger2-16m", 3, 6, 40)):
        t0 = time.perf_counter()
        cal = calibration(name)
        frames = raw_frames(name, n_frames)
        frames2 = raw_frames(name, 2, nsub=2)
        print(f"\n{name}: {n_frames} MX frames generated in {time.perf_counter() - t0:.1f} s", flush=True)
        step_table(name, frames, frames2, cal, repeat).print(console)
        scaling = ResultTable(f"{name}: worker pool, default switches + bslz4, {n_images} images")
        one = pool_rate(name, frames, cal, 1, n_images)
        two = pool_rate(name, frames, cal, 2, n_images)
        scaling.add("1 worker", one, "images/s")
        scaling.add("2 workers", two, "images/s", one, two / one, ">= 1.8x")
        settings = settings_for(name, cal)
        processor = ImageProcessor(settings, PipelineArrays.for_detector(settings, cal.pixel_mask, cal.flatfield))
        images = [processor.process(f).copy() for f in frames]
        bare_one, bare_two = bare_rate(images, 1, n_images), bare_rate(images, 2, n_images)
        scaling.add("bare bslz4 compression, 1 process", bare_one, "images/s")
        scaling.add(
            "bare bslz4 compression, 2 processes", bare_two, "images/s", bare_one, bare_two / bare_one, "machine bound"
        )
        scaling.print(console)
        ratios = ResultTable(f"{name}: compression ratio (16-bit image bytes / chunk bytes)")
        compression_ratios(name, frames, cal, ratios)
        ratios.print(console)


if __name__ == "__main__":
    main()
