"""Evidence uploads (D1, E3): reports parsed by the pure parsers and filed under their commit.

JUnit (per suite category), SARIF, k6, Locust, backup verifications and rollback plans are parsed
by the domain parsers before anything is stored, so a malformed file is refused with where and what
(422) and never reaches a gate.  Stored evidence carries the commit and pipeline it belongs to.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from shipwarden.domain.evidence import (
    BackupVerification,
    EvidenceError,
    Migration,
    RollbackPlan,
    parse_junit,
    parse_k6_summary,
    parse_locust_stats,
    parse_sarif,
    sha256_digest,
)
from shipwarden.domain.gitref import branch_problem
from shipwarden.domain.jsonlimits import JsonLimitError, loads_bounded
from shipwarden.ports.changes import Change, StoredEvidence
from shipwarden.services.changes.core import _SHA, OPEN
from shipwarden.services.changes.errors import BadRequest, ChangeError, TooLarge, Unprocessable
from shipwarden.services.changes.gates import GateEvaluation

_CATEGORY = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_EVIDENCE_BYTES = 20 * 1024 * 1024
#: evidence kinds accepted by ``upload_evidence`` and the category each one is filed under
KINDS: dict[str, str | None] = {
    "junit": None,  # the suite category (unit, integration, security, …) is given by the uploader
    "sarif": "security-scan",
    "k6": "performance",
    "locust": "performance",
    "backup": "backup",
    "rollback-plan": "rollback-plan",
}


class EvidenceIntake(GateEvaluation):
    """Accepts reports for a commit and re-evaluates the open change of that commit."""

    def upload_evidence(
        self,
        *,
        commit_sha: str,
        kind: str,
        data: bytes,
        actor: str,
        category: str | None = None,
        filename: str | None = None,
        pipeline: dict[str, Any] | None = None,
        branch: str | None = None,
    ) -> tuple[StoredEvidence, Change | None]:
        """Parse and store one report for ``commit_sha``; re-evaluates the change of that commit if any."""

        def refused(error: str) -> None:
            # whichever check refuses the upload, the audit log says what was sent and why
            detail = {
                "commit": str(commit_sha)[:80],
                "kind": str(kind)[:40],
                "file": filename,
                "error": error[:500],
            }
            self._refused(source=actor, actor=actor, action="evidence.rejected", detail=detail)

        try:
            if not isinstance(commit_sha, str) or not _SHA.match(commit_sha):
                raise BadRequest(f"commit must be a full 40-hex-digit sha, got {commit_sha!r}")
            if branch is not None and (problem := branch_problem(branch)):
                raise BadRequest(f"branch is not a valid git branch name: it {problem}")
            if kind not in KINDS:
                raise BadRequest(f"unknown evidence kind {kind!r}; one of: {', '.join(KINDS)}")
            fixed = KINDS[kind]
            if fixed is None:
                if not category or not _CATEGORY.match(category):
                    suites = (
                        ", ".join(self.loaded.policy.gates.suites) if self.loaded.policy.gates else "unit"
                    )
                    raise BadRequest(f"a junit report needs its suite category ({suites}), got {category!r}")
            elif category not in (None, fixed):
                raise BadRequest(f"{kind} evidence is filed as {fixed!r}, not {category!r}")
            category = category or fixed
            assert category is not None
            if len(data) > MAX_EVIDENCE_BYTES:
                raise TooLarge(f"report is {len(data)} bytes; the limit is {MAX_EVIDENCE_BYTES}")
            source = filename or f"<{kind}>"
            report = _parse(kind, data, source)
        except EvidenceError as exc:
            refused(str(exc))
            raise Unprocessable(
                f"malformed {kind} report: {exc}",
                where={"source": exc.source, "line": exc.line, "column": exc.column, "path": exc.path},
                problem=exc.message,
            ) from None
        except ChangeError as exc:
            refused(exc.message)
            raise
        digest = getattr(report, "digest", None) or sha256_digest(data)
        stored = self.repo.add_evidence(
            commit_sha=commit_sha,
            kind=kind,
            category=category,
            report=report,
            digest=digest,
            pipeline=pipeline or {},
            source_name=filename,
            actor=actor,
        )
        change = self.repo.find_change(head_sha=commit_sha, branch=branch)
        if change is None or change.status not in OPEN:  # a commit waiting on main for this evidence?
            change = self.change_of_awaited(self.repo, commit_sha, actor) or change
        if change is not None and change.status in OPEN:
            change = self.progress(change.id)
        return stored, change


def _parse(kind: str, data: bytes, source: str) -> Any:
    """The report of one upload; ``EvidenceError`` (with where and what) when the file is malformed."""
    if kind == "junit":
        return parse_junit(data, source=source)
    if kind == "sarif":
        return parse_sarif(data, source=source)
    if kind == "k6":
        return parse_k6_summary(data, source=source)
    if kind == "locust":
        return parse_locust_stats(data, source=source)
    doc = _json_object(data, source)
    if kind == "backup":
        bid, at, ok = doc.get("backupId"), doc.get("verifiedAt"), doc.get("ok")
        bid = _text(bid, source, "$.backupId", 256)
        if not isinstance(ok, bool):
            raise EvidenceError("expected true or false", source=source, path="$.ok")
        if not isinstance(at, str) or len(at) > 64:
            raise EvidenceError("expected an ISO 8601 time string", source=source, path="$.verifiedAt")
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise EvidenceError(
                f"{at!r} is not an ISO 8601 time", source=source, path="$.verifiedAt"
            ) from None
        if when.tzinfo is None:
            raise EvidenceError(f"{at!r} has no timezone", source=source, path="$.verifiedAt")
        detail = doc.get("detail", "")
        if not isinstance(detail, str) or len(detail) > 4096:
            raise EvidenceError(
                "expected a string of at most 4096 characters", source=source, path="$.detail"
            )
        return BackupVerification(bid, when, ok, detail)
    migrations = doc.get("migrations", [])
    if not isinstance(migrations, list):
        raise EvidenceError("expected a list", source=source, path="$.migrations")
    out = []
    for i, m in enumerate(migrations):
        if not isinstance(m, dict) or not isinstance(m.get("reversible"), bool):
            raise EvidenceError(
                "expected {name: string, reversible: bool}", source=source, path=f"$.migrations[{i}]"
            )
        _text(m.get("name"), source, f"$.migrations[{i}].name", 256)
        out.append(Migration(m["name"], m["reversible"]))
    prev = doc.get("previousVersion")
    if prev is not None:
        _text(prev, source, "$.previousVersion", 128)  # deployments.to_version holds 128
    return RollbackPlan(prev, tuple(out))


def _text(value: Any, source: str, path: str, limit: int) -> str:
    """A non-empty, printable string of at most ``limit`` characters (it is stored and displayed)."""
    if not isinstance(value, str) or not value:
        raise EvidenceError("expected a non-empty string", source=source, path=path)
    if len(value) > limit:
        raise EvidenceError(f"longer than {limit} characters", source=source, path=path)
    if not value.isprintable():
        raise EvidenceError("contains a non-printable character", source=source, path=path)
    return value


def _json_object(data: bytes, source: str) -> dict[str, Any]:
    """A JSON object within ``domain.jsonlimits``' bounds (depth, integer size, no NaN)."""
    try:
        doc = loads_bounded(data, max_depth=32)
    except JsonLimitError as exc:
        raise EvidenceError(exc.message, source=source, line=exc.line, column=exc.column) from None
    if not isinstance(doc, dict):
        raise EvidenceError("expected a JSON object", source=source, path="$")
    return doc
