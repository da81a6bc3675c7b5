"""Alerting (E7, E8), pure: alerts and fingerprints, the routing tree, inhibitions, silences,
the notification log, the ``alerting:`` and ``monitoring:`` policy sections and the Prometheus
rules they generate, and Alertmanager's webhook contract.  No I/O here: the pipeline
(``services/alerting``) stores, schedules and delivers."""

from shipwarden.domain.alerting.model import Alert, Matcher, fingerprint, matches_all
from shipwarden.domain.alerting.monitoring import (
    CustomCondition,
    MonitoringPolicy,
    ServiceMonitoring,
    condition_step,
    prometheus_rules,
    promql_duration,
    threshold_state,
)
from shipwarden.domain.alerting.nflog import LogEntry, after_notice, needs_update, next_flush
from shipwarden.domain.alerting.routing import (
    Inhibitor,
    InhibitRule,
    Rollback,
    Route,
    Silence,
    group_key,
    group_labels,
    inhibited,
    match_routes,
    muted,
    silenced_by,
)
from shipwarden.domain.alerting.spec import AlertingPolicy, ReceiverSpec, RouteSpec
from shipwarden.domain.alerting.webhook import PostableAlert, WebhookMessage

__all__ = [
    "Alert",
    "AlertingPolicy",
    "CustomCondition",
    "InhibitRule",
    "Inhibitor",
    "LogEntry",
    "Matcher",
    "MonitoringPolicy",
    "PostableAlert",
    "ReceiverSpec",
    "Rollback",
    "Route",
    "RouteSpec",
    "ServiceMonitoring",
    "Silence",
    "WebhookMessage",
    "after_notice",
    "condition_step",
    "fingerprint",
    "group_key",
    "group_labels",
    "inhibited",
    "match_routes",
    "matches_all",
    "muted",
    "needs_update",
    "next_flush",
    "prometheus_rules",
    "promql_duration",
    "silenced_by",
    "threshold_state",
]
