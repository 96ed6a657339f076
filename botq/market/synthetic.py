"""Deterministic, realistic synthetic 1-minute candles, so botq works offline and in tests.

The model, per minute t (log returns):

* a slowly mean-reverting trend (an AR(1) drift that carries ~30% of the long-run variance),
  so there are rising and falling stretches, plus the constant `drift`;
* GARCH(1,1) noise with Student-t(5) shocks (fat tails, volatility clustering), scaled so the
  long-run annualised volatility is about `vol`;
* open = previous close; high/low extend beyond max/min(open, close) by wicks that scale with the
  current volatility; vwap lies inside [low, high] near the candle body;
* volume > 0, larger when volatility and |return| are large, with a daily (UTC) cycle; trade
  count ~ 1 + Poisson(proportional to volume).

The same (pair, start, periods, seed, parameters) always gives the same arrays, on any machine
(NumPy's PCG64 generator seeded from the seed and a CRC32 of the pair name).
"""

from __future__ import annotations

import math
import zlib
from datetime import UTC, datetime

import numpy as np
from numba import njit

from botq.market.candles import Candles
from botq.market.trades_nb import CANDLE_FIELDS, NS_PER_MINUTE

__all__ = ["synthetic"]

MINUTES_PER_YEAR = 525_600
_DEFAULT_PRICES = {"BTC": 30_000.0, "XBT": 30_000.0, "ETH": 2_000.0, "SOL": 100.0}
_GARCH_ALPHA = 0.08
_GARCH_BETA = 0.90
_TREND_SHARE = 0.3  # fraction of long-run variance carried by the slow trend
_TREND_KAPPA = 1.0 / 720.0  # trend mean reversion per minute (~12 h memory)
_T_DF = 5.0
_BLOCK = 1 << 16  # random draws are made per block of this many minutes


