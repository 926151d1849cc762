"""The DAQ's packet accounting as SIMPLON status keys of the `detector` subsystem (`detector/api/<v>/status/daq/…`).

They describe the running (or last) series: packets of the images handed on so far, what was lost, and what was
counted and dropped. The efficiency of each single image travels with the image (stream/file metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opendcu.app_detector.control.parameters import StatusParameter
from opendcu.app_detector.daq.assembler import FrameAssembler

#: (key, counter attribute, value type, unit)
_COUNTERS = (
    ("packets_expected", "packets_expected", "uint"),
    ("packets_received", "packets_received", "uint"),
    ("packets_lost", "packets_lost", "uint"),
    ("packets_late", "late", "uint"),
    ("packets_duplicate", "duplicate", "uint"),
    ("packets_foreign", "foreign", "uint"),
    ("packets_malformed", "malformed", "uint"),
    ("packets_overflow", "overflow", "uint"),
    ("frames_complete", "frames_complete", "uint"),
    ("frames_incomplete", "frames_incomplete", "uint"),
    ("frames_lost", "frames_lost", "uint"),
    ("efficiency", "efficiency", "float"),
)


def daq_status_parameters(assembler: Callable[[], FrameAssembler]) -> list[StatusParameter]:
    """Status keys `daq/<name>`, read live from the counters of the assembler that `assembler()` returns."""

    def reader(attribute: str) -> Callable[[], Any]:
        return lambda: getattr(assembler().counters, attribute)

    params = [StatusParameter(f"daq/{key}", value_type, reader(attr)) for key, attr, value_type in _COUNTERS]
    params.append(StatusParameter("daq/series_id", "uint", lambda: max(0, assembler().series_id)))
    # the modules whose packets the series expects (roi_mode 4M reads out the ROI's modules only)
    params.append(StatusParameter("daq/modules_read_out", "uint", lambda: assembler().modules_read_out))
    # raw frame slots of the running (or last) series: the raw buffer is partitioned per series (nframes_sum)
    params.append(StatusParameter("daq/raw_slots", "uint", lambda: assembler().ring.n_slots))
    # where module 0's data packets must go (the DAQ accepts them only from the module's own source)
    params.append(
        StatusParameter("daq/data_port", "uint", lambda: assembler().data_ports[0] if assembler().data_ports else 0)
    )
    # images the DAQ assembled that the pipeline could not produce (each is missing in every interface)
    params.append(StatusParameter("daq/images_lost_in_pipeline", "uint", lambda: assembler().lost_in_pipeline()))
    return params
