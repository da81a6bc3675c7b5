"""Continuous delivery (D3, D9, E4): the ``delivery`` section of a policy and its pure decisions.

The section says where the code lives and what happens once a change is
approved: which repository and branch to merge into, which services deploy on
a merge to main, who holds the change-control roles the gates name, whom to
notify, and which checks make up the preparation and post-deployment phases
around the rollout (execution)::

    delivery:
      repository: {url: ../origin.git, mainBranch: main, mergeMode: merge-commit, evidenceTimeout: 4h}
      services: [web]                       # deployed on every merge to main
      releases: releases                    # each merge commit is exported to releases/<version>
      version: "{short}"                    # {short} = first 12 hex digits of the merge commit, {sha} = all
      approvers: {cab: [carol], qa-lead: [quinn]}
      webhooks: {circleci: CIRCLECI_WEBHOOK_SECRET, github: GITHUB_WEBHOOK_SECRET, replayWindow: 1h}
      notify: {urls: [RELEASE_CHANNEL_URL], required: false}   # names of secrets holding Apprise URLs
      preparation: {resources: {minFreeDiskMb: 100, minFreeMemoryMb: 64}}
      postDeployment:
        smoke: [{path: /healthz}, {path: /, contains: '"version"'}]
        performance: {path: /, requests: 50, maxRegression: 0.5, slackMs: 5}
        security: {url: https://shop.example.com/, requireHeaders: [strict-transport-security]}
        releaseNotes: {path: "docs/releases/{service}.md"}
        rollbackOnFailure: true

Secrets (webhook keys, Apprise URLs with tokens in them) are referred to by
**name** only; the service resolves the names, so the policy file never holds
a secret.  Everything below is pure: measurements come in as numbers and
header maps; verdicts and documents go out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from shipwarden.domain._base import PositiveDuration, UrlPath, _Strict
from shipwarden.domain.version import check_version

_SECRET = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_SERVICE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class GitHubRepo(_Strict):
    """Merge pull requests through GitHub's REST merge endpoint instead of pushing with git."""

    owner: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    token_secret: str = Field(pattern=_SECRET, alias="tokenSecret")
    api_url: str = Field("https://api.github.com", alias="apiUrl")
    merge_method: Literal["merge", "squash", "rebase"] = Field("merge", alias="mergeMethod")


class RepositorySpec(_Strict):
    #: a git remote (URL or path; a relative path is relative to the policy file)
    url: str = Field(min_length=1)
    main_branch: str = Field("main", alias="mainBranch", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
    merge_mode: Literal["merge-commit", "fast-forward"] = Field("merge-commit", alias="mergeMode")
    github: GitHubRepo | None = None
    #: a commit that reached main before its evidence and is still waiting for it this long after it
    #: arrived raises an alert and an audit entry (it is still never deployed without its evidence)
    evidence_timeout: PositiveDuration = Field(4 * 3600.0, alias="evidenceTimeout")


class WebhookSecrets(_Strict):
    """Names of the secrets that sign CI webhooks; a provider without one is refused (401)."""

    circleci: str | None = Field(None, pattern=_SECRET)
    github: str | None = Field(None, pattern=_SECRET)
    replay_window: PositiveDuration = Field(3600.0, alias="replayWindow")


class NotifyTargets(_Strict):
    """Where notifications go: names of secrets, never the URLs (they carry credentials)."""

    #: names of secrets, each holding one Apprise URL (``json://``, ``slack://``, ``mailto://`` …)
    urls: list[str] = Field(min_length=1)

    @field_validator("urls")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(_SECRET, name):
                raise ValueError(
                    f"{name!r} is not a secret name (the URL itself belongs in the secret store)"
                )
        return v


class NotifySpec(NotifyTargets):
    #: when true, a notification that cannot be delivered stops the deployment in preparation
    required: bool = False


class ResourceCheck(_Strict):
    min_free_disk_mb: int = Field(100, ge=0, alias="minFreeDiskMb")
    min_free_memory_mb: int = Field(64, ge=0, alias="minFreeMemoryMb")


class Preparation(_Strict):
    resources: ResourceCheck = Field(default_factory=ResourceCheck)
    #: require a passed ``backup`` gate before the rollout starts (E4 backup confirmation)
    require_backup: bool = Field(True, alias="requireBackup")


class SmokeCheck(_Strict):
    path: UrlPath = "/healthz"
    expect_status: int = Field(200, alias="expectStatus", ge=100, le=599)
    contains: str | None = None
    requests: int = Field(3, ge=1, le=1000)


class PerfValidation(_Strict):
    """Latency after the switch compared with the same measurement just before it."""

    path: UrlPath = "/"
    requests: int = Field(50, ge=5, le=100_000)
    #: allowed growth of p95 over the baseline, as a fraction (0.5 = +50 %)
    max_regression: float = Field(0.5, ge=0, alias="maxRegression")
    #: absolute allowance in ms, so sub-millisecond noise on loopback is not a "regression"
    slack_ms: float = Field(5.0, ge=0, alias="slackMs")
    max_error_rate: float = Field(0.0, ge=0, le=1, alias="maxErrorRate")


class SecurityConfirmation(_Strict):
    #: the public URL; TLS is checked when it is ``https://``.  Absent: headers are checked on the route.
    url: str | None = None
    require_headers: list[str] = Field(default_factory=list, alias="requireHeaders")
    #: CA bundle (PEM) to verify the certificate with; default: the system store
    ca_file: str | None = Field(None, alias="caFile")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"^https?://[^\s/]+(/\S*)?$", v):
            raise ValueError("must be an http:// or https:// URL")
        return v