def synthetic(
    pair: str,
    start: datetime | str | int | np.datetime64,
    periods: int,
    seed: int = 0,
    *,
    price: float | None = None,
    drift: float = 0.0,
    vol: float = 0.6,
) -> Candles:
    """`periods` deterministic 1-minute candles for `pair` from `start` (UTC, floored to a minute).

    `price` is the first open (default: a plausible level for the base asset, else 100);
    `drift` the annual log drift (0.1 = +10 %/year); `vol` the annualised volatility (0.6 =
    60 %).
    """
    if isinstance(periods, bool) or not isinstance(periods, (int, np.integer)) or periods < 0:
        raise ValueError(f"periods must be an int >= 0, got {periods!r}")
    if not isinstance(pair, str) or not pair.strip():
        raise ValueError(f"pair must be a non-empty name like 'BTC/USD', got {pair!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    p0 = _default_price(pair) if price is None else float(price)
    if not (math.isfinite(p0) and p0 > 0):
        raise ValueError(f"price must be a positive number, got {price!r}")
    if not (math.isfinite(vol) and vol >= 0):
        raise ValueError(f"vol must be a finite number >= 0 (annualised), got {vol!r}")
    if not math.isfinite(drift):
        raise ValueError(f"drift must be finite (annual log drift), got {drift!r}")
    n = int(periods)
    start_ns = _start_ns(start)
    time = start_ns + np.arange(n, dtype=np.int64) * NS_PER_MINUTE

    shocks, trend_noise, wick_hi, wick_lo, vol_noise, count_noise = _draws(seed, pair, n)

    sigma = vol / math.sqrt(MINUTES_PER_YEAR)
    noise_var = (1.0 - _TREND_SHARE) * sigma * sigma
    # The integrated AR(1) trend adds trend_sd**2 / kappa**2 of variance per minute in the long run.
    trend_sd = sigma * _TREND_KAPPA * math.sqrt(_TREND_SHARE)
    first_minute_of_day = (start_ns // NS_PER_MINUTE) % 1440
    base_volume = 50_000.0 / p0  # about $50k traded per minute on average

    o, h, lo, c, v, trades, vw = _generate(
        shocks,
        trend_noise,
        wick_hi,
        wick_lo,
        vol_noise,
        count_noise,
        first_minute_of_day,
        p0,
        drift / MINUTES_PER_YEAR,
        noise_var,
        trend_sd,
        _TREND_KAPPA,
        _GARCH_ALPHA,
        _GARCH_BETA,
        base_volume,
    )
    arrays = (time, o, h, lo, c, v, trades, vw)
    return Candles.from_arrays(pair, dict(zip(CANDLE_FIELDS, arrays, strict=True)))


def _draws(seed: int, pair: str, n: int) -> tuple[np.ndarray, ...]:
    """The random inputs, drawn in fixed-size blocks each seeded by (seed, pair, block).

    Blocks make a shorter series an exact prefix of a longer one with the same seed.
    """
    blocks = []
    for b in range(-(-n // _BLOCK)):
        rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([seed, _pair_code(pair), b]))
        )
        blocks.append(
            (
                rng.standard_t(_T_DF, _BLOCK) * math.sqrt((_T_DF - 2.0) / _T_DF),
                rng.standard_normal(_BLOCK),
                rng.exponential(1.0, _BLOCK),
                rng.exponential(1.0, _BLOCK),
                rng.standard_normal(_BLOCK),
                rng.standard_normal(_BLOCK),
            )
        )
    if not blocks:
        return tuple(np.empty(0) for _ in range(6))
    return tuple(np.concatenate([blk[i] for blk in blocks])[:n] for i in range(6))


@njit(cache=True, nogil=True)
def _generate(
    shocks,
    trend_noise,
    wick_hi,
    wick_lo,
    vol_noise,
    count_noise,
    first_minute_of_day,
    p0,
    mu,
    noise_var,
    trend_sd,
    kappa,
    alpha,
    beta,
    base_volume,
):
    """The sequential part: GARCH variance, trend, prices, wicks, volume, trades, vwap."""
    n = shocks.size
    o = np.empty(n)
    h = np.empty(n)
    lo = np.empty(n)
    c = np.empty(n)
    v = np.empty(n)
    trades = np.empty(n, np.int64)
    vw = np.empty(n)
    omega = noise_var * (1.0 - alpha - beta)
    var = noise_var
    trend = 0.0
    prev = p0
    ref_sd = math.sqrt(noise_var)
    for t in range(n):
        sd = math.sqrt(var)
        eps = sd * shocks[t]
        trend = trend * (1.0 - kappa) + trend_sd * trend_noise[t]
        op = prev
        cl = op * math.exp(mu + trend + eps)
        top = max(op, cl)
        bot = min(op, cl)
        hi = top * math.exp(0.6 * sd * wick_hi[t])
        low = bot * math.exp(-0.6 * sd * wick_lo[t])
        o[t] = op
        c[t] = cl
        h[t] = hi
        lo[t] = low
        # vwap: near the body, pulled towards the longer wick (X / (X + Y) of two
        # exponentials is uniform on (0, 1)), always inside [low, high].
        pull = wick_hi[t] / (wick_hi[t] + wick_lo[t]) - 0.5 if wick_hi[t] + wick_lo[t] > 0 else 0.0
        x = 0.5 * (op + cl) + pull * (hi - low) * 0.8
        vw[t] = min(hi, max(low, x))
        minute_of_day = (first_minute_of_day + t) % 1440
        season = 1.0 + 0.35 * math.sin(2.0 * math.pi * (minute_of_day / 1440.0 - 0.35))
        activity = (sd / ref_sd if ref_sd > 0.0 else 1.0) * (0.4 + 0.6 * abs(shocks[t]))
        vol_t = base_volume * season * activity * math.exp(0.35 * vol_noise[t] - 0.06)
        v[t] = vol_t
        # trade count: ~ 1 + Poisson(25 x relative volume), normal approximation
        lam = 25.0 * vol_t / base_volume
        trades[t] = 1 + max(0, int(round(lam + math.sqrt(lam) * count_noise[t])))
        var = omega + alpha * eps * eps + beta * var
        prev = cl
    return o, h, lo, c, v, trades, vw


def _pair_code(pair: str) -> int:
    return zlib.crc32(pair.strip().upper().encode())


def _default_price(pair: str) -> float:
    base = pair.strip().upper().replace("-", "/").split("/")[0]
    for name, level in _DEFAULT_PRICES.items():
        if base == name or (("/" not in pair) and base.startswith(name)):
            return level
    return 100.0


def _start_ns(start: datetime | str | int | np.datetime64) -> int:
    """Epoch-ns of `start`, floored to the minute; naive datetimes and strings mean UTC."""
    if isinstance(start, bool):
        raise ValueError(f"start must be a datetime, ISO string or epoch-ns int, got {start!r}")
    if isinstance(start, (int, np.integer)):
        ns = int(start)
        if abs(ns) < 10**14:
            raise ValueError(
                f"start={start!r} looks like epoch seconds or milliseconds; an int start is "
                "epoch nanoseconds (multiply by 1e9) — or pass a datetime / ISO string"
            )
    elif isinstance(start, datetime):
        dt = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
        ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    elif isinstance(start, np.datetime64):
        ns = int(start.astype("datetime64[ns]").astype(np.int64))
    elif isinstance(start, str):
        try:
            return _start_ns(datetime.fromisoformat(start.strip().replace("Z", "+00:00")))
        except ValueError:
            raise ValueError(
                f"start={start!r} is not an ISO date/time like '2024-01-01' or "
                "'2024-01-01T00:00:00Z'"
            ) from None
    else:
        raise ValueError(
            f"start must be a datetime, ISO string, numpy datetime64 or epoch-ns int, got "
            f"{type(start).__name__}"
        )
    return ns - ns % NS_PER_MINUTE
