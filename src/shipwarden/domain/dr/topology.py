"""What shipwarden knows about a replicated database at one moment: plain facts, no I/O.

Drivers fill these in from the server (``SHOW SLAVE STATUS``, ``@@gtid_binlog_pos``, …);
the failover decision, the health rules and the drill report read them.  ``Topology`` is
the *current* arrangement — which instance is the primary, which replicate, which are
fenced — as persisted by shipwarden; it starts as the policy declares and changes only
through a failover, each change with a higher ``epoch``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from shipwarden.domain.dr.gtid import GtidPosition

__all__ = ["Credentials", "Endpoint", "ReplicaStatus", "ServerStatus", "Topology"]

_HOSTPORT = re.compile(r"^\[?([A-Za-z0-9_.:-]+?)\]?:(\d{1,5})$")


@dataclass(frozen=True, order=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        m = _HOSTPORT.match(text.strip())
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(f"expected host:port, got {text!r}")
        return cls(m.group(1), int(m.group(2)))


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServerStatus:
    """A reachable server as seen by a status query."""

    endpoint: Endpoint
    server_id: int
    read_only: bool
    gtid_binlog_pos: GtidPosition
    gtid_current_pos: GtidPosition
    #: ``Rpl_semi_sync_master_status``: None when the plugin variables are absent
    semi_sync_master: bool | None = None
    semi_sync_clients: int = 0
    #: the last transaction applied as a replica (kept after a promotion: where it forked off)
    gtid_slave_pos: GtidPosition = field(default_factory=lambda: GtidPosition({}))
    binlog_file: str | None = None
    binlog_pos: int | None = None
    version: str = ""


@dataclass(frozen=True)
class ReplicaStatus:
    """``SHOW SLAVE STATUS`` of a replica (None from a driver: not replicating)."""

    endpoint: Endpoint
    source: Endpoint | None
    io_running: str  # "Yes", "No", "Connecting"
    sql_running: bool
    last_io_error: str
    last_sql_error: str
    seconds_behind: int | None
    gtid_io_pos: GtidPosition  # received into the relay log
    gtid_slave_pos: GtidPosition  # applied

    @property
    def io_connected(self) -> bool:
        return self.io_running == "Yes"

    @property
    def applied_all_received(self) -> bool:
        return self.gtid_slave_pos.contains(self.gtid_io_pos)


@dataclass(frozen=True)
class Topology:
    """The arrangement shipwarden maintains for one service's database."""

    service: str
    primary: Endpoint
    replicas: tuple[Endpoint, ...]
    fenced: tuple[Endpoint, ...] = ()
    epoch: int = 0

    def members(self) -> tuple[Endpoint, ...]:
        return (self.primary, *self.replicas)

    def after_failover(self, new_primary: Endpoint) -> Topology:
        """The old primary is fenced (it stays out until rebuilt); the others follow the new one."""
        if new_primary not in self.replicas:
            raise ValueError(f"{new_primary} is not a replica of {self.service}")
        rest = tuple(r for r in self.replicas if r != new_primary)
        fenced = tuple(dict.fromkeys((*self.fenced, self.primary)))
        return replace(self, primary=new_primary, replicas=rest, fenced=fenced, epoch=self.epoch + 1)

    def after_switchover(self, new_primary: Endpoint) -> Topology:
        """A graceful switch: the old primary was fenced first and caught up, so it stays a replica."""
        if new_primary not in self.replicas:
            raise ValueError(f"{new_primary} is not a replica of {self.service}")
        rest = tuple(r for r in self.replicas if r != new_primary)
        return replace(self, primary=new_primary, replicas=(*rest, self.primary), epoch=self.epoch + 1)

    def after_rebuild(self, endpoint: Endpoint) -> Topology:
        """A fenced instance rebuilt as a replica of the current primary rejoins."""
        if endpoint not in self.fenced:
            raise ValueError(f"{endpoint} is not fenced")
        fenced = tuple(f for f in self.fenced if f != endpoint)
        return replace(self, replicas=(*self.replicas, endpoint), fenced=fenced, epoch=self.epoch + 1)
