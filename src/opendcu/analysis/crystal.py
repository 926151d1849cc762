"""Unit cells, orientation matrices and rotations (the crystallographic vocabulary of indexing and simulation).

Conventions (spec/edge-analysis.md §3.1, §5.2): a reciprocal-lattice vector in the lab frame is r = A.h with
A = U.B; B is Busing & Levy's upper-triangular matrix (columns a*, b*, c* in the crystal's Cartesian frame,
1/A units, no 2*pi), U a proper rotation. The real-space cell vectors are the rows of inv(A).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UnitCell:
    """a, b, c in Angstrom; alpha, beta, gamma in degrees."""

    a: float
    b: float
    c: float
    alpha: float = 90.0
    beta: float = 90.0
    gamma: float = 90.0

    def __post_init__(self) -> None:
        if min(self.a, self.b, self.c) <= 0:
            raise ValueError("cell lengths must be positive")
        if not all(0 < angle < 180 for angle in self.angles):
            raise ValueError("cell angles must be in (0, 180) degrees")
        if not self.volume > 0:
            raise ValueError(f"cell angles {self.angles} do not form a cell")

    @classmethod
    def from_sequence(cls, values) -> UnitCell:
        values = [float(v) for v in values]
        if len(values) != 6:
            raise ValueError(f"a unit cell needs 6 numbers (a, b, c, alpha, beta, gamma), got {len(values)}")
        return cls(*values)

    @classmethod
    def from_basis(cls, real_basis: np.ndarray) -> UnitCell:
        """The cell of three real-space vectors (rows)."""
        a, b, c = (np.asarray(v, float) for v in real_basis)

        def angle(u: np.ndarray, v: np.ndarray) -> float:
            return math.degrees(math.acos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1)))

        return cls(
            float(np.linalg.norm(a)),
            float(np.linalg.norm(b)),
            float(np.linalg.norm(c)),
            angle(b, c),
            angle(a, c),
            angle(a, b),
        )

    @property
    def lengths(self) -> tuple[float, float, float]:
        return (self.a, self.b, self.c)

    @property
    def angles(self) -> tuple[float, float, float]:
        return (self.alpha, self.beta, self.gamma)

    def as_tuple(self) -> tuple[float, ...]:
        return (*self.lengths, *self.angles)

    @property
    def volume(self) -> float:
        ca, cb, cg = (math.cos(math.radians(x)) for x in self.angles)
        value = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
        return self.a * self.b * self.c * math.sqrt(value) if value > 0 else float("nan")

    @property
    def real_basis(self) -> np.ndarray:
        """Rows a, b, c in the Cartesian frame where B is upper triangular (rows of inv(B): a.a* = 1)."""
        return np.linalg.inv(self.B)

    @property
    def B(self) -> np.ndarray:
        """Busing & Levy B: columns are a*, b*, c*; r_crystal = B.h."""
        al, be, ga = (math.radians(x) for x in self.angles)
        v = self.volume
        a_s = self.b * self.c * math.sin(al) / v
        b_s = self.a * self.c * math.sin(be) / v
        c_s = self.a * self.b * math.sin(ga) / v
        cos_be_s = (math.cos(al) * math.cos(ga) - math.cos(be)) / (math.sin(al) * math.sin(ga))
        cos_ga_s = (math.cos(al) * math.cos(be) - math.cos(ga)) / (math.sin(al) * math.sin(be))
        sin_be_s = math.sqrt(1 - cos_be_s**2)
        sin_ga_s = math.sqrt(1 - cos_ga_s**2)
        return np.array(
            [
                [a_s, b_s * cos_ga_s, c_s * cos_be_s],
                [0.0, b_s * sin_ga_s, -c_s * sin_be_s * math.cos(al)],
                [0.0, 0.0, 1.0 / self.c],
            ]
        )

    def d_spacing(self, hkl: np.ndarray) -> np.ndarray:
        """d (A) of Miller indices (..., 3)."""
        return 1.0 / np.linalg.norm(np.asarray(hkl, float) @ self.B.T, axis=-1)

    def matches(self, other: UnitCell, length_tol: float = 0.03, angle_tol: float = 3.0) -> bool:
        """Same cell within a relative length and an absolute angle tolerance (same axis order)."""
        return all(abs(x - y) <= length_tol * y for x, y in zip(self.lengths, other.lengths, strict=True)) and all(
            abs(x - y) <= angle_tol for x, y in zip(self.angles, other.angles, strict=True)
        )

    def __str__(self) -> str:
        return "{:.2f} {:.2f} {:.2f} {:.2f} {:.2f} {:.2f}".format(*self.as_tuple())


def rotation_about(axis: np.ndarray, angle: float | np.ndarray) -> np.ndarray:
    """Right-handed rotation matrices (Rodrigues) about a unit `axis` by `angle` rad (scalar or array: (..., 3, 3))."""
    e = np.asarray(axis, float)
    e = e / np.linalg.norm(e)
    angle = np.asarray(angle, float)
    c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    k = np.array([[0, -e[2], e[1]], [e[2], 0, -e[0]], [-e[1], e[0], 0]])
    return c * np.eye(3) + s * k + (1 - c) * np.outer(e, e)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation uniformly distributed on SO(3) (QR of a Gaussian matrix, sign-fixed, det +1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """The angle (deg) of a rotation matrix."""
    return math.degrees(math.acos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0)))


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The proper rotation closest to `matrix` (polar decomposition via SVD)."""
    u, _, vt = np.linalg.svd(matrix)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def misorientation_deg(A_found: np.ndarray, A_true: np.ndarray) -> float | None:
    """Angle (deg) between two orientation matrices of the same lattice, up to a change of basis.

    The basis change M = round(inv(A_true).A_found) must be an integer matrix of determinant +-1 (the same
    lattice in another setting, e.g. a and b swapped in a tetragonal cell); None when it is not.
    """
    M = np.linalg.solve(A_true, A_found)
    Mi = np.rint(M)
    if abs(abs(round(np.linalg.det(Mi))) - 1) > 0 or np.abs(M - Mi).max() > 0.2:
        return None
    rotation = A_found @ np.linalg.inv(A_true @ Mi)
    return rotation_angle_deg(nearest_rotation(rotation))


