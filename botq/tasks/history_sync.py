"""HistorySync: candles of one pair into the store.

Payload: {"pair": "BTC/USD", "source": "kraken" | "synthetic" | "file", "since"?, "until"?,
"path"? (for "file")}. Result: pair, candles added, the stored range and missing minutes.
"""

from __future__ import annotations

from typing import Any

from botq.errors import PayloadError
from botq.market.sync import SOURCES, sync_history
from botq.queue.handlers import Context, handler
from botq.tasks._payload import choice, optional_str, optional_time, required_str


@handler("HistorySync", builtin=True)
def history_sync(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    pair = required_str(payload, "pair", "BTC/USD")
    source = choice(payload, "source", SOURCES, "kraken")
    path = optional_str(payload, "path")
    if source == "file" and not path:
        raise PayloadError("path", "required with source 'file': a CSV or Parquet file path")
    result = sync_history(
        ctx.db,
        pair,
        source=source,
        since=optional_time(payload, "since"),
        until=optional_time(payload, "until"),
        path=path,
        progress=ctx.progress,
        should_stop=lambda: ctx.cancelled,
    )
    if result.candles_added or not result.stopped_early:
        ctx.db.activity.log("sync", "info", "sync completed", result.as_dict())
    return result.as_dict()
