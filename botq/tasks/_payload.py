"""Reading task payloads with errors that name the field and the fix."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from botq.errors import PayloadError


def required_str(payload: dict[str, Any], field: str, example: str) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(field, f"required, a non-empty string such as {example!r}")
    return value.strip()


def optional_str(payload: dict[str, Any], field: str) -> str | None:
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(field, f"must be a string, got {type(value).__name__}")
    return value


def choice(payload: dict[str, Any], field: str, options: Collection[str], default: str) -> str:
    value = payload.get(field, default)
    if value not in options:
        raise PayloadError(field, f"{value!r} is not one of {', '.join(options)}")
    return str(value)


def optional_time(payload: dict[str, Any], field: str) -> str | int | None:
    """An ISO 8601 time (UTC unless it says otherwise) or Unix nanoseconds."""
    value = payload.get(field)
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        import pandas as pd

        try:
            pd.Timestamp(value)
        except ValueError:
            raise PayloadError(
                field, f"{value!r} is not a time; use ISO 8601 such as '2026-01-01T00:00:00Z'"
            ) from None
        return value
    raise PayloadError(field, "must be an ISO 8601 string or Unix nanoseconds")