class ReleaseNotesSpec(_Strict):
    #: documentation file the notes are prepended to; relative to the policy file; ``{service}`` allowed
    path: str = Field("docs/releases/{service}.md", min_length=1)

    @field_validator("path")
    @classmethod
    def _only_service(cls, v: str) -> str:
        other = sorted(set(re.findall(r"\{[^{}]*\}", v)) - {"{service}"})
        if other or "\x00" in v:
            raise ValueError(f"only the {{service}} placeholder is filled in; found {other or 'a NUL'}")
        return v


class PostDeployment(_Strict):
    smoke: list[SmokeCheck] = Field(default_factory=lambda: [SmokeCheck()])
    performance: PerfValidation | None = Field(default_factory=PerfValidation)
    security: SecurityConfirmation | None = None
    release_notes: ReleaseNotesSpec | None = Field(default_factory=ReleaseNotesSpec, alias="releaseNotes")
    rollback_on_failure: bool = Field(True, alias="rollbackOnFailure")


class DeliveryPolicy(_Strict):
    """The ``delivery`` section of a policy file."""

    repository: RepositorySpec
    services: list[str] = Field(min_length=1)
    releases: str = "releases"
    version: str = "{short}"
    approvers: dict[str, list[str]] = Field(default_factory=dict)
    webhooks: WebhookSecrets = Field(default_factory=WebhookSecrets)
    notify: NotifySpec | None = None
    preparation: Preparation = Field(default_factory=Preparation)
    post_deployment: PostDeployment = Field(default_factory=PostDeployment, alias="postDeployment")

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[str]) -> list[str]:
        for s in v:
            if not _SERVICE.fullmatch(s):
                raise ValueError(f"invalid service name {s!r}")
        if len(set(v)) != len(v):
            raise ValueError("a service is listed twice")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if "{short}" not in v and "{sha}" not in v:
            raise ValueError(
                "the version must contain {short} or {sha}: each merge commit is its own version"
            )
        probe = v.replace("{short}", "").replace("{sha}", "")
        if "{" in probe or "}" in probe:
            raise ValueError("only the {short} and {sha} placeholders are filled in")
        for sha in (_LONGEST_SHA, _LONGEST_SHA[:40]):  # SHA-256 and SHA-1 repositories
            try:  # every version it can produce must be a valid one
                version_for(v, sha)
            except ValueError as exc:
                raise ValueError(f"with a commit filled in: {exc}") from None
        return v

    @field_validator("approvers")
    @classmethod
    def _approvers(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for role in v:
            if not _ROLE.fullmatch(role):
                raise ValueError(f"invalid role name {role!r}")
        return v

    def roles_of(self, user: str) -> frozenset[str]:
        """Change-control roles the policy gives ``user``."""
        return frozenset(role for role, users in self.approvers.items() if user in users)


# --- pure decisions ----------------------------------------------------------------------------------------


_SHA = re.compile(r"^[0-9a-f]{7,64}$")
_LONGEST_SHA = "f" * 64


def version_for(template: str, sha: str) -> str:
    """The version the delivery pipeline deploys a merge commit as (``delivery.version``), checked
    like any version typed by hand (``InvalidVersion``, a ``ValueError``, when it is not one)."""
    if not _SHA.fullmatch(sha):
        raise ValueError(f"{sha[:80]!r} is not a git commit sha")
    return check_version(template.replace("{short}", sha[:12]).replace("{sha}", sha))


@dataclass(frozen=True)
class LatencySummary:
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "max_ms": self.max_ms,
        }


