"""The MariaDB driver against a real primary and two replicas (semi-sync, GTID)."""

from __future__ import annotations

from collections.abc import Callable

import pymysql
import pytest

from tests.fixtures.mariadb import REPL, Cluster

pytestmark = pytest.mark.integration


def test_replication_status_and_checksums(mariadb_cluster: Callable[..., Cluster]) -> None:
    c = mariadb_cluster(replicas=2)
    p = c.primary.endpoint
    c.admin_sql(p, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))")
    conn = c.app_connect(p, "app")
    with conn.cursor() as cur:
        for i in range(50):
            cur.execute("INSERT INTO t VALUES (%s, %s)", (i, f"v{i}"))
    conn.close()
    st = c.driver.status(p)
    assert not st.read_only and st.semi_sync_master is True and st.semi_sync_clients == 2
    assert st.gtid_binlog_pos.seq(0) >= 52
    c.wait_replicated()
    for r in c.replicas:
        rs = c.driver.replica_status(r.endpoint)
        assert rs is not None and rs.io_connected and rs.sql_running and rs.source == p
        assert rs.gtid_slave_pos.contains(st.gtid_binlog_pos)
        assert c.driver.status(r.endpoint).read_only
    sums = c.driver.checksums(p, ["app"])
    assert list(sums) == ["app.t"] and sums["app.t"]
    assert all(c.driver.checksums(r.endpoint, ["app"]) == sums for r in c.replicas)
    assert c.driver.replica_status(p) is None


def test_fence_refuses_application_writes_and_kills_sessions(mariadb_cluster: Callable[..., Cluster]) -> None:
    c = mariadb_cluster(replicas=1)
    p = c.primary.endpoint
    c.admin_sql(p, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
    held = c.app_connect(p, "app")
    killed = c.driver.fence(p)
    assert killed >= 1
    with pytest.raises(pymysql.err.OperationalError):
        with held.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (1)")
    fresh = c.app_connect(p, "app")
    with pytest.raises(pymysql.err.OperationalError, match="read-only"), fresh.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (2)")
    fresh.close()


def test_promote_and_repoint(mariadb_cluster: Callable[..., Cluster]) -> None:
    c = mariadb_cluster(replicas=2)
    p, r1, r2 = c.primary.endpoint, c.replicas[0].endpoint, c.replicas[1].endpoint
    c.admin_sql(
        p, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)"
    )
    c.wait_replicated()
    c.primary.kill()
    c.driver.promote(r1, semi_sync=True, semi_sync_timeout=10)
    c.driver.replicate_from(r2, r1, REPL, semi_sync=True)
    conn = c.app_connect(r1, "app")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (2)")
    conn.close()
    assert c.driver.wait_applied(r2, c.driver.status(r1).gtid_binlog_pos, 10)
    assert c.driver.checksums(r2, ["app"]) == c.driver.checksums(r1, ["app"])
    assert c.driver.replica_status(r1) is None
