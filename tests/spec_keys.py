"""The keys of the SIMPLON spec tables (spec/simplon-api.md §6-8, §10-13), read from the spec itself."""

from __future__ import annotations

import re
from pathlib import Path

# section heading -> (module, task) of the first-column keys of its tables
SECTIONS = {
    "## 6. Detector config": ("detector", "config"),
    "## 7. Detector status": ("detector", "status"),
    "## 8. Detector commands": ("detector", "command"),
    "## 10. Stream": ("stream", None),
    "## 11. FileWriter": ("filewriter", "config"),
}


def _expand(token: str) -> list[str]:
    if "<n>" in token:
        return [token.replace("<n>", n) for n in ("1", "2")]
    if token.endswith("_*"):
        return [token[:-1] + "start", token[:-1] + "increment"]
    if "…" in token or "<" in token:
        return []
    return [token]


def spec_table_keys(spec: Path) -> dict[tuple[str, str], list[str]]:
    """(module, task) -> keys named in the first column of the spec's key tables."""
    out: dict[tuple[str, str], list[str]] = {}
    section = None
    stream_tasks = {}
    for line in spec.read_text().splitlines():
        if line.startswith("## "):
            section = next((v for k, v in SECTIONS.items() if line.startswith(k)), None)
            continue
        if section is None or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        module, task = section
        if task is None:  # the stream table names the task in its second column
            task = stream_tasks.setdefault(cells[1], cells[1])
        for token in re.findall(r"`([^`]+)`", cells[0]):
            if token == "link_0" or token.startswith("link_"):
                continue
            for key in _expand(token):
                out.setdefault((module, task), []).append(key)
    return out
