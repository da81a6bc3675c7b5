"""Which deployment states page the operations team, what the page says, and the policy section."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shipwarden.domain.alerts import DeploymentView, RolloutAlertSpec, RolloutEvent, rollout_alert
from shipwarden.domain.policy import PolicyError, load_policy_text
from shipwarden.domain.rollout import Phase

EXAMPLE = Path(__file__).parents[3] / "examples" / "policy.yaml"
EVERYTHING = RolloutAlertSpec(urls=["OPS"], events=list(RolloutEvent))

DEP = DeploymentView(
    id="d-1", service="web", kind="deploy", from_version="v1", to_version="v2", phase=Phase.CANARY_STEP,
    step_index=1, paused=False, reason="canary step 1", actor="ci", operator_actor=None, created_at=100.0,
    detected_at=None, traffic_restored_at=None,
)  # fmt: skip


def test_steps_in_progress_page_nobody() -> None:
    for phase in (Phase.PENDING, Phase.STARTING, Phase.PREVIEW, Phase.CANARY_STEP, Phase.SCALING_DOWN):
        assert rollout_alert(replace(DEP, phase=phase), EVERYTHING) is None


def test_an_automatic_rollback_is_a_failure_page_with_detection_and_restore_times() -> None:
    d = replace(
        DEP, phase=Phase.ROLLED_BACK, reason="analysis failed: error_rate worse than baseline",
        detected_at=130.0, traffic_restored_at=131.25,
    )  # fmt: skip
    alert = rollout_alert(d, RolloutAlertSpec(urls=["OPS"]))
    assert alert is not None and alert.event is RolloutEvent.ROLLBACK and alert.key == "rollback"
    assert alert.severity == "failure" and alert.title == "[shipwarden] web: v2 rolled back automatically"
    assert "reason: analysis failed: error_rate worse than baseline" in alert.body
    assert "detected 30.0s after the deployment started" in alert.body
    assert "traffic back on v1 1.25s later" in alert.body


def test_an_operator_rollback_names_the_operator_and_is_a_warning() -> None:
    d = replace(DEP, phase=Phase.ROLLING_BACK, operator_actor="alice", reason="rollback requested by alice")
    alert = rollout_alert(d, EVERYTHING)
    assert alert is not None and alert.severity == "warning"
    assert alert.title == "[shipwarden] web: v2 being rolled back by operator alice"


def test_a_rollback_deployment_finishing_is_not_itself_a_rollback_alert() -> None:
    d = replace(DEP, kind="rollback", phase=Phase.SUCCEEDED, from_version="v2", to_version="v1")
    assert rollout_alert(d, RolloutAlertSpec(urls=["OPS"])) is None  # default events: rollback, failed
    assert rollout_alert(d, EVERYTHING).event is RolloutEvent.SUCCEEDED  # type: ignore[union-attr]


def test_failed_and_paused_and_the_default_events() -> None:
    failed = rollout_alert(replace(DEP, phase=Phase.FAILED, reason="nothing to roll back to"), EVERYTHING)
    assert failed is not None and failed.severity == "failure" and "needs an operator" in failed.title
    paused = replace(DEP, paused=True, pause_cause="analysis", step_index=3)
    paused = replace(paused, reason="paused: analysis inconclusive (no data)")
    alert = rollout_alert(paused, EVERYTHING)
    assert alert is not None and alert.key == "paused@3" and "shipwarden promote web" in alert.body
    assert rollout_alert(paused, RolloutAlertSpec(urls=["OPS"])) is None
    assert rollout_alert(replace(paused, reason="paused by bob", pause_cause="operator"), EVERYTHING) is None
    # the cause is the recorded one, not the reason's wording
    assert rollout_alert(replace(paused, reason="paused: analysis inconclusive", pause_cause="operator"),
                         EVERYTHING) is None


def test_policy_section_is_checked_with_line_and_field() -> None:
    section = "alerts:\n  rollout:\n    urls: ['json://x@y/z']\n    events: [rollback, fire]\n"
    text = EXAMPLE.read_text() + section
    with pytest.raises(PolicyError) as exc:
        load_policy_text(text, "team.yaml")
    fields = {i.field for i in exc.value.issues}
    assert fields == {"alerts.rollout.urls", "alerts.rollout.events[1]"}, exc.value.issues
    assert all(i.line is not None and i.line > 1 for i in exc.value.issues)
    ok = load_policy_text(EXAMPLE.read_text() + "alerts:\n  rollout: {urls: [OPS_HOOK]}\n", "team.yaml")
    assert ok.policy.alerts is not None and ok.policy.alerts.rollout is not None
    assert ok.policy.alerts.rollout.events == [RolloutEvent.ROLLBACK, RolloutEvent.FAILED]
