"""Handler registration (`@botq.handler`), retry policy, and the context a handler receives."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING, Any

from botq.errors import QueueError

if TYPE_CHECKING:
    from botq.db.database import Database
    from botq.queue.model import Task

HandlerFn = Callable[["Context", dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: attempt k waits base_s·2^(k-1), capped at cap_s, times 1±jitter.

    A jitter below 1/3 keeps every wait longer than the one before (until the cap).
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise QueueError("RetryPolicy needs 0 < base_s <= cap_s")
        if not 0 <= self.jitter < 1 / 3:
            raise QueueError("RetryPolicy.jitter must be in [0, 1/3) so waits keep growing")

    def delay_s(self, attempt: int, rng: Random | None = None) -> float:
        """The wait before the retry that follows failed attempt number `attempt` (1-based)."""
        raw = min(self.cap_s, self.base_s * 2.0 ** max(attempt - 1, 0))
        u = (rng or _rng).uniform(-self.jitter, self.jitter)
        return raw * (1.0 + u)


_rng = Random()


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    fn: HandlerFn
    retry: RetryPolicy | None = None


_registry: dict[str, Handler] = {}


def handler(
    name: str, *, retry: RetryPolicy | None = None, builtin: bool = False
) -> Callable[[HandlerFn], HandlerFn]:
    """Register `fn(ctx, payload) -> dict | None` as the handler of task type `name`.

    Registering a name again replaces the earlier handler (re-running a notebook cell);
    botq's built-in handlers (`builtin=True`) never replace one of yours.
    """
    if not isinstance(name, str) or not name:
        raise QueueError("@botq.handler needs the task type name, e.g. @botq.handler('Backtest')")

    def register(fn: HandlerFn) -> HandlerFn:
        if not (builtin and name in _registry):
            _registry[name] = Handler(name, fn, retry)
        return fn

    return register


# botq's own task types, imported on first use so that a worker starts fast.
BUILTIN_MODULES = {
    "HistorySync": "botq.tasks.history_sync",
    "IndicatorCalc": "botq.tasks.indicator_calc",
    "Backtest": "botq.tasks.backtest",
    "BulkBacktest": "botq.tasks.backtest",
    "BacktestChunk": "botq.tasks.backtest",
}


def lookup(name: str) -> Handler | None:
    """The handler for task type `name`: yours, else botq's built-in (imported now), else None."""
    found = _registry.get(name)
    if found is None and name in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[name])  # registers it
        found = _registry.get(name)
    return found


def registered() -> list[str]:
    """The task types this process can run: registered handlers and botq's built-ins."""
    return sorted(set(_registry) | set(BUILTIN_MODULES))


class Context:
    """What a running handler gets: its task, the database, progress and cancellation."""

    __slots__ = ("task", "db", "_cancel", "_progress", "_started", "_wait")

    def __init__(self, task: Task, db: Database) -> None:
        self.task = task
        self.db = db
        self._cancel = threading.Event()
        self._progress: tuple[float, str] | None = None
        self._started = time.monotonic()
        self._wait = False

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled (or the worker lost its lease): stop soon."""
        return self._cancel.is_set()

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1) and a short message; written to the database in batches."""
        self._progress = (min(max(float(fraction), 0.0), 1.0), str(message)[:500])

    def wait_for_children(self) -> None:
        """Finish this task only when its child tasks (enqueued with parent_id=ctx.task.id)
        have all finished; its progress then follows theirs.

        The handler returns as usual and frees its worker thread; the task stays `running`,
        held by no worker, and completes (its result extended with `children`,
        `children_failed` and `children_cancelled`) when the last child finishes. Cancelling
        it cancels the children.
        """
        self._wait = True

    def _take_progress(self) -> tuple[float, str] | None:
        value, self._progress = self._progress, None
        return value
