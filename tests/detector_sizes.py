"""Test oracles: the image sizes of real detectors, which the emulated models must produce."""

#: sizes (slow, fast) that dxtbx's EIGER reader accepts; every EIGER model we emulate must produce one of them
REAL_EIGER2_SIZES = {(4362, 4148), (3262, 3108), (2162, 2068), (1062, 1028), (512, 4148), (512, 2068), (512, 1028)}
#: real PILATUS4 sizes (slow, fast), from pyFAI's detector definitions
REAL_PILATUS4_SIZES = {(530, 513), (255, 1033), (1080, 1033), (1630, 1553), (2180, 2073)}
