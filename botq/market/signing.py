"""Kraken private-call signing and nonces.

`sign` is a pure function, so it can be checked against Kraken's published example vector
(see tests/unit/market/test_signing.py). `NonceGenerator` hands out strictly increasing
integers even when several threads ask at once or the wall clock steps backwards, because
Kraken rejects any nonce that is not larger than the last one it accepted for a key
(`EAPI:Invalid nonce`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

__all__ = ["NonceGenerator", "encode_body", "next_nonce", "sign"]


def encode_body(data: Mapping[str, object] | str) -> str:
    """The form-encoded body string that is both signed and sent (never re-encode it later)."""
    if isinstance(data, str):
        return data
    return urlencode({k: str(v) for k, v in data.items()})


def sign(url_path: str, data: Mapping[str, object] | str, nonce: str | int, secret_b64: str) -> str:
    """Kraken's API-Sign value for one private request.

    base64(HMAC-SHA512(key=base64decode(secret), msg=path + SHA256(nonce + body))), where
    `url_path` is the path only (``/0/private/Balance``) and `data` is the exact url-encoded
    body (or a mapping encoded with `encode_body`). The body must contain the same nonce.
    """
    body = encode_body(data)
    try:
        key = base64.b64decode(secret_b64, validate=True)
    except (binascii.Error, ValueError):
        # The message deliberately does not echo the secret.
        raise ValueError(
            "the Kraken API secret is not valid base64: copy the private key exactly as Kraken "
            "shows it into BOTQ_KRAKEN_API_SECRET or $BOTQ_HOME/kraken.toml"
        ) from None
    digest = hashlib.sha256((str(nonce) + body).encode()).digest()
    mac = hmac.new(key, url_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode("ascii")


class NonceGenerator:
    """Strictly increasing integer nonces: ``max(now_in_units, last + 1)`` under a lock.

    `clock` returns seconds (default `time.time`); `units_per_second` is 1000 (milliseconds,
    the usual choice for Kraken keys). If the clock goes back, the generator keeps counting up
    from the last value instead of repeating one.
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, *, units_per_second: int = 1000
    ) -> None:
        self._clock = clock
        self._units = units_per_second
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        """Return the next nonce (thread-safe, never repeats within this generator)."""
        with self._lock:
            now = int(self._clock() * self._units)
            self._last = max(now, self._last + 1)
            return self._last

    @property
    def last(self) -> int:
        """The last nonce handed out (0 before the first call)."""
        return self._last

    def __repr__(self) -> str:
        return f"NonceGenerator(last={self._last}, units_per_second={self._units})"


_PROCESS_NONCES = NonceGenerator()


def next_nonce() -> int:
    """Next nonce from the process-wide generator (shared by every client of this process)."""
    return _PROCESS_NONCES()
