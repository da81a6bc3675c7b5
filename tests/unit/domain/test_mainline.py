"""domain.mainline: each commit that reaches main gets a verdict; only a gated head deploys."""

from __future__ import annotations

import pytest

from shipwarden.domain.mainline import Arrival, ChangeFact, MainCommit, Reason, judge, verdict_kind

BASE = "0" * 39 + "1"


def sha(n: int) -> str:
    return f"{n:040x}"


def commit(n: int, *parents: int) -> MainCommit:
    return MainCommit(sha(n), tuple(sha(p) for p in parents) or (BASE,), "Eve <eve@example.com>", f"c{n}")


def change(
    cid: str, head: int, status: str = "approved", *, merge: int | None = None, **kw: object
) -> ChangeFact:
    args: dict[str, object] = {
        "id": cid,
        "branch": f"feature/{cid}",
        "head_sha": sha(head),
        "status": status,
        "reason": "because",
        "merge_sha": sha(merge) if merge else None,
        "merged_by_shipwarden": merge is not None,
        "all_passed": status in ("approved", "merged"),
    }
    args.update(kw)
    return ChangeFact(**args)  # type: ignore[arg-type]


def arrival(
    *commits: MainCommit, forced: bool = False, clean: dict[str, bool] | None = None, **kw: object
) -> Arrival:
    return Arrival(BASE, commits[0].sha, forced, commits, clean or {}, **kw)  # type: ignore[arg-type]


def test_shipwarden_merge_is_deployed_and_its_branch_commits_are_covered() -> None:
    merge, head, first = commit(3, 0x1, 2), commit(2, 1), commit(1)
    ch = change("c1", 2, "merged", merge=3, commits=frozenset({sha(1), sha(2)}))
    v = judge(arrival(merge, head, first), [ch])
    assert [(x.reason, x.deploy) for x in v] == [
        (Reason.SHIPWARDEN_MERGE, True),
        (Reason.APPROVED_CHANGE, False),
        (Reason.PART_OF_CHANGE, False),
    ]
    assert [verdict_kind(x) for x in v] == ["deploy", "covered", "covered"]
    assert all(x.change_id == "c1" for x in v)


def test_a_direct_push_waits_for_its_evidence() -> None:
    (v,) = judge(arrival(commit(5)), [])
    assert v.reason is Reason.AWAITING_EVIDENCE and not v.deploy and not v.violation and v.waiting
    assert verdict_kind(v) == "awaiting"
    assert "Eve <eve@example.com>" in v.why and "once its required evidence is green" in v.why


def test_several_direct_commits_wait_with_their_head_only_the_head_is_awaited() -> None:
    v = judge(arrival(commit(7, 6), commit(6, 5), commit(5)), [])
    assert [x.reason for x in v] == [Reason.AWAITING_EVIDENCE] * 3 and not any(x.deploy for x in v)
    assert [verdict_kind(x) for x in v] == ["awaiting", "covered", "covered"]
    assert sha(7)[:12] in v[1].why


def test_a_direct_push_over_an_open_violation_is_ungated_history_not_awaiting() -> None:
    (v,) = judge(arrival(commit(8), open_violations={sha(3): "gates-failed"}), [])
    assert v.reason is Reason.UNGATED_HISTORY and v.violation and not v.waiting
    assert sha(3)[:12] in v.why


def test_a_direct_push_under_a_gated_head_is_still_a_violation() -> None:
    ch = change("c12", 12, "merged", merge=13, commits=frozenset({sha(12)}))
    v = judge(arrival(commit(13, 0x1, 12), commit(12), commit(11)), [ch])
    assert v[0].reason is Reason.UNGATED_HISTORY and v[2].reason is Reason.NO_CHANGE and v[2].violation


def test_exactly_the_approved_head_pushed_elsewhere_is_deployed() -> None:
    (v,) = judge(arrival(commit(9)), [change("c9", 9)])
    assert v.reason is Reason.APPROVED_CHANGE and v.deploy and v.change_id == "c9"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("blocked", Reason.GATES_FAILED),
        ("rejected", Reason.GATES_FAILED),
        ("pending", Reason.AWAITING_EVIDENCE),
        ("waiting_approval", Reason.AWAITING_EVIDENCE),
        ("superseded", Reason.AWAITING_EVIDENCE),
    ],
)
def test_head_of_a_change_that_did_not_pass(status: str, reason: Reason) -> None:
    ch = change("c4", 4, status, failed_gates=("suite:unit",))
    (v,) = judge(arrival(commit(4)), [ch])
    assert v.reason is reason and not v.deploy
    assert v.violation is (reason is Reason.GATES_FAILED) and v.waiting is (reason is not Reason.GATES_FAILED)
    assert status in v.why and v.change_id == "c4"
    if reason is Reason.GATES_FAILED:
        assert "suite:unit failed" in v.why


