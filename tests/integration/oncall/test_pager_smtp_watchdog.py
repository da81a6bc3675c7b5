"""Real delivery (aiosmtpd on loopback) and the pager watching itself."""

from __future__ import annotations

import threading
import time

import pytest

from shipwarden.adapters.notify.mailcatcher import MailCatcher
from shipwarden.adapters.notify.pager import PageNotifier, parse_smtp_url
from shipwarden.ports.oncall import Contact
from shipwarden.services.oncall import Watchdog
from tests.integration.oncall.conftest import Recorder, World, policy_text


@pytest.fixture
def catcher():  # type: ignore[no-untyped-def]
    with MailCatcher() as c:
        yield c


def test_a_page_by_email_reaches_the_smtp_server(world: World, catcher: MailCatcher) -> None:
    """The whole path in real time: engine thread → page table → sender thread → SMTP → catcher."""
    w = world
    w.set_policy(policy_text("1s", "1s").replace("repeat: 1", "repeat: 0"))
    w.store._clock = time.time
    engine = w.new_engine(
        clock=time.time, notifier=PageNotifier(parse_smtp_url(catcher.url, "pager@sw.test"))
    )  # type: ignore[arg-type]
    engine.start()
    try:
        e = engine.open("g1", title="HighErrorRate", service="hello", actor="alerting")
        assert e.due is not None
        first = catcher.wait_for(lambda m: "alice@example.com" in m.to, 10)
        assert first is not None, "alice was not paged"
        assert first.subject == "[shipwarden] PAGE HighErrorRate (hello)"
        assert (
            f"escalation: {e.id}" in first.body and "acknowledge: http://sw.test/oncall/links/" in first.body
        )
        assert first.message["X-Shipwarden-Dedupe-Key"] == f"{e.id}/0/email:alice@example.com"
        second = catcher.wait_for(lambda m: "carol@example.com" in m.to, 10)  # nobody acknowledged
        assert second is not None and second.at >= e.due + 1.0  # not before the 1 s time-out
    finally:
        engine.stop()
    pages = w.repo.pages(e.id)
    assert [(p["to"], p["status"]) for p in pages] == [
        ("alice@example.com", "sent"),
        ("carol@example.com", "sent"),
        ("CAROL_CHAT", "failed" if pages[-1]["status"] == "failed" else "pending"),  # no such secret here
    ]


def test_an_unreachable_smtp_server_is_a_failed_delivery_not_an_exception() -> None:
    from shipwarden.adapters.net import free_port

    n = PageNotifier(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}"), timeout=2)
    d = n.send(Contact("email", "a@example.com"), "s", "b", "k")
    assert not d.ok and "SMTP 127.0.0.1" in d.detail


class FakeMono:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_watchdog_pages_a_stall_once_and_its_recovery() -> None:
    mono, beat, second = FakeMono(), [100.0], Recorder()
    records: list[str] = []
    dog = Watchdog(
        lambda: beat[0],
        second,
        [Contact("email", "bob@example.com")],
        stall=10,
        clock=mono,
        record=lambda s, d: records.append(s),
    )
    mono.t = 110.0
    assert dog.check() is None  # 10 s is not more than 10 s
    mono.t = 110.5
    assert dog.check() is True
    mono.t = 130.0
    assert dog.check() is None  # still stalled: paged once
    beat[0] = 130.0
    assert dog.check() is False
    assert [s for _, s, _, _ in second.sent] == [
        "[shipwarden] PAGER STALLED: the escalation engine has not run for 10s",
        "[shipwarden] pager recovered after 30s",  # since its last beat at 100
    ]
    assert len(records) == 2


def test_a_stalled_engine_is_paged_through_the_second_path(world: World, catcher: MailCatcher) -> None:
    """The engine's store hangs (a lock held elsewhere); its loop stops going round; the watchdog
    thread pages bob by mail through its own notifier (no store) after the stall limit."""
    w = world
    w.store._clock = time.time
    engine = w.new_engine(clock=time.time)
    hang = threading.Event()
    real_due = w.repo.due

    def stuck_due(now: float, limit: int = 100):  # type: ignore[no-untyped-def]
        hang.wait(30)
        return real_due(now, limit)

    engine.start()
    dog = Watchdog(
        lambda: engine.beat,
        PageNotifier(parse_smtp_url(catcher.url)),
        [Contact("email", "bob@example.com")],
        stall=2.0,
    )
    dog.start()
    try:
        time.sleep(0.3)
        w.repo.due = stuck_due  # type: ignore[method-assign]
        t0 = time.monotonic()
        mail = catcher.wait_for(lambda m: "bob@example.com" in m.to, 15)
        assert mail is not None, "the stall was not paged"
        assert "PAGER STALLED" in mail.subject
        assert 2.0 <= time.monotonic() - t0 < 8.0
        w.repo.due = real_due  # type: ignore[method-assign]
        hang.set()
        back = catcher.wait_for(lambda m: "recovered" in m.subject, 10)
        assert back is not None
    finally:
        hang.set()
        dog.stop()
        engine.stop()


def test_the_watchdog_process_reads_the_engines_heartbeat_file(tmp_path, catcher: MailCatcher) -> None:  # type: ignore[no-untyped-def]
    """``oncall watchdog``'s check: an engine touches the heartbeat file; when it stops (the whole
    process, say), the file ages and the separate watchdog pages by mail."""
    import os

    from shipwarden.bootstrap import heartbeat_file, load_policy, make_watchdog_process, open_store
    from shipwarden.settings import Settings
    from tests.integration.oncall.conftest import policy_text

    (tmp_path / "p.yaml").write_text(policy_text())
    settings = Settings(state_dir=tmp_path / "state", policy=tmp_path / "p.yaml", smtp_url=catcher.url)
    dog = make_watchdog_process(settings, open_store(settings), load_policy(settings.policy))
    beat = heartbeat_file(settings)
    beat.parent.mkdir(parents=True, exist_ok=True)
    beat.touch()
    assert dog.check() is None  # fresh
    old = time.time() - 11
    os.utime(beat, (old, old))
    assert dog.check() is True
    mail = catcher.wait_for(lambda m: "bob@example.com" in m.to, 10)
    assert mail is not None and "PAGER STALLED" in mail.subject
    beat.touch()
    assert dog.check() is False
