"""SQLAlchemy tables.  The schema is owned by Alembic migrations (``migrations/``);
these models must match the latest revision (a test compares them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # deploy | rollback
    strategy: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[str | None] = mapped_column(String(128))
    to_version: Mapped[str] = mapped_column(String(128))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    phase: Mapped[str] = mapped_column(String(32))
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    phase_entered_at: Mapped[float] = mapped_column(Double)
    actor: Mapped[str] = mapped_column(String(128))
    policy_digest: Mapped[str] = mapped_column(String(64))
    policy_source: Mapped[str] = mapped_column(Text)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    operator_request: Mapped[str | None] = mapped_column(String(16))
    operator_actor: Mapped[str | None] = mapped_column(String(128))
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[float] = mapped_column(Double, default=0.0)
    created_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    detected_at: Mapped[float | None] = mapped_column(Double)
    rolled_back_at: Mapped[float | None] = mapped_column(Double)
    traffic_restored_at: Mapped[float | None] = mapped_column(Double)
    wave: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # index in the zone order
    pause_cause: Mapped[str | None] = mapped_column(String(16))  # operator | analysis (while paused)

    __table_args__ = (
        Index("ix_deployments_service_active", "service", "active"),
        # newest first, of all services or of one (migration 0017)
        Index("ix_deployments_created_at", "created_at"),
        Index("ix_deployments_service_created_at", "service", "created_at"),
    )


class StepRow(Base):
    __tablename__ = "deployment_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    outcome: Mapped[str] = mapped_column(String(16), default="running")  # running|ok|failed
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ServiceStateRow(Base):
    """The last good version of each service: what a rollback returns to."""

    __tablename__ = "service_state"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    stable_version: Mapped[str | None] = mapped_column(String(128))
    previous_version: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[float] = mapped_column(Double)


class AuditRow(Base):
    """Append-only, hash-chained log of every action (see ``domain.audit``)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[str] = mapped_column(String(40), index=True)
    source: Mapped[str] = mapped_column(String(16))
    # Widths are domain.audit's limits (ACTOR_MAX, ACTION_MAX, DEPLOYMENT_ID_MAX); migration 0004.
    actor: Mapped[str] = mapped_column(String(256), index=True)
    action: Mapped[str] = mapped_column(String(256), index=True)
    service: Mapped[str | None] = mapped_column(String(64))
    deployment_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    canonical: Mapped[str] = mapped_column(Text)

    # Kubernetes events (most entries) have no service or deployment: where the database can,
    # these two are indexed only where set (migration 0005); the queries test equality.
    __table_args__ = tuple(
        Index(
            f"ix_audit_log_{col}",
            col,
            sqlite_where=text(f"{col} IS NOT NULL"),
            postgresql_where=text(f"{col} IS NOT NULL"),
        )
        for col in ("service", "deployment_id")
    )


# -- access control (E5, E6) -------------------------------------------------------------------
class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    bindings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # role bindings with scopes
    allowed_cidrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mfa_secret: Mapped[str | None] = mapped_column(Text)  # envelope-encrypted
    mfa_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    recovery_codes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # hashes
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[float] = mapped_column(Double)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    allowed_cidrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float | None] = mapped_column(Double)
    revoked_at: Mapped[float | None] = mapped_column(Double)
    last_used_at: Mapped[float | None] = mapped_column(Double)


class SessionRow(Base):
    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[float] = mapped_column(Double)
    last_seen_at: Mapped[float] = mapped_column(Double)
    mfa_at: Mapped[float | None] = mapped_column(Double)
    revoked_at: Mapped[float | None] = mapped_column(Double)
    client_ip: Mapped[str | None] = mapped_column(String(64))


class AuthFailureRow(Base):
    """Failed logins per key ("user:alice", "ip:10.0.0.1") for lockout and back-off."""

    __tablename__ = "auth_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), index=True)
    at: Mapped[float] = mapped_column(Double)


class AccessGenerationRow(Base):
    """One row (``id`` 1): a counter bumped with every change that can alter whether a credential
    is accepted and what it may do — a token revoked, a user's roles, allowlist, password, MFA or
    disabled flag changed.  Cached verdicts are only committed at the generation they were made at."""

    __tablename__ = "access_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class AuthThrottleRow(Base):
    """One row per lockout key: the row every attempt on that key locks before it counts the key's
    recent attempts and reserves one, so that concurrent attempts are counted one after another."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    attempts: Mapped[int] = mapped_column(BigInteger, default=0)  # reservations ever made (a version)


class SecretRow(Base):
    """Secrets (webhook secrets, provider keys, notifier URLs), envelope-encrypted at rest."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    blob: Mapped[str] = mapped_column(Text)
    kek_id: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[float] = mapped_column(Double)


