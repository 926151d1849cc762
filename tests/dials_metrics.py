"""Run with Debian's /usr/bin/python3 (DIALS' cctbx/dxtbx): what DIALS made of a processed series, as JSON.

    python3 dials_metrics.py WORKDIR MASTER.h5

Reads the DIALS outputs in WORKDIR (imported.expt, strong.refl, indexed.refl, refined.expt, integrated.refl with
shoeboxes, symmetrized.expt) and prints one JSON object: the mask DIALS uses compared with the master's
pixel_mask, the share of strong spots indexed, the refined and symmetrized cells, the Laue group, and for the
integrated reflections how many valid foreground pixels lie on pixels the master masks or hold negative values.
"""

import json
import sys

import h5py
import numpy as np
from dials.algorithms.shoebox import MaskCode
from dials.array_family import flex
from dxtbx.model.experiment_list import ExperimentListFactory


def main(workdir: str, master: str) -> None:
    out = {}
    imported = ExperimentListFactory.from_json_file(f"{workdir}/imported.expt", check_format=True)
    imageset = imported.imagesets()[0]
    out["images"] = len(imageset)
    out["format_class"] = imageset.get_format_class().__name__
    with h5py.File(master, "r") as f:
        ours = f["/entry/instrument/detector/pixel_mask"][()] == 0  # True = a good pixel
    dials_mask = imageset.get_mask(0)[0].as_numpy_array()
    out["mask_shape"] = list(dials_mask.shape)
    out["our_masked"] = int((~ours).sum())
    out["dials_masked"] = int((~dials_mask).sum())
    out["mask_differences"] = int((dials_mask != ours).sum())

    strong = flex.reflection_table.from_file(f"{workdir}/strong.refl")
    indexed = flex.reflection_table.from_file(f"{workdir}/indexed.refl")
    out["strong"] = len(strong)
    out["indexed"] = int(indexed.get_flags(indexed.flags.indexed).count(True))

    refined = ExperimentListFactory.from_json_file(f"{workdir}/refined.expt", check_format=False)
    out["refined_cell"] = list(refined.crystals()[0].get_unit_cell().parameters())
    out["refined_distance_mm"] = -refined.detectors()[0][0].get_origin()[2]
    symmetrized = ExperimentListFactory.from_json_file(f"{workdir}/symmetrized.expt", check_format=False)
    crystal = symmetrized.crystals()[0]
    group = crystal.get_space_group()
    out["space_group"] = group.type().lookup_symbol()
    out["laue_group"] = group.build_derived_laue_group().type().lookup_symbol()
    out["symmetrized_cell"] = list(crystal.get_unit_cell().parameters())

    integrated = flex.reflection_table.from_file(f"{workdir}/integrated.refl")
    done = integrated.get_flags(integrated.flags.integrated_sum)
    out["integrated"] = int(done.count(True))
    integrated = integrated.select(done)
    on_masked = negative = 0
    height, width = ours.shape
    for sb in integrated["shoebox"]:
        x0, x1, y0, y1, _z0, _z1 = sb.bbox
        mask = sb.mask.as_numpy_array()
        data = sb.data.as_numpy_array()
        used = (mask & MaskCode.Valid != 0) & (mask & MaskCode.Foreground != 0)
        if not used.any():
            continue
        ys, xs = np.nonzero(used.any(axis=0))
        ys, xs = ys + y0, xs + x0
        inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        on_masked += int((~ours[ys[inside], xs[inside]]).sum())
        negative += int((data[used] < 0).sum())
    out["integrated_pixels_on_masked"] = on_masked
    out["integrated_negative_pixels"] = negative
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
