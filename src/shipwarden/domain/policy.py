"""The policy model: one YAML file per team, parsed into Pydantic models.

The file is the single source of truth for how a team ships: which services
exist, how an instance is started and health-checked, and which rollout
strategy moves traffic to a new version.  Parsing is strict (unknown keys are
errors, so a typo never silently turns a safety setting off) and every error
carries the file, the line and the dotted field path, because the person
reading it is editing YAML, not Python.

This module does no I/O: ``load_policy_text`` takes the text and a display
name; the caller reads the file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from shipwarden.domain._base import (
    Duration,
    EnvName,
    PolicyError,
    PolicyIssue,
    PositiveDuration,
    UrlPath,
    _Strict,
    check_template,
    parse_duration,
)
from shipwarden.domain._yaml import line_of, path_text, read_document
from shipwarden.domain.alerting.monitoring import MonitoringPolicy
from shipwarden.domain.alerting.spec import AlertingPolicy
from shipwarden.domain.alerts import AlertsPolicy
from shipwarden.domain.analysis import AnalysisSpec
from shipwarden.domain.delivery import DeliveryPolicy
from shipwarden.domain.dr.spec import DatabaseSpec, validate_databases
from shipwarden.domain.gates import GatePolicy
from shipwarden.domain.oncall.spec import OnCallPolicy

__all__ = [
    "RUN_PLACEHOLDERS",
    "Duration",
    "PolicyError",
    "PolicyIssue",
    "parse_duration",
    "load_policy_text",
    "Policy",
    "ServiceSpec",
]


RUN_PLACEHOLDERS = frozenset({"version", "port", "service", "python", "zone"})
"""What the platform substitutes in ``run.command``, ``run.env`` values and ``run.workdir``
(``{zone}``: the instance's zone, empty where the policy declares no zones)."""


def _run_template(v: str) -> str:
    return check_template(v, RUN_PLACEHOLDERS)


RunTemplate = Annotated[str, AfterValidator(_run_template)]


@dataclass(frozen=True)
class RenderedRun:
    """``RunSpec`` with its placeholders filled in: what the platform starts."""

    argv: list[str]
    env: dict[str, str]
    workdir: str | None


class RunSpec(_Strict):
    """How the local platform starts one instance of a version.

    ``command``, ``env`` values and ``workdir`` may use the ``{version}``, ``{port}``,
    ``{service}``, ``{python}`` and ``{zone}`` placeholders (:data:`RUN_PLACEHOLDERS`) — bare
    names only; ``{{``/``}}`` are literal braces.  ``render`` is the one place they are filled in.

    ``instances`` counts instances *per zone* where the policy declares ``zones`` (3 zones ×
    ``instances: 2`` run 6), and in all otherwise.
    """

    command: list[RunTemplate] = Field(min_length=1)
    platform: PlatformName = "local"
    port_env: EnvName = Field("PORT", alias="portEnv")
    env: dict[EnvName, RunTemplate] = Field(default_factory=dict)
    workdir: RunTemplate | None = None
    instances: int = Field(2, ge=1, le=64)
    stop_timeout: PositiveDuration = Field(10.0, alias="stopTimeout")

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, v: Any) -> Any:
        if isinstance(v, str):
            import shlex

            try:
                return shlex.split(v)
            except ValueError as exc:  # "No closing quotation"
                raise ValueError(f"cannot split the command like a shell: {exc}") from None
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("the program (the first word) is empty")
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("is empty (leave it out to start in the policy file's directory)")
        return v

    @model_validator(mode="after")
    def _port_env_is_the_platforms(self) -> RunSpec:
        if self.port_env in self.env:
            raise ValueError(
                f"env.{self.port_env} would be replaced by the instance's port: {self.port_env} is "
                "'portEnv', which the platform sets"
            )
        return self

    def render(self, *, version: str, port: str, service: str, python: str, zone: str = "") -> RenderedRun:
        values = {"version": version, "port": port, "service": service, "python": python, "zone": zone}
        return RenderedRun(
            argv=[a.format_map(values) for a in self.command],
            env={k: t.format_map(values) for k, t in self.env.items()},
            workdir=self.workdir.format_map(values) if self.workdir is not None else None,
        )


