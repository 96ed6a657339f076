"""A fake Kraken at the HTTP transport: AssetPairs and Trades answered in Kraken's JSON format."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import numpy as np

from botq.market.kraken import KrakenClient, RateLimiter

ASSET_PAIRS = {
    "error": [],
    "result": {
        "XXBTZUSD": {
            "altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD",
            "pair_decimals": 1, "lot_decimals": 8, "ordermin": "0.00005", "tick_size": "0.1",
            "status": "online",
        },
        "XETHZUSD": {
            "altname": "ETHUSD", "wsname": "ETH/USD", "base": "XETH", "quote": "ZUSD",
            "pair_decimals": 2, "lot_decimals": 8, "ordermin": "0.002", "tick_size": "0.01",
            "status": "online",
        },
    },
}  # fmt: skip
KEYS = {info["altname"]: key for key, info in ASSET_PAIRS["result"].items()}


class FakeKraken:
    """Serves a fixed trade history (the same for every pair), 1,000 trades per Trades call,
    like Kraken pages them; `times` keeps when each request arrived (monotonic seconds)."""

    def __init__(self, start_s: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        gaps = rng.exponential(4.0, n)  # a trade every ~4 s on average
        self.time_ns = (start_s * 10**9 + np.cumsum(gaps * 1e9)).astype(np.int64)
        self.price = np.round(37000 * np.exp(np.cumsum(rng.normal(0, 2e-4, n))), 1)
        self.volume = np.round(rng.exponential(0.05, n), 8)
        self.calls: list[str] = []
        self.times: list[float] = []
        self.now_ns = int(self.time_ns[-1]) + 1  # what OHLC treats as now

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.times.append(time.monotonic())
        path = request.url.path
        self.calls.append(path)
        if path.endswith("/AssetPairs"):
            return httpx.Response(200, json=ASSET_PAIRS)
        if path.endswith("/Trades"):
            since = int(request.url.params.get("since", "0"))
            i = int(np.searchsorted(self.time_ns, since, "left"))
            rows = []
            for j in range(i, min(i + 1000, len(self.time_ns))):
                t = Decimal(int(self.time_ns[j])) / Decimal(10**9)
                rows.append(
                    [
                        f"{self.price[j]:.1f}",
                        f"{self.volume[j]:.8f}",
                        float(t),
                        "b",
                        "l",
                        "",
                        1000 + j,
                    ]
                )
            last = str(int(self.time_ns[i + len(rows) - 1])) if rows else str(since)
            key = KEYS[request.url.params.get("pair", "XBTUSD")]
            body = {"error": [], "result": {key: rows, "last": last}}
            return httpx.Response(200, content=json.dumps(body).encode())
        if path.endswith("/OHLC"):
            return self._ohlc(request)
        return httpx.Response(404)

    def _ohlc(self, request: httpx.Request) -> httpx.Response:
        """Kraken's OHLC at `self.now_ns`: the latest 720 minutes, empty ones as flat rows,
        the forming minute last, `last` = the last committed minute (seconds)."""
        from botq.market.trades_nb import trades_to_candles

        now_ns = self.now_ns
        forming = now_ns - now_ns % 60_000_000_000
        seen = self.time_ns < now_ns
        built = trades_to_candles(self.time_ns[seen], self.price[seen], self.volume[seen])
        since_s = int(request.url.params.get("since", "0"))
        rows: list[list[object]] = []
        close = float(self.price[0])
        for minute_ns in range(forming - 719 * 60_000_000_000, forming + 1, 60_000_000_000):
            i = int(np.searchsorted(built["time"], minute_ns))
            if i < len(built["time"]) and built["time"][i] == minute_ns:
                o, h, lo, c = (float(built[k][i]) for k in ("open", "high", "low", "close"))
                vwap, vol = float(built["vwap"][i]), float(built["volume"][i])
                count = int(built["trades"][i])
                close = c
            else:
                o = h = lo = c = close
                vwap, vol, count = 0.0, 0.0, 0
            if minute_ns // 10**9 > since_s:
                row = [minute_ns // 10**9, *(repr(v) for v in (o, h, lo, c, vwap, vol)), count]
                rows.append(row)
        last = forming // 10**9 - 60
        key = KEYS[request.url.params.get("pair", "XBTUSD")]
        body = {"error": [], "result": {key: rows, "last": last}}
        return httpx.Response(200, content=json.dumps(body).encode())

    def client(self, limiter: RateLimiter | None = None) -> KrakenClient:
        """A client on this fake; no rate limit unless `limiter` is given."""
        limiter = limiter or RateLimiter(public_rate=1e6, public_burst=1e6)
        return KrakenClient(
            httpx.Client(transport=httpx.MockTransport(self.handler)),
            limiter=limiter,
            sleep=lambda s: None,
        )
