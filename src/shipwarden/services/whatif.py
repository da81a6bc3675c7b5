"""``shipwarden replay``: what would a (changed) policy have decided on a past rollout's metrics?

Feeds the analysis records stored during the rollout, in their original order,
through the analyses the given policy declares for the same keys (background,
step-N, pre, post), and reports for each when and why it would have passed,
failed or turned inconclusive.
"""

from __future__ import annotations

from typing import Any

from shipwarden.domain.analysis import AnalysisSpec
from shipwarden.domain.analysis_run import AnalysisRun, RunState
from shipwarden.domain.policy import AnalysisStep, Policy
from shipwarden.ports.store import DeploymentStore
from shipwarden.services.analysis import has_baseline


def _spec_for(policy: Policy, service: str, key: str) -> tuple[AnalysisSpec | None, bool]:
    st = policy.service(service).strategy
    if st.canary is not None:
        if key == "background":
            return st.canary.analysis, False
        if key.startswith("step-"):
            i = int(key.split("-", 1)[1])
            step = st.canary.steps[i] if i < len(st.canary.steps) else None
            if isinstance(step, AnalysisStep):
                return (
                    step.analysis if isinstance(step.analysis, AnalysisSpec) else st.canary.analysis
                ), True
    if st.blue_green is not None:
        if key == "pre":
            return st.blue_green.pre_promotion_analysis, True
        if key == "post":
            return st.blue_green.post_promotion_analysis, True
    return None, False


def replay(store: DeploymentStore, dep_id: str, policy: Policy) -> dict[str, Any]:
    dep = store.get(dep_id)
    records = store.analysis_records(dep_id)
    keys = list(dict.fromkeys(r["key"] for r in records))
    out: dict[str, Any] = {
        "deployment": dep_id,
        "service": dep.service,
        "actual_outcome": dep.outcome,
        "actual_reason": dep.reason,
        "analyses": [],
    }
    for key in keys:
        recs = [r for r in records if r["key"] == key]
        spec, gating = _spec_for(policy, dep.service, key)
        if spec is None:
            out["analyses"].append({"key": key, "records": len(recs), "decision": "not in this policy"})
            continue
        run = AnalysisRun.new(spec, recs[0]["at"], gating=gating, has_baseline=has_baseline(dep))
        decision: dict[str, Any] = {
            "key": key,
            "records": len(recs),
            "decision": "running",
            "after_s": None,
            "at_record": None,
            "reason": "no verdict by the end",
        }
        for n, r in enumerate(recs, 1):
            run.replay([r])
            st = run.status()
            if st.state is not RunState.RUNNING:
                would = {
                    RunState.FAILED: "rollback",
                    RunState.PASSED: "promote",
                    RunState.INCONCLUSIVE: "pause (inconclusive)",
                }[st.state]
                decision.update(
                    decision=would, after_s=round(r["at"] - recs[0]["at"], 3), at_record=n, reason=st.detail
                )
                break
        out["analyses"].append(decision)
    return out
