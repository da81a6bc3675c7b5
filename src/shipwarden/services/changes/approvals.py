"""Approvals and rejections (D3) by the change-control roles the policy names.

A user may decide in a role only when the change asks for that role (its classification's required
roles, or the UAT sign-off role) and the user holds it (``delivery.approvers`` or an RBAC role of the
same name); authors cannot approve their own change.  Every refusal is audited.
"""

from __future__ import annotations

from shipwarden.ports.changes import Change
from shipwarden.ports.store import NotFound
from shipwarden.services.changes.core import OPEN
from shipwarden.services.changes.errors import (
    BadRequest,
    ChangeError,
    Forbidden,
    StateConflict,
    UnknownChange,
)
from shipwarden.services.changes.gates import GateEvaluation


class Approvals(GateEvaluation):
    """Records role decisions on open changes, then lets the change progress."""

    def _decide(
        self,
        change_id: str,
        *,
        user: str,
        role: str,
        decision: str,
        comment: str,
        extra_roles: frozenset[str],
    ) -> Change:
        action = "change.approve" if decision == "approve" else "change.reject"
        try:
            change = self.repo.get_change(change_id)
        except NotFound:
            self.store.audit(
                actor=user,
                action=action,
                outcome="denied",
                detail={"change_id": change_id, "reason": "unknown change"},
            )
            raise UnknownChange(f"no change {change_id!r}") from None

        def deny(exc: ChangeError) -> ChangeError:
            self.store.audit(
                actor=user,
                action=action,
                outcome="denied",
                detail={"change_id": change_id, "role": role, "reason": exc.message},
            )
            return exc

        if change.status not in OPEN:
            raise deny(
                StateConflict(f"change {change.id} is {change.status}; it can no longer be {decision}d")
            )
        gp = self.gates
        required = set(change.classification.get("required_roles", []))
        uat = gp.checklist.uat_sign_off.role if gp.checklist.uat_sign_off else None
        if role not in required and role != uat:
            need = sorted(required | ({uat} if uat else set()))
            raise deny(
                BadRequest(
                    f"role {role!r} is not asked to approve change {change.id}; "
                    f"roles it needs: {', '.join(need) or 'none (standard change)'}"
                )
            )
        held = self.delivery.roles_of(user) | extra_roles
        if role not in held:
            raise deny(
                Forbidden(
                    f"{user} does not hold the role {role!r} "
                    f"(holds: {', '.join(sorted(held)) or 'no change role'})"
                )
            )
        author = change.author or ""
        if author and user in (author, author.split("@")[0]):
            raise deny(Forbidden(f"{user} is the author of change {change.id} and cannot {decision} it"))
        if decision == "approve":
            # one record per capacity the role is asked in: required approver, UAT sign-off, or both
            recorded = [d for d, asked in (("approve", role in required), ("sign-off", role == uat)) if asked]
        else:
            recorded = ["reject"]
        for kind in recorded:
            self.repo.add_approval(
                change.id, commit_sha=change.head_sha, user=user, role=role, decision=kind, comment=comment
            )
        return self.progress(change.id)

    def approve(
        self,
        change_id: str,
        *,
        user: str,
        role: str,
        comment: str = "",
        extra_roles: frozenset[str] = frozenset(),
    ) -> Change:
        return self._decide(
            change_id, user=user, role=role, decision="approve", comment=comment, extra_roles=extra_roles
        )

    def reject(
        self,
        change_id: str,
        *,
        user: str,
        role: str,
        comment: str = "",
        extra_roles: frozenset[str] = frozenset(),
    ) -> Change:
        return self._decide(
            change_id, user=user, role=role, decision="reject", comment=comment, extra_roles=extra_roles
        )
