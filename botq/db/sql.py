"""Named SQL queries, loaded once from `.sql` files that sit beside the code that runs them."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of `-- name: x` blocks into {name: statement}."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";")
    return queries


@cache
def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """The named queries of `package`'s `filename`."""
    return parse_queries(resources.files(package).joinpath(filename).read_text())
