"""Replication health: MariaDB's silent fall-back from semi-synchronous to asynchronous replication
is an alert; AFTER_SYNC is enforced; stopped replication threads and errant GTIDs are alerts."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from shipwarden.services.dr.failover import DatabaseMonitor
from tests.fixtures.mariadb import DrEnv

pytestmark = pytest.mark.integration


def _alerts(env: DrEnv) -> list[str]:
    return [e.detail["key"] for e in env.store.audit_entries(service="hello", action="dr.alert")]  # type: ignore[attr-defined]


def test_semi_sync_fallback_is_an_alert(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1, semi_sync_timeout=0.5)
    c = env.cluster
    p = c.primary.endpoint
    mon = DatabaseMonitor(env.ctx, "hello")  # type: ignore[arg-type]
    mon.ensure_listener()
    mon.tick()
    assert c.admin_sql(p, "SELECT @@rpl_semi_sync_master_wait_point")[0][0] == "AFTER_SYNC"
    assert _alerts(env) == []
    c.admin_sql(c.replicas[0].endpoint, "STOP SLAVE IO_THREAD")
    c.admin_sql(p, "CREATE DATABASE app")  # waits for an ack nobody sends, then MariaDB gives up silently
    assert c.driver.status(p).semi_sync_master is False
    mon.tick()
    alerts = _alerts(env)
    assert "semi-sync-off" in alerts and f"replica-io:{c.replicas[0].endpoint}" in alerts
    mon.tick()
    assert _alerts(env).count("semi-sync-off") == 1  # once per episode
    c.admin_sql(c.replicas[0].endpoint, "START SLAVE IO_THREAD")
    deadline = time.monotonic() + 10
    while c.driver.status(p).semi_sync_master is not True:
        assert time.monotonic() < deadline
        c.admin_sql(p, "CREATE TABLE IF NOT EXISTS app.k (i INT)")
        time.sleep(0.1)
    mon.tick()
    resolved = [
        e.detail["key"] for e in env.store.audit_entries(service="hello", action="dr.health.resolved")
    ]  # type: ignore[attr-defined]
    assert "semi-sync-off" in resolved


def test_errant_gtid_on_a_replica_is_an_alert(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    c = env.cluster
    r = c.replicas[0].endpoint
    mon = DatabaseMonitor(env.ctx, "hello")  # type: ignore[arg-type]
    mon.ensure_listener()
    mon.tick()
    c.admin_sql(r, "SET GLOBAL gtid_strict_mode = 0", "STOP SLAVE", "SET gtid_domain_id = 0",
                "SET GLOBAL gtid_slave_pos = '0-1-999'", "START SLAVE")  # fmt: skip
    mon.tick()
    assert f"gtid-errant:{r}" in _alerts(env)
