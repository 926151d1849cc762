"""Debian packages some tests drive as oracles (DIALS, Chromium), installed with apt-get when missing and the
tests run as root (CI does). `dev.py test` runs this file first, next to its other set-up, so that no test pays
for the installation; a test run alone installs what its fixture needs.

    python tests/debian.py          # install every group that is missing (as root)
"""

from __future__ import annotations

import os
import subprocess
import sys

#: group -> (apt-get install options, packages)
PACKAGES: dict[str, tuple[list[str], list[str]]] = {
    "dials": (["--no-install-recommends"], ["python3-dials", "bitshuffle"]),
    "browser": ([], ["chromium", "chromium-driver"]),
}
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]


def installed(group: str) -> bool:
    """Whether dpkg has every package of `group` installed."""
    packages = PACKAGES[group][1]
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\n", *packages], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and done.stdout.split("\n")[: len(packages)] == ["ii "] * len(packages)


def install(group: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """apt-get install the packages of `group` (once more after an update if the package lists are stale)."""
    options, packages = PACKAGES[group]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = [*APT, "install", "-y", *options, *packages]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        subprocess.run([*APT, "update"], env=env, capture_output=True, text=True, timeout=600, check=False)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return done


def main() -> int:
    if os.geteuid() != 0:
        print("tests/debian.py: not root; the tests that need Debian packages install them or fail", flush=True)
        return 0
    code = 0
    for group in PACKAGES:
        if installed(group):
            continue
        print(f"tests/debian.py: installing {' '.join(PACKAGES[group][1])}", flush=True)
        done = install(group)
        if done.returncode != 0:
            print(done.stdout[-3000:] + done.stderr[-3000:], flush=True)
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
