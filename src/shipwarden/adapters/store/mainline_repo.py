"""The verdicts on commits that reached main (D9): ``main_heads`` and ``main_commits``.

``record`` writes an arrival's verdicts, their audit entries (``main.deploy`` / ``main.covered`` /
``policy.violation``) and the new judged head in one transaction, and only if the judged head is
still the one the verdicts were computed from (compare-and-set): two processes that see the same
push (webhook and poll) judge it once; the loser is told ``HeadChanged`` and looks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipwarden.adapters.store.changes_repo import change_of
from shipwarden.adapters.store.models import ChangeRow, MainCommitRow, MainHeadRow
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.mainline import JudgedCommit, MainCommit, Verdict, verdict_kind
from shipwarden.ports.changes import Change, HeadChanged
from shipwarden.ports.store import NotFound


def _judged(r: MainCommitRow) -> JudgedCommit:
    return JudgedCommit(
        id=r.id,
        branch=r.branch,
        sha=r.sha,
        arrival=r.arrival,
        previous=r.previous,
        via=r.via,
        parents=tuple((r.parents or {}).get("parents", ())),
        author=r.author,
        subject=r.subject,
        reason=r.reason,
        verdict=r.verdict,
        change_id=r.change_id,
        why=r.why,
        effect=r.effect,
        effect_detail=dict(r.effect_detail or {}),
        seen_at=r.seen_at,
        accepted_by=r.accepted_by,
        accepted_at=r.accepted_at,
        accept_reason=r.accept_reason or "",
    )


_ACTION = {
    "deploy": "main.deploy",
    "covered": "main.covered",
    "awaiting": "main.awaiting_evidence",
    "violation": "policy.violation",
}


class MainlineRepo:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._sessions = store._sessions
        self._clock = store._clock

    def judged_head(self, branch: str) -> str | None:
        with self._sessions() as s:
            row = s.get(MainHeadRow, branch)
            return row.sha if row else None

    def record(
        self,
        branch: str,
        *,
        previous: str | None,
        head: str,
        via: str,
        since: str | None = None,
        actor: str,
        commits: Sequence[MainCommit],
        verdicts: Sequence[Verdict],
        detail: dict[str, Any] | None = None,
    ) -> list[JudgedCommit]:
        """Store the verdicts of one arrival and move the judged head from ``previous`` to ``head``.

        ``since`` is the commit the arrival was measured from (``previous``, or a seed at the first
        look); ``HeadChanged`` if the judged head is no longer ``previous``."""
        since = since or previous
        by_sha = {c.sha: c for c in commits}

        def tx(s: Session) -> list[JudgedCommit]:
            now = self._clock()
            row = s.get(MainHeadRow, branch, with_for_update=True)
            if (row.sha if row else None) != previous:
                raise HeadChanged(f"{branch} was judged up to {row.sha if row else 'nothing'} meanwhile")
            if row is None:
                s.add(MainHeadRow(branch=branch, sha=head, updated_at=now))
            else:
                row.sha, row.updated_at = head, now
            out = []
            for v in verdicts:
                c = by_sha.get(v.sha) or MainCommit(v.sha, (), "", "")
                kind = verdict_kind(v)
                r = MainCommitRow(
                    branch=branch,
                    sha=v.sha,
                    arrival=head,
                    previous=since,
                    via=via,
                    parents={"parents": list(c.parents)},
                    author=c.author[:256],
                    subject=c.subject,
                    reason=v.reason.value,
                    verdict=kind,
                    change_id=v.change_id,
                    why=v.why,
                    effect="none" if kind in ("covered", "awaiting") else "pending",
                    effect_detail={},
                    seen_at=now,
                    accept_reason="",
                )
                s.add(r)
                s.flush()
                self.store._append_audit(
                    s,
                    actor=actor,
                    action=_ACTION[kind],
                    outcome="denied" if kind == "violation" else "ok",
                    detail={
                        "branch": branch,
                        "commit": v.sha,
                        "reason": v.reason.value,
                        "why": v.why,
                        "change_id": v.change_id,
                        "author": c.author,
                        "subject": c.subject[:200],
                        "arrival": head,
                        "previous": since,
                        "via": via,
                        **(detail or {}),
                    },
                )
                out.append(_judged(r))
            if not verdicts:
                self.store._append_audit(
                    s,
                    actor=actor,
                    action="main.watched",
                    detail={
                        "branch": branch,
                        "head": head,
                        "previous": previous,
                        "via": via,
                        **(detail or {}),
                    },
                )
            return out

        result: list[JudgedCommit] = self.store._retrying(tx)
        return result

    def set_effect(
        self,
        judged_id: int,
        effect: str,
        detail: dict[str, Any],
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
    ) -> JudgedCommit:
        """Record what a verdict's effect did (deployment started, alert sent), with its audit entry."""

        def tx(s: Session) -> JudgedCommit:
            r = s.get(MainCommitRow, judged_id, with_for_update=True)
            if r is None:
                raise NotFound(f"no judged commit {judged_id}")
            r.effect, r.effect_detail = effect, detail
            self.store._append_audit(
                s,
                actor=actor,
                action=action,
                outcome=outcome,
                detail={"branch": r.branch, "commit": r.sha, "reason": r.reason, **detail},
            )
            s.flush()
            return _judged(r)

        result: JudgedCommit = self.store._retrying(tx)
        return result

    def resolve(
        self,
        judged_id: int,
        *,
        verdict: str,
        reason: str,
        why: str,
        change_id: str | None,
        actor: str,
        detail: dict[str, Any] | None = None,
    ) -> JudgedCommit | None:
        """An ``awaiting`` head whose gates were judged becomes ``deploy`` or ``violation``, its effect
        pending, with its audit entry; None if it was resolved already (by another process)."""

        def tx(s: Session) -> JudgedCommit | None:
            r = s.get(MainCommitRow, judged_id, with_for_update=True)
            if r is None:
                raise NotFound(f"no judged commit {judged_id}")
            if r.verdict != "awaiting":
                return None
            was = r.reason
            r.verdict, r.reason, r.why, r.change_id = verdict, reason, why, change_id
            r.effect, r.effect_detail = ("none" if verdict == "covered" else "pending"), {}
            self.store._append_audit(
                s,
                actor=actor,
                action=_ACTION[verdict],
                outcome="denied" if verdict == "violation" else "ok",
                detail={
                    "branch": r.branch,
                    "commit": r.sha,
                    "reason": reason,
                    "was": was,
                    "why": why,
                    "change_id": change_id,
                    "author": r.author,
                    "subject": r.subject[:200],
                    "arrival": r.arrival,
                    "previous": r.previous,
                    "via": r.via,
                    **(detail or {}),
                },
            )
            s.flush()
            return _judged(r)

        result: JudgedCommit | None = self.store._retrying(tx)
        return result

    #: an effect claimed this long ago and never finished was lost with its process: claim it again
    STALE_AFTER_S = 900.0

    def claim(self, judged_id: int) -> bool:
        """Take an effect to perform (pending, or running but claimed ``STALE_AFTER_S`` ago by a
        process that died); False if another process holds it."""
        with self._sessions.begin() as s:
            r = s.get(MainCommitRow, judged_id, with_for_update=True)
            if r is None or not self._claimable(r, self._clock()):
                return False
            r.effect, r.effect_detail = "running", {**(r.effect_detail or {}), "claimed_at": self._clock()}
            return True

    def _claimable(self, r: MainCommitRow, now: float) -> bool:
        if r.effect == "pending":
            return True
        claimed = (r.effect_detail or {}).get("claimed_at")
        return (
            r.effect == "running" and isinstance(claimed, int | float) and now - claimed > self.STALE_AFTER_S
        )

    def changes_for(self, shas: Sequence[str]) -> list[Change]:
        """The changes whose head or merge commit is one of ``shas`` (oldest first)."""
        if not shas:
            return []
        q = (
            select(ChangeRow)
            .where(ChangeRow.head_sha.in_(shas) | ChangeRow.merge_sha.in_(shas))
            .order_by(ChangeRow.created_at)
        )
        with self._sessions() as s:
            return [change_of(r) for r in s.scalars(q)]

    def pending(self, branch: str) -> list[JudgedCommit]:
        """Effects recorded and not performed: pending, or claimed by a process that died."""
        q = (
            select(MainCommitRow)
            .where(MainCommitRow.branch == branch, MainCommitRow.effect.in_(("pending", "running")))
            .order_by(MainCommitRow.id)
        )
        now = self._clock()
        with self._sessions() as s:
            return [_judged(r) for r in s.scalars(q) if self._claimable(r, now)]

    def awaiting(self, branch: str) -> list[JudgedCommit]:
        """The heads on ``branch`` still waiting for their evidence (oldest first)."""
        q = (
            select(MainCommitRow)
            .where(MainCommitRow.branch == branch, MainCommitRow.verdict == "awaiting")
            .order_by(MainCommitRow.id)
        )
        with self._sessions() as s:
            return [_judged(r) for r in s.scalars(q)]

    def mark_overdue(self, judged_id: int, detail: dict[str, Any], *, actor: str) -> JudgedCommit | None:
        """A waiting head whose evidence is overdue: recorded once (compare-and-set, with its audit
        entry ``main.evidence_overdue``) before anyone is alerted; None if it no longer waits or was
        marked already."""

        def tx(s: Session) -> JudgedCommit | None:
            r = s.get(MainCommitRow, judged_id, with_for_update=True)
            if r is None:
                raise NotFound(f"no judged commit {judged_id}")
            if r.verdict != "awaiting" or (r.effect_detail or {}).get("overdue"):
                return None
            r.effect_detail = {**(r.effect_detail or {}), "overdue": detail}
            self.store._append_audit(
                s,
                actor=actor,
                action="main.evidence_overdue",
                outcome="failed",
                detail={"branch": r.branch, "commit": r.sha, "reason": r.reason, "change_id": r.change_id,
                        "author": r.author, "subject": r.subject[:200], **detail},
            )  # fmt: skip
            s.flush()
            return _judged(r)

        result: JudgedCommit | None = self.store._retrying(tx)
        return result

    def open_violations(self, branch: str) -> list[JudgedCommit]:
        """Violations since the last commit judged deployable, not accepted by an operator.

        A gated head held back only because of them (``ungated-history``) is not one: its own
        content passed the gates, and accepting the commits that held it is enough."""
        with self._sessions() as s:
            last = s.scalars(
                select(MainCommitRow.id)
                .where(MainCommitRow.branch == branch, MainCommitRow.verdict == "deploy")
                .order_by(MainCommitRow.id.desc())
                .limit(1)
            ).first()
            q = select(MainCommitRow).where(
                MainCommitRow.branch == branch,
                MainCommitRow.verdict == "violation",
                MainCommitRow.reason != "ungated-history",
                MainCommitRow.accepted_at.is_(None),
                MainCommitRow.id > (last or 0),
            )
            return [_judged(r) for r in s.scalars(q.order_by(MainCommitRow.id))]

    def deployed_after(self, branch: str, judged_id: int) -> JudgedCommit | None:
        """The newest commit judged deployable on ``branch`` after verdict ``judged_id``, if any."""
        q = (
            select(MainCommitRow)
            .where(
                MainCommitRow.branch == branch,
                MainCommitRow.verdict == "deploy",
                MainCommitRow.id > judged_id,
            )
            .order_by(MainCommitRow.id.desc())
            .limit(1)
        )
        with self._sessions() as s:
            row = s.scalars(q).first()
            return _judged(row) if row is not None else None

    def verdicts(self, sha: str) -> list[JudgedCommit]:
        """Every verdict on ``sha`` (a commit may arrive more than once: force-pushed back), newest first."""
        q = select(MainCommitRow).where(MainCommitRow.sha == sha).order_by(MainCommitRow.id.desc())
        with self._sessions() as s:
            return [_judged(r) for r in s.scalars(q)]

    def find(self, prefix: str) -> list[str]:
        """The full shas judged that start with ``prefix`` (at most a few)."""
        q = select(MainCommitRow.sha).where(MainCommitRow.sha.like(prefix + "%")).distinct().limit(5)
        with self._sessions() as s:
            return list(s.scalars(q))

    def accept(self, branch: str, sha: str, *, user: str, reason: str) -> list[JudgedCommit]:
        """An operator accepts the open violations of ``sha`` (reviewed after the fact); audited."""

        def tx(s: Session) -> list[JudgedCommit]:
            rows = list(
                s.scalars(
                    select(MainCommitRow).where(
                        MainCommitRow.branch == branch,
                        MainCommitRow.sha == sha,
                        MainCommitRow.verdict == "violation",
                        MainCommitRow.accepted_at.is_(None),
                    )
                )
            )
            if not rows:
                raise NotFound(f"no open violation for {sha} on {branch}")
            now = self._clock()
            for r in rows:
                r.accepted_by, r.accepted_at, r.accept_reason = user, now, reason
            self.store._append_audit(
                s,
                actor=user,
                action="policy.violation_accepted",
                detail={
                    "branch": branch,
                    "commit": sha,
                    "reasons": [r.reason for r in rows],
                    "comment": reason,
                },
            )
            s.flush()
            return [_judged(r) for r in rows]

        result: list[JudgedCommit] = self.store._retrying(tx)
        return result
