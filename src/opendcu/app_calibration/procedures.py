"""Calibration procedures: they take series through app-detector (`detector_link.py`) like any client and turn
them into a calibration set (`store.py`).

- flatfield: floods at a photon / threshold energy until each ordinary pixel has 1 / precision^2 counts
  (the 0.1 % lowest pixel decides), pile-up kept below ~3 % and corrected by the pipeline, gaps and the
  pixel-mask's pixels left at 1; factor = median response / pixel response, per physical pixel;
- pixel_mask: dead / under- / over-responding pixels from a flood, hot and noisy pixels from darks (dark rate,
  excess variance), SIMPLON mask bits;
- countrate: mean counts of each module at a series of fluxes without count-rate correction, fit of the
  paralysable model -> the dead time tau per module (of a read-out pixel);
- threshold: per photon energy a threshold scan (S-curve) per module; the midpoints at two or more photon
  energies give the relation effective threshold = gain x set threshold + offset;
- factory: all of them, into one set.

A procedure changes the detector's configuration and the simulated scene and puts them back when it ends
(done, failed or cancelled). Only a procedure that completes writes a set (which then becomes active); one
stopped halfway leaves the store as it was.

About the sub-frames: an image is taken as one sub-frame (count_time = the longest sub-frame the counters
hold, `frame_count_time` at count_time 1 s): the simulated modules replay a small noise bank for a static scene
(at least 2 frames per series), so floods are taken as several short series of `images_per_series` images.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from opendcu.app_calibration import analysis
from opendcu.app_calibration.detector_link import Cancelled, DetectorLink, SavedConfig
from opendcu.app_calibration.store import CalibrationSet, CalibrationStore, Flatfield, utc_now
from opendcu.geometry import DetectorLayout, get_model
from opendcu.geometry.layout import MASK_DEAD, MASK_GAP, MASK_NOISY, MASK_OVER, MASK_UNDER

log = logging.getLogger(__name__)

PHOTON_ENERGY_RANGE = (5000.0, 36000.0)
#: the highest threshold the detector takes (detector/config/threshold/1/energy max)
THRESHOLD_MAX = 18000.0
#: pile-up kept this small in floods: measured counts per image = this x the count-rate cutoff (~3 % lost)
FLOOD_CUTOFF_FRACTION = 0.12
MAX_FLOOD_SERIES = 400
PROCEDURES = ("flatfield", "pixel_mask", "countrate", "threshold", "factory")


class ParameterError(ValueError):
    """Bad procedure parameters (a 400 for the client); nothing was started."""


@dataclass
class Progress:
    """What `calibration/status/...` shows of the running (or last) procedure."""

    procedure: str = ""
    state: str = "idle"  # idle | running | done | failed | cancelled
    fraction: float = 0.0
    message: str = ""
    error: str = ""
    result: str = ""  # the id of the set it made
    started: str = ""
    series: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- parameters --------------------------------------------------------------------------------------------------------
def _number(params: dict, key: str, default: float, low: float, high: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{key} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ParameterError(f"{key} must be in [{low:g}, {high:g}], got {value:g}")
    return float(value)


def _energy(params: dict, key: str, default: float) -> float:
    return _number(params, key, default, *PHOTON_ENERGY_RANGE)


def _energies(params: dict, key: str, default: list[float]) -> list[float]:
    values = params.get(key, default)
    if not isinstance(values, list) or not values:
        raise ParameterError(f"{key} must be a non-empty list of photon energies (eV), got {values!r}")
    return [_energy({key: v}, key, 0) for v in values]


@dataclass
class Plan:
    """A validated procedure request."""

    procedure: str
    params: dict[str, Any]


def validate(procedure: str, params: dict[str, Any]) -> Plan:
    """Check a procedure's parameters before anything starts (ParameterError: 400, nothing changed)."""
    if procedure not in PROCEDURES:
        raise ParameterError(f"unknown procedure {procedure!r}; known: {', '.join(PROCEDURES)}")
    if not isinstance(params, dict):
        raise ParameterError(f"procedure parameters must be a JSON object, got {params!r}")
    known = {
        "photon_energy",
        "threshold_energy",
        "precision",
        "energies",
        "images_per_series",
        "dark_time",
        "dark_images",
        "hot_rate",
        "fluxes",
        "mask_precision",
        "scan_points",
        "scan_range",
        "threshold_energies",
    }
    unknown = set(params) - known
    if unknown:
        raise ParameterError(f"unknown parameters: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    p: dict[str, Any] = {}
    p["precision"] = _number(params, "precision", 0.01, 1e-3, 0.2)
    p["mask_precision"] = _number(params, "mask_precision", 0.02, 1e-3, 0.1)
    p["images_per_series"] = int(_number(params, "images_per_series", 2, 1, 16))
    p["dark_time"] = _number(params, "dark_time", 0.2, 1e-3, 60)
    p["dark_images"] = int(_number(params, "dark_images", 5, 3, 16))
    p["hot_rate"] = _number(params, "hot_rate", 50.0, 0.1, 1e6)
    p["scan_points"] = int(_number(params, "scan_points", 9, 5, 64))
    p["scan_range"] = _number(params, "scan_range", 0.2, 0.05, 0.45)
    if procedure in ("flatfield", "pixel_mask"):
        p["photon_energy"] = _energy(params, "photon_energy", 8000.0)
        e = p["photon_energy"]
        p["threshold_energy"] = _number(params, "threshold_energy", e / 2, 0.25 * e, 0.98 * e)
    if procedure == "factory":
        p["energies"] = _energies(params, "energies", [8000.0, 12000.0, 20000.0])
    if procedure in ("threshold", "factory"):
        key = "energies" if procedure == "threshold" else "threshold_energies"
        p["threshold_energies"] = _energies(params, key, [8000.0, 12000.0])
        if len(set(p["threshold_energies"])) < 2:
            raise ParameterError("a threshold calibration needs at least two different photon energies")
        high = [e for e in p["threshold_energies"] if e * (1 + p["scan_range"]) > THRESHOLD_MAX]
        if high:
            raise ParameterError(
                f"threshold scans at {high} eV would pass the highest threshold "
                f"{THRESHOLD_MAX:.0f} eV; choose lower photon energies or a smaller scan_range"
            )
    if "fluxes" in params:
        fluxes = params["fluxes"]
        if (
            not isinstance(fluxes, list)
            or len(fluxes) < 3
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in fluxes)
        ):
            raise ParameterError(
                f"fluxes must be a list of >= 3 positive photon rates (per pixel and s), got {fluxes!r}"
            )
        p["fluxes"] = [float(f) for f in fluxes]
    return Plan(procedure, p)


