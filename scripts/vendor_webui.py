#!/usr/bin/env python3
"""Reproduce the Web-UI's vendored JavaScript (src/opendcu/base/webui/vendor/) from npm, pinned and checked.

    python3 scripts/vendor_webui.py          # download with `npm pack`, check sha256, copy into vendor/
    python3 scripts/vendor_webui.py --check  # only check the committed files against the pins

The files are committed, so `dcu serve` needs neither Node nor the internet; this script is how they were made.
`npm pack` checks each tarball against the registry's integrity hash; the sha256 pins below check the files.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "src" / "opendcu" / "base" / "webui" / "vendor"

#: package@version -> {file in the tarball (under package/): sha256}
PINS: dict[str, dict[str, str]] = {
    "uplot@1.6.32": {
        "dist/uPlot.esm.js": "5dd9b3281aa64b461b42d9945f6adb2649d346502b12281a9ae0d46599a80eba",
        "dist/uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
        "LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
    },
    # only viridis (and the colour-string parser it imports): the live image's perceptual colour map
    "d3-scale-chromatic@3.1.0": {
        "src/colors.js": "954fd06303b4d3e3743f6c8e8f4663f3ca5ed09e29b22bcecba9529c253eb38b",
        "src/sequential-multi/viridis.js": "08a3cd49e03121bce70033c39577584f09cdb024e6fd8b0ea7c81bfc7a756b50",
        "LICENSE": "0986d93944902cca9af86824b6a641b4b7c2d10602fc510c433a8bcd443919fe",
    },
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _target(spec: str, name: str) -> Path:
    return VENDOR / spec.split("@")[0] / name


def check() -> list[str]:
    problems = []
    for spec, files in PINS.items():
        for name, digest in files.items():
            path = _target(spec, name)
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif _sha256(path.read_bytes()) != digest:
                problems.append(f"{path} does not match its pin {digest}")
    return problems


def vendor() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for spec, files in PINS.items():
            out = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True, text=True)
            tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as tar:
                for name, digest in files.items():
                    member = tar.extractfile(f"package/{name}")
                    if member is None:
                        sys.exit(f"{spec}: {name} is not in the tarball")
                    data = member.read()
                    if _sha256(data) != digest:
                        sys.exit(f"{spec}: {name} has sha256 {_sha256(data)}, pinned {digest}")
                    path = _target(spec, name)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    print(f"{spec}: {name} -> {path.relative_to(VENDOR.parent)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the committed files")
    if not parser.parse_args().check:
        vendor()
    problems = check()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
