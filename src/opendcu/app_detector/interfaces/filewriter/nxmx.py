"""The NXmx master file of a series (legacy DECTRIS layout, spec/filewriter-nxmx.md §3).

Written at arm; `finalize_master` adds `end_time` and what other components contribute at series end.
/entry/data holds a virtual dataset `data` over all data files and the legacy external links `data_NNNNNN` next
to it (readers that know only one of the two find all images), or the images themselves (`nimages_per_file` 0).
What the readers need (spec §5): `/entry/definition` "NXmx", `eiger_fw_version`, `data_size` as [slow, fast],
real EIGER sizes, an unchunked uint32 `pixel_mask`, `nimages`/`ntrigger` > 0, `/entry/sample/depends_on`.
NXmx's own names (`detector/pixel_mask`, `underload_value`, ...) sit next to DECTRIS' legacy ones; every field
is described in docs/nxmx-fields.md. opendcu's own modes (2x2 binning, the 8-bit float counter and its decode
table) are in `detectorSpecific`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opendcu.app_detector.interfaces.filewriter.datafile import set_fixed_string_attr
from opendcu.app_detector.pipeline.params import saturation_value
from opendcu.app_detector.series import Series
from opendcu.codecs.float8 import DECODE_DESCRIPTION, DECODE_UNBIASED_TABLE

#: the firmware string DIALS' FormatNXmxEigerFilewriter keys on (its presence marks a DECTRIS file), in the form
#: real files carry. dxtbx 3.18-3.23 parse it as a version after dropping "release-" and reverse `data_size` for
#: firmware older than 2022.1.2 (which wrote [fast, slow]); we write [slow, fast] as 2022.1.2 and later do.
EIGER_FW_VERSION = "release-2022.1.2"
#: the beam when the config does not say: linear polarization degree (Stokes S1/S0, horizontal = the mcstas x
#: axis; pyFAI's polarization factor; 0.998 = DIALS' synchrotron default polarization fraction 0.999, and the MX
#: scene's default), size (m, FWHM x, y) and profile
DEFAULT_POLARIZATION = 0.998
DEFAULT_BEAM_SIZE = (50e-6, 50e-6)
DEFAULT_BEAM_PROFILE = "Gaussian"
#: the rotation axis when `omega_axis` is not configured: a horizontal axis along -x (mcstas frame)
DEFAULT_OMEGA_AXIS = (-1.0, 0.0, 0.0)


def _field(
    group: h5py.Group, name: str, value: Any, dtype: str | None = None, units: str | None = None
) -> h5py.Dataset:
    if isinstance(value, str):
        ds = group.create_dataset(name, data=np.bytes_(value.encode()))
    else:
        ds = group.create_dataset(name, data=np.asarray(value, dtype=dtype))
    if units is not None:
        ds.attrs["units"] = np.bytes_(units.encode())
    return ds


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    g = parent.require_group(name)
    set_fixed_string_attr(g, "NX_class", nx_class)
    return g


def _transformation(ds: h5py.Dataset, kind: str, vector, depends_on: str, offset=(0.0, 0.0, 0.0)) -> None:
    ds.attrs.update(
        {
            "transformation_type": np.bytes_(kind.encode()),
            "vector": np.asarray(vector, dtype="f8"),
            "offset": np.asarray(offset, dtype="f8"),
            "depends_on": np.bytes_(depends_on.encode()),
        }
    )


def write_master(
    f: h5py.File, series: Series, data_links: list[str], vds_sources: list[tuple[str, int]] | None = None
) -> h5py.Group:
    """Write the master metadata of `series` into the open file `f`; return /entry/data.

    `data_links`: data-file names (relative to the master) for external links `data_NNNNNN`.
    `vds_sources`: (file name, images) of each data file for a virtual `/entry/data/data` next to the links.
    """
    cfg = series.detector_config
    h, w = int(cfg["y_pixels_in_detector"]), int(cfg["x_pixels_in_detector"])
    n = series.nimages_total
    entry = _group(f, "entry", "NXentry")
    entry.attrs["default"] = np.bytes_(b"data")
    start = start_time(series)
    _field(entry, "definition", "NXmx")
    _field(entry, "start_time", start.isoformat(timespec="milliseconds"))
    _field(
        entry,
        "end_time_estimated",
        (start + timedelta(seconds=n * float(series.frame_time))).isoformat(timespec="milliseconds"),
    )
    program = _field(entry, "program_name", "opendcu")
    program.attrs["version"] = np.bytes_(str(cfg.get("software_version", "")).encode())
    data = _group(entry, "data", "NXdata")
    signal = "data" if vds_sources is not None or not data_links else "data_000001"
    data.attrs["signal"] = np.bytes_(signal.encode())
    if vds_sources is not None:
        _virtual_dataset(data, series, vds_sources)
    for i, name in enumerate(data_links, start=1):
        data[f"data_{i:06d}"] = h5py.ExternalLink(name, "/entry/data/data")

    instrument = _group(entry, "instrument", "NXinstrument")
    _field(instrument, "name", str(cfg.get("instrument_name", "")) or "opendcu")
    _field(instrument, "time_zone", _utc_offset(start))
    # no NXdetector_group: one detector has no groups to describe (docs/nxmx-fields.md)
    _write_beam(_group(instrument, "beam", "NXbeam"), cfg, n)

    det = _group(instrument, "detector", "NXdetector")
    _write_detector(det, series, h, w)
    spec = _group(det, "detectorSpecific", "NXcollection")
    _write_detector_specific(spec, series, h, w)
    det["pixel_mask"] = spec["pixel_mask"]  # NXmx's place for the mask: a hard link, the same dataset
    if "data" in data:
        det["data"] = data["data"]
    _write_geometry(det, cfg, h, w)

    sample = _group(entry, "sample", "NXsample")
    _write_goniometer(sample, cfg, n)
    source = _group(entry, "source", "NXsource")
    _field(source, "name", str(cfg.get("source_name", "")) or "unknown")
    return data


def start_time(series: Series) -> datetime:
    """The series' start (the config's data_collection_date, ISO 8601 with its UTC offset; now if unset)."""
    text = str(series.detector_config.get("data_collection_date", ""))
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        start = datetime.now().astimezone()
    return start if start.tzinfo is not None else start.astimezone()


def _utc_offset(moment: datetime) -> str:
    """ISO 8601 UTC offset, e.g. "+01:00"."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _write_beam(beam: h5py.Group, cfg: dict[str, Any], n: int) -> None:
    _field(beam, "incident_wavelength", cfg["wavelength"], "f4", "angstrom")
    _field(beam, "incident_energy", cfg["photon_energy"], "f4", "eV")
    _field(beam, "incident_beam_size", cfg.get("incident_beam_size", DEFAULT_BEAM_SIZE), "f4", "m")
    _field(beam, "profile", str(cfg.get("beam_profile", DEFAULT_BEAM_PROFILE)))
    degree = float(cfg.get("polarization", DEFAULT_POLARIZATION))
    _field(beam, "incident_polarization_stokes", np.tile([1.0, degree, 0.0, 0.0], (n, 1)), "f4")  # [nP, 4]
    flux_type, flux = str(cfg.get("flux_type", "")), float(cfg.get("flux_value", 0.0) or 0.0)
    if flux_type and flux > 0:  # SIMPLON's flux_type names -> NXbeam's fields (spec §4)
        name, units = {
            "flux": ("total_flux", "Hz"),
            "flux_area_integrated": ("flux", "1/s/m^2"),
            "flux_time_integrated": ("total_flux_integrated", ""),
            "flux_area_and_time_integrated": ("flux_integrated", "1/m^2"),
        }[flux_type]
        _field(beam, name, flux, "f8", units or None)


