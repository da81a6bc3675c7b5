"""The platform port: where instances of a service version run (drivers in ``adapters/platforms/``,
chosen per service by the policy's ``run.platform``).

Platforms start, observe and stop instances.  They do not route traffic
(that is the router's job) and they do not decide anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shipwarden.domain.policy import ServiceSpec


class PlatformError(RuntimeError):
    """An instance could not be started, observed or stopped."""


class InstanceState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DEAD = "dead"  # the process exited without being asked to


@dataclass(frozen=True)
class Instance:
    id: str
    service: str
    version: str
    address: str  # host:port reachable by the router
    pid: int | None
    state: InstanceState
    started_at: float | None = None  # wall-clock time the platform started it, if known
    zone: str | None = None  # the failure domain it runs in (E2); None where the policy has no zones


class Platform(Protocol):
    def start(self, spec: ServiceSpec, version: str, count: int, zone: str | None = None) -> list[Instance]:
        """Start ``count`` new instances of ``version`` (in ``zone``); returns at once (not yet healthy).

        All or nothing: a start that cannot be done raises :class:`PlatformError` with the cause
        and leaves no instance of this call behind."""

    def instances(self, service: str) -> list[Instance]:
        """Every instance the platform knows for the service, with its observed state."""

    def healthy(self, spec: ServiceSpec, instance: Instance) -> bool:
        """One health probe of one instance."""

    def stop(self, instances: list[Instance], grace_s: float) -> None:
        """Drain and stop: SIGTERM, then SIGKILL after ``grace_s``; forgets them, dead or alive
        (an instance already stopped is no error)."""
