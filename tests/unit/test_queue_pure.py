"""Pure parts of the queue: query files, payload checks, schedules, formatting, redaction."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from botq import QueueError, RetryPolicy
from botq.cli import build_parser, format_tasks
from botq.db.database import redact
from botq.db.sql import load_queries, parse_queries
from botq.queue.model import Priority, Status, Task
from botq.queue.scheduler import PeriodicJob, due_jobs, every, periodic_jobs, unschedule
from botq.queue.taskqueue import check_payload
from botq.secrets import register_secret, scrub


def test_parse_queries_splits_named_blocks() -> None:
    text = "-- name: a\nSELECT 1;\n\n-- name: b\n-- a comment\nSELECT 2\n"
    assert parse_queries(text) == {"a": "SELECT 1", "b": "-- a comment\nSELECT 2"}
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2")


def test_queue_queries_are_all_there() -> None:
    q = load_queries("botq.queue")
    expected = {"enqueue", "enqueue_many", "claim", "finish", "heartbeat", "release", "cancel"}
    assert expected <= set(q)
    assert "SKIP LOCKED" in q["claim"]


def test_check_payload_refuses_secrets_anywhere() -> None:
    assert check_payload({"pair": "BTC/USD", "n": [1, {"x": 2}]}) == {
        "pair": "BTC/USD",
        "n": [1, {"x": 2}],
    }
    for bad, path in [
        ({"API_KEY": "x"}, "payload.API_KEY"),
        ({"a": [{"b": {"client_secret": 1}}]}, "payload.a[0].b.client_secret"),
        ({"passphrase": "x"}, "payload.passphrase"),
    ]:
        with pytest.raises(QueueError, match=path.replace("[", r"\[").replace("]", r"\]")):
            check_payload(bad)
    with pytest.raises(QueueError, match="JSON-serialisable"):
        check_payload({"x": float("nan")})


def test_retry_policy_waits_grow_within_jitter_until_the_cap() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=60.0, jitter=0.2)
    rng = random.Random(1)
    for _ in range(200):
        waits = [policy.delay_s(k, rng) for k in range(1, 7)]
        assert waits == sorted(waits)
        for k, w in enumerate(waits, start=1):
            assert 0.8 * min(60, 2 ** (k - 1)) <= w <= 1.2 * min(60, 2 ** (k - 1))
    assert all(48.0 <= policy.delay_s(k, rng) <= 72.0 for k in range(7, 30))
    with pytest.raises(QueueError):
        RetryPolicy(base_s=0)
    with pytest.raises(QueueError, match="jitter"):
        RetryPolicy(jitter=0.4)


def test_periodic_slots_are_the_same_in_every_process() -> None:
    job = PeriodicJob("sync", 3600.0, "PortfolioSync", {}, "normal", offset_s=300.0)
    t = datetime(2026, 11, 30, 10, 4, 59, tzinfo=UTC).timestamp()
    assert job.slot_start(job.slot(t)) == datetime(2026, 11, 30, 9, 5, tzinfo=UTC)
    assert job.slot_start(job.slot(t + 1)) == datetime(2026, 11, 30, 10, 5, tzinfo=UTC)


def test_every_registers_and_due_jobs_fire_once_per_slot() -> None:
    job = every(60, "PortfolioSync", {"account": "main"}, name="test-hourly")
    try:
        assert job in periodic_jobs()
        last: dict[str, int] = {}
        due = [d for d in due_jobs(120.5, last) if d[0].name == "test-hourly"]
        assert [(d[1], d[2]) for d in due] == [(2, datetime.fromtimestamp(120, UTC))]
        last["test-hourly"] = 2
        assert not [d for d in due_jobs(150.0, last) if d[0].name == "test-hourly"]
        assert [d[1] for d in due_jobs(180.0, last) if d[0].name == "test-hourly"] == [3]
        with pytest.raises(QueueError, match="interval"):
            every(0.5, "X")
        with pytest.raises(QueueError, match="priority"):
            every(60, "X", priority="asap")
    finally:
        unschedule("test-hourly")
    assert job not in periodic_jobs()


def test_scrub_masks_registered_secrets() -> None:
    register_secret("abcdef123456")
    assert scrub("key=abcdef123456!") == "key=***!"
    register_secret("abc")  # too short to be a real secret: not registered
    assert scrub("abc") == "abc"


def test_redact_hides_passwords_in_urls() -> None:
    assert redact("postgresql://me:hunter2@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert redact("host=db password=hunter2 user=me") == "host=db password=*** user=me"
    assert redact("postgresql://me@/x?host=/tmp") == "postgresql://me@/x?host=/tmp"


def test_format_tasks_table() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    task = Task(
        id=7,
        type="Backtest",
        status=Status.FAILED,
        priority=Priority.HIGH,
        payload={},
        result=None,
        error="ValueError: bad\nmore",
        traceback=None,
        progress=0.5,
        progress_message="",
        attempts=4,
        max_retries=3,
        run_after=now,
        created_at=now,
        started_at=now,
        finished_at=now,
        worker_id="w",
        parent_id=None,
    )
    header, row = format_tasks([task]).splitlines()
    assert header.split()[:5] == ["ID", "TYPE", "STATUS", "PRIO", "TRY"]
    assert row.split()[:5] == ["7", "Backtest", "failed", "high", "4/4"]
    assert "ValueError: bad more" in row


def test_cli_parser_knows_the_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "worker",
            "--concurrency",
            "4",
            "--import",
            "a",
            "--import",
            "b",
            "--types",
            "X",
            "Y",
            "--lease-seconds",
            "10",
        ]
    )
    assert (args.concurrency, args.imports, args.types, args.lease_seconds) == (
        4,
        ["a", "b"],
        ["X", "Y"],
        10.0,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["db", "explode"])
