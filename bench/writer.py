"""FileWriter throughput: serial, parallel (processes memcpy into one mmapped file) and vds (one writer process per
data file), against raw write() of the same chunk bytes and against h5py's standard filter path.

    .venv/bin/python bench/writer.py [--detector eiger2-4m] [--images 100] [--dir /dev/shm] [--processes 2]

The images are compressed once (as the pipeline does) into a shared-memory ring, then every contender writes
those same bytes. Timed: from the first image handed to the FileWriter until its data files are closed (the
master, written at arm, is reported on its own line). Goals: >= 0.9x raw write(), >= 10x h5py's filter path.

Two targets are measured: `--dir` (default /dev/shm, a 4 KiB-page tmpfs) and, where the bench may mount one
(root, `unshare`), a hugepage tmpfs (`huge=always`) in a private mount namespace: the DCU-RAM setup the
parallel mmap writer is made for (spec/filewriter-nxmx.md §8-9). Nothing is changed outside that namespace.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultTable, best  # noqa: E402
from rich.console import Console  # noqa: E402

from opendcu.app_detector.imagemux import CompressedImage, ImageMux  # noqa: E402
from opendcu.app_detector.interfaces.filewriter.writer import FileWriter  # noqa: E402
from opendcu.app_detector.series import Series, SeriesSettings  # noqa: E402
from opendcu.app_detector.shared_memory import SlotRing  # noqa: E402
from opendcu.codecs import get_codec  # noqa: E402
from opendcu.geometry import DetectorLayout, get_model  # noqa: E402


def mx_like_images(shape: tuple[int, int], n: int, dtype: np.dtype, mask: np.ndarray) -> list[np.ndarray]:
    """Diffraction-like frames: a weak background, a few hundred Bragg spots, gaps at the error value."""
    rng = np.random.default_rng(7)
    out = []
    h, w = shape
    for _ in range(n):
        img = rng.poisson(0.4, size=shape).astype(dtype)
        ys, xs = rng.integers(0, h, 400), rng.integers(0, w, 400)
        img[ys, xs] += rng.integers(50, 5000, 400).astype(dtype)
        img[mask != 0] = np.iinfo(dtype).max
        out.append(img)
    return out


def hugepages_note(directory: Path) -> str:
    try:
        shmem = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled").read_text().strip()
    except OSError:
        shmem = "unknown"
    mounts = Path("/proc/mounts").read_text().splitlines()
    target = max((m.split() for m in mounts if str(directory).startswith(m.split()[1])), key=lambda m: len(m[1]))
    return f"{directory}: {target[2]} ({target[3]}); tmpfs hugepages (shmem_enabled): {shmem}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="eiger2-4m")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--bits", type=int, default=16, choices=[8, 16, 32])
    ap.add_argument("--dir", default="/dev/shm", help="where files are written (DECTRIS keeps them in RAM)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--filter-images", type=int, default=10, help="images for the (slow) h5py filter path")
    ap.add_argument("--no-hugepages", action="store_true", help="skip the hugepage-tmpfs run")
    args = ap.parse_args()
    measure(args)
    if not args.no_hugepages:
        hugepage_run()


def hugepage_run() -> None:
    """Run this bench again on a hugepage tmpfs mounted in a private mount namespace (if we may)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("hugepage tmpfs run skipped: needs root and unshare to mount a private tmpfs")
        return
    folder = tempfile.mkdtemp(prefix="opendcu-huge-")
    argv = [a for a in sys.argv[1:] if not a.startswith("--dir")]
    cmd = (
        f"mount -t tmpfs -o huge=always,size=8g tmpfs {folder} && "
        f"{sys.executable} {Path(__file__).resolve()} {' '.join(argv)} --dir {folder} --no-hugepages"
    )
    try:
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd], check=False)
    finally:
        os.rmdir(folder)


