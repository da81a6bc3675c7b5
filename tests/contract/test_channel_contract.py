"""The notifier port's contract (``ports/alerting.py`` ``Channel``), run against every driver: a
FakeChannel, Apprise posting to a real HTTP receiver (``json://``), Apprise sending e-mail to a
real SMTP server (aiosmtpd, ``mailto://``) and PagerDuty Events v2 against the local contract
server (PagerDuty cannot run here).

What alerting's outbox relies on: ``deliver`` never raises — a target that does not answer is an
outcome ``ok=False`` that may be retried —; a delivered notice reached the target once,
naming the alert (a resolve: the alert, or the incident's key); the channel's printable name
never carries the secret in its target (a password, a routing key).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from shipwarden.adapters.notify.apprise_channel import AppriseChannel
from shipwarden.adapters.notify.mailcatcher import MailCatcher
from shipwarden.adapters.notify.pagerduty import PagerDutyChannel
from shipwarden.ports.alerting import AlertView, Channel, DeliveryOutcome, GroupNotice
from tests.fixtures.apprise_receiver import Receiver

DRIVERS = ("fake", "apprise-json", "apprise-smtp", "pagerduty")
SECRET = "topsecret-7f3a"
ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"


@dataclass
class FakeChannel:
    """Delivers into a list; ``down``: the target does not answer."""

    messages: list[str] = field(default_factory=list)
    down: bool = False

    @property
    def name(self) -> str:
        return "fake:ops"

    def deliver(self, notice: GroupNotice) -> DeliveryOutcome:
        if self.down:
            return DeliveryOutcome(False, "connection refused")
        self.messages.append(f"[{notice.status}] {notice.group_labels.get('alertname', '')}")
        return DeliveryOutcome(True, "delivered")


@dataclass
class Kit:
    channel: Channel
    received: Callable[[], list[str]]  # what the target got, one text per message
    take_down: Callable[[], None]  # the target stops answering


def notice(status: str = "firing", seq: int = 1) -> GroupNotice:
    alert = AlertView(
        "fp1", status,  # type: ignore[arg-type]
        {"alertname": "HighErrorRate", "service": "hello", "severity": "critical"},
        {"summary": "5xx above 5 %"},
    )  # fmt: skip
    return GroupNotice(
        key='{}:{alertname="HighErrorRate"}',
        receiver="ops",
        seq=seq,
        status=status,  # type: ignore[arg-type]
        group_labels={"alertname": "HighErrorRate", "service": "hello"},
        common_labels=dict(alert.labels),
        common_annotations={},
        alerts=[alert],
        dedup_key="dk-1",
        opened_at=datetime.now(UTC),
    )


@pytest.fixture(params=DRIVERS)
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    name = request.param
    ch: Channel
    if name == "fake":
        fake = FakeChannel()
        yield Kit(fake, lambda: list(fake.messages), lambda: setattr(fake, "down", True))
    elif name == "apprise-json":
        receiver = Receiver()
        url = receiver.url(password=SECRET)
        closed: list[bool] = []

        def close() -> None:
            if not closed:
                receiver.close()
                closed.append(True)

        ch = AppriseChannel("ops", url, masked="json://notifier:***@127.0.0.1/notify", timeout=3)
        try:
            yield Kit(ch, lambda: [json.dumps(m) for m in receiver.messages], close)
        finally:
            close()
    elif name == "apprise-smtp":
        catcher = MailCatcher()
        catcher.__enter__()
        stopped: list[bool] = []

        def stop() -> None:
            if not stopped:
                catcher.__exit__(None, None, None)
                stopped.append(True)

        # aiosmtpd here offers no AUTH: no credentials in the URL (so no secret to leak either)
        url = f"mailto://127.0.0.1:{catcher.port}?from=alerts@example.com&to=oncall@example.com"
        ch = AppriseChannel("mail", url, masked="mailto://127.0.0.1", timeout=3)
        try:
            yield Kit(ch, lambda: [f"{m.subject}\n{m.body}" for m in catcher.mails], stop)
        finally:
            stop()
    else:
        pd = request.getfixturevalue("pagerduty")
        client = httpx.Client(timeout=3)
        ch = PagerDutyChannel("pager", ROUTING_KEY, url=pd.url, client=client)
        try:
            yield Kit(ch, lambda: [json.dumps(e) for e in pd.events], lambda: setattr(pd, "down", True))
        finally:
            client.close()


def test_a_delivered_notice_reached_the_target_once_naming_the_alert(kit: Kit) -> None:
    out = kit.channel.deliver(notice("firing", 1))
    assert out.ok, out
    got = kit.received()
    assert len(got) == 1 and "HighErrorRate" in got[0], got
    resolved = kit.channel.deliver(notice("resolved", 2))
    assert resolved.ok, resolved
    got = kit.received()
    # a resolve names the alert, or (PagerDuty) the incident its trigger opened: the dedup key
    assert len(got) == 2 and ("HighErrorRate" in got[1] or "dk-1" in got[1]), got


def test_a_target_that_does_not_answer_is_a_retryable_outcome_not_an_exception(kit: Kit) -> None:
    kit.take_down()
    out = kit.channel.deliver(notice())
    assert not out.ok and out.retry, out
    assert SECRET not in out.detail and ROUTING_KEY not in out.detail, out.detail
    assert kit.received() == []


def test_the_printable_name_carries_no_secret(kit: Kit) -> None:
    name = kit.channel.name
    assert name and SECRET not in name and ROUTING_KEY not in name, name