class HealthCheck(_Strict):
    path: UrlPath = "/healthz"
    interval: PositiveDuration = 1.0
    timeout: PositiveDuration = 2.0
    healthy_threshold: int = Field(2, ge=1, le=1000, alias="healthyThreshold")
    unhealthy_threshold: int = Field(3, ge=1, le=1000, alias="unhealthyThreshold")
    start_timeout: PositiveDuration = Field(60.0, alias="startTimeout")


class PreviewVerification(_Strict):
    """Requests sent through the preview route before the switch."""

    path: UrlPath = "/"
    requests: int = Field(20, ge=1, le=10_000)
    expect_status: int = Field(200, alias="expectStatus", ge=100, le=599)


class BlueGreen(_Strict):
    preview: PreviewVerification = Field(default_factory=PreviewVerification)
    auto_promotion: bool = Field(True, alias="autoPromotion")
    scale_down_delay: Duration = Field(30.0, alias="scaleDownDelay")
    verify_requests: int = Field(50, ge=1, le=100_000, alias="verifyRequests")
    pre_promotion_analysis: AnalysisSpec | None = Field(None, alias="prePromotionAnalysis")
    post_promotion_analysis: AnalysisSpec | None = Field(None, alias="postPromotionAnalysis")
    progress_deadline: PositiveDuration = Field(600.0, alias="progressDeadline")

    @field_validator("post_promotion_analysis")
    @classmethod
    def _no_judge_after_the_switch(cls, v: AnalysisSpec | None) -> AnalysisSpec | None:
        # Before the switch the judge compares green on the preview route with blue on production;
        # after it blue serves nothing, so there is no baseline traffic to compare with.
        if v is not None and v.judge is not None:
            raise ValueError(
                "a judge needs the old version serving traffic beside the new one, and after the "
                "switch it serves none: judge in 'prePromotionAnalysis', or use threshold 'metrics' here"
            )
        return v


class SetWeight(_Strict):
    set_weight: int = Field(alias="setWeight", ge=0, le=100)


class Pause(_Strict):
    """``pause: {}`` waits for ``shipwarden promote``; ``pause: {duration: 30s}`` waits."""

    class Body(_Strict):
        duration: Duration | None = None

    pause: Body


class AnalysisStep(_Strict):
    """Run the canary's analysis now and wait for its verdict before the next step.

    ``analysis: {}`` uses the canary-level ``analysis`` template; a full
    ``AnalysisSpec`` here replaces it for this step.
    """

    analysis: AnalysisSpec | dict[str, Any]

    @field_validator("analysis")
    @classmethod
    def _empty_or_spec(cls, v: AnalysisSpec | dict[str, Any]) -> AnalysisSpec | dict[str, Any]:
        if isinstance(v, dict) and v:
            return AnalysisSpec.model_validate(v)
        return v


def _step_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        tags = {"setWeight": "SetWeight", "pause": "Pause", "analysis": "AnalysisStep"}
        keys = [tags[k] for k in v if k in tags]
        return keys[0] if len(keys) == 1 else None
    kinds: dict[type, str] = {SetWeight: "SetWeight", Pause: "Pause", AnalysisStep: "AnalysisStep"}
    return kinds.get(type(v))


CanaryStep = Annotated[
    Annotated[SetWeight, Tag("SetWeight")]
    | Annotated[Pause, Tag("Pause")]
    | Annotated[AnalysisStep, Tag("AnalysisStep")],
    Discriminator(
        _step_kind,
        custom_error_type="canary_step",
        custom_error_message="a step is exactly one of 'setWeight', 'pause' or 'analysis'",
    ),
]


class BackgroundAnalysis(AnalysisSpec):
    """Analysis that runs continuously from ``startingStep`` until promotion (Argo's background analysis)."""

    starting_step: int = Field(0, ge=0, alias="startingStep")
    interval: PositiveDuration = 1.0


class ConfirmGates(_Strict):
    """Operator confirmation before a weight increase / before promotion, with a time-out."""

    before_weight_increase: bool = Field(False, alias="beforeWeightIncrease")
    before_promotion: bool = Field(False, alias="beforePromotion")
    timeout: PositiveDuration = 600.0
    on_timeout: Literal["rollback", "proceed"] = Field("rollback", alias="onTimeout")


