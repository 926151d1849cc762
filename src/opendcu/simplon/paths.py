"""File names of a series and the rule that they stay inside the data directory."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

_ALLOWED = re.compile(r"[A-Za-z0-9._$/-]+")  # fullmatch: "$" would let a trailing newline through
#: longest file name component (Linux NAME_MAX, bytes; the names are ASCII)
NAME_MAX = 255
#: longest name_pattern (a path below the data directory)
PATTERN_MAX = 1024
#: what a series adds to the last component of its prefix at most: the hidden name of a data file being written
#: (".<prefix>_data_NNNNNN.h5.part"; more digits beyond 999 999 files)
SUFFIX_MAX = len("._data_000000.h5.part")
#: the most data files one series may have (each is a link in the master)
MAX_DATA_FILES = 100_000


class UnsafePath(ValueError):
    """A name pattern or file name that would leave the data directory."""


class SeriesFilesExist(ValueError):
    """A file of the series to be written exists already (arm never overwrites)."""


def check_name_pattern(pattern: str) -> None:
    """Raise UnsafePath unless `pattern` is a relative path below the data dir made of safe characters, with
    components short enough for the file names the series adds to them."""
    if not pattern or not _ALLOWED.fullmatch(pattern):
        raise UnsafePath(f"name_pattern {pattern!r:.80}: use letters, digits, '._-/' and $id only")
    if len(pattern) > PATTERN_MAX:
        raise UnsafePath(f"name_pattern is {len(pattern)} characters long, at most {PATTERN_MAX} are allowed")
    parts = PurePosixPath(pattern).parts
    if (
        pattern.startswith("/")
        or any(p in ("..", ".") for p in pattern.split("/"))
        or pattern.endswith("/")
        or "//" in pattern
    ):
        raise UnsafePath(f"name_pattern {pattern!r:.80} must be a relative path inside the data directory")
    if any(part.startswith(".") for part in parts):
        # hidden names are the FileWriter's own (files being written): /data, the files list and WebDAV never
        # show them, so a series under one would be invisible
        raise UnsafePath(f"name_pattern {pattern!r:.80}: names may not start with '.' (hidden files are not served)")
    longest = NAME_MAX - SUFFIX_MAX - 10  # $id grows to at most 10 more digits
    for part in parts:
        limit = longest if part is parts[-1] else NAME_MAX
        if len(part) > limit:
            raise UnsafePath(
                f"name_pattern: the name {part[:40]!r}... is {len(part)} characters long; a folder "
                f"name may have {NAME_MAX}, the file name part {longest} (the FileWriter appends "
                "'_data_NNNNNN.h5' and writes under a hidden '.<name>.part' name)"
            )


def check_series_files(data_dir: Path, prefix: str, n_data_files: int) -> Path:
    """Everything arm must know before a series writes under `prefix`: the names fit the file system, no folder
    on the way is a symlink or a file, and no file of the series exists yet (nothing is ever overwritten).
    Returns the folder the files go to. Raises UnsafePath or SeriesFilesExist."""
    check_name_pattern(prefix.replace("$", "_"))
    if n_data_files > MAX_DATA_FILES:
        raise UnsafePath(
            f"the series would write {n_data_files} data files, at most {MAX_DATA_FILES} are "
            "allowed: raise nimages_per_file or lower nimages / ntrigger"
        )
    root = Path(data_dir).resolve()
    folder = root
    for part in PurePosixPath(prefix).parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise UnsafePath(
                f"name_pattern: {folder.relative_to(root)} is a symbolic link; the FileWriter writes "
                "only into real folders of the data directory"
            )
        if folder.exists() and not folder.is_dir():
            raise UnsafePath(f"name_pattern: {folder.relative_to(root)} exists and is not a folder")
    stem = PurePosixPath(prefix).name
    if not folder.is_dir():
        return folder
    existing = sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.name in (master_name(stem), f".{master_name(stem)}.part")
        or (entry.name.startswith((f"{stem}_data_", f".{stem}_data_")) and entry.name.endswith((".h5", ".h5.part")))
    )
    if existing:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise SeriesFilesExist(
            f"files of this series exist already ({shown}); the FileWriter never overwrites: "
            "change name_pattern, or delete them (filewriter/command/clear)"
        )
    return folder


def resolve_in(data_dir: Path, relative: str) -> Path:
    """`data_dir / relative`, refusing anything (.., absolute, symlink tricks) that lands outside data_dir."""
    root = data_dir.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise UnsafePath(f"{relative!r} is outside the data directory")
    return target


def series_prefix(pattern: str, series_id: int) -> str:
    return pattern.replace("$id", str(series_id))


def master_name(prefix: str) -> str:
    return f"{prefix}_master.h5"


def data_name(prefix: str, number: int) -> str:
    """Data file `number` (1-based), 6 digits as DECTRIS names them."""
    return f"{prefix}_data_{number:06d}.h5"


def list_data_files(data_dir: Path) -> list[str]:
    """The finished files below `data_dir` (relative names, sorted); partial `.name.part` files are hidden."""
    root = Path(data_dir)
    if not root.is_dir():
        return []
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
