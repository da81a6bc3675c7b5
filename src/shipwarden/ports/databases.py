"""Ports for replicated databases and their disaster recovery (E1, E6, E9, E10).

* :class:`DatabaseDriver` — one engine's SQL-level operations on an instance (status,
  replication, promotion, fencing, checksums).  MariaDB today; PostgreSQL can follow.
* :class:`DbListener` — the TCP endpoint the application connects to; failover repoints it
  without restarting the application and cuts every session to the old primary.
* :class:`BackupTool` — physical snapshots and logical dumps, streamed (never a whole backup
  in memory).
* :class:`BinlogStreamer` — continuous transaction-log copying into a staging directory.
* :class:`ScratchInstances` — fresh, throw-away instances to restore into (PITR,
  verification, rebuilding a replica).
* :class:`BlobStore` — where sealed backup files live.
* :class:`DrCatalogue` — the catalogue, verification results, drills and the current
  topology, each write with its audit entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Protocol

from shipwarden.domain.dr.catalogue import BackupRecord, DrillRecord, VerificationRecord
from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.topology import Credentials, Endpoint, ReplicaStatus, ServerStatus, Topology

__all__ = [
    "BackupTool",
    "BinlogFile",
    "BinlogStreamer",
    "BlobStore",
    "DatabaseDriver",
    "DatabaseError",
    "DbListener",
    "DrCatalogue",
    "DumpInfo",
    "ReplayTarget",
    "ScratchInstance",
    "ScratchInstances",
    "SnapshotInfo",
    "StaleTopology",
    "WriteAck",
    "WriteLoad",
    "LoadResult",
    "InstanceControl",
    "NetworkPartitions",
]


class DatabaseError(RuntimeError):
    """An instance refused or failed an operation (the message says which and why)."""


class StaleTopology(RuntimeError):
    """Another process changed the topology first (its epoch moved): re-read and re-decide."""


@dataclass(frozen=True)
class BinlogFile:
    name: str
    size: int


class DatabaseDriver(Protocol):
    engine: str

    def ping(self, endpoint: Endpoint, timeout: float) -> str | None:
        """None when the instance answers a query within ``timeout``; else why not."""
        ...

    def status(self, endpoint: Endpoint, timeout: float | None = None) -> ServerStatus:
        """``timeout``: connect and query time-out (default: the driver's)."""
        ...

    def replica_status(self, endpoint: Endpoint, timeout: float | None = None) -> ReplicaStatus | None:
        """The instance's replication state; None if it is not configured as a replica."""
        ...

    def semi_sync_waits(self, endpoint: Endpoint, timeout: float | None = None) -> list[float]:
        """Seconds each session on this primary has been waiting for a semi-sync acknowledgement."""
        ...

    def binlogs(self, endpoint: Endpoint) -> list[BinlogFile]: ...

    def binlog_start(self, endpoint: Endpoint, file: str) -> GtidPosition:
        """The GTID position at the start of ``file`` on that instance."""
        ...

    def wait_applied(self, endpoint: Endpoint, position: GtidPosition, timeout: float) -> bool:
        """Wait until the replica applied ``position``; False on time-out."""
        ...

    def promote(
        self,
        endpoint: Endpoint,
        *,
        semi_sync: bool,
        semi_sync_timeout: float,
        writable: bool = True,
        apply: GtidPosition | None = None,
        apply_timeout: float = 30.0,
    ) -> None:
        """Stop replicating, forget the old source, act as a (semi-sync) primary; accept writes
        (``read_only=0``) unless ``writable`` is False (then :meth:`set_writable` later).  With
        ``apply``: first stop receiving and apply the relay log up to that position (or fail after
        ``apply_timeout``), all in one session."""
        ...

    def set_writable(self, endpoint: Endpoint) -> None: ...

    def stop_receiving(self, endpoint: Endpoint) -> None:
        """Stop the replica's IO thread (it keeps applying what it received)."""
        ...

    def fence(self, endpoint: Endpoint, timeout: float | None = None) -> int:
        """Refuse writes (``read_only=1``) and kill every client session; returns sessions killed.
        ``timeout``: connect and query time-out (default: the driver's)."""
        ...

    def ensure_account(self, endpoint: Endpoint, credentials: Credentials, schema: str) -> None:
        """An account limited to ``schema`` (create, select, insert), with that password: what a
        drill writes as when the policy declares no application account."""
        ...

    def read_only_bypass(self, endpoint: Endpoint, user: str) -> list[str]:
        """The privileges of ``user`` that let it write through ``read_only`` (empty: it is fenced)."""
        ...

    def replicate_from(
        self,
        endpoint: Endpoint,
        source: Endpoint,
        credentials: Credentials,
        *,
        semi_sync: bool,
        start_at: GtidPosition | None = None,
    ) -> None:
        """(Re)point the instance at ``source`` by GTID and start replicating (from ``start_at``
        when given: a demoted primary's own writes are not in its replica position)."""
        ...

    def configure_primary(self, endpoint: Endpoint, *, semi_sync: bool, semi_sync_timeout: float) -> None:
        """Semi-sync on the primary, waiting AFTER_SYNC (MariaDB's default is AFTER_COMMIT)."""
        ...

    def checksums(self, endpoint: Endpoint, schemas: Sequence[str]) -> dict[str, int | None]:
        """``schema.table`` → checksum of every base table in ``schemas`` (all user schemas if empty)."""
        ...

    def consistent_checksums(
        self, endpoint: Endpoint, schemas: Sequence[str]
    ) -> tuple[GtidPosition, dict[str, int | None]]:
        """Checksums and the GTID position they belong to, all at one moment: on a replica its
        applier is paused meanwhile (the primary does not notice); on a primary, under a global
        read lock (writes wait)."""
        ...


class DbListener(Protocol):
    def ensure(self, name: str, bind: Endpoint, backend: Endpoint | None) -> None:
        """Listen on ``bind`` for ``name`` (started if needed); a new listener points at ``backend``."""
        ...

    def point(self, name: str, backend: Endpoint) -> None:
        """Send new connections to ``backend`` and close every session to any other instance."""
        ...

    def block(self, name: str) -> None:
        """Take every instance out: new connections are refused, open sessions are closed."""
        ...

    def backend(self, name: str) -> Endpoint | None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class SnapshotInfo:
    binlog_file: str | None
    binlog_pos: int | None
    gtid: GtidPosition
    tool: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DumpInfo:
    gtid: GtidPosition
    binlog_file: str | None
    binlog_pos: int | None
    tool: str


class BackupTool(Protocol):
    def snapshot(self, source: Endpoint, sink: IO[bytes]) -> SnapshotInfo:
        """A hot physical backup of ``source`` streamed into ``sink``, with its binlog position."""
        ...

    def dump(self, source: Endpoint, schemas: Sequence[str], sink: IO[bytes]) -> DumpInfo:
        """A consistent logical dump (one transaction) with the GTID it corresponds to."""
        ...


class BinlogStreamer(Protocol):
    """Copies a primary's binary log into a local staging directory as it is written."""

    def start(self, source: Endpoint, first_file: str) -> None:
        """Copy ``source``'s binlog from the start of ``first_file`` on, for ever."""
        ...

    def source(self) -> Endpoint | None:
        """The instance the staged files were copied from (kept across restarts)."""
        ...

    def running(self) -> bool: ...

    def exit_reason(self) -> str:
        """Why the copier stopped (its last output), for the audit entry."""
        ...

    def stop(self) -> None: ...

    def files(self) -> list[BinlogFile]:
        """Staged files, in binlog order."""
        ...

    def open(self, name: str) -> IO[bytes]: ...

    def remove(self, name: str) -> None: ...


@dataclass(frozen=True)
class ReplayTarget:
    """Where a point-in-time recovery stops: a GTID position (inclusive), or a moment."""

    gtid: GtidPosition | None = None
    before: datetime | None = None  # events with a timestamp ≥ this are not applied


class ScratchInstance(Protocol):
    endpoint: Endpoint

    def replay(
        self,
        binlogs: Sequence[tuple[str, Callable[[], IO[bytes]]]],
        start: GtidPosition,
        target: ReplayTarget,
        forks: Mapping[int, GtidPosition] | None = None,
    ) -> GtidPosition:
        """Apply the binlogs (in order) from after ``start`` up to ``target`` in ONE client session
        (temporary tables survive file boundaries); returns the instance's GTID position after.

        ``forks``: across failovers the files come from one primary after another; ``forks[i]``
        says that the primary which wrote file ``i`` (and the files before it, back to the previous
        fork) counts only up to that position — what its successor had received when promoted.
        Past it are transactions no replica got (never acknowledged with semi-sync): not replayed,
        and the next primary's files are read from that position on."""
        ...

    def load_dump(self, stream: IO[bytes]) -> None: ...

    def stop(self) -> None: ...

    def remove(self) -> None: ...


class ScratchInstances(Protocol):
    def from_snapshot(self, name: str, snapshot: IO[bytes]) -> ScratchInstance:
        """Unpack a snapshot stream, prepare it and start an instance on a free port."""
        ...

    def empty(self, name: str) -> ScratchInstance: ...


@dataclass(frozen=True)
class WriteAck:
    id: int
    at: float  # monotonic, when the commit was acknowledged
    server_id: int  # the instance that committed it


@dataclass
class LoadResult:
    acknowledged: list[WriteAck]
    errors: list[tuple[float, str]]  # (monotonic, message)
    attempts: int


class WriteLoad(Protocol):
    """A steady write load through an endpoint that records every acknowledged write (RPO/RTO)."""

    def start(self) -> None: ...

    def stop(self) -> LoadResult: ...

    def acknowledged_so_far(self) -> int: ...

    def missing(self, endpoint: Endpoint, ids: Sequence[int]) -> list[int]:
        """The ids among ``ids`` that ``endpoint`` does not have."""
        ...

    def probe(self, endpoint: Endpoint) -> str | None:
        """One write straight to ``endpoint`` (not through the listener), as the load's account:
        None if it was acknowledged, else the server's refusal (a fenced primary must refuse)."""
        ...


class NetworkPartitions(Protocol):
    """Cuts an instance off the network while it keeps running (a partition, not a crash), and heals it.

    While isolated, no packet reaches the instance or leaves it — shipwarden, the listener and
    the replicas lose it — except for clients whose source address is ``keep``: the
    application servers on the instance's side of the partition, which may go on writing to it."""

    def unavailable(self) -> str | None:
        """None when partitions can be made here; else why not (not root, no iptables, …)."""
        ...

    def isolate(self, endpoint: Endpoint, *, keep: str) -> None: ...

    def heal(self, endpoint: Endpoint) -> None:
        """Remove the partition of ``endpoint`` (nothing if there is none)."""
        ...

    def isolated(self) -> list[Endpoint]:
        """Every instance isolated by this installation and not healed yet (a crashed drill's too)."""
        ...


class InstanceControl(Protocol):
    """Process-level control of instances on this host (drills inject faults; rebuilds re-seed)."""

    def remember(self, endpoint: Endpoint) -> None:
        """Note how the (running) instance was started, so it can be killed, restarted, re-seeded."""
        ...

    def kill(self, endpoint: Endpoint) -> None: ...

    def freeze(self, endpoint: Endpoint) -> None: ...

    def thaw(self, endpoint: Endpoint) -> None: ...

    def restart(self, endpoint: Endpoint) -> None:
        """Start it again as it was started before (no-op if it runs)."""
        ...

    def reseed(self, endpoint: Endpoint, snapshot: IO[bytes]) -> None:
        """Replace the instance's data with a snapshot stream and start it (read-only)."""
        ...

    def local_driver(self) -> DatabaseDriver:
        """A driver that reaches the remembered instances the way a process on their host does
        (their Unix sockets): a network partition does not cut it off (the primary's guard)."""
        ...

    def is_local(self, endpoint: Endpoint) -> bool:
        """True when :meth:`local_driver` reaches this instance without the network."""
        ...


class BlobStore(Protocol):
    location: str

    def writer(self, key: str) -> AbstractContextManager[IO[bytes]]:
        """Write ``key`` atomically: it exists only once the block exits without error."""
        ...

    def reader(self, key: str) -> IO[bytes]: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str = "") -> Iterator[str]: ...