def _write_detector(det: h5py.Group, series: Series, h: int, w: int) -> None:
    cfg = series.detector_config
    _field(det, "beam_center_x", cfg["beam_center_x"], "f4", "pixel")
    _field(det, "beam_center_y", cfg["beam_center_y"], "f4", "pixel")
    _field(det, "bit_depth_image", series.settings.bit_depth_image, "i4")
    _field(det, "bit_depth_readout", cfg["bit_depth_readout"], "i4")
    _field(det, "count_time", series.count_time, "f4", "s")
    _field(det, "frame_time", series.frame_time, "f4", "s")
    _field(det, "detector_readout_time", cfg["detector_readout_time"], "f4", "s")
    for key in (
        "countrate_correction_applied",
        "flatfield_correction_applied",
        "virtual_pixel_correction_applied",
        "efficiency_correction_applied",
    ):
        _field(det, key, int(bool(cfg.get(key, False))), "i4")
    _field(det, "pixel_mask_applied", int(bool(series.settings.pixel_mask_applied)), "i4")
    _field(det, "flatfield_applied", int(bool(cfg.get("flatfield_correction_applied", False))), "i4")
    _field(
        det, "virtual_pixel_interpolation_applied", int(bool(cfg.get("virtual_pixel_correction_applied", False))), "i4"
    )
    _field(det, "number_of_cycles", int(cfg.get("nframes_sum", 1)), "u4")
    _field(det, "description", cfg["description"])
    _field(det, "detector_number", cfg["detector_number"])
    _field(det, "sensor_material", cfg["sensor_material"])
    _field(det, "sensor_thickness", cfg["sensor_thickness"], "f4", "m")
    _field(det, "x_pixel_size", cfg["x_pixel_size"], "f4", "m")
    _field(det, "y_pixel_size", cfg["y_pixel_size"], "f4", "m")
    _field(det, "detector_distance", cfg["detector_distance"], "f4", "m")
    _field(det, "distance", cfg["detector_distance"], "f4", "m")
    _field(det, "distance_derived", 0, "u1")  # the distance is the configured one, not refined from data
    _field(det, "beam_center_derived", 0, "u1")
    _field(det, "threshold_energy", cfg["threshold_energy"], "f4", "eV")
    low, high = valid_range(series)
    _field(det, "underload_value", low, "i4")
    _field(det, "saturation_value", high, "u4")
    _field(det, "type", "HPC")
    _field(det, "depends_on", "/entry/instrument/detector/transformations/translation")
    table = _countrate_table(series)
    lut_measured = np.arange(int(table[0].max()) + 1)
    _field(det, "countrate_correction_lookup_table", np.rint(np.interp(lut_measured, table[0], table[1])), "u4")


