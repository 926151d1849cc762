"""One image in, every analysis result out: the per-frame chain the live workers run.

    image -> radial profile (integrate.py) -> spots (spots.py) -> score (scoring.py) -> orientation (index.py)

Everything geometry-dependent is built once in FrameAnalyzer(); analyse() is the per-frame part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from opendcu.analysis.crystal import UnitCell
from opendcu.analysis.geometry import Geometry
from opendcu.analysis.index import IndexingResult, IndexingSettings, index_known_cell, reciprocal_vectors
from opendcu.analysis.integrate import IntegrationSettings, Profile, RadialIntegrator
from opendcu.analysis.scoring import ImageScore, ScoringSettings, ShellCoverage, in_ice_ring, score_image
from opendcu.analysis.spots import SpotFinder, SpotFinderSettings, Spots


@dataclass(frozen=True)
class AnalysisSettings:
    """What to compute for each image, and how."""

    integration: IntegrationSettings | None = field(default_factory=IntegrationSettings)
    spots: SpotFinderSettings | None = field(default_factory=SpotFinderSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    #: per-image indexing needs a known cell (indexing.cell, or one found by a cell search and passed to analyse)
    indexing: IndexingSettings | None = None
    threads: int = 1


@dataclass
class FrameResult:
    """The analysis of one image."""

    profile: Profile | None = None
    spots: Spots | None = None
    score: ImageScore | None = None
    indexing: IndexingResult | None = None
    #: reciprocal-lattice vectors of the non-ice spots at phi = 0 (for cell search over many images)
    rlp: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class FrameAnalyzer:
    """The analysis chain for one geometry, mask and settings."""

    def __init__(self, geometry: Geometry, mask: np.ndarray | None, settings: AnalysisSettings):
        self.geometry = geometry
        self.settings = settings
        self.integrator = RadialIntegrator(geometry, settings.integration, mask) if settings.integration else None
        self.spot_finder = SpotFinder(geometry, mask, settings.spots) if settings.spots else None
        self.coverage = ShellCoverage(geometry, mask) if settings.spots else None

    def warm_up(self, dtype: np.dtype, invalid_value: int | None = None) -> None:
        """Run every kernel once (numba compiles or loads its cache on first use) so the first image is fast.

        The image looks like a diffraction image (Poisson background, Gaussian spots), so that every
        spot-finding path runs (dispersion test, labelling, centroids); a blank image would leave them to compile
        on the first real image, seconds into the series."""
        rng = np.random.default_rng(0)
        h, w = self.geometry.shape
        rows, cols = np.mgrid[0:h, 0:w]
        signal = np.full((h, w), 0.5)
        for r, c in zip(rng.uniform(0.1, 0.9, 40) * h, rng.uniform(0.1, 0.9, 40) * w, strict=True):
            window = (slice(max(int(r) - 4, 0), int(r) + 5), slice(max(int(c) - 4, 0), int(c) + 5))
            signal[window] += 80 * np.exp(-((rows[window] - r) ** 2 + (cols[window] - c) ** 2) / 2.0)
        image = np.minimum(rng.poisson(signal), np.iinfo(dtype).max - 1).astype(dtype)
        self.analyse(image, invalid_value)
        indexing = self.settings.indexing
        if indexing is not None and indexing.cell is not None:
            hkl = np.array(
                [(h, k, l) for h in range(-2, 3) for k in range(-2, 3) for l in range(-2, 3) if (h, k, l) != (0, 0, 0)],
                float,
            )
            index_known_cell(hkl @ indexing.cell.B.T, indexing)

    def analyse(
        self,
        image: np.ndarray,
        invalid_value: int | None = None,
        phi_deg: float = 0.0,
        index: bool = True,
        cell: UnitCell | None = None,
    ) -> FrameResult:
        """Analyse one image recorded at rotation angle phi_deg (the frame's centre); index=False skips indexing
        (the costliest step) when the caller is behind; `cell` (e.g. found by a cell search) replaces the
        configured one."""
        s = self.settings
        result = FrameResult()
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            result.timings_ms[name] = (now - clock) * 1e3
            clock = now

        if self.integrator is not None:
            result.profile = self.integrator.integrate(image, invalid_value, threads=s.threads, variance=False)
            lap("integrate")
        if self.spot_finder is None:
            return result
        spots = self.spot_finder.find(image, invalid_value, threads=s.threads)
        result.spots = spots
        lap("spots")
        result.score = score_image(spots.d, spots.intensity, s.scoring, self.coverage, result.profile)
        lap("score")
        no_ice = ~in_ice_ring(spots.d, s.scoring.ice_ring_width_q) if len(spots) else np.zeros(0, bool)
        axis = s.indexing.rotation_axis if s.indexing is not None else (1.0, 0.0, 0.0)
        result.rlp = reciprocal_vectors(self.geometry, spots.x[no_ice], spots.y[no_ice], phi_deg, axis)
        indexing = s.indexing if cell is None or s.indexing is None else replace(s.indexing, cell=cell)
        if index and indexing is not None and indexing.cell is not None and no_ice.sum() >= indexing.min_spots:
            result.indexing = index_known_cell(result.rlp, indexing)
            lap("index")
        return result
