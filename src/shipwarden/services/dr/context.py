"""What every DR use case is given: the service's database spec and the ports that reach it.

``bootstrap.make_dr`` builds one :class:`DatabasePorts` per database the policy declares
and one :class:`DrContext` for the installation; the use cases in this package read
only these (never an adapter), so tests can hand them anything that fits the ports.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipwarden.domain.dr.spec import DatabaseSpec
from shipwarden.domain.dr.topology import Credentials, Topology
from shipwarden.ports.databases import (
    BackupTool,
    BinlogStreamer,
    BlobStore,
    DatabaseDriver,
    DbListener,
    DrCatalogue,
    InstanceControl,
    NetworkPartitions,
    ScratchInstances,
    WriteLoad,
)
from shipwarden.security.envelope import Envelope

__all__ = ["Alert", "DatabasePorts", "DrContext", "DrError", "new_id"]

#: an alert through the alerting path: (service, key, severity, message)
Alert = Callable[[str, str, str, str], None]


class DrError(RuntimeError):
    """A DR operation cannot be done as asked (bad input, nothing to restore, …); nothing changed."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


@dataclass
class DatabasePorts:
    spec: DatabaseSpec
    driver: DatabaseDriver
    replication: Credentials
    listener: DbListener
    backup_tool: BackupTool
    streamer: BinlogStreamer
    scratch: ScratchInstances
    #: where this database's backups are kept (the policy's ``backup.directory``)
    blobs: BlobStore
    #: ``(rate, credentials, *, target=None, source_address=None)``: a steady write load of ``rate``
    #: writes/s as that account, through the listener (or straight to ``target``), for drills
    write_load: Callable[..., WriteLoad]
    #: process control of instances on this host (fault injection, restart, re-seed); None elsewhere
    control: InstanceControl | None = None
    #: the application's account when the policy declares one
    application: Credentials | None = None
    #: cuts an instance off the network and heals it (partition drills); None where not possible
    partitions: NetworkPartitions | None = None


@dataclass
class DrContext:
    databases: Mapping[str, DatabasePorts]
    catalogue: DrCatalogue
    #: where installation-wide (configuration) backups are kept
    blobs: BlobStore
    envelope: Envelope
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    actor: str = "shipwarden:dr"
    #: the alerting path when one is configured; audit entries are written either way
    notify: Alert | None = None

    def db(self, service: str) -> DatabasePorts:
        ports = self.databases.get(service)
        if ports is None:
            known = ", ".join(sorted(self.databases)) or "none"
            raise DrError(f"the policy declares no database for service {service!r} (databases: {known})")
        return ports

    def blobs_for(self, service: str) -> BlobStore:
        ports = self.databases.get(service)
        return ports.blobs if ports is not None else self.blobs

    def topology(self, service: str) -> Topology:
        """The current arrangement: the stored one, else the policy's (stored as epoch 0)."""
        stored = self.catalogue.topology(service)
        if stored is not None:
            return stored
        spec = self.db(service).spec
        initial = Topology(service, spec.primary, tuple(spec.replicas))
        try:
            self.catalogue.save_topology(
                initial, expected_epoch=None, actor=self.actor, action="dr.topology.init",
                detail={"from": "policy"},
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - another process stored it first: read theirs
            pass
        return self.catalogue.topology(service) or initial

    def alert(self, service: str, key: str, severity: str, message: str, **detail: Any) -> None:
        """An alert: always an audit entry; also sent through the alerting path when one exists."""
        self.catalogue.audit(
            actor=self.actor, action="dr.alert", service=service, outcome="failed",
            detail={"key": key, "severity": severity, "message": message, **detail},
        )  # fmt: skip
        if self.notify is not None:
            try:
                self.notify(service, key, severity, message)
            except Exception as exc:  # noqa: BLE001 - an alert must never stop a recovery
                self.catalogue.audit(
                    actor=self.actor, action="dr.alert.undelivered", service=service, outcome="failed",
                    detail={"key": key, "error": str(exc)[:300]},
                )  # fmt: skip