class Canary(_Strict):
    steps: list[CanaryStep] = Field(min_length=1)
    analysis: BackgroundAnalysis | None = None
    scale_down_delay: Duration = Field(30.0, alias="scaleDownDelay")
    verify_requests: int = Field(50, ge=1, le=100_000, alias="verifyRequests")
    progress_deadline: PositiveDuration = Field(600.0, alias="progressDeadline")
    on_inconclusive: Literal["pause", "rollback"] = Field("pause", alias="onInconclusive")
    #: stable instances that must be running before traffic moves further onto the canary; stable
    #: instances that die during the canary are replaced (0: neither hold nor replace)
    min_available: int = Field(1, ge=0, alias="minAvailable")
    confirm: ConfirmGates = Field(default_factory=ConfirmGates)

    @model_validator(mode="after")
    def _analysis_template(self) -> Canary:
        for i, step in enumerate(self.steps):
            if isinstance(step, AnalysisStep) and isinstance(step.analysis, dict) and self.analysis is None:
                raise ValueError(f"steps[{i}]: 'analysis: {{}}' needs a canary-level 'analysis' to use")
        if self.analysis is not None and self.analysis.starting_step >= len(self.steps):
            raise ValueError(f"analysis.startingStep {self.analysis.starting_step} is past the last step")
        return self


def _pause_between(v: Any) -> Any:
    if v in ("none", "confirm"):
        return v
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        try:
            seconds = parse_duration(v)
        except ValueError:
            pass
        else:
            if seconds > 0:
                return seconds
    raise ValueError(f"is 'none', 'confirm' or a positive duration (30s, 2m), not {v!r}")