class DrCatalogue(Protocol):
    """Persistent DR state; every write also appends an audit entry in the same transaction."""

    def add_backup(self, record: BackupRecord, *, actor: str) -> None: ...

    def update_backup(self, backup_id: str, *, actor: str, action: str, **changes: Any) -> BackupRecord: ...

    def backups(self, service: str, kind: str | None = None) -> list[BackupRecord]: ...

    def backup(self, backup_id: str) -> BackupRecord: ...

    def add_verification(self, record: VerificationRecord, *, actor: str) -> None: ...

    def verifications(self, service: str, limit: int = 20) -> list[VerificationRecord]: ...

    def add_drill(self, record: DrillRecord, *, actor: str) -> None: ...

    def drills(self, service: str, limit: int = 20) -> list[DrillRecord]: ...

    def topology(self, service: str) -> Topology | None: ...

    def save_topology(
        self,
        topology: Topology,
        *,
        expected_epoch: int | None,
        actor: str,
        action: str,
        detail: Mapping[str, Any],
    ) -> None:
        """Persist ``topology`` if the stored epoch is still ``expected_epoch`` (None: none stored)."""
        ...

    def audit(
        self,
        *,
        actor: str,
        action: str,
        service: str,
        outcome: str = "ok",
        detail: Mapping[str, Any] | None = None,
    ) -> None: ...
