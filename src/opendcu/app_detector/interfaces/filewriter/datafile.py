"""EIGER-style HDF5 data files, written chunk by chunk with the pre-compressed image bytes.

Layout (spec/filewriter-nxmx.md §2): /entry (NXentry) / data (NXdata) / data, shape (n, h, w), maxshape
(unlimited, h, w), chunks (1, h, w), fill 2^bits - 1, the codec's filter as mandatory; attributes
image_nr_low / image_nr_high (uint64, 1-based). Nothing is compressed here: each chunk is written with
H5Dwrite_chunk exactly as the pipeline produced it.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers filters 32008/32004 so datasets get complete cd_values)
import numpy as np

from opendcu.codecs.base import Hdf5Filter


def set_fixed_string_attr(obj: h5py.HLObject, name: str, text: str) -> None:
    """A fixed-length, NUL-terminated ASCII attribute, as DECTRIS writes NX_class."""
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(text) + 1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    attr = h5py.h5a.create(obj.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR))
    attr.write(np.array(text.encode(), dtype=f"S{len(text) + 1}"))


def create_image_dataset(
    group: h5py.Group, name: str, shape: tuple[int, int], dtype: np.dtype, hdf5_filter: Hdf5Filter | None
) -> h5py.Dataset:
    """An empty, extendable (n, h, w) image dataset that takes pre-compressed chunks."""
    h, w = shape
    space = h5py.h5s.create_simple((0, h, w), (h5py.h5s.UNLIMITED, h, w))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((1, h, w))
    if hdf5_filter is not None:
        dcpl.set_filter(hdf5_filter.filter_id, h5py.h5z.FLAG_MANDATORY, hdf5_filter.cd_values)
    dcpl.set_fill_value(np.array(np.iinfo(dtype).max, dtype=dtype))
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_INCR)
    dsid = h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)
    return h5py.Dataset(dsid)


class DataFile:
    """One `<prefix>_data_NNNNNN.h5`: written under a temporary name, renamed when complete."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype: np.dtype, hdf5_filter: Hdf5Filter | None, image_nr_low: int):
        self.path = path
        self.tmp_path = path.with_name(f".{path.name}.part")
        self.shape = shape
        self.image_nr_low = image_nr_low
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.tmp_path, "w", libver=("v108", "v108"))
        entry = self._file.create_group("entry")
        set_fixed_string_attr(entry, "NX_class", "NXentry")
        data = entry.create_group("data")
        set_fixed_string_attr(data, "NX_class", "NXdata")
        self.dataset = create_image_dataset(data, "data", shape, dtype, hdf5_filter)

    def append(self, chunk: np.ndarray) -> None:
        """Add one image given as its compressed chunk bytes."""
        self.dataset.resize((self.count + 1, *self.shape))
        self.dataset.id.write_direct_chunk((self.count, 0, 0), chunk)
        self.count += 1

    def close(self) -> Path:
        """Write the image-number attributes, close, and move the file to its final name."""
        for attr, value in (("image_nr_low", self.image_nr_low), ("image_nr_high", self.image_nr_low + self.count - 1)):
            self.dataset.attrs.create(attr, value, dtype=np.uint64)
        self._file.close()
        os.replace(self.tmp_path, self.path)
        return self.path
