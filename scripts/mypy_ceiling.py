#!/usr/bin/env python3
"""mypy on src with a ceiling: the packages under strict must be clean (pyproject [[tool.mypy.overrides]]), and
the number of errors elsewhere may not grow beyond scripts/mypy_ceiling.txt. When it shrank, lower the number
in that file (the script says so), so that it can only go down.

    python scripts/mypy_ceiling.py          # exit 1 when the count exceeds the ceiling
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CEILING_FILE = Path(__file__).with_name("mypy_ceiling.txt")


def main() -> int:
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    output = done.stdout + done.stderr
    found = re.search(r"Found (\d+) errors? in", output)
    if found is None and done.returncode != 0:
        print(output, end="")
        print("mypy_ceiling: mypy failed without an error count (a crash or a configuration error)")
        return 1
    count = int(found.group(1)) if found else 0
    ceiling = int(CEILING_FILE.read_text().split()[0])
    if count > ceiling:
        print(output, end="")
        print(f"mypy_ceiling: {count} errors, more than the ceiling of {ceiling}: fix the new ones")
        return 1
    if count < ceiling:
        print(f"mypy_ceiling: {count} errors, below the ceiling of {ceiling}: lower {CEILING_FILE.name} to {count}")
    else:
        print(f"mypy_ceiling: {count} errors (ceiling {ceiling})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