def valid_range(series: Series) -> tuple[int, int]:
    """[underload_value, saturation_value]: the pixel values that are counts (inclusive, as NXmx defines them).

    Above: 2^bits - 1, masked or invalid pixels (what dxtbx reads as -1 and -2). With the 8-bit float counter
    the pixels hold E3M5 codes, so the top valid value is code 254 (255 = saturated, masked or invalid)."""
    settings = series.settings
    if settings.float8_encoding_applied:
        return 0, (1 << settings.bit_depth_image) - 2
    return 0, saturation_value(settings)


def _countrate_table(series: Series) -> np.ndarray:
    """2 x N [measured, corrected]; the identity when the detector has no table (no correction)."""
    if series.countrate_table is not None:
        return np.asarray(series.countrate_table, dtype=np.float32).reshape(2, -1)
    cutoff = int(series.detector_config.get("countrate_correction_count_cutoff", 4000))
    axis = np.arange(max(1, min(cutoff, 4000)), dtype=np.float32)
    return np.stack([axis, axis])


def _write_detector_specific(spec: h5py.Group, series: Series, h: int, w: int) -> None:
    cfg = series.detector_config
    _field(spec, "eiger_fw_version", str(cfg.get("eiger_fw_version", EIGER_FW_VERSION)))
    _field(spec, "software_version", cfg["software_version"])
    _field(spec, "compression", series.settings.compression)
    _field(spec, "data_collection_date", str(cfg.get("data_collection_date", "")))
    _field(spec, "nimages", series.nimages, "u4")
    _field(spec, "ntrigger", series.ntrigger, "u4")
    _field(spec, "nsequences", 1, "u4")
    _field(spec, "trigger_mode", series.trigger_mode)
    _field(spec, "photon_energy", cfg["photon_energy"], "f4", "eV")
    _field(spec, "element", str(cfg.get("element", "")))
    _field(spec, "frame_count_time", cfg.get("frame_count_time", series.count_time), "f4", "s")
    _field(spec, "frame_period", cfg.get("frame_period", series.frame_time), "f4", "s")
    _field(spec, "detector_readout_period", cfg.get("detector_readout_period", series.frame_time), "f4", "s")
    _field(spec, "nframes_sum", cfg.get("nframes_sum", 1), "u4")
    _field(spec, "auto_summation", int(bool(cfg.get("auto_summation", True))), "i4")
    _field(spec, "calibration_type", str(cfg.get("calibration_type", "standard")))
    _field(spec, "countrate_correction_bunch_mode", str(cfg.get("countrate_correction_bunch_mode", "continuous")))
    cutoff = int(cfg.get("countrate_correction_count_cutoff", series.settings.error_value - 1))
    _field(spec, "countrate_correction_count_cutoff", cutoff, "u4")
    _field(spec, "roi_mode", str(cfg.get("roi_mode", "disabled")))
    _field(spec, "test_mode", int(bool(cfg.get("test_image_mode", ""))), "i4")
    _field(spec, "x_pixels_in_detector", w, "u4")
    _field(spec, "y_pixels_in_detector", h, "u4")
    mask = series.pixel_mask if series.pixel_mask is not None else np.zeros((h, w), np.uint32)
    _field(spec, "number_of_excluded_pixels", int(np.count_nonzero(mask)), "u4")
    spec.create_dataset("pixel_mask", data=np.asarray(mask, dtype=np.uint32))  # contiguous: neggia needs it unchunked
    flat = series.flatfield if series.flatfield is not None else np.ones((h, w), np.float32)
    spec.create_dataset("flatfield", data=np.asarray(flat, dtype=np.float32))
    module = _group(spec, "detectorModule_000", "NXcollection")
    _field(module, "countrate_correction_table", _countrate_table(series), "f4")
    _field(module, "countrate_correction_count_cutoff", cutoff, "u4")
    _write_opendcu_modes(spec, series)


