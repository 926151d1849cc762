"""Detector models: module types, how modules tile a detector, and the real sizes.

Facts from `spec/detector-geometry.md`:
- EIGER2 X module: 512 x 1028 pixels (h x w) of 75 um, built from 2 x 4 chips of 256 x 256 physical pixels;
  inter-module gaps 38 rows x 12 columns. Only real EIGER sizes are used, because dxtbx rejects any other size.
- PILATUS4 module: 255 x 513 pixels of 150 um; gaps 20 rows x 7 columns; 260K, 260K-W, 1M, 2M, 4M.
- The seed's fast ASIC: 192 x 192 pixels of 100 um, a 12-bit counter read out as 12-bit integers or as 8-bit
  floats (E3M5, spec/codecs.md §4), full frame or 2 x 2 digital binning, up to 120 kHz.

The raw data a module sends carries its *physical* pixels (after on-chip binning, if any); the pipeline places
them into *virtual* pixels (`opendcu.geometry.layout`). Every counter format reaches the pipeline widened to
uint16 by the DAQ, with the counter's top value (saturated) and lost packets as 0xFFFF.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

#: counter formats on the wire (hardware/counters.py): bits per pixel
COUNTER_BITS = {"uint16": 16, "uint12": 12, "float8": 8}


@dataclass(frozen=True)
class ModuleType:
    """One kind of detector module, as seen by the DAQ (raw) and by users (placed)."""

    name: str
    #: pixels (rows, cols) as the module reads them out over UDP (after on-chip binning)
    raw_shape: tuple[int, int]
    #: chip grid (rows, cols) and chip size in sensor pixels
    chips: tuple[int, int]
    chip_shape: tuple[int, int]
    #: raw column (row) indices whose pixels are double width (height) and are split into two virtual pixels
    double_cols: tuple[int, ...]
    double_rows: tuple[int, ...]
    #: size of one read-out pixel (binned pixels are larger)
    pixel_size_m: float
    bit_depth_readout: int
    #: detector-type code carried in the UDP data-packet header
    udp_detector_type: int
    sensor_material: str = "Si"
    sensor_thickness_m: float = 0.00045
    #: how each pixel travels on the wire: "uint16", "uint12" (two pixels in 3 bytes) or "float8" (E3M5)
    counter: str = "uint16"
    #: on-chip digital binning: each read-out pixel is the sum of binning x binning sensor pixels
    binning: int = 1
    #: top value of one sensor pixel's counter (it stops counting there)
    pixel_counter_max: int = 0xFFFF
    #: paralysable dead time of a pixel's counter (simulated pile-up; count-rate correction uses the same value)
    dead_time_s: float = 100e-9

    def __post_init__(self) -> None:
        if self.counter not in COUNTER_BITS:
            raise ValueError(f"unknown counter format {self.counter!r}")

    @property
    def shape(self) -> tuple[int, int]:
        """Placed (virtual-pixel) module shape (rows, cols)."""
        return (self.raw_shape[0] + len(self.double_rows), self.raw_shape[1] + len(self.double_cols))

    @property
    def raw_pixels(self) -> int:
        return self.raw_shape[0] * self.raw_shape[1]

    @property
    def sensor_shape(self) -> tuple[int, int]:
        """Sensor pixels (rows, cols) behind the read-out pixels (binning x the raw shape)."""
        return (self.raw_shape[0] * self.binning, self.raw_shape[1] * self.binning)

    @property
    def counter_bits(self) -> int:
        return COUNTER_BITS[self.counter]


# opendcu's simulated EIGER2 chip layout. The real EIGER2 virtual-column layout is not public (spec §2 marks it
# unverified), so we choose one that yields the real module size 512 x 1028: each module is two half-modules of
# 2 x 2 chips; at the chip border inside each half-module (raw columns 255|256 and 767|768) both edge pixels are
# double width and are split into two virtual pixels each (+4 columns). The half-module border (511|512) and the
# border between chip rows have normal pixels.
EIGER2_MODULE = ModuleType(
    name="eiger2",
    raw_shape=(512, 1024),
    chips=(2, 4),
    chip_shape=(256, 256),
    double_cols=(255, 256, 767, 768),
    double_rows=(),
    pixel_size_m=75e-6,
    bit_depth_readout=16,
    udp_detector_type=0x20,
)

# opendcu's PILATUS4-like module. Only the module size (255 x 513 at 150 um) and the gaps are real (spec §1); the
# chip layout is ours: two chips of 255 x 256 side by side, and the sensor column across the chip border (raw
# column 255) is one double-width pixel, split into two virtual pixels (+1 column).
PILATUS4_MODULE = ModuleType(
    name="pilatus4",
    raw_shape=(255, 512),
    chips=(1, 2),
    chip_shape=(255, 256),
    double_cols=(255,),
    double_rows=(),
    pixel_size_m=150e-6,
    bit_depth_readout=16,
    udp_detector_type=0x21,
)

# The seed's fast ASIC: one chip of 192 x 192 pixels of 100 um with 12-bit counters. Variants below change how it
# reads out (8-bit float, 2 x 2 binning); binned pixels are 200 um and sum four 12-bit counters.
FAST_MODULE = ModuleType(
    name="fastasic",
    raw_shape=(192, 192),
    chips=(1, 1),
    chip_shape=(192, 192),
    double_cols=(),
    double_rows=(),
    pixel_size_m=100e-6,
    bit_depth_readout=12,
    udp_detector_type=0x22,
    counter="uint12",
    pixel_counter_max=0xFFF,
    dead_time_s=50e-9,
)


def fast_readout(counter: str, binning: int) -> ModuleType:
    """The fast ASIC in one of its readout modes (counter "uint12" or "float8", binning 1 or 2)."""
    if binning not in (1, 2) or counter not in ("uint12", "float8"):
        raise ValueError(f"the fast ASIC reads out uint12/float8 with binning 1 or 2, not {counter}/{binning}")
    size = FAST_MODULE.raw_shape[0] // binning
    suffix = ("-bin2" if binning == 2 else "") + ("-8bit" if counter == "float8" else "")
    return replace(
        FAST_MODULE,
        name=FAST_MODULE.name + suffix,
        raw_shape=(size, size),
        pixel_size_m=FAST_MODULE.pixel_size_m * binning,
        bit_depth_readout=COUNTER_BITS[counter],
        counter=counter,
        binning=binning,
    )


@dataclass(frozen=True)
class DetectorModel:
    """A whole detector: modules tiled in a grid with gaps between them."""

    name: str
    description: str
    module: ModuleType
    modules_x: int
    modules_y: int
    gap_rows: int
    gap_cols: int
    detector_number: str
    #: highest full-frame rate of the detector (sets the frame_time minimum)
    max_frame_rate: float
    #: SIMPLON roi_mode values this model supports besides "disabled"
    roi_modes: tuple[str, ...] = field(default=())
    #: for a region of interest of a larger detector: that detector's name, and the (row, col) of this model's
    #: top-left module in its module grid; the modules keep their physical ids and defects
    parent: str = ""
    parent_offset: tuple[int, int] = (0, 0)

    @property
    def n_modules(self) -> int:
        return self.modules_x * self.modules_y

    @property
    def shape(self) -> tuple[int, int]:
        """Full image shape (height, width) in virtual pixels, gaps included."""
        mh, mw = self.module.shape
        return (
            self.modules_y * mh + (self.modules_y - 1) * self.gap_rows,
            self.modules_x * mw + (self.modules_x - 1) * self.gap_cols,
        )

    def module_origin(self, module_id: int) -> tuple[int, int]:
        """Top-left (row, col) of module `module_id` in the full image; modules are numbered row-major."""
        my, mx = divmod(module_id, self.modules_x)
        mh, mw = self.module.shape
        return (my * (mh + self.gap_rows), mx * (mw + self.gap_cols))

    def module_position(self, module_id: int) -> tuple[int, int]:
        """(row, column) of the module in the physical module grid, as carried in the UDP header."""
        my, mx = divmod(module_id, self.modules_x)
        return (my + self.parent_offset[0], mx + self.parent_offset[1])

    @property
    def physical_model(self) -> DetectorModel:
        """The whole detector (itself, unless this model is a region of interest)."""
        return get_model(self.parent) if self.parent else self

    def physical_module(self, module_id: int) -> int:
        """The module's id in the whole detector: the id its packets carry and its defects are keyed by."""
        row, col = self.module_position(module_id)
        return row * self.physical_model.modules_x + col

    def roi(self, mode: str) -> DetectorModel:
        """The model this detector becomes with SIMPLON `roi_mode` = `mode` ("disabled" gives itself)."""
        if mode in ("", "disabled"):
            return self
        if mode not in self.roi_modes:
            raise ValueError(f"{self.name} has no roi_mode {mode!r}; allowed: disabled, {', '.join(self.roi_modes)}")
        return get_model(f"{self.name}-roi{mode.lower()}")


