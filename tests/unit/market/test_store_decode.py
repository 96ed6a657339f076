"""Decoding the binary COPY stream of packed day rows, however PostgreSQL splits its messages."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from botq.errors import MarketDataError
from botq.market.store import _HEADER, _TRAILER, PG_EPOCH_US, decode_days
from botq.market.synthetic import synthetic

COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap")


def day_row(total: int, time_ns: np.ndarray, cols: dict[str, np.ndarray]) -> bytes:
    """One day row as COPY BINARY writes it: total, n, then eight big-endian bytea fields."""
    fields = [((time_ns // 1000) - PG_EPOCH_US).astype(">i8").tobytes()]
    fields += [cols[c].astype(">i4" if c == "trades" else ">f8").tobytes() for c in COLUMNS[1:]]
    out = struct.pack(">hiqii", 10, 8, total, 4, len(time_ns))
    return out + b"".join(struct.pack(">i", len(f)) + f for f in fields)


def test_days_decode_whether_header_and_trailer_come_alone_or_with_rows() -> None:
    candles = synthetic("BTC/USD", "2026-01-01 23:00", 200, seed=1)
    a, b = candles.between(None, candles.time[60]), candles.between(candles.time[60], None)
    rows = [day_row(len(candles), part.time, part.arrays()) for part in (a, b)]
    for stream in (
        [_HEADER, rows[0], rows[1], _TRAILER],
        [_HEADER + rows[0], memoryview(rows[1] + _TRAILER)],
    ):
        got = decode_days(stream)
        for name in COLUMNS:
            np.testing.assert_array_equal(got[name], candles[name], err_msg=name)
            assert got[name].dtype == candles[name].dtype and got[name].flags.writeable


def test_no_days_give_empty_columns() -> None:
    got = decode_days([_HEADER, _TRAILER])
    assert set(got) == set(COLUMNS) and all(len(v) == 0 for v in got.values())


def test_a_row_of_another_shape_is_refused() -> None:
    with pytest.raises(MarketDataError, match="3 fields"):
        decode_days([_HEADER + struct.pack(">h", 3)])