def _pct(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(math.ceil(q * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def summarize_latencies(latencies_ms: Sequence[float], errors: int = 0) -> LatencySummary:
    """Summary of successful request latencies plus the number of failed requests."""
    vals = sorted(latencies_ms)
    n = len(vals) + errors
    if not vals:
        return LatencySummary(n, errors, None, None, None)
    return LatencySummary(
        n, errors, round(_pct(vals, 0.5), 3), round(_pct(vals, 0.95), 3), round(vals[-1], 3)
    )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str


def perf_verdict(baseline: LatencySummary | None, current: LatencySummary, spec: PerfValidation) -> Verdict:
    """Is the new latency within ``maxRegression`` (+ ``slackMs``) of the pre-deployment baseline?"""
    if current.requests == 0 or current.p95_ms is None:
        return Verdict(False, "no successful request after the deployment")
    if current.error_rate > spec.max_error_rate:
        return Verdict(
            False, f"error rate {current.error_rate:.1%} after the deployment (max {spec.max_error_rate:.1%})"
        )
    if baseline is None or baseline.p95_ms is None:
        return Verdict(True, f"p95 {current.p95_ms} ms; no pre-deployment baseline (first version)")
    limit = baseline.p95_ms * (1 + spec.max_regression) + spec.slack_ms
    cmp = f"p95 {current.p95_ms} ms vs baseline {baseline.p95_ms} ms (limit {round(limit, 3)} ms)"
    if current.p95_ms > limit:
        return Verdict(False, "latency regression: " + cmp)
    return Verdict(True, cmp)


def missing_headers(headers: Mapping[str, str], required: Sequence[str]) -> list[str]:
    present = {k.lower() for k in headers}
    return [h for h in required if h.lower() not in present]


def smoke_verdict(status: int, body: str, spec: SmokeCheck) -> Verdict:
    if status != spec.expect_status:
        return Verdict(False, f"GET {spec.path} answered {status}, expected {spec.expect_status}")
    if spec.contains is not None and spec.contains not in body:
        return Verdict(False, f"GET {spec.path} answered {status} but the body lacks {spec.contains!r}")
    return Verdict(True, f"GET {spec.path} answered {status}")


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    at: datetime
    subject: str


def release_notes(
    service: str,
    from_version: str | None,
    to_version: str,
    commits: Sequence[Commit],
    *,
    at: datetime,
    change_id: str | None = None,
    deployment_id: str | None = None,
) -> str:
    """Markdown release notes for one deployment: the commits between the two versions, newest first."""
    title = f"## {service} {to_version} — {at.strftime('%Y-%m-%d %H:%M UTC')}"
    lines = [title, ""]
    origin = f"from {from_version}" if from_version else "first release"
    refs = ", ".join(
        x
        for x in (
            f"deployment {deployment_id}" if deployment_id else "",
            f"change {change_id}" if change_id else "",
        )
        if x
    )
    lines.append(f"{origin}{'; ' + refs if refs else ''}; {len(commits)} commit(s):")
    lines.append("")
    for c in commits:
        subject = c.subject.replace("\n", " ").strip() or "(no subject)"
        lines.append(f"- {c.sha[:12]} {subject} ({c.author}, {c.at.date().isoformat()})")
    lines.append("")
    return "\n".join(lines)


def enough(free_mb: float, minimum_mb: int, what: str) -> Verdict:
    if free_mb < minimum_mb:
        return Verdict(False, f"{what}: {free_mb:.0f} MB free, {minimum_mb} MB required")
    return Verdict(True, f"{what}: {free_mb:.0f} MB free (≥ {minimum_mb} MB)")
