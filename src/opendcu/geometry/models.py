"""Detector models: module types, how modules tile a detector, and the real EIGER sizes.

Facts from `spec/detector-geometry.md`:
- EIGER2 X module: 512 x 1028 pixels (h x w) of 75 um, built from 2 x 4 chips of 256 x 256 physical pixels;
  inter-module gaps 38 rows x 12 columns.
- Full size = n * module + (n - 1) * gap along each axis. Only real EIGER sizes are used, because dxtbx rejects
  any other size.

The raw data a module sends carries its *physical* pixels; the pipeline places them into *virtual* pixels
(`opendcu.geometry.layout`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModuleType:
    """One kind of detector module, as seen by the DAQ (raw) and by users (placed)."""

    name: str
    #: physical pixels (rows, cols) as the module reads them out over UDP
    raw_shape: tuple[int, int]
    #: chip grid (rows, cols) and chip size in physical pixels
    chips: tuple[int, int]
    chip_shape: tuple[int, int]
    #: raw column (row) indices whose pixels are double width (height) and are split into two virtual pixels
    double_cols: tuple[int, ...]
    double_rows: tuple[int, ...]
    pixel_size_m: float
    bit_depth_readout: int
    #: detector-type code carried in the UDP data-packet header
    udp_detector_type: int
    sensor_material: str = "Si"
    sensor_thickness_m: float = 0.00045

    @property
    def shape(self) -> tuple[int, int]:
        """Placed (virtual-pixel) module shape (rows, cols)."""
        return (self.raw_shape[0] + len(self.double_rows), self.raw_shape[1] + len(self.double_cols))

    @property
    def raw_pixels(self) -> int:
        return self.raw_shape[0] * self.raw_shape[1]


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
    #: highest full-frame rate of the real detector (sets the frame_time minimum)
    max_frame_rate: float
    #: SIMPLON roi_mode values this model supports besides "disabled"
    roi_modes: tuple[str, ...] = field(default=())

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
        """(row, column) of the module in the module grid, as carried in the UDP header."""
        return divmod(module_id, self.modules_x)


def _eiger2(name: str, size: str, nx: int, ny: int, serial: str, rate: float, roi: tuple[str, ...] = ()) -> DetectorModel:
    return DetectorModel(
        name=name,
        description=f"Dectris EIGER2 Si {size}",
        module=EIGER2_MODULE,
        modules_x=nx,
        modules_y=ny,
        gap_rows=38,
        gap_cols=12,
        detector_number=serial,
        max_frame_rate=rate,
        roi_modes=roi,
    )


MODELS: dict[str, DetectorModel] = {
    m.name: m
    for m in (
        _eiger2("eiger2-500k", "500K", 1, 1, "E-01-0001", 2000.0),
        _eiger2("eiger2-1m", "1M", 1, 2, "E-02-0001", 2000.0),
        _eiger2("eiger2-4m", "4M", 2, 4, "E-08-0001", 560.0),
        _eiger2("eiger2-9m", "9M", 3, 6, "E-18-0001", 238.0, roi=("4M",)),
        _eiger2("eiger2-16m", "16M", 4, 8, "E-32-0001", 133.0, roi=("4M",)),
    )
}

#: sizes (slow, fast) that dxtbx's EIGER reader accepts; every model we emulate must produce one of them
REAL_EIGER2_SIZES = {(4362, 4148), (3262, 3108), (2162, 2068), (1062, 1028), (512, 4148), (512, 2068), (512, 1028)}


def get_model(name: str) -> DetectorModel:
    """Look up a detector model by its `dcu serve --detector` name."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown detector model {name!r}; known: {', '.join(MODELS)}") from None