def measure(args: argparse.Namespace) -> None:

    model = get_model(args.detector)
    layout = DetectorLayout(model)
    dtype = np.dtype(f"u{args.bits // 8}")
    mask = layout.default_pixel_mask()
    frames = mx_like_images(model.shape, min(args.images, 20), dtype, mask)
    codec = get_codec("bslz4")
    chunks = [codec.encode(frames[i % len(frames)]) for i in range(args.images)]
    total = sum(c.nbytes for c in chunks)
    ring = SlotRing(args.images, max(c.nbytes for c in chunks))
    for i, c in enumerate(chunks):
        ring.bytes(i, c.nbytes)[:] = c
    root = Path(tempfile.mkdtemp(prefix="opendcu-bench-", dir=args.dir))
    h, w = model.shape

    settings = SeriesSettings(1, model.name, args.images, args.bits, "bslz4", True, False)
    cfg = {
        "wavelength": 1.0,
        "photon_energy": 12398.4,
        "threshold_energy": 6199.2,
        "beam_center_x": w / 2,
        "beam_center_y": h / 2,
        "detector_distance": 0.2,
        "bit_depth_readout": 16,
        "detector_readout_time": 1e-7,
        "description": model.description,
        "detector_number": model.detector_number,
        "software_version": "bench",
        "sensor_material": "Si",
        "sensor_thickness": 4.5e-4,
        "x_pixel_size": 75e-6,
        "y_pixel_size": 75e-6,
        "x_pixels_in_detector": w,
        "y_pixels_in_detector": h,
        "omega_start": 0.0,
        "omega_increment": 0.1,
    }

    def image(i: int) -> CompressedImage:
        return CompressedImage(
            1,
            i,
            ring.bytes(i, chunks[i].nbytes),
            dtype,
            model.shape,
            "bslz4",
            1,
            1,
            shm_name=ring.name,
            shm_offset=i * ring.stride,
        )

    def raw_write() -> float:
        path = root / "raw.bin"
        path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for i in range(args.images):
                os.write(fd, ring.bytes(i, chunks[i].nbytes))
        finally:
            os.close(fd)
        return time.perf_counter() - t0

    writers: dict[str, FileWriter] = {}
    master_times: dict[str, float] = {}

    def filewriter(mode: str) -> float:
        fw = writers.get(mode)
        if fw is None:
            fw = writers[mode] = FileWriter(root / mode)
            # one data file, except vds: one file per writer process (its parallelism is across files)
            per_file = -(-args.images // args.processes) if mode == "vds" else args.images
            fw.subsystem.values.update(
                mode="enabled", writer_mode=mode, writer_processes=args.processes, nimages_per_file=per_file
            )
        shutil.rmtree(root / mode, ignore_errors=True)
        (root / mode).mkdir()
        mux = ImageMux()
        mux.attach(fw)
        series = Series(settings, args.images, 1, "ints", 0.01, 0.01, cfg, mask)
        t0 = time.perf_counter()
        mux.start_series(series)  # writes the master
        t1 = time.perf_counter()
        for i in range(args.images):
            mux.publish(image(i))
        mux.end_series(series)
        t2 = time.perf_counter()
        master_times[mode] = t1 - t0
        assert not fw.errors, fw.errors
        return t2 - t1

    def h5py_filter_path() -> float:
        path = root / "filter.h5"
        path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        with h5py.File(path, "w") as f:
            ds = f.create_dataset(
                "data",
                shape=(args.filter_images, h, w),
                dtype=dtype,
                chunks=(1, h, w),
                **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
            )
            for i in range(args.filter_images):
                ds[i] = frames[i % len(frames)]
        return time.perf_counter() - t0

    try:
        # contenders take turns, best of `repeat` each: first-touch page allocation of the target filesystem is
        # noisy (hugepages above all) and must not favour whoever runs in a quiet moment
        contenders = {
            "raw": raw_write,
            "serial": lambda: filewriter("serial"),
            "parallel": lambda: filewriter("parallel"),
            "vds": lambda: filewriter("vds"),
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeat):
            for name, fn in contenders.items():
                times[name].append(fn())
        raw_fps = args.images / best(times["raw"])
        filt_fps = args.filter_images / best([h5py_filter_path() for _ in range(args.repeat)])
        table = ResultTable(
            f"FileWriter, {args.images} x {model.name} {h}x{w} uint{args.bits} "
            f"({total / args.images / 1e6:.2f} MB/chunk, ratio {h * w * dtype.itemsize * args.images / total:.1f})"
        )
        table.add("raw write() of the same chunk bytes", raw_fps, "img/s")
        table.add("h5py dset[i] = frame with the bslz4 filter", filt_fps, "img/s")
        for mode in ("serial", "parallel", "vds"):
            fps = args.images / best(times[mode])
            label = mode if mode == "serial" else f"{mode} ({args.processes} processes)"
            table.add(f"FileWriter {label} vs raw write()", fps, "img/s", raw_fps, fps / raw_fps, ">= 0.9x")
            table.add(f"FileWriter {label} vs h5py filter path", fps, "img/s", filt_fps, fps / filt_fps, ">= 10x")
        table.add("master file at arm (serial)", master_times["serial"] * 1e3, "ms")
        table.print(Console(width=150))
        print(hugepages_note(root))
        print(f"{total / best(times['raw']) / 1e9:.2f} GB/s raw write of compressed bytes; {os.cpu_count()} CPUs")
    finally:
        for fw in writers.values():
            fw.close()
        shutil.rmtree(root, ignore_errors=True)
        ring.close()


if __name__ == "__main__":
    main()
