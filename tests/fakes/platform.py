"""FakePlatform: instances in a dict, behaviour per version, failures on demand.

What a version *does* is its :class:`Behaviour`: healthy at once or after a while, never healthy
("sick"), exiting at once ("crash"), answering requests with some status.  ``kill`` makes an
instance die as a process would.  Like LocalPlatform, a start either starts every instance or
raises :class:`PlatformError` and leaves none behind, ``stop`` forgets instances whatever their
state, and a dead instance stays listed (DEAD) until stopped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

from shipwarden.adapters.platforms.base import Instance, InstanceState, PlatformError
from shipwarden.domain.policy import ServiceSpec
from tests.fakes.faults import Faults


@dataclass(frozen=True)
class Behaviour:
    healthy_after: float | None = 0.0  # seconds after start; None: never healthy
    crash: bool = False  # exits at once: DEAD from the first look
    status: int = 200  # what it answers to requests


GOOD = Behaviour()
SICK = Behaviour(healthy_after=None)
CRASH = Behaviour(crash=True)


class FakePlatform:
    def __init__(self, clock: Callable[[], float], behaviours: dict[str, Behaviour] | None = None) -> None:
        self.clock = clock
        self.behaviours: dict[str, Behaviour] = dict(behaviours or {})
        self.faults = Faults(PlatformError)
        self._instances: dict[str, Instance] = {}  # id → instance (every service)
        self._killed: set[str] = set()
        self._ports = itertools.count(20000)
        self._ids = itertools.count(1)
        self.started: list[Instance] = []  # every instance ever started, for leak checks

    def behaviour(self, version: str) -> Behaviour:
        return self.behaviours.get(version, GOOD)

    # -- Platform ----------------------------------------------------------------------------
    def start(self, spec: ServiceSpec, version: str, count: int, zone: str | None = None) -> list[Instance]:
        self.faults.check("start")
        now = self.clock()
        out = []
        for _ in range(count):
            n = next(self._ids)
            inst = Instance(
                id=f"{spec.name}-{version}-{n}",
                service=spec.name,
                version=version,
                address=f"127.0.0.1:{next(self._ports)}",
                pid=100000 + n,
                state=InstanceState.RUNNING,
                started_at=now,
                zone=zone,
            )
            self._instances[inst.id] = inst
            self.started.append(inst)
            out.append(inst)
        return out

    def instances(self, service: str) -> list[Instance]:
        self.faults.check("instances")
        return [self._current(i) for i in self._instances.values() if i.service == service]

    def healthy(self, spec: ServiceSpec, instance: Instance) -> bool:
        inst = self._instances.get(instance.id)
        if inst is None or self._current(inst).state is not InstanceState.RUNNING:
            return False
        after = self.behaviour(inst.version).healthy_after
        return after is not None and self.clock() - (inst.started_at or 0.0) >= after

    def stop(self, instances: list[Instance], grace_s: float) -> None:
        self.faults.check("stop")
        for inst in instances:
            self._instances.pop(inst.id, None)
            self._killed.discard(inst.id)

    # -- test controls -----------------------------------------------------------------------
    def _current(self, inst: Instance) -> Instance:
        dead = inst.id in self._killed or self.behaviour(inst.version).crash
        return replace(inst, state=InstanceState.DEAD) if dead else inst

    def kill_zone(self, zone: str) -> list[str]:
        """Every instance in ``zone`` dies (a lost zone); returns their ids."""
        ids = [i.id for i in self._instances.values() if i.zone == zone]
        self._killed.update(ids)
        return ids

    def kill(self, instance_id: str) -> None:
        """The instance's process dies (it stays listed, DEAD, until stopped)."""
        if instance_id in self._instances:
            self._killed.add(instance_id)

    def all(self) -> list[Instance]:
        """Every instance still registered, with its state (no fault applies)."""
        return [self._current(i) for i in self._instances.values()]

    def serve(self, address: str) -> tuple[str, int] | None:
        """Who answers a request sent to ``address``: (version, status), or None (refused)."""
        for inst in self._instances.values():
            if inst.address == address:
                cur = self._current(inst)
                if cur.state is not InstanceState.RUNNING:
                    return None
                return cur.version, self.behaviour(cur.version).status
        return None

    def answers_healthy(self, address: str) -> bool:
        """Is an instance running at ``address`` and passing its health check now?"""
        inst = next((i for i in self._instances.values() if i.address == address), None)
        return inst is not None and self.healthy(None, inst)  # type: ignore[arg-type]
