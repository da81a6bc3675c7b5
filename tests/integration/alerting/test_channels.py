"""Delivery channels against local receivers: PagerDuty Events API v2 (a server following its
documented contract) and Apprise's generic webhook (``json://``), through the durable outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipwarden.adapters.notify.apprise_channel import AppriseChannel
from shipwarden.adapters.notify.pagerduty import PagerDutyChannel
from shipwarden.adapters.store.alerting_repo import AlertingRepo
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.alerting import Alert, AlertingPolicy
from shipwarden.ports.alerting import Channel
from shipwarden.services.alerting.pipeline import AlertPipeline
from tests.fixtures.apprise_receiver import Receiver
from tests.fixtures.pagerduty_contract import PagerDutyContract

pytestmark = pytest.mark.integration

KEY = "R0123456789abcdef0123456789abcd"  # 31: refused by the contract
GOOD_KEY = KEY + "e"


class Clock:
    t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _pipeline(tmp_path: Path, channels: dict[str, Channel], clock: Clock) -> AlertPipeline:
    engine = make_engine(f"sqlite:///{tmp_path / 'sw.db'}")
    migrate(engine)
    policy = AlertingPolicy.model_validate(
        {
            "receivers": [{"name": "pager", "pagerduty": ["PD", "PD_BAD"], "apprise": ["HOOK"]}],
            "route": {"receiver": "pager", "groupBy": ["alertname", "service"], "groupWait": "0s"},
        }
    )
    return AlertPipeline(
        AlertingRepo(Store(engine, clock=clock)),
        policy,
        channel_for=lambda t: channels[t],
        clock=clock,
        context=lambda s: ["2031-03-04 09:00:00Z deploy v1 -> v2 by ann: succeeded"],
    )


def _drain(p: AlertPipeline) -> None:
    p.sweep()
    p.flush()
    while p.deliver():
        pass


def test_pagerduty_trigger_resolve_retry_and_refusal(
    tmp_path: Path, pagerduty: PagerDutyContract, receiver: Receiver
) -> None:
    clock = Clock()
    channels: dict[str, Channel] = {
        "pagerduty:PD": PagerDutyChannel("PD", GOOD_KEY, url=pagerduty.url),
        "pagerduty:PD_BAD": PagerDutyChannel("PD_BAD", KEY, url=pagerduty.url),
        "apprise:HOOK": AppriseChannel("HOOK", receiver.url()),
    }
    p = _pipeline(tmp_path, channels, clock)
    labels = {"alertname": "ServiceErrorRate", "service": "web", "severity": "critical"}
    pagerduty.down = True
    p.ingest([Alert(labels, {"summary": "5% of requests failed"}, starts_at=clock.t)], source="test")
    _drain(p)
    assert pagerduty.events == []  # 503: retried later
    pagerduty.down = False
    clock.t += 2  # the first backoff is 1 s
    _drain(p)
    [trigger] = pagerduty.events
    assert trigger["event_action"] == "trigger" and trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "web" and "ServiceErrorRate" in trigger["payload"]["summary"]
    assert trigger["payload"]["custom_details"]["recent_changes"] == [
        "2031-03-04 09:00:00Z deploy v1 -> v2 by ann: succeeded"
    ]
    assert pagerduty.rejected and "routing_key" in pagerduty.rejected[0][0]  # the 31-character key
    failed = p.store.outbox(state="failed")
    assert [r["target"] for r in failed] == ["pagerduty:PD_BAD"]  # 400: not retried
    assert len(receiver.messages) == 1 and "ServiceErrorRate" in receiver.messages[0]["title"]
    # resolved: the same dedup_key closes PagerDuty's alert
    p.ingest([Alert(labels, {}, starts_at=clock.t - 2, ends_at=clock.t)], source="test")
    _drain(p)
    assert [e["event_action"] for e in pagerduty.events] == ["trigger", "resolve"]
    assert pagerduty.events[1]["dedup_key"] == trigger["dedup_key"] and pagerduty.open_alerts == {}
    assert pagerduty.alerts_opened == 1
    assert "RESOLVED" in receiver.messages[-1]["title"]
