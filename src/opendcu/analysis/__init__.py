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

import importlib
from typing import Any

# names re-exported lazily: importing a light submodule (geometry, crystal) must not pull in numba
_EXPORTS = {
    "AnalysisSettings": "frame",
    "FrameAnalyzer": "frame",
    "FrameResult": "frame",
    "Geometry": "geometry",
    "IntegrationSettings": "integrate",
    "Profile": "integrate",
    "RadialIntegrator": "integrate",
    "SpotFinder": "spots",
    "SpotFinderSettings": "spots",
    "Spots": "spots",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'opendcu.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"opendcu.analysis.{_EXPORTS[name]}"), name)