def _write_opendcu_modes(spec: h5py.Group, series: Series) -> None:
    """opendcu's own image modes. With the 8-bit float counter the images hold E3M5 codes (uint8), and
    `float8_decode_lookup_table` (float32 [256]) gives each code's count: counts = table[code] (the middle of
    the code's interval: unbiased for the truncating encoder; code 255 = saturated, masked or invalid)."""
    settings = series.settings
    _field(spec, "binning_2x2_applied", int(settings.binning_2x2_applied), "i4")
    _field(spec, "float8_encoding_applied", int(settings.float8_encoding_applied), "i4")
    if settings.float8_encoding_applied:
        table = _field(spec, "float8_decode_lookup_table", DECODE_UNBIASED_TABLE, "f4", "counts")
        for key, value in DECODE_DESCRIPTION.items():
            table.attrs[key] = np.bytes_(value.encode()) if isinstance(value, str) else value
        table.attrs["description"] = np.bytes_(b"pixel value (E3M5 code) -> counts: counts = table[code]")


def _write_geometry(det: h5py.Group, cfg: dict[str, Any], h: int, w: int) -> None:
    px, py = float(cfg["x_pixel_size"]), float(cfg["y_pixel_size"])
    bcx, bcy, distance = float(cfg["beam_center_x"]), float(cfg["beam_center_y"]), float(cfg["detector_distance"])
    geometry = _group(det, "geometry", "NXgeometry")
    _field(
        _group(geometry, "orientation", "NXorientation"),
        "value",
        cfg.get("detector_orientation", [-1, 0, 0, 0, -1, 0]),
        "f8",
    )
    _field(_group(geometry, "translation", "NXtranslation"), "distances", [bcx * px, bcy * py, distance], "f8", "m")

    module = _group(det, "module", "NXdetector_module")
    _field(module, "data_origin", [0, 0], "i4")
    _field(module, "data_size", [h, w], "i4")  # [slow, fast]: what dxtbx reads
    _field(module, "data_stride", [1, 1], "i4")
    base = "/entry/instrument/detector/module/module_offset"
    _transformation(_field(module, "fast_pixel_direction", px, "f8", "m"), "translation", (-1.0, 0.0, 0.0), base)
    _transformation(_field(module, "slow_pixel_direction", py, "f8", "m"), "translation", (0.0, -1.0, 0.0), base)
    # the first pixel relative to the beam: the beam centre (pixels) in metres along the pixel axes
    _transformation(
        _field(module, "module_offset", 0.0, "f8", "m"),
        "translation",
        (0.0, 0.0, 0.0),
        "/entry/instrument/detector/transformations/translation",
        offset=(bcx * px, bcy * py, 0.0),
    )
    trans = _group(det, "transformations", "NXtransformations")
    _transformation(_field(trans, "translation", distance, "f8", "m"), "translation", (0.0, 0.0, 1.0), ".")

    two_theta_start = float(cfg.get("two_theta_start", 0.0))
    gonio = _group(det, "goniometer", "NXtransformations")
    _field(gonio, "two_theta", [two_theta_start], "f4", "degree")
    _field(gonio, "two_theta_start", two_theta_start, "f4", "degree")
    _field(gonio, "two_theta_increment", float(cfg.get("two_theta_increment", 0.0)), "f4", "degree")


