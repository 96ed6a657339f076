"""A small hand-written Kraken REST client over an injected `httpx.Client`.

Why not ccxt: botq needs exactly what ccxt drops or blurs (OHLC vwap and trade count, the
forming-candle flag, the nanosecond Trades cursor, internal pair keys), and ccxt is ~18x larger
and ~10x slower to import. The API facts this follows are in shared/reference/kraken-api.md.

Public calls: `asset_pairs` (the name table ``BTC/USD`` <-> ``XBTUSD`` <-> ``XXBTZUSD``), `ohlc`
(latest 720 candles; the still-forming candle is returned apart from the committed ones),
`trades` / `iter_trades` (deep history paged by the ``last`` nanosecond cursor, kept as a str),
`ticker` (many pairs in one request), `system_status`. Private calls: `balance`, `balance_ex`,
signed with API-Key / API-Sign (see `botq.market.signing`).

Errors. Kraken answers HTTP 200 with an ``error`` list; that, and transport trouble, becomes one
exception tree whose ``retryable`` flag says whether waiting can help::

    KrakenError (botq.errors)            .retryable .code
    ├── KrakenRateLimited      retryable  rate limit / too many requests / throttled
    ├── KrakenUnavailable      retryable  EService:*, internal error, EDatabase:*
    ├── KrakenTransportError   retryable  timeouts, network errors, HTTP 5xx/408/429,
    │                                     malformed JSON (other HTTP 4xx: not retryable)
    ├── KrakenNonceError       retryable  EAPI:Invalid nonce (retried once with a fresh nonce)
    ├── KrakenUnknownPair      fatal      EQuery:Unknown asset pair, or a name not in AssetPairs
    ├── KrakenInvalidRequest   fatal      other EQuery:*, EGeneral:Invalid arguments
    ├── KrakenAuthError        fatal      invalid key/signature, permission denied, lockout,
    │                                     no credentials configured
    └── KrakenAPIError         fatal      any other E... message

Retryable errors are retried by the client with bounded exponential backoff (`RetryPolicy`);
fatal ones are raised at once with a message naming the fix. Every request first takes a slot
from a thread-safe `RateLimiter` (one per process by default); HistorySync passes a
`botq.market.ratelimit.PgRateLimiter`, whose buckets live in PostgreSQL, so syncs in different
worker processes share one budget. Secrets are never logged nor put in messages.
"""

from __future__ import annotations

import difflib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import numpy as np

from botq.errors import KrakenError
from botq.market.credentials import KrakenCredentials
from botq.market.signing import encode_body, next_nonce, sign

__all__ = [
    "OHLC_INTERVALS",
    "BalanceEntry",
    "Instrument",
    "KrakenAPIError",
    "KrakenAuthError",
    "KrakenClient",
    "KrakenInvalidRequest",
    "KrakenNonceError",
    "KrakenRateLimited",
    "KrakenTransportError",
    "KrakenUnavailable",
    "KrakenUnknownPair",
    "OHLCPage",
    "PairTable",
    "RateLimiter",
    "RetryPolicy",
    "Ticker",
    "TradesPage",
    "classify_error",
    "default_http_client",
    "shared_limiter",
]

log = logging.getLogger(__name__)

BASE_URL = "https://api.kraken.com"
USER_AGENT = "botq/0.1 (python-httpx)"
OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
NS_PER_SECOND = 1_000_000_000
_NS_DIGITS = 19  # a nanosecond epoch is 19 digits until 2286

# --------------------------------------------------------------------------------------------
# errors


class _KrakenErrorBase(KrakenError):
    """Shared constructor: the subclass fixes `retryable`; `attempts` counts tries made."""

    RETRYABLE = False

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message, retryable=self.RETRYABLE, code=code)
        self.attempts = 1


