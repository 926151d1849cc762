"""Space groups of the MX scene: which reflections are equivalent (Laue group) and which are absent.

Each operator is an integer matrix R acting on Miller indices as rows, hkl' = hkl @ R; the Laue group is the
closure of its generators with the inversion (Friedel's law: no anomalous signal). Systematic absences come from
the screw axes and the lattice centring. Only the groups listed are known; `space_group()` raises ValueError for
others and for a cell whose metric does not fit the group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_TWO_A = ((1, 0, 0), (0, -1, 0), (0, 0, -1))  # 2-fold along a
_TWO_B = ((-1, 0, 0), (0, 1, 0), (0, 0, -1))  # 2-fold along b
_FOUR_C = ((0, 1, 0), (-1, 0, 0), (0, 0, 1))  # 4-fold along c: (h, k, l) -> (-k, h, l)

Absent = Callable[[np.ndarray], np.ndarray]


def _axial(axis: int, modulus: int) -> Absent:
    """Screw axis along `axis`: on the axial row (the other two indices 0) only index % modulus == 0 is present."""
    others = [i for i in range(3) if i != axis]

    def absent(hkl: np.ndarray) -> np.ndarray:
        on_axis = (hkl[:, others[0]] == 0) & (hkl[:, others[1]] == 0)
        return on_axis & (hkl[:, axis] % modulus != 0)

    return absent


@dataclass(frozen=True)
class SpaceGroup:
    name: str
    laue_group: str
    centring: str
    system: str
    generators: tuple[tuple[tuple[int, int, int], ...], ...]
    screw_absences: tuple[Absent, ...] = ()

    def operators(self) -> np.ndarray:
        """The Laue group's operators (m, 3, 3), identity first."""
        ops = [np.eye(3, dtype=np.int64), -np.eye(3, dtype=np.int64)]
        gens = [np.array(g, dtype=np.int64) for g in self.generators]
        grown = True
        while grown:
            grown = False
            for a in list(ops):
                for g in gens:
                    c = a @ g
                    if not any(np.array_equal(c, o) for o in ops):
                        ops.append(c)
                        grown = True
        return np.stack(ops)

    def absent(self, hkl: np.ndarray) -> np.ndarray:
        """Systematically absent reflections (screw axes; the centring is applied where the indices are made)."""
        out = np.zeros(len(hkl), bool)
        for rule in self.screw_absences:
            out |= rule(hkl)
        return out

    def asu_keys(self, hkl: np.ndarray) -> np.ndarray:
        """One integer per reflection, the same for all its symmetry equivalents (and Friedel mates)."""
        ops = self.operators()
        span = int(np.abs(hkl).max(initial=0)) * 2 + 1
        equivalents = np.einsum("nj,mjk->mnk", hkl.astype(np.int64), ops)
        keys = (
            ((equivalents[..., 0] + span // 2) * span + equivalents[..., 1] + span // 2) * span
            + equivalents[..., 2]
            + span // 2
        )
        return keys.max(axis=0)

    def check_cell(self, lengths: tuple[float, ...], angles: tuple[float, ...]) -> None:
        a, b, c = lengths
        al, be, ga = angles
        right = all(abs(x - 90.0) < 1e-6 for x in (al, be, ga))
        ok = {
            "triclinic": True,
            "monoclinic": abs(al - 90.0) < 1e-6 and abs(ga - 90.0) < 1e-6,
            "orthorhombic": right,
            "tetragonal": right and abs(a - b) < 1e-6 * a,
        }[self.system]
        if not ok:
            raise ValueError(f"the cell {(*lengths, *angles)} does not fit space group {self.name} ({self.system})")


SPACE_GROUPS = {
    sg.name: sg
    for sg in (
        SpaceGroup("P1", "-1", "P", "triclinic", ()),
        SpaceGroup("P2", "2/m", "P", "monoclinic", (_TWO_B,)),
        SpaceGroup("P21", "2/m", "P", "monoclinic", (_TWO_B,), (_axial(1, 2),)),
        SpaceGroup("C2", "2/m", "C", "monoclinic", (_TWO_B,)),
        SpaceGroup("P222", "mmm", "P", "orthorhombic", (_TWO_A, _TWO_B)),
        SpaceGroup("P212121", "mmm", "P", "orthorhombic", (_TWO_A, _TWO_B), (_axial(0, 2), _axial(1, 2), _axial(2, 2))),
        SpaceGroup("P4", "4/m", "P", "tetragonal", (_FOUR_C,)),
        SpaceGroup("P422", "4/mmm", "P", "tetragonal", (_FOUR_C, _TWO_A)),
        SpaceGroup("P41212", "4/mmm", "P", "tetragonal", (_FOUR_C, _TWO_A), (_axial(2, 4), _axial(0, 2), _axial(1, 2))),
        SpaceGroup("P43212", "4/mmm", "P", "tetragonal", (_FOUR_C, _TWO_A), (_axial(2, 4), _axial(0, 2), _axial(1, 2))),
        SpaceGroup("I422", "4/mmm", "I", "tetragonal", (_FOUR_C, _TWO_A)),
    )
}


def space_group(name: str) -> SpaceGroup:
    """A space group by its short symbol without spaces or parentheses ("P43212", "P 43 21 2", "P4(3)2(1)2")."""
    key = name.replace(" ", "").replace("(", "").replace(")", "").replace("_", "")
    try:
        return SPACE_GROUPS[key]
    except KeyError:
        raise ValueError(f"unknown space group {name!r}; known: {', '.join(SPACE_GROUPS)}") from None
