"""When to fail over, and to whom — the pure half of automatic failover (E10).

**Holistic detection** (orchestrator's rule, docs/failure-detection.md): the primary is
dead only if shipwarden cannot reach it *and* every replica that shipwarden can reach
says its replication connection to the primary is lost.  A slow health check, or a
network problem between shipwarden and the primary alone, is never enough: the replicas
still streaming from the primary outvote it.  If no replica can be reached at all there
is nobody to promote and nobody to ask, so the verdict is ``UNREACHABLE`` (an alert), not
a failover.

**The candidate** is the replica that *received* the most of the old primary's
transactions (``Gtid_IO_Pos``, per domain): with semi-synchronous replication waiting
``AFTER_SYNC``, every write a client saw acknowledged is in at least one replica's relay
log, so the most advanced replica has all of them once it has applied what it received.
A replica whose SQL thread stopped on an error cannot be trusted to apply its relay log
and is passed over while another candidate exists.  Ties go to the order the policy lists
the replicas in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from shipwarden.domain.dr.topology import Endpoint, ReplicaStatus

__all__ = ["Health", "Assessment", "assess", "choose_candidate"]


class Health(StrEnum):
    HEALTHY = "healthy"
    """The primary answers."""
    SUSPECT = "suspect"
    """The primary does not answer shipwarden, but not (yet) confirmed dead: too few failed
    checks, or a replica still replicates from it."""
    DEAD = "dead"
    """Unreachable, and every reachable replica lost it too: fail over."""
    UNREACHABLE = "unreachable"
    """The primary and every replica are unreachable from shipwarden: nothing to promote."""


@dataclass(frozen=True)
class Assessment:
    health: Health
    reason: str
    candidate: Endpoint | None = None
    #: replicas still connected to the primary (why a SUSPECT is not DEAD)
    still_connected: tuple[Endpoint, ...] = ()


def _lost(r: ReplicaStatus, primary: Endpoint) -> bool:
    """True when this replica's IO thread says it has lost the primary."""
    if r.source is not None and r.source != primary:
        return True  # replicating from someone else: not a witness for this primary
    return not r.io_connected


def assess(
    primary: Endpoint,
    primary_reachable: bool,
    consecutive_failures: int,
    confirmations: int,
    replicas: Mapping[Endpoint, ReplicaStatus | None],
    order: Sequence[Endpoint] = (),
) -> Assessment:
    """Judge one round of checks.  ``replicas`` maps each replica to its status (None: unreachable)."""
    if primary_reachable:
        return Assessment(Health.HEALTHY, f"primary {primary} answers")
    if consecutive_failures < confirmations:
        return Assessment(
            Health.SUSPECT,
            f"primary {primary} failed {consecutive_failures} of {confirmations} consecutive checks",
        )
    reachable = {e: r for e, r in replicas.items() if r is not None}
    if not reachable:
        return Assessment(Health.UNREACHABLE, f"primary {primary} and all its replicas are unreachable")
    connected = tuple(sorted(e for e, r in reachable.items() if not _lost(r, primary)))
    if connected:
        names = ", ".join(str(e) for e in connected)
        return Assessment(
            Health.SUSPECT,
            f"primary {primary} does not answer shipwarden, but replica(s) {names} still replicate from it",
            still_connected=connected,
        )
    candidate = choose_candidate(reachable, order or tuple(replicas))
    if candidate is None:
        return Assessment(Health.DEAD, f"primary {primary} is dead and no replica can take over")
    lost = len(reachable)
    return Assessment(
        Health.DEAD,
        f"primary {primary} unreachable for {consecutive_failures} checks and {lost} of "
        f"{len(replicas)} replica(s) lost it too",
        candidate=candidate,
    )


def choose_candidate(
    replicas: Mapping[Endpoint, ReplicaStatus], order: Sequence[Endpoint] = ()
) -> Endpoint | None:
    """The replica that received the most; a replica with a failed SQL thread only if no other."""
    if not replicas:
        return None
    position = {e: i for i, e in enumerate(order)}

    domains = sorted(
        {d for r in replicas.values() for d in (*r.gtid_io_pos.by_domain, *r.gtid_slave_pos.by_domain)}
    )

    def key(e: Endpoint) -> tuple[int, tuple[int, ...], int]:
        r = replicas[e]
        received = r.gtid_io_pos.merge(r.gtid_slave_pos)
        healthy = 0 if r.last_sql_error else 1
        return (healthy, tuple(received.seq(d) for d in domains), -position.get(e, len(position)))

    return max(replicas, key=key)
