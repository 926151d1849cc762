"""Analysis results of recent series: kept for REST queries, pushed to live watchers, turned into NXmx arrays.

A result is a plain dict (JSON-ready scalars and lists) made by the worker (see worker.result_record) and
completed by the interface with latency and decimation counters. The store keeps the last `keep_series` series;
per series it keeps every result's scalars and spot list, and the radial profiles of the latest `keep_profiles`.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Record = dict[str, Any]

#: per-image scalars written to NXmx /entry/MX (name in the file, key in a record, dtype, fill value)
MX_SCALARS = (
    ("nSpotsNoIce", "n_spots_no_ice", np.int32, -1),
    ("nSpotsLowRes", "n_spots_low_res", np.int32, -1),
    ("totalIntensity", "total_intensity", np.float32, np.nan),
    ("dMin", "d_min", np.float32, np.nan),
    ("isHit", "is_hit", np.uint8, 0),
    ("background", "background", np.float32, np.nan),
    ("iceScore", "ice_score", np.float32, np.nan),
    ("indexed", "indexed", np.uint8, 0),
    ("nIndexed", "n_indexed", np.int32, 0),
    ("fractionIndexed", "fraction_indexed", np.float32, np.nan),
)


@dataclass
class SeriesResults:
    """The results of one series, and what happened to its images."""

    series_id: int
    nimages: int
    records: dict[int, Record] = field(default_factory=dict)  # image_id -> record
    images_received: int = 0
    images_skipped: int = 0  # offered but not analysed: workers busy (decimation under load)
    images_strided: int = 0  # not offered to analysis by the configured stride
    images_lost: int = 0  # handed to a worker that died before it answered (no result)
    finished: bool = False
    radial: list[float] | None = None
    radial_unit: str = ""
    found_cell: list[float] | None = None

    @property
    def images_analysed(self) -> int:
        return len(self.records)

    def summary(self) -> Record:
        hits = sum(1 for r in self.records.values() if r.get("is_hit"))
        indexed = sum(1 for r in self.records.values() if r.get("indexed"))
        analysed = self.images_analysed
        d_min = [r["d_min"] for r in self.records.values() if r.get("d_min") is not None]
        n_spots = [r["n_spots"] for r in self.records.values() if r.get("n_spots") is not None]
        latency = [r["latency_ms"] for r in self.records.values() if "latency_ms" in r]
        return {
            "series_id": self.series_id,
            "nimages": self.nimages,
            "finished": self.finished,
            "images_received": self.images_received,
            "images_analysed": analysed,
            "images_skipped": self.images_skipped,
            "images_strided": self.images_strided,
            "images_lost": self.images_lost,
            "decimated": self.images_skipped > 0,
            "hits": hits,
            "hit_rate": hits / analysed if analysed else None,
            "indexing_rate": indexed / analysed if analysed else None,
            "median_d_min": float(np.median(d_min)) if d_min else None,
            "best_d_min": float(min(d_min)) if d_min else None,
            "median_n_spots": float(np.median(n_spots)) if n_spots else None,
            "max_n_spots": int(max(n_spots)) if n_spots else 0,
            "median_latency_ms": float(np.median(latency)) if latency else None,
            "found_cell": self.found_cell,
        }


class ResultStore:
    """Thread-safe store of recent series' results, with live subscribers (for server-sent events)."""

    def __init__(self, keep_series: int = 4, keep_profiles: int = 10_000):
        self.keep_series = keep_series
        self.keep_profiles = keep_profiles
        self._series: OrderedDict[int, SeriesResults] = OrderedDict()
        self._profiles: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue] = []

    # -- writing --------------------------------------------------------------------------------------------------
    def start_series(self, series_id: int, nimages: int) -> SeriesResults:
        with self._lock:
            results = SeriesResults(series_id, nimages)
            self._series[series_id] = results
            while len(self._series) > self.keep_series:
                self._series.popitem(last=False)
        self._publish({"event": "series_start", "series_id": series_id, "nimages": nimages})
        return results

    def add(self, record: Record) -> None:
        with self._lock:
            results = self._series.get(record["series_id"])
            if results is None:
                return
            profile = record.get("profile")
            if profile is not None:
                if results.radial is None:
                    results.radial, results.radial_unit = profile["radial"], profile["unit"]
                self._profiles.append((record["series_id"], record["image_id"]))
                self._trim_profiles()
            results.records[record["image_id"]] = record
        self._publish({"event": "result", **record})

    def _trim_profiles(self) -> None:
        while len(self._profiles) > self.keep_profiles:
            series_id, image_id = self._profiles.pop(0)
            old = self._series.get(series_id)
            if old is not None and image_id in old.records:
                old.records[image_id].pop("profile", None)

    def finish_series(self, series_id: int) -> Record | None:
        """Mark the series finished; its summary (None for an unknown series)."""
        with self._lock:
            results = self._series.get(series_id)
            if results is None:
                return None
            results.finished = True
            summary = results.summary()
        self._publish({"event": "series_end", **summary})
        return summary

    def clear(self) -> None:
        with self._lock:
            self._series.clear()
            self._profiles.clear()

    # -- reading ------------------------------------------------------------------------------------------------
    def series(self, series_id: int | None = None) -> SeriesResults | None:
        """A series' results (None = the latest)."""
        with self._lock:
            if series_id is None or series_id == 0:
                return next(reversed(self._series.values()), None)
            return self._series.get(series_id)

    def records(self, series_id: int | None, start: int = 0, limit: int = 1000) -> list[Record]:
        results = self.series(series_id)
        if results is None:
            return []
        with self._lock:
            ids = sorted(i for i in results.records if i >= start)[:limit]
            return [results.records[i] for i in ids]

    # -- live subscribers -------------------------------------------------------------------------------------------
    def subscribe(self, maxsize: int = 10_000) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=maxsize)
        with self._lock:
            self._subscribers.append(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._subscribers:
                self._subscribers.remove(q)

    def _publish(self, event: Record) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            try:
                q.put_nowait(event)
            except queue.Full:  # a stalled watcher loses events rather than growing without bound
                pass

    # -- NXmx ----------------------------------------------------------------------------------------------------------
    def master_datasets(self, series_id: int, max_spots: int = 256) -> dict[str, np.ndarray]:
        """Per-image arrays of a series for the NXmx master (images never analysed carry the fill values).

        /entry/MX follows the CrystFEL "peaks=cxi" layout that Jungfraujoch writes (nPeaks, peakXPosRaw,
        peakYPosRaw, peakTotalIntensity; positions in edge-based pixels: pixel centres at +0.5) plus the scores;
        /entry/azint holds the radial profiles."""
        results = self.series(series_id)
        if results is None:
            return {}
        with self._lock:
            n = results.nimages
            records = {i: r for i, r in results.records.items() if 0 <= i < n}
            width = max([min(len(r["spots"]["x"]), max_spots) for r in records.values()] + [1])
            out: dict[str, np.ndarray] = {
                "/entry/MX/imageAnalysed": np.zeros(n, np.uint8),
                "/entry/MX/nPeaks": np.zeros(n, np.int32),
                "/entry/MX/peakXPosRaw": np.zeros((n, width), np.float32),
                "/entry/MX/peakYPosRaw": np.zeros((n, width), np.float32),
                "/entry/MX/peakTotalIntensity": np.zeros((n, width), np.float32),
                "/entry/MX/unitCell": np.full((n, 6), np.nan, np.float32),
                "/entry/MX/ubMatrix": np.full((n, 3, 3), np.nan, np.float32),
            }
            for name, _key, dtype, fill in MX_SCALARS:
                out[f"/entry/MX/{name}"] = np.full(n, fill, dtype)
            profile_width = len(results.radial) if results.radial is not None else 0
            profiles = np.full((n, profile_width), np.nan, np.float32) if profile_width else None
            for i, r in records.items():
                out["/entry/MX/imageAnalysed"][i] = 1
                spots = r["spots"]
                k = min(len(spots["x"]), width)
                out["/entry/MX/nPeaks"][i] = k
                out["/entry/MX/peakXPosRaw"][i, :k] = spots["x"][:k]
                out["/entry/MX/peakYPosRaw"][i, :k] = spots["y"][:k]
                out["/entry/MX/peakTotalIntensity"][i, :k] = spots["intensity"][:k]
                for name, key, _dtype, _fill in MX_SCALARS:
                    if r.get(key) is not None:
                        out[f"/entry/MX/{name}"][i] = r[key]
                if r.get("unit_cell"):
                    out["/entry/MX/unitCell"][i] = r["unit_cell"]
                    out["/entry/MX/ubMatrix"][i] = np.reshape(r["ub_matrix"], (3, 3))
                profile = r.get("profile")
                if profiles is not None and profile is not None and len(profile["intensity"]) == profile_width:
                    profiles[i] = profile["intensity"]
            if profiles is not None:
                out["/entry/azint/radial"] = np.asarray(results.radial, np.float64)
                out["/entry/azint/radial_unit"] = np.array(results.radial_unit.encode())
                out["/entry/azint/image"] = profiles
        return out
