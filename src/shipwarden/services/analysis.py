"""Live analysis during a rollout: measure, record, judge (D5, D7, D8, E4).

Two sources feed an ``AnalysisRun`` (``domain.analysis_run``):

* **the judge** gets one baseline/canary sample pair per interval from the
  router's own per-version counters (``TrafficRouter.version_counts``: requests, 5xx,
  latency histogram).  The
  data plane is the one place that sees every request of both versions with
  no scrape delay, which is what keeps detection within one or two intervals;
* **threshold checks** query metric providers (Prometheus, New Relic) with the
  policy's templates, fetching baseline and canary side by side.

Every sample and measurement is written to the store *before* the run sees
it, so a resumed controller and ``shipwarden replay`` rebuild the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from shipwarden.domain import analysis as A
from shipwarden.domain.analysis import AnalysisSpec
from shipwarden.domain.analysis_run import AnalysisRun, RunState, measurement_to_json
from shipwarden.domain.judge.samples import Sample
from shipwarden.domain.measurement import ErrorKind, Measurement, NoData, ProviderError, Value
from shipwarden.domain.policy import AnalysisStep, ServiceSpec
from shipwarden.domain.rollout import Check, Phase
from shipwarden.ports.metrics import Measurement as Answer
from shipwarden.ports.metrics import MetricProvider
from shipwarden.ports.routing import TrafficRouter, VersionCounts
from shipwarden.ports.store import Deployment, DeploymentStore

JUDGE_INTERVAL_S = 1.0


def _delta(now: VersionCounts | None, before: VersionCounts | None, t: float) -> Sample:
    if now is None:
        return Sample(t=t, requests=0, errors=0)
    if before is None or before.bounds_ms != now.bounds_ms:
        before = VersionCounts(0, 0, now.bounds_ms, tuple(0 for _ in now.cumulative))
    requests = max(0, now.requests - before.requests)
    errors = min(requests, max(0, now.errors - before.errors))
    if not now.bounds_ms:
        return Sample(t=t, requests=requests, errors=errors)
    counts = np.maximum(
        0, np.array(now.cumulative, dtype=np.int64) - np.array(before.cumulative, dtype=np.int64)
    )
    counts = np.maximum.accumulate(counts)  # keep the histogram cumulative despite counter resets
    return Sample(
        t=t,
        requests=requests,
        errors=errors,
        bucket_bounds=np.array(now.bounds_ms, dtype=np.float64),
        bucket_counts=counts,
    )


@dataclass(frozen=True)
class ActiveAnalysis:
    key: str  # background | step-N | pre | post
    spec: AnalysisSpec
    gating: bool
    interval_s: float
    #: where the new version's requests are counted for the judge: production for a canary;
    #: the preview route before a blue-green switch (the baseline is always production's)
    canary_route: str = "production"
    #: a zone wave's analysis: both arms are counted on that zone's instances only (E2), so the
    #: zones already on the new version, and those still on the old one, do not dilute the
    #: canary or the baseline
    zone: str | None = None


def active_analyses(spec: ServiceSpec, dep: Deployment) -> list[ActiveAnalysis]:
    """Which analyses the policy runs in the deployment's current phase and step."""
    out: list[ActiveAnalysis] = []
    bg, canary = spec.strategy.blue_green, spec.strategy.canary
    if dep.plan.get("skip_steps"):
        return out
    if canary is not None and dep.phase in (Phase.CANARY_STEP, Phase.PROMOTING):
        step = canary.steps[dep.step_index] if dep.phase is Phase.CANARY_STEP else None
        if isinstance(step, AnalysisStep):
            s = step.analysis if isinstance(step.analysis, AnalysisSpec) else canary.analysis
            assert s is not None
            out.append(ActiveAnalysis(f"step-{dep.step_index}", s, True, JUDGE_INTERVAL_S))
        if canary.analysis is not None and (
            dep.phase is Phase.PROMOTING or dep.step_index >= canary.analysis.starting_step
        ):
            out.append(ActiveAnalysis("background", canary.analysis, False, canary.analysis.interval))
    if bg is not None:
        if dep.phase is Phase.PREVIEW and bg.pre_promotion_analysis is not None:
            out.append(ActiveAnalysis("pre", bg.pre_promotion_analysis, True, JUDGE_INTERVAL_S, "preview"))
        if dep.phase is Phase.SCALE_DOWN_WAIT and bg.post_promotion_analysis is not None:
            out.append(ActiveAnalysis("post", bg.post_promotion_analysis, True, JUDGE_INTERVAL_S))
    zones = dep.plan.get("zones") or ()
    if zones and dep.plan.get("zone_waves") and dep.phase is not Phase.SCALE_DOWN_WAIT:
        # each zone's wave is judged on its own evidence: a run per zone (E2); the preview of a
        # blue-green wave reaches only that zone's new instances
        zone = zones[min(dep.wave, len(zones) - 1)]
        out = [replace(a, key=f"{a.key}@{zone}", zone=zone) for a in out]
    return out


