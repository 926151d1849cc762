"""The NXmx master file of a series (legacy DECTRIS layout, spec/filewriter-nxmx.md §3).

Written completely at arm. /entry/data holds either external links `data_NNNNNN` to the data files (legacy),
a virtual dataset `data` over them (the "vds" writer mode), or the images themselves (`nimages_per_file` 0).
What the readers need (spec §5): `/entry/definition` "NXmx", `eiger_fw_version`, `data_size` as [slow, fast],
real EIGER sizes, an unchunked uint32 `pixel_mask`, `nimages`/`ntrigger` > 0, `/entry/sample/depends_on`.
opendcu's own modes (2x2 binning, the 8-bit float counter and its decode table) are in `detectorSpecific`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opendcu.app_detector.interfaces.filewriter.datafile import set_fixed_string_attr
from opendcu.app_detector.series import Series
from opendcu.codecs.float8 import DECODE_DESCRIPTION, DECODE_UNBIASED_TABLE

#: firmware string DIALS' FormatNXmxEigerFilewriter keys on (its presence marks a DECTRIS file)
EIGER_FW_VERSION = "opendcu-0.1.0"
#: the rotation axis when `omega_axis` is not configured: a horizontal axis along -x (mcstas frame)
DEFAULT_OMEGA_AXIS = (-1.0, 0.0, 0.0)


def _field(group: h5py.Group, name: str, value: Any, dtype: str | None = None, units: str | None = None) -> h5py.Dataset:
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
    ds.attrs.update({"transformation_type": np.bytes_(kind.encode()), "vector": np.asarray(vector, dtype="f8"),
                     "offset": np.asarray(offset, dtype="f8"), "depends_on": np.bytes_(depends_on.encode())})


def write_master(f: h5py.File, series: Series, data_links: list[str], vds_sources: list[tuple[str, int]] | None = None) -> h5py.Group:
    """Write the master metadata of `series` into the open file `f`; return /entry/data.

    `data_links`: data-file names (relative to the master) for external links `data_NNNNNN`.
    `vds_sources`: instead of links, (file name, images) of each data file for a virtual `/entry/data/data`.
    """
    cfg = series.detector_config
    h, w = int(cfg["y_pixels_in_detector"]), int(cfg["x_pixels_in_detector"])
    n = series.nimages_total
    entry = _group(f, "entry", "NXentry")
    _field(entry, "definition", "NXmx")
    _field(entry, "start_time", str(cfg.get("data_collection_date", "")))
    data = _group(entry, "data", "NXdata")
    if vds_sources is not None:
        _virtual_dataset(data, series, vds_sources)
    else:
        for i, name in enumerate(data_links, start=1):
            data[f"data_{i:06d}"] = h5py.ExternalLink(name, "/entry/data/data")

    instrument = _group(entry, "instrument", "NXinstrument")
    _field(instrument, "name", str(cfg.get("instrument_name", "")) or "opendcu")
    beam = _group(instrument, "beam", "NXbeam")
    _field(beam, "incident_wavelength", cfg["wavelength"], "f4", "angstrom")
    _field(beam, "incident_energy", cfg["photon_energy"], "f4", "eV")

    det = _group(instrument, "detector", "NXdetector")
    _write_detector(det, series, h, w)
    _write_detector_specific(_group(det, "detectorSpecific", "NXcollection"), series, h, w)
    _write_geometry(det, cfg, h, w)

    sample = _group(entry, "sample", "NXsample")
    _write_goniometer(sample, cfg, n)
    source = _group(entry, "source", "NXsource")
    _field(source, "name", str(cfg.get("source_name", "")) or "unknown")
    return data


def _write_detector(det: h5py.Group, series: Series, h: int, w: int) -> None:
    cfg = series.detector_config
    _field(det, "beam_center_x", cfg["beam_center_x"], "f4", "pixel")
    _field(det, "beam_center_y", cfg["beam_center_y"], "f4", "pixel")
    _field(det, "bit_depth_image", series.settings.bit_depth_image, "i4")
    _field(det, "bit_depth_readout", cfg["bit_depth_readout"], "i4")
    _field(det, "count_time", series.count_time, "f4", "s")
    _field(det, "frame_time", series.frame_time, "f4", "s")
    _field(det, "detector_readout_time", cfg["detector_readout_time"], "f4", "s")
    for key in ("countrate_correction_applied", "flatfield_correction_applied", "virtual_pixel_correction_applied",
                "efficiency_correction_applied"):
        _field(det, key, int(bool(cfg.get(key, False))), "i4")
    _field(det, "pixel_mask_applied", int(bool(series.settings.pixel_mask_applied)), "i4")
    _field(det, "description", cfg["description"])
    _field(det, "detector_number", cfg["detector_number"])
    _field(det, "sensor_material", cfg["sensor_material"])
    _field(det, "sensor_thickness", cfg["sensor_thickness"], "f4", "m")
    _field(det, "x_pixel_size", cfg["x_pixel_size"], "f4", "m")
    _field(det, "y_pixel_size", cfg["y_pixel_size"], "f4", "m")
    _field(det, "detector_distance", cfg["detector_distance"], "f4", "m")
    _field(det, "distance", cfg["detector_distance"], "f4", "m")
    _field(det, "threshold_energy", cfg["threshold_energy"], "f4", "eV")
    _field(det, "saturation_value", int(cfg.get("countrate_correction_count_cutoff", series.settings.error_value - 1)), "u4")
    _field(det, "type", "HPC")
    _field(det, "depends_on", "/entry/instrument/detector/transformations/translation")
    table = _countrate_table(series)
    lut_measured = np.arange(int(table[0].max()) + 1)
    _field(det, "countrate_correction_lookup_table", np.rint(np.interp(lut_measured, table[0], table[1])), "u4")


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
    _field(_group(geometry, "orientation", "NXorientation"), "value", cfg.get("detector_orientation", [-1, 0, 0, 0, -1, 0]), "f8")
    _field(_group(geometry, "translation", "NXtranslation"), "distances", [bcx * px, bcy * py, distance], "f8", "m")

    module = _group(det, "module", "NXdetector_module")
    _field(module, "data_origin", [0, 0], "i4")
    _field(module, "data_size", [h, w], "i4")  # [slow, fast]: what dxtbx reads
    _field(module, "data_stride", [1, 1], "i4")
    base = "/entry/instrument/detector/module/module_offset"
    _transformation(_field(module, "fast_pixel_direction", px, "f8", "m"), "translation", (-1.0, 0.0, 0.0), base)
    _transformation(_field(module, "slow_pixel_direction", py, "f8", "m"), "translation", (0.0, -1.0, 0.0), base)
    # the first pixel relative to the beam: the beam centre (pixels) in metres along the pixel axes
    _transformation(_field(module, "module_offset", 0.0, "f8", "m"), "translation", (0.0, 0.0, 0.0),
                    "/entry/instrument/detector/transformations/translation", offset=(bcx * px, bcy * py, 0.0))
    trans = _group(det, "transformations", "NXtransformations")
    _transformation(_field(trans, "translation", distance, "f8", "m"), "translation", (0.0, 0.0, 1.0), ".")

    two_theta_start = float(cfg.get("two_theta_start", 0.0))
    gonio = _group(det, "goniometer", "NXtransformations")
    _field(gonio, "two_theta", [two_theta_start], "f4", "degree")
    _field(gonio, "two_theta_start", two_theta_start, "f4", "degree")
    _field(gonio, "two_theta_increment", float(cfg.get("two_theta_increment", 0.0)), "f4", "degree")


def _write_goniometer(sample: h5py.Group, cfg: dict[str, Any], n: int) -> None:
    """Per-image angles `<axis>_start` + i * `<axis>_increment`: DECTRIS' goniometer group for every axis, and
    the NXmx transformation chain readers follow from /entry/sample/depends_on: omega, then (base to tip)
    kappa, chi, phi for those whose axis vector `<axis>_axis` is configured."""
    gonio = _group(sample, "goniometer", "NXtransformations")
    trans = _group(sample, "transformations", "NXtransformations")
    depends_on = "."
    for axis in ("omega", "kappa", "chi", "phi"):
        start, inc = float(cfg.get(f"{axis}_start", 0.0)), float(cfg.get(f"{axis}_increment", 0.0))
        angles = start + inc * np.arange(n)
        _field(gonio, axis, angles, "f4", "degree")
        _field(gonio, f"{axis}_end", angles + inc, "f4", "degree")
        _field(gonio, f"{axis}_start", start, "f4", "degree")
        _field(gonio, f"{axis}_increment", inc, "f4", "degree")
        _field(gonio, f"{axis}_range_average", inc, "f4", "degree")
        _field(gonio, f"{axis}_range_total", inc * n, "f4", "degree")
        vector = cfg.get(f"{axis}_axis") or (DEFAULT_OMEGA_AXIS if axis == "omega" else None)
        if vector is None:
            continue
        _transformation(_field(trans, axis, angles, "f8", "deg"), "rotation", vector, depends_on)
        _field(trans, f"{axis}_end", angles + inc, "f8", "deg")
        _field(trans, f"{axis}_increment_set", inc, "f8", "deg")
        depends_on = f"/entry/sample/transformations/{axis}"
    _field(sample, "depends_on", depends_on)
    _field(sample, "name", str(cfg.get("sample_name", "")) or "sample")


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


def finalize_master(path: Path, written_links: int, planned_links: int, contributions: dict[str, np.ndarray]) -> None:
    """At series end: drop links to data files that were never written (an early stop) and add the datasets
    other components contributed; the master is touched only if there is something to do."""
    if written_links >= planned_links and not contributions:
        return
    with h5py.File(path, "r+") as f:
        data = f["/entry/data"]
        for i in range(written_links + 1, planned_links + 1):
            name = f"data_{i:06d}"
            if name in data:
                del data[name]
        add_contributions(f, contributions)


def add_contributions(f: h5py.File, contributions: dict[str, np.ndarray]) -> None:
    for hdf5_path, array in contributions.items():
        if not hdf5_path.startswith("/entry/") or ".." in hdf5_path.split("/"):
            raise ValueError(f"master contribution {hdf5_path!r} must be below /entry/")
        if hdf5_path in f:
            del f[hdf5_path]
        f.create_dataset(hdf5_path, data=np.asarray(array))
