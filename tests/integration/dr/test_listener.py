"""The HAProxy TCP listener: repointed through the Runtime API, sessions to the old backend cut."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pymysql
import pytest

from shipwarden.adapters.databases.listener import HaproxyTcpListener
from shipwarden.adapters.net import free_port
from shipwarden.domain.dr.topology import Endpoint
from tests.fixtures.mariadb import Cluster

pytestmark = pytest.mark.integration


def _server_id(conn: pymysql.Connection) -> int:  # type: ignore[type-arg]
    with conn.cursor() as cur:
        cur.execute("SELECT @@server_id")
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


def test_point_block_and_restart(mariadb_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = mariadb_cluster(replicas=1)
    bind = Endpoint("127.0.0.1", free_port())
    lst = HaproxyTcpListener(tmp_path / "listeners")
    try:
        lst.ensure("hello", bind, c.primary.endpoint)
        held = c.app_connect(bind)
        assert _server_id(held) == 1
        lst.point("hello", c.replicas[0].endpoint)
        assert lst.backend("hello") == c.replicas[0].endpoint
        with pytest.raises(pymysql.err.OperationalError):
            _server_id(held)  # the session to the old backend was shut down
        fresh = c.app_connect(bind)
        assert _server_id(fresh) == 2
        lst.block("hello")
        with pytest.raises(pymysql.err.OperationalError):
            _server_id(fresh)
        with pytest.raises(pymysql.err.OperationalError):
            c.app_connect(bind, timeout=1)
        assert lst.backend("hello") is None
        # restarted, it keeps the last state (blocked), then follows the next change
        lst.stop()
        assert not lst.running("hello")
        lst.ensure("hello", bind, c.primary.endpoint)
        with pytest.raises(pymysql.err.OperationalError):
            c.app_connect(bind, timeout=1)
        lst.point("hello", c.replicas[0].endpoint)
        assert _server_id(c.app_connect(bind)) == 2
    finally:
        lst.stop()
