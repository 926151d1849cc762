"""The NXmx master file of a series (legacy DECTRIS layout, spec/filewriter-nxmx.md §3).

The master is written completely at arm; its /entry/data/data_NNNNNN external links point at the data files
that the series will produce.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opendcu.app_detector.interfaces.filewriter.datafile import set_fixed_string_attr
from opendcu.app_detector.pipeline.params import saturation_value
from opendcu.app_detector.series import Series
from opendcu.geometry.models import DetectorModel

#: firmware string DIALS' FormatNXmxEigerFilewriter keys on (its presence marks a DECTRIS file)
EIGER_FW_VERSION = "opendcu-0.1.0"


def _field(group: h5py.Group, name: str, value: Any, dtype: str | None = None, units: str | None = None) -> h5py.Dataset:
    if isinstance(value, str):
        ds = group.create_dataset(name, data=np.bytes_(value.encode()))
    else:
        ds = group.create_dataset(name, data=np.asarray(value, dtype=dtype))
    if units is not None:
        ds.attrs["units"] = np.bytes_(units.encode())
    return ds


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    g = parent.create_group(name)
    set_fixed_string_attr(g, "NX_class", nx_class)
    return g


def write_master(path: Path, series: Series, model: DetectorModel, data_files: list[str]) -> None:
    """Write `<prefix>_master.h5` for `series`; `data_files` are the data-file names relative to the master."""
    cfg = series.detector_config
    h, w = model.shape
    tmp = path.with_name(f".{path.name}.part")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(tmp, "w", libver=("v108", "v108")) as f:
        entry = _group(f, "entry", "NXentry")
        _field(entry, "definition", "NXmx")
        data = _group(entry, "data", "NXdata")
        for i, name in enumerate(data_files, start=1):
            data[f"data_{i:06d}"] = h5py.ExternalLink(name, "/entry/data/data")

        instrument = _group(entry, "instrument", "NXinstrument")
        beam = _group(instrument, "beam", "NXbeam")
        _field(beam, "incident_wavelength", cfg["wavelength"], "f4", "angstrom")

        det = _group(instrument, "detector", "NXdetector")
        _field(det, "beam_center_x", cfg["beam_center_x"], "f4", "pixel")
        _field(det, "beam_center_y", cfg["beam_center_y"], "f4", "pixel")
        _field(det, "bit_depth_image", series.settings.bit_depth_image, "i4")
        _field(det, "bit_depth_readout", cfg["bit_depth_readout"], "i4")
        _field(det, "count_time", series.count_time, "f4", "s")
        _field(det, "frame_time", series.frame_time, "f4", "s")
        _field(det, "detector_readout_time", cfg["detector_readout_time"], "f4", "s")
        for key in ("countrate_correction_applied", "flatfield_correction_applied", "pixel_mask_applied",
                    "virtual_pixel_correction_applied"):
            _field(det, key, int(bool(cfg.get(key, False))), "i4")
        _field(det, "description", cfg["description"])
        _field(det, "detector_number", cfg["detector_number"])
        _field(det, "sensor_material", cfg["sensor_material"])
        _field(det, "sensor_thickness", cfg["sensor_thickness"], "f4", "m")
        _field(det, "x_pixel_size", cfg["x_pixel_size"], "f4", "m")
        _field(det, "y_pixel_size", cfg["y_pixel_size"], "f4", "m")
        _field(det, "detector_distance", cfg["detector_distance"], "f4", "m")
        _field(det, "threshold_energy", cfg["threshold_energy"], "f4", "eV")
        _field(det, "saturation_value", saturation_value(series.settings), "u4")
        _field(det, "depends_on", "/entry/instrument/detector/transformations/translation")

        spec = _group(det, "detectorSpecific", "NXcollection")
        _field(spec, "eiger_fw_version", EIGER_FW_VERSION)
        _field(spec, "software_version", cfg["software_version"])
        _field(spec, "compression", series.settings.compression)
        _field(spec, "data_collection_date", cfg.get("data_collection_date", ""))
        _field(spec, "nimages", series.nimages, "u4")
        _field(spec, "ntrigger", series.ntrigger, "u4")
        _field(spec, "trigger_mode", series.trigger_mode)
        _field(spec, "photon_energy", cfg["photon_energy"], "f4", "eV")
        _field(spec, "x_pixels_in_detector", w, "u4")
        _field(spec, "y_pixels_in_detector", h, "u4")
        mask = series.pixel_mask if series.pixel_mask is not None else np.zeros((h, w), np.uint32)
        _field(spec, "number_of_excluded_pixels", int(np.count_nonzero(mask)), "u4")
        spec.create_dataset("pixel_mask", data=mask.astype(np.uint32))  # contiguous: neggia needs it unchunked

        module = _group(det, "module", "NXdetector_module")
        _field(module, "data_origin", [0, 0], "i4")
        _field(module, "data_size", [h, w], "i4")  # [slow, fast]
        _field(module, "data_stride", [1, 1], "i4")
        pix = cfg["x_pixel_size"]
        fast = _field(module, "fast_pixel_direction", pix, "f8", "m")
        fast.attrs.update({"transformation_type": np.bytes_(b"translation"), "vector": [-1.0, 0.0, 0.0],
                           "offset": [0.0, 0.0, 0.0], "depends_on": np.bytes_(b"/entry/instrument/detector/module/module_offset")})
        slow = _field(module, "slow_pixel_direction", pix, "f8", "m")
        slow.attrs.update({"transformation_type": np.bytes_(b"translation"), "vector": [0.0, -1.0, 0.0],
                           "offset": [0.0, 0.0, 0.0], "depends_on": np.bytes_(b"/entry/instrument/detector/module/module_offset")})
        offset = _field(module, "module_offset", 0.0, "f8", "m")
        # origin of the first pixel relative to the beam: beam centre (pixels) converted to metres
        offset.attrs.update({"transformation_type": np.bytes_(b"translation"), "vector": [0.0, 0.0, 0.0],
                             "offset": [cfg["beam_center_x"] * pix, cfg["beam_center_y"] * pix, 0.0],
                             "depends_on": np.bytes_(b"/entry/instrument/detector/transformations/translation")})
        trans = _group(det, "transformations", "NXtransformations")
        t = _field(trans, "translation", cfg["detector_distance"], "f8", "m")
        t.attrs.update({"transformation_type": np.bytes_(b"translation"), "vector": [0.0, 0.0, 1.0],
                        "depends_on": np.bytes_(b".")})

        sample = _group(entry, "sample", "NXsample")
        _field(sample, "depends_on", "/entry/sample/transformations/omega")
        strans = _group(sample, "transformations", "NXtransformations")
        n = series.nimages_total
        omega = cfg["omega_start"] + cfg["omega_increment"] * np.arange(n)
        o = _field(strans, "omega", omega, "f8", "deg")
        o.attrs.update({"transformation_type": np.bytes_(b"rotation"), "vector": [-1.0, 0.0, 0.0], "depends_on": np.bytes_(b".")})
        gonio = _group(sample, "goniometer", "NXtransformations")
        _field(gonio, "omega", omega, "f4", "degree")
        _field(gonio, "omega_start", cfg["omega_start"], "f4", "degree")
        _field(gonio, "omega_increment", cfg["omega_increment"], "f4", "degree")
    os.replace(tmp, path)