def _eiger2(
    name: str, size: str, nx: int, ny: int, serial: str, rate: float, roi: tuple[str, ...] = ()
) -> DetectorModel:
    return DetectorModel(name, f"Dectris EIGER2 Si {size}", EIGER2_MODULE, nx, ny, 38, 12, serial, rate, roi)


def _roi_4m(parent: DetectorModel, offset: tuple[int, int]) -> DetectorModel:
    """The 4M region of interest of a 9M/16M: 2 x 4 modules read out, the image has the 4M size.

    Which modules a real EIGER2 reads in roi_mode 4M is not in the spec; we take the central four module rows and
    the central (16M) or the left and middle (9M) module columns. The beam centre is not shifted (as on the real
    detector): the user sets it for the smaller image."""
    return replace(
        parent,
        name=f"{parent.name}-roi4m",
        description=f"{parent.description} (roi_mode 4M)",
        modules_x=2,
        modules_y=4,
        max_frame_rate=560.0,
        roi_modes=(),
        parent=parent.name,
        parent_offset=offset,
    )


def _pilatus4(name: str, size: str, nx: int, ny: int, serial: str, rate: float) -> DetectorModel:
    return DetectorModel(name, f"opendcu simulated PILATUS4-like {size}", PILATUS4_MODULE, nx, ny, 20, 7, serial, rate)