def test_a_merge_made_elsewhere_deploys_only_when_its_tree_is_the_clean_merge() -> None:
    m = commit(11, 0x1, 10)
    ch = change("c10", 10)
    v = judge(arrival(m, commit(10), clean={sha(11): True}), [ch])
    assert v[0].reason is Reason.CLEAN_MERGE and v[0].deploy
    assert v[1].reason is Reason.APPROVED_CHANGE and not v[1].deploy
    v = judge(arrival(m, commit(10), clean={sha(11): False}), [ch])
    assert (
        v[0].reason is Reason.MERGED_AROUND_GATE
        and not v[0].deploy
        and "differs from the clean merge" in v[0].why
    )


def test_a_merge_of_a_blocked_change_and_its_commits_are_violations() -> None:
    ch = change("c20", 20, "blocked", commits=frozenset({sha(19), sha(20)}))
    v = judge(arrival(commit(21, 0x1, 20), commit(20, 19), commit(19), clean={sha(21): True}), [ch])
    assert [x.reason for x in v] == [Reason.GATES_FAILED] * 3
    assert all(x.change_id == "c20" for x in v)


def test_a_gated_head_over_an_ungated_commit_of_the_same_push_is_not_deployed() -> None:
    merge = commit(31, 30, 29)
    ch = change("c29", 29, "merged", merge=31, commits=frozenset({sha(29)}))
    v = judge(arrival(merge, commit(30), commit(29)), [ch])
    head = v[0]
    assert head.reason is Reason.UNGATED_HISTORY and not head.deploy and sha(30)[:12] in head.why
    assert v[1].reason is Reason.NO_CHANGE


def test_a_commit_of_a_pending_change_under_a_gated_head_is_merged_around_the_gate() -> None:
    ch = change("c33", 33, "merged", merge=34)
    v = judge(arrival(commit(34, 0x1, 33), commit(33), commit(32)), [ch, change("c32", 32, "pending")])
    assert v[2].reason is Reason.MERGED_AROUND_GATE and "before its gates passed" in v[2].why
    assert v[0].reason is Reason.UNGATED_HISTORY and not v[0].deploy


def test_open_violations_from_earlier_pushes_hold_back_a_gated_head() -> None:
    ch = change("c40", 40, "merged", merge=41)
    v = judge(arrival(commit(41, 0x1, 40), commit(40), open_violations={sha(39): "no-change"}), [ch])
    assert v[0].reason is Reason.UNGATED_HISTORY and not v[0].deploy
    v = judge(arrival(commit(41, 0x1, 40), commit(40)), [ch])
    assert v[0].reason is Reason.SHIPWARDEN_MERGE and v[0].deploy


def test_a_force_push_is_never_deployed_even_when_gated() -> None:
    v = judge(arrival(commit(50), forced=True), [change("c50", 50)])
    assert v[0].reason is Reason.FORCE_PUSH and not v[0].deploy and "force-pushed" in v[0].why


def test_the_head_must_come_first() -> None:
    with pytest.raises(ValueError, match="start with its head"):
        judge(Arrival(BASE, sha(2), False, (commit(1), commit(2))), [])


def test_a_squash_or_rebase_of_an_approved_change_is_that_change() -> None:
    ch = change("c60", 60)
    rebased = (commit(62, 61), commit(61))
    v = judge(Arrival(BASE, sha(62), False, rebased, {}, {}, "c60"), [ch])
    assert [(x.reason, x.deploy, x.change_id) for x in v] == [
        (Reason.CLEAN_MERGE, True, "c60"),
        (Reason.PART_OF_CHANGE, False, "c60"),
    ]
    # without the tree match the same commits are pushes nobody judged
    v = judge(Arrival(BASE, sha(62), False, rebased, {}, {}, None), [ch])
    assert [x.reason for x in v] == [Reason.AWAITING_EVIDENCE, Reason.AWAITING_EVIDENCE]
    # a change whose gates did not pass is never matched by its tree
    v = judge(Arrival(BASE, sha(62), False, rebased, {}, {}, "c60"), [change("c60", 60, "pending")])
    assert v[0].reason is Reason.AWAITING_EVIDENCE and v[0].change_id is None
