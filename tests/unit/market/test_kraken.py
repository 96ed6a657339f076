"""KrakenClient against httpx.MockTransport answers in Kraken's documented JSON format."""

from __future__ import annotations

import base64
import logging
import threading
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import numpy as np
import pytest

from botq.errors import KrakenError, MarketDataError
from botq.market.credentials import KrakenCredentials
from botq.market.kraken import (
    BalanceEntry,
    KrakenAPIError,
    KrakenAuthError,
    KrakenClient,
    KrakenInvalidRequest,
    KrakenNonceError,
    KrakenRateLimited,
    KrakenTransportError,
    KrakenUnavailable,
    KrakenUnknownPair,
    PairTable,
    RateLimiter,
    RetryPolicy,
    classify_error,
    default_http_client,
)
from botq.market.signing import NonceGenerator, sign
from botq.market.trades_nb import CANDLE_FIELDS

NS = 1_000_000_000
API_KEY = "PUBLICkeyPUBLICkeyPUBLICkeyPUBLICkeyPUBLICkeyPUBLICkey0042"
API_SECRET = base64.b64encode(b"super-secret-private-key-bytes-for-tests-only-0123456789").decode()

# --- fixtures in Kraken's documented format (shared/reference/kraken-api.md) ------------------

ASSET_PAIRS = {
    "error": [],
    "result": {
        "XXBTZUSD": {
            "altname": "XBTUSD", "wsname": "XBT/USD", "aclass_base": "currency", "base": "XXBT",
            "aclass_quote": "currency", "quote": "ZUSD", "lot": "unit", "cost_decimals": 5,
            "pair_decimals": 1, "lot_decimals": 8, "lot_multiplier": 1,
            "leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5],
            "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]],
            "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
            "ordermin": "0.00005", "costmin": "0.5", "tick_size": "0.1", "status": "online",
        },
        "XETHZUSD": {
            "altname": "ETHUSD", "wsname": "ETH/USD", "base": "XETH", "quote": "ZUSD",
            "pair_decimals": 2, "lot_decimals": 8, "ordermin": "0.002", "tick_size": "0.01",
            "status": "online",
        },
        "SOLUSD": {
            "altname": "SOLUSD", "wsname": "SOL/USD", "aclass_base": "currency", "base": "SOL",
            "aclass_quote": "currency", "quote": "ZUSD", "lot": "unit", "cost_decimals": 5,
            "pair_decimals": 2, "lot_decimals": 8, "lot_multiplier": 1,
            "leverage_buy": [], "leverage_sell": [], "fees": [[0, 0.4]],
            "fees_maker": [[0, 0.25]], "fee_volume_currency": "ZUSD", "margin_call": 80,
            "margin_stop": 40, "ordermin": "0.02", "costmin": "0.5", "tick_size": "0.01",
            "status": "online",
        },
        "XDGUSD": {"altname": "XDGUSD", "wsname": "XDG/USD", "base": "XXDG", "quote": "ZUSD"},
    },
}  # fmt: skip

OHLC_1 = {
    "error": [],
    "result": {
        "XXBTZUSD": [
            [1700000040, "37010.0", "37012.5", "37001.1", "37005.0", "37006.3", "1.23456789", 14],
            [1700000100, "37005.0", "37005.0", "37005.0", "37005.0", "0.0", "0.00000000", 0],
            [1700000160, "37005.0", "37020.0", "37004.9", "37019.9", "37012.7", "0.50000000", 6],
        ],
        "last": 1700000100,
    },
}
OHLC_2 = {  # the poll after OHLC_1, with since=1700000100
    "error": [],
    "result": {
        "XXBTZUSD": [
            [1700000160, "37005.0", "37021.0", "37004.9", "37020.0", "37013.0", "0.70000000", 8],
            [1700000220, "37020.0", "37030.0", "37018.0", "37025.0", "37024.0", "0.10000000", 2],
        ],
        "last": 1700000160,
    },
}

