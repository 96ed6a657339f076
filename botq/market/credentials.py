"""Kraken API credentials: where they come from and how they stay hidden.

Sources, in order:

1. the environment: ``BOTQ_KRAKEN_API_KEY`` and ``BOTQ_KRAKEN_API_SECRET`` (both or neither);
2. a TOML file outside the repository, ``$BOTQ_HOME/kraken.toml`` (``BOTQ_HOME`` defaults to
   ``~/.botq``)::

       api_key = "..."
       api_secret = "..."

Never from task payloads: a payload is stored in the queue table and shown in the dashboard.
The values are wrapped in `Secret`, whose ``repr``/``str`` print stars, so a credentials object
can sit in a log line, an exception message or a notebook cell without showing the secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from botq.errors import ConfigError
from botq.secrets import register_secret

__all__ = [
    "ENV_KEY",
    "ENV_SECRET",
    "KrakenCredentials",
    "Secret",
    "credentials_path",
    "load_credentials",
]

log = logging.getLogger(__name__)

ENV_KEY = "BOTQ_KRAKEN_API_KEY"
ENV_SECRET = "BOTQ_KRAKEN_API_SECRET"
_FILE_NAME = "kraken.toml"
_HOW_TO = (
    f'set {ENV_KEY} and {ENV_SECRET} in the environment, or write api_key = "..." and '
    f'api_secret = "..." to $BOTQ_HOME/{_FILE_NAME} (BOTQ_HOME defaults to ~/.botq; chmod 600)'
)


class Secret:
    """A string that does not print itself: ``repr``/``str`` give stars; `reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value; call it only where the value is sent or signed."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, repr=False)
class KrakenCredentials:
    """An API key and its base64 private key; `source` says where they were read from."""

    api_key: Secret
    api_secret: Secret
    source: str = "explicit"

    @classmethod
    def from_strings(
        cls, api_key: str, api_secret: str, source: str = "explicit"
    ) -> KrakenCredentials:
        """Validate and wrap plain strings (the secret must be base64, as Kraken shows it)."""
        key = api_key.strip()
        secret = api_secret.strip()
        if not key:
            raise ConfigError(f"Kraken API key is empty (from {source}): {_HOW_TO}")
        if not secret:
            raise ConfigError(f"Kraken API secret is empty (from {source}): {_HOW_TO}")
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"Kraken API secret from {source} is not valid base64: copy the private key "
                "exactly as Kraken shows it when the key is created"
            ) from None
        # Whatever botq writes later (task errors, tracebacks) masks these values.
        register_secret(key)
        register_secret(secret)
        return cls(Secret(key), Secret(secret), source)

    def __repr__(self) -> str:
        return f"KrakenCredentials(source={self.source!r}, api_key=***, api_secret=***)"

    __str__ = __repr__


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$BOTQ_HOME/kraken.toml`` (``BOTQ_HOME`` defaults to ``~/.botq``)."""
    env = os.environ if environ is None else environ
    home = env.get("BOTQ_HOME") or str(Path("~/.botq").expanduser())
    return Path(home).expanduser() / _FILE_NAME


def load_credentials(environ: Mapping[str, str] | None = None) -> KrakenCredentials:
    """Read credentials from the environment, else from ``$BOTQ_HOME/kraken.toml``.

    Raises `ConfigError` (naming what to set, never echoing a value) when neither source is
    complete or a value is malformed.
    """
    env = os.environ if environ is None else environ
    key, secret = env.get(ENV_KEY), env.get(ENV_SECRET)
    if key or secret:
        if not (key and secret):
            missing = ENV_SECRET if key else ENV_KEY
            raise ConfigError(f"{missing} is not set but its partner is: set both, or neither")
        return KrakenCredentials.from_strings(key, secret, source="environment")

    path = credentials_path(env)
    if not path.is_file():
        raise ConfigError(f"no Kraken API credentials found ({path} does not exist): {_HOW_TO}")
    _warn_if_readable_by_others(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # The parser message has a line/column, never the file's contents.
        raise ConfigError(f"{path} is not valid TOML ({exc}): {_HOW_TO}") from None
    missing_fields = [f for f in ("api_key", "api_secret") if not isinstance(data.get(f), str)]
    if missing_fields:
        raise ConfigError(f"{path} lacks string field(s) {', '.join(missing_fields)}: {_HOW_TO}")
    return KrakenCredentials.from_strings(data["api_key"], data["api_secret"], source=str(path))


def _warn_if_readable_by_others(path: Path) -> None:
    """Log (not raise) when the secrets file is readable by group or others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
