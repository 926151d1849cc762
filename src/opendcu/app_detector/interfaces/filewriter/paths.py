"""Moved to `opendcu.simplon.paths` (the leaf that base and the apps share); this module re-exports it for
the code that still imports it from here."""

from opendcu.simplon.paths import (  # noqa: F401
    UnsafePath,
    check_name_pattern,
    resolve_in,
    series_prefix,
    master_name,
    data_name,
    list_data_files,
    SeriesFilesExist,
    check_series_files,
    NAME_MAX,
    PATTERN_MAX,
    SUFFIX_MAX,
    MAX_DATA_FILES,
)
