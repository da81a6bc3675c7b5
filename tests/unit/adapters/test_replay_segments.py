"""Point-in-time replay across failovers: one ``mariadb-binlog`` reader per timeline (pure: the commands)."""

from __future__ import annotations

from datetime import UTC, datetime

from shipwarden.adapters.databases.mariadb_scratch import _readers
from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.ports.databases import ReplayTarget

G = GtidPosition.parse
FILES = ["a.1", "a.2", "b.1", "b.2", "c.1"]  # primary a, then b (forked at 0-1-100), then c (at 0-2-180)
FORKS = {1: G("0-1-100"), 3: G("0-2-180")}


def opts(cmd: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in cmd if a.startswith("--"))


def files(cmd: list[str]) -> list[str]:
    return [a for a in cmd[1:] if not a.startswith("--")]


def test_one_primary_is_one_reader() -> None:
    (cmd,) = _readers(["a.1", "a.2"], G("0-1-5"), ReplayTarget(gtid=G("0-1-50")), {})
    assert files(cmd) == ["a.1", "a.2"]
    assert opts(cmd) == {"start-position": "0-1-5", "stop-position": "0-1-50"}


def test_a_target_after_two_failovers_reads_each_primary_up_to_its_fork() -> None:
    cmds = _readers(FILES, G("0-1-20"), ReplayTarget(gtid=G("0-3-250")), FORKS)
    assert [files(c) for c in cmds] == [["a.1", "a.2"], ["b.1", "b.2"], ["c.1"]]
    assert [opts(c) for c in cmds] == [
        {"start-position": "0-1-20", "stop-position": "0-1-100"},
        {"start-position": "0-1-100", "stop-position": "0-2-180"},
        {"start-position": "0-2-180", "stop-position": "0-3-250"},
    ]


def test_a_target_before_the_failover_stops_in_the_first_timeline() -> None:
    (cmd,) = _readers(FILES, G("0-1-20"), ReplayTarget(gtid=G("0-1-60")), FORKS)
    assert files(cmd) == ["a.1", "a.2"] and opts(cmd)["stop-position"] == "0-1-60"
    (cmd,) = _readers(FILES, G("0-1-20"), ReplayTarget(gtid=G("0-1-100")), FORKS)  # exactly the fork
    assert files(cmd) == ["a.1", "a.2"]


def test_a_snapshot_taken_after_a_failover_skips_the_older_timelines() -> None:
    cmds = _readers(FILES, G("0-2-150"), ReplayTarget(gtid=G("0-2-170")), FORKS)
    assert [files(c) for c in cmds] == [["b.1", "b.2"]]
    assert opts(cmds[0]) == {"start-position": "0-2-150", "stop-position": "0-2-170"}


def test_a_moment_applies_to_every_timeline() -> None:
    moment = datetime(2026, 12, 3, 10, 15, 4, tzinfo=UTC)
    cmds = _readers(FILES, G("0-1-20"), ReplayTarget(before=moment), FORKS)
    assert len(cmds) == 3 and all("stop-datetime" in opts(c) for c in cmds)
    assert opts(cmds[0])["stop-position"] == "0-1-100" and "stop-position" not in opts(cmds[2])