class KrakenRateLimited(_KrakenErrorBase):
    """Kraken throttled us; `retry_after` (seconds) is set when Kraken says until when."""

    RETRYABLE = True

    def __init__(self, message: str, *, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class KrakenUnavailable(_KrakenErrorBase):
    """Kraken's service is down, busy or failed internally; waiting helps."""

    RETRYABLE = True


class KrakenTransportError(_KrakenErrorBase):
    """The request did not get a usable answer (timeout, network, HTTP status, bad JSON)."""

    RETRYABLE = True

    def __init__(self, message: str, *, code: str = "", retryable: bool = True) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable


class KrakenNonceError(_KrakenErrorBase):
    """The nonce was not larger than the last one Kraken saw for this key."""

    RETRYABLE = True


class KrakenUnknownPair(_KrakenErrorBase):
    """The pair name is not a Kraken pair (or not any more)."""


class KrakenInvalidRequest(_KrakenErrorBase):
    """Kraken rejected the request's arguments; retrying the same request cannot help."""


class KrakenAuthError(_KrakenErrorBase):
    """The API key is missing, wrong, under-privileged or locked; never retried automatically."""


class KrakenAPIError(_KrakenErrorBase):
    """Any other error Kraken reported; not retried."""


_PAIR_HINT = "use a symbol like 'BTC/USD', an altname like 'XBTUSD' or a key like 'XXBTZUSD'"
_KEY_HINT = "check BOTQ_KRAKEN_API_KEY / BOTQ_KRAKEN_API_SECRET or $BOTQ_HOME/kraken.toml"


def classify_error(
    messages: Sequence[str], *, method: str, pair: str | None = None, now: float | None = None
) -> KrakenError:
    """Map Kraken's ``error`` strings (``"EQuery:Unknown asset pair"``) to an exception.

    The first message decides the class; all of them go into the text. `now` (epoch seconds)
    is used to turn ``EService: Throttled: <ts>`` into a ``retry_after``.
    """
    first = messages[0].strip()
    code = first
    category, _, desc = first.partition(":")
    category = category.strip()
    d = desc.strip().lower()
    where = f"Kraken {method}" + (f" for {pair!r}" if pair else "")
    said = "; ".join(m.strip() for m in messages)

    if "rate limit exceeded" in d or "too many requests" in d:
        return KrakenRateLimited(
            f"{where} was rate-limited ({said}); botq retries with backoff. If it persists, "
            "run fewer concurrent syncs or raise the key's tier",
            code=code,
        )
    if category == "EService" and d.startswith("throttled"):
        retry_after = None
        try:
            until = float(desc.split(":")[-1].strip())
            retry_after = max(0.0, until - (time.time() if now is None else now))
        except ValueError:
            pass
        return KrakenRateLimited(
            f"{where} was throttled ({said}); too many concurrent requests, botq waits and retries",
            code=code,
            retry_after=retry_after,
        )
    if category == "EAPI" and d.startswith("invalid nonce"):
        return KrakenNonceError(
            f"{where}: nonce rejected ({said}). Usually several processes share one API key: "
            "give each process its own key, or set a nonce window on the key at Kraken",
            code=code,
        )
    if category == "EAPI" and d.startswith("invalid key"):
        return KrakenAuthError(
            f"{where}: Kraken rejected the API key ({said}); {_KEY_HINT}, or create a new key",
            code=code,
        )
    if category == "EAPI" and d.startswith("invalid signature"):
        return KrakenAuthError(
            f"{where}: signature rejected ({said}); the API secret does not belong to the key: "
            f"{_KEY_HINT}",
            code=code,
        )
    if category == "EGeneral" and d.startswith("permission denied"):
        return KrakenAuthError(
            f"{where}: permission denied ({said}); enable 'Funds permissions - Query' on the "
            "API key at Kraken",
            code=code,
        )
    if category == "EGeneral" and d.startswith("temporary lockout"):
        return KrakenAuthError(
            f"{where}: the key is temporarily locked out ({said}) after repeated bad requests; "
            f"wait several minutes, fix the key ({_KEY_HINT}) and do not retry in a loop",
            code=code,
        )
    if category == "EQuery" and "unknown asset pair" in d:
        return KrakenUnknownPair(
            f"{where}: Kraken does not know this pair ({said}); {_PAIR_HINT} "
            "(see KrakenClient.pair_table())",
            code=code,
        )
    if category == "EQuery" or (category == "EGeneral" and d.startswith("invalid arguments")):
        return KrakenInvalidRequest(
            f"{where}: Kraken rejected the arguments ({said}); fix the named argument", code=code
        )
    if category == "EService" and ("cancel_only" in d or "post_only" in d):
        return KrakenAPIError(f"{where}: market restricted ({said})", code=code)
    if category in ("EService", "EDatabase") or (
        category == "EGeneral" and d.startswith("internal error")
    ):
        return KrakenUnavailable(
            f"{where}: Kraken is unavailable ({said}); botq retries with backoff", code=code
        )
    return KrakenAPIError(f"{where} failed: {said}", code=code)


# --------------------------------------------------------------------------------------------
# rate limiting and retries

#: Kraken's documented private-call counters per verification tier: (max counter, decay per s).
PRIVATE_TIERS: dict[str, tuple[float, float]] = {
    "starter": (15.0, 0.33),
    "intermediate": (20.0, 0.5),
    "pro": (20.0, 1.0),
}
_PRIVATE_MARGIN = 5.0  # keep this much counter headroom for other tools using the same key
#: Private calls that cost 2 on Kraken's counter (the rest cost 1).
_PRIVATE_COST = {"Ledgers": 2, "QueryLedgers": 2, "TradesHistory": 2, "QueryTrades": 2}


class _Bucket:
    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.updated = now


class RateLimiter:
    """Thread-safe token buckets that follow Kraken's documented limits.

    Public calls: Kraken limits per IP, and per IP *and pair* for OHLC and Trades; "one call
    per second or less stays within the limits". So OHLC/Trades get one bucket per
    (endpoint, pair) and the other public endpoints share one bucket, each `public_rate`
    calls/s with burst `public_burst`. Private calls share one bucket that mirrors the per-key
    counter (Starter: max 15, decays 0.33/s), kept `5` below the maximum as a margin.

    `acquire` reserves a slot under the lock and sleeps *outside* it, so threads queue up in
    order without holding each other up. `clock` (monotonic seconds) and `sleep` are
    injectable so tests never wait; `jitter` adds up to that many seconds to a non-zero wait.
    """

    def __init__(
        self,
        *,
        public_rate: float = 1.0,
        public_burst: float = 1.0,
        private_rate: float = PRIVATE_TIERS["starter"][1],
        private_burst: float = PRIVATE_TIERS["starter"][0] - _PRIVATE_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        for name, value in (
            ("public_rate", public_rate),
            ("public_burst", public_burst),
            ("private_rate", private_rate),
            ("private_burst", private_burst),
        ):
            if value <= 0:
                raise ValueError(f"RateLimiter {name} must be > 0, got {value!r}")
        self.public = (public_burst, public_rate)
        self.private = (private_burst, private_rate)
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    @classmethod
    def for_tier(cls, tier: str = "starter", **kwargs: Any) -> RateLimiter:
        """A limiter whose private bucket fits a Kraken verification tier."""
        try:
            maximum, decay = PRIVATE_TIERS[tier.lower()]
        except KeyError:
            raise ValueError(
                f"unknown Kraken tier {tier!r}: use one of {', '.join(PRIVATE_TIERS)}"
            ) from None
        return cls(private_burst=maximum - _PRIVATE_MARGIN, private_rate=decay, **kwargs)

    def reserve(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from bucket `key` now; return how long the caller must wait."""
        capacity, rate = self.private if key.startswith("private") else self.public
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(capacity, rate, now)
            bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            bucket.tokens -= cost
            return max(0.0, -bucket.tokens / rate)

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Block until bucket `key` allows a call of `cost`; return the seconds waited."""
        wait = self.reserve(key, cost)
        if wait > 0:
            if self._jitter > 0:
                with self._lock:
                    wait += self._rng.uniform(0.0, self._jitter)
            self._sleep(wait)
        return wait

    def __repr__(self) -> str:
        return (
            f"RateLimiter(public={self.public[1]}/s burst {self.public[0]}, "
            f"private={self.private[1]}/s burst {self.private[0]}, buckets={len(self._buckets)})"
        )


_SHARED: RateLimiter | None = None
_SHARED_LOCK = threading.Lock()


def shared_limiter() -> RateLimiter:
    """The process-wide limiter that every `KrakenClient` uses unless given another one."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = RateLimiter()
        return _SHARED


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: `base` * `factor`**n capped at `cap`, `retries` retries.

    A delay is stretched by up to `jitter` (a fraction) so that parallel syncs do not retry in
    lock-step, and is never shorter than a ``retry_after`` Kraken gave (capped at `cap`).
    """

    retries: int = 5
    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.1

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        d = min(self.cap, self.base * self.factor**retry)
        if retry_after is not None:
            d = min(self.cap, max(d, retry_after))
        return d * (1.0 + rng.uniform(0.0, self.jitter)) if self.jitter > 0 else d


# --------------------------------------------------------------------------------------------
# pairs

_ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}
#: Kraken's legacy asset names with an X (crypto) / Z (fiat) prefix; newer assets have none.
_LEGACY_PREFIXED = frozenset(
    [
        "XXBT",
        "XETH",
        "XLTC",
        "XXRP",
        "XXLM",
        "XXMR",
        "XZEC",
        "XREP",
        "XETC",
        "XMLN",
        "XXDG",
        "XDAO",
        "XICN",
        "XNMC",
        "XXVN",
        "ZUSD",
        "ZEUR",
        "ZGBP",
        "ZJPY",
        "ZCAD",
        "ZAUD",
        "ZCHF",
    ]
)


def _common_asset(name: str) -> str:
    """``XXBT`` -> ``BTC``, ``ZUSD`` -> ``USD``, ``XXDG`` -> ``DOGE``, ``SOL`` -> ``SOL``."""
    n = name.upper()
    if n in _LEGACY_PREFIXED:
        n = n[1:]
    return _ASSET_ALIASES.get(n, n)


def _norm_name(name: str) -> str:
    return name.strip().upper().replace("-", "/").replace("_", "/")


@dataclass(frozen=True)
class Instrument:
    """One Kraken pair under all its names: `key` (``XXBTZUSD``, what responses are keyed by),
    `altname` (``XBTUSD``, what requests use), `wsname` (``XBT/USD``) and botq's `symbol`
    (``BTC/USD``)."""

    key: str
    altname: str
    wsname: str
    base: str
    quote: str
    symbol: str
    pair_decimals: int | None = None
    lot_decimals: int | None = None
    ordermin: Decimal | None = None
    tick_size: Decimal | None = None
    status: str = "online"

    @classmethod
    def from_kraken(cls, key: str, info: Mapping[str, Any]) -> Instrument:
        """Build from one AssetPairs ``result`` entry."""
        altname = str(info.get("altname") or key)
        wsname = str(info.get("wsname") or "")
        base, quote = str(info.get("base", "")), str(info.get("quote", ""))
        if "/" in wsname:
            b, q = wsname.split("/", 1)
            symbol = f"{_ASSET_ALIASES.get(b, b)}/{_ASSET_ALIASES.get(q, q)}"
        else:
            symbol = f"{_common_asset(base)}/{_common_asset(quote)}" if base and quote else altname
        return cls(
            key=key,
            altname=altname,
            wsname=wsname,
            base=base,
            quote=quote,
            symbol=symbol,
            pair_decimals=info.get("pair_decimals"),
            lot_decimals=info.get("lot_decimals"),
            ordermin=_dec_or_none(info.get("ordermin")),
            tick_size=_dec_or_none(info.get("tick_size")),
            status=str(info.get("status", "online")),
        )


class PairTable:
    """Every pair from AssetPairs, found by any of its names (case-insensitive, ``-`` = ``/``)."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_key: dict[str, Instrument] = {}
        for inst in instruments:
            self._by_key[inst.key] = inst
        self._index: dict[str, Instrument] = {}
        # Precedence on a name clash: Kraken key, then altname, wsname, symbol, compact symbol.
        for attr in ("key", "altname", "wsname", "symbol"):
            for inst in self._by_key.values():
                name = getattr(inst, attr)
                if name:
                    self._index.setdefault(_norm_name(name), inst)
        for inst in self._by_key.values():
            self._index.setdefault(_norm_name(inst.symbol).replace("/", ""), inst)

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> PairTable:
        """Build from an AssetPairs ``result`` object."""
        return cls([Instrument.from_kraken(k, v) for k, v in result.items()])

    def resolve(self, name: str) -> Instrument:
        """The instrument called `name`; `KrakenUnknownPair` (with suggestions) if none."""
        inst = self._index.get(_norm_name(name))
        if inst is None:
            close = difflib.get_close_matches(_norm_name(name), list(self._index), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise KrakenUnknownPair(
                f"unknown Kraken pair {name!r}: {_PAIR_HINT} (one of the {len(self)} pairs in "
                f"KrakenClient.pair_table()).{hint}",
                code="botq:unknown-pair",
            )
        return inst

    def by_key(self, key: str) -> Instrument | None:
        """The instrument whose Kraken response key is `key`, if any."""
        return self._by_key.get(key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _norm_name(name) in self._index

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return f"PairTable({len(self)} pairs)"


# --------------------------------------------------------------------------------------------
# results

CandleArrays = dict[str, np.ndarray]


def _empty_candles() -> CandleArrays:
    return {
        "time": np.empty(0, np.int64),
        "open": np.empty(0),
        "high": np.empty(0),
        "low": np.empty(0),
        "close": np.empty(0),
        "volume": np.empty(0),
        "trades": np.empty(0, np.int64),
        "vwap": np.empty(0),
    }


@dataclass(frozen=True)
class OHLCPage:
    """One OHLC answer: committed candles in `final`, the still-forming one(s) in `forming`.

    Arrays follow botq's candle layout: time (int64 epoch-ns, bucket start, UTC), open, high,
    low, close, volume, trades (int64), vwap. `last` is Kraken's cursor in *seconds*: the time
    of the last committed candle, to pass as the next ``since``. Never store `forming` as final.
    """

    symbol: str
    key: str
    interval: int
    final: CandleArrays
    forming: CandleArrays
    last: int

    def __len__(self) -> int:
        return int(self.final["time"].size)


@dataclass(frozen=True)
class TradesPage:
    """One Trades answer, oldest first, as arrays.

    `time_ns` int64 epoch-ns (parsed exactly from Kraken's decimal seconds), `price` and
    `volume` float64, `side` int8 (+1 buy, -1 sell), `market` bool (market vs limit order),
    `trade_id` int64 (-1 where Kraken sent no id). `last` is the nanosecond cursor as a str.
    """

    symbol: str
    key: str
    time_ns: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    side: np.ndarray
    market: np.ndarray
    trade_id: np.ndarray
    last: str

    def __len__(self) -> int:
        return int(self.time_ns.size)

    def take(self, mask: np.ndarray, last: str | None = None) -> TradesPage:
        """A copy holding only the rows where `mask` is true (and optionally another cursor)."""
        return replace(
            self,
            time_ns=self.time_ns[mask],
            price=self.price[mask],
            volume=self.volume[mask],
            side=self.side[mask],
            market=self.market[mask],
            trade_id=self.trade_id[mask],
            last=self.last if last is None else last,
        )


@dataclass(frozen=True)
class Ticker:
    """Ticker values for one pair; ``*_24h`` are rolling 24 h, ``*_today`` since 00:00 UTC."""

    symbol: str
    key: str
    ask: Decimal
    bid: Decimal
    last: Decimal
    last_volume: Decimal
    open_today: Decimal
    volume_today: Decimal
    volume_24h: Decimal
    vwap_today: Decimal
    vwap_24h: Decimal
    trades_today: int
    trades_24h: int
    low_today: Decimal
    low_24h: Decimal
    high_today: Decimal
    high_24h: Decimal


@dataclass(frozen=True)
class BalanceEntry:
    """One BalanceEx line; `available` = balance + credit - credit_used - hold_trade."""

    balance: Decimal
    hold_trade: Decimal = Decimal(0)
    credit: Decimal = Decimal(0)
    credit_used: Decimal = Decimal(0)

    @property
    def available(self) -> Decimal:
        """What can be spent now (Kraken's documented formula)."""
        return self.balance + self.credit - self.credit_used - self.hold_trade


def _dec_or_none(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _dec(value: Any, what: str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise KrakenTransportError(
            f"Kraken sent {what}={value!r}, which is not a number", code="botq:malformed"
        ) from None


def _check_since_ns(since: str | int) -> str:
    """Normalise a Trades ``since`` cursor to a digit string; refuse floats (they lose ns)."""
    if isinstance(since, bool) or not isinstance(since, (str, int)):
        raise ValueError(
            f"Trades since must be a str or int of epoch nanoseconds (or seconds), got "
            f"{type(since).__name__} {since!r}: floats cannot hold 19 digits exactly"
        )
    text = str(since).strip()
    if not text.isdigit() or len(text) > _NS_DIGITS:
        raise ValueError(
            f"Trades since must be epoch nanoseconds as digits (e.g. '1559347200000000000'), "
            f"got {since!r}"
        )
    return text


# --------------------------------------------------------------------------------------------
# the client


def default_http_client(timeout: float = 30.0) -> httpx.Client:
    """An `httpx.Client` with a timeout and botq's User-Agent; the caller closes it."""
    return httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})


class KrakenClient:
    """Kraken REST client. Pass an `httpx.Client` (tests pass one with a MockTransport).

    `credentials` are only needed for private calls (see `botq.market.credentials`).
    `limiter` defaults to the process-wide `shared_limiter()`; `retry` bounds retries;
    `sleep`, `rng` and `nonce` are injectable so tests run instantly and deterministically.
    `pairs` skips the AssetPairs call when a name table is already at hand.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        credentials: KrakenCredentials | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        nonce: Callable[[], int] = next_nonce,
        pairs: PairTable | None = None,
        base_url: str = BASE_URL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._credentials = credentials
        self.limiter = limiter if limiter is not None else shared_limiter()
        self.retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._nonce = nonce
        self._pairs = pairs
        self._pairs_lock = threading.Lock()
        self.base_url = base_url.rstrip("/")
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"KrakenClient(base_url={self.base_url!r}, credentials={self._credentials!r}, "
            f"limiter={self.limiter!r})"
        )

    # -- pairs ------------------------------------------------------------------------------

    def asset_pairs(self, pairs: Sequence[str] | None = None) -> PairTable:
        """Call AssetPairs (all pairs, or the given altnames/keys) and return the name table."""
        params = {"pair": ",".join(pairs)} if pairs else {}
        result = self._call("AssetPairs", params, bucket="public")
        return PairTable.from_result(result)

    def pair_table(self, refresh: bool = False) -> PairTable:
        """The cached table of all pairs (one AssetPairs call the first time, thread-safe)."""
        with self._pairs_lock:
            if self._pairs is None or refresh:
                self._pairs = self.asset_pairs()
            return self._pairs

    def instrument(self, pair: str) -> Instrument:
        """Resolve any pair name (``BTC/USD``, ``XBTUSD``, ``XXBTZUSD``) to its `Instrument`."""
        return self.pair_table().resolve(pair)

    # -- public market data -----------------------------------------------------------------

    def system_status(self) -> str:
        """Kraken's status: ``online``, ``maintenance``, ``cancel_only`` or ``post_only``."""
        result = self._call("SystemStatus", {}, bucket="public")
        return str(result.get("status", "unknown"))

    def ohlc(
        self, pair: str, interval: int = 1, since: int | None = None, *, keep_empty: bool = False
    ) -> OHLCPage:
        """Candles for `pair` after `since` (epoch seconds, exclusive; Kraken keeps only 720).

        Rows with time <= ``last`` are committed (`OHLCPage.final`); the row after it is still
        forming (`OHLCPage.forming`). Minutes without trades (Kraken sends flat rows with
        volume 0) are dropped unless `keep_empty`, so that botq never stores made-up candles.
        """
        if interval not in OHLC_INTERVALS:
            raise ValueError(
                f"OHLC interval must be one of {OHLC_INTERVALS} minutes, got {interval!r}"
            )
        inst = self.instrument(pair)
        params: dict[str, Any] = {"pair": inst.altname, "interval": interval}
        if since is not None:
            params["since"] = int(since)
        result = self._call("OHLC", params, bucket=f"public:OHLC:{inst.key}", pair=pair)
        key, rows = self._single_pair_rows(result, inst, "OHLC")
        try:
            last = int(result["last"])
        except (KeyError, TypeError, ValueError):
            raise KrakenTransportError(
                f"Kraken OHLC for {pair!r} returned no usable 'last' cursor", code="botq:malformed"
            ) from None
        arrays = _ohlc_arrays(rows, pair)
        keep = np.ones(arrays["time"].size, bool) if keep_empty else arrays["trades"] > 0
        committed = arrays["time"] <= last * NS_PER_SECOND
        final = {k: v[committed & keep] for k, v in arrays.items()}
        forming = {k: v[~committed] for k, v in arrays.items()}
        return OHLCPage(inst.symbol, key, interval, final, forming, last)

    def trades(self, pair: str, since: str | int | None = None, count: int = 1000) -> TradesPage:
        """Up to `count` (1..1000) trades after `since` (epoch ns as str, ``"0"`` = the first)."""
        if not 1 <= int(count) <= 1000:
            raise ValueError(f"Trades count must be 1..1000, got {count!r}")
        inst = self.instrument(pair)
        params: dict[str, Any] = {"pair": inst.altname, "count": int(count)}
        if since is not None:
            params["since"] = _check_since_ns(since)
        result = self._call("Trades", params, bucket=f"public:Trades:{inst.key}", pair=pair)
        key, rows = self._single_pair_rows(result, inst, "Trades")
        last = result.get("last")
        if last is None:
            raise KrakenTransportError(
                f"Kraken Trades for {pair!r} returned no 'last' cursor", code="botq:malformed"
            )
        return _trades_page(rows, inst.symbol, key, str(last), pair)

    def iter_trades(
        self,
        pair: str,
        since: str | int = "0",
        until_ns: int | None = None,
        *,
        count: int = 1000,
        max_pages: int | None = None,
    ) -> Iterator[TradesPage]:
        """Page through Trades from `since`, following ``last``, deduplicating boundary trades.

        Stops when a page is empty, the cursor stops advancing, a trade at or after `until_ns`
        shows up (later trades are cut off and the page's cursor becomes `until_ns`), or after
        `max_pages`. Each yielded page's `last` is where to resume after storing it.
        """
        cursor = _check_since_ns(since)
        max_id = -1
        prev_keys: set[tuple[int, float, float, int]] = set()
        pages = 0
        while max_pages is None or pages < max_pages:
            raw = self.trades(pair, since=cursor, count=count)
            pages += 1
            has_ids = raw.trade_id >= 0
            fresh = np.where(has_ids, raw.trade_id > max_id, True)
            if prev_keys:
                for i in np.flatnonzero(~has_ids):
                    if _trade_key(raw, int(i)) in prev_keys:
                        fresh[i] = False
            page = raw.take(fresh)
            if has_ids.any():
                max_id = max(max_id, int(raw.trade_id[has_ids].max()))
            prev_keys = {_trade_key(raw, i) for i in range(len(raw))}
            done = len(raw) == 0 or raw.last == cursor
            if until_ns is not None and len(page) and int(page.time_ns[-1]) >= until_ns:
                page = page.take(page.time_ns < until_ns, last=str(until_ns))
                done = True
            if until_ns is not None and int(raw.last) >= until_ns:
                done = True
            yield page
            if done:
                return
            cursor = raw.last

    def ticker(self, pairs: Sequence[str] | str) -> dict[str, Ticker]:
        """Ticker for several pairs in one request, keyed by the names you passed."""
        names = [pairs] if isinstance(pairs, str) else list(pairs)
        if not names:
            raise ValueError("ticker needs at least one pair name")
        table = self.pair_table()
        wanted = {name: table.resolve(name) for name in names}
        altnames = ",".join(dict.fromkeys(inst.altname for inst in wanted.values()))
        result = self._call("Ticker", {"pair": altnames}, bucket="public", pair=", ".join(names))
        by_key: dict[str, Ticker] = {}
        for key, info in result.items():
            inst = table.by_key(key) or (table.resolve(key) if key in table else None)
            if inst is not None:
                by_key[inst.key] = _ticker(inst, key, info)
        out: dict[str, Ticker] = {}
        for name, inst in wanted.items():
            if inst.key not in by_key:
                raise KrakenAPIError(
                    f"Kraken Ticker answered without {name!r} (key {inst.key}); the pair may be "
                    "delisted: refresh the table with KrakenClient.pair_table(refresh=True)",
                    code="botq:missing-pair",
                )
            out[name] = by_key[inst.key]
        return out

    # -- private ----------------------------------------------------------------------------

    def balance(self) -> dict[str, Decimal]:
        """Balance: raw Kraken asset key (``XXBT``, ``ZUSD``, ``SOL.F``) -> amount."""
        result = self._call("Balance", {}, private=True)
        return {asset: _dec(v, f"balance of {asset}") for asset, v in result.items()}

    def balance_ex(self) -> dict[str, BalanceEntry]:
        """BalanceEx: raw asset key -> balance, holds and credit (see `BalanceEntry`)."""
        result = self._call("BalanceEx", {}, private=True)
        out: dict[str, BalanceEntry] = {}
        for asset, v in result.items():
            out[asset] = BalanceEntry(
                **{
                    f: _dec(v[f], f"{f} of {asset}")
                    for f in ("balance", "hold_trade", "credit", "credit_used")
                    if f in v
                }
            )
        return out

    # -- transport --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        bucket: str = "private",
        private: bool = False,
        pair: str | None = None,
    ) -> Any:
        """One API call with rate limiting and bounded retries; returns ``result``."""
        retries = 0
        nonce_retried = False
        cost = _PRIVATE_COST.get(method, 1) if private else 1
        while True:
            self.limiter.acquire("private" if private else bucket, cost)
            try:
                return self._once(method, params, private=private, pair=pair)
            except KrakenError as err:
                err.attempts = retries + 1 + int(nonce_retried)  # type: ignore[attr-defined]
                if isinstance(err, KrakenNonceError):
                    if nonce_retried:
                        raise
                    nonce_retried = True
                    log.warning("Kraken %s: %s; retrying once with a fresh nonce", method, err.code)
                    continue
                if not err.retryable or retries >= self.retry.retries:
                    raise
                wait = self.retry.delay(retries, self._rng, getattr(err, "retry_after", None))
                retries += 1
                log.warning(
                    "Kraken %s failed (%s); retry %d of %d in %.1f s",
                    method,
                    err.code,
                    retries,
                    self.retry.retries,
                    wait,
                )
                self._sleep(wait)

    def _once(
        self, method: str, params: Mapping[str, Any], *, private: bool, pair: str | None
    ) -> Any:
        """Send one request and unwrap Kraken's ``{"error": [...], "result": ...}`` envelope."""
        if private:
            path = f"/0/private/{method}"
            creds = self._credentials
            if creds is None:
                raise KrakenAuthError(
                    f"Kraken {method} needs API credentials: pass "
                    "KrakenClient(..., credentials=load_credentials()) after setting "
                    "BOTQ_KRAKEN_API_KEY and BOTQ_KRAKEN_API_SECRET (or $BOTQ_HOME/kraken.toml)",
                    code="botq:no-credentials",
                )
            nonce = self._nonce()
            body = encode_body({"nonce": nonce, **params})
            headers = {
                "User-Agent": USER_AGENT,
                "Content-Type": "application/x-www-form-urlencoded",
                "API-Key": creds.api_key.reveal(),
                "API-Sign": sign(path, body, nonce, creds.api_secret.reveal()),
            }
            log.debug("Kraken POST %s", path)
        else:
            path = f"/0/public/{method}"
            headers = {"User-Agent": USER_AGENT}
            log.debug("Kraken GET %s %s", path, dict(params))
        try:
            if private:
                response = self._http.post(self.base_url + path, content=body, headers=headers)
            else:
                response = self._http.get(self.base_url + path, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise KrakenTransportError(
                f"Kraken {method} timed out ({type(exc).__name__}); botq retries with backoff",
                code="botq:timeout",
            ) from None
        except httpx.TransportError as exc:
            raise KrakenTransportError(
                f"Kraken {method}: network error ({type(exc).__name__}: {exc}); check the "
                "connection to api.kraken.com",
                code="botq:network",
            ) from None
        return self._unwrap(method, response, pair)

    def _unwrap(self, method: str, response: httpx.Response, pair: str | None) -> Any:
        status = response.status_code
        if status != 200:
            retryable = status >= 500 or status in (408, 429)
            raise KrakenTransportError(
                f"Kraken {method} answered HTTP {status} (Kraken reports API errors with 200, so "
                f"this is a problem reaching it){'; botq retries' if retryable else ''}",
                code=f"http:{status}",
                retryable=retryable,
            )
        try:
            payload = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise KrakenTransportError(
                f"Kraken {method} returned malformed JSON ({len(response.content)} bytes, "
                f"starts {response.content[:40]!r}); botq retries",
                code="botq:malformed",
            ) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("error"), list):
            raise KrakenTransportError(
                f"Kraken {method} returned JSON without an 'error' list; botq retries",
                code="botq:malformed",
            )
        messages = [str(m) for m in payload["error"]]
        errors = [m for m in messages if not m.startswith("W")]
        warnings = [m for m in messages if m.startswith("W")]
        if errors:
            raise classify_error(errors, method=method, pair=pair, now=self._clock())
        for w in warnings:
            log.warning("Kraken %s warning: %s", method, w)
        if "result" not in payload:
            raise KrakenTransportError(
                f"Kraken {method} returned no 'result'; botq retries", code="botq:malformed"
            )
        return payload["result"]

    @staticmethod
    def _single_pair_rows(
        result: Mapping[str, Any], inst: Instrument, method: str
    ) -> tuple[str, list[Any]]:
        """The (key, rows) of a one-pair answer; the key is Kraken's, not the name we sent."""
        keys = [k for k in result if k != "last"]
        if inst.key in result:
            key = inst.key
        elif len(keys) == 1:
            key = keys[0]
            log.debug("Kraken %s answered %s for %s", method, key, inst.key)
        else:
            raise KrakenTransportError(
                f"Kraken {method} answer has pair keys {keys}, expected {inst.key}",
                code="botq:malformed",
            )
        rows = result[key]
        if not isinstance(rows, list):
            raise KrakenTransportError(
                f"Kraken {method} rows for {key} are not a list", code="botq:malformed"
            )
        return key, rows


def _ohlc_arrays(rows: list[Any], pair: str) -> CandleArrays:
    if not rows:
        return _empty_candles()
    try:
        return {
            "time": np.array([int(r[0]) * NS_PER_SECOND for r in rows], np.int64),
            "open": np.array([float(r[1]) for r in rows]),
            "high": np.array([float(r[2]) for r in rows]),
            "low": np.array([float(r[3]) for r in rows]),
            "close": np.array([float(r[4]) for r in rows]),
            "volume": np.array([float(r[6]) for r in rows]),
            "trades": np.array([int(r[7]) for r in rows], np.int64),
            "vwap": np.array([float(r[5]) for r in rows]),
        }
    except (IndexError, TypeError, ValueError):
        raise KrakenTransportError(
            f"Kraken OHLC rows for {pair!r} are not [time, o, h, l, c, vwap, volume, count]",
            code="botq:malformed",
        ) from None


def _trades_page(rows: list[Any], symbol: str, key: str, last: str, pair: str) -> TradesPage:
    n = len(rows)
    time_ns = np.empty(n, np.int64)
    price = np.empty(n)
    volume = np.empty(n)
    side = np.empty(n, np.int8)
    market = np.empty(n, bool)
    trade_id = np.full(n, -1, np.int64)
    try:
        for i, r in enumerate(rows):
            price[i] = float(r[0])
            volume[i] = float(r[1])
            time_ns[i] = int(Decimal(str(r[2])) * NS_PER_SECOND)
            side[i] = 1 if r[3] == "b" else -1
            market[i] = r[4] == "m"
            if len(r) > 6:
                trade_id[i] = int(r[6])
    except (IndexError, TypeError, ValueError, InvalidOperation):
        raise KrakenTransportError(
            f"Kraken Trades rows for {pair!r} are not [price, volume, time, side, type, misc, id]",
            code="botq:malformed",
        ) from None
    if not last.isdigit():
        raise KrakenTransportError(
            f"Kraken Trades cursor for {pair!r} is not digits: {last!r}", code="botq:malformed"
        )
    return TradesPage(symbol, key, time_ns, price, volume, side, market, trade_id, last)


def _trade_key(page: TradesPage, i: int) -> tuple[int, float, float, int]:
    return (
        int(page.time_ns[i]),
        float(page.price[i]),
        float(page.volume[i]),
        int(page.side[i]),
    )


def _ticker(inst: Instrument, key: str, info: Mapping[str, Any]) -> Ticker:
    try:
        return Ticker(
            symbol=inst.symbol,
            key=key,
            ask=_dec(info["a"][0], "ask"),
            bid=_dec(info["b"][0], "bid"),
            last=_dec(info["c"][0], "last"),
            last_volume=_dec(info["c"][1], "last volume"),
            open_today=_dec(info["o"], "open"),
            volume_today=_dec(info["v"][0], "volume"),
            volume_24h=_dec(info["v"][1], "volume"),
            vwap_today=_dec(info["p"][0], "vwap"),
            vwap_24h=_dec(info["p"][1], "vwap"),
            trades_today=int(info["t"][0]),
            trades_24h=int(info["t"][1]),
            low_today=_dec(info["l"][0], "low"),
            low_24h=_dec(info["l"][1], "low"),
            high_today=_dec(info["h"][0], "high"),
            high_24h=_dec(info["h"][1], "high"),
        )
    except (KeyError, IndexError, TypeError, ValueError):
        raise KrakenTransportError(
            f"Kraken Ticker entry for {key} lacks a documented field (a b c v p t l h o)",
            code="botq:malformed",
        ) from None
