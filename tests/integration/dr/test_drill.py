"""``dr drill``: the runbook against a real primary and two replicas — measured RTO and RPO beside the
objectives, every step timed, the lost primary rebuilt as a replica, the report stored (E9, E10)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

import pytest

from shipwarden.domain.dr.runbook import RUNBOOK, render_markdown
from shipwarden.services.dr.drill import DrillService
from tests.fixtures.mariadb import ADMIN, APP, DrEnv

pytestmark = pytest.mark.integration


def test_drill_kill_measures_rto_rpo_and_restores_the_topology(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=2)
    c = env.cluster
    c.admin_sql(c.primary.endpoint, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)",
                "INSERT INTO app.t VALUES (1), (2)")  # fmt: skip
    report = DrillService(env.ctx).drill("hello", fault="kill", rate=150)  # type: ignore[arg-type]
    assert [s.name for s in report.steps] == list(RUNBOOK), report.steps
    assert all(s.outcome == "ok" for s in report.steps), [(s.name, s.summary) for s in report.steps]
    assert report.rpo_lost_writes == 0 and report.rpo_s == 0.0
    assert report.rto_s is not None and 0 < report.rto_s
    assert report.fenced_writes == 0 and report.writes_acknowledged > 100
    # the load wrote as the application, which read_only stops: the probe of the old primary was refused
    assert report.steps[0].detail["account"] == APP.user
    assert report.fence_probe.startswith("refused:") and "read-only" in report.fence_probe, report.fence_probe
    assert report.verdicts["rpo"] and report.verdicts["fencing"] and report.verdicts["steps"]
    assert report.passed == report.verdicts["rto"]  # the RTO verdict is a measurement, judged in bench/
    topo = env.ctx.topology("hello")  # type: ignore[attr-defined]
    assert str(topo.primary) == report.new_primary and len(topo.replicas) == 2 and topo.fenced == ()
    assert str(c.primary.endpoint) in {str(e) for e in topo.replicas}  # the old primary, rebuilt
    md = render_markdown(report)
    for words in ("## Objectives", "RTO", "RPO", "## Runbook steps", "## Root-cause analysis", "restoration"):
        assert words in md
    (stored,) = env.ctx.catalogue.drills("hello")  # type: ignore[attr-defined]
    assert stored.id == report.id and stored.rpo_lost == 0
    assert json.loads(report.to_json())["steps"][2]["name"] == "recovery"
    audited = {e.action for e in env.store.audit_entries(service="hello")}  # type: ignore[attr-defined]
    assert {f"dr.drill.{s}" for s in RUNBOOK} <= audited and "dr.drill.report" in audited
    assert "dr.rebuild" in audited


def test_drill_refuses_an_unhealthy_database(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    env.cluster.admin_sql(env.cluster.replicas[0].endpoint, "STOP SLAVE")
    report = DrillService(env.ctx).drill("hello")  # type: ignore[arg-type]
    assert [s.name for s in report.steps] == ["assessment"] and report.steps[0].outcome == "failed"
    assert "no replica streams" in report.steps[0].summary and not report.passed
    assert env.cluster.primary.running()  # nothing was harmed


def _partition_rules() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout


def test_partition_drill_fails_over_fences_and_heals(dr_env: Callable[..., DrEnv]) -> None:
    """The primary keeps running, cut off the network (iptables), while a client on its side of the
    partition goes on writing to it; failover; the partition heals and the old primary is fenced;
    no write it took in the meantime was acknowledged, and those it holds are detected and reported.

    semiSyncTimeout is 8 s and the partition lasts longer (held 9 s after writes resume): without
    the primary's guard MariaDB would fall back to asynchronous replication and the isolated primary
    acknowledge its side's writes (bench/dr.py measures that too); the guard (selfFenceAfter 2 s)
    kills those commits unacknowledged and fences it first."""
    env = dr_env(replicas=2, application=False, semi_sync_timeout=8.0)  # the drill makes its own account
    ports = env.ctx.db("hello")  # type: ignore[attr-defined]
    if ports.partitions.unavailable():
        pytest.skip(f"partitions: {ports.partitions.unavailable()}")
    old = env.cluster.primary
    report = DrillService(env.ctx).drill("hello", fault="partition", rate=150, hold=9.0)  # type: ignore[arg-type]
    assert all(s.outcome == "ok" for s in report.steps), report.to_json()
    assert [f[0] for f in report.split_brain["self_fenced"]] == [str(old.endpoint)]
    assert report.steps[0].detail["account"] == "shipwarden_drill"
    assert old.running()  # isolated, never killed
    assert f"SWP-{old.port}" not in _partition_rules() and ports.partitions.isolated() == []
    sb = report.split_brain
    assert sb["acknowledged_by_old_primary"] == 0 and report.fenced_writes == 0
    assert sb["stranded_writes_refused"] > 0  # the client on the old primary's side was not served
    assert sb["transactions_beyond_fork"] >= 0 and sb["fork"]
    assert report.fence_probe.startswith("refused:") and "read-only" in report.fence_probe
    assert report.rpo_lost_writes == 0 and report.verdicts["rpo"] and report.verdicts["fencing"]
    assert report.rto_s is not None and report.new_primary != str(old.endpoint)
    topo = env.ctx.topology("hello")  # type: ignore[attr-defined]
    assert old.endpoint in topo.replicas and topo.fenced == ()  # rebuilt: no errant transaction kept
    rs = env.cluster.driver.replica_status(old.endpoint)
    assert rs is not None and str(rs.source) == report.new_primary
    audited = {e.action for e in env.store.audit_entries(service="hello")}  # type: ignore[attr-defined]
    assert "dr.drill.partition.healed" in audited
    if sb["transactions_beyond_fork"]:
        alerts = env.store.audit_entries(service="hello", action="dr.alert")  # type: ignore[attr-defined]
        assert any(e.detail.get("key") == "split-brain" for e in alerts)


def test_drill_refuses_an_admin_account_and_a_failed_partition_drill_still_heals(
    dr_env: Callable[..., DrEnv],
) -> None:
    env = dr_env(replicas=1)
    ports = env.ctx.db("hello")  # type: ignore[attr-defined]
    # an application account with ALL PRIVILEGES (so READ_ONLY ADMIN) would write through the fence
    ports.application = ADMIN
    report = DrillService(env.ctx).drill("hello")  # type: ignore[arg-type]
    assert [s.name for s in report.steps] == ["assessment"] and report.steps[0].outcome == "failed"
    assert "READ_ONLY ADMIN" in report.steps[0].summary and not report.passed
    assert env.cluster.primary.running()
    ports.application = APP
    if ports.partitions.unavailable():
        pytest.skip(f"partitions: {ports.partitions.unavailable()}")
    # a drill that cannot see a failover in time (0.5 s) gives up: the partition must not outlive it
    report = DrillService(env.ctx).drill("hello", fault="partition", timeout=0.5)  # type: ignore[arg-type]
    assert report.steps[2].name == "recovery" and report.steps[2].outcome == "failed", report.steps
    assert f"SWP-{env.cluster.primary.port}" not in _partition_rules() and ports.partitions.isolated() == []
    deadline = time.monotonic() + 20  # healed: it answers again (a loaded machine takes a moment)
    while env.cluster.driver.ping(env.cluster.primary.endpoint, 2.0) is not None:
        assert time.monotonic() < deadline, "the primary does not answer after the partition healed"
        time.sleep(0.1)
