"""The controller backs off a deployment whose driver keeps failing (issue 9, class 1: the server
retried about once a second into its log, with a traceback each time, forever)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from shipwarden.services.controller import Controller
from tests.fakes.world import World


class BrokenDriver:
    """A RolloutService whose every ``run`` fails the way a lost database does."""

    def __init__(self) -> None:
        self.runs = 0
        self.fail = True

    def lease_owner(self) -> str:
        return "controller-under-test"

    def run(self, dep_id: str, **_kw: Any) -> None:
        self.runs += 1
        if self.fail:
            raise RuntimeError("database is locked")


def run_ticks(ctl: Controller, world: World, seconds: int) -> None:
    for _ in range(seconds):
        ctl.tick()
        for t in list(ctl._drivers.values()):
            t.join(5)
        world.clock.advance(1.0)


def test_a_failing_driver_is_retried_with_backoff_and_logged_once_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(tmp_path)
    world.deploy("v1")
    driver = BrokenDriver()
    ctl = Controller(driver, world.store, interval_s=1.0, clock=world.clock)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="shipwarden.services.controller"):
        run_ticks(ctl, world, 300)
    # 1, 2, 4, … 60 s apart: t = 0, 1, 3, 7, 15, 31, 63, 123, 183, 243 — not 300 tries
    assert driver.runs == 10
    assert sum(r.exc_info is not None for r in caplog.records) == 1
    assert len(caplog.records) == driver.runs
    assert "failed again (10 times); retrying in 60s" in caplog.records[-1].getMessage()
    driver.fail = False  # the database is back: the next retry drives it and the backoff resets
    waited = 0
    while driver.runs == 10:
        run_ticks(ctl, world, 1)
        waited += 1
    assert waited <= 61 and ctl._retry == {}
    world.close()
