"""The detector state machine (spec/simplon-api.md §8)."""

from __future__ import annotations

import enum


class DetectorState(str, enum.Enum):  # noqa: UP042 (a StrEnum would change str() of the states)
    NA = "na"
    INITIALIZE = "initialize"
    IDLE = "idle"
    CONFIGURE = "configure"
    READY = "ready"
    ACQUIRE = "acquire"
    ERROR = "error"


#: values served in `status/state` allowed_values (1.8, RN 2020.2.3)
STATE_VALUES = ["na", "idle", "ready", "acquire", "configure", "initialize", "error"]
