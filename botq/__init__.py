"""botq: a Jupyter-centric research toolkit for crypto trading strategies.

import botq
db = botq.connect()                 # local PostgreSQL, or $BOTQ_DATABASE_URL
@botq.handler("Hello")
def hello(ctx, payload): return {"greeting": f"hello {payload['name']}"}
botq.Worker(db).start()             # background threads: the cell returns at once
task = db.queue.wait(db.queue.enqueue("Hello", {"name": "world"}))
"""

from __future__ import annotations

from botq import _kernel_cache
from botq._memory import keep_freed_memory
from botq.db.database import Database, connect
from botq.errors import (
    BotqError,
    ConfigError,
    KrakenError,
    MarketDataError,
    PayloadError,
    Problem,
    QueueError,
    StrategyError,
)
from botq.queue.handlers import Context, RetryPolicy, handler
from botq.queue.model import Priority, Status, Task
from botq.queue.scheduler import every, unschedule
from botq.queue.worker import Worker

__version__ = "0.1.0"

# numba loads a kernel's cached code at its first call, never at import: this runs in time
_kernel_cache.refresh()

__all__ = [
    "BotqError",
    "ConfigError",
    "Context",
    "Database",
    "KrakenError",
    "MarketDataError",
    "PayloadError",
    "Priority",
    "Problem",
    "QueueError",
    "RetryPolicy",
    "Status",
    "StrategyError",
    "Task",
    "Worker",
    "connect",
    "every",
    "handler",
    "keep_freed_memory",
    "unschedule",
]
