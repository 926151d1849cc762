"""The calibration store: versioned calibration sets of one detector in HDF5, and which one is active.

Layout of `--calibration-dir`:

    <dir>/<detector>/<set id>.h5     one calibration set (written under a hidden name, renamed when complete)
    <dir>/<detector>/active          the active set's id (replaced atomically)

A set holds what the procedures measured (`procedures.py`) or a user uploaded, each part with its provenance:
- `pixel_mask` uint32 [h, w], SIMPLON mask bits (gap, dead, under, over, noisy), placed like the image;
- `flatfield/<n>`: float32 [h, w] factors measured at one (photon, threshold) energy, attributes
  photon_energy, threshold_energy, precision, counts_min/median, series;
- `countrate`: the dead time tau (s) of each module's read-out pixels and the fit statistics;
- `threshold`: per module the relation effective threshold = gain x set threshold + offset (eV).
A new measurement starts from the active set (its other parts are copied) and becomes a new set, so the
previous set stays available. Without any set the detector is served the *nominal* calibration: gaps masked,
flatfield 1 (state `uncalibrated`); `dcu calibrate factory` measures the factory set once and caches it here.

Flatfields are chosen by energy: the measured flatfields whose threshold / photon energy ratio is that of the
request (within THRESHOLD_RATIO_TOLERANCE) are interpolated linearly in photon energy; a request outside their
range by more than ENERGY_EXTRAPOLATION is refused (no flatfield for it).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opendcu import __version__
from opendcu.geometry import DetectorLayout, get_model

THRESHOLD_RATIO_TOLERANCE = 0.06
#: a flatfield is used up to this fraction of its photon energy beyond the measured range
ENERGY_EXTRAPOLATION = 0.15
NOMINAL_ID = "nominal"
_SET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


class StoreError(ValueError):
    """A request the store refuses (unknown set, no flatfield for an energy, bad upload)."""


class UnknownSet(StoreError):
    pass


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Flatfield:
    photon_energy: float
    threshold_energy: float
    factors: np.ndarray  # float32 [h, w]
    info: dict[str, Any] = field(default_factory=dict)  # precision, counts, series, ...


@dataclass
class CalibrationSet:
    """One calibration set of a detector (in memory)."""

    set_id: str
    detector: str
    kind: str  # factory | measured | custom | nominal
    created: str
    pixel_mask: np.ndarray  # uint32 [h, w]
    flatfields: list[Flatfield] = field(default_factory=list)
    dead_time: np.ndarray | None = None  # float64 [n_modules], s
    threshold_gain: np.ndarray | None = None  # float64 [n_modules]
    threshold_offset: np.ndarray | None = None  # float64 [n_modules], eV
    #: what made each part: {"pixel_mask": {...}, "flatfield": [...], "countrate": {...}, "threshold": {...}}
    provenance: dict[str, Any] = field(default_factory=dict)
    parent: str = ""
    software_version: str = __version__

    # -- choosing by energy ---------------------------------------------------------------------------------------
    def flatfield_for(self, photon_energy: float, threshold_energy: float) -> tuple[np.ndarray, str]:
        """The flatfield at these energies and how it was made (`interpolated ...` / `measured ...`)."""
        if not self.flatfields:
            return np.ones(self.pixel_mask.shape, dtype=np.float32), "flatfield 1 (none measured)"
        ratio = threshold_energy / photon_energy if photon_energy > 0 else 0.0
        usable = sorted(
            (
                f
                for f in self.flatfields
                if abs(f.threshold_energy / f.photon_energy - ratio) <= THRESHOLD_RATIO_TOLERANCE
            ),
            key=lambda f: f.photon_energy,
        )
        measured = ", ".join(f"{f.photon_energy:.0f}/{f.threshold_energy:.0f} eV" for f in self.flatfields)
        if not usable:
            raise StoreError(
                f"set {self.set_id} has no flatfield for threshold {threshold_energy:.0f} eV at "
                f"{photon_energy:.0f} eV (measured at photon/threshold {measured})"
            )
        low = [f for f in usable if f.photon_energy <= photon_energy]
        high = [f for f in usable if f.photon_energy >= photon_energy]
        if low and high:
            a, b = low[-1], high[0]
            if b.photon_energy - a.photon_energy < 1.0:
                return a.factors, f"measured at {a.photon_energy:.0f} eV"
            w = (photon_energy - a.photon_energy) / (b.photon_energy - a.photon_energy)
            factors = ((1 - w) * a.factors.astype(np.float64) + w * b.factors).astype(np.float32)
            return factors, f"interpolated between {a.photon_energy:.0f} and {b.photon_energy:.0f} eV"
        nearest = low[-1] if low else high[0]
        if abs(photon_energy - nearest.photon_energy) > ENERGY_EXTRAPOLATION * nearest.photon_energy:
            raise StoreError(
                f"set {self.set_id} has no flatfield near {photon_energy:.0f} eV (measured at "
                f"photon/threshold {measured})"
            )
        return nearest.factors, f"nearest, measured at {nearest.photon_energy:.0f} eV"

    def summary(self) -> dict[str, Any]:
        """What `calibration/status/sets` and the CLI show of a set."""
        return {
            "id": self.set_id,
            "kind": self.kind,
            "created": self.created,
            "parent": self.parent,
            "software_version": self.software_version,
            "flatfield_energies": [[f.photon_energy, f.threshold_energy] for f in self.flatfields],
            "masked_pixels": int(np.count_nonzero(self.pixel_mask & ~np.uint32(1))),
            "dead_time_s": None if self.dead_time is None else [float(t) for t in self.dead_time],
            "threshold_gain": None if self.threshold_gain is None else [float(g) for g in self.threshold_gain],
            "threshold_offset_ev": None if self.threshold_offset is None else [float(o) for o in self.threshold_offset],
            "procedures": sorted(self.provenance),
        }

    def derived(self, set_id: str, kind: str) -> CalibrationSet:
        """A copy to measure into: the parts not re-measured stay those of this set."""
        return CalibrationSet(
            set_id=set_id,
            detector=self.detector,
            kind=kind,
            created=utc_now(),
            pixel_mask=self.pixel_mask.copy(),
            flatfields=list(self.flatfields),
            dead_time=self.dead_time,
            threshold_gain=self.threshold_gain,
            threshold_offset=self.threshold_offset,
            provenance=json.loads(json.dumps(self.provenance)),
            parent=self.set_id,
        )


def nominal_set(detector: str) -> CalibrationSet:
    """The calibration of a detector nothing was measured on: gaps masked, flatfield 1."""
    layout = DetectorLayout(get_model(detector))
    return CalibrationSet(
        set_id=NOMINAL_ID, detector=detector, kind="nominal", created="", pixel_mask=layout.default_pixel_mask()
    )


# -- HDF5 -------------------------------------------------------------------------------------------------------------
def write_set(path: Path, cal: CalibrationSet) -> None:
    """Write `cal` to `path` (via a hidden temporary name: a reader never sees half a set)."""
    tmp = path.with_name(f".{path.name}.part")
    with h5py.File(tmp, "w") as f:
        for key in ("set_id", "detector", "kind", "created", "parent", "software_version"):
            f.attrs[key] = getattr(cal, key)
        f.attrs["provenance"] = json.dumps(cal.provenance)
        f.create_dataset("pixel_mask", data=cal.pixel_mask.astype(np.uint32), **COMPRESSION)
        group = f.create_group("flatfield")
        for n, ff in enumerate(cal.flatfields):
            d = group.create_dataset(f"{n}", data=ff.factors.astype(np.float32), **COMPRESSION)
            d.attrs["photon_energy"] = ff.photon_energy
            d.attrs["threshold_energy"] = ff.threshold_energy
            d.attrs["info"] = json.dumps(ff.info)
        for key in ("dead_time", "threshold_gain", "threshold_offset"):
            value = getattr(cal, key)
            if value is not None:
                f.create_dataset(key, data=np.asarray(value, dtype=np.float64))
    os.replace(tmp, path)


def read_set(path: Path) -> CalibrationSet:
    with h5py.File(path, "r") as f:
        a = f.attrs
        flatfields = []
        for name in sorted(f["flatfield"], key=int):
            d = f["flatfield"][name]
            flatfields.append(
                Flatfield(
                    float(d.attrs["photon_energy"]),
                    float(d.attrs["threshold_energy"]),
                    d[()],
                    json.loads(d.attrs["info"]),
                )
            )
        optional = {k: f[k][()] if k in f else None for k in ("dead_time", "threshold_gain", "threshold_offset")}
        return CalibrationSet(
            set_id=str(a["set_id"]),
            detector=str(a["detector"]),
            kind=str(a["kind"]),
            created=str(a["created"]),
            pixel_mask=f["pixel_mask"][()],
            flatfields=flatfields,
            provenance=json.loads(a["provenance"]),
            parent=str(a["parent"]),
            software_version=str(a["software_version"]),
            **optional,
        )


class CalibrationStore:
    """The calibration sets of one detector in `root/<detector>/`; thread-safe."""

    def __init__(self, root: Path, detector: str):
        self.detector = detector
        self.dir = Path(root) / detector
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._cache: dict[str, CalibrationSet] = {}
        self._nominal: CalibrationSet | None = None

    # -- sets -------------------------------------------------------------------------------------------------------
    def set_ids(self) -> list[str]:
        """Ids of the stored sets, oldest first."""
        files = sorted(self.dir.glob("*.h5"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.stem for p in files]

    def new_id(self, kind: str) -> str:
        """A fresh set id: <kind>-<UTC time>-<n>."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        with self._lock:
            n = 1
            while (self.dir / f"{kind}-{stamp}-{n}.h5").exists():
                n += 1
            return f"{kind}-{stamp}-{n}"

    def get(self, set_id: str) -> CalibrationSet:
        with self._lock:
            if set_id == NOMINAL_ID:
                if self._nominal is None:
                    self._nominal = nominal_set(self.detector)
                return self._nominal
            if not _SET_ID.match(set_id) or not (self.dir / f"{set_id}.h5").is_file():
                raise UnknownSet(f"no calibration set {set_id!r} (sets: {', '.join(self.set_ids()) or 'none'})")
            if set_id not in self._cache:
                self._cache[set_id] = read_set(self.dir / f"{set_id}.h5")
            return self._cache[set_id]

    def add(self, cal: CalibrationSet, activate: bool = True) -> None:
        """Store a new set (and make it the active one)."""
        if not _SET_ID.match(cal.set_id) or cal.set_id == NOMINAL_ID:
            raise StoreError(f"bad set id {cal.set_id!r}")
        with self._lock:
            write_set(self.dir / f"{cal.set_id}.h5", cal)
            self._cache[cal.set_id] = cal
            if activate:
                self.activate(cal.set_id)

    @property
    def untouched(self) -> bool:
        """No set was ever stored or chosen here: a fresh installation (the main job measures the factory set)."""
        with self._lock:
            return not self.set_ids() and not (self.dir / "active").exists()

    @property
    def active_id(self) -> str:
        with self._lock:
            try:
                set_id = (self.dir / "active").read_text().strip()
            except FileNotFoundError:
                return NOMINAL_ID
            return set_id if set_id == NOMINAL_ID or (self.dir / f"{set_id}.h5").is_file() else NOMINAL_ID

    def active(self) -> CalibrationSet:
        return self.get(self.active_id)

    def activate(self, set_id: str) -> None:
        with self._lock:
            self.get(set_id)  # UnknownSet if it does not exist
            tmp = self.dir / ".active.part"
            tmp.write_text(set_id + "\n")
            os.replace(tmp, self.dir / "active")

    def delete(self, set_id: str) -> None:
        """Delete a stored set; the active set cannot be deleted (activate another first)."""
        with self._lock:
            self.get(set_id)
            if set_id == NOMINAL_ID:
                raise StoreError("the nominal calibration is not a stored set and cannot be deleted")
            if set_id == self.active_id:
                raise StoreError(f"set {set_id} is active: activate another set before deleting it")
            (self.dir / f"{set_id}.h5").unlink()
            self._cache.pop(set_id, None)

    # -- what app-detector asks -------------------------------------------------------------------------------------
    def calibration(self, photon_energy: float, threshold_energy: float) -> tuple[np.ndarray, np.ndarray, str]:
        """(pixel mask, flatfield, calibration id) of the active set at these energies."""
        cal = self.active()
        flatfield, how = cal.flatfield_for(photon_energy, threshold_energy)
        name = f"{self.detector}/{cal.set_id}/E={photon_energy:.2f}eV/T={threshold_energy:.2f}eV ({how})"
        return cal.pixel_mask, flatfield, name


