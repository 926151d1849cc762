"""Detector physics of a simulated module: expected photons (virtual pixels) -> the values the DAQ receives.

The single source of truth for what a module sends: `ModuleRenderer.render` (or `render_module_frame`) gives
the read-out values of one module (sub-)frame as uint16 [raw_h, raw_w], as the DAQ delivers them after
widening the wire format (0xFFFF = saturated). Tests re-render frames with it to check received pixels.

Steps, in the order a photon meets them:
1. physical pixels: a double-width chip-border pixel collects the photons of both virtual pixels it becomes;
   behind a binned read-out pixel sit binning x binning sensor pixels sharing its photons;
2. the sensor pixel's own response (`module_defects`, fixed per detector module, independent of the series):
   a gain near 1 (sigma 3 %, so a flatfield means something), a few under-/over-responding pixels, dead pixels
   (no counts) and hot pixels (counts without photons);
3. absorption: the scene's photons are those a pixel of the nominal sensor thickness absorbs; the sensor's
   thickness varies smoothly over a module (wafer wedge and bow, ~1 %), so a pixel absorbs
   (1 - exp(-t/L(E))) / (1 - exp(-t0/L(E))) of them (L: the absorption length; this matters above ~12 keV,
   where Si turns transparent, and is why a factory flatfield depends on the photon energy);
4. the comparator: a photon counts if its charge passes the threshold; with the threshold near or above the
   photon energy fewer photons count (an S-curve, 0.5 erfc((T + d - E) / (sqrt(2) 0.05 E)); 1 at the usual
   T = E/2), where d is the pixel's trim residual (50 eV rms): near T = E the threshold makes pixels differ;
   then paralysable pile-up: a pixel with true rate n counts n exp(-n tau) (tau = ModuleType.dead_time_s);
5. Poisson noise (EIGER-like detectors have no read noise or dark current): `numpy`'s Poisson costs ~130 ms per
   4M frame, so a pre-generated noise bank provides the noise of the frame-independent part of the scene and
   fresh Poisson is drawn only where a frame differs from it (Poisson(a) + Poisson(b) = Poisson(a + b), exact
   per pixel); scenes that never change (`static = True`: flood, dark) replay the bank's read-out frames;
6. the counters: each sensor pixel's counter stops at its top (ModuleType.pixel_counter_max), binned pixels are
   summed on chip, and the read-out format clips (uint16/uint12) or quantizes (float8) the value; a value at
   the format's top reads as saturated (0xFFFF).

Steps 2-4 together are the pixel's `sensor_response` at the series' energies. app-calibration never sees it:
its procedures measure it through app-detector like any client (floods, darks, flux series, threshold scans),
and the tests compare what they measure with the truth here (`readout_response`, `module_dead_time`,
`threshold_relation`).

Hidden per-module properties besides the pixels' (all from the detector's serial number and module id):
- the dead time tau of the module's counters (`module_dead_time`: the module type's nominal value);
- the relation between the threshold the DCU sets and the energy the comparator really cuts at
  (`threshold_relation`: effective = gain x set + offset, gain ~1 +- 1 %, offset ~0 +- 40 eV).
`PhysicsVariant` changes a detector's physics at run time (the simulator side's channel: the `simulator`
module's `physics` key travels in the CONFIGURE content): another gain-map seed, extra hot pixels, a dead-time
scale. It exists so that tests can check that re-running the calibration procedures finds a change.

Everything is deterministic from (series seed, physical module id, frame, sub-frame); the defects, thickness
and trim residuals from the detector's serial number and the physical module id.
"""

from __future__ import annotations

import math
import weakref
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from opendcu.geometry import DetectorLayout
from opendcu.geometry.layout import MASK_DEAD, MASK_NOISY, MASK_OVER, MASK_UNDER, SECOND_HALF
from opendcu.geometry.models import DetectorModel
from opendcu.hardware.counters import SATURATED, counter_top, float8_quantize
from opendcu.simulator.scenes.base import Scene

# sensor defects (fractions of sensor pixels; every module has at least one of each)
GAIN_SIGMA = 0.03
GAIN_LIMITS = (0.9, 1.1)
DEAD_FRACTION = 2e-5
HOT_FRACTION = 1e-5
UNDER_FRACTION = 1e-5
OVER_FRACTION = 1e-5
UNDER_GAIN, OVER_GAIN = 0.5, 1.6
HOT_RATE = 2000.0  # counts per second of a hot pixel
#: efficiency limits for the under-/over-responding mask bits (a binned pixel with one dead member is under)
UNDER_LIMIT, OVER_LIMIT = 0.8, 1.25