class AuditCheckpointRow(Base):
    """Signed checkpoints of the audit chain, themselves a chain (``prev``; ``domain.audit.checkpoints``).

    ``entries``/``prev``/``every`` are NULL in v1 checkpoints (before migration 0006).  ``prev`` is
    unique: a checkpoint has at most one successor, so two writers signing at once cannot fork the
    chain — the second one's insert fails and it retries after the first."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(128))  # "sha256:" + 64 hex (security.signing.fingerprint)
    signature: Mapped[str] = mapped_column(Text)
    entries: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    prev: Mapped[str | None] = mapped_column(String(64))
    every: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("prev", name="uq_audit_checkpoints_prev"),)


# -- changes, evidence, approvals (D1–D3, D9, E3) ----------------------------------------------
class ChangeRow(Base):
    __tablename__ = "changes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str | None] = mapped_column(String(64))
    repo: Mapped[str] = mapped_column(String(256))
    branch: Mapped[str] = mapped_column(String(256))
    head_sha: Mapped[str] = mapped_column(String(64), index=True)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    author: Mapped[str | None] = mapped_column(String(128))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # files, lines changed
    status: Mapped[str] = mapped_column(
        String(24), index=True
    )  # pending|waiting_approval|approved|rejected|merged|blocked
    classification: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    gates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # last evaluation
    reason: Mapped[str] = mapped_column(Text, default="")
    merge_sha: Mapped[str | None] = mapped_column(String(64))
    deployment_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class EvidenceRow(Base):
    __tablename__ = "evidence"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    commit_sha: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # junit|sarif|k6|locust|ci|uat|backup|rollback_plan
    category: Mapped[str] = mapped_column(String(64))
    pipeline: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    digest: Mapped[str] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_name: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Double)


class ApprovalRow(Base):
    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[str] = mapped_column(ForeignKey("changes.id"), index=True)
    commit_sha: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # approve|reject
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[float] = mapped_column(Double)


class WebhookDeliveryRow(Base):
    """Seen webhook deliveries, for replay protection: the provider's event id and, since 0006,
    the sha256 of the accepted body (GitHub signs no id or time, so a replayed body is caught
    by its digest)."""

    __tablename__ = "webhook_deliveries"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[float] = mapped_column(Double)
    body_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ux_webhook_deliveries_body", "provider", "body_sha256", unique=True),)


class AnalysisRecordRow(Base):
    """Every judge sample pair and metric measurement an analysis saw, in order (for resume and replay)."""

    __tablename__ = "analysis_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    key: Mapped[str] = mapped_column(String(32))  # background | step-N | pre | post
    kind: Mapped[str] = mapped_column(String(16))  # judge | metric
    name: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Double)
    step_index: Mapped[int] = mapped_column(Integer)
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    canary: Mapped[dict[str, Any]] = mapped_column(JSON)


# -- disaster recovery (E6, E9, E10): migration 0009_dr_catalogue ----------------------------------
class DrBackupRow(Base):
    """The backup catalogue: every snapshot, dump, archived binlog and configuration bundle."""

    __tablename__ = "dr_backups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # snapshot | logical | binlog | config
    status: Mapped[str] = mapped_column(String(16))  # ok | corrupt | missing | deleted
    created_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    source: Mapped[str] = mapped_column(String(256))
    location: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    raw_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    gtid: Mapped[str] = mapped_column(Text)
    gtid_end: Mapped[str] = mapped_column(Text)
    binlog_file: Mapped[str | None] = mapped_column(String(128))
    binlog_pos: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class DrVerificationRow(Base):
    """Restore tests: what the checklist's "backup verified" gate reads."""

    __tablename__ = "dr_verifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    backup_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float] = mapped_column(Double)
    ok: Mapped[bool] = mapped_column()
    detail: Mapped[str] = mapped_column(Text)
    tables: Mapped[int] = mapped_column(Integer)
    mismatches: Mapped[dict[str, Any]] = mapped_column(JSON)
    gtid: Mapped[str] = mapped_column(Text)