def _min_per_zone(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("is a number of instances (1) or a percentage of them ('50%')")
    if isinstance(v, int):
        if v < 0:
            raise ValueError(f"is at least 0, not {v}")
        return v
    if isinstance(v, str) and re.fullmatch(r"\d{1,3}%", v.strip()) and int(v.strip()[:-1]) <= 100:
        return v.strip()
    raise ValueError(f"is a number of instances (1) or a percentage of them ('50%'), not {v!r}")


class ZoneRollout(_Strict):
    """How a rollout walks the zones the policy declares (E2): one wave per zone, in ``order``.

    Each wave runs the service's strategy inside one zone — start the new version there, preview or
    canary steps with their analysis, promote that zone — while the zones done serve the new
    version and the others the old one.  Old instances stay warm in every zone until the last zone
    is promoted, so a failure in any wave rolls back every zone at once.  ``pauseBetween``: go on
    at once (``none``), wait for ``shipwarden confirm`` (``confirm``), or wait a duration.
    ``minHealthyPerZone``: instances (or a percentage of ``run.instances``) each zone must have
    healthy for the version serving it before traffic moves further; dead stable instances of a
    zone are replaced, and the rollout holds (its progress deadline running) while a zone is short.
    """

    order: list[str] | None = None
    pause_between: Annotated[str | float, BeforeValidator(_pause_between)] = Field(
        "none", alias="pauseBetween"
    )
    min_healthy_per_zone: Annotated[int | str, BeforeValidator(_min_per_zone)] = Field(
        1, alias="minHealthyPerZone"
    )

    @field_validator("order")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            seen = [z for i, z in enumerate(v) if z in v[:i]]
            if seen:
                raise ValueError(f"names zone {seen[0]!r} twice; each zone is rolled out once")
            if not v:
                raise ValueError("is empty; leave it out to go in the order 'zones' declares")
        return v

    def min_healthy(self, instances: int) -> int:
        """``minHealthyPerZone`` in instances (a percentage rounds up)."""
        v = self.min_healthy_per_zone
        if isinstance(v, str):
            return -(-instances * int(v[:-1]) // 100)
        return v


class Strategy(_Strict):
    blue_green: BlueGreen | None = Field(None, alias="blueGreen")
    canary: Canary | None = None
    zones: ZoneRollout | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Strategy:
        if (self.blue_green is None) == (self.canary is None):
            raise ValueError("declare exactly one of 'blueGreen' or 'canary'")
        return self

    @property
    def kind(self) -> Literal["blueGreen", "canary"]:
        return "blueGreen" if self.blue_green is not None else "canary"


RouterDriver = Literal["nginx", "haproxy"]
"""``routing.driver``: the traffic routers built (``bootstrap.ROUTERS`` has one line per name)."""
PlatformName = Literal["local"]
"""``run.platform``: where instances run (``bootstrap.PLATFORMS``)."""


class Routing(_Strict):
    port: int = Field(ge=1, le=65535)
    preview_port: int = Field(alias="previewPort", ge=1, le=65535)
    driver: RouterDriver = "nginx"

    @model_validator(mode="after")
    def _distinct(self) -> Routing:
        if self.port == self.preview_port:
            raise ValueError("'port' and 'previewPort' must differ")
        return self


_NAME = r"^[a-z][a-z0-9-]{0,62}$"
_ZONE = r"^[a-z0-9][a-z0-9-]{0,31}$"
ZoneName = Annotated[str, Field(pattern=_ZONE)]


class ServiceSpec(_Strict):
    name: str = Field(pattern=_NAME)
    run: RunSpec
    health: HealthCheck = Field(default_factory=HealthCheck)
    strategy: Strategy
    routing: Routing

    @model_validator(mode="after")
    def _capacity(self) -> ServiceSpec:
        c = self.strategy.canary
        if c is not None and c.min_available > self.run.instances:
            raise ValueError(
                f"strategy.canary.minAvailable ({c.min_available}) is more than run.instances "
                f"({self.run.instances}): the stable version never runs that many"
            )
        return self


class Policy(_Strict):
    api_version: Literal["shipwarden/v1"] = Field(alias="apiVersion")
    team: str = Field(pattern=_NAME)
    services: list[ServiceSpec] = Field(min_length=1)
    gates: GatePolicy | None = None
    delivery: DeliveryPolicy | None = None
    alerts: AlertsPolicy | None = None
    databases: list[DatabaseSpec] = Field(default_factory=list)
    #: the failure domains instances run in (E2): every service runs ``run.instances`` in each
    zones: list[ZoneName] = Field(default_factory=list, max_length=16)

    @field_validator("zones")
    @classmethod
    def _zones_distinct(cls, v: list[str]) -> list[str]:
        twice = [z for i, z in enumerate(v) if z in v[:i]]
        if twice:
            raise ValueError(f"declares zone {twice[0]!r} twice")
        return v

    def zone_issues(self) -> list[tuple[tuple[Any, ...], str]]:
        """What ``strategy.zones`` of each service gets wrong about the declared ``zones``, as
        (path, message): checked after the models, where both are known."""
        out: list[tuple[tuple[Any, ...], str]] = []
        for i, s in enumerate(self.services):
            zr = s.strategy.zones
            if zr is None:
                continue
            at = ("services", i, "strategy", "zones")
            if not self.zones:
                out.append((at, "a zone rollout needs the zones the policy declares: add 'zones: [a, b, …]' "
                                "at the top of the policy"))
                continue
            if zr.order is not None:
                unknown = [z for z in zr.order if z not in self.zones]
                missing = [z for z in self.zones if z not in zr.order]
                if unknown:
                    out.append(((*at, "order"), f"names zone(s) {unknown} that 'zones' does not declare "
                                                f"(declared: {self.zones})"))
                elif missing:
                    out.append(((*at, "order"), f"leaves out zone(s) {missing}: a rollout goes through "
                                                "every zone the service runs in"))
            n = zr.min_healthy(s.run.instances)
            if n > s.run.instances:
                out.append(((*at, "minHealthyPerZone"), f"is {n}, more than run.instances "
                                                         f"({s.run.instances}) per zone"))
        return out

    def zone_order(self, service: ServiceSpec) -> tuple[str, ...]:
        """The zones a rollout of ``service`` goes through, in order (none: no zones declared)."""
        zr = service.strategy.zones
        return tuple(zr.order) if zr is not None and zr.order else tuple(self.zones)
    alerting: AlertingPolicy | None = None
    oncall: OnCallPolicy | None = None
    monitoring: MonitoringPolicy | None = None

    @model_validator(mode="after")
    def _monitored(self) -> Policy:
        if self.monitoring is not None:
            names = {s.name for s in self.services}
            unknown = sorted(set(self.monitoring.services) - names)
            if unknown:
                raise ValueError(
                    f"monitoring.services names service(s) the policy does not declare: {', '.join(unknown)}"
                )
        return self

    @model_validator(mode="after")
    def _oncall_services(self) -> Policy:
        if self.oncall is not None:
            names = {s.name for s in self.services}
            unknown = sorted(set(self.oncall.services) - names)
            if unknown:
                raise ValueError(f"oncall.services: {', '.join(unknown)} not among the policy's services")
        if self.alerting is not None:  # a receiver that escalates names an escalation policy of oncall
            known = set(self.oncall.escalation) if self.oncall is not None else set()
            why = "" if self.oncall is not None else " (the policy has no 'oncall' section)"
            problems = [
                f"@alerting/receivers/{i}/escalation: escalation policy {r.escalation!r} is not in "
                f"oncall.escalation{why}"
                for i, r in enumerate(self.alerting.receivers)
                if r.escalation is not None and r.escalation not in known
            ]
            if problems:
                raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _databases(self) -> Policy:
        ports = {p: s.name for s in self.services for p in (s.routing.port, s.routing.preview_port)}
        validate_databases(self.databases, [s.name for s in self.services], ports)
        return self

    @model_validator(mode="after")
    def _unique(self) -> Policy:
        seen: set[str] = set()
        ports: dict[int, str] = {}
        for s in self.services:
            if s.name in seen:
                raise ValueError(f"service {s.name!r} is declared twice")
            seen.add(s.name)
            for p in (s.routing.port, s.routing.preview_port):
                if p in ports:
                    raise ValueError(f"port {p} is used by both {ports[p]!r} and {s.name!r}")
                ports[p] = s.name
        return self

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.services)
        raise UnknownService(f"unknown service {name!r}; the policy declares: {known}")


class UnknownService(LookupError):
    pass


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    digest: str  # sha256 of the exact text: the policy version recorded with each deployment
    source: str


def _field_path(loc: tuple[Any, ...], data: Any) -> tuple[tuple[Any, ...], str]:
    """Pydantic locations include union-member tags (``SetWeight``, ``function-after[…]``) and
    ``[key]`` markers; keep only real keys and indexes.  A part is real when the document has it
    there (an env var named ``A`` is a key, not a tag), else unless it looks like a tag."""
    real: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        elif isinstance(part, str) and (part[:1].isupper() or "[" in part or part.startswith("function-")):
            continue
        else:
            cur = None
        real.append(part)
    return tuple(real), path_text(tuple(real))


def _located(msg: str) -> list[tuple[tuple[Any, ...], str]]:
    """A validator's message, split into (path below the failing field, text) — a cross-reference
    check names each problem's own place as ``@schedules/primary/layers/0: …`` on its own line."""
    out: list[tuple[tuple[Any, ...], str]] = []
    for line in msg.split("\n") if msg.startswith("@") else [msg]:
        head, sep, text = line.partition(": ")
        if line.startswith("@") and sep:
            out.append((tuple(int(p) if p.isdigit() else p for p in head[1:].split("/")), text))
        else:
            out.append(((), line))
    return out


def load_policy_text(content: str | bytes, source: str = "<policy>") -> LoadedPolicy:
    """Parse and validate a policy; raises ``PolicyError`` with every issue found, never anything else.

    The one loader: ``policy check``, ``deploy``, the API and the controller all come here (through
    ``bootstrap.load_policy``), so a file that passes the check is a file they accept.  ``digest``
    is the sha256 of the exact bytes (``sha256sum`` of the file gives the same)."""
    doc = read_document(content, source)
    raw = content if isinstance(content, bytes) else content.encode("utf-8")
    if doc.root is None or not isinstance(doc.data, dict):
        raise PolicyError(
            [PolicyIssue(source, 1, "", "a policy is a YAML mapping with apiVersion, team, services")]
        )
    try:
        policy = Policy.model_validate(doc.data)
    except ValidationError as exc:
        issues = []
        seen: set[tuple[str, str]] = set()
        for err in exc.errors():
            path, text_path = _field_path(tuple(err["loc"]), doc.data)
            msg = err["msg"].removeprefix("Value error, ")
            for sub, text in _located(msg):  # "@a/b/0: message" lines: issues below the error's path
                at, shown = _field_path((*path, *sub), doc.data) if sub else (path, text_path)
                if (shown, text) in seen:
                    continue
                seen.add((shown, text))
                issues.append(PolicyIssue(source, line_of(doc.root, at), shown, text))
        raise PolicyError(issues) from None
    crossed = policy.zone_issues()
    if crossed:
        raise PolicyError(
            [PolicyIssue(source, line_of(doc.root, path), path_text(path), msg) for path, msg in crossed]
        )
    return LoadedPolicy(policy, hashlib.sha256(raw).hexdigest(), source)


def policy_json_schema() -> dict[str, Any]:
    return Policy.model_json_schema(by_alias=True)