class AnalysisController:
    """Runs the analyses of the deployments one controller drives."""

    def __init__(
        self,
        store: DeploymentStore,
        router: TrafficRouter,
        providers: Mapping[str, MetricProvider],
        clock: Callable[[], float],
    ) -> None:
        self.store, self.router, self.providers, self.clock = store, router, providers, clock
        self._runs: dict[tuple[str, str], AnalysisRun] = {}
        self._last: dict[tuple[str, str], tuple[VersionCounts | None, VersionCounts | None]] = {}

    def missing_providers(self, spec: ServiceSpec) -> set[str]:
        wanted: set[str] = set()
        for a in _all_specs(spec):
            wanted |= {m.provider for m in a.metrics}
        return wanted - set(self.providers)

    def _run(self, dep: Deployment, active: ActiveAnalysis) -> AnalysisRun:
        key = (dep.id, active.key)
        run = self._runs.get(key)
        if run is None:
            records = self.store.analysis_records(dep.id, active.key)
            start = records[0]["at"] if records else self.clock()
            run = AnalysisRun.new(active.spec, start, gating=active.gating, has_baseline=has_baseline(dep))
            run.replay(records)  # a resumed controller continues with the evidence gathered so far
            self._runs[key] = run
        return run

    def observe(self, dep: Deployment, spec: ServiceSpec) -> tuple[Check | None, str | None, dict[str, Any]]:
        """Measure what is due, then (verdict or None while running, inconclusive reason, numbers)."""
        actives = active_analyses(spec, dep)
        if not actives:
            return None, None, {}
        now = self.clock()
        statuses = []
        for active in actives:
            run = self._run(dep, active)
            if run.judge_due(now, active.interval_s):
                self._judge_sample(dep, active, run, now)
            for check in run.due_metrics(now):
                self._measure(dep, active, run, check, now)
            statuses.append((active, run.status()))
        numbers = {a.key: st.numbers for a, st in statuses}
        failed = [(a, st) for a, st in statuses if st.state is RunState.FAILED]
        if failed:
            return Check(False, "; ".join(f"[{a.key}] {st.detail}" for a, st in failed), now), None, numbers
        inconclusive = [(a, st) for a, st in statuses if st.state is RunState.INCONCLUSIVE]
        if inconclusive:
            return None, "; ".join(f"[{a.key}] {st.detail}" for a, st in inconclusive), numbers
        gating = [(a, st) for a, st in statuses if a.gating]
        if gating and all(st.state is RunState.PASSED for _, st in gating):
            return Check(True, "; ".join(f"[{a.key}] {st.detail}" for a, st in gating), now), None, numbers
        return None, None, numbers

    def _judge_sample(self, dep: Deployment, active: ActiveAnalysis, run: AnalysisRun, now: float) -> None:
        assert dep.from_version is not None
        counts = self.router.version_counts(dep.service, active.zone)  # one read for both arms
        base = counts.get("production", {}).get(dep.from_version)
        new = counts.get(active.canary_route, {}).get(dep.to_version)
        before = self._last.get((dep.id, active.key))  # each run diffs against its own previous snapshot
        self._last[(dep.id, active.key)] = (base, new)
        if before is None:
            return  # the first snapshot is the baseline for the next interval's deltas
        b = _delta(base, before[0], now)
        c = _delta(new, before[1], now)
        self.store.record_analysis(
            dep.id,
            key=active.key,
            kind="judge",
            name="judge",
            at=now,
            step_index=dep.step_index,
            baseline=b.to_json(),
            canary=c.to_json(),
        )
        run.add_samples(b, c)

    def _measure(
        self, dep: Deployment, active: ActiveAnalysis, run: AnalysisRun, check: A.MetricCheck, now: float
    ) -> None:
        provider = self.providers.get(check.provider)
        window = check.look_back
        canary: Measurement
        baseline: Measurement | None = None
        if provider is None:
            canary = ProviderError(f"metric provider {check.provider!r} is not configured",
                                   kind=ErrorKind.NOT_CONFIGURED, at=now)  # fmt: skip
        else:
            try:
                if has_baseline(dep):
                    assert dep.from_version is not None
                    pair = provider.fetch_pair(
                        check.query,
                        service=dep.service,
                        baseline_version=dep.from_version,
                        canary_version=dep.to_version,
                        window_s=window,
                        at=now,
                    )
                    canary, baseline = _m(pair.canary, now), _m(pair.baseline, now)
                else:
                    canary = _m(
                        provider.query(
                            check.query, service=dep.service, version=dep.to_version, window_s=window, at=now
                        ),
                        now,
                    )
            except ProviderError as exc:
                canary = exc.taken_at(now)
        self.store.record_analysis(
            dep.id,
            key=active.key,
            kind="metric",
            name=check.name,
            at=now,
            step_index=dep.step_index,
            canary=measurement_to_json(canary),
            baseline=measurement_to_json(baseline) if baseline is not None else None,
        )
        run.add_measurement(check.name, canary, baseline)

    def forget(self, dep_id: str) -> None:
        """Drop an ended deployment's runs (safe while other threads observe other deployments)."""
        for kept in (self._runs, self._last):
            for key in [k for k in list(kept) if k[0] == dep_id]:
                kept.pop(key, None)


def has_baseline(dep: Deployment) -> bool:
    """Is there an old version to compare the new one with (not a first deployment)?"""
    return dep.from_version is not None and dep.from_version != dep.to_version


def _m(result: Answer, now: float) -> Measurement:
    """The provider's answer as the measurement taken at ``now`` (the instant it was asked for)."""
    if isinstance(result, Value | NoData):
        return result if result.at == now else replace(result, at=now)
    return NoData(f"unexpected result {result!r}", now)


def _all_specs(spec: ServiceSpec) -> list[AnalysisSpec]:
    out: list[AnalysisSpec] = []
    if spec.strategy.canary is not None:
        c = spec.strategy.canary
        if c.analysis is not None:
            out.append(c.analysis)
        out += [
            s.analysis
            for s in c.steps
            if isinstance(s, AnalysisStep) and isinstance(s.analysis, AnalysisSpec)
        ]
    if spec.strategy.blue_green is not None:
        bg = spec.strategy.blue_green
        out += [a for a in (bg.pre_promotion_analysis, bg.post_promotion_analysis) if a is not None]
    return out
