"""Rollout alerts: tell the operations team when a deployment rolls back, fails or waits (D7, D8).

:class:`RolloutAlerts` is given each deployment the controller has just moved (and, when a
``run`` ends, the final one).  It asks the pure :func:`~shipwarden.domain.alerts.rollout_alert`
what that state calls for, sends it through Apprise to the policy's targets, and writes one
``alert.rollout`` audit entry per alert with the masked targets and what each answered.

The audit log is the ledger: an alert whose key already has an entry for this deployment is
not sent again.  Because the state is read rather than the transition, a controller killed
between a transition and its alert sends the alert when any process drives the deployment
again — at least once; a crash between sending and the audit entry may send it twice.
Delivery failures are recorded, never raised: an alert must not stop a rollback.

When the policy has an ``alerting`` section, the alert also enters the alerting pipeline
(``sink``: routed, grouped, deduplicated, delivered through the durable outbox like any other
alert) as ``alertname=Rollout<Event>`` with the service, the deployment and a severity
(``failure`` → critical, ``warning`` → warning, otherwise info); it resolves by itself after
:data:`ROLLOUT_ALERT_TTL` (it is an event, not a state).  With ``sink`` and no ``urls`` of its
own, the pipeline is the only way out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shipwarden.domain.alerting import Alert as PipelineAlert
from shipwarden.domain.alerts import Alert, DeploymentView, RolloutAlertSpec, rollout_alert
from shipwarden.ports.store import Deployment, DeploymentStore
from shipwarden.services.notify import Notifier

log = logging.getLogger(__name__)

ACTION = "alert.rollout"
ROLLOUT_ALERT_TTL = 300.0
_SEVERITY = {"failure": "critical", "warning": "warning"}

SecretLookup = Callable[[str], str | None]


def view(d: Deployment) -> DeploymentView:
    return DeploymentView(
        id=d.id,
        service=d.service,
        kind=d.kind,
        from_version=d.from_version,
        to_version=d.to_version,
        phase=d.phase,
        step_index=d.step_index,
        paused=d.paused,
        reason=d.reason,
        actor=d.actor,
        operator_actor=d.operator_actor,
        created_at=d.created_at,
        detected_at=d.detected_at,
        traffic_restored_at=d.traffic_restored_at,
        pause_cause=d.pause_cause,
    )


class RolloutAlerts:
    def __init__(
        self,
        store: DeploymentStore,
        spec: RolloutAlertSpec,
        secrets: SecretLookup,
        *,
        timeout: float = 10.0,
        sink: Callable[[list[PipelineAlert]], object] | None = None,
        direct: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.spec, self.secrets, self.timeout = store, spec, secrets, timeout
        self.sink, self.direct, self.clock = sink, direct, clock

    def due(self, dep: Deployment) -> Alert | None:
        """The alert ``dep``'s state calls for that has not been sent yet."""
        alert = rollout_alert(view(dep), self.spec)
        if alert is None:
            return None
        sent = list(self.store.audit_entries(deployment_id=dep.id, action=ACTION))
        if any((e.detail or {}).get("key") == alert.key for e in sent):
            return None
        return alert

    def __call__(self, dep: Deployment) -> Alert | None:
        """Send what ``dep`` calls for (if anything is still due); return the alert sent."""
        alert = self.due(dep)
        if alert is None:
            return None
        detail: dict[str, object] = {"key": alert.key, "event": alert.event.value, "title": alert.title}
        ok = True
        if self.sink is not None:
            now = self.clock()
            labels = {
                "alertname": f"Rollout{alert.event.value.capitalize()}", "service": dep.service,
                "severity": _SEVERITY.get(alert.severity, "info"), "deployment": dep.id, "source": "rollout",
            }
            self.sink([PipelineAlert(labels, {"summary": alert.title, "description": alert.body}, now,
                                     ends_at=now + ROLLOUT_ALERT_TTL)])
            detail["via"] = "alerting"
        if self.direct:
            notifier = Notifier([(n, self.secrets(n)) for n in self.spec.urls], timeout=self.timeout)
            result = notifier.send(alert.title, alert.body, alert.severity)
            detail.update(result.as_dict())
            ok = result.ok
        self.store.audit(
            actor="controller",
            action=ACTION,
            outcome="ok" if ok else "failed",
            service=dep.service,
            deployment_id=dep.id,
            detail=detail,
        )
        if not ok:
            log.warning("rollout alert %s for %s not delivered to every target", alert.key, dep.id)
        return alert