# -- running -----------------------------------------------------------------------------------------------------------
class ProcedureRun:
    """One procedure on its own thread."""

    def __init__(
        self,
        plan: Plan,
        store: CalibrationStore,
        link_factory: Callable[[Callable[[], bool]], DetectorLink],
        progress: Progress,
        on_end: Callable[[], None],
    ):
        self.plan = plan
        self.store = store
        self.model = get_model(store.detector)
        self.layout = DetectorLayout(self.model)
        self.progress = progress
        self._cancel = threading.Event()
        self._link_factory = link_factory
        self._on_end = on_end
        self.thread = threading.Thread(target=self._run, name=f"calibration-{plan.procedure}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    # -- the thread -------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        link = self._link_factory(self._cancel.is_set)
        saved = None
        outcome: dict[str, Any] = {}
        try:
            saved = SavedConfig(link)
            self._prepare(link)
            cal = self._measure(link)
            self.store.add(cal, activate=True)
            outcome = {"result": cal.set_id, "state": "done", "fraction": 1.0, "message": f"set {cal.set_id} is active"}
        except Cancelled:
            outcome = {"state": "cancelled", "message": "cancelled; the active set is unchanged"}
        except Exception as exc:  # noqa: BLE001 - reported in status, the active set stays
            log.exception("calibration procedure %s failed", self.plan.procedure)
            outcome = {"state": "failed", "error": str(exc), "message": "failed; the active set is unchanged"}
        finally:
            try:
                if saved is not None:
                    if link.state() in ("ready", "acquire"):
                        link.command("abort")
                    saved.restore()
            except Exception:  # noqa: BLE001
                log.exception("restoring the detector configuration failed")
            link.close()
            if outcome.get("state") == "done":
                self._on_end()
            # the state leaves "running" last: a client that sees "done" finds the detector as it was
            for key, value in outcome.items():
                setattr(self.progress, key, value)
            if not outcome:
                self.progress.state = "failed"

    def _prepare(self, link: DetectorLink) -> None:
        if link.state() != "idle":
            raise RuntimeError(f"the detector is {link.state()}, not idle")
        for key, value in (
            ("flatfield_correction_applied", False),
            ("pixel_mask_applied", False),
            ("countrate_correction_applied", True),
            ("virtual_pixel_correction_applied", False),
            ("auto_summation", True),
        ):
            link.set(key, value)
        link.set("mode", "enabled", module="monitor")
        link.set("buffer_size", 16, module="monitor")
        link.set("discard_new", True, module="monitor")
        for module in ("filewriter", "stream", "analysis"):
            try:
                link.set("mode", "disabled", module=module)
            except Exception:  # noqa: BLE001 - a module this detector does not have
                pass

    def _step(self, fraction: float, message: str) -> None:
        if self._cancel.is_set():
            raise Cancelled()
        self.progress.fraction = max(self.progress.fraction, min(fraction, 0.99))
        self.progress.message = message

    def _series(self, link: DetectorLink, nimages: int, count_time: float) -> np.ndarray:
        images = link.take_series(nimages, count_time)
        self.progress.series += 1
        return images

    # -- what each procedure measures -------------------------------------------------------------------------------
    def _measure(self, link: DetectorLink) -> CalibrationSet:
        p = self.plan.params
        name = self.plan.procedure
        active = self.store.active()
        kind = "factory" if name == "factory" else "measured"
        cal = active.derived(self.store.new_id(kind), kind)
        if name == "flatfield":
            self._flatfield(link, cal, p["photon_energy"], p["threshold_energy"], p["precision"], (0.0, 1.0))
        elif name == "pixel_mask":
            self._pixel_mask(link, cal, p["photon_energy"], p["threshold_energy"], (0.0, 1.0))
        elif name == "countrate":
            self._countrate(link, cal, (0.0, 1.0))
        elif name == "threshold":
            self._threshold(link, cal, p["threshold_energies"], (0.0, 1.0))
        else:  # factory: mask, flatfields, dead time, threshold relation
            cal.flatfields = []
            energies = p["energies"]
            n = len(energies) + 3
            self._pixel_mask(link, cal, energies[0], energies[0] / 2, (0, 1 / n))
            for i, e in enumerate(energies):
                self._flatfield(link, cal, e, e / 2, p["precision"], ((1 + i) / n, (2 + i) / n))
            self._countrate(link, cal, ((n - 2) / n, (n - 1) / n))
            self._threshold(link, cal, p["threshold_energies"], ((n - 1) / n, 1.0))
        cal.created = utc_now()
        return cal

    def _sub_frame_time(self, link: DetectorLink) -> float:
        """The longest count time that is one sub-frame (frame_count_time of a 1 s image with auto-summation)."""
        link.set("frame_time", 1.001)
        link.set("count_time", 1.0)
        return float(link.get("frame_count_time")) * 0.999

    def _energies(self, link: DetectorLink, photon_energy: float, threshold_energy: float) -> None:
        link.set("photon_energy", float(photon_energy))
        link.set("threshold_energy", float(threshold_energy))

    def _flood_counts(
        self,
        link: DetectorLink,
        photon_energy: float,
        threshold_energy: float,
        precision: float,
        span: tuple[float, float],
        exclude: np.ndarray | None,
        label: str,
    ) -> tuple[analysis.FloodResult, dict]:
        """Floods until the requested precision; summed per physical pixel."""
        self._energies(link, photon_energy, threshold_energy)
        count_time = self._sub_frame_time(link)
        link.set("frame_time", count_time + 0.001)
        link.set("count_time", count_time)
        cutoff = float(link.get("countrate_correction_count_cutoff"))
        per_image = FLOOD_CUTOFF_FRACTION * cutoff  # measured counts per image of a nominal pixel
        flux = per_image / count_time
        link.set_scene({"kind": "flood", "flux": flux})
        needed = 1.0 / precision**2
        k = self.plan.params["images_per_series"]
        total = None
        images = 0
        flood = None
        for _ in range(MAX_FLOOD_SERIES):
            stack = self._series(link, k, count_time)
            frame_sum = stack.sum(axis=0)
            total = frame_sum if total is None else total + frame_sum
            images += k
            flood = analysis.reduce_flood(self.layout, analysis.to_physical(self.layout, total), exclude)
            reached = analysis.flood_precision(flood)
            done = min(1.0, (1.0 / reached**2) / needed)
            self._step(
                span[0] + (span[1] - span[0]) * done,
                f"{label}: {images} flood images, precision {100 * reached:.2f} % of {100 * precision:.2f} %",
            )
            if reached <= precision:
                break
        else:
            raise RuntimeError(f"{label}: precision {100 * precision:.2f} % not reached in {MAX_FLOOD_SERIES} series")
        info = {
            "photon_energy": photon_energy,
            "threshold_energy": threshold_energy,
            "requested_precision": precision,
            "precision": analysis.flood_precision(flood),
            "images": images,
            "count_time": count_time,
            "flux": flux,
            "counts_median": flood.median_counts,
            "counts_min": float(flood.counts[flood.ordinary].min()),
            "series": self.progress.series,
            "date": utc_now(),
        }
        return flood, info

    def _physical_mask(self, cal: CalibrationSet) -> np.ndarray:
        """The set's mask bits per physical pixel (OR over the virtual pixels of a split one)."""
        bits = np.zeros((len(self.layout.modules), *self.model.module.raw_shape), dtype=np.uint32)
        rows, cols = self.layout.row_map.src, self.layout.col_map.src
        for k, module_id in enumerate(self.layout.modules):
            block = cal.pixel_mask[self.layout.module_slices(module_id)]
            np.bitwise_or.at(bits[k], (rows[:, None], cols[None, :]), block)
        return bits & ~np.uint32(MASK_GAP)

    def _flatfield(
        self,
        link: DetectorLink,
        cal: CalibrationSet,
        photon_energy: float,
        threshold_energy: float,
        precision: float,
        span: tuple[float, float],
    ) -> None:
        known_bad = self._physical_mask(cal) > 0
        flood, info = self._flood_counts(
            link, photon_energy, threshold_energy, precision, span, known_bad, f"flatfield {photon_energy:.0f} eV"
        )
        usable = ~known_bad & (flood.response > analysis.DEAD_RESPONSE)
        factors = np.where(usable, 1.0 / np.where(usable, flood.response, 1.0), 1.0).astype(np.float32)
        image = analysis.to_image(self.layout, factors, np.float32(1.0))
        cal.flatfields = [
            f
            for f in cal.flatfields
            if not (abs(f.photon_energy - photon_energy) < 1.0 and abs(f.threshold_energy - threshold_energy) < 1.0)
        ]
        cal.flatfields.append(Flatfield(photon_energy, threshold_energy, image, info))
        cal.flatfields.sort(key=lambda f: (f.photon_energy, f.threshold_energy))
        cal.provenance.setdefault("flatfield", []).append({"procedure": "flatfield", **info})

    def _pixel_mask(
        self,
        link: DetectorLink,
        cal: CalibrationSet,
        photon_energy: float,
        threshold_energy: float,
        span: tuple[float, float],
    ) -> None:
        p = self.plan.params
        mid = span[0] + 0.3 * (span[1] - span[0])
        # darks: hot pixels (rate) and noisy ones (excess variance)
        self._step(span[0], "pixel mask: darks")
        self._energies(link, photon_energy, threshold_energy)
        link.set("frame_time", p["dark_time"] + 0.001)
        link.set("count_time", p["dark_time"])
        link.set_scene({"kind": "dark"})
        darks = self._series(link, p["dark_images"], p["dark_time"])
        noisy, dark_stats = analysis.dark_noisy(analysis.to_physical(self.layout, darks), p["dark_time"], p["hot_rate"])
        flood, info = self._flood_counts(
            link, photon_energy, threshold_energy, p["mask_precision"], (mid, span[1]), noisy, "pixel mask flood"
        )
        bits = analysis.flood_mask_bits(flood, noisy)
        bits[noisy] |= MASK_NOISY
        image = analysis.to_image(self.layout, bits, np.uint32(0))
        cal.pixel_mask = self.layout.default_pixel_mask() | image
        stats = {
            "dead": int(((bits & MASK_DEAD) > 0).sum()),
            "under": int(((bits & MASK_UNDER) > 0).sum()),
            "over": int(((bits & MASK_OVER) > 0).sum()),
            "noisy": int(noisy.sum()),
        }
        cal.provenance["pixel_mask"] = {
            "procedure": "pixel_mask",
            "date": utc_now(),
            "flood": info,
            "dark": dark_stats,
            "physical_pixels_flagged": stats,
            "limits": {
                "dead": analysis.DEAD_RESPONSE,
                "under": analysis.UNDER_RESPONSE,
                "over": analysis.OVER_RESPONSE,
                "hot_rate": p["hot_rate"],
            },
        }

    def _module_means(self, images: np.ndarray, good: np.ndarray) -> np.ndarray:
        """Mean counts per image of each module's good whole pixels [n_modules]."""
        physical = analysis.to_physical(self.layout, images.mean(axis=0))
        return np.array([physical[k][good[k]].mean() for k in range(physical.shape[0])])

    def _good_whole(self, cal: CalibrationSet) -> np.ndarray:
        return analysis.whole_pixels(self.layout) & (self._physical_mask(cal) == 0)

    def _countrate(self, link: DetectorLink, cal: CalibrationSet, span: tuple[float, float]) -> None:
        p = self.plan.params
        self._energies(link, 8000.0, 4000.0)
        link.set("countrate_correction_applied", False)
        count_time = self._sub_frame_time(link) / 8  # short: the highest fluxes stay below the counter's top
        link.set("frame_time", count_time + 0.001)
        link.set("count_time", count_time)
        fluxes = p.get("fluxes")
        if fluxes is None:
            # the DCU's nominal model trusts counts up to n tau = 1/4 at its cutoff: scan n tau ~ 0.02 .. 0.8
            link.set("countrate_correction_applied", True)
            cutoff = float(link.get("countrate_correction_count_cutoff"))
            link.set("countrate_correction_applied", False)
            tau_nominal = 0.25 * count_time * math.exp(-0.25) / cutoff
            fluxes = [f / tau_nominal for f in (0.02, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8)]
        good = self._good_whole(cal)
        rows = []
        for i, flux in enumerate(fluxes):
            self._step(span[0] + (span[1] - span[0]) * i / len(fluxes), f"count rate: flux {flux:.3g} /s")
            link.set_scene({"kind": "flood", "flux": flux})
            rows.append(self._module_means(self._series(link, 2, count_time), good))
        means = np.array(rows)  # [n_flux, n_modules]
        taus, rms = [], []
        for k in range(means.shape[1]):
            tau, _a, r = analysis.fit_dead_time(np.array(fluxes), means[:, k], count_time)
            taus.append(tau)
            rms.append(r)
        cal.dead_time = np.array(taus)
        cal.provenance["countrate"] = {
            "procedure": "countrate",
            "date": utc_now(),
            "fluxes": list(fluxes),
            "count_time": count_time,
            "mean_counts": means.tolist(),
            "fit_rms_log": rms,
            "dead_time_s": taus,
            "model": "paralysable",
        }
        link.set("countrate_correction_applied", True)

    def _threshold(
        self, link: DetectorLink, cal: CalibrationSet, energies: list[float], span: tuple[float, float]
    ) -> None:
        p = self.plan.params
        good = self._good_whole(cal)
        mid_rows: list[list[float]] = []  # [n_energies][n_modules]
        curves = []
        n_points = p["scan_points"]
        for i, energy in enumerate(energies):
            self._energies(link, energy, energy / 2)
            count_time = self._sub_frame_time(link)
            link.set("frame_time", count_time + 0.001)
            link.set("count_time", count_time)
            flux = 1000.0 / count_time  # ~1000 counts per pixel: the module mean is precise to ~1e-5
            link.set_scene({"kind": "flood", "flux": flux})
            reference = self._module_means(self._series(link, 1, count_time), good)
            thresholds = np.linspace(energy * (1 - p["scan_range"]), energy * (1 + p["scan_range"]), n_points)
            points = []
            for j, t in enumerate(thresholds):
                self._step(
                    span[0] + (span[1] - span[0]) * (i + j / n_points) / len(energies),
                    f"threshold scan {energy:.0f} eV: threshold {t:.0f} eV",
                )
                link.set("threshold_energy", float(t))
                points.append(self._module_means(self._series(link, 1, count_time), good) / reference)
            fractions = np.array(points)  # [n_points, n_modules]
            mid_rows.append([analysis.fit_s_curve(thresholds, fractions[:, k])[0] for k in range(fractions.shape[1])])
            curves.append({"photon_energy": energy, "thresholds": thresholds.tolist(), "fractions": fractions.tolist()})
        mids = np.array(mid_rows)
        e = np.array(energies)
        gains, offsets = [], []
        for k in range(mids.shape[1]):
            gain, offset = np.polyfit(mids[:, k], e, 1)  # at the midpoint the effective threshold is the energy
            gains.append(float(gain))
            offsets.append(float(offset))
        cal.threshold_gain = np.array(gains)
        cal.threshold_offset = np.array(offsets)
        cal.provenance["threshold"] = {
            "procedure": "threshold",
            "date": utc_now(),
            "energies": energies,
            "midpoints_ev": mids.tolist(),
            "gain": gains,
            "offset_ev": offsets,
            "scans": curves,
            "relation": "effective threshold = gain x set threshold + offset",
        }
