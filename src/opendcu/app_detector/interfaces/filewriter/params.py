"""The `filewriter` SIMPLON subsystem (spec/simplon-api.md §11)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.control.parameters import Command, Parameter, StatusParameter, Subsystem
from opendcu.app_detector.interfaces.filewriter.paths import UnsafePath, check_name_pattern

if TYPE_CHECKING:
    from opendcu.app_detector.interfaces.filewriter.writer import FileWriter


def _check_pattern(value: str) -> None:
    try:
        check_name_pattern(value)
    except UnsafePath as exc:
        raise InvalidValue(str(exc)) from None


#: serial: one thread writes; parallel: processes memcpy chunks into one file; vds: one process per data file.
#: The master is the same in every mode (nxmx.py: links data_NNNNNN, and a virtual /entry/data/data over several)
WRITER_MODES = ("serial", "parallel", "vds")


def build_filewriter_subsystem(writer: FileWriter) -> Subsystem:
    fw = Subsystem("filewriter")
    fw.add(
        Parameter("mode", "string", "disabled", allowed_values=["enabled", "disabled"]),
        Parameter("name_pattern", "string", "series_$id", check=_check_pattern),
        Parameter("nimages_per_file", "uint", 1000, min=0, max=1_000_000),  # 0: all images in the master
        Parameter("image_nr_start", "uint", 1, min=0, max=2**48),
        Parameter("compression_enabled", "bool", True),
        Parameter("format", "string", "hdf5 nexus legacy nxmx", allowed_values=["hdf5 nexus legacy nxmx"]),
        Parameter("transfer_mode", "string", "HTTP", allowed_values=["HTTP"]),  # 1.6: files are fetched over HTTP
        # opendcu: how chunks reach the files (interfaces/filewriter/parallel.py); serial is DECTRIS-identical
        Parameter("writer_mode", "string", "serial", allowed_values=list(WRITER_MODES)),
        Parameter("writer_processes", "uint", 2, min=1, max=16),
    )
    fw.add_status(
        StatusParameter(
            "state", "string", lambda: writer.state, allowed_values=["disabled", "ready", "acquire", "error"]
        ),
        StatusParameter("error", "string[]", lambda: list(writer.errors)),
        StatusParameter("files", "string[]", writer.list_files),
        StatusParameter("buffer_free", "uint", writer.buffer_free, unit="B"),
    )
    fw.add_command(
        Command("clear", lambda _arg: writer.clear()), Command("initialize", lambda _arg: writer.initialize())
    )
    return fw
