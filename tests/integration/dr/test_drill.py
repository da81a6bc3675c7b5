"""``dr drill``: the runbook against a real primary and two replicas — measured RTO and RPO beside the
objectives, every step timed, the lost primary rebuilt as a replica, the report stored (E9, E10)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from shipwarden.domain.dr.runbook import RUNBOOK, render_markdown
from shipwarden.services.dr.drill import DrillService
from tests.fixtures.mariadb import DrEnv

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
