"""Drill verdicts and report; replication health rules (pure)."""

from __future__ import annotations

from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.health import replication_issues
from shipwarden.domain.dr.runbook import RUNBOOK, DrillReport, DrillStep, judge, percentile, render_markdown
from shipwarden.domain.dr.spec import DatabaseSpec
from shipwarden.domain.dr.topology import Endpoint, ReplicaStatus, ServerStatus

P, R = Endpoint("h", 1), Endpoint("h", 2)
SPEC = DatabaseSpec.model_validate(
    {"service": "s", "primary": "h:1", "replicas": ["h:2"], "credentials": {"user": "u"},
     "listener": {"port": 9}, "objectives": {"rpo": 0, "rto": 5}, "replication": {"maxLag": 3}}
)  # fmt: skip


def report(**kw: object) -> DrillReport:
    return judge(
        DrillReport(
            **{
                "id": "d", "service": "s", "fault": "kill", "started_at": "t0", "finished_at": "t1",
                "objectives": {"rto_s": 5.0, "rpo_s": 0.0}, "rto_s": 1.5, "rpo_lost_writes": 0, "rpo_s": 0.0,
                "steps": [DrillStep(n, "t", 0.1, "ok", n) for n in RUNBOOK],
                **kw,
            }  # type: ignore[arg-type]
        )
    )  # fmt: skip


def test_verdicts() -> None:
    assert report().passed
    assert not report(rto_s=5.01).passed and not report(rto_s=None).passed
    assert not report(rpo_lost_writes=1, rpo_s=0.0).passed  # rpo 0 means no acknowledged write lost
    assert not report(fenced_writes=1).passed
    assert not report(fence_probe="accepted").passed  # the old primary took an application write
    assert report(fence_probe="refused: (1290, 'read-only')").passed
    failed = [DrillStep(n, "t", 0.1, "failed" if n == "restoration" else "ok", n) for n in RUNBOOK]
    assert not report(steps=failed).passed
    assert not report(steps=failed[:2]).passed


def test_markdown_has_objectives_steps_and_rca() -> None:
    md = render_markdown(report())
    assert "| RTO (fault → first write acknowledged again) | ≤ 5 s | 1.500 s | PASS |" in md
    assert "## Root-cause analysis" in md and "### Action items" in md
    assert md.count("| ok |") == 5
    sb = {"acknowledged_by_old_primary": 0, "transactions_beyond_fork": 3, "fork": "0-1-9"}
    md = render_markdown(report(fault="partition", split_brain=sb, fence_probe="refused: read-only"))
    assert "fence probe (an application write straight to the old primary once back): refused" in md
    assert "0 write(s) acknowledged by the isolated old primary, 3 transaction(s)" in md and "0-1-9" in md


def test_percentile_nearest_rank() -> None:
    assert percentile([], 95) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 21)], 95) == 19.0


def _primary(semi: bool | None = True, pos: str = "0-1-10") -> ServerStatus:
    g = GtidPosition.parse(pos)
    return ServerStatus(P, 1, False, g, g, semi, 1)


def _replica(**kw: object) -> ReplicaStatus:
    pos = GtidPosition.parse("0-1-10")
    base: dict[str, object] = {"endpoint": R, "source": P, "io_running": "Yes", "sql_running": True,
                               "last_io_error": "", "last_sql_error": "", "seconds_behind": 0,
                               "gtid_io_pos": pos, "gtid_slave_pos": pos}  # fmt: skip
    return ReplicaStatus(**{**base, **kw})  # type: ignore[arg-type]


def test_health_rules() -> None:
    assert replication_issues(SPEC, _primary(), {R: _replica()}) == []
    keys = {i.key for i in replication_issues(SPEC, _primary(semi=False), {R: None})}
    assert keys == {"semi-sync-off", f"replica-unreachable:{R}"}
    issues = replication_issues(
        SPEC, _primary(),
        {R: _replica(io_running="Connecting", sql_running=False, seconds_behind=9,
                     gtid_slave_pos=GtidPosition.parse("0-1-12"))},
    )  # fmt: skip
    assert {i.key.split(":")[0] for i in issues} == {
        "replica-io",
        "replica-sql",
        "replica-lag",
        "gtid-errant",
    }
