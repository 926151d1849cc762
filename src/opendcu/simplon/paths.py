"""File names of a series and the rule that they stay inside the data directory."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

_ALLOWED = re.compile(r"^[A-Za-z0-9._$/-]+$")


class UnsafePath(ValueError):
    """A name pattern or file name that would leave the data directory."""


def check_name_pattern(pattern: str) -> None:
    """Raise UnsafePath unless `pattern` is a relative path below the data dir made of safe characters."""
    if not pattern or not _ALLOWED.match(pattern):
        raise UnsafePath(f"name_pattern {pattern!r}: use letters, digits, '._-/' and $id only")
    parts = PurePosixPath(pattern).parts
    if pattern.startswith("/") or any(p in ("..", ".") for p in parts) or pattern.endswith("/"):
        raise UnsafePath(f"name_pattern {pattern!r} must be a relative path inside the data directory")


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
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