#: lattice centrings and the reflection condition each imposes on (h, k, l)
CENTRINGS = ("P", "C", "I", "F", "R")


def allowed_by_centring(hkl: np.ndarray, centring: str) -> np.ndarray:
    """True where the centring allows the reflection (general conditions only)."""
    h, k, l = np.asarray(hkl).T
    if centring == "P":
        return np.ones(h.shape, bool)
    if centring == "C":
        return (h + k) % 2 == 0
    if centring == "I":
        return (h + k + l) % 2 == 0
    if centring == "F":
        return ((h + k) % 2 == 0) & ((h + l) % 2 == 0) & ((k + l) % 2 == 0)
    if centring == "R":  # obverse setting, hexagonal axes
        return (-h + k + l) % 3 == 0
    raise ValueError(f"unknown centring {centring!r}; known: {', '.join(CENTRINGS)}")


def miller_indices(cell: UnitCell, d_min: float, centring: str = "P") -> np.ndarray:
    """All (h, k, l) != 0 with d >= d_min allowed by the centring, as int32 (n, 3)."""
    limits = [int(math.ceil(length / d_min)) for length in cell.lengths]
    grids = np.meshgrid(*(np.arange(-m, m + 1) for m in limits), indexing="ij")
    hkl = np.stack([g.reshape(-1) for g in grids], axis=1)
    d_star = np.linalg.norm(hkl @ cell.B.T, axis=1)
    keep = (d_star > 0) & (d_star <= 1.0 / d_min) & allowed_by_centring(hkl, centring)
    return hkl[keep].astype(np.int32)


def reduce_basis(basis: np.ndarray, max_iterations: int = 100) -> np.ndarray:
    """Reduce three real-space vectors (rows) to a short, nearly orthogonal basis of the same lattice
    (greedy Gauss/LLL steps, then sorted by length and made right-handed)."""
    b = np.array(basis, dtype=float)
    for _ in range(max_iterations):
        changed = False
        for i in range(3):
            for j in range(3):
                if i == j:
                    continue
                m = round(float(b[i] @ b[j] / (b[j] @ b[j])))
                if m != 0:
                    shorter = b[i] - m * b[j]
                    if shorter @ shorter < b[i] @ b[i] - 1e-9:
                        b[i] = shorter
                        changed = True
        # try the sums/differences of all three (Buerger's last condition)
        for signs in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            for i in range(3):
                j, k = [x for x in range(3) if x != i]
                candidate = b[i] + signs[0] * b[j] + signs[1] * b[k]
                if candidate @ candidate < b[i] @ b[i] - 1e-9:
                    b[i] = candidate
                    changed = True
        if not changed:
            break
    b = b[np.argsort(np.linalg.norm(b, axis=1))]
    if np.linalg.det(b) < 0:
        b[2] = -b[2]
    return b
