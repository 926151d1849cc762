"""Moved to `opendcu.simplon.parameters` (the leaf that base and the apps share); this module re-exports it for
the code that still imports it from here."""

from opendcu.simplon.parameters import (  # noqa: F401
    OnChange,
    LISTABLE_TYPES,
    ARRAY_TYPES,
    DIFFERENCE_MODE_QUIRK,
    check_type,
    Parameter,
    StatusParameter,
    Descriptor,
    Command,
    Subsystem,
)
