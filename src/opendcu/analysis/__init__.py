"""Edge analysis: radial integration, spot finding, indexing and MX image scoring (issue #7).

A library first (numpy + numba kernels, no process or I/O concerns); the live workers that feed it from the
ImageMux live in `opendcu.app_detector.interfaces.analysis`.

    geometry.py   PONI geometry, pixel -> 2theta/chi/q/d, solid angle, polarization
    integrate.py  radial profiles and (q x chi) cakes from a precomputed pixel -> bin map
    spots.py      DIALS dispersion spot finder on a sparse candidate list, connected components, centroids
    scoring.py    spot counts, ice rings, resolution estimate, hit/blank
    crystal.py    unit cells, B matrices, rotations, basis reduction
    index.py      spots -> reciprocal lattice -> orientation (known cell) or cell search
    frame.py      the per-image chain of all of the above
    simulate.py   scene -> detector image, for tests and benchmarks
    reference.py  dense oracles (scipy) for tests and benchmarks
"""

from opendcu.analysis.frame import AnalysisSettings, FrameAnalyzer, FrameResult
from opendcu.analysis.geometry import Geometry
from opendcu.analysis.integrate import IntegrationSettings, Profile, RadialIntegrator
from opendcu.analysis.spots import SpotFinder, SpotFinderSettings, Spots

__all__ = [
    "AnalysisSettings", "FrameAnalyzer", "FrameResult", "Geometry", "IntegrationSettings", "Profile",
    "RadialIntegrator", "SpotFinder", "SpotFinderSettings", "Spots",
]
