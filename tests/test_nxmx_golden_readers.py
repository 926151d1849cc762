"""Real DECTRIS EIGER2 data files and ours give the same answers to the same reader calls (h5py, fabio, silx,
nxmx), field by field, for everything both carry (the golden set has data files only, no master; the pixel
values differ, the structure must not)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_nxmx_master import write_kind

READERS = r"""
import json, sys
import fabio, h5py, hdf5plugin, nxmx, silx.io

def filter_answer(spec):
    # bitshuffle's cd_values are [major, minor, element size, block size, compression]: the minor version is that
    # of the library that created the dataset (DECTRIS: 3, hdf5plugin 7.1: 4); readers ignore it
    fid, flags, values = spec[:3]
    values = list(values)
    if fid == 32008 and len(values) > 1:
        values[1] = "minor"
    return [fid, flags, values]

def h5py_answers(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = {k: [obj.attrs.get_id(k).get_type().get_class(), obj.attrs.get_id(k).get_type().get_size(),
                         str(obj.attrs[k].dtype) if hasattr(obj.attrs[k], "dtype") else type(obj.attrs[k]).__name__]
                     for k in obj.attrs}
            item = {"kind": type(obj).__name__, "attrs": attrs}
            if "NX_class" in obj.attrs:
                item["NX_class"] = obj.attrs["NX_class"].decode()
            if isinstance(obj, h5py.Dataset):
                plist = obj.id.get_create_plist()
                item.update(shape=list(obj.shape), maxshape=[m if m is None else int(m) for m in obj.maxshape],
                            chunks=list(obj.chunks), dtype=obj.dtype.str, fillvalue=int(obj.fillvalue),
                            filters=[filter_answer(plist.get_filter(i)) for i in range(plist.get_nfilters())],
                            alloc_time=plist.get_alloc_time(), layout=plist.get_layout(),
                            image_nr=[int(obj.attrs["image_nr_low"]), int(obj.attrs["image_nr_high"])],
                            frame_shape=list(obj[0].shape), frame_dtype=obj[0].dtype.str)
            out[name] = item
        f.visititems(visit)
        out["/superblock"] = f.id.get_create_plist().get_version()[0]
        out["/nxmx_entries"] = len(nxmx.NXmx(f).entries)
    return out

def fabio_answers(path):
    img = fabio.open(path)
    return {"class": type(img).__name__, "nframes": img.nframes, "shape": list(img.data.shape),
            "dtype": img.data.dtype.str, "header": sorted(img.header), "frame1": list(img.getframe(1).data.shape)}

def silx_answers(path):
    with silx.io.open(path) as f:
        ds = f["/entry/data/data"]
        return {"keys": sorted(f["/entry/data"].keys()), "shape": list(ds.shape), "dtype": ds.dtype.str,
                "is_dataset": silx.io.is_dataset(ds), "nx_class": f["/entry"].attrs["NX_class"].decode()}

print(json.dumps({p: {"h5py": h5py_answers(p), "fabio": fabio_answers(p), "silx": silx_answers(p)}
                  for p in sys.argv[1:]}))
"""

GOLDEN = {
    8: "eiger2_simread7_2datafiles_4images_bslz4_uint8_data_00000{}.h5",
    16: "eiger2_simread7_2datafiles_4images_bslz4_data_00000{}.h5",
    32: "eiger2_simread7_2datafiles_4images_bslz4_uint32_data_00000{}.h5",
}


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_golden_and_our_data_files_read_alike(
    tmp_path: Path, bits: int, golden_dir: Path, clients_python: Path
) -> None:
    write_kind(tmp_path, {8: "serial-8bit", 16: "serial-16bit", 32: "serial-32bit"}[bits])
    folder = golden_dir / "h5-testfiles" / "datasets_eiger2"
    pairs = [(folder / GOLDEN[bits].format(i), tmp_path / f"series_1_data_00000{i}.h5") for i in (1, 2)]
    script = tmp_path / "readers.py"
    script.write_text(READERS)
    files = [str(p) for pair in pairs for p in pair]
    out = subprocess.run([str(clients_python), str(script), *files], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    answers = json.loads(out.stdout.strip().splitlines()[-1])
    for golden, ours in pairs:
        theirs, mine = answers[str(golden)], answers[str(ours)]
        for reader in ("h5py", "fabio", "silx"):
            for key in sorted(set(mine[reader]) | set(theirs[reader])):
                assert mine[reader].get(key) == theirs[reader].get(key), (reader, golden.name, key)
