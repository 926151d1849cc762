"""Moved to `opendcu.simplon.errors` (the leaf that base and the apps share); this module re-exports it for
the code that still imports it from here."""

from opendcu.simplon.errors import (  # noqa: F401
    ControlError,
    InvalidValue,
    ParameterNotFound,
    Timeout,
    WrongState,
)
