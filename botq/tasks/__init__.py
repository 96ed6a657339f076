"""The built-in task handlers: where the queue meets the domain code.

Importing this package registers them (a Worker does it on first use):
HistorySync (candles into the store).
"""

from __future__ import annotations

from botq.tasks import history_sync

__all__ = ["history_sync"]