TRADES_1 = {
    "error": [],
    "result": {
        "XXBTZUSD": [
            ["37005.00000", "0.01000000", 1700000041.1234567, "b", "m", "", 65000001],
            ["37004.90000", "0.25000000", 1700000059.9001, "s", "l", "", 65000002],
        ],
        "last": "1700000059900100000",
    },
}
TRADES_2 = {  # boundary trade 65000002 repeats
    "error": [],
    "result": {
        "XXBTZUSD": [
            ["37004.90000", "0.25000000", 1700000059.9001, "s", "l", "", 65000002],
            ["37010.00000", "0.50000000", 1700000061.5, "b", "l", "", 65000003],
            ["37011.00000", "0.10000000", 1700000125.25, "b", "m", "", 65000004],
        ],
        "last": "1700000125250000000",
    },
}
TRADES_END = {"error": [], "result": {"XXBTZUSD": [], "last": "1700000125250000000"}}

TICKER = {
    "error": [],
    "result": {
        "XXBTZUSD": {
            "a": ["37010.10000", "1", "1.000"], "b": ["37010.00000", "2", "2.000"],
            "c": ["37010.00000", "0.00150000"], "v": ["1523.87600000", "3011.11200000"],
            "p": ["36950.12000", "36890.55000"], "t": [21034, 43211],
            "l": ["36500.00000", "36400.00000"], "h": ["37100.00000", "37150.00000"],
            "o": "36800.00000",
        },
        "SOLUSD": {
            "a": ["101.10", "10", "10.000"], "b": ["101.00", "5", "5.000"],
            "c": ["101.05", "3.2"], "v": ["5000.1", "9000.2"], "p": ["100.5", "100.2"],
            "t": [900, 1800], "l": ["99.0", "98.5"], "h": ["102.0", "102.5"], "o": "100.0",
        },
    },
}  # fmt: skip

BALANCE = {
    "error": [],
    "result": {"ZUSD": "2970.1729", "XXBT": "0.0123456789", "SOL.F": "12.5000000000"},
}
BALANCE_EX = {
    "error": [],
    "result": {
        "ZUSD": {"balance": "2970.1729", "hold_trade": "250.0000"},
        "XXBT": {
            "balance": "0.0123456789",
            "hold_trade": "0.0000000000",
            "credit": "0.0000000000",
            "credit_used": "0.0000000000",
        },
    },
}


def err(*messages: str) -> dict[str, Any]:
    return {"error": list(messages)}


# --- a fake Kraken --------------------------------------------------------------------------

