"""Automatic failover against a real primary and two semi-sync replicas under a write load:
the primary is killed, the most advanced replica is promoted, the listener repointed, the other
replica re-attached, no acknowledged write is lost, and the old primary never takes a write again
(E1, E10)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pymysql
import pytest

from shipwarden.domain.dr.failover import Health
from shipwarden.services.dr.failover import DatabaseMonitor
from tests.fixtures.mariadb import APP, DrEnv

pytestmark = pytest.mark.integration


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _start(env: DrEnv) -> tuple[DatabaseMonitor, threading.Event, threading.Thread]:
    mon = DatabaseMonitor(env.ctx, "hello")  # type: ignore[arg-type]
    mon.ensure_listener()
    mon.tick()
    stop = threading.Event()
    t = threading.Thread(target=mon.run, args=(stop,), daemon=True)
    t.start()
    return mon, stop, t


@pytest.mark.parametrize("failure", ["kill", "freeze"])
def test_failover_loses_no_acknowledged_write_and_fences_the_old_primary(
    dr_env: Callable[..., DrEnv], failure: str
) -> None:
    env = dr_env(replicas=2)
    c = env.cluster
    old = c.primary
    mon, stop, thread = _start(env)
    load = env.ctx.db("hello").write_load(200.0, APP)  # type: ignore[attr-defined]
    try:
        load.start()
        _wait(lambda: load.acknowledged_so_far() > 200, 20, "load never got going")
        acked_before = load.acknowledged_so_far()
        killed_at = time.monotonic()
        old.kill() if failure == "kill" else old.freeze()
        _wait(lambda: bool(mon.reports), 30, "no failover happened")
        _wait(lambda: load.acknowledged_so_far() > acked_before + 200, 20, "writes did not resume")
        result = load.stop()
    finally:
        stop.set()
        thread.join(10)
        load.stop()
    report = mon.reports[0]
    topo = env.ctx.topology("hello")  # type: ignore[attr-defined]
    new = topo.primary
    assert report.old_primary == old.endpoint and report.new_primary == new != old.endpoint
    assert topo.fenced == (old.endpoint,) and old.endpoint not in topo.replicas and topo.epoch == 1
    names = [s.name for s in report.steps]
    # the candidate's promotion (stop receiving, apply the relay log, promote: one session) runs beside
    # fencing the old primary and the other replica stopping and then, once promoted, re-attaching
    assert names[0] == "isolate" and names[-2:] == ["open-writes", "repoint-listener"]
    assert sorted(names[1:-2]) == ["fence", "promote", "reattach", "stop-receiving"]
    assert names.index("promote") < names.index("reattach") and "applied" in report.steps[
        names.index("promote")].detail["result"]  # fmt: skip
    assert all(s.outcome == "ok" for s in report.steps if s.name != "fence")

    # RPO: every write the load saw acknowledged is on the new primary
    ids = [a.id for a in result.acknowledged]
    assert load.missing(new, ids) == []
    # writes resumed through the listener, on the new primary only after the failover
    after = [a for a in result.acknowledged if a.at > report.writable_at]  # type: ignore[operator]
    new_sid = c.driver.status(new).server_id
    assert after and {a.server_id for a in after} == {new_sid}
    assert all(a.server_id == old.server_id for a in result.acknowledged if a.at < killed_at)
    # the other replica follows the new primary, and has everything
    (other,) = topo.replicas
    rs = c.driver.replica_status(other)
    assert rs is not None and rs.source == new and rs.io_connected
    assert c.driver.wait_applied(other, c.driver.status(new).gtid_binlog_pos, 20)
    assert load.missing(other, ids) == []
    actions = [e.action for e in env.store.audit_entries(service="hello")]  # type: ignore[attr-defined]
    steps = (
        "decided",
        "isolate",
        "stop-receiving",
        "promote",
        "reattach",
        "open-writes",
        "repoint-listener",
        "done",
    )
    for a in (f"dr.failover.{s}" for s in steps):
        assert a in actions, a

    # the old primary comes back: it refuses application writes, and nothing reaches it through us
    if failure == "kill":
        old.start()
    else:
        old.thaw()
    monitor = DatabaseMonitor(env.ctx, "hello")  # type: ignore[arg-type]
    _wait(lambda: c.driver.ping(old.endpoint, 1.0) is None, 20, "old primary did not come back")
    assert monitor.tick().health is Health.HEALTHY
    st = c.driver.status(old.endpoint)
    assert st.read_only
    conn = c.app_connect(old.endpoint)
    with pytest.raises(pymysql.err.OperationalError, match="read-only"), conn.cursor() as cur:
        cur.execute("INSERT INTO shipwarden_drill.writes VALUES (1, @@server_id, 0)")
    conn.close()
    via = c.app_connect(env.listener)
    with via.cursor() as cur:
        cur.execute("SELECT @@server_id")
        assert cur.fetchone()[0] == new_sid  # type: ignore[index]
    via.close()
    # no write acknowledged by the old primary after the failover began
    assert not [a for a in result.acknowledged if a.server_id == old.server_id and a.at > report.decided_at]
