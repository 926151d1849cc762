"""Moved to `opendcu.simplon.paths` (the leaf that base and the apps share); this module re-exports it for
the code that still imports it from here."""

from opendcu.simplon.paths import (  # noqa: F401
    MAX_DATA_FILES,
    NAME_MAX,
    PATTERN_MAX,
    SUFFIX_MAX,
    SeriesFilesExist,
    UnsafePath,
    check_name_pattern,
    check_series_files,
    data_name,
    list_data_files,
    master_name,
    resolve_in,
    series_prefix,
)
