"""The `botq` command end to end, on a local server of its own (as a new user would run it)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from botq.db.local import LocalServer
from tests.support.util import run_botq, start_worker, stop_process, wait_until


def test_cli_end_to_end_on_a_fresh_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = LocalServer(home)
    try:
        res = run_botq("db", "status", home=home)
        assert res.returncode == 3 and "running:  no" in res.stdout

        res = run_botq("db", "start", home=home)
        assert res.returncode == 0 and res.stdout.startswith("started"), res.stderr
        assert run_botq("db", "start", home=home).stdout.startswith("already running")
        url = run_botq("db", "url", home=home).stdout.strip()
        assert url == server.url
        res = run_botq("db", "status", home=home)
        assert res.returncode == 0 and "running:  yes" in res.stdout
        assert (
            run_botq("db", "migrate", home=home).stdout.strip() in ("schema is up to date",)
            or "applied" in run_botq("db", "migrate", home=home).stdout
        )

        res = run_botq("demo", "--tasks", "8", home=home)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "15/15 tasks finished as expected" in res.stdout
        assert "BulkBacktest ranked by final result" in res.stdout
        assert "DemoFlaky" in res.stdout and "cancelled" in res.stdout

        res = run_botq(
            "enqueue", "Sleep", "--payload", '{"seconds": 0.1}', "--priority", "high", home=home
        )
        assert res.returncode == 0, res.stderr
        sleep_id = int(res.stdout.strip())

        worker = start_worker(url, home=home)
        try:
            res = run_botq("enqueue", "Record", "--payload", "{}", "--wait", "30", home=home)
            # Record needs a table this database lacks: the task fails, the CLI says so
            assert res.returncode == 1 and "test_seen" in res.stdout
            # the local server stops and starts again under the running worker
            assert run_botq("db", "stop", home=home).stdout.strip() == "stopped"
            assert run_botq("db", "status", home=home).returncode == 3
            time.sleep(0.5)
            assert run_botq("db", "start", home=home).returncode == 0
            res = run_botq(
                "enqueue", "Sleep", "--payload", '{"seconds": 0.05}', "--wait", "60", home=home
            )
            assert res.returncode == 0, res.stdout + res.stderr
            assert json.loads(res.stdout.splitlines()[1])["attempt"] == 1
        finally:
            out = stop_process(worker)
        assert worker.returncode == 0, out
        assert "database unavailable" in out

        res = run_botq("tasks", "--type", "Sleep", home=home)
        assert res.returncode == 0
        header, *rows = res.stdout.split("\n\n")[0].splitlines()
        assert header.split()[:4] == ["ID", "TYPE", "STATUS", "PRIO"]
        assert any(row.split()[0] == str(sleep_id) and "completed" in row for row in rows)
        assert "completed:" in res.stdout

        res = run_botq("tasks", "--status", "failed", home=home)
        assert "Record" in res.stdout and "test_seen" in res.stdout
        failed_id = int(res.stdout.splitlines()[1].split()[0])
        assert run_botq("retry", str(failed_id), home=home).stdout.strip().endswith("pending")
        assert run_botq("cancel", str(failed_id), home=home).stdout.strip().endswith("cancelled")

        assert run_botq("db", "stop", home=home).stdout.strip() == "stopped"
        assert run_botq("db", "stop", home=home).stdout.strip() == "not running"
    finally:
        server.stop()


def test_cli_errors_are_actionable(tmp_path: Path, db_url: str) -> None:
    res = run_botq("enqueue", "X", "--payload", "{not json", url=db_url)
    assert res.returncode == 1 and "--payload is not valid JSON" in res.stderr
    res = run_botq("enqueue", "X", "--payload", '{"api_key": "k"}', url=db_url)
    assert res.returncode == 1 and "payload.api_key" in res.stderr
    res = run_botq("retry", "999999", url=db_url)
    assert res.returncode == 1 and "no task with id 999999" in res.stderr
    res = run_botq("worker", "--import", "no_such_module_xyz", url=db_url)
    assert res.returncode == 1 and "--import no_such_module_xyz" in res.stderr
    res = run_botq("db", "stop", url=db_url)
    assert res.returncode == 1 and "BOTQ_DATABASE_URL is set" in res.stderr
    res = run_botq("tasks", url="postgresql://nobody@127.0.0.1:1/none")
    assert res.returncode == 1 and "cannot connect to PostgreSQL" in res.stderr
    res = run_botq("enqueue", "X", "--priority", "urgent", url=db_url)
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_local_server_leaves_home_permissions_alone(server: dict[str, object]) -> None:
    """Starting the server (as root: as user botq) must not loosen any folder's permissions."""
    if server["local"] is None:
        return
    before: dict[Path, int] = server["modes_before"]  # type: ignore[assignment]
    after = {p: stat.S_IMODE(p.stat().st_mode) for p in before}
    assert after == before


def test_second_process_attaches_to_the_running_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = LocalServer(home)
    try:
        first.ensure_running()
        pid = first.pid()
        res = run_botq("db", "start", home=home)
        assert res.stdout.startswith("already running")
        assert LocalServer(home).pid() == pid
        wait_until(lambda: LocalServer(home).is_running())
    finally:
        first.stop()
