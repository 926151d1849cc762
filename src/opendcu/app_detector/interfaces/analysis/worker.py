"""An analysis worker process: decode the compressed images it is handed and analyse them.

It runs at low CPU priority (nice 10; images are analysed under SCHED_IDLE) with one numba thread by default, so
that acquisition (DAQ, pipeline workers, file writing, the simulated modules) always comes first on a busy
machine. It owns nothing but a FrameAnalyzer; images reach it
as slot numbers of the interface's shared-memory ring, results leave as small dicts.

Inbox messages (per worker, in order):
    ("setup", series_id, setup: dict)      build (or reuse) the analyzer of a series
    ("image", series_id, image_id, slot, nbytes, dtype, shape, compression, phi_deg, index)
    ("cell", series_id, cell)               a cell found for the series (by any worker): index with it
    ("stop",)
Outbox messages (shared by all workers):
    ("ready", worker_id, series_id, setup_ms, error | None)
    ("result", worker_id, slot, record)        record: see result_record()
    ("failed", worker_id, slot, series_id, image_id, message)
    ("cell", worker_id, series_id, cell, fraction_indexed, n_spots)

Indexing without a configured cell: the worker gathers the reciprocal-lattice points of the images it analyses
and, once it has CELL_SEARCH_FIRST images spanning CELL_SEARCH_MIN_SPAN deg of rotation, searches a cell
(index.search_cell, ~1 s); failed searches are retried with twice as many images, up to CELL_SEARCH_LAST.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from opendcu.analysis.crystal import UnitCell

log = logging.getLogger(__name__)

CELL_SEARCH_FIRST = 10
CELL_SEARCH_LAST = 160
CELL_SEARCH_MIN_SPAN = 2.0  # deg


class CellSearch:
    """Reciprocal-lattice points of one series, gathered until a cell search succeeds."""

    def __init__(self) -> None:
        self.vectors: list[np.ndarray] = []
        self.phis: list[float] = []
        self.next_try = CELL_SEARCH_FIRST
        self.cell: UnitCell | None = None

    def add(self, rlp: np.ndarray | None, phi_deg: float):
        """Add an image's points; returns the search result when a search ran and succeeded."""
        from opendcu.analysis.index import search_cell

        if self.cell is not None or rlp is None or len(rlp) == 0 or self.next_try > CELL_SEARCH_LAST:
            return None
        self.vectors.append(np.asarray(rlp, np.float64))
        self.phis.append(phi_deg)
        if len(self.vectors) < self.next_try or max(self.phis) - min(self.phis) < CELL_SEARCH_MIN_SPAN:
            return None
        self.next_try *= 2
        result = search_cell(np.concatenate(self.vectors))
        if result is not None and result.fraction_indexed >= 0.8:
            self.cell = result.cell
            self.vectors.clear()
            return result
        return None


