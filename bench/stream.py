"""Stream throughput: our Stream V2 (CBOR) and V1 (legacy) publishers against bare pyzmq PUSH/PULL of the same
compressed payloads, over TCP loopback, to a consumer in another process.

    .venv/bin/python bench/stream.py [--detector eiger2-4m] [--images 300]

Both sides send the same chunk bytes (compressed once, in shared memory as the pipeline leaves them); the bare
baseline sends each payload as one message, ours builds the full DECTRIS message around it (start, images,
end). Timed: from the first send until the consumer has received every message. Goal: >= 0.9x.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import zmq
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultTable, best  # noqa: E402

from opendcu.app_detector.imagemux import CompressedImage, ImageMux  # noqa: E402
from opendcu.app_detector.interfaces.stream.stream import Stream  # noqa: E402
from opendcu.app_detector.series import Series, SeriesSettings  # noqa: E402
from opendcu.app_detector.shared_memory import SlotRing  # noqa: E402
from opendcu.codecs import get_codec  # noqa: E402
from opendcu.geometry import DetectorLayout, get_model  # noqa: E402


def consumer(endpoint: str, count: int, multipart: bool, ready, done) -> None:
    """PULL `count` messages, then report the receive time of the last one."""
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.connect(endpoint)
    ready.set()
    nbytes = 0
    for _ in range(count):
        parts = sock.recv_multipart(copy=False) if multipart else [sock.recv(copy=False)]
        nbytes += sum(len(p) for p in parts)
    done.put((time.perf_counter(), nbytes))
    sock.close(linger=0)


def run_consumer(ctx, endpoint: str, count: int, multipart: bool):
    ready, done = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=consumer, args=(endpoint, count, multipart, ready, done), daemon=True)
    proc.start()
    ready.wait(30)
    time.sleep(0.2)  # let the TCP connection finish its handshake before timing starts
    return proc, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="eiger2-4m")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    model = get_model(args.detector)
    h, w = model.shape
    mask = DetectorLayout(model).default_pixel_mask()
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(10):
        img = rng.poisson(0.4, size=(h, w)).astype(np.uint16)
        img[mask != 0] = 0xFFFF
        frames.append(img)
    codec = get_codec("bslz4")
    chunks = [codec.encode(frames[i % 10]) for i in range(args.images)]
    ring = SlotRing(args.images, max(c.nbytes for c in chunks))
    for i, c in enumerate(chunks):
        ring.bytes(i, c.nbytes)[:] = c
    total = sum(c.nbytes for c in chunks)
    ctx = mp.get_context("spawn")

    settings = SeriesSettings(1, model.name, args.images, 16, "bslz4", True, False)
    cfg = {
        "x_pixels_in_detector": w,
        "y_pixels_in_detector": h,
        "data_collection_date": "2026-01-01T00:00:00.000+00:00",
    }
    series = Series(settings, args.images, 1, "ints", 0.001, 0.001, cfg, mask, unique_id="01BENCH0000000000000000000")

    def bare() -> float:
        sock = zmq.Context.instance().socket(zmq.PUSH)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        proc, done = run_consumer(ctx, f"tcp://127.0.0.1:{port}", args.images, False)
        t0 = time.perf_counter()
        for i in range(args.images):
            sock.send(ring.bytes(i, chunks[i].nbytes), copy=True)  # ZeroMQ's own copy, as the slot is reused
        t1, nbytes = done.get(timeout=120)
        proc.join()
        sock.close(linger=0)
        assert nbytes == total
        return t1 - t0

    def ours(stream_format: str) -> float:
        # buffers deep enough that nothing is dropped: this measures throughput, not the drop policy
        stream = Stream("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", buffer_images=args.images, sndhwm=args.images + 2)
        stream.subsystem.values.update(mode="enabled", format=stream_format, header_detail="basic")
        mux = ImageMux()
        mux.attach(stream)
        proc, done = run_consumer(ctx, stream.endpoints[stream_format], args.images + 2, stream_format == "legacy")
        t0 = time.perf_counter()
        mux.start_series(series)
        for i in range(args.images):
            mux.publish(
                CompressedImage(
                    1,
                    i,
                    ring.bytes(i, chunks[i].nbytes),
                    np.dtype(np.uint16),
                    (h, w),
                    "bslz4",
                    1,
                    1,
                    shm_name=ring.name,
                    shm_offset=i * ring.stride,
                )
            )
        mux.end_series(series)
        dropped = stream.dropped
        assert dropped == 0, f"{dropped} images dropped"
        t1, _nbytes = done.get(timeout=120)
        proc.join()
        stream.close()
        return t1 - t0

    try:
        contenders = {"bare": bare, "cbor": lambda: ours("cbor"), "legacy": lambda: ours("legacy")}
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, fn in contenders.items():
                times[name].append(fn())
        bare_fps = args.images / best(times["bare"])
        table = ResultTable(
            f"Stream, {args.images} x {model.name} {h}x{w} uint16 bslz4 "
            f"({total / args.images / 1e6:.2f} MB/message), TCP loopback, consumer in another process"
        )
        table.add("bare pyzmq PUSH/PULL of the same payloads", bare_fps, "img/s")
        for name, label in (("cbor", "Stream V2 (CBOR)"), ("legacy", "Stream V1 (legacy multipart)")):
            fps = args.images / best(times[name])
            table.add(f"{label} vs bare pyzmq", fps, "img/s", bare_fps, fps / bare_fps, ">= 0.9x")
        table.print(Console(width=150))
        print(f"{total / best(times['bare']) / 1e9:.2f} GB/s bare pyzmq")
    finally:
        ring.close()


if __name__ == "__main__":
    main()
