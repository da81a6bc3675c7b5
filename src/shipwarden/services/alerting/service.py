"""Alerting use cases behind the API and the CLI: receive alerts, silences, rules, NRQL.

* :meth:`AlertingService.receive` authenticates a delivery (Alertmanager's webhook, or
  Prometheus posting straight to ``/api/v2/alerts``), checks it against the documented contract
  and stores its alerts durably before answering — a sender that got its 200 has handed the
  alerts over, whatever happens to this process next.
* Silences have an owner, a comment and an expiry (at most :data:`MAX_SILENCE`); adding or
  expiring one re-flushes every group, so muted alerts are told at once when it ends.
* :meth:`AlertingService.write_rules` renders the policy's ``monitoring`` section as a
  Prometheus rules file and hands it to the :class:`RulesTarget` (validate, replace, reload).
* :class:`NrqlConditions` evaluates the NRQL conditions through the New Relic provider and
  feeds the pipeline like any other alert source.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets as _secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import yaml
from pydantic import TypeAdapter, ValidationError

from shipwarden.domain.alerting import (
    Alert,
    Matcher,
    MonitoringPolicy,
    Silence,
    condition_step,
    prometheus_rules,
)
from shipwarden.domain.alerting.monitoring import CustomCondition
from shipwarden.domain.alerting.webhook import MAX_ALERTS, PostableAlert, WebhookMessage
from shipwarden.domain.jsonlimits import loads_bounded
from shipwarden.ports.alerting import AlertingStore
from shipwarden.services.alerting.pipeline import AlertEngine, AlertPipeline

__all__ = [
    "AlertingError",
    "AlertingService",
    "MAX_SILENCE",
    "NrqlConditions",
    "RulesTarget",
]

log = logging.getLogger(__name__)

MAX_SILENCE = 90 * 24 * 3600.0
SIGNATURE_HEADER = "x-shipwarden-signature"


class AlertingError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class RulesTarget(Protocol):
    """Where generated rules go: validated (``promtool check rules``), written in place of the
    old file atomically, and Prometheus reloaded."""

    def apply(self, text: str) -> str:
        """Returns what was done (for the audit entry); raises ``ValueError`` if invalid."""
        ...


_POSTABLE = TypeAdapter(list[PostableAlert])


@dataclass
class AlertingService:
    pipeline: AlertPipeline
    engine: AlertEngine | None
    token: Callable[[], str | None]
    """The shared secret of the alert senders (bearer token / HMAC key); ``None``: refuse all."""
    monitoring: MonitoringPolicy | None = None
    team: str = ""
    rules_target: RulesTarget | None = None
    clock: Callable[[], float] = time.time

    @property
    def store(self) -> AlertingStore:
        return self.pipeline.store

    # -- receiving ------------------------------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str:
        """``bearer`` or ``hmac`` if the delivery carries the shared secret; raises 401 otherwise."""
        secret = self.token()
        if not secret:
            raise AlertingError(
                401,
                "alert senders are not configured: set the secret named by "
                "SHIPWARDEN_ALERT_WEBHOOK_SECRET (default ALERT_WEBHOOK_TOKEN)",
            )
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), secret.encode()):
            return "bearer"
        sig = headers.get(SIGNATURE_HEADER, "")
        if sig.startswith("sha256="):
            want = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(sig[7:].strip().lower().encode(), want.encode()):
                return "hmac"
        raise AlertingError(
            401, "missing or wrong credentials (Authorization: Bearer, or X-Shipwarden-Signature)"
        )

    def parse(self, body: bytes, kind: Literal["webhook", "prometheus"]) -> list[Alert]:
        try:
            doc = loads_bounded(body)
        except ValueError as exc:
            raise AlertingError(400, f"not JSON: {exc}") from None
        now = self.clock()
        try:
            if kind == "webhook":
                return WebhookMessage.model_validate(doc).to_alerts(now)
            if isinstance(doc, list) and len(doc) > MAX_ALERTS:
                raise AlertingError(400, f"more than {MAX_ALERTS} alerts in one request")
            return [a.alert(now) for a in _POSTABLE.validate_python(doc)]
        except ValidationError as exc:
            e = exc.errors()[0]
            where = ".".join(str(p) for p in e["loc"]) or "(body)"
            raise AlertingError(400, f"{where}: {e['msg']}") from None

    def receive(
        self, headers: Mapping[str, str], body: bytes, kind: Literal["webhook", "prometheus"]
    ) -> dict[str, Any]:
        self.authenticate(headers, body)
        alerts = self.parse(body, kind)
        changed = self.pipeline.ingest(alerts, source="alertmanager" if kind == "webhook" else "prometheus")
        if self.engine is not None and changed:  # a re-send (Prometheus every second) schedules nothing
            self.engine.wake()
        return {"alerts": len(alerts), "changed": changed}

    def ingest(self, alerts: Sequence[Alert], *, source: str) -> int:
        changed = self.pipeline.ingest(alerts, source=source)
        if self.engine is not None and changed:
            self.engine.wake()
        return changed

    # -- silences -------------------------------------------------------------------------------
    def add_silence(
        self,
        matchers: Sequence[str],
        *,
        owner: str,
        comment: str,
        duration: float,
        actor: str,
        starts_at: float | None = None,
    ) -> Silence:
        if not matchers:
            raise AlertingError(400, "a silence needs at least one matcher (name=value, name=~regex, ...)")
        try:
            parsed = tuple(Matcher.parse(m) for m in matchers)
        except ValueError as exc:
            raise AlertingError(400, str(exc)) from None
        if all(m.matches({}) for m in parsed):
            raise AlertingError(400, "these matchers match every alert: name at least one label value")
        owner = owner.strip()
        if not owner or len(owner) > 128:
            raise AlertingError(400, "a silence needs an owner (1-128 characters)")
        if not comment.strip() or len(comment) > 2000:
            raise AlertingError(400, "a silence needs a comment saying why (1-2000 characters)")
        if not 0 < duration <= MAX_SILENCE:
            raise AlertingError(
                400, f"a silence lasts more than 0 s and at most {MAX_SILENCE / 86400:.0f} days"
            )
        now = self.clock()
        start = now if starts_at is None else starts_at
        silence = Silence(_secrets.token_hex(8), parsed, start, start + duration, owner, comment.strip())
        self.store.add_silence(silence, actor=actor, now=now)
        self.store.reschedule_all(now)
        if self.engine is not None:
            self.engine.wake()
        return silence

    def silences(self, *, include_expired: bool = False) -> list[Silence]:
        return self.store.silences(now=self.clock(), include_expired=include_expired)

    def expire_silence(self, silence_id: str, *, actor: str) -> Silence:
        now = self.clock()
        s = self.store.expire_silence(silence_id, actor=actor, now=now)
        if s is None:
            raise AlertingError(404, f"no silence {silence_id!r}")
        self.store.reschedule_all(now)
        if self.engine is not None:
            self.engine.wake()
        return s

    # -- rules ----------------------------------------------------------------------------------
    def rules_text(self) -> str:
        if self.monitoring is None:
            raise AlertingError(409, "the policy has no 'monitoring' section")
        doc = prometheus_rules(self.monitoring, team=self.team)
        head = "# generated by shipwarden from the policy's monitoring section: do not edit\n"
        return head + str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000))

    def write_rules(self) -> str:
        if self.rules_target is None:
            raise AlertingError(409, "no rules file configured (SHIPWARDEN_PROMETHEUS_RULES_FILE)")
        text = self.rules_text()
        try:
            return self.rules_target.apply(text)
        except ValueError as exc:
            raise AlertingError(422, str(exc)) from None


Query = Callable[[CustomCondition, str, float], float | None]
"""``(condition, service, at) → value`` (``None``: no data or the provider failed)."""


@dataclass
class NrqlConditions:
    """Evaluates NRQL conditions on their ``interval`` and feeds their alerts to the pipeline."""

    conditions: Sequence[tuple[str, CustomCondition]]
    query: Query
    sink: Callable[[Sequence[Alert]], int]
    team: str = ""
    clock: Callable[[], float] = time.time
    _pending: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    _firing: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    _due: dict[tuple[str, str], float] = field(default_factory=dict)

    def _labels(self, service: str, c: CustomCondition, severity: str) -> dict[str, str]:
        return {
            "alertname": c.name,
            "service": service,
            "severity": severity,
            "team": self.team,
            "signal": "custom",
            "source": "nrql",
        }

    def evaluate_once(self, service: str, c: CustomCondition) -> list[Alert]:
        now = self.clock()
        key = (service, c.name)
        try:
            value = self.query(c, service, now)
        except Exception as exc:  # a provider failure is no data, never a crash of the loop
            log.warning("NRQL condition %s of %s: %s", c.name, service, type(exc).__name__)
            value = None
        pending, firing = condition_step(self._pending.get(key, {}), value, now=now, cond=c)
        self._pending[key] = pending
        was = self._firing.get(key, {})
        out: list[Alert] = []
        summary = c.summary or f"{service}: {c.name} is {value}"
        for sev in firing:
            starts = was.get(sev, pending[sev] + c.for_)
            out.append(
                Alert(self._labels(service, c, sev), {"summary": summary, "value": f"{value}"}, starts)
            )
        for sev, starts in was.items():
            if sev not in firing:
                out.append(Alert(self._labels(service, c, sev), {"summary": summary}, starts, ends_at=now))
        self._firing[key] = {sev: was.get(sev, pending[sev] + c.for_) for sev in firing}
        return out

    def run_due(self) -> int:
        now = self.clock()
        alerts: list[Alert] = []
        for service, c in self.conditions:
            key = (service, c.name)
            if self._due.get(key, 0.0) <= now:
                self._due[key] = now + c.interval
                alerts += self.evaluate_once(service, c)
        return self.sink(alerts) if alerts else 0

    def loop(self, stop: threading.Event, *, tick: float = 1.0) -> None:
        while not stop.wait(tick):
            try:
                self.run_due()
            except Exception:
                log.exception("NRQL conditions failed")
