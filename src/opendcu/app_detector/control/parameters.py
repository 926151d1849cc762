"""Moved to `opendcu.simplon.parameters` (the leaf that base and the apps share); this module re-exports it for
the code that still imports it from here."""

from opendcu.simplon.parameters import (  # noqa: F401
    ARRAY_TYPES,
    DIFFERENCE_MODE_QUIRK,
    LISTABLE_TYPES,
    Command,
    Descriptor,
    OnChange,
    Parameter,
    StatusParameter,
    Subsystem,
    check_type,
)