def _fast(counter: str, binning: int) -> DetectorModel:
    module = fast_readout(counter, binning)
    description = f"opendcu simulated fast ASIC ({module.counter}, {binning}x{binning} binning)"
    return DetectorModel(module.name, description, module, 1, 1, 0, 0, "F-01-0001", 120_000.0)


_E9M = _eiger2("eiger2-9m", "9M", 3, 6, "E-18-0001", 238.0, roi=("4M",))
_E16M = _eiger2("eiger2-16m", "16M", 4, 8, "E-32-0001", 133.0, roi=("4M",))

MODELS: dict[str, DetectorModel] = {
    m.name: m
    for m in (
        _eiger2("eiger2-500k", "500K", 1, 1, "E-01-0001", 2000.0),
        _eiger2("eiger2-1m", "1M", 1, 2, "E-02-0001", 2000.0),
        _eiger2("eiger2-4m", "4M", 2, 4, "E-08-0001", 560.0),
        _E9M,
        _E16M,
        _roi_4m(_E9M, (1, 0)),
        _roi_4m(_E16M, (2, 1)),
        # frame rates of the PILATUS4-like models are the simulator's, not a datasheet's
        _pilatus4("pilatus4-260k", "260K", 1, 2, "P4-02-0001", 4000.0),
        _pilatus4("pilatus4-260kw", "260K-W", 2, 1, "P4-02-0002", 4000.0),
        _pilatus4("pilatus4-1m", "1M", 2, 4, "P4-08-0001", 2000.0),
        _pilatus4("pilatus4-2m", "2M", 3, 6, "P4-18-0001", 1000.0),
        _pilatus4("pilatus4-4m", "4M", 4, 8, "P4-32-0001", 500.0),
        _fast("uint12", 1),
        _fast("float8", 1),
        _fast("uint12", 2),
        _fast("float8", 2),
    )
}


def get_model(name: str) -> DetectorModel:
    """Look up a detector model by its `dcu serve --detector` name."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown detector model {name!r}; known: {', '.join(MODELS)}") from None
