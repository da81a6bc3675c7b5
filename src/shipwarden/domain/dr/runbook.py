"""The recovery runbook as code (E9): a drill's steps, its measurements against the objectives,
and its report (pure: the drill service measures, this judges and renders).

A drill runs the five steps of the runbook in order — **assessment** (is the topology
healthy enough to drill on; what would we lose), **notification** (the team is told),
**recovery** (the primary is lost under a steady write load; detection, failover and the
first write that succeeds again are timed), **restoration** (the lost instance is rebuilt
as a replica) and **verification** (every acknowledged write is on every instance, the
replicas' checksums equal the primary's, the listener reaches the new primary).

* **RTO** — from the moment the fault was injected to the first write acknowledged by the
  new primary through the listener (what the application sees).
* **RPO** — acknowledged writes missing from the new primary (0 is the goal with
  semi-synchronous replication), and the span of time they cover, in seconds.
* **Fencing** — writes acknowledged by the old primary after it was given up (by the listener's
  clients, or in a partition by a client on its side), and the probe: one application write
  straight to the old primary once it is back must be refused.

The report says each figure beside the declared objective with pass/fail, lists every
step with its time, and ends with a root-cause section for people to fill in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["DrillStep", "DrillReport", "judge", "render_markdown", "percentile", "RUNBOOK"]

RUNBOOK = ("assessment", "notification", "recovery", "restoration", "verification")


@dataclass
class DrillStep:
    name: str
    started_at: str  # ISO 8601, UTC
    seconds: float
    outcome: Literal["ok", "failed", "skipped"]
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class DrillReport:
    id: str
    service: str
    fault: str
    started_at: str
    finished_at: str
    objectives: dict[str, float]  # rto_s, rpo_s
    rto_s: float | None
    rpo_lost_writes: int | None
    rpo_s: float | None
    steps: list[DrillStep]
    old_primary: str = ""
    new_primary: str = ""
    writes_acknowledged: int = 0
    writes_failed: int = 0
    fenced_writes: int = 0
    #: one application write straight to the old primary once it is back: "refused: …" or "accepted"
    fence_probe: str = ""
    #: partition drills: writes on the isolated old primary (acknowledged, and beyond the fork)
    split_brain: dict[str, Any] = field(default_factory=dict)
    passed: bool = False
    verdicts: dict[str, bool] = field(default_factory=dict)
    failover_steps: list[dict[str, Any]] = field(default_factory=list)
    root_cause: dict[str, str] = field(
        default_factory=lambda: {
            "summary": "",
            "trigger": "",
            "root_causes": "",
            "detection": "",
            "resolution": "",
            "action_items": "",
            "lessons": "",
        }  # fmt: skip
    )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)


def judge(report: DrillReport) -> DrillReport:
    """Fill ``verdicts`` and ``passed``: each step ok, RTO and RPO within the objectives, no
    write accepted by the fenced primary."""
    v: dict[str, bool] = {}
    v["steps"] = all(s.outcome != "failed" for s in report.steps) and [s.name for s in report.steps] == list(
        RUNBOOK
    )
    v["rto"] = report.rto_s is not None and report.rto_s <= report.objectives["rto_s"]
    v["rpo"] = (
        report.rpo_lost_writes is not None
        and report.rpo_s is not None
        and report.rpo_s <= report.objectives["rpo_s"]
        and (report.objectives["rpo_s"] > 0 or report.rpo_lost_writes == 0)
    )
    v["fencing"] = report.fenced_writes == 0 and report.fence_probe != "accepted"
    report.verdicts = v
    report.passed = all(v.values())
    return report


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def _fmt(x: float | None, unit: str = "s") -> str:
    return "n/a" if x is None else f"{x:.3f} {unit}"


def render_markdown(r: DrillReport) -> str:
    ok = {True: "PASS", False: "FAIL"}
    lines = [
        f"# DR drill {r.id}: {r.service} — {ok[r.passed]}",
        "",
        f"- fault: {r.fault}; started {r.started_at}, finished {r.finished_at}",
        f"- primary: {r.old_primary or 'n/a'} → {r.new_primary or 'n/a'}",
        f"- writes: {r.writes_acknowledged} acknowledged, {r.writes_failed} failed attempts during the drill",
        "",
        "## Objectives",
        "",
        "| measure | objective | measured | verdict |",
        "|---|---|---|---|",
        f"| RTO (fault → first write acknowledged again) | ≤ {r.objectives['rto_s']:g} s | {_fmt(r.rto_s)} "
        f"| {ok[r.verdicts.get('rto', False)]} |",
        f"| RPO (acknowledged writes lost) | ≤ {r.objectives['rpo_s']:g} s | "
        f"{'n/a' if r.rpo_lost_writes is None else r.rpo_lost_writes} write(s), {_fmt(r.rpo_s)} "
        f"| {ok[r.verdicts.get('rpo', False)]} |",
        f"| writes accepted by the fenced primary | 0 | {r.fenced_writes} "
        f"| {ok[r.verdicts.get('fencing', False)]} |",
        "",
        f"- fence probe (an application write straight to the old primary once back): "
        f"{r.fence_probe or 'n/a'}",
    ]
    if r.split_brain:
        sb = r.split_brain
        lines.append(
            f"- split brain (partition): {sb.get('acknowledged_by_old_primary', 0)} write(s) acknowledged by "
            f"the isolated old primary, {sb.get('transactions_beyond_fork', 0)} transaction(s) in its binlog "
            f"beyond the fork {sb.get('fork') or 'n/a'} (discarded by the rebuild)"
        )
    lines += [
        "",
        "## Runbook steps",
        "",
        "| # | step | started | seconds | outcome | summary |",
        "|---|---|---|---|---|---|",
    ]
    for i, s in enumerate(r.steps, 1):
        lines.append(f"| {i} | {s.name} | {s.started_at} | {s.seconds:.3f} | {s.outcome} | {s.summary} |")
    if r.failover_steps:
        lines += ["", "### Failover", "", "| step | seconds | outcome |", "|---|---|---|"]
        lines += [f"| {f['name']} | {f['seconds']:.4f} | {f['outcome']} |" for f in r.failover_steps]
    lines += ["", "## Root-cause analysis", "", "_To be completed by the team (SRE book, appendix D)._", ""]
    for key, text in r.root_cause.items():
        lines += [f"### {key.replace('_', ' ').capitalize()}", "", text or "_…_", ""]
    return "\n".join(lines)
