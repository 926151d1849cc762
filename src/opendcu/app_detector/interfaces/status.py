"""The `mode` switch and SIMPLON `status/state` shared by the Stream and the FileWriter."""

from __future__ import annotations

from typing import Any


class ModeAndState:
    """`enabled` from `config/mode`; `state`: error (errors listed), disabled, acquire (series running), ready.

    Users provide `subsystem` (with a `mode` key), `errors` (list) and `_series` (None when no series runs).
    """

    subsystem: Any
    errors: list[str]
    _series: Any

    @property
    def enabled(self) -> bool:
        return self.subsystem["mode"] == "enabled"

    @property
    def state(self) -> str:
        if self.errors:
            return "error"
        if not self.enabled:
            return "disabled"
        return "acquire" if self._series is not None else "ready"
