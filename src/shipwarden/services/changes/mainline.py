"""Any push to main deploys through the gates, or not at all (D9).

``watch_main`` looks at the main branch of the real repository (``git fetch``; the GitHub ``push``
webhook for ``refs/heads/<main>`` and ``shipwarden main watch`` polling both call it, and so does
every merge shipwarden makes), lists what is new since the head judged before, and judges each new
commit with ``domain.mainline.judge`` against the changes the gates have judged.  Then, in order:

1. **Persist** the verdicts, their audit entries (``main.deploy``, ``main.covered``,
   ``policy.violation``) and the new judged head in one transaction, by compare-and-set on the
   head judged before: a webhook and a poll that see the same push judge it once.
2. **Effects**, each claimed before it is performed and marked done after: a deployable head is
   deployed through the change's three phases (a change merged elsewhere is first recorded as
   merged, ``change.merged_outside``); a violation sends an alert (the policy's
   ``alerts.rollout`` targets, else ``delivery.notify``; ``alert.violation`` in the audit log
   with what each target answered; into the alerting pipeline as ``MainPolicyViolation`` when the
   policy has an ``alerting`` section) and, if it held back a merge of ours, says so on the change.
   An effect recorded but not performed (a crash in between) is performed by the next look.
3. **Waiting commits**: a head that reached main before its gates passed is recorded as
   ``awaiting`` (no effect yet).  Evidence for it (an upload, the CI webhook for main) opens the
   change that judges it (``change_of_awaited``: the open change of that head, else a new change of
   the main branch, measured from main's head before it arrived); after every evaluation
   ``_settle_on_main`` moves the verdict — persisted first — to ``deploy`` (gates passed: then the
   deployment above) or to a ``gates-failed`` violation (then the alert above); to ``covered`` if
   its gates pass after a later commit of main (which holds it) was deployed — never back in time.
   A change whose commit is on main already is never merged again.

``explain_commit`` answers ``shipwarden explain <sha>``: the verdict, why, and the alert.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from shipwarden.domain.alerting import Alert as PipelineAlert
from shipwarden.domain.mainline import (
    FAILED,
    Arrival,
    ChangeFact,
    JudgedCommit,
    MainCommit,
    Reason,
    Verdict,
    judge,
)
from shipwarden.ports.changes import Change, HeadChanged, MainlineRepository
from shipwarden.ports.store import UnitOfWork
from shipwarden.ports.vcs import GitError
from shipwarden.services.changes.core import CD_ACTOR, OPEN
from shipwarden.services.changes.delivery import ContinuousDelivery
from shipwarden.services.notify import Notifier

WATCH_ACTOR = "shipwarden:main-watch"
#: a violation is an event, not a state: its pipeline alert resolves by itself after this long
VIOLATION_ALERT_TTL = 3600.0
_HEX = re.compile(r"^[0-9a-f]{7,64}$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class MainlineWatch(ContinuousDelivery):
    """Judges every commit that reaches main and performs what each verdict owes."""

    @property
    def mainline(self) -> MainlineRepository:
        repo: MainlineRepository | None = getattr(self, "_mainline_repo", None)
        if repo is None:
            repo = self._mainline_repo = self.store.mainline
        return repo

    # -- judge ------------------------------------------------------------------------------------------
    def watch_main(
        self,
        *,
        via: str,
        detail: dict[str, Any] | None = None,
        seed: str | None = None,
        inline: bool = False,
    ) -> list[JudgedCommit]:
        """Judge what is new on main (recorded before anything is done), then perform the effects.

        ``via`` says what looked (``webhook:github``, ``poll``, ``merge``); ``detail`` goes into the
        audit entries (the webhook's delivery id, what the push said).  ``seed``: where main was
        before, when nothing was judged yet (the push's ``before``, the target a merge of ours
        started from); without one the first look only records the head.  ``inline``: deploy in
        this thread (the caller is already scheduled) rather than through ``schedule``."""
        branch = self.delivery.repository.main_branch
        judged: list[JudgedCommit] = []
        if seed is not None and (not _SHA.match(seed) or set(seed) == {"0"}):
            seed = None
        if seed is not None and self.mainline.judged_head(branch) is None:
            self.git.sync()
            if not self.git.has_commit(seed):
                seed = None  # a hint only: a commit this repository does not know judges nothing
        for _ in range(5):
            previous = self.mainline.judged_head(branch)
            since = previous or seed
            update = self.git.arrivals(branch, since)
            if update.head is None or (update.head == since and not update.commits):
                if previous is None and update.head is not None:
                    try:  # the seed is main's head: record it, so the next arrival is judged from it
                        self.mainline.record(
                            branch, previous=None, head=update.head, via=via, actor=WATCH_ACTOR,
                            commits=(), verdicts=(), detail=detail,
                        )  # fmt: skip
                    except HeadChanged:
                        continue
                break
            commits = tuple(
                MainCommit(sha, parents, author, subject) for sha, parents, author, subject in update.commits
            )
            if since is None:
                verdicts: list[Verdict] = []  # the first look: history before the watch is not judged
            elif not commits:  # reset to a commit already in its history: a rewrite with nothing new
                verdicts = [
                    Verdict(
                        update.head,
                        Reason.FORCE_PUSH,
                        False,
                        None,
                        f"main was force-pushed back to {update.head[:12]}: its previous head "
                        f"{since[:12]} is no longer in its history",
                    )
                ]
            else:
                arrival = self._arrival(since, update.head, update.forced, commits)
                verdicts = judge(arrival, self._facts_for(commits, since, arrival.squashed))
            extra = {**(detail or {}), **({"truncated": True} if update.truncated else {})}
            try:
                judged = self.mainline.record(
                    branch,
                    previous=previous,
                    since=since,
                    head=update.head,
                    via=via,
                    actor=WATCH_ACTOR,
                    commits=commits,
                    verdicts=verdicts,
                    detail=extra,
                )
            except HeadChanged:
                continue  # another process judged this arrival (or a newer one) first: look again
            break
        self.perform_pending(inline=inline)
        for j in judged:  # CI may have reported on a waiting commit before its push was seen
            if j.verdict == "awaiting" and self.repo.evidence_for(j.sha):
                change = self.change_of_awaited(self.repo, j.sha, WATCH_ACTOR)
                if change is not None and change.status in OPEN:
                    self.progress(change.id)
        self.check_overdue_evidence()
        return judged

    def progress(self, change_id: str) -> Change:
        """Evaluate a change and take it as far as its gates allow (``gates.GateEvaluation``)."""
        raise NotImplementedError

    def _arrival(self, previous: str, head: str, forced: bool, commits: tuple[MainCommit, ...]) -> Arrival:
        shipwarden_merges = {c.merge_sha for c in self.mainline.changes_for(tuple(c.sha for c in commits))}
        clean = {
            c.sha: self.git.clean_merge(c.sha)
            for c in commits
            if len(c.parents) == 2 and c.sha not in shipwarden_merges
        }
        branch = self.delivery.repository.main_branch
        open_v = {v.sha: v.reason for v in self.mainline.open_violations(branch)}
        squashed = None
        direct = {c.sha for c in commits} | {c.parents[1] for c in commits if len(c.parents) == 2}
        if not forced and not any(ch.head_sha in direct for ch in self.mainline.changes_for((head,))):
            # new shas for approved content? (GitHub's squash / rebase merge): compare trees
            for ch in self.repo.list_changes(status="approved", limit=20):
                try:
                    if self.git.merges_to(previous, ch.head_sha, head):
                        squashed = ch.id
                        break
                except (GitError, ValueError):
                    continue
        return Arrival(previous, head, forced, commits, clean, open_v, squashed)

    def _facts_for(
        self, commits: tuple[MainCommit, ...], previous: str, squashed: str | None = None
    ) -> list[ChangeFact]:
        """The changes the new commits are (or merge) the heads of, or that merged into them."""
        shas = {c.sha for c in commits} | {c.parents[1] for c in commits if len(c.parents) == 2}
        found = self.mainline.changes_for(tuple(sorted(shas)))
        if squashed is not None and all(ch.id != squashed for ch in found):
            found.append(self.repo.get_change(squashed))
        facts = []
        for ch in found:
            results = ch.gates.get("results", [])
            try:
                own = self.git.own_commits(ch.head_sha, previous)
            except (GitError, ValueError):
                own = frozenset()
            facts.append(
                ChangeFact(
                    id=ch.id,
                    branch=ch.branch,
                    head_sha=ch.head_sha,
                    status=ch.status,
                    reason=ch.reason,
                    merge_sha=ch.merge_sha,
                    merged_by_shipwarden=bool(ch.merge_sha) and not _merged_outside(ch),
                    all_passed=bool(ch.gates.get("all_passed")),
                    failed_gates=tuple(r["gate"] for r in results if not r.get("passed")),
                    commits=own,
                )
            )
        # the change that passed wins over an older one of the same head (superseded, blocked before)
        facts.sort(key=lambda f: f.passed)
        return facts

    # -- effects ----------------------------------------------------------------------------------------
    def perform_pending(self, *, inline: bool = False) -> None:
        """Perform every recorded effect not performed yet (claimed first: each runs once)."""
        branch = self.delivery.repository.main_branch
        for jc in self.mainline.pending(branch):
            if not self.mainline.claim(jc.id):
                continue
            if jc.verdict == "deploy":
                self._deploy_arrival(jc, inline=inline)
            else:
                self._alert_violation(jc)

    def _deploy_arrival(self, jc: JudgedCommit, *, inline: bool) -> None:
        change = self.repo.get_change(jc.change_id) if jc.change_id else None
        if change is None:  # cannot happen: a deployable verdict always names its change
            self.mainline.set_effect(
                jc.id,
                "done",
                {"deployed": False, "why": "no change"},
                actor=CD_ACTOR,
                action="main.deploy_skipped",
                outcome="failed",
            )
            return
        if jc.reason != Reason.SHIPWARDEN_MERGE.value and change.status == "approved":
            facts = {
                **change.facts,
                "merge": {
                    "sha": jc.sha,
                    "previous_target": jc.previous,
                    "via": f"outside shipwarden ({jc.via})",
                },
            }
            change = self.repo.update_change(
                change.id,
                actor=WATCH_ACTOR,
                action="change.merged_outside",
                audit_detail={"merge_sha": jc.sha, "reason": jc.reason, "via": jc.via},
                status="merged",
                merge_sha=jc.sha,
                reason=f"merged into main as {jc.sha[:12]} outside shipwarden, gates passed ({jc.reason})",
                facts=facts,
            )
        if change.status != "merged" or change.merge_sha != jc.sha:
            # not ours to start: already deploying or done (a re-claimed effect), or never merged here
            self.mainline.set_effect(
                jc.id,
                "done",
                {"deployed": change.status not in ("approved", "merged"), "change_id": change.id,
                 "why": f"change is {change.status}"},
                actor=CD_ACTOR,
                action="main.deploy_skipped",
            )  # fmt: skip
            return
        self.store.audit(
            actor=CD_ACTOR,
            action="main.deploy_started",
            detail={"commit": jc.sha, "change_id": change.id, "reason": jc.reason},
        )
        cid, jid = change.id, jc.id

        def run() -> None:
            self._deploy_quietly(cid)
            done = self.repo.get_change(cid)
            self.mainline.set_effect(
                jid,
                "done",
                {
                    "deployed": True,
                    "change_id": cid,
                    "status": done.status,
                    "deployment_id": done.deployment_id,
                },
                actor=CD_ACTOR,
                action="main.deployed",
                outcome="ok" if done.status == "deployed" else "failed",
            )

        if inline:
            run()
        else:
            self.schedule(run)

    def _alert_targets(self) -> list[str]:
        alerts = getattr(self.loaded.policy, "alerts", None)
        rollout = getattr(alerts, "rollout", None) if alerts is not None else None
        if rollout is not None and rollout.urls:
            return list(rollout.urls)
        notify = self.delivery.notify
        return list(notify.urls) if notify is not None else []

    def _alert_sink(self) -> Callable[[list[PipelineAlert]], object] | None:
        """The alerting pipeline's intake when the policy has an ``alerting`` section (bootstrap
        hands it to the rollout's alerts; violations go the same way)."""
        sink = getattr(getattr(self.rollout, "alerts", None), "sink", None)
        return sink if callable(sink) else None

    def _alert_violation(self, jc: JudgedCommit) -> None:
        title = f"[shipwarden] main: {jc.sha[:12]} NOT deployed ({jc.reason})"
        body = (
            f"Commit {jc.sha} reached main ({jc.via}) and was not deployed: {jc.why}.\n"
            f"Author: {jc.author}. Subject: {jc.subject}\n"
            f"Recorded as a policy violation. `shipwarden explain {jc.sha[:12]}` says why; "
            f"`shipwarden main accept {jc.sha[:12]} --reason …` accepts it after review."
        )
        names = self._alert_targets()
        sink = self._alert_sink()
        detail: dict[str, Any] = {"title": title}
        if sink is not None:  # the policy's alerting pipeline: routed, escalated like any alert
            now = time.time()
            labels = {"alertname": "MainPolicyViolation", "severity": "critical", "source": "main-watch"}
            labels.update(branch=jc.branch, commit=jc.sha[:12], reason=jc.reason)
            annotations = {"summary": title, "description": body}
            end = now + VIOLATION_ALERT_TTL
            sink(
                [
                    PipelineAlert({**labels, "service": s}, annotations, now, ends_at=end)
                    for s in self.delivery.services
                ]
            )
            detail["via"] = "alerting"
        if names:
            result = Notifier([(n, self.secrets(n)) for n in names]).send(title, body, "failure")
            detail.update(result.as_dict())
            ok = result.ok
        elif sink is not None:
            detail.update(ok=True, targets=[])
            ok = True
        else:
            detail.update(
                ok=False, targets=[], why="no alert targets (alerting, alerts.rollout, delivery.notify)"
            )
            ok = False
        self.mainline.set_effect(
            jc.id,
            "done",
            detail,
            actor=WATCH_ACTOR,
            action="alert.violation",
            outcome="ok" if ok else "failed",
        )
        if jc.change_id and jc.reason == Reason.UNGATED_HISTORY.value:
            change = self.repo.get_change(jc.change_id)
            if change.status == "merged" and change.merge_sha == jc.sha:
                self.repo.update_change(
                    change.id,
                    actor=WATCH_ACTOR,
                    action="delivery.held",
                    outcome="failed",
                    audit_detail={"reason": jc.why},
                    status="not_deployed",
                    reason=f"not deployed: {jc.why}",
                )

    # -- commits that wait for their evidence ---------------------------------------------------------
    def _awaited(self, sha: str) -> JudgedCommit | None:
        """The verdict of ``sha`` that waits for its evidence, if any (it reached main before its gates)."""
        return next((v for v in self.mainline.verdicts(sha) if v.verdict == "awaiting"), None)

    def _awaited_since(self, change: Change) -> str | None:
        """Where main was before the waiting commit of ``change`` arrived (what its diff is measured from)."""
        jc = self._awaited(change.head_sha) or next(iter(self.mainline.verdicts(change.head_sha)), None)
        return jc.previous if jc is not None else None

    def change_of_awaited(self, tx: Any, sha: str, actor: str) -> Change | None:
        """The change that judges a commit waiting on main when its evidence arrives (``tx``: the
        caller's transaction, or the change repository): the open change of that head, else a new
        change of the main branch itself.  None if ``sha`` waits for nothing."""
        if self._awaited(sha) is None:
            return None
        main = self.delivery.repository.main_branch
        change: Change | None = tx.find_change(head_sha=sha, branch=main) or tx.find_change(head_sha=sha)
        if change is None or change.status not in OPEN:
            url = self.delivery.repository.url
            change = tx.create_change(repo=url, branch=main, head_sha=sha, actor=actor)
        return change

    def _settle_on_main(self, change: Change) -> Change | None:
        """After the gates of ``change`` were evaluated: if its commit waits on main, it is deployed
        (gates passed) or becomes a ``gates-failed`` violation (a gate failed), persisted before the
        deployment or the alert; a change whose commit is a violation on main is held back.  None:
        an ordinary change, to merge.  A change of the main branch itself is never merged."""
        main = self.delivery.repository.main_branch
        jc = self._awaited(change.head_sha)
        if jc is None:
            if change.status == "approved" and (held := self._reached_main_around_gate(change)) is not None:
                return held
            if change.status == "approved" and self._merged_cleanly_while_waiting(change):
                return self.repo.get_change(change.id)
            if change.branch == main or self.mainline.verdicts(change.head_sha):
                return change  # on main already (under a head judged by its own evidence): nothing to merge
            return None
        newer = self.mainline.deployed_after(jc.branch, jc.id) if change.status == "approved" else None
        if newer is not None:  # a later commit on main (which holds this one) is deployed already
            resolved = self.mainline.resolve(
                jc.id,
                verdict="covered",
                reason=Reason.APPROVED_CHANGE.value,
                why=f"its gates passed (change {change.id}) after {newer.sha[:12]}, a later commit of main "
                "that holds it, was deployed: not deployed by itself (that would go back in time)",
                change_id=change.id,
                actor=CD_ACTOR,
            )
        elif change.status == "approved":
            resolved = self.mainline.resolve(
                jc.id,
                verdict="deploy",
                reason=Reason.APPROVED_CHANGE.value,
                why=f"it reached main before its gates passed; then its evidence arrived and the gates of "
                f"change {change.id} ({change.branch}) all passed: {change.reason}",
                change_id=change.id,
                actor=CD_ACTOR,
            )
        elif change.status in FAILED:
            failed = [r["gate"] for r in change.gates.get("results", []) if not r.get("passed")]
            resolved = self.mainline.resolve(
                jc.id,
                verdict="violation",
                reason=Reason.GATES_FAILED.value,
                why=f"it reached main before its gates passed, and then they failed (change {change.id} "
                f"is {change.status}: {', '.join(failed) or 'a gate'} failed — {change.reason})",
                change_id=change.id,
                actor=WATCH_ACTOR,
            )
        else:
            return change  # still waiting for evidence or approvals
        if resolved is not None:
            self.perform_pending()
        return self.repo.get_change(change.id)

    def _merged_cleanly_while_waiting(self, change: Change) -> bool:
        """A head on main waiting for its evidence that is exactly ``change`` (just approved) merged onto
        main as it was before that head arrived — a hand-made clean merge of the pull request, or its
        squash — or whose tree is the very tree of the change's head (CI tested the pull request's merge
        commit, and the hand-made merge has the same content) takes the evidence of the change's head:
        nothing in it is beyond what the gates saw.
        Persisted first (``resolve``), then deployed like any gated head; ``covered`` if a later commit
        of main (which holds it) was deployed already."""
        branch = self.delivery.repository.main_branch
        found = False
        for jc in self.mainline.awaiting(branch):
            if jc.previous is None or jc.sha == change.head_sha:
                continue
            try:
                merged = self.git.merges_to(jc.previous, change.head_sha, jc.sha)
                same = not merged and self.git.same_tree(change.head_sha, jc.sha)
            except (GitError, ValueError):
                continue
            if not (merged or same):
                continue
            how = "a merge" if len(jc.parents) == 2 else "a squash or rebase"
            what = (
                f"exactly that change merged onto {jc.previous[:12]}"
                if merged
                else f"the very tree of {change.head_sha[:12]}, the commit its CI tested"
            )
            why = (
                f"it is {how} of change {change.id} ({change.branch}) onto main whose tree is {what}, and "
                f"the gates of its head {change.head_sha[:12]} all passed after it arrived: {change.reason}"
            )
            newer = self.mainline.deployed_after(jc.branch, jc.id)
            if newer is not None:
                why += f"; not deployed by itself: {newer.sha[:12]}, a later commit of main holding it, was"
            resolved = self.mainline.resolve(
                jc.id,
                verdict="covered" if newer is not None else "deploy",
                reason=Reason.CLEAN_MERGE.value,
                why=why,
                change_id=change.id,
                actor=CD_ACTOR,
                detail={"evidence_of": change.head_sha},
            )
            found = found or resolved is not None
        if found:
            self.perform_pending()
        return found

    # -- commits whose evidence does not come ---------------------------------------------------------
    def check_overdue_evidence(self, *, now: float | None = None) -> list[JudgedCommit]:
        """Heads waiting on main for their evidence longer than ``delivery.repository.evidenceTimeout``:
        each is recorded once as overdue (``main.evidence_overdue`` in the audit log, before anything is
        sent) and alerted (``MainEvidenceOverdue``; ``alert.evidence_overdue`` records what the targets
        answered).  It keeps waiting: evidence that arrives later still decides; nothing is deployed
        without it."""
        repo_spec = self.delivery.repository
        timeout = float(repo_spec.evidence_timeout)
        at = self._now().timestamp() if now is None else now
        marked: list[JudgedCommit] = []
        for jc in self.mainline.awaiting(repo_spec.main_branch):
            if jc.effect_detail.get("overdue") or at - jc.seen_at < timeout:
                continue
            waited = at - jc.seen_at
            detail = {"waited_s": round(waited, 1), "timeout_s": timeout, "at": at}
            done = self.mainline.mark_overdue(jc.id, detail, actor=WATCH_ACTOR)
            if done is None:
                continue  # resolved meanwhile, or another process marked it first
            marked.append(done)
            self._alert_overdue(done, waited, timeout)
        return marked

    def _alert_overdue(self, jc: JudgedCommit, waited: float, timeout: float) -> None:
        title = f"[shipwarden] main: {jc.sha[:12]} still waiting for its evidence ({_hours(waited)})"
        body = (
            f"Commit {jc.sha} reached main ({jc.via}) before its gates passed and no evidence has decided it "
            f"within {_hours(timeout)} (delivery.repository.evidenceTimeout). It is NOT deployed, and will "
            f"not be without its evidence.\nAuthor: {jc.author}. Subject: {jc.subject}\n"
            f"`shipwarden explain {jc.sha[:12]}` lists what it still lacks."
        )
        names = self._alert_targets()
        sink = self._alert_sink()
        detail: dict[str, Any] = {"commit": jc.sha, "title": title}
        if sink is not None:
            now = time.time()
            labels = {"alertname": "MainEvidenceOverdue", "severity": "warning", "source": "main-watch"}
            labels.update(branch=jc.branch, commit=jc.sha[:12], reason=jc.reason)
            annotations = {"summary": title, "description": body}
            sink([PipelineAlert({**labels, "service": s}, annotations, now, ends_at=now + VIOLATION_ALERT_TTL)
                  for s in self.delivery.services])  # fmt: skip
            detail["via"] = "alerting"
        ok = sink is not None
        if names:
            result = Notifier([(n, self.secrets(n)) for n in names]).send(title, body, "warning")
            detail.update(result.as_dict())
            ok = result.ok
        elif sink is None:
            detail.update(why="no alert targets (alerting, alerts.rollout, delivery.notify)")
        outcome = "ok" if ok else "failed"
        self.store.audit(actor=WATCH_ACTOR, action="alert.evidence_overdue", outcome=outcome, detail=detail)

    def _reached_main_around_gate(self, change: Change) -> Change | None:
        """A change approved after its commit already reached main around the gates is not merged
        (there is nothing to merge) nor deployed: that commit's verdict stands (``main accept``)."""
        found = [v for v in self.mainline.verdicts(change.head_sha) if v.verdict == "violation"]
        if not found:
            return None
        v = found[0]
        short = change.head_sha[:12]
        reason = (
            f"not deployed: its commit {short} reached main around the gates before they passed "
            f"({v.reason}, a policy violation); after review, `shipwarden main accept {short}`"
        )
        return self.repo.update_change(
            change.id,
            actor=WATCH_ACTOR,
            action="delivery.held",
            outcome="failed",
            audit_detail={"reason": reason, "violation": v.reason},
            status="not_deployed",
            reason=reason,
        )

    # -- merges of ours ---------------------------------------------------------------------------------
    def _after_merge(self, change_id: str) -> None:
        """What ``progress`` schedules after a merge: judge main (the merge is on it) and deploy."""
        try:
            change = self.repo.get_change(change_id)
            seed = (change.facts.get("merge") or {}).get("previous_target")
            if not seed and change.merge_sha:  # merged through GitHub: main was at its first parent
                seed = next(iter(self.git.parents(change.merge_sha)), None)
            self.watch_main(via="merge", detail={"change_id": change_id}, seed=seed, inline=True)
        except Exception as exc:  # the watch must not lose the deployment: judge it by itself
            error = f"{type(exc).__name__}: {exc}"
            self._deploy_failed(change_id, "delivery.error", error, f"main could not be judged: {error}")

    # -- accept -----------------------------------------------------------------------------------------
    def accept_violation(self, ref: str, *, user: str, reason: str) -> list[JudgedCommit]:
        """An operator accepts a violation after review: later gated heads deploy again."""
        from shipwarden.ports.store import NotFound
        from shipwarden.services.changes.errors import BadRequest, UnknownChange

        if not reason.strip():
            raise BadRequest("say why the commit is accepted (--reason)")
        sha = _resolve(self.mainline, ref)
        try:
            return self.mainline.accept(
                self.delivery.repository.main_branch, sha, user=user, reason=reason.strip()
            )
        except NotFound as exc:
            raise UnknownChange(str(exc)) from None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _merged_outside(ch: Change) -> bool:
    via = str((ch.facts.get("merge") or {}).get("via", ""))
    return via.startswith("outside shipwarden")


def _resolve(repo: MainlineRepository, ref: str) -> str:
    from shipwarden.services.changes.errors import BadRequest, UnknownChange

    ref = ref.strip().lower()
    if not _HEX.match(ref):
        raise BadRequest(f"{ref!r} is not a commit sha (7 to 64 hex digits)")
    found = repo.find(ref)
    if not found:
        raise UnknownChange(f"commit {ref} was never seen on main")
    if len(found) > 1:
        raise BadRequest(f"{ref} is ambiguous: {', '.join(s[:12] for s in found)}")
    return found[0]


def explain_commit(store: UnitOfWork, ref: str) -> dict[str, Any] | None:
    """Why a commit that reached main was (or was not) deployed; None if ``ref`` is no such commit."""
    if not _HEX.match(ref.strip().lower()):
        return None
    repo = store.mainline
    found = repo.find(ref.strip().lower())
    if len(found) != 1:
        return None
    verdicts = repo.verdicts(found[0])
    return {
        "kind": "main-commit",
        "commit": found[0],
        "verdicts": [
            {
                "branch": v.branch,
                "arrival": v.arrival,
                "previous": v.previous,
                "via": v.via,
                "author": v.author,
                "subject": v.subject,
                "parents": list(v.parents),
                "reason": v.reason,
                "verdict": v.verdict,
                "deployed": v.verdict == "deploy" and bool(v.effect_detail.get("deployed")),
                "change_id": v.change_id,
                "why": v.why,
                "effect": v.effect,
                "effect_detail": dict(v.effect_detail),
                "seen_at": v.seen_at,
                "accepted_by": v.accepted_by,
                "accept_reason": v.accept_reason,
                **({"missing": _missing_gates(store, v)} if v.verdict == "awaiting" else {}),
            }
            for v in verdicts
        ],
    }


def _missing_gates(store: UnitOfWork, v: JudgedCommit) -> list[str]:
    """What a commit waiting on main still lacks: its change's gates that have not passed (each with
    why), or that no evidence reached shipwarden for it yet."""
    from shipwarden.ports.store import NotFound

    change = None
    if v.change_id:
        try:
            change = store.changes.get_change(v.change_id)
        except NotFound:
            change = None
    change = change or store.changes.find_change(head_sha=v.sha)
    results = change.gates.get("results", []) if change is not None else []
    if not results:
        return ["every required gate: no evidence has reached shipwarden for this commit yet"]
    return [f"{r['gate']}: {r.get('detail', '')}" for r in results if not r.get("passed")]


def render_commit_explanation(doc: dict[str, Any]) -> str:
    from datetime import UTC, datetime

    lines = []
    for v in doc["verdicts"]:
        at = datetime.fromtimestamp(v["seen_at"], tz=UTC).isoformat(timespec="seconds")
        lines.append(f"commit {doc['commit']} on {v['branch']}: {v['subject']} ({v['author']})")
        lines.append(
            f"arrived: {at} via {v['via']} (main moved {(v['previous'] or '∅')[:12]} → {v['arrival'][:12]})"
        )
        if v["verdict"] == "deploy":
            if v["effect"] != "done":
                state = "deploying through the gates"
            else:
                state = "DEPLOYED through the gates" if v["deployed"] else "deployable, not deployed"
        elif v["verdict"] == "awaiting":
            state = "NOT DEPLOYED YET — waiting for its evidence"
        elif v["verdict"] == "covered":
            state = "covered (ships with the head it arrived under; not deployed by itself)"
        else:
            state = "NOT DEPLOYED — policy violation"
        lines.append(f"verdict: {state} [{v['reason']}]")
        lines.append(f"why: {v['why']}")
        if v["verdict"] == "awaiting":
            lines.append(f"waiting for evidence on {doc['commit'][:12]}: " + "; ".join(v.get("missing", [])))
            overdue = v["effect_detail"].get("overdue")
            if overdue:
                lines.append(
                    f"evidence OVERDUE: still missing {_hours(overdue['waited_s'])} after it arrived "
                    f"(evidenceTimeout {_hours(overdue['timeout_s'])}); alerted"
                )
        if v["change_id"]:
            lines.append(f"change: {v['change_id']}")
        eff = v["effect_detail"]
        if v["verdict"] == "deploy" and eff.get("status"):
            lines.append(f"deployment: {eff.get('deployment_id') or 'none'} — change {eff['status']}")
        if v["verdict"] == "violation":
            if v["effect"] != "done":
                lines.append("alert: not sent yet")
            elif eff.get("targets"):
                sent = ", ".join(f"{t['name']} ({'ok' if t['ok'] else t['detail']})" for t in eff["targets"])
                lines.append(f"alert: {eff.get('title', '')} → {sent}")
            else:
                lines.append(f"alert: not sent: {eff.get('why', 'no targets')}")
            if v["accepted_by"]:
                lines.append(f"accepted by {v['accepted_by']}: {v['accept_reason']}")
        lines.append("")
    return "\n".join(lines)
