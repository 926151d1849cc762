"""Indexing: spots -> reciprocal-lattice points -> orientation matrix (spec/edge-analysis.md §3).

- `reciprocal_vectors`: each spot's r = s1 - s0 (1/A), rotated back to the crystal at phi = 0 about the spindle.
- `index_known_cell` (§3.3): for each cell length L, score unit directions u on a hemisphere with
  f(u) = sum_i cos(2 pi L u.x_i) (DIALS' real-space grid search); the best directions of a, b and c whose mutual
  angles match alpha, beta, gamma form right-handed real bases; the basis indexing most spots wins and is refined
  by least squares (x = A.h), re-assigning indices with a shrinking tolerance. The known cell keeps its shape:
  only the orientation U is refined.
- `search_cell` (§3.2 fft1d / DPS): without a cell, the rlps are projected on many directions; a 1-D Fourier
  transform of each projection shows the periodicity 1/L of lattice planes, so L.u is a real-space lattice
  vector. Three short independent vectors that index most spots, reduced, give the cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from opendcu.analysis.crystal import UnitCell, nearest_rotation, reduce_basis, rotation_about
from opendcu.analysis.geometry import Geometry


@dataclass(frozen=True)
class IndexingSettings:
    """Known-cell indexing parameters (DIALS' hkl_tolerance 0.3; angle/length tolerances as Jungfraujoch)."""

    cell: UnitCell | None = None
    rotation_axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    hkl_tolerance: float = 0.3
    angle_tolerance_deg: float = 3.0
    #: an image counts as indexed with at least this many indexed spots and this fraction of its spots
    min_spots: int = 10
    min_fraction: float = 0.5
    #: the direction search uses at most this many (lowest-resolution) spots
    max_search_spots: int = 100
    #: best directions kept per cell length
    peaks_per_length: int = 12

    def check(self) -> None:
        if not 0 < self.hkl_tolerance < 0.5:
            raise ValueError("hkl_tolerance must be in (0, 0.5)")
        if np.linalg.norm(self.rotation_axis) == 0:
            raise ValueError("rotation_axis must not be zero")


@dataclass
class IndexingResult:
    """An orientation (and cell) explaining a set of spots."""

    A: np.ndarray  # U.B at phi = 0, lab frame (1/A)
    cell: UnitCell
    hkl: np.ndarray  # (n, 3) int, for every input spot (meaningless where not indexed)
    indexed: np.ndarray  # (n,) bool
    rmsd: float  # 1/A, over indexed spots
    n_spots: int = 0

    @property
    def U(self) -> np.ndarray:
        return nearest_rotation(self.A @ np.linalg.inv(self.cell.B))

    @property
    def n_indexed(self) -> int:
        return int(self.indexed.sum())

    @property
    def fraction_indexed(self) -> float:
        return self.n_indexed / self.n_spots if self.n_spots else 0.0


@dataclass
class _Candidate:
    A: np.ndarray
    n_indexed: int = 0
    residual: float = math.inf
    extra: dict = field(default_factory=dict)


def reciprocal_vectors(
    geometry: Geometry,
    x: np.ndarray,
    y: np.ndarray,
    phi_deg: np.ndarray | float = 0.0,
    rotation_axis: tuple[float, float, float] = (1.0, 0.0, 0.0),
) -> np.ndarray:
    """Reciprocal-lattice vectors (n, 3) of spots at image points (x, y), recorded at rotation phi (deg),
    expressed at phi = 0: x = R(axis, -phi).(s1 - s0)."""
    lam = geometry.wavelength_a
    v = geometry.lab_vectors(np.asarray(x, float), np.asarray(y, float))
    s1 = v / (np.linalg.norm(v, axis=-1, keepdims=True) * lam)
    r = s1 - np.array([0.0, 0.0, 1.0 / lam])
    phi = np.broadcast_to(np.radians(np.asarray(phi_deg, float)), r.shape[:1])
    back = rotation_about(np.asarray(rotation_axis, float), -phi)  # (n, 3, 3)
    return np.einsum("nij,nj->ni", back, r)


def hemisphere_directions(n: int) -> np.ndarray:
    """n unit vectors spread evenly over the hemisphere z >= 0 (Fibonacci spiral)."""
    i = np.arange(n) + 0.5
    z = 1 - i / n
    r = np.sqrt(1 - z * z)
    theta = math.pi * (3 - math.sqrt(5)) * i
    return np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=1)