#: memory for noise banks of one detector (all its modules), bytes
BANK_BUDGET = 128 << 20
MAX_BANK_FRAMES = 16
#: frames whose pixel-wise minimum is the frame-independent part of a changing scene
BASELINE_FRAMES = (1, 501, 1001)
#: relative difference below which a frame's expectation counts as equal to the baseline
BASELINE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ModuleDefects:
    """A module's own sensor response (sensor pixels)."""

    gain: np.ndarray  # float32 [sensor_h, sensor_w]; 0 on dead pixels
    dead: np.ndarray  # flat indices
    hot: np.ndarray  # flat indices
    hot_rate: float  # counts per second


def _module_rng(model: DetectorModel, module_id: int, stream: int) -> np.random.Generator:
    """The random numbers of one property (`stream`) of one physical module of the physical detector."""
    physical = model.physical_model
    return np.random.default_rng(
        [zlib.crc32(physical.detector_number.encode()), model.physical_module(module_id), stream]
    )


@dataclass(frozen=True)
class PhysicsVariant:
    """A change of a simulated detector's hidden physics (default: none)."""

    #: 0: the detector's own gain map and defects; another value: those of a different sensor
    gain_seed: int = 0
    #: extra hot sensor pixels: (module index, row, column)
    hot_pixels: tuple[tuple[int, int, int], ...] = ()
    #: factor on every module's dead time
    dead_time_scale: float = 1.0

    @classmethod
    def from_json(cls, spec: dict | None) -> PhysicsVariant:
        """From the `physics` JSON object of the CONFIGURE content; ValueError on anything malformed."""
        spec = dict(spec or {})
        unknown = set(spec) - {"gain_seed", "hot_pixels", "dead_time_scale"}
        if unknown:
            raise ValueError(f"unknown physics keys: {', '.join(sorted(unknown))}")
        try:
            pixels = [tuple(int(v) for v in p) for p in spec.get("hot_pixels", ())]
            if any(len(p) != 3 for p in pixels):
                raise ValueError
            hot = tuple((p[0], p[1], p[2]) for p in pixels)
            variant = cls(int(spec.get("gain_seed", 0)), hot, float(spec.get("dead_time_scale", 1.0)))
        except (TypeError, ValueError):
            raise ValueError(f"bad physics variant {spec!r:.120}; hot_pixels are [module, row, col]") from None
        if not 0.1 <= variant.dead_time_scale <= 10:
            raise ValueError("physics: hot_pixels are [module, row, col]; dead_time_scale in [0.1, 10]")
        return variant


NO_VARIANT = PhysicsVariant()


@lru_cache(maxsize=64)
def module_defects(model: DetectorModel, module_id: int, variant: PhysicsVariant = NO_VARIANT) -> ModuleDefects:
    """The defects of module `module_id` of `model` (keyed by the physical detector and module)."""
    rng = (
        _module_rng(model, module_id, 7)
        if not variant.gain_seed
        else np.random.default_rng(
            [
                zlib.crc32(model.physical_model.detector_number.encode()),
                model.physical_module(module_id),
                7,
                variant.gain_seed,
            ]
        )
    )
    shape = model.module.sensor_shape
    n = shape[0] * shape[1]
    gain = np.clip(rng.normal(1.0, GAIN_SIGMA, n), *GAIN_LIMITS).astype(np.float32)
    counts = [max(1, round(f * n)) for f in (DEAD_FRACTION, HOT_FRACTION, UNDER_FRACTION, OVER_FRACTION)]
    picked = rng.choice(n, sum(counts), replace=False)
    dead, hot, under, over = np.split(picked, np.cumsum(counts)[:-1])
    extra = [
        r * shape[1] + c for m, r, c in variant.hot_pixels if m == module_id and 0 <= r < shape[0] and 0 <= c < shape[1]
    ]
    if extra:
        hot = np.union1d(hot, extra)
        dead, under, over = (np.setdiff1d(a, hot) for a in (dead, under, over))
    gain[under] = UNDER_GAIN
    gain[over] = OVER_GAIN
    gain[dead] = 0.0
    gain[hot] = 1.0
    for a in (gain, dead, hot):
        a.setflags(write=False)
    return ModuleDefects(gain.reshape(shape), np.sort(dead), np.sort(hot), HOT_RATE)