class DrDrillRow(Base):
    """Failovers and drills with their measured RTO/RPO and the full report."""

    __tablename__ = "dr_drills"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float] = mapped_column(Double)
    passed: Mapped[bool] = mapped_column()
    rto_s: Mapped[float | None] = mapped_column(Double)
    rpo_lost: Mapped[int | None] = mapped_column(Integer)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class DrTopologyRow(Base):
    """Which instance is each service's primary now; changed only by failover (epoch + 1, CAS)."""

    __tablename__ = "dr_topology"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    primary_endpoint: Mapped[str] = mapped_column(String(256))
    replicas: Mapped[dict[str, Any]] = mapped_column(JSON)
    fenced: Mapped[dict[str, Any]] = mapped_column(JSON)
    epoch: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Double)


class IncidentRow(Base):
    """One incident (D12); its timeline is read from the audit log, not stored here."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    service: Mapped[str | None] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), index=True)
    commander: Mapped[str | None] = mapped_column(String(128))
    opened_at: Mapped[float] = mapped_column(Double, index=True)
    opened_by: Mapped[str] = mapped_column(String(256))
    onset_at: Mapped[float] = mapped_column(Double)
    detected_at: Mapped[float] = mapped_column(Double)
    alert_fingerprint: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[float | None] = mapped_column(Double)
    identified_at: Mapped[float | None] = mapped_column(Double)
    mitigated_at: Mapped[float | None] = mapped_column(Double)
    restored_at: Mapped[float | None] = mapped_column(Double)
    resolved_at: Mapped[float | None] = mapped_column(Double)
    summary: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[float] = mapped_column(Double)


class IncidentAlertRow(Base):
    """An alert change seen while the incident was open (alerting delivers at least once: unique)."""

    __tablename__ = "incident_alerts"
    __table_args__ = (
        UniqueConstraint(
            "incident_id", "fingerprint", "status", "starts_at", name="uq_incident_alert_change"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(32), ForeignKey("incidents.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    service: Mapped[str | None] = mapped_column(String(64))
    starts_at: Mapped[float] = mapped_column(Double)
    ends_at: Mapped[float | None] = mapped_column(Double)
    audit_seq: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[float] = mapped_column(Double)


class IncidentActionItemRow(Base):
    """A follow-up from the post-incident review, tracked to closure."""

    __tablename__ = "incident_action_items"

    incident_id: Mapped[str] = mapped_column(String(32), ForeignKey("incidents.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), index=True)
    due: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(256))
    closed_at: Mapped[float | None] = mapped_column(Double)
    note: Mapped[str] = mapped_column(Text, default="")


class AlertingAlertRow(Base):
    """One alert by fingerprint (E8): its latest labels, state and times (migration 0012)."""

    __tablename__ = "alerting_alerts"

    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(8), index=True)  # firing | resolved
    starts_at: Mapped[float] = mapped_column(Double)
    ends_at: Mapped[float | None] = mapped_column(Double)
    generator_url: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[float] = mapped_column(Double)


class AlertingGroupRow(Base):
    """An alert group for one receiver, and its notification log (what its last notice said)."""

    __tablename__ = "alerting_groups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # digest of (group key, receiver)
    group_key: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(String(64))
    route_id: Mapped[str] = mapped_column(String(255))
    group_labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_at: Mapped[float] = mapped_column(Double)
    last_flush_at: Mapped[float | None] = mapped_column(Double)
    next_flush_at: Mapped[float | None] = mapped_column(Double, index=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    firing: Mapped[list[str]] = mapped_column(JSON, default=list)
    resolved: Mapped[list[str]] = mapped_column(JSON, default=list)
    sent_at: Mapped[float | None] = mapped_column(Double)
    opened_at: Mapped[float | None] = mapped_column(Double)


class AlertingMemberRow(Base):
    __tablename__ = "alerting_members"

    group_id: Mapped[str] = mapped_column(String(32), ForeignKey("alerting_groups.id"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True, index=True)


class AlertingOutboxRow(Base):
    """A notice (or an escalation or incident call) to hand over at least once, once per key."""

    __tablename__ = "alerting_outbox"
    __table_args__ = (UniqueConstraint("notice_id", "target", name="uq_alerting_outbox_notice"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(200))  # kind:name, e.g. apprise:OPS_URL, pagerduty:PD_KEY
    group_id: Mapped[str | None] = mapped_column(String(32), index=True)
    receiver: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Double)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float | None] = mapped_column(Double, index=True)
    delivered_at: Mapped[float | None] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    last_error: Mapped[str] = mapped_column(Text, default="")


class AlertingSilenceRow(Base):
    __tablename__ = "alerting_silences"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    matchers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    owner: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[float] = mapped_column(Double)
    ends_at: Mapped[float] = mapped_column(Double, index=True)
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(256))
    expired_by: Mapped[str | None] = mapped_column(String(256))


class MainHeadRow(Base):
    """The head of each watched main branch whose commits have been judged (D9, since 0015).

    Moved by compare-and-set in the transaction that records the verdicts, so two processes that
    see the same push judge it once."""

    __tablename__ = "main_heads"

    branch: Mapped[str] = mapped_column(String(256), primary_key=True)
    sha: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[float] = mapped_column(Double)


class MainCommitRow(Base):
    """One commit's verdict as it arrived on main (D9): deployed through the gates, covered by its
    change, or a violation; ``effect`` is what that verdict still has to do (a deployment to start,
    an alert to send), recorded before it is done."""

    __tablename__ = "main_commits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    branch: Mapped[str] = mapped_column(String(256))
    sha: Mapped[str] = mapped_column(String(64), index=True)
    arrival: Mapped[str] = mapped_column(String(64))  # the head of the update it came with
    previous: Mapped[str | None] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(64))
    parents: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    author: Mapped[str] = mapped_column(String(256))
    subject: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(16), index=True)  # deploy | covered | violation
    change_id: Mapped[str | None] = mapped_column(String(32))
    why: Mapped[str] = mapped_column(Text, default="")
    effect: Mapped[str] = mapped_column(String(16))  # pending | done | none
    effect_detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seen_at: Mapped[float] = mapped_column(Double)
    accepted_by: Mapped[str | None] = mapped_column(String(128))
    accepted_at: Mapped[float | None] = mapped_column(Double)
    accept_reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_main_commits_branch_verdict", "branch", "verdict", "id"),)


class OnCallEscalationRow(Base):
    """An escalation (E8): its frozen policy, state and the due time of its next step."""

    __tablename__ = "oncall_escalations"
    __table_args__ = (UniqueConstraint("open_key", name="uq_oncall_escalations_open_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_key: Mapped[str] = mapped_column(String(255))
    open_key: Mapped[str | None] = mapped_column(String(255))
    service: Mapped[str | None] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer)
    next_due: Mapped[float | None] = mapped_column(Double, index=True)
    opened_at: Mapped[float] = mapped_column(Double, index=True)
    acked_at: Mapped[float | None] = mapped_column(Double)
    acked_by: Mapped[str | None] = mapped_column(String(256))
    resolved_at: Mapped[float | None] = mapped_column(Double)
    resolved_by: Mapped[str | None] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)


class OnCallPageRow(Base):
    """A page an escalation step sent (or will retry): written in the step's transaction."""

    __tablename__ = "oncall_pages"
    __table_args__ = (UniqueConstraint("dedupe_key", name="uq_oncall_pages_dedupe_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    escalation_id: Mapped[str] = mapped_column(String(32), ForeignKey("oncall_escalations.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    person: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    next_attempt_at: Mapped[float | None] = mapped_column(Double, index=True)
    sent_at: Mapped[float | None] = mapped_column(Double)
    detail: Mapped[str] = mapped_column(String(500))


class OnCallLinkNonceRow(Base):
    """A signed link's nonce, spent: the link acts once."""

    __tablename__ = "oncall_link_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    escalation_id: Mapped[str] = mapped_column(String(32))
    used_at: Mapped[float] = mapped_column(Double)


class OnCallOverrideRow(Base):
    """An override made from the CLI or the API (migration ``0018``); removal keeps the row."""

    __tablename__ = "oncall_overrides"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    schedule: Mapped[str] = mapped_column(String(64), index=True)
    person: Mapped[str] = mapped_column(String(128))
    start_at: Mapped[float] = mapped_column(Double)
    end_at: Mapped[float] = mapped_column(Double)
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(256))
    removed_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    removed_by: Mapped[str | None] = mapped_column(String(256), nullable=True)


class OnCallFeedTokenRow(Base):
    """A person's calendar feed token: its SHA-256 only (migration ``0018``)."""

    __tablename__ = "oncall_feed_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    person: Mapped[str] = mapped_column(String(128))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(256))
    revoked_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
