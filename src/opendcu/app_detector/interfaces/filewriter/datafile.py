"""EIGER-style HDF5 data files, written chunk by chunk with the pre-compressed image bytes.

Layout (spec/filewriter-nxmx.md §2): /entry (NXentry) / data (NXdata) / data, shape (n, h, w), maxshape
(unlimited, h, w), chunks (1, h, w), fill 2^bits - 1, the codec's filter as mandatory; attributes
image_nr_low / image_nr_high (uint64, 1-based). Nothing is compressed here: each chunk is written with
H5Dwrite_chunk exactly as the pipeline produced it.

The dataset is created with the number of images the file will hold (chunks are still allocated only when
written) and shrunk at close if the series ended early; large allocations are 4 KiB aligned, so every chunk
payload starts on a page (what the parallel writer's memcpy into an mmap wants; it costs nothing measurable).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers filters 32008/32004 so datasets get complete cd_values)
import numpy as np

from opendcu.codecs.base import Hdf5Filter

LIBVER = ("v108", "v108")  # superblock v2 and v1 B-tree chunk index, as DECTRIS' EIGER2 files (neggia reads them)
ALIGNMENT = dict(alignment_threshold=64 * 1024, alignment_interval=4096)


def set_fixed_string_attr(obj: h5py.HLObject, name: str, text: str) -> None:
    """A fixed-length, NUL-terminated ASCII attribute, as DECTRIS writes NX_class."""
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(text) + 1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    attr = h5py.h5a.create(obj.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR))
    attr.write(np.array(text.encode(), dtype=f"S{len(text) + 1}"))


def create_image_dataset(
    group: h5py.Group,
    name: str,
    shape: tuple[int, int],
    dtype: np.dtype,
    hdf5_filter: Hdf5Filter | None,
    n_images: int = 0,
) -> h5py.Dataset:
    """An extendable (n, h, w) image dataset that takes pre-compressed chunks, one image per chunk."""
    h, w = shape
    space = h5py.h5s.create_simple((n_images, h, w), (h5py.h5s.UNLIMITED, h, w))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((1, h, w))
    if hdf5_filter is not None:
        dcpl.set_filter(hdf5_filter.filter_id, hdf5_filter.flags, hdf5_filter.cd_values)
    dcpl.set_fill_value(np.array(np.iinfo(dtype).max, dtype=dtype))
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_INCR)
    dcpl.set_obj_track_times(False)  # no timestamps: the same images give the same file bytes
    dsid = h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)
    return h5py.Dataset(dsid)


def entry_data_group(f: h5py.File) -> h5py.Group:
    """/entry (NXentry) / data (NXdata), as in DECTRIS data files."""
    entry = f.create_group("entry")
    set_fixed_string_attr(entry, "NX_class", "NXentry")
    data = entry.create_group("data")
    set_fixed_string_attr(data, "NX_class", "NXdata")
    return data


def part_path(path: Path) -> Path:
    """The hidden name a file has while it is written."""
    return path.with_name(f".{path.name}.part")


class DataFile:
    """One `<prefix>_data_NNNNNN.h5`: written under a hidden `.name.part` name, renamed when complete.

    `fileobj`: write through this file object instead of the sec2 driver (the parallel writer's allocator).
    """

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int],
        dtype: np.dtype,
        hdf5_filter: Hdf5Filter | None,
        image_nr_low: int,
        n_images: int,
        fileobj: Any = None,
    ):
        self.path = path
        self.tmp_path = part_path(path)
        self.shape = shape
        self.image_nr_low = image_nr_low
        self.n_images = n_images
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(fileobj if fileobj is not None else self.tmp_path, "w", libver=LIBVER, **ALIGNMENT)
        self.dataset = create_image_dataset(entry_data_group(self._file), "data", shape, dtype, hdf5_filter, n_images)

    def append(self, chunk: Any) -> None:
        """Add the next image given as its compressed chunk bytes."""
        if self.count >= self.n_images:
            self.n_images = self.count + 1
            self.dataset.resize((self.n_images, *self.shape))
        self.dataset.id.write_direct_chunk((self.count, 0, 0), chunk)
        self.count += 1

    def finish(self) -> None:
        """Shrink to the images written, write the image-number attributes and close the HDF5 file."""
        if self.count != self.n_images:
            self.dataset.resize((self.count, *self.shape))
        for attr, value in (("image_nr_low", self.image_nr_low), ("image_nr_high", self.image_nr_low + self.count - 1)):
            self.dataset.attrs.create(attr, value, dtype=np.uint64)
        self._file.close()

    def close(self) -> Path:
        """finish(), then move the file to its final name."""
        self.finish()
        os.replace(self.tmp_path, self.path)
        return self.path

    def discard(self) -> None:
        """Give up a file that cannot be completed (e.g. the disk is full): close it if possible, remove it."""
        try:
            self._file.close()
        except Exception:  # a full disk can make even the close fail; the file is removed anyway
            pass
        self.tmp_path.unlink(missing_ok=True)
