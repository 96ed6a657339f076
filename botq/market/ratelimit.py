"""Kraken's request budget shared by every process that uses one botq database.

Kraken limits public calls per IP ("one call per second or less stays within the limits"),
and private calls per API key. A `RateLimiter` object only knows about its own process, so
two worker processes syncing different pairs would each spend the whole budget. `PgRateLimiter`
keeps the buckets in PostgreSQL instead (table botq_rate_buckets, migration 0005): taking a
slot is one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` on the database clock, which
refills the bucket for the time elapsed, subtracts the cost and tells the caller how long to
wait. The row lock serialises concurrent reservations; nobody holds it while sleeping, and a
process that dies after reserving only wastes its slot.

Why PostgreSQL rather than a file lock under BOTQ_HOME: workers already share the database
(also across machines behind one NAT address, where a file lock would not reach), the database
clock is one clock for all of them, and the cost (~1 ms per call) is small against Kraken's
one second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botq.market.kraken import RateLimiter

if TYPE_CHECKING:
    from botq.db.database import Database

# Refill for the time since the last reservation, take `cost`, return the balance. Tokens may
# go negative: that is a slot reserved ahead, -tokens / rate seconds from now.
RESERVE = """
INSERT INTO botq_rate_buckets AS b (name, tokens, updated_at)
VALUES (%(name)s, %(capacity)s - %(cost)s, clock_timestamp())
ON CONFLICT (name) DO UPDATE SET
    tokens = least(
        %(capacity)s,
        b.tokens + greatest(extract(epoch FROM EXCLUDED.updated_at - b.updated_at), 0) * %(rate)s
    ) - %(cost)s,
    updated_at = greatest(EXCLUDED.updated_at, b.updated_at)
RETURNING tokens
"""
PUBLIC_BUCKET = "kraken:public"
PRIVATE_BUCKET = "kraken:private"


class PgRateLimiter(RateLimiter):
    """A `RateLimiter` whose buckets live in PostgreSQL, shared by all processes using `db`.

    All public calls share one bucket (Kraken's public limit is per IP, whatever the pair);
    private calls share another. Rates and bursts are `RateLimiter`'s (public 1/s, burst 1;
    private per the Starter tier, with a margin).
    """

    def __init__(self, db: Database, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._db = db

    def reserve(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` from the shared bucket for `key`; return how long the caller must wait."""
        private = key.startswith("private")
        capacity, rate = self.private if private else self.public
        params = {
            "name": PRIVATE_BUCKET if private else PUBLIC_BUCKET,
            "capacity": float(capacity),
            "cost": float(cost),
            "rate": float(rate),
        }
        with self._db.connection() as conn:
            row = conn.execute(RESERVE, params).fetchone()
        tokens = float(row[0]) if row is not None else 0.0
        return max(0.0, -tokens / rate)

    def __repr__(self) -> str:
        return f"Pg{super().__repr__()}"