def directions_for_step(step_rad: float) -> int:
    """Hemisphere directions for an angular spacing of about `step_rad`."""
    return int(min(400_000, max(2000, 2 * math.pi / step_rad**2)))


@numba.njit(fastmath=True, nogil=True, cache=True)
def _cos_cycles(p):
    """cos(2 pi p) to ~5e-6: reduce to one period, then an even polynomial (vectorises, unlike libm's cos)."""
    f = p - math.floor(p + 0.5)
    x = f * f * (4.0 * math.pi * math.pi)
    return 1.0 + x * (
        -1 / 2
        + x
        * (
            1 / 24
            + x * (-1 / 720 + x * (1 / 40320 + x * (-1 / 3628800 + x * (1 / 479001600 + x * (-1 / 87178291200)))))
        )
    )


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _direction_scores_t(directions, vectors_t, length):
    out = np.empty(directions.shape[0])
    for d in numba.prange(directions.shape[0]):
        ux, uy, uz = directions[d, 0] * length, directions[d, 1] * length, directions[d, 2] * length
        s = 0.0
        for i in range(vectors_t.shape[1]):
            s += _cos_cycles(ux * vectors_t[0, i] + uy * vectors_t[1, i] + uz * vectors_t[2, i])
        out[d] = s
    return out


def _direction_scores(directions: np.ndarray, vectors: np.ndarray, length: float) -> np.ndarray:
    """f(u) = sum_i cos(2 pi L u.x_i) for each direction."""
    return _direction_scores_t(np.ascontiguousarray(directions), np.ascontiguousarray(vectors.T), float(length))


def _best_directions(directions: np.ndarray, scores: np.ndarray, keep: int, separation: float) -> np.ndarray:
    """The `keep` highest-scoring directions at least `separation` rad apart (u and -u are the same)."""
    chosen: list[np.ndarray] = []
    cos_sep = math.cos(separation)
    for d in np.argsort(scores)[::-1][: keep * 200]:
        u = directions[d]
        if all(abs(u @ c) < cos_sep for c in chosen):
            chosen.append(u)
            if len(chosen) == keep:
                break
    return np.array(chosen)


def _refine_direction(u: np.ndarray, vectors: np.ndarray, length: float, step: float) -> np.ndarray:
    """Local grid refinement of a direction's score (three levels, each a 7 x 7 patch)."""
    for _ in range(3):
        helper = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
        e1 = np.cross(u, helper)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(u, e1)
        offsets = np.linspace(-step, step, 7)
        patch = np.array([u + a * e1 + b * e2 for a in offsets for b in offsets])
        patch /= np.linalg.norm(patch, axis=1)[:, None]
        u = patch[int(np.argmax(_direction_scores(patch, vectors, length)))]
        step /= 3
    return u


