"""opendcu: an open-source Detector Control Unit for hybrid-pixel X-ray detectors."""

import os as _os

# bitshuffle runs on OpenMP, whose idle threads spin by default: a process that (de)compresses one image, then
# waits for the next, burned 4x the CPU of the work itself (3.0 ms instead of 0.7 ms per 500K image), a core
# taken from the data path. Set before any import loads libgomp; a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