def compare_sets(
    a: CalibrationSet, b: CalibrationSet, photon_energy: float | None = None, threshold_energy: float | None = None
) -> dict[str, Any]:
    """What differs between two sets: mask bits (pixels per bit gained/lost), flatfield ratio spread at an
    energy both have, dead times and threshold relations."""
    out: dict[str, Any] = {"a": a.set_id, "b": b.set_id}
    bit_names = {1: "gap", 2: "dead", 4: "under", 8: "over", 16: "noisy"}
    mask = {}
    for bit, name in bit_names.items():
        in_a, in_b = (a.pixel_mask & bit) > 0, (b.pixel_mask & bit) > 0
        mask[name] = {"only_a": int(np.count_nonzero(in_a & ~in_b)), "only_b": int(np.count_nonzero(in_b & ~in_a))}
    out["pixel_mask"] = mask
    energies = [(f.photon_energy, f.threshold_energy) for f in a.flatfields]
    if photon_energy is None and energies:
        photon_energy, threshold_energy = energies[0]
    if photon_energy is not None:
        threshold_energy = photon_energy / 2 if threshold_energy is None else threshold_energy
        try:
            fa, _ = a.flatfield_for(photon_energy, threshold_energy)
            fb, _ = b.flatfield_for(photon_energy, threshold_energy)
            good = (a.pixel_mask == 0) & (b.pixel_mask == 0)
            ratio = fa[good].astype(np.float64) / fb[good]
            out["flatfield"] = {
                "photon_energy": photon_energy,
                "threshold_energy": threshold_energy,
                "ratio_mean": float(ratio.mean()),
                "ratio_std": float(ratio.std()),
                "ratio_max_deviation": float(np.abs(ratio - 1).max()),
            }
        except StoreError as exc:
            out["flatfield"] = {"error": str(exc)}
    for key in ("dead_time", "threshold_gain", "threshold_offset"):
        va, vb = getattr(a, key), getattr(b, key)
        if va is not None and vb is not None:
            out[key] = {"a": [float(v) for v in va], "b": [float(v) for v in vb]}
    return out