Answer = dict[str, Any] | httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeKraken:
    """Routes by method name; each method answers from a queue (the last answer repeats)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = defaultdict(list)
        self.requests: list[httpx.Request] = []
        self.add("AssetPairs", ASSET_PAIRS)

    def add(self, method: str, *answers: Answer) -> None:
        self.answers[method].extend(answers)

    def calls(self, method: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/" + method)]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        method = request.url.path.rsplit("/", 1)[-1]
        queue = self.answers[method]
        if not queue:
            return httpx.Response(404, text="no such fake method")
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):
            return item
        if callable(item):
            return item(request)
        return httpx.Response(200, json=item)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeKraken:
    return FakeKraken()


@pytest.fixture
def http(fake: FakeKraken) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(fake.handler)) as client:
        yield client


@pytest.fixture
def limiter_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backoff() -> FakeClock:
    return FakeClock(now=1_700_000_000.0)


@pytest.fixture
def client(http: httpx.Client, limiter_clock: FakeClock, backoff: FakeClock) -> KrakenClient:
    return make_client(http, limiter_clock, backoff)


def make_client(
    http: httpx.Client, limiter_clock: FakeClock, backoff: FakeClock, **kwargs: Any
) -> KrakenClient:
    limiter = RateLimiter(clock=limiter_clock, sleep=limiter_clock.sleep, jitter=0.0)
    return KrakenClient(
        http,
        limiter=limiter,
        retry=RetryPolicy(retries=3, jitter=0.0),
        sleep=backoff.sleep,
        clock=backoff,
        **kwargs,
    )


def creds() -> KrakenCredentials:
    return KrakenCredentials.from_strings(API_KEY, API_SECRET, source="test")


# --- AssetPairs -----------------------------------------------------------------------------


def test_asset_pairs_maps_every_name_to_the_internal_key(client: KrakenClient) -> None:
    table = client.pair_table()
    for name in ("BTC/USD", "XBTUSD", "XXBTZUSD", "xbt/usd", "btc-usd", "BTCUSD", "XBT/USD"):
        inst = table.resolve(name)
        assert (inst.key, inst.altname, inst.symbol) == ("XXBTZUSD", "XBTUSD", "BTC/USD")
    assert table.resolve("ETH/USD").key == "XETHZUSD"
    assert table.resolve("SOL/USD").key == "SOLUSD"
    assert table.resolve("DOGE/USD").altname == "XDGUSD"
    btc = table.resolve("BTC/USD")
    assert btc.base == "XXBT" and btc.quote == "ZUSD" and btc.tick_size == Decimal("0.1")
    assert len(table) == 4 and "SOL/USD" in table and "FOO/BAR" not in table


def test_symbol_from_base_and_quote_when_there_is_no_wsname() -> None:
    table = PairTable.from_result(
        {"XLTCZEUR": {"altname": "LTCEUR", "base": "XLTC", "quote": "ZEUR"}}
    )
    assert table.resolve("LTC/EUR").key == "XLTCZEUR"


def test_unknown_name_fails_before_any_data_request(client: KrakenClient, fake: FakeKraken) -> None:
    with pytest.raises(KrakenUnknownPair) as info:
        client.ohlc("BTC/USDX")
    e = info.value
    assert not e.retryable and isinstance(e, KrakenError) and isinstance(e, MarketDataError)
    assert "'BTC/USDX'" in str(e) and "BTC/USD" in str(e)  # names the bad pair and a fix
    assert [r.url.path for r in fake.requests] == ["/0/public/AssetPairs"]


def test_pair_table_is_loaded_once(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("OHLC", OHLC_1)
    client.ohlc("BTC/USD")
    client.ohlc("XBTUSD")
    assert len(fake.calls("AssetPairs")) == 1
    client.pair_table(refresh=True)
    assert len(fake.calls("AssetPairs")) == 2


# --- OHLC -----------------------------------------------------------------------------------


def test_ohlc_separates_the_forming_candle(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("OHLC", OHLC_1)
    page = client.ohlc("BTC/USD")
    (req,) = fake.calls("OHLC")
    assert dict(req.url.params) == {"pair": "XBTUSD", "interval": "1"}
    assert page.key == "XXBTZUSD" and page.symbol == "BTC/USD" and page.last == 1700000100
    assert set(page.final) == set(CANDLE_FIELDS) == set(page.forming)
    # the empty minute (volume 0, count 0) is not a candle; the forming one is apart
    assert page.final["time"].tolist() == [1700000040 * NS]
    assert page.final["trades"].tolist() == [14]
    assert page.final["open"][0] == 37010.0 and page.final["vwap"][0] == 37006.3
    assert page.final["volume"][0] == pytest.approx(1.23456789)
    assert page.forming["time"].tolist() == [1700000160 * NS]
    assert page.final["time"].dtype == np.int64 and page.final["trades"].dtype == np.int64


def test_ohlc_keep_empty(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("OHLC", OHLC_1)
    page = client.ohlc("XBTUSD", keep_empty=True)
    assert page.final["time"].tolist() == [1700000040 * NS, 1700000100 * NS]


def test_ohlc_polling_with_the_last_cursor(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("OHLC", OHLC_1, OHLC_2)
    first = client.ohlc("BTC/USD")
    second = client.ohlc("BTC/USD", since=first.last)
    assert fake.calls("OHLC")[1].url.params["since"] == "1700000100"
    stored = np.concatenate([first.final["time"], second.final["time"]])
    assert stored.tolist() == [1700000040 * NS, 1700000160 * NS]  # no duplicates, no gaps
    assert second.final["close"].tolist() == [37020.0]  # the committed value, not the forming one
    assert second.forming["time"].tolist() == [1700000220 * NS]
    assert not np.isin(second.forming["time"], stored).any()


def test_ohlc_rejects_an_unsupported_interval(client: KrakenClient) -> None:
    with pytest.raises(ValueError, match="interval"):
        client.ohlc("BTC/USD", interval=2)


# --- Trades ---------------------------------------------------------------------------------


def test_trades_page_parses_exact_nanoseconds(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("Trades", TRADES_1)
    page = client.trades("BTC/USD", since="1700000000000000000")
    (req,) = fake.calls("Trades")
    assert req.url.params["since"] == "1700000000000000000"
    assert req.url.params["count"] == "1000" and req.url.params["pair"] == "XBTUSD"
    assert page.time_ns.tolist() == [1700000041123456700, 1700000059900100000]
    assert page.price.tolist() == [37005.0, 37004.9]
    assert page.side.tolist() == [1, -1] and page.market.tolist() == [True, False]
    assert page.trade_id.tolist() == [65000001, 65000002]
    assert page.last == "1700000059900100000" and isinstance(page.last, str)


def test_iter_trades_follows_the_cursor_and_dedupes(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("Trades", TRADES_1, TRADES_2, TRADES_END)
    pages = list(client.iter_trades("BTC/USD", since="0"))
    sent = [r.url.params["since"] for r in fake.calls("Trades")]
    assert sent == ["0", "1700000059900100000", "1700000125250000000"]
    ids = np.concatenate([p.trade_id for p in pages]).tolist()
    assert ids == [65000001, 65000002, 65000003, 65000004]
    assert pages[-1].last == "1700000125250000000"


def test_iter_trades_stops_at_until(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("Trades", TRADES_1, TRADES_2, TRADES_END)
    until = 1700000100 * NS
    pages = list(client.iter_trades("BTC/USD", since=0, until_ns=until))
    assert len(fake.calls("Trades")) == 2
    times = np.concatenate([p.time_ns for p in pages])
    assert (times < until).all() and len(times) == 3
    assert pages[-1].last == str(until)  # resume point: nothing at/after `until` was returned


def test_iter_trades_dedupes_rows_without_trade_ids(client: KrakenClient, fake: FakeKraken) -> None:
    def six(page: dict[str, Any]) -> dict[str, Any]:
        rows = [r[:6] for r in page["result"]["XXBTZUSD"]]
        return {"error": [], "result": {"XXBTZUSD": rows, "last": page["result"]["last"]}}

    fake.add("Trades", six(TRADES_1), six(TRADES_2), six(TRADES_END))
    pages = list(client.iter_trades("XBTUSD"))
    assert sum(len(p) for p in pages) == 4
    assert (np.concatenate([p.trade_id for p in pages]) == -1).all()


def test_iter_trades_stops_when_the_cursor_stalls(client: KrakenClient, fake: FakeKraken) -> None:
    stalled = {"error": [], "result": {"XXBTZUSD": TRADES_1["result"]["XXBTZUSD"], "last": "5"}}
    fake.add("Trades", stalled)
    pages = list(client.iter_trades("XBTUSD", since="5"))
    assert len(pages) == 1 and len(fake.calls("Trades")) == 1


@pytest.mark.parametrize("since", [1.7e18, "1.7e18", "-1", "17000000000000000000000", True])
def test_trades_since_must_be_exact_digits(client: KrakenClient, since: Any) -> None:
    with pytest.raises(ValueError, match="since"):
        client.trades("BTC/USD", since=since)


# --- Ticker ---------------------------------------------------------------------------------


def test_ticker_many_pairs_in_one_request(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("Ticker", TICKER)
    got = client.ticker(["BTC/USD", "SOLUSD"])
    (req,) = fake.calls("Ticker")
    assert req.url.params["pair"] == "XBTUSD,SOLUSD"
    assert set(got) == {"BTC/USD", "SOLUSD"}
    btc = got["BTC/USD"]
    assert btc.key == "XXBTZUSD" and btc.last == Decimal("37010.00000")
    assert btc.ask == Decimal("37010.10000") and btc.bid == Decimal("37010.00000")
    assert btc.trades_24h == 43211 and btc.volume_24h == Decimal("3011.11200000")
    assert got["SOLUSD"].symbol == "SOL/USD" and got["SOLUSD"].high_24h == Decimal("102.5")


def test_ticker_missing_pair_is_an_error(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("Ticker", TICKER)
    with pytest.raises(KrakenAPIError, match="ETH/USD"):
        client.ticker(["BTC/USD", "ETH/USD"])


def test_system_status(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("SystemStatus", {"error": [], "result": {"status": "online", "timestamp": "x"}})
    assert client.system_status() == "online"


# --- errors and retries ---------------------------------------------------------------------


def test_rate_limit_then_success(
    client: KrakenClient, fake: FakeKraken, backoff: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add("OHLC", err("EGeneral:Too many requests"), err("EAPI:Rate limit exceeded"), OHLC_1)
    with caplog.at_level(logging.WARNING, logger="botq.market.kraken"):
        page = client.ohlc("BTC/USD")
    assert len(page) == 1 and len(fake.calls("OHLC")) == 3
    assert backoff.sleeps == [1.0, 2.0]  # exponential backoff, injected sleep
    assert "retry 1 of 3" in caplog.text


def test_retries_are_bounded(client: KrakenClient, fake: FakeKraken, backoff: FakeClock) -> None:
    fake.add("OHLC", err("EGeneral:Too many requests"))
    with pytest.raises(KrakenRateLimited) as info:
        client.ohlc("BTC/USD")
    assert info.value.retryable and info.value.code == "EGeneral:Too many requests"
    assert info.value.attempts == 4 and len(fake.calls("OHLC")) == 4
    assert backoff.sleeps == [1.0, 2.0, 4.0]


def test_backoff_is_capped_and_jittered() -> None:
    import random

    policy = RetryPolicy(retries=10, base=1.0, cap=60.0, jitter=0.1)
    rng = random.Random(1)
    delays = [policy.delay(i, rng) for i in range(10)]
    assert 1.0 <= delays[0] <= 1.1 and all(60.0 <= d <= 66.0 for d in delays[6:])


def test_throttled_waits_until_krakens_time(
    client: KrakenClient, fake: FakeKraken, backoff: FakeClock
) -> None:
    fake.add("OHLC", err(f"EService: Throttled: {int(backoff.now) + 7}"), OHLC_1)
    client.ohlc("BTC/USD")
    assert backoff.sleeps == [7.0]


def test_malformed_json_is_retryable(
    client: KrakenClient, fake: FakeKraken, backoff: FakeClock
) -> None:
    fake.add("OHLC", httpx.Response(200, text='{"error": [], "result": {"XXBT'))
    with pytest.raises(KrakenTransportError, match="malformed JSON") as info:
        client.ohlc("BTC/USD")
    assert info.value.retryable and info.value.code == "botq:malformed"
    assert len(fake.calls("OHLC")) == 4


def test_malformed_then_success(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add(
        "OHLC",
        httpx.Response(200, text="<html>cloudflare</html>"),
        httpx.Response(200, json={"result": {}}),  # JSON, but no error list
        OHLC_1,
    )
    assert len(client.ohlc("BTC/USD")) == 1


def test_http_5xx_is_retried_and_4xx_is_not(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("OHLC", httpx.Response(520), httpx.Response(503), OHLC_1)
    assert len(client.ohlc("BTC/USD")) == 1
    fake.add("Trades", httpx.Response(403))
    with pytest.raises(KrakenTransportError, match="HTTP 403") as info:
        client.trades("BTC/USD")
    assert not info.value.retryable and len(fake.calls("Trades")) == 1


def test_unknown_pair_from_kraken_is_not_retried(
    client: KrakenClient, fake: FakeKraken, backoff: FakeClock
) -> None:
    fake.add("OHLC", err("EQuery:Unknown asset pair"))
    with pytest.raises(KrakenUnknownPair) as info:
        client.ohlc("SOL/USD")
    e = info.value
    assert not e.retryable and e.code == "EQuery:Unknown asset pair"
    assert "'SOL/USD'" in str(e) and "pair_table" in str(e)
    assert len(fake.calls("OHLC")) == 1 and backoff.sleeps == []


def test_timeout_is_retryable(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("OHLC", httpx.ReadTimeout("read timed out"))
    with pytest.raises(KrakenTransportError, match="timed out") as info:
        client.ohlc("BTC/USD")
    assert info.value.retryable and info.value.code == "botq:timeout"
    assert len(fake.calls("OHLC")) == 4


def test_timeout_then_success(client: KrakenClient, fake: FakeKraken) -> None:
    fake.add("OHLC", httpx.ConnectTimeout("connect timed out"), httpx.ConnectError("refused"))
    fake.add("OHLC", OHLC_1)
    assert len(client.ohlc("BTC/USD")) == 1


def test_warnings_are_logged_and_the_result_kept(
    client: KrakenClient, fake: FakeKraken, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add("SystemStatus", {"error": ["WGeneral:Something"], "result": {"status": "online"}})
    with caplog.at_level(logging.WARNING, logger="botq.market.kraken"):
        assert client.system_status() == "online"
    assert "WGeneral:Something" in caplog.text


@pytest.mark.parametrize(
    ("message", "cls", "retryable"),
    [
        ("EAPI:Rate limit exceeded", KrakenRateLimited, True),
        ("EGeneral:Too many requests", KrakenRateLimited, True),
        ("EService:Unavailable", KrakenUnavailable, True),
        ("EService:Busy", KrakenUnavailable, True),
        ("EService:Deadline elapsed", KrakenUnavailable, True),
        ("EGeneral:Internal error", KrakenUnavailable, True),
        ("EDatabase:Internal error", KrakenUnavailable, True),
        ("EAPI:Invalid nonce", KrakenNonceError, True),
        ("EQuery:Unknown asset pair", KrakenUnknownPair, False),
        ("EQuery:Unknown asset", KrakenInvalidRequest, False),
        ("EGeneral:Invalid arguments:since", KrakenInvalidRequest, False),
        ("EAPI:Invalid key", KrakenAuthError, False),
        ("EAPI:Invalid signature", KrakenAuthError, False),
        ("EGeneral:Permission denied", KrakenAuthError, False),
        ("EGeneral:Temporary lockout", KrakenAuthError, False),
        ("EService:Market in cancel_only mode", KrakenAPIError, False),
        ("EOrder:Insufficient funds", KrakenAPIError, False),
    ],
)
def test_error_classification(message: str, cls: type, retryable: bool) -> None:
    e = classify_error([message], method="OHLC", pair="BTC/USD")
    assert type(e) is cls and e.retryable is retryable and e.code == message
    assert message in str(e) and "'BTC/USD'" in str(e)


def test_throttled_classification_parses_retry_after() -> None:
    e = classify_error(["EService: Throttled: 1700000030"], method="OHLC", now=1700000000.0)
    assert isinstance(e, KrakenRateLimited) and e.retry_after == 30.0


# --- private calls --------------------------------------------------------------------------


def _signed_answer(answer: dict[str, Any], seen: list[dict[str, Any]]) -> Callable:
    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        form = {k: v[0] for k, v in parse_qs(body).items()}
        seen.append({"headers": dict(request.headers), "body": body, "form": form})
        expected = sign(request.url.path, body, form["nonce"], API_SECRET)
        if request.headers.get("API-Sign") != expected or request.headers["API-Key"] != API_KEY:
            return httpx.Response(200, json=err("EAPI:Invalid signature"))
        return httpx.Response(200, json=answer)

    return handler


def test_balance_is_signed(http: httpx.Client, fake: FakeKraken, limiter_clock, backoff) -> None:
    seen: list[dict[str, Any]] = []
    fake.add("Balance", _signed_answer(BALANCE, seen))
    nonces = NonceGenerator(lambda: 1_700_000_000.0)
    client = make_client(http, limiter_clock, backoff, credentials=creds(), nonce=nonces)
    first = client.balance()
    client.balance()
    assert first == {
        "ZUSD": Decimal("2970.1729"),
        "XXBT": Decimal("0.0123456789"),
        "SOL.F": Decimal("12.5000000000"),
    }
    req = fake.calls("Balance")[0]
    assert req.method == "POST" and req.url.path == "/0/private/Balance"
    h = seen[0]["headers"]
    assert h["content-type"] == "application/x-www-form-urlencoded"
    assert h["api-key"] == API_KEY and h["user-agent"].startswith("botq/")
    assert seen[0]["body"] == "nonce=1700000000000"
    assert h["api-sign"] == sign(
        "/0/private/Balance", "nonce=1700000000000", 1700000000000, API_SECRET
    )
    assert int(seen[1]["form"]["nonce"]) > int(seen[0]["form"]["nonce"])
    assert fake.calls("AssetPairs") == []  # private calls need no pair table


def test_balance_ex(http: httpx.Client, fake: FakeKraken, limiter_clock, backoff) -> None:
    seen: list[dict[str, Any]] = []
    fake.add("BalanceEx", _signed_answer(BALANCE_EX, seen))
    client = make_client(http, limiter_clock, backoff, credentials=creds())
    got = client.balance_ex()
    assert got["ZUSD"] == BalanceEntry(Decimal("2970.1729"), Decimal("250.0000"))
    assert got["ZUSD"].available == Decimal("2720.1729")
    assert got["XXBT"].available == Decimal("0.0123456789")


def test_private_call_without_credentials(client: KrakenClient, fake: FakeKraken) -> None:
    with pytest.raises(KrakenAuthError, match="BOTQ_KRAKEN_API_KEY") as info:
        client.balance()
    assert not info.value.retryable and fake.requests == []


def test_invalid_nonce_is_retried_once_with_a_fresh_nonce(
    http: httpx.Client, fake: FakeKraken, limiter_clock, backoff
) -> None:
    fake.add("Balance", err("EAPI:Invalid nonce"), BALANCE)
    client = make_client(http, limiter_clock, backoff, credentials=creds())
    assert client.balance()["ZUSD"] == Decimal("2970.1729")
    n1, n2 = (parse_qs(r.content.decode())["nonce"][0] for r in fake.calls("Balance"))
    assert int(n2) > int(n1)
    fake.answers["Balance"] = [err("EAPI:Invalid nonce")]
    with pytest.raises(KrakenNonceError, match="own key"):
        client.balance()
    assert len(fake.calls("Balance")) == 4


def test_secrets_never_leak(
    http: httpx.Client,
    fake: FakeKraken,
    limiter_clock: FakeClock,
    backoff: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.add("Balance", err("EAPI:Invalid key"))
    fake.add("BalanceEx", httpx.ReadTimeout("timed out"))
    client = make_client(http, limiter_clock, backoff, credentials=creds())
    texts = [repr(client), str(client), repr(creds())]
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(KrakenAuthError) as auth:
            client.balance()
        with pytest.raises(KrakenTransportError) as timeout:
            client.balance_ex()
    assert len(fake.calls("Balance")) == 1  # invalid key: never retried
    assert "BOTQ_KRAKEN_API_KEY" in str(auth.value)
    for exc in (auth.value, timeout.value):
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts.append(caplog.text)
    texts += [r.getMessage() for r in caplog.records]
    assert "Kraken POST /0/private/Balance" in caplog.text  # logging did happen
    for text in texts:
        assert API_SECRET not in text and API_KEY not in text


# --- rate limiting --------------------------------------------------------------------------


def test_public_bucket_is_one_call_per_second_per_pair() -> None:
    clock = FakeClock()
    lim = RateLimiter(clock=clock, sleep=clock.sleep, jitter=0.0)
    assert [lim.reserve("public:OHLC:XXBTZUSD") for _ in range(3)] == [0.0, 1.0, 2.0]
    assert lim.reserve("public:OHLC:SOLUSD") == 0.0  # another pair has its own bucket
    clock.now += 10
    assert lim.reserve("public:OHLC:XXBTZUSD") == 0.0


def test_private_bucket_follows_the_starter_tier() -> None:
    clock = FakeClock()
    lim = RateLimiter(clock=clock, sleep=clock.sleep, jitter=0.0)
    waits = [lim.reserve("private") for _ in range(12)]
    assert waits[:10] == [0.0] * 10  # burst of 10 (Kraken max 15, kept 5 below)
    assert waits[10] == pytest.approx(1 / 0.33) and waits[11] == pytest.approx(2 / 0.33)
    pro = RateLimiter.for_tier("pro", clock=clock, jitter=0.0)
    assert pro.private == (15.0, 1.0)
    with pytest.raises(ValueError, match="starter"):
        RateLimiter.for_tier("gold")


def test_limiter_is_thread_safe() -> None:
    clock = FakeClock()  # frozen: every wait is decided by the reservations alone
    lim = RateLimiter(clock=clock, sleep=lambda s: None, jitter=0.0)
    waits: list[float] = []
    other: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def work(i: int) -> None:
        barrier.wait()
        w = lim.acquire("public:Trades:XXBTZUSD")
        o = lim.acquire(f"public:Trades:PAIR{i}")
        with lock:
            waits.append(w)
            other.append(o)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == [float(i) for i in range(16)]  # each slot taken exactly once
    assert other == [0.0] * 16


def test_client_calls_share_the_limiter(
    client: KrakenClient, fake: FakeKraken, limiter_clock: FakeClock
) -> None:
    fake.add("OHLC", OHLC_1)
    client.ohlc("BTC/USD")  # AssetPairs + OHLC(BTC): different buckets, no wait
    client.ohlc("SOL/USD")  # another pair: no wait
    assert limiter_clock.sleeps == []
    client.ohlc("BTC/USD")  # same pair within the same second: waits a second
    assert limiter_clock.sleeps == [1.0]


def test_default_http_client() -> None:
    with default_http_client(timeout=5.0) as http:
        assert http.timeout.read == 5.0 and http.headers["user-agent"].startswith("botq/")
