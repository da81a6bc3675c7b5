"""The primary's guard (services.dr.guard) on a real semi-sync primary whose replica stops
acknowledging: without the guard MariaDB falls back to asynchronous replication after
``semiSyncTimeout`` and acknowledges a write no replica has; with it, the waiting commit is
killed unacknowledged and the primary fenced, and the monitor does not reopen it while no
semi-sync replica is connected (E10, RPO 0)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pymysql
import pytest

from shipwarden.services.dr.failover import DatabaseMonitor
from shipwarden.services.dr.guard import PrimaryGuard
from tests.fixtures.mariadb import DrEnv

pytestmark = pytest.mark.integration


def _write(env: DrEnv, value: int) -> str:
    """One application write straight to the primary: 'acknowledged' or the error it got."""
    conn = env.cluster.app_connect(env.cluster.primary.endpoint, timeout=10.0)
    try:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO app.t VALUES ({value})")
        return "acknowledged"
    except pymysql.MySQLError as exc:
        return f"refused: {exc}"
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - killed by the fence
            pass


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_guard_fences_a_primary_whose_replica_stopped_acknowledging(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1, semi_sync_timeout=6.0)
    c = env.cluster
    p, r = c.primary.endpoint, c.replicas[0].endpoint
    ports = env.ctx.db("hello")  # type: ignore[attr-defined]
    for ep in (p, r):
        ports.control.remember(ep)
    assert ports.control.is_local(p)
    c.admin_sql(p, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
    assert _write(env, 1) == "acknowledged"

    # without the guard: the replica stops acknowledging, and after 6 s MariaDB acknowledges alone
    c.admin_sql(r, "STOP SLAVE IO_THREAD")
    assert _write(env, 2) == "acknowledged"
    assert c.driver.status(p).semi_sync_master is False  # fell back: a split brain in a partition
    c.admin_sql(r, "START SLAVE IO_THREAD")
    _wait(lambda: c.driver.status(p).semi_sync_master is True, 20, "semi-sync did not come back")

    # with the guard: the same write is killed before the fall-back, and the primary fenced
    # (1 s: a wide margin before the 6 s fall-back — a loaded machine slows the guard down)
    guard = PrimaryGuard(env.ctx, "hello", after=1.0)  # type: ignore[arg-type]
    halt = guard.start()
    try:
        c.admin_sql(r, "STOP SLAVE IO_THREAD")
        _wait(lambda: c.driver.status(p).semi_sync_clients == 0, 10, "the replica did not disconnect")
        outcome = _write(env, 3)
        errors = [e.detail for e in env.store.audit_entries(service="hello")  # type: ignore[attr-defined]
                  if e.action.startswith("dr.guard")]  # fmt: skip
        assert outcome.startswith("refused:"), (outcome, errors)
        _wait(lambda: bool(guard.fenced), 20, "the guard did not finish fencing")  # read_only after the kill
        assert [f[0] for f in guard.fenced] == [str(p)] and guard.fenced[0][1] >= 1.0, guard.fenced
        st = c.driver.status(p)
        assert st.read_only and st.semi_sync_master is True  # fenced before any fall-back
        later = _write(env, 4)
        assert later.startswith("refused:") and "read-only" in later, later
    finally:
        halt()
    alerts = env.store.audit_entries(service="hello", action="dr.alert")  # type: ignore[attr-defined]
    assert any(e.detail.get("key") == "self-fenced" for e in alerts)

    # the monitor keeps it fenced while no semi-sync replica is connected, and reopens it after
    mon = DatabaseMonitor(env.ctx, "hello")  # type: ignore[arg-type]
    mon.ensure_listener()
    mon.tick()
    assert c.driver.status(p).read_only and mon.held_read_only
    alerts = env.store.audit_entries(service="hello", action="dr.alert")  # type: ignore[attr-defined]
    assert any(e.detail.get("key") == "primary-held-read-only" for e in alerts)
    c.admin_sql(r, "START SLAVE IO_THREAD")
    _wait(lambda: c.driver.status(p).semi_sync_clients == 1, 20, "the replica did not reconnect")
    mon.tick()
    assert not c.driver.status(p).read_only and not mon.held_read_only
    assert _write(env, 5) == "acknowledged"
    # the killed write (3) is in the primary's binlog, never acknowledged; the replica has all others
    c.wait_replicated()
    got = {row[0] for row in c.admin_sql(r, "SELECT id FROM app.t")}
    assert {1, 2, 5} <= got


def test_guard_leaves_a_healthy_primary_alone(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    c = env.cluster
    ports = env.ctx.db("hello")  # type: ignore[attr-defined]
    ports.control.remember(c.primary.endpoint)
    c.admin_sql(c.primary.endpoint, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
    guard = PrimaryGuard(env.ctx, "hello")  # type: ignore[arg-type]
    writes = [threading.Thread(target=_write, args=(env, i)) for i in range(20)]
    for t in writes:
        t.start()
    for _ in range(5):
        assert guard.tick() == []
    for t in writes:
        t.join(10)
    assert guard.fenced == [] and not c.driver.status(c.primary.endpoint).read_only
