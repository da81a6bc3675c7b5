"""The ``databases`` section of a policy: each service's replicated database and its objectives.

::

    databases:
      - service: hello                    # a service declared under 'services'
        engine: mariadb                   # mariadb (built); mysql, postgresql: later drivers
        schemas: [app]                    # what dumps, checksums and PITR checks cover
        primary: 127.0.0.1:3307
        replicas: [127.0.0.1:3308, 127.0.0.1:3309]
        credentials: {user: shipwarden, passwordSecret: DB_ADMIN_PASSWORD}
        application: {user: app, passwordSecret: DB_APP_PASSWORD}  # optional: what the app logs in as
        replication:
          mode: semiSync                  # or async
          user: repl
          passwordSecret: DB_REPL_PASSWORD
          maxLag: 5s
        listener: {port: 3310}            # the application connects here, never to an instance
        failover: {automatic: true, checkInterval: 500ms, confirmations: 2}
        backup:
          snapshot: {every: 24h}          # mariadb-backup
          logical: {every: 24h}           # mariadb-dump
          archive: true                   # binlog streamed off the primary as it is written
          retention: {snapshots: 7, logical: 7, maxAge: 336h}
          verify: {every: 24h}            # restore the latest snapshot and compare checksums
        objectives: {rpo: 0s, rto: 10s}

Credentials are secret *names* (resolved from ``SHIPWARDEN_SECRET_<NAME>`` or the
encrypted secret store), never values.  Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from shipwarden.domain._base import Duration, _Strict
from shipwarden.domain.dr.topology import Endpoint

__all__ = ["DatabaseSpec", "IMPLEMENTED_ENGINES"]

IMPLEMENTED_ENGINES = ("mariadb",)
_SECRET = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"


class SecretCredentials(_Strict):
    user: str = Field(min_length=1, max_length=80)
    password_secret: str | None = Field(None, alias="passwordSecret", pattern=_SECRET)


class Replication(_Strict):
    mode: Literal["async", "semiSync"] = "semiSync"
    user: str = Field("repl", min_length=1, max_length=80)
    password_secret: str | None = Field(None, alias="passwordSecret", pattern=_SECRET)
    max_lag: Duration = Field(10.0, alias="maxLag")
    #: how long a semi-synchronous primary waits for an acknowledgement before MariaDB silently
    #: falls back to asynchronous replication (``rpl_semi_sync_master_timeout``); the fall-back
    #: is an alert, whatever this is.  Alone it would bound a split brain: a primary cut off by
    #: a partition that lasts longer acknowledges writes no replica has (10 s and no guard: 546
    #: such writes in one drill, bench/results/dr_failover_partition.json) — the guard
    #: (``selfFenceAfter``) fences it before then (3 drills: 0)
    semi_sync_timeout: Duration = Field(10.0, alias="semiSyncTimeout", gt=0)
    #: the primary's guard (it runs on the primary's host) fences the primary — its client sessions
    #: killed, so the waiting commits are never acknowledged, then ``read_only`` — once a commit has
    #: waited this long for a replica's acknowledgement: a primary cut off from its replicas stops
    #: taking writes *before* ``semiSyncTimeout`` would let it acknowledge them alone.  Default:
    #: ``min(3 s, semiSyncTimeout / 4)``; it must be shorter than ``semiSyncTimeout``, and the margin
    #: between them is what a slow guard (a loaded host) has: keep it to seconds
    self_fence_after: Duration | None = Field(None, alias="selfFenceAfter", gt=0)

    @property
    def guard_after(self) -> float:
        if self.self_fence_after is not None:
            return self.self_fence_after
        return min(3.0, self.semi_sync_timeout / 4)

    @model_validator(mode="after")
    def _guard_before_fallback(self) -> Replication:
        if self.self_fence_after is not None and self.self_fence_after >= self.semi_sync_timeout:
            raise ValueError(
                "replication.selfFenceAfter must be shorter than semiSyncTimeout: the guard must fence "
                "the primary before MariaDB falls back to asynchronous replication"
            )
        return self


class ListenerSpec(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class FailoverSpec(_Strict):
    automatic: bool = True
    check_interval: Duration = Field(0.5, alias="checkInterval", gt=0)
    #: consecutive failed checks of the primary before its replicas are asked
    confirmations: int = Field(2, ge=1, le=100)
    #: longest wait for the chosen replica to apply its relay log before promotion
    apply_timeout: Duration = Field(30.0, alias="applyTimeout", gt=0)


class Every(_Strict):
    every: Duration = Field(gt=0)


class Retention(_Strict):
    snapshots: int = Field(7, ge=1)
    logical: int = Field(7, ge=1)
    #: backups older than this are deleted, except the newest of each kind
    max_age: Duration = Field(14 * 24 * 3600.0, alias="maxAge", gt=0)


class BackupSpec(_Strict):
    #: where backups are written; relative paths are under the state directory
    directory: str = "backups"
    snapshot: Every | None = Field(default_factory=lambda: Every(every=24 * 3600.0))
    logical: Every | None = Field(default_factory=lambda: Every(every=24 * 3600.0))
    archive: bool = True
    retention: Retention = Field(default_factory=Retention)
    verify: Every | None = Field(default_factory=lambda: Every(every=24 * 3600.0))


class Objectives(_Strict):
    rpo: Duration = 0.0
    rto: Duration = Field(gt=0)


class DatabaseSpec(_Strict):
    service: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    engine: Literal["mariadb", "mysql", "postgresql"] = "mariadb"
    schemas: list[str] = Field(default_factory=list)
    primary: Endpoint
    replicas: list[Endpoint] = Field(default_factory=list)
    credentials: SecretCredentials
    #: the account the application writes as; drills write as it (without one, a drill makes a
    #: limited account of its own), and it must not bypass ``read_only`` or fencing cannot hold
    application: SecretCredentials | None = None
    replication: Replication = Field(default_factory=Replication)
    listener: ListenerSpec
    failover: FailoverSpec = Field(default_factory=FailoverSpec)
    backup: BackupSpec = Field(default_factory=BackupSpec)
    objectives: Objectives

    @field_validator("primary", mode="before")
    @classmethod
    def _endpoint(cls, v: object) -> object:
        return Endpoint.parse(v) if isinstance(v, str) else v

    @field_validator("replicas", mode="before")
    @classmethod
    def _endpoints(cls, v: object) -> object:
        if isinstance(v, list):
            return [Endpoint.parse(x) if isinstance(x, str) else x for x in v]
        return v

    @field_validator("schemas")
    @classmethod
    def _schemas(cls, v: list[str]) -> list[str]:
        import re

        for s in v:
            if not re.match(r"^[A-Za-z0-9_]{1,64}$", s):
                raise ValueError(f"invalid schema name {s!r}")
            if s.lower() in ("mysql", "information_schema", "performance_schema", "sys"):
                raise ValueError(f"{s!r} is a system schema")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DatabaseSpec:
        members = [self.primary, *self.replicas]
        if len(set(members)) != len(members):
            raise ValueError("the primary and the replicas must be distinct instances")
        if self.replication.mode == "semiSync" and not self.replicas:
            raise ValueError("semi-synchronous replication needs at least one replica")
        if self.objectives.rpo == 0 and self.replication.mode != "semiSync":
            raise ValueError(
                "objectives.rpo 0 needs replication.mode semiSync: asynchronous replication can lose "
                "acknowledged writes on failover"
            )
        if Endpoint(self.listener.host, self.listener.port) in members:
            raise ValueError("the listener cannot use the address of a database instance")
        return self


def validate_databases(databases: list[DatabaseSpec], services: list[str], ports: dict[int, str]) -> None:
    """The cross-section checks ``Policy`` runs: one database per declared service, free ports."""
    seen: set[str] = set()
    for db in databases:
        if db.service not in services:
            raise ValueError(
                f"databases: service {db.service!r} is not declared under 'services' "
                f"(declared: {', '.join(services)})"
            )
        if db.service in seen:
            raise ValueError(f"databases: service {db.service!r} has two databases")
        seen.add(db.service)
        if db.listener.port in ports:
            raise ValueError(
                f"databases: listener port {db.listener.port} of {db.service!r} is also used by "
                f"{ports[db.listener.port]!r}"
            )
        ports[db.listener.port] = f"{db.service} database listener"
