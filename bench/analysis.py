"""Edge analysis benchmark: ms per frame on simulated EIGER2 1M and 4M MX frames, ours against the references.

    .venv/bin/python bench/analysis.py [--repeat N]

Rows per detector:
- radial integration (1000 q bins, solid angle + polarization, gaps masked): ours (1 and 2 threads) vs pyFAI
  integrate1d ("no", "csr", "cython"), the equal-result method (max relative difference printed), and pyFAI's
  default ("bbox", "csr", "cython");
- spot finding (DIALS dispersion): ours vs the dense numpy + scipy.ndimage finder (opendcu/testing/reference.py);
- the whole per-frame chain (decode + integrate + spots + score + indexing) and its parts' bounds: bslz4 decode,
  one numpy pass over the frame;
- live latency, image arrival at the analysis interface -> result, through real worker processes: one image at a
  time (idle workers), and back to back (how much of the stream gets analysed).
Goals (issue #7): radial integration >= 10x faster than pyFAI at equal result; spot finding <= 20 ms per 4M frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultTable, best, time_call  # noqa: E402

from opendcu.analysis.crystal import UnitCell  # noqa: E402
from opendcu.analysis.frame import AnalysisSettings, FrameAnalyzer  # noqa: E402
from opendcu.analysis.geometry import Geometry  # noqa: E402
from opendcu.analysis.index import IndexingSettings  # noqa: E402
from opendcu.analysis.integrate import IntegrationSettings, RadialIntegrator  # noqa: E402
from opendcu.analysis.spots import SpotFinder  # noqa: E402
from opendcu.codecs import get_codec  # noqa: E402
from opendcu.geometry import DetectorLayout, get_model  # noqa: E402
from opendcu.simulator.scenes import make_scene  # noqa: E402
from opendcu.testing.reference import dense_dispersion_spots  # noqa: E402
from opendcu.testing.simulate import poisson_image  # noqa: E402

warnings.filterwarnings("ignore")
ERROR32 = 0xFFFFFFFF
LYSOZYME = (79.1, 79.1, 37.9, 90.0, 90.0, 90.0)
DETECTORS = {"eiger2-1m": 0.1, "eiger2-4m": 0.2}  # detector distance (m): MX to the corners


def setup(detector: str):
    model = get_model(detector)
    h, w = model.shape
    bx, by = w / 2 + 0.37, h / 2 - 0.21
    distance = DETECTORS[detector]
    spec = {
        "kind": "mx",
        "d_min": 2.0,
        "experiment": {
            "wavelength_a": 1.0,
            "distance_m": distance,
            "beam_center_x_px": bx,
            "beam_center_y_px": by,
            "count_time_s": 0.1,
            "omega_increment_deg": 0.1,
        },
    }
    scene = make_scene(model, 1, spec)
    image = poisson_image(scene, model, 3, np.random.default_rng(1))
    geometry = Geometry.from_beam_center(model.shape, bx, by, distance, 1.0)
    return model, DetectorLayout(model).gap_mask.copy(), geometry, image, scene


def bench_integration(
    table: ResultTable, name: str, geometry: Geometry, mask: np.ndarray, image: np.ndarray, repeat: int
) -> None:
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    settings = IntegrationSettings(npt=1000, unit="q_nm^-1", polarization_factor=0.99)
    ours = RadialIntegrator(geometry, settings, mask=mask)
    ai = AzimuthalIntegrator(
        dist=geometry.dist,
        poni1=geometry.poni1,
        poni2=geometry.poni2,
        detector=Detector(75e-6, 75e-6, max_shape=geometry.shape),
        wavelength=geometry.wavelength,
    )
    as_float = image.astype(np.float32)

    def pyfai(method):
        return ai.integrate1d(
            as_float,
            1000,
            unit="q_nm^-1",
            method=method,
            mask=mask,
            dummy=float(ERROR32),
            delta_dummy=0.5,
            polarization_factor=0.99,
            radial_range=ours.radial_range,
            correctSolidAngle=True,
        )

    no_split = pyfai(("no", "csr", "cython"))
    profile = ours.integrate(image, ERROR32)
    filled = no_split.count > 0
    rel = np.abs(profile.intensity[filled][1:] / no_split.intensity[filled][1:] - 1).max()
    t_pyfai = best(time_call(lambda: pyfai(("no", "csr", "cython")), repeat, 2))
    t_bbox = best(time_call(lambda: pyfai(("bbox", "csr", "cython")), repeat, 2))
    # the same output as that pyFAI call: intensities (no error model, so no variance either)
    t1 = best(time_call(lambda: ours.integrate(image, ERROR32, threads=1, variance=False), repeat, 2))
    t2 = best(time_call(lambda: ours.integrate(image, ERROR32, threads=2, variance=False), repeat, 2))
    table.add(f"{name} pyFAI integrate1d no/csr (max rel. diff {rel:.1e})", t_pyfai * 1e3, "ms")
    table.add(f"{name} pyFAI integrate1d bbox/csr (its default)", t_bbox * 1e3, "ms")
    table.add(f"{name} radial integration, ours 1 thread", t1 * 1e3, "ms", t_pyfai * 1e3, t_pyfai / t1, ">= 10x")
    table.add(f"{name} radial integration, ours 2 threads", t2 * 1e3, "ms", t_pyfai * 1e3, t_pyfai / t2, ">= 10x")


def bench_spots(
    table: ResultTable, name: str, geometry: Geometry, mask: np.ndarray, image: np.ndarray, repeat: int
) -> None:
    finder = SpotFinder(geometry, mask)
    ring_mean = finder.rings.integrate(image, ERROR32).mean_counts
    background = np.nan_to_num(ring_mean)[np.maximum(finder.rings.pixel_radial, 0)]
    t_dense = best(
        time_call(
            lambda: dense_dispersion_spots(image, ~mask, background, invalid_value=ERROR32), max(2, repeat // 3), 1
        )
    )
    dense = dense_dispersion_spots(image, ~mask, background, invalid_value=ERROR32)
    spots = finder.find(image, ERROR32)
    t1 = best(time_call(lambda: finder.find(image, ERROR32, threads=1), repeat, 2))
    t2 = best(time_call(lambda: finder.find(image, ERROR32, threads=2), repeat, 2))
    goal = "<= 20 ms" if "4M" in name else ""
    table.add(f"{name} dense numpy+ndimage finder ({len(dense['x'])} spots)", t_dense * 1e3, "ms")
    table.add(
        f"{name} spot finding, ours 1 thread ({len(spots)} spots)", t1 * 1e3, "ms", t_dense * 1e3, t_dense / t1, goal
    )
    table.add(f"{name} spot finding, ours 2 threads", t2 * 1e3, "ms", t_dense * 1e3, t_dense / t2, goal)


def bench_chain(
    table: ResultTable, name: str, geometry: Geometry, mask: np.ndarray, image: np.ndarray, repeat: int
) -> None:
    codec = get_codec("bslz4")
    chunk = codec.encode(image)
    settings = AnalysisSettings(
        integration=IntegrationSettings(polarization_factor=0.99), indexing=IndexingSettings(cell=UnitCell(*LYSOZYME))
    )
    analyzer = FrameAnalyzer(geometry, mask, settings)
    phi = 0.25

    def chain(index: bool) -> None:
        frame = codec.decode(chunk, image.dtype, image.shape)
        analyzer.analyse(frame, ERROR32, phi, index=index)

    scratch = np.empty_like(image)
    t_copy = best(time_call(lambda: np.copyto(scratch, image), repeat, 2))
    t_decode = best(time_call(lambda: codec.decode(chunk, image.dtype, image.shape), repeat, 2))
    t_chain = best(time_call(lambda: chain(False), repeat, 1))
    t_index = best(time_call(lambda: chain(True), max(2, repeat // 2), 1))
    result = analyzer.analyse(image, ERROR32, phi)
    indexed = "indexed" if result.indexing is not None else "not indexed"
    table.add(f"{name} one numpy pass over the frame (bandwidth bound)", t_copy * 1e3, "ms")
    table.add(f"{name} bslz4 decode ({image.nbytes / chunk.nbytes:.1f}x compressed)", t_decode * 1e3, "ms")
    table.add(f"{name} decode+integrate+spots+score, 1 thread", t_chain * 1e3, "ms", t_decode * 1e3, t_chain / t_decode)
    table.add(f"{name} ... + known-cell indexing ({indexed})", t_index * 1e3, "ms", t_decode * 1e3, t_index / t_decode)


def bench_live(table: ResultTable, name: str, model, geometry: Geometry, images: list[np.ndarray]) -> None:
    """Latency from offer() to the result through real worker processes (one image at a time), then the images
    arriving at the detector's full frame rate for 2 s: which fraction the live analysis keeps up with."""
    from opendcu.app_detector.imagemux.mux import CompressedImage
    from opendcu.app_detector.interfaces.analysis import AnalysisInterface
    from opendcu.app_detector.series import Series, SeriesSettings

    codec = get_codec("bslz4")
    chunks = [codec.encode(i) for i in images]
    interface = AnalysisInterface(model)
    interface.subsystem.set("mode", "enabled")
    interface.subsystem.set("unit_cell", list(LYSOZYME))
    bx, by = geometry.beam_center_px

    def run(series_id: int, count: int, rate: float | None) -> tuple[list[float], int]:
        settings = SeriesSettings(
            series_id=series_id,
            detector=model.name,
            nimages_total=count,
            bit_depth_image=32,
            compression="bslz4",
            pixel_mask_applied=True,
            mask_to_zero=False,
        )
        series = Series(
            settings=settings,
            nimages=count,
            ntrigger=1,
            trigger_mode="ints",
            count_time=0.1,
            frame_time=0.1,
            detector_config={
                "beam_center_x": bx,
                "beam_center_y": by,
                "detector_distance": geometry.dist,
                "wavelength": 1.0,
                "omega_start": 0.0,
                "omega_increment": 0.1,
            },
        )
        interface.start_series(series)
        time.sleep(3.0)  # workers build their maps at arm
        t0 = time.perf_counter()
        for i in range(count):
            if rate:
                delay = t0 + i / rate - time.perf_counter()  # the detector's frame clock
                if delay > 0:
                    time.sleep(delay)
            image = CompressedImage(
                series_id=series_id,
                image_id=i,
                data=chunks[i % len(chunks)],
                dtype=np.dtype(np.uint32),
                shape=model.shape,
                compression="bslz4",
                packets_expected=1,
                packets_received=1,
            )
            interface.offer(image)
            if not rate:
                interface.wait_idle(series_id, timeout=30)
        interface.end_series(series, aborted=False)
        records = interface.store.series(series_id).records.values()
        return [r["latency_ms"] for r in records], len(records)

    try:
        latency, _ = run(1, 12, rate=None)
        table.add(f"{name} live latency, arrival -> result, idle worker (median)", statistics.median(latency), "ms")
        rate = model.max_frame_rate
        count = int(2 * rate)
        _, analysed = run(2, count, rate=rate)
        table.add(
            f"{name} live at {rate:.0f} Hz for 2 s: images analysed (1 worker, decimated)",
            analysed,
            "images",
            count,
            analysed / count,
        )
    finally:
        interface.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    table = ResultTable(f"edge analysis, ms per frame (best of {args.repeat}; {os.cpu_count()} CPUs)")
    for detector in DETECTORS:
        name = detector.replace("eiger2-", "").upper()
        model, mask, geometry, image, scene = setup(detector)
        bench_integration(table, name, geometry, mask, image, args.repeat)
        bench_spots(table, name, geometry, mask, image, args.repeat)
        bench_chain(table, name, geometry, mask, image, args.repeat)
        more = [poisson_image(scene, model, f, np.random.default_rng(f)) for f in (10, 20, 30)]
        bench_live(table, name, model, geometry, [image, *more])
    table.print(Console(width=160))


if __name__ == "__main__":
    main()
