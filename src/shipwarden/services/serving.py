"""Serving between rollouts (E2): dead instances leave the routing table, replacements come back.

A rollout owns a service's table while it runs.  Once it has ended, :class:`ServingWatch` keeps
the table on live instances: the controller calls :meth:`ServingWatch.tick` every second or so,
and for each service with no active deployment it

1. takes the table the router serves as *intended* (the one the last rollout left; a table that
   changed under it — a new rollout finished, an operator — is taken again);
2. reads the platform's instances: an address of the table whose instance is dead, or failed
   ``unhealthyThreshold`` health probes in a row (probed every ``health.interval``, at most every
   :data:`MIN_PROBE_INTERVAL_S`), is *down*;
3. routes :func:`~shipwarden.domain.serving.reroute` (intended without what is down: a zone
   whose instances all died is taken out, its share goes to the other zones), and puts an
   instance back as soon as it is healthy again;
4. starts a replacement for each dead instance, in its zone, of its version — at most
   ``MAX_REPLACEMENTS`` per service per :data:`REPLACEMENT_WINDOW_S` (a version that dies at
   once is not restarted in a loop) — and once the replacement passed ``healthyThreshold``
   probes puts it in the dead one's place (:func:`~shipwarden.domain.serving.substitute`) and
   lets the platform forget the dead one.

Each change of the table is audited (``serving.rerouted``: what went out, what came back, the
weights); a zone going out, a service left with no live instance and a replacement that cannot be
started raise an alert in the alerting pipeline.  The router's retries serve the requests that
reach a dead instance before this takes it out, so nothing fails but what was in flight.

Per process: in an HA pair each controller keeps its own view; a table it applies is the same
either would (idempotent), and replacements are bounded per process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shipwarden.domain.alerting import Alert as PipelineAlert
from shipwarden.domain.policy import ServiceSpec
from shipwarden.domain.serving import reroute, same_table, substitute
from shipwarden.ports.platform import Instance, InstanceState, Platform
from shipwarden.ports.routing import Routes, TrafficRouter
from shipwarden.ports.store import DeploymentStore

log = logging.getLogger(__name__)

MAX_REPLACEMENTS = 3
"""Replacements started per service within :data:`REPLACEMENT_WINDOW_S` (then it waits)."""
REPLACEMENT_WINDOW_S = 600.0
ALERT_TTL_S = 300.0
MIN_PROBE_INTERVAL_S = 2.0
"""Between rollouts health probes go at most this often per service (a dead process is seen at
once through the platform; a hundred idle services must not cost a hundred probes a second)."""

AlertSink = Callable[[list[PipelineAlert]], object]


@dataclass
class _Service:
    intended: Routes
    applied: Routes | None = None  # the table this watch applied last
    ok: dict[str, int] = field(default_factory=dict)  # address → healthy probes in a row
    bad: dict[str, int] = field(default_factory=dict)  # address → failed probes in a row
    probed_at: float = 0.0
    replacing: dict[str, Instance] = field(default_factory=dict)  # dead address → its replacement
    started: list[float] = field(default_factory=list)  # when replacements were started
    alerted: set[str] = field(default_factory=set)  # alert keys raised and not yet cleared


def _addresses(routes: Routes) -> set[str]:
    return {a for p in (*routes.production, *routes.preview) for a in p.addresses}


class ServingWatch:
    def __init__(
        self,
        store: DeploymentStore,
        platform: Platform,
        router: TrafficRouter,
        specs: Callable[[], list[ServiceSpec]],
        *,
        alert_sink: AlertSink | None = None,
        clock: Callable[[], float] = time.time,
        replace: bool = True,
    ) -> None:
        self.store, self.platform, self.router, self.specs = store, platform, router, specs
        self.alert_sink, self.clock, self.replace = alert_sink, clock, replace
        self._services: dict[str, _Service] = {}

    def tick(self) -> dict[str, dict[str, Any]]:
        """One pass over every service; what changed, per service (for logs and tests)."""
        out: dict[str, dict[str, Any]] = {}
        busy = {d.service for d in self.store.all_active()}
        for spec in self.specs():
            if spec.name in busy:  # the rollout owns the table; look again once it has ended
                self._services.pop(spec.name, None)
                continue
            try:
                changed = self._watch(spec)
            except Exception:  # one service's trouble must not stop the others
                log.exception("serving watch: %s", spec.name)
                continue
            if changed:
                out[spec.name] = changed
        return out

    # -- one service -----------------------------------------------------------------------
    def _watch(self, spec: ServiceSpec) -> dict[str, Any]:
        serving = self.router.current(spec.name)
        if serving is None or not serving.production:
            self._services.pop(spec.name, None)
            return {}
        current = serving
        st = self._services.get(spec.name)
        if st is None or (st.applied is not None and not same_table(current, st.applied)):
            st = self._services[spec.name] = _Service(intended=current)  # a table set by someone else
        elif st.applied is None and not same_table(current, st.intended):
            st = self._services[spec.name] = _Service(intended=current)
        instances = {i.address: i for i in self.platform.instances(spec.name)}
        routed = _addresses(st.intended)
        self._probe(spec, st, [instances[a] for a in sorted(routed) if a in instances])
        dead = {a for a in routed if a in instances and instances[a].state is InstanceState.DEAD}
        failing = {a for a in routed - dead if st.bad.get(a, 0) >= spec.health.unhealthy_threshold}
        changes: dict[str, Any] = {}
        if self.replace:
            changes.update(self._replace(spec, st, instances, dead))
            # a replacement now in the table: its address is routed, the dead one is not
            routed = _addresses(st.intended)
            dead &= routed
        down = dead | failing
        target = reroute(st.intended, down)
        if target is None:
            self._raise(spec, st, "no_instance", "ServiceNoLiveInstance", "critical",
                        f"{spec.name}: no live instance left; the table is kept as it was",
                        f"down: {sorted(down)}")  # fmt: skip
            return changes
        self._clear(st, "no_instance")
        if same_table(target, current):
            st.applied = current
            return changes
        self.router.apply(spec.name, target)
        st.applied = target
        before = {a for p in current.production for a in p.addresses}
        after = {a for p in target.production for a in p.addresses}
        zones_out = sorted(
            {p.zone for p in st.intended.production if p.zone} - {p.zone for p in target.production if p.zone}
        )  # fmt: skip
        detail = {
            "out": sorted(before - after), "in": sorted(after - before), "down": sorted(down),
            "weights": [
                {"version": p.version, "zone": p.zone, "weight": p.weight, "instances": len(p.addresses)}
                for p in target.production
            ],
            "zones_out": zones_out,
        }  # fmt: skip
        self.store.audit(actor="controller", action="serving.rerouted", service=spec.name, detail=detail)
        log.warning("%s: rerouted: out %s, in %s", spec.name, detail["out"], detail["in"])
        for zone in zones_out:
            self._raise(spec, st, f"zone:{zone}", "ServiceZoneOut", "critical",
                        f"{spec.name}: zone {zone} taken out of routing (no live instance)",
                        "its traffic is served by the other zones", zone=zone)  # fmt: skip
        for key in [k for k in st.alerted if k.startswith("zone:") and k[5:] not in zones_out]:
            self._clear(st, key)
        return {**changes, **detail}

    def _probe(self, spec: ServiceSpec, st: _Service, instances: list[Instance]) -> None:
        now = self.clock()
        if now - st.probed_at < max(spec.health.interval, MIN_PROBE_INTERVAL_S):
            return
        st.probed_at = now
        for inst in instances:
            if inst.state is not InstanceState.RUNNING:
                continue
            if self.platform.healthy(spec, inst):
                st.ok[inst.address] = st.ok.get(inst.address, 0) + 1
                st.bad[inst.address] = 0
            else:
                st.bad[inst.address] = st.bad.get(inst.address, 0) + 1
                st.ok[inst.address] = 0

    def _replace(
        self, spec: ServiceSpec, st: _Service, instances: dict[str, Instance], dead: set[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        now = self.clock()
        st.started = [t for t in st.started if now - t < REPLACEMENT_WINDOW_S]
        for address in sorted(dead):
            gone = instances[address]
            new = st.replacing.get(address)
            if new is not None:
                seen = next((i for i in instances.values() if i.id == new.id), None)
                if seen is None or seen.state is InstanceState.DEAD:
                    st.replacing.pop(address)  # the replacement died too: another, within budget
                    if seen is not None:
                        self.platform.stop([seen], 0)
                    new = None
                else:
                    self._probe_one(spec, st, seen)
                    if st.ok.get(seen.address, 0) >= spec.health.healthy_threshold:
                        st.intended = substitute(st.intended, address, seen.address)
                        st.replacing.pop(address)
                        self.platform.stop([gone], 0)  # already gone: the platform forgets it
                        self.store.audit(actor="controller", action="serving.replaced", service=spec.name,
                                         detail={"dead": address, "started": seen.address,
                                                 "version": gone.version, "zone": gone.zone})  # fmt: skip
                        out.setdefault("replaced", []).append({"dead": address, "started": seen.address})
                    continue
            if len(st.started) >= MAX_REPLACEMENTS:
                continue
            st.started.append(now)
            try:
                (started,) = self.platform.start(spec, gone.version, 1, gone.zone)
            except Exception as exc:
                self._raise(spec, st, f"start:{address}", "ServiceReplacementFailed", "warning",
                            f"{spec.name}: cannot replace {address} ({gone.version}, zone {gone.zone})",
                            str(exc))  # fmt: skip
                continue
            st.replacing[address] = started
            out.setdefault("starting", []).append(started.address)
        return out

    def _probe_one(self, spec: ServiceSpec, st: _Service, inst: Instance) -> None:
        if inst.state is not InstanceState.RUNNING:
            return
        if self.platform.healthy(spec, inst):
            st.ok[inst.address] = st.ok.get(inst.address, 0) + 1
        else:
            st.ok[inst.address] = 0

    # -- alerts ------------------------------------------------------------------------------
    def _raise(
        self, spec: ServiceSpec, st: _Service, key: str, name: str, severity: str, summary: str,
        description: str, **labels: str,
    ) -> None:  # fmt: skip
        if key in st.alerted:
            return
        st.alerted.add(key)
        self.store.audit(actor="controller", action="serving.alert", service=spec.name, outcome="failed",
                         detail={"alert": name, "summary": summary, "description": description})  # fmt: skip
        if self.alert_sink is None:
            return
        now = self.clock()
        all_labels = {"alertname": name, "service": spec.name, "severity": severity, "source": "serving"}
        all_labels.update(labels)
        try:
            self.alert_sink([PipelineAlert(all_labels, {"summary": summary, "description": description}, now,
                                           ends_at=now + ALERT_TTL_S)])  # fmt: skip
        except Exception:  # an alert must never stop the watch
            log.exception("serving alert %s for %s failed", name, spec.name)

    def _clear(self, st: _Service, key: str) -> None:
        st.alerted.discard(key)


def for_rollout(rollout: Any, **kw: Any) -> ServingWatch:
    """The watch over the services of ``rollout`` (a ``RolloutService``): its store, platform,
    router and policy, and its alerts' pipeline when the policy has one."""
    sink = getattr(rollout.alerts, "sink", None)
    return ServingWatch(
        rollout.store, rollout.platform, rollout.router, lambda: list(rollout.loaded.policy.services),
        alert_sink=sink, **kw,
    )  # fmt: skip