def _write_goniometer(sample: h5py.Group, cfg: dict[str, Any], n: int) -> None:
    """Per-image angles `<axis>_start` + i * `<axis>_increment`: DECTRIS' goniometer group for every axis, and
    the NXmx transformation chain readers follow from /entry/sample/depends_on.

    The chain holds the axes of `transformation_order` (SIMPLON, default ["omega"]: the axis the crystal turns
    about), base first, each about its configured `<axis>_axis` (mcstas frame); the sample depends on the last."""
    gonio = _group(sample, "goniometer", "NXtransformations")
    trans = _group(sample, "transformations", "NXtransformations")
    for axis in ("omega", "kappa", "chi", "phi"):
        start, inc = float(cfg.get(f"{axis}_start", 0.0)), float(cfg.get(f"{axis}_increment", 0.0))
        angles = start + inc * np.arange(n)
        _field(gonio, axis, angles, "f4", "degree")
        _field(gonio, f"{axis}_end", angles + inc, "f4", "degree")
        _field(gonio, f"{axis}_start", start, "f4", "degree")
        _field(gonio, f"{axis}_increment", inc, "f4", "degree")
        _field(gonio, f"{axis}_range_average", inc, "f4", "degree")
        _field(gonio, f"{axis}_range_total", inc * n, "f4", "degree")
    depends_on = "."
    for axis in chain_axes(cfg):
        start, inc = float(cfg.get(f"{axis}_start", 0.0)), float(cfg.get(f"{axis}_increment", 0.0))
        angles = start + inc * np.arange(n)
        vector = cfg.get(f"{axis}_axis") or (DEFAULT_OMEGA_AXIS if axis == "omega" else None)
        if vector is None:
            continue
        _transformation(_field(trans, axis, angles, "f8", "deg"), "rotation", vector, depends_on)
        _field(trans, f"{axis}_end", angles + inc, "f8", "deg")
        _field(trans, f"{axis}_increment_set", inc, "f8", "deg")
        depends_on = f"/entry/sample/transformations/{axis}"
    _field(sample, "depends_on", depends_on)
    _field(sample, "name", str(cfg.get("sample_name", "")) or "sample")


def chain_axes(cfg: dict[str, Any]) -> list[str]:
    """The sample axes of the transformation chain, base first (two_theta moves the detector, not the sample)."""
    order = [a for a in cfg.get("transformation_order") or ["omega"] if a in ("omega", "kappa", "chi", "phi")]
    return order or ["omega"]


def _virtual_dataset(data: h5py.Group, series: Series, sources: list[tuple[str, int]]) -> None:
    """/entry/data/data as one virtual (n, h, w) dataset over the data files' /entry/data/data."""
    cfg = series.detector_config
    shape = (int(cfg["y_pixels_in_detector"]), int(cfg["x_pixels_in_detector"]))
    dtype = series.settings.dtype
    total = sum(count for _name, count in sources)
    layout = h5py.VirtualLayout(shape=(total, *shape), dtype=dtype)
    start = 0
    for name, count in sources:
        layout[start : start + count] = h5py.VirtualSource(name, "/entry/data/data", shape=(count, *shape), dtype=dtype)
        start += count
    data.create_virtual_dataset("data", layout, fillvalue=np.iinfo(dtype).max)


def finalize_master(
    path: Path,
    series: Series,
    written_links: int,
    planned_links: int,
    written_images: int,
    vds_sources: list[tuple[str, int]] | None,
    contributions: dict[str, np.ndarray],
) -> None:
    """At series end: write `end_time`, drop links to data files that were never written and shrink the virtual
    dataset to the images written (an early stop), and add the datasets other components contributed."""
    with h5py.File(path, "r+") as f:
        write_end_time(f)
        data = f["/entry/data"]
        for i in range(written_links + 1, planned_links + 1):
            name = f"data_{i:06d}"
            if name in data:
                del data[name]
        if vds_sources is not None and written_images < sum(count for _name, count in vds_sources):
            kept, left = [], written_images
            for name, count in vds_sources:
                if left > 0:
                    kept.append((name, min(count, left)))
                left -= count
            del data["data"], f["/entry/instrument/detector/data"]
            _virtual_dataset(data, series, kept)
            f["/entry/instrument/detector/data"] = data["data"]
        add_contributions(f, contributions)


def write_end_time(f: h5py.File) -> None:
    """/entry/end_time: now, in the start time's UTC offset (NXmx: ISO 8601 with the offset)."""
    entry = f["/entry"]
    try:
        zone = datetime.fromisoformat(entry["start_time"][()].decode()).tzinfo or UTC
    except (KeyError, ValueError):
        zone = UTC
    if "end_time" in entry:
        del entry["end_time"]
    _field(entry, "end_time", datetime.now(zone).isoformat(timespec="milliseconds"))


def add_contributions(f: h5py.File, contributions: dict[str, np.ndarray]) -> None:
    for hdf5_path, array in contributions.items():
        if not hdf5_path.startswith("/entry/") or ".." in hdf5_path.split("/"):
            raise ValueError(f"master contribution {hdf5_path!r} must be below /entry/")
        if hdf5_path in f:
            del f[hdf5_path]
        f.create_dataset(hdf5_path, data=np.asarray(array))
