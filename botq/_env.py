"""Settings read from environment variables, with errors that name the variable."""

from __future__ import annotations

import math
import os

from botq.errors import ConfigError


def megabytes(name: str, default: float, zero_means: str) -> float:
    """The megabytes in $name (default when unset); a bad value raises a ConfigError."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        mb = float(raw)
    except ValueError:
        mb = math.nan
    if not mb >= 0:
        raise ConfigError(f"{name} must be a number of megabytes >= 0 ({zero_means}), got {raw!r}")
    return mb


def column_cache_mb() -> float:
    """BOTQ_COLUMN_CACHE_MB: megabytes of computed columns a worker keeps per sweep (0: none)."""
    return megabytes("BOTQ_COLUMN_CACHE_MB", 512.0, "0 turns the column cache off")
