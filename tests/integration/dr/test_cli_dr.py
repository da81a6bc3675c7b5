"""``shipwarden db …`` and ``dr drill`` from the command line against a real cluster: exit codes,
output, bad input changing nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from shipwarden.entrypoints.cli import app
from tests.fixtures.mariadb import SECRETS, DrEnv

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[[DrEnv, list[str]], object]:
    def run(env: DrEnv, args: list[str]) -> object:
        monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(env.settings.state_dir))  # type: ignore[attr-defined]
        monkeypatch.setenv("SHIPWARDEN_POLICY", str(env.settings.policy))  # type: ignore[attr-defined]
        monkeypatch.setenv("SHIPWARDEN_ACTOR", "ops")
        for k, v in SECRETS.items():
            monkeypatch.setenv(f"SHIPWARDEN_SECRET_{k}", v)
        return CliRunner().invoke(app, args)

    return run


def test_db_commands(dr_env: Callable[..., DrEnv], cli: Callable[[DrEnv, list[str]], object]) -> None:
    env = dr_env(replicas=1)
    c = env.cluster
    c.admin_sql(c.primary.endpoint, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)",
                "INSERT INTO app.t VALUES (1), (2), (3)")  # fmt: skip
    r = cli(env, ["db", "backup", "hello", "--kind", "snapshot"])
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "snapshot b-" in r.output  # type: ignore[attr-defined]
    (snap,) = env.ctx.catalogue.backups("hello", "snapshot")  # type: ignore[attr-defined]

    r = cli(env, ["db", "restore", "hello", "--to", "yesterday"])
    assert r.exit_code == 2 and "give a time" in r.output  # type: ignore[attr-defined]
    assert not list(env.store.audit_entries(action="dr.restore"))  # type: ignore[attr-defined]

    r = cli(env, ["db", "restore", "hello", "--to", snap.gtid, "--verify", "--no-keep"])
    assert r.exit_code == 0 and "verified" in r.output and "removed" in r.output, r.output  # type: ignore[attr-defined]

    c.admin_sql(c.primary.endpoint, "INSERT INTO app.t VALUES (4)")
    c.wait_replicated()
    r = cli(
        env, ["db", "verify", "hello"]
    )  # no archiver runs here: the snapshot alone is proven, and said so
    assert r.exit_code == 0 and "archive not verified" in r.output, r.output  # type: ignore[attr-defined]

    r = cli(env, ["db", "status", "hello", "--json"])
    assert r.exit_code == 0 and '"role": "primary"' in r.output  # type: ignore[attr-defined]

    r = cli(env, ["db", "failover", "hello", "--to", "127.0.0.1:1"])
    assert r.exit_code == 2 and "not a replica" in r.output  # type: ignore[attr-defined]
    r = cli(env, ["db", "failover", "hello"])
    assert r.exit_code == 0 and "switchover" in r.output, r.output  # type: ignore[attr-defined]
    topo = env.ctx.topology("hello")  # type: ignore[attr-defined]
    assert topo.primary == c.replicas[0].endpoint and topo.replicas == (c.primary.endpoint,)
    rs = c.driver.replica_status(c.primary.endpoint)
    assert rs is not None and rs.source == topo.primary  # the old primary follows, nothing lost

    r = cli(env, ["db", "status", "nope"])
    assert r.exit_code == 2 and "no database for service 'nope'" in r.output  # type: ignore[attr-defined]
    r = cli(env, ["dr", "drill", "hello", "--fault", "meteor"])
    assert r.exit_code == 2 and "--fault" in r.output  # type: ignore[attr-defined]