def assign_indices(A: np.ndarray, vectors: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer indices h = round(inv(A).x) and whether all three are within `tolerance` of an integer."""
    fractional = vectors @ np.linalg.inv(A).T
    hkl = np.rint(fractional)
    ok = (np.abs(fractional - hkl) < tolerance).all(axis=1) & (np.abs(hkl).sum(axis=1) > 0)
    return hkl.astype(np.int64), ok


def refine_orientation(
    A: np.ndarray, vectors: np.ndarray, cell: UnitCell | None, tolerance: float, iterations: int = 6
) -> _Candidate:
    """Least-squares refinement of A against the spots it indexes (orientation only when `cell` is given),
    re-assigning indices with a tolerance shrinking from `tolerance` to 0.6 x tolerance."""
    best = _Candidate(A)
    for it in range(iterations):
        tol = tolerance * (1 - 0.4 * it / max(1, iterations - 1))
        hkl, ok = assign_indices(A, vectors, tol)
        if ok.sum() < 4:
            break
        H, X = hkl[ok].astype(float), vectors[ok]
        fit = np.linalg.lstsq(H, X, rcond=None)[0].T  # X = H.A^T
        A = nearest_rotation(fit @ np.linalg.inv(cell.B)) @ cell.B if cell is not None else fit
        residual = float(np.sqrt(np.mean(np.sum((H @ A.T - X) ** 2, axis=1))))
        best = _Candidate(A, int(ok.sum()), residual)
    return best


def _select_search_spots(vectors: np.ndarray, max_spots: int) -> np.ndarray:
    """The lowest-resolution spots (their projections are the least sensitive to a direction's error)."""
    order = np.argsort(np.linalg.norm(vectors, axis=1))
    return vectors[order[:max_spots]]


def index_known_cell(vectors: np.ndarray, settings: IndexingSettings) -> IndexingResult | None:
    """Orientation of a known cell from reciprocal-lattice vectors (n, 3) at phi = 0; None if it fails."""
    settings.check()
    cell = settings.cell
    if cell is None:
        raise ValueError("index_known_cell needs a unit cell")
    n = vectors.shape[0]
    if n < max(3, settings.min_spots):
        return None
    search = _select_search_spots(vectors, settings.max_search_spots)
    d_star_max = float(np.linalg.norm(search, axis=1).max())
    longest = max(cell.lengths)
    step = 0.2 / (longest * d_star_max)  # a quarter cycle of phase error at the search's highest resolution
    directions = hemisphere_directions(directions_for_step(step))
    peaks: dict[float, np.ndarray] = {}
    for length in sorted(set(round(x, 3) for x in cell.lengths)):
        scores = _direction_scores(directions, search, length)
        best = _best_directions(directions, scores, settings.peaks_per_length, separation=4 * step)
        peaks[length] = np.array([_refine_direction(u, search, length, step) for u in best])
    real = cell.real_basis  # rows a, b, c in the crystal frame: their angles are the cell's
    unit = real / np.linalg.norm(real, axis=1)[:, None]
    target = np.array([unit[0] @ unit[1], unit[1] @ unit[2], unit[0] @ unit[2]])
    cos_tol = math.sin(math.radians(settings.angle_tolerance_deg))  # |d cos| <= sin(tol) for a tol deviation
    best: _Candidate | None = None
    lists = [peaks[round(x, 3)] for x in cell.lengths]
    for ua in lists[0]:
        for ub0 in lists[1]:
            for sb in (1.0, -1.0):
                ub = sb * ub0
                if abs(ua @ ub - target[0]) > cos_tol:
                    continue
                for uc0 in lists[2]:
                    for sc in (1.0, -1.0):
                        uc = sc * uc0
                        if abs(ub @ uc - target[1]) > cos_tol or abs(ua @ uc - target[2]) > cos_tol:
                            continue
                        basis = np.array([cell.a * ua, cell.b * ub, cell.c * uc])
                        if np.linalg.det(basis) < 0:
                            basis = -basis  # (-a, -b, -c): same angles, right-handed
                        A = np.linalg.inv(basis)
                        _, ok = assign_indices(A, vectors, settings.hkl_tolerance)  # judged on every spot
                        if best is None or ok.sum() > best.n_indexed:
                            best = _Candidate(A, int(ok.sum()))
    if best is None:
        return None
    # the orientation from the lattice directions: the nearest U with U.B = A, then refined on all spots
    A0 = nearest_rotation(best.A @ np.linalg.inv(cell.B)) @ cell.B
    refined = refine_orientation(A0, vectors, cell, settings.hkl_tolerance)
    return _result(refined.A, cell, vectors, settings)


def _result(A: np.ndarray, cell: UnitCell, vectors: np.ndarray, settings: IndexingSettings) -> IndexingResult | None:
    hkl, ok = assign_indices(A, vectors, settings.hkl_tolerance)
    n = vectors.shape[0]
    if ok.sum() < settings.min_spots or ok.sum() < settings.min_fraction * n:
        return None
    residual = float(np.sqrt(np.mean(np.sum((hkl[ok] @ A.T - vectors[ok]) ** 2, axis=1))))
    return IndexingResult(A=A, cell=cell, hkl=hkl, indexed=ok, rmsd=residual, n_spots=n)


# -- cell search -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellSearchSettings:
    min_cell: float = 5.0  # A, shortest real-space vector considered
    max_cell: float = 250.0  # A, longest
    n_directions: int = 30_000
    #: candidate vectors kept before choosing a basis
    n_vectors: int = 30
    hkl_tolerance: float = 0.3
    min_spots: int = 20


def search_cell(vectors: np.ndarray, settings: CellSearchSettings | None = None) -> IndexingResult | None:
    """Find a (reduced) cell and orientation from reciprocal-lattice vectors alone (DPS / fft1d)."""
    s = settings or CellSearchSettings()
    n = vectors.shape[0]
    if n < s.min_spots:
        return None
    directions = hemisphere_directions(s.n_directions)
    d_star_max = float(np.linalg.norm(vectors, axis=1).max())
    # projections p = u.x in [-d*max, d*max]; sample finely enough for periods up to 2 max_cell
    bins = 1 << int(math.ceil(math.log2(4 * s.max_cell * d_star_max * 2)))
    width = 2 * d_star_max / bins
    candidates = _dps_vectors(directions, vectors, bins, width, s)
    if len(candidates) < 3:
        return None
    order = np.argsort([np.linalg.norm(v) for v in candidates])
    vecs = [candidates[i] for i in order]
    scored: list[_Candidate] = []
    for i in range(len(vecs)):
        for j in range(i + 1, len(vecs)):
            for k in range(j + 1, len(vecs)):
                basis = np.array([vecs[i], vecs[j], vecs[k]])
                volume = abs(np.linalg.det(basis))
                if volume < 0.3 * np.prod(np.linalg.norm(basis, axis=1)):
                    continue  # nearly coplanar
                A = np.linalg.inv(basis)
                _, ok = assign_indices(A, vectors, s.hkl_tolerance)
                scored.append(_Candidate(A, int(ok.sum()), extra={"volume": volume}))
    if not scored:
        return None
    # a supercell indexes every spot the true cell does: of the (nearly) best, take the smallest cell
    top = max(c.n_indexed for c in scored)
    best = min((c for c in scored if c.n_indexed >= 0.97 * top), key=lambda c: c.extra["volume"])
    if best.n_indexed < s.min_spots:
        return None
    refined = refine_orientation(best.A, vectors, None, s.hkl_tolerance)
    basis = reduce_basis(np.linalg.inv(refined.A))
    A = refine_orientation(np.linalg.inv(basis), vectors, None, s.hkl_tolerance).A
    cell = UnitCell.from_basis(np.linalg.inv(A))
    hkl, ok = assign_indices(A, vectors, s.hkl_tolerance)
    if ok.sum() < s.min_spots:
        return None
    rmsd = float(np.sqrt(np.mean(np.sum((hkl[ok] @ A.T - vectors[ok]) ** 2, axis=1))))
    return IndexingResult(A=A, cell=cell, hkl=hkl, indexed=ok, rmsd=rmsd, n_spots=n)


def _dps_vectors(
    directions: np.ndarray, vectors: np.ndarray, bins: int, width: float, s: CellSearchSettings
) -> list[np.ndarray]:
    """Real-space vectors L.u whose periodicity shows strongest in the projections (batched FFTs)."""
    d_star_max = bins * width / 2
    periods = np.fft.rfftfreq(bins, d=width)  # cycles per (1/A) = A
    usable = (periods >= s.min_cell) & (periods <= s.max_cell)
    best_len = np.zeros(len(directions))
    best_amp = np.zeros(len(directions))
    for start in range(0, len(directions), 4096):
        block = directions[start : start + 4096]
        hist = _projection_histograms(block, vectors, bins, width, d_star_max)
        amp = np.abs(np.fft.rfft(hist, axis=1))[:, usable]
        k = np.argmax(amp, axis=1)
        best_amp[start : start + len(block)] = amp[np.arange(len(block)), k]
        best_len[start : start + len(block)] = periods[usable][k]
    chosen: list[np.ndarray] = []
    cos_sep = math.cos(math.radians(3))
    for d in np.argsort(best_amp)[::-1]:
        u = directions[d]
        if any(abs(u @ c) / np.linalg.norm(c) > cos_sep for c in chosen):
            continue
        length = _refine_period(u, vectors, best_len[d], s)
        chosen.append(u * length)
        if len(chosen) == s.n_vectors:
            break
    return chosen


@numba.njit(parallel=True, nogil=True, cache=True)
def _projection_histograms(directions, vectors, bins, width, offset):
    """Per direction: histogram of the projections u.x_i (bins of `width` from -offset)."""
    hist = np.zeros((directions.shape[0], bins))
    for d in numba.prange(directions.shape[0]):
        ux, uy, uz = directions[d, 0], directions[d, 1], directions[d, 2]
        for i in range(vectors.shape[0]):
            p = ux * vectors[i, 0] + uy * vectors[i, 1] + uz * vectors[i, 2]
            b = int((p + offset) / width)
            hist[d, min(max(b, 0), bins - 1)] += 1.0
    return hist


def _refine_period(u: np.ndarray, vectors: np.ndarray, length: float, s: CellSearchSettings) -> float:
    """The period near `length` (A) that best fits the projections on u (phase coherence)."""
    p = vectors @ u
    trial = np.linspace(length * 0.95, length * 1.05, 201)
    trial = trial[(trial >= s.min_cell * 0.9) & (trial <= s.max_cell * 1.1)]
    amp = np.abs(np.exp(2j * math.pi * np.outer(trial, p)).sum(axis=1))
    return float(trial[int(np.argmax(amp))])
