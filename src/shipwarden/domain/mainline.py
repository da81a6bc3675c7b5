"""Every commit that reaches main is judged (D9): deployed through the gates, or not deployed and why.

shipwarden merges only the commit its gates passed, but main can move in other ways: GitHub's merge
button, a ``git push`` by someone with write access, a force-push.  Whatever moved it, each commit
new on main is judged here, sha for sha, against the changes the gates have judged:

* **gated** — the commit is

  - the merge commit shipwarden itself made for an approved change (``shipwarden-merge``);
  - exactly the head commit of a change whose gates all passed, moved onto main elsewhere
    (a fast-forward push, GitHub's "rebase" of an already up-to-date branch) (``approved-change``);
  - a merge commit made elsewhere whose second parent is such a head, and whose tree is exactly what
    a clean merge of its two parents gives — so it carries no line the gates did not see
    (``clean-merge``); or a head whose tree is exactly such a change merged into the previous head
    (GitHub's "squash" or "rebase and merge": new shas, the same content) (``clean-merge``);
  - or a commit of such a change's own history, brought along with its head (``part-of-change``:
    covered, never deployed by itself);

* **awaiting evidence** (``awaiting-evidence``, stored as ``awaiting``; neither deployed yet nor a
  violation) — a head that reached main before any gate passed for it: no change was ever judged
  for it (a direct push), or its change (or the change it merges) has not passed its gates yet
  (pending, waiting for approval, superseded).  The commits that arrived under it wait with it
  (``covered``: its evidence is evidence on their content too).  Its own evidence decides, later,
  in the service: when CI reports on that sha, a change of it is judged by the same gates (and the
  same approvals for a non-standard one); gates passed → its verdict becomes ``approved-change``
  and it is deployed; a gate failed → ``gates-failed``, a violation;

* **a violation**, recorded, alerted and never deployed:

  - ``gates-failed``: the change of this commit was judged and a gate failed (blocked, rejected),
    before it reached main or afterwards (a waiting commit whose evidence is red);
  - ``merged-around-gate``: a merge commit changes more than the clean merge of the approved head
    would (it carries lines no gate saw), or, under a head that does not wait for evidence, a
    commit whose change had not passed its gates;
  - ``no-change``: under a head that does not wait for evidence (a gated head, or a violation), a
    commit no change was ever judged for;
  - ``force-push``: main was rewritten (its previous head is no longer in its history): the new
    head is not deployed, whatever it is;
  - ``ungated-history``: the head itself is gated (or would wait for evidence) but main received,
    since the last commit that was judged deployable, a commit that is a violation; deploying the
    head would ship that commit too.  An operator who has reviewed it may accept it
    (``shipwarden main accept``, audited).

Only the head of what arrived is deployed (the commits under it ship with it); every commit gets a
verdict of its own.  Everything here is pure: the service reads git and the store and hands the
facts in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    SHIPWARDEN_MERGE = "shipwarden-merge"
    APPROVED_CHANGE = "approved-change"
    CLEAN_MERGE = "clean-merge"
    PART_OF_CHANGE = "part-of-change"
    AWAITING_EVIDENCE = "awaiting-evidence"
    NO_CHANGE = "no-change"
    GATES_FAILED = "gates-failed"
    MERGED_AROUND_GATE = "merged-around-gate"
    FORCE_PUSH = "force-push"
    UNGATED_HISTORY = "ungated-history"


GATED = frozenset({Reason.SHIPWARDEN_MERGE, Reason.APPROVED_CHANGE, Reason.CLEAN_MERGE})
"""The reasons that make a head deployable."""
VIOLATIONS = frozenset(
    {
        Reason.NO_CHANGE,
        Reason.GATES_FAILED,
        Reason.MERGED_AROUND_GATE,
        Reason.FORCE_PUSH,
        Reason.UNGATED_HISTORY,
    }
)

#: the statuses of a change whose gates all passed (approved, or already past approval)
PASSED = frozenset({"approved", "merged", "deploying", "deployed", "deploy_failed", "rolled_back"})
#: the statuses of a change whose gates were judged and failed
FAILED = frozenset({"blocked", "rejected"})


@dataclass(frozen=True)
class MainCommit:
    """A commit new on main, as git reports it."""

    sha: str
    parents: tuple[str, ...]
    author: str
    subject: str


@dataclass(frozen=True)
class ChangeFact:
    """What the judgement needs to know about a change the gates have seen."""

    id: str
    branch: str
    head_sha: str
    status: str
    reason: str
    merge_sha: str | None = None
    merged_by_shipwarden: bool = False
    all_passed: bool = False
    failed_gates: tuple[str, ...] = ()
    #: the commits of the change's branch not on main before it arrived (its own history)
    commits: frozenset[str] = frozenset()

    @property
    def passed(self) -> bool:
        return self.status in PASSED and self.all_passed


@dataclass(frozen=True)
class Arrival:
    """What arrived on main in one update (a push seen by webhook, by polling, or a merge of ours)."""

    previous: str | None  # the head judged before; None at the very first look
    head: str
    forced: bool  # ``previous`` is not in ``head``'s history: main was rewritten
    commits: tuple[MainCommit, ...]  # newest first, as ``git rev-list``
    #: for merge commits made elsewhere: whether the tree equals the clean merge of its parents
    clean_merges: Mapping[str, bool] = field(default_factory=dict)
    #: violations already recorded since the last deployable head and not accepted (sha → reason)
    open_violations: Mapping[str, str] = field(default_factory=dict)
    #: a change whose gates passed and whose clean merge into ``previous`` has exactly the head's
    #: tree (GitHub's "squash" or "rebase and merge" of it): the arrival is that change, re-written
    squashed: str | None = None


@dataclass(frozen=True)
class Verdict:
    sha: str
    reason: Reason
    deploy: bool  # only ever true for the head of an arrival
    change_id: str | None
    why: str  # one sentence, for ``explain`` and the alert
    #: the head waits for its evidence: deployed, or a violation, once its gates are judged
    waiting: bool = False

    @property
    def violation(self) -> bool:
        return self.reason in VIOLATIONS


def _of_change(c: MainCommit, ch: ChangeFact, how: str) -> tuple[Reason, str]:
    """A commit that is (or merges) the head of ``ch``: gated only if its gates passed."""
    if ch.passed:
        return Reason.APPROVED_CHANGE, f"{how} change {ch.id} ({ch.branch}), whose gates all passed"
    if ch.status in FAILED:
        gates = ", ".join(ch.failed_gates) or "a gate"
        return Reason.GATES_FAILED, (
            f"{how} change {ch.id} ({ch.branch}), which is {ch.status}: {gates} failed — {ch.reason}"
        )
    return Reason.AWAITING_EVIDENCE, (
        f"{how} change {ch.id} ({ch.branch}), whose gates have not passed yet ({ch.status}: {ch.reason})"
    )


def judge_commit(
    c: MainCommit,
    by_head: Mapping[str, ChangeFact],
    by_merge: Mapping[str, ChangeFact],
    clean_merges: Mapping[str, bool],
) -> tuple[Reason, str | None, str]:
    """One commit on its own: (reason, change id, why)."""
    merged = by_merge.get(c.sha)
    if merged is not None and merged.merged_by_shipwarden:
        return (
            Reason.SHIPWARDEN_MERGE,
            merged.id,
            f"shipwarden merged change {merged.id} ({merged.branch}) here",
        )
    head = by_head.get(c.sha)
    if head is not None:
        reason, why = _of_change(c, head, "it is the head commit of")
        return reason, head.id, why
    if len(c.parents) == 2 and (merged_head := by_head.get(c.parents[1])) is not None:
        reason, why = _of_change(c, merged_head, "it merges the head of")
        if reason is Reason.APPROVED_CHANGE:
            if clean_merges.get(c.sha, False):
                return Reason.CLEAN_MERGE, merged_head.id, why + "; its tree is exactly the clean merge"
            return (
                Reason.MERGED_AROUND_GATE,
                merged_head.id,
                (
                    f"it merges change {merged_head.id} ({merged_head.branch}) but its tree differs from the "
                    "clean merge of its parents: it carries changes no gate saw"
                ),
            )
        return reason, merged_head.id, why
    return Reason.NO_CHANGE, None, f"no change was judged for this commit (pushed to main by {c.author})"


def judge(arrival: Arrival, changes: Sequence[ChangeFact]) -> list[Verdict]:
    """A verdict for every commit of ``arrival`` (newest first); at most the head is deployed."""
    by_head = {ch.head_sha: ch for ch in changes}
    by_merge = {ch.merge_sha: ch for ch in changes if ch.merge_sha}
    judged = {c.sha: judge_commit(c, by_head, by_merge, arrival.clean_merges) for c in arrival.commits}
    # commits of a change's own history come along with its head: covered if the change passed
    owners: dict[str, ChangeFact] = {}
    for ch in changes:
        for sha in ch.commits:
            owners.setdefault(sha, ch)
    squashed = next((ch for ch in changes if ch.id == arrival.squashed and ch.passed), None)
    if squashed is not None and arrival.commits and judged[arrival.commits[0].sha][0] is Reason.NO_CHANGE:
        judged[arrival.commits[0].sha] = (
            Reason.CLEAN_MERGE,
            squashed.id,
            f"its tree is exactly change {squashed.id} ({squashed.branch}), whose gates all passed, "
            "merged into main (squashed or rebased)",
        )
        for c in arrival.commits[1:]:
            if judged[c.sha][0] is Reason.NO_CHANGE:
                judged[c.sha] = (
                    Reason.PART_OF_CHANGE,
                    squashed.id,
                    f"a rewritten commit of change {squashed.id} ({squashed.branch}); the head it arrived "
                    "under is exactly that change",
                )
    verdicts: list[Verdict] = []
    for c in arrival.commits:
        reason, change_id, why = judged[c.sha]
        owner = owners.get(c.sha)
        if reason is Reason.NO_CHANGE and owner is not None:
            carrier = next(
                (judged[x.sha] for x in arrival.commits if judged[x.sha][1] == owner.id),
                None,
            )
            if carrier is not None and carrier[0] in GATED:
                reason, change_id = Reason.PART_OF_CHANGE, owner.id
                why = f"a commit of change {owner.id} ({owner.branch}), which arrived with its head"
            elif carrier is not None:
                reason, change_id = carrier[0], owner.id
                why = f"a commit of change {owner.id} ({owner.branch}); " + carrier[2]
        verdicts.append(Verdict(c.sha, reason, False, change_id, why))
    if not verdicts:
        return verdicts
    head = verdicts[0]
    if head.sha != arrival.head:  # rev-list is newest first; the head is always listed first
        raise ValueError(f"the arrival's commits must start with its head {arrival.head}")
    if head.reason in (Reason.NO_CHANGE, Reason.AWAITING_EVIDENCE) and not arrival.forced:
        head = _awaiting(head, verdicts[1:], arrival)
    else:
        # under a head that does not wait, a commit no gate saw (or not yet) is a violation of its own
        verdicts[1:] = [
            Verdict(v.sha, Reason.MERGED_AROUND_GATE, False, v.change_id, v.why.replace(
                ", whose gates have not passed yet", " before its gates passed"))
            if v.reason is Reason.AWAITING_EVIDENCE else v
            for v in verdicts[1:]
        ]  # fmt: skip
    if arrival.forced:
        was = head.why
        head = Verdict(
            head.sha,
            Reason.FORCE_PUSH,
            False,
            head.change_id,
            f"main was force-pushed: its previous head {(arrival.previous or '?')[:12]} is no longer in its "
            f"history, so history was rewritten (on its own: {was})",
        )
    elif head.reason in GATED:
        ungated = [v for v in verdicts[1:] if v.violation]
        ungated_shas = [v.sha for v in ungated] + [s for s in arrival.open_violations if s != head.sha]
        if ungated_shas:
            listed = ", ".join(s[:12] for s in ungated_shas[:5]) + (" …" if len(ungated_shas) > 5 else "")
            head = Verdict(
                head.sha,
                Reason.UNGATED_HISTORY,
                False,
                head.change_id,
                f"{head.why}, but main also holds commits that did not pass the gates ({listed}); "
                "deploying this commit would ship them",
            )
        else:
            head = Verdict(head.sha, head.reason, True, head.change_id, head.why)
    if head.waiting:  # what arrived under a head that waits for evidence is judged with it
        verdicts[1:] = [
            Verdict(v.sha, Reason.AWAITING_EVIDENCE, False, v.change_id or None,
                    f"arrived under {head.sha[:12]}, whose evidence covers it ({v.why})")
            if v.reason in (Reason.NO_CHANGE, Reason.AWAITING_EVIDENCE) else v
            for v in verdicts[1:]
        ]  # fmt: skip
    verdicts[0] = head
    return verdicts


def _awaiting(head: Verdict, under: Sequence[Verdict], arrival: Arrival) -> Verdict:
    """A head that reached main before any gate passed for it: it waits for its evidence, unless
    main also holds a commit that is a violation (no evidence on this head can cover that)."""
    ungated = [v.sha for v in under if v.violation and v.reason is not Reason.NO_CHANGE]
    ungated += [s for s in arrival.open_violations if s != head.sha]
    if ungated:
        listed = ", ".join(s[:12] for s in ungated[:5]) + (" …" if len(ungated) > 5 else "")
        return Verdict(
            head.sha,
            Reason.UNGATED_HISTORY,
            False,
            head.change_id,
            f"{head.why}, and main also holds commits that did not pass the gates ({listed}); "
            "deploying this commit would ship them",
        )
    return Verdict(
        head.sha,
        Reason.AWAITING_EVIDENCE,
        False,
        head.change_id,
        f"reached main before its gates passed ({head.why}): deployed once its required evidence "
        "is green, a policy violation if a gate fails",
        waiting=True,
    )


@dataclass(frozen=True)
class JudgedCommit:
    """A verdict as stored: what arrived, how it was judged, and what its effect did."""

    id: int
    branch: str
    sha: str
    arrival: str
    previous: str | None
    via: str
    parents: tuple[str, ...]
    author: str
    subject: str
    reason: str
    verdict: str  # deploy | covered | violation
    change_id: str | None
    why: str
    effect: str  # pending | done | none
    effect_detail: Mapping[str, object]
    seen_at: float
    accepted_by: str | None = None
    accepted_at: float | None = None
    accept_reason: str = ""


def verdict_kind(v: Verdict) -> str:
    """How a verdict is stored: ``deploy`` (the head, to deploy), ``violation``, ``awaiting`` (the
    head, waiting for its evidence), or ``covered``."""
    if v.deploy:
        return "deploy"
    if v.waiting:
        return "awaiting"
    return "violation" if v.violation else "covered"
