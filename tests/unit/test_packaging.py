"""environment.yml and pyproject.toml describe the same environment."""

from __future__ import annotations

import re
import tomllib

from tests.support.util import REPO


def _name(requirement: str) -> str:
    name = re.split(r"[\[<>=!~ ]", requirement.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    listed = set()
    text = (REPO / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        m = re.match(r"^\s+- ([A-Za-z][\w.\-\[\]]*)", line)
        if m:
            listed.add(_name(m.group(1)))
    listed -= {"python", "pip"}
    assert wanted == listed, (wanted - listed, listed - wanted)
