"""RefusalLog: refusals are audited, a flood from one source or from many is bounded."""

from __future__ import annotations

from typing import Any

from shipwarden.services.refusals import RefusalLog


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make() -> tuple[RefusalLog, list[dict[str, Any]], Clock]:
    written: list[dict[str, Any]] = []
    clock = Clock()
    log = RefusalLog(lambda **e: written.append(e), clock, window_s=60, per_source=3, total=5, max_sources=2)
    return log, written, clock


def test_one_source_gets_its_budget_then_a_summary_per_window() -> None:
    log, written, clock = make()
    for _ in range(10):
        log.refuse(source="10.0.0.1", actor="anonymous", action="webhook.rejected", detail={"status": 401})
    assert [e["action"] for e in written] == ["webhook.rejected"] * 3
    clock.t = 61
    log.refuse(source="10.0.0.1", actor="anonymous", action="webhook.rejected", detail={"status": 401})
    summary = written[3]
    assert summary["action"] == "refusals.suppressed"
    assert summary["detail"]["suppressed"] == 7 and summary["detail"]["top_sources"] == {"10.0.0.1": 7}
    assert written[4]["action"] == "webhook.rejected"  # a new window, a new budget


def test_many_sources_share_a_total_and_memory_is_bounded() -> None:
    log, written, _ = make()
    for i in range(100):
        log.refuse(source=f"10.0.0.{i}", actor="anonymous", action="http.refused", detail={"status": 413})
    log.flush()
    individual = [e for e in written if e["action"] == "http.refused"]
    [summary] = [e for e in written if e["action"] == "refusals.suppressed"]
    assert len(individual) == 5
    assert summary["detail"]["suppressed"] == 95
    assert summary["detail"]["sources"] == 3  # two tracked sources plus "other"
    assert "other" in summary["detail"]["top_sources"]


def test_flush_without_suppressed_refusals_writes_nothing() -> None:
    log, written, _ = make()
    log.refuse(source="a", actor="x", action="webhook.rejected", detail={})
    log.flush()
    assert len(written) == 1