def unpack_mask(packed: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The boolean mask (True = invalid) from np.packbits bytes."""
    return np.unpackbits(np.frombuffer(packed, np.uint8), count=shape[0] * shape[1]).astype(bool).reshape(shape)


def build_analyzer(setup: dict[str, Any]):
    """A FrameAnalyzer from a setup dict (see interface.AnalysisInterface._setup)."""
    from opendcu.analysis.crystal import UnitCell
    from opendcu.analysis.frame import AnalysisSettings, FrameAnalyzer
    from opendcu.analysis.geometry import Geometry
    from opendcu.analysis.index import IndexingSettings
    from opendcu.analysis.integrate import IntegrationSettings
    from opendcu.analysis.scoring import ScoringSettings
    from opendcu.analysis.spots import SpotFinderSettings

    geometry = Geometry(**{**setup["geometry"], "shape": tuple(setup["geometry"]["shape"])})
    mask = unpack_mask(setup["mask"], geometry.shape)
    integration = IntegrationSettings(**setup["integration"]) if setup.get("integration") else None
    spots = SpotFinderSettings(**setup["spots"]) if setup.get("spots") else None
    indexing = None
    if setup.get("indexing"):
        options = dict(setup["indexing"])
        cell = options.pop("cell", None)
        indexing = IndexingSettings(cell=UnitCell.from_sequence(cell) if cell else None, **options)
    settings = AnalysisSettings(
        integration=integration,
        spots=spots,
        scoring=ScoringSettings(**setup["scoring"]),
        indexing=indexing,
        threads=setup.get("threads", 1),
    )
    return FrameAnalyzer(geometry, mask, settings)


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, np.float64)]


def result_record(result, series_id: int, image_id: int, phi_deg: float, max_spots: int) -> dict[str, Any]:
    """A FrameResult as a JSON-ready dict (spots: the `max_spots` most intense)."""
    record: dict[str, Any] = {
        "series_id": series_id,
        "image_id": image_id,
        "image_number": image_id + 1,
        "phi_deg": phi_deg,
    }
    if result.score is not None:
        record.update(result.score.as_dict())
    spots = result.spots
    if spots is not None:
        order = np.argsort(spots.intensity)[::-1][:max_spots]
        record["spots"] = {
            "x": _floats(spots.x[order]),
            "y": _floats(spots.y[order]),
            "intensity": _floats(spots.intensity[order]),
            "d": _floats(spots.d[order]),
            "npix": [int(v) for v in spots.npix[order]],
        }
        record["n_strong_pixels"] = spots.n_strong_pixels
        record["overloaded"] = spots.overloaded
    else:
        record["spots"] = {"x": [], "y": [], "intensity": [], "d": [], "npix": []}
    indexing = result.indexing
    record["indexed"] = indexing is not None
    record["n_indexed"] = indexing.n_indexed if indexing is not None else 0
    record["fraction_indexed"] = indexing.fraction_indexed if indexing is not None else None
    record["unit_cell"] = list(indexing.cell.as_tuple()) if indexing is not None else None
    record["ub_matrix"] = _floats(indexing.A.reshape(-1)) if indexing is not None else None
    record["rmsd"] = indexing.rmsd if indexing is not None else None
    profile = result.profile
    if profile is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            if profile.sum_signal.ndim == 2:  # a cake: also its azimuthal average
                norm = profile.sum_normalization.sum(axis=0)
                mean = np.where(norm > 0, profile.sum_signal.sum(axis=0) / norm, np.nan)
            else:
                mean = profile.intensity
        record["profile"] = {"radial": _floats(profile.radial), "unit": profile.unit, "intensity": _floats(mean)}
        if profile.sum_signal.ndim == 2:
            record["profile"]["azimuthal"] = _floats(profile.azimuthal)
            record["profile"]["cake"] = [_floats(row) for row in profile.intensity]
    record["rlp_count"] = 0 if result.rlp is None else int(len(result.rlp))
    record["timings_ms"] = {k: round(v, 3) for k, v in result.timings_ms.items()}
    return record


def run_worker(worker_id: int, inbox, outbox, ring_spec: tuple[str, int, int], threads: int, nice: int) -> None:
    """Entry point of a worker process; `outbox` is its own result pipe (a Connection)."""
    from opendcu.app_detector.os_threads import lower_this_process_priority, name_this_thread, run_on_idle_cpu_only
    from opendcu.lifecycle import child_process_setup

    # blocks on its inbox; holds nothing to save (the ring is the parent's), so SIGTERM ends it even mid-warm-up
    child_process_setup(f"analysis-worker-{worker_id}", exit_on_term="at_once")
    name_this_thread(f"analysis-w{worker_id}")  # its /proc comm: what ps, top and the fault tests see
    if nice:
        lower_this_process_priority(nice)
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    from opendcu.app_detector.shared_memory import SlotRing
    from opendcu.codecs import get_codec
    from opendcu.codecs.float8 import DECODE_NEAREST_TABLE

    ring = SlotRing.attach(ring_spec)
    analyzers: dict[int, Any] = {}  # series_id -> analyzer (the latest two series)
    setups: dict[int, dict[str, Any]] = {}
    searches: dict[int, CellSearch] = {}
    cache_key: tuple | None = None
    cached = None
    try:
        while True:
            message = inbox.get()
            kind = message[0]
            if kind == "stop":
                return
            if kind == "setup":
                # a setup may compile kernels, which arm waits for: at the nice level only; images on idle CPU
                run_on_idle_cpu_only(False)
                _, series_id, setup = message
                t0 = time.perf_counter()
                error = None
                key = setup["cache_key"]
                try:
                    if key != cache_key:
                        cached, cache_key = build_analyzer(setup), key
                        cached.warm_up(np.dtype(setup["dtype"]), setup["invalid_value"])
                    analyzers[series_id] = cached
                    setups[series_id] = setup
                    searches[series_id] = CellSearch()
                    for old in sorted(analyzers)[:-2]:
                        analyzers.pop(old, None)
                        setups.pop(old, None)
                        searches.pop(old, None)
                except Exception as exc:  # a bad setup must not kill the worker
                    error = f"{type(exc).__name__}: {exc}"
                    log.exception("analysis setup failed")
                outbox.send(("ready", worker_id, series_id, (time.perf_counter() - t0) * 1e3, error))
                if nice:
                    run_on_idle_cpu_only(True)
                continue
            if kind == "cell":
                _, series_id, cell = message
                if series_id in searches and searches[series_id].cell is None:
                    from opendcu.analysis.crystal import UnitCell

                    searches[series_id].cell = UnitCell.from_sequence(cell)
                continue
            _, series_id, image_id, slot, nbytes, dtype, shape, compression, phi_deg, index = message
            try:
                analyzer = analyzers.get(series_id)
                if analyzer is None:
                    raise RuntimeError(f"no analysis setup for series {series_id}")
                setup = setups[series_id]
                t0 = time.perf_counter()
                image = get_codec(compression).decode(ring.bytes(slot, nbytes), np.dtype(dtype), tuple(shape))
                if setup["float8"]:  # E3M5 codes -> counts (0xFF, saturated or masked, -> the invalid 0xFFFF)
                    image = DECODE_NEAREST_TABLE[image]
                decode_ms = (time.perf_counter() - t0) * 1e3
                search = searches[series_id]
                result = analyzer.analyse(image, setup["invalid_value"], phi_deg, index=index, cell=search.cell)
                record = result_record(result, series_id, image_id, phi_deg, setup["max_spots"])
                record["indexing_skipped"] = not index and analyzer.settings.indexing is not None
                if analyzer.settings.indexing is not None and analyzer.settings.indexing.cell is None:
                    found = search.add(result.rlp, phi_deg)
                    if found is not None:
                        outbox.send(
                            (
                                "cell",
                                worker_id,
                                series_id,
                                list(found.cell.as_tuple()),
                                found.fraction_indexed,
                                found.n_spots,
                            )
                        )
                record["timings_ms"]["decode"] = round(decode_ms, 3)
                record["analysis_ms"] = (time.perf_counter() - t0) * 1e3
                outbox.send(("result", worker_id, slot, record))
            except Exception as exc:
                log.error("analysis of image %d failed: %s", image_id, traceback.format_exc())
                outbox.send(("failed", worker_id, slot, series_id, image_id, f"{type(exc).__name__}: {exc}"))
    finally:
        ring.close()
