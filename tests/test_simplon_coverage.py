"""Every key of the SIMPLON spec tables is served with a SIMPLON shape, or listed in the README as not supported
(with the reason), and nothing the README lists is served after all."""

from __future__ import annotations

import re

import pytest
from conftest import REPO
from simplon_helpers import http, initialized, server  # noqa: F401
from spec_keys import spec_table_keys

pytestmark = pytest.mark.integration


def readme_unsupported() -> set[str]:
    text = REPO.joinpath("README.md").read_text()
    table = re.split(r"\n#+ SIMPLON keys opendcu does not serve\n", text, maxsplit=1)[1].split("\n## ", 1)[0]
    return {
        key
        for line in table.splitlines()
        if line.startswith("| `")
        for key in re.findall(r"`([^`]+)`", line.split("|")[1])
    }


def served(http, module: str, task: str, key: str) -> bool:
    if task == "command":
        lists = [http.get(f"/{module}/api/{v}/command/keys") for v in ("1.8.0", "1.6.0")]
        return any(r.status_code == 200 and key in r.json() for r in lists)
    r = http.get(f"/{module}/api/1.8.0/{task}/{key}")
    if r.status_code != 200:
        return False
    d = r.json()
    assert "value" in d and isinstance(d["value_type"], str), (module, task, key, d)
    return True


def test_every_spec_key_is_served_or_documented_as_unsupported(http, shared_dir):
    initialized(http)
    unsupported = readme_unsupported()
    missing, listed_but_served = [], []
    for (module, task), keys in spec_table_keys(shared_dir / "spec" / "simplon-api.md").items():
        for key in keys:
            is_served = served(http, module, task, key)
            if not is_served and key not in unsupported:
                missing.append(f"{module}/{task}/{key}")
            if is_served and key in unsupported:
                listed_but_served.append(key)
    assert listed_but_served == [], "served, but the README says not supported"
    assert missing == [], f"neither served nor listed in the README: {missing}"


def test_system_keys_of_the_spec(http):
    for key in ("datetime/date", "datetime/time", "datetime/timezone", "system_info/service_tag"):
        assert http.get(f"/system/api/1.8.0/config/{key}").status_code == 200, key
    assert "restart" in http.get("/system/api/1.8.0/command/keys").json()
