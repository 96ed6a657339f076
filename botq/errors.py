"""The botq exception tree.

    BotqError
    ├── ConfigError          bad settings: database URL, BOTQ_HOME, a local server that won't start
    ├── QueueError           a queue call that cannot be done (unknown task id, bad priority, ...)
    │   └── PayloadError     a handler rejects its payload: the task fails without retries
    ├── StrategyError        a strategy or indicator name that does not validate (carries .problems)
    └── MarketDataError      candles missing or malformed
        └── KrakenError      an exchange error; .retryable says whether waiting helps

Every message names the bad field and the fix. `retryable` tells the queue whether running the
task again can help: a task whose handler raises an error with `retryable = False` fails at
once instead of using up its retries.
"""

from __future__ import annotations

from dataclasses import dataclass


class BotqError(Exception):
    """Base class of every error botq raises on purpose."""

    retryable: bool = True


class ConfigError(BotqError):
    """A setting (database URL, home directory, local server) is wrong or unusable."""


class QueueError(BotqError):
    """A queue operation cannot be carried out as asked."""


class PayloadError(QueueError):
    """A handler rejects its task's payload; the task fails at once, without retries."""

    retryable = False

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"payload field {field!r}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem: a code, the path of the bad field, and what to do."""

    code: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"[{self.code}] {where}{self.message}"


class StrategyError(BotqError):
    """A strategy, template or indicator name that does not validate; carries every problem."""

    retryable = False

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems: list[Problem] = [problems] if isinstance(problems, Problem) else problems
        super().__init__("; ".join(str(p) for p in self.problems))

    @property
    def code(self) -> str:
        """The code of the first problem (convenient when there is only one)."""
        return self.problems[0].code if self.problems else ""


class MarketDataError(BotqError):
    """Candles are missing, malformed, or cannot be fetched."""

    retryable = False


class KrakenError(MarketDataError):
    """An error reported by Kraken or its transport; `retryable` says whether waiting helps."""

    def __init__(self, message: str, *, retryable: bool = False, code: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
