"""Stand-ins for alerting's side of ``ports.incidents`` until it lands (E7, E8).

* :class:`FakeOnCall` — an ``OnCallLookup`` from a dict ``service → [names]`` (``None``: every
  other service); records every question asked;
* :class:`FakeAlerting` — does what alerting promises the seam: records each alert change in the
  audit log first (``alert.firing`` / ``alert.resolved``, the alert's fingerprint in the detail)
  and then tells the ``IncidentSink``, with the entry's seq in ``AlertSignal.audit_seq``;
* :class:`FakeRollbacks` — a ``ServiceRollback`` that records calls (for use-case tests; the
  integration tests use the real rollout service through bootstrap's adapter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shipwarden.adapters.store.audit_repo import AuditRepo
from shipwarden.domain.audit import AuditChain, EntryDraft
from shipwarden.ports.incidents import AlertSignal, IncidentSink


@dataclass
class FakeOnCall:
    rota: Mapping[str | None, list[str]]
    asked: list[tuple[str | None, datetime]] = field(default_factory=list)

    def on_call(self, service: str | None, at: datetime) -> list[str]:
        self.asked.append((service, at))
        return list(self.rota.get(service, self.rota.get(None, [])))


def fingerprint(name: str, service: str | None) -> str:
    return hashlib.sha256(f"alertname={name},service={service}".encode()).hexdigest()[:16]


class FakeAlerting:
    def __init__(self, repo: AuditRepo, chain: AuditChain, sink: IncidentSink) -> None:
        self.repo, self.chain, self.sink = repo, chain, sink
        self.sent: list[AlertSignal] = []

    def change(
        self,
        name: str,
        *,
        service: str | None,
        status: Literal["firing", "resolved"],
        starts_at: datetime,
        severity: Literal["critical", "warning", "info"] = "critical",
        ends_at: datetime | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        deliver: int = 1,
    ) -> AlertSignal:
        fp = fingerprint(name, service)
        head = self.repo.append(
            [EntryDraft(actor="alerting", action=f"alert.{status}", service=service,
                        detail={"alertname": name, "fingerprint": fp, "status": status,
                                "severity": severity})],
            self.chain,
        )  # fmt: skip
        signal = AlertSignal(
            fingerprint=fp, name=name, severity=severity, status=status, starts_at=starts_at, ends_at=ends_at,
            service=service, labels=dict(labels or {}), annotations=dict(annotations or {}),
            audit_seq=head.seq,
        )  # fmt: skip
        for _ in range(deliver):  # at-least-once delivery
            self.sink.alert_changed(signal)
        self.sent.append(signal)
        return signal


@dataclass
class FakeRollbacks:
    deployments: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    current_of: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail: Exception | None = None

    def current(self, service: str) -> tuple[str | None, str | None]:
        return self.current_of.get(service, (None, None))

    def deployment(self, deployment_id: str) -> tuple[str, str, str]:
        return self.deployments[deployment_id]

    def rollback(self, service: str, *, actor: str) -> str:
        if self.fail is not None:
            raise self.fail
        self.calls.append((service, actor))
        return f"d-rollback-{len(self.calls)}"


def detail_of(entry: Any) -> dict[str, Any]:
    return dict(entry.detail)
