"""The `monitor` SIMPLON subsystem (spec/simplon-api.md §12, spec/monitor-tiff.md §1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opendcu.app_detector.control.parameters import Command, Parameter, StatusParameter, Subsystem

if TYPE_CHECKING:
    from opendcu.app_detector.interfaces.monitor.monitor import Monitor

MAX_BUFFER_SIZE = 200  # EIGER firmware maximum


def build_monitor_subsystem(monitor: Monitor) -> Subsystem:
    sub = Subsystem("monitor")
    sub.add(
        Parameter("mode", "string", "disabled", allowed_values=["enabled", "disabled"]),
        Parameter("buffer_size", "uint", 100, min=1, max=MAX_BUFFER_SIZE),
        Parameter("discard_new", "bool", True),
    )
    sub.add_status(
        StatusParameter("state", "string", lambda: monitor.state, allowed_values=["normal", "overflow"]),
        StatusParameter("error", "string[]", lambda: list(monitor.errors)),
        StatusParameter("dropped", "uint", lambda: monitor.dropped),
        StatusParameter("buffer_fill_level", "uint", monitor.fill_level),
        StatusParameter("buffer_free", "uint", monitor.buffer_free, unit="B"),
        StatusParameter("next_image_number", "uint", lambda: list(monitor.next_image_number), listed=False),
        StatusParameter("monitor_image_number", "uint", lambda: list(monitor.monitor_image_number), listed=False),
    )
    sub.add_command(
        Command("clear", lambda _arg: monitor.clear()), Command("initialize", lambda _arg: monitor.initialize())
    )
    return sub