def bin_sum(values: np.ndarray, binning: int) -> np.ndarray:
    """Sum binning x binning blocks (on-chip digital binning)."""
    if binning == 1:
        return values
    h, w = values.shape
    return values.reshape(h // binning, binning, w // binning, binning).sum(axis=(1, 3))


# -- energy dependence of the response (steps 3 and 4) ---------------------------------------------------------------
#: photoabsorption length L(E) = L_8keV (E / 8 keV)^p of the sensor material: a power law through the NIST XCOM
#: photoelectric cross sections of Si (L = 68 um at 8 keV, ~0.96 mm at 20 keV), good to ~10 % over 5-36 keV
ABSORPTION_LAW = {"Si": (68e-6, 2.85)}
#: sensor thickness non-uniformity over a module: sigma of the wedge (per half module) and of the bow
THICKNESS_WEDGE, THICKNESS_BOW = 0.01, 0.005
#: per-pixel threshold offsets left after trimming (rms, eV; integer eV like a trim DAC's steps)
TRIM_RESIDUAL_EV = 50.0
THRESHOLD_WIDTH = 0.05  # width of the threshold S-curve, relative to the photon energy
#: below this S-curve argument (T + d - E) / (sqrt(2) width E) every photon counts (erfc(-6) = 2 - 2e-17)
_ALL_COUNT = -6.0


def absorption_length(material: str, photon_energy: float) -> float:
    """Photoabsorption length (m) of the sensor material at `photon_energy` (eV)."""
    try:
        length, exponent = ABSORPTION_LAW[material]
    except KeyError:
        raise ValueError(f"no absorption law for sensor material {material!r}") from None
    return length * (photon_energy / 8000.0) ** exponent


def relative_thickness(model: DetectorModel, module_id: int) -> np.ndarray:
    """Sensor thickness / nominal thickness of each sensor pixel (float64): a wedge and a bow over the module."""
    rng = _module_rng(model, module_id, 11)
    wedge_x, wedge_y = rng.normal(0.0, THICKNESS_WEDGE, 2)
    bow = rng.normal(0.0, THICKNESS_BOW)
    h, w = model.module.sensor_shape
    v, u = np.linspace(-1.0, 1.0, h)[:, None], np.linspace(-1.0, 1.0, w)[None, :]
    return 1.0 + wedge_x * u + wedge_y * v + bow * (u * u + v * v - 2.0 / 3.0)


#: spread of the modules' threshold relation: effective threshold = gain x set threshold + offset
THRESHOLD_GAIN_SIGMA, THRESHOLD_OFFSET_SIGMA_EV = 0.01, 40.0


def threshold_relation(model: DetectorModel, module_id: int) -> tuple[float, float]:
    """(gain, offset eV) of module `module_id`: its comparator cuts at gain x set threshold + offset."""
    rng = _module_rng(model, module_id, 17)
    gain, offset = rng.normal(0.0, 1.0, 2)
    gain, offset = float(np.clip(gain, -3, 3)), float(np.clip(offset, -3, 3))
    return 1.0 + THRESHOLD_GAIN_SIGMA * gain, THRESHOLD_OFFSET_SIGMA_EV * offset


def effective_threshold(model: DetectorModel, module_id: int, threshold_energy: float | None) -> float | None:
    """The energy (eV) module `module_id` really cuts at when the DCU sets `threshold_energy`."""
    if threshold_energy is None:
        return None
    gain, offset = threshold_relation(model, module_id)
    return gain * threshold_energy + offset


def module_dead_time(model: DetectorModel, module_id: int, variant: PhysicsVariant = NO_VARIANT) -> float:
    """Dead time (s) of the sensor-pixel counters of module `module_id`."""
    return model.module.dead_time_s * variant.dead_time_scale


def trim_residuals(model: DetectorModel, module_id: int) -> np.ndarray:
    """Each sensor pixel's threshold offset (int16, eV) after trimming."""
    rng = _module_rng(model, module_id, 13)
    return np.rint(rng.normal(0.0, TRIM_RESIDUAL_EV, model.module.sensor_shape)).astype(np.int16)


def threshold_efficiency(photon_energy: float | None, threshold_energy: float | None) -> float:
    """Fraction of photons whose pulse passes the counting threshold (1 unless the threshold nears the energy)."""
    if not photon_energy or threshold_energy is None:
        return 1.0
    return 0.5 * math.erfc((threshold_energy - photon_energy) / (math.sqrt(2) * THRESHOLD_WIDTH * photon_energy))


def sensor_response(
    model: DetectorModel,
    module_id: int,
    photon_energy: float | None = None,
    threshold_energy: float | None = None,
    variant: PhysicsVariant = NO_VARIANT,
) -> np.ndarray:
    """Counts per photon of each sensor pixel relative to a nominal pixel at these energies (float32; 0 = dead):
    gain x absorption of its thickness x its threshold S-curve / the nominal S-curve (`threshold_efficiency`).

    `threshold_energy` is the module's effective threshold (`effective_threshold` of the one the DCU set).
    Without a photon energy only the gain. The true flatfield is 1 / this (binned like the read-out), and
    `ModuleRenderer` counts photons x threshold_efficiency x this."""
    gain = module_defects(model, module_id, variant).gain
    if not photon_energy:
        return gain
    module = model.module
    length = absorption_length(module.sensor_material, photon_energy)
    t0 = module.sensor_thickness_m
    response = gain * (np.expm1(-t0 * relative_thickness(model, module_id) / length) / math.expm1(-t0 / length))
    scale = math.sqrt(2) * THRESHOLD_WIDTH * photon_energy
    nominal_x = (threshold_energy - photon_energy) / scale if threshold_energy is not None else -math.inf
    nominal = 0.5 * math.erfc(nominal_x)
    if nominal_x + 6 * TRIM_RESIDUAL_EV / scale >= _ALL_COUNT and nominal > 0.0:  # else all count (or none)
        residuals = trim_residuals(model, module_id)
        low = int(residuals.min())
        offsets = np.arange(low, int(residuals.max()) + 1)
        ratio = np.array([0.5 * math.erfc(nominal_x + d / scale) for d in offsets]) / nominal  # per offset (eV)
        response *= ratio[residuals - low]
    return response.astype(np.float32)


def readout_response(
    model: DetectorModel,
    module_id: int,
    photon_energy: float | None = None,
    threshold_energy: float | None = None,
    variant: PhysicsVariant = NO_VARIANT,
) -> tuple[np.ndarray, np.ndarray]:
    """Per read-out pixel: relative efficiency at these energies (float32, 0 = dead; see `sensor_response`) and
    pixel-mask bits (uint32) of the module: the hidden truth the tests compare the measured calibration with.

    `threshold_energy` is the threshold the DCU sets (the module's `threshold_relation` applies), and the
    efficiency is relative to a nominal pixel with the nominal threshold (so it includes the module's
    counted fraction at its effective threshold against the nominal one). The mask bits come from the pixel's
    own gain, so that they do not change with the energy."""
    module = model.module
    d = module_defects(model, module_id, variant)
    b2 = module.binning**2
    effective = effective_threshold(model, module_id, threshold_energy)
    nominal = max(threshold_efficiency(photon_energy, threshold_energy), 1e-300)
    relative = threshold_efficiency(photon_energy, effective) / nominal
    efficiency = (
        bin_sum(sensor_response(model, module_id, photon_energy, effective, variant), module.binning) / b2 * relative
    ).astype(np.float32)
    gain = bin_sum(d.gain.astype(np.float64), module.binning) / b2
    hot = np.zeros(d.gain.size, dtype=np.float64)
    hot[d.hot] = 1
    noisy = bin_sum(hot.reshape(d.gain.shape), module.binning) > 0
    bits = np.zeros(module.raw_shape, dtype=np.uint32)
    bits[gain == 0] |= MASK_DEAD
    bits[(gain > 0) & (gain < UNDER_LIMIT)] |= MASK_UNDER
    bits[gain > OVER_LIMIT] |= MASK_OVER
    bits[noisy] |= MASK_NOISY
    return efficiency, bits


def unplace_module(layout: DetectorLayout, block: np.ndarray) -> np.ndarray:
    """Virtual-pixel module block -> physical read-out pixels, summing what the split pixels share."""
    for axis, amap in ((1, layout.col_map), (0, layout.row_map)):
        if (amap.part == SECOND_HALF).any():
            block = np.add.reduceat(block, np.flatnonzero(amap.part != SECOND_HALF), axis=axis)
    return block


def bank_frames_for(model: DetectorModel) -> int:
    """How many noise-bank frames each module of `model` keeps (bounded by BANK_BUDGET for the detector)."""
    per_frame = model.n_modules * model.module.sensor_shape[0] * model.module.sensor_shape[1] * 4
    return int(np.clip(BANK_BUDGET // per_frame, 2, MAX_BANK_FRAMES))


class ModuleRenderer:
    """Renders the frames one module sends during one series."""

    def __init__(
        self,
        scene: Scene,
        model: DetectorModel,
        module_id: int,
        seed: int,
        count_time: float,
        nsubframes: int = 1,
        bank_frames: int | None = None,
        photon_energy: float | None = None,
        threshold_energy: float | None = None,
        variant: PhysicsVariant = NO_VARIANT,
    ):
        if count_time <= 0 or nsubframes < 1:
            raise ValueError("need count_time > 0 and nsubframes >= 1")
        self.scene = scene
        self.model = model
        self.module = model.module
        self.module_id = module_id
        self.physical_id = model.physical_module(module_id)
        self.layout = DetectorLayout(model)
        self.rows, self.cols = self.layout.module_slices(module_id)
        self.seed = seed
        self.count_time = count_time
        self.nsubframes = nsubframes
        self.defects = module_defects(model, module_id, variant)
        self.dead_time = module_dead_time(model, module_id, variant)
        effective = effective_threshold(model, module_id, threshold_energy)  # what the comparator cuts at
        self.counted_fraction = threshold_efficiency(photon_energy, effective)
        #: counts per photon of each sensor pixel relative to a nominal one (gain, thickness, trim) at the energies
        self.response = sensor_response(model, module_id, photon_energy, effective, variant)
        self.bank_frames = bank_frames or bank_frames_for(model)
        self.static = bool(getattr(scene, "static", False)) and not scene.exact
        self._bank: np.ndarray | None = None  # static: read-out frames; else Poisson(baseline) counts
        self._baseline: np.ndarray | None = None
        #: the mean counts of the image rendered last: its sub-frames share them (auto-summation)
        self._last_measured: tuple[tuple[int, float], np.ndarray] | None = None

    # -- public ---------------------------------------------------------------------------------------------------
    def render(self, frame_number: int, subframe: int = 0, count_time: float | None = None) -> np.ndarray:
        """Read-out values (uint16 [raw_h, raw_w], 0xFFFF = saturated) of sub-frame `subframe` of image
        `frame_number`; `count_time` overrides the series' count time for this image (inte, exte)."""
        count_time = self.count_time if count_time is None else count_time
        if self.scene.exact:
            return self._exact(frame_number)
        if self.static and count_time == self.count_time:
            return self.bank[self.bank_index(frame_number, subframe)]
        rng = np.random.default_rng([self.seed, self.physical_id, frame_number, subframe])
        key = (frame_number, count_time)
        if self._last_measured is None or self._last_measured[0] != key:
            self._last_measured = (key, self._measured(frame_number, count_time))
        measured = self._last_measured[1]
        counts = self._noisy(measured, self.bank_index(frame_number, subframe), rng, count_time == self.count_time)
        return self._readout(counts, rng, count_time / self.nsubframes)

    def bank_index(self, frame_number: int, subframe: int = 0) -> int:
        return ((frame_number - 1) * self.nsubframes + subframe) % self.bank_frames

    @property
    def bank(self) -> np.ndarray:
        """The noise bank (built on first use, or ahead of time by `prepare`)."""
        if self._bank is None:
            self.prepare()
        return self._bank

    def prepare(self) -> None:
        """Build the noise bank now (it costs one Poisson draw per bank frame)."""
        if self._bank is not None or self.scene.exact:
            return
        t_sub = self.count_time / self.nsubframes
        if self.static:
            measured = self._measured(1, self.count_time)
            frames = []
            for k in range(self.bank_frames):
                rng = self._bank_rng(k)
                frames.append(self._readout(rng.poisson(measured).astype(np.int64), rng, t_sub))
            bank = np.stack(frames)
        else:
            self._baseline = np.minimum.reduce([self._measured(f, self.count_time) for f in BASELINE_FRAMES])
            bank = np.stack(
                [self._bank_rng(k).poisson(self._baseline).astype(np.int32) for k in range(self.bank_frames)]
            )
        bank.setflags(write=False)
        self._bank = bank

    # -- steps ----------------------------------------------------------------------------------------------------
    def _bank_rng(self, k: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.physical_id, 0, k])  # frame numbers start at 1

    def _exact(self, frame_number: int) -> np.ndarray:
        raw = unplace_module(self.layout, self.scene.expected(frame_number, self.rows, self.cols))
        return self._quantize(np.rint(raw).astype(np.int64))

    def _measured(self, frame_number: int, count_time: float) -> np.ndarray:
        """Mean counts per sensor pixel in one sub-frame: photons x gain, after pile-up."""
        photons = unplace_module(self.layout, self.scene.expected(frame_number, self.rows, self.cols)).astype(
            np.float64
        )
        b = self.module.binning
        if b > 1:
            photons = np.repeat(np.repeat(photons, b, axis=0), b, axis=1) / (b * b)
        t_sub = count_time / self.nsubframes
        arriving = photons * (count_time / self.count_time / self.nsubframes * self.counted_fraction) * self.response
        return arriving * np.exp(-arriving * (self.dead_time / t_sub))

    def _noisy(self, measured: np.ndarray, k: int, rng: np.random.Generator, use_bank: bool) -> np.ndarray:
        """Poisson counts with mean `measured`: bank frame k plus fresh noise where the frame differs."""
        if not use_bank:
            return rng.poisson(measured).astype(np.int64)
        bank = self.bank
        base = self._baseline
        counts = bank[k].astype(np.int64)
        tolerance = BASELINE_TOLERANCE * base + 1e-9
        more = np.flatnonzero(measured > base + tolerance)
        less = np.flatnonzero(measured < base - tolerance)
        flat, m, b = counts.reshape(-1), measured.reshape(-1), base.reshape(-1)
        flat[more] += rng.poisson(m[more] - b[more])
        flat[less] = rng.poisson(m[less])
        return counts

    def _readout(self, counts: np.ndarray, rng: np.random.Generator, t_sub: float) -> np.ndarray:
        """Sensor counts -> read-out values: hot and dead pixels, counter tops, binning, the wire format."""
        d = self.defects
        flat = counts.reshape(-1)
        flat[d.hot] = rng.poisson(d.hot_rate * t_sub, d.hot.size)
        flat[d.dead] = 0
        np.minimum(counts, self.module.pixel_counter_max, out=counts)
        return self._quantize(bin_sum(counts, self.module.binning))

    def _quantize(self, values: np.ndarray) -> np.ndarray:
        counter = self.module.counter
        if counter == "float8":
            return float8_quantize(values).reshape(self.module.raw_shape)
        out = np.clip(values, 0, SATURATED).astype(np.uint16)
        out[values > counter_top(counter)] = SATURATED
        return out


_renderers: weakref.WeakKeyDictionary[object, dict[tuple, ModuleRenderer]] = weakref.WeakKeyDictionary()


def render_module_frame(
    scene: Scene,
    layout: DetectorLayout,
    module_id: int,
    frame_number: int,
    seed: int,
    *,
    count_time: float | None = None,
    subframe: int = 0,
    nsubframes: int = 1,
    trigger_count_time: float | None = None,
    photon_energy: float | None = None,
    threshold_energy: float | None = None,
) -> np.ndarray:
    """The read-out values (uint16 [raw_h, raw_w]) that module `module_id` sends for `frame_number`.

    `count_time` is the series' count time (default: the scene's experiment), `trigger_count_time` that of an
    inte/exte trigger; the energies (eV) are those the DCU configured. Renderers (with their noise banks) are
    cached per scene object."""
    if count_time is None:
        count_time = scene.experiment.count_time_s  # type: ignore[attr-defined]
    key = (layout.model.name, module_id, seed, count_time, nsubframes, photon_energy, threshold_energy)
    try:
        cache = _renderers.setdefault(scene, {})
    except TypeError:  # scene not weak-referenceable: no caching
        cache = {}
    renderer = cache.get(key)
    if renderer is None:
        renderer = cache[key] = ModuleRenderer(
            scene,
            layout.model,
            module_id,
            seed,
            count_time,
            nsubframes,
            photon_energy=photon_energy,
            threshold_energy=threshold_energy,
        )
    return renderer.render(frame_number, subframe, trigger_count_time)
