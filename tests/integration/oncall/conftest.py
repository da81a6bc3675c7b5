"""A migrated SQLite store per test (copied from one migrated once), a policy with an ``oncall``
section, a clock tests move by hand, and a notifier that records what it was given."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.oncall_repo import OnCallRepo, StoreRecentChanges
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.policy import LoadedPolicy, load_policy_text
from shipwarden.ports.oncall import Contact, Delivery
from shipwarden.services.oncall import EscalationEngine, LinkSigner, Rota

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, a Friday

POLICY = """\
apiVersion: shipwarden/v1
team: ops
services:
  - name: hello
    run: {command: [python, app.py]}
    strategy: {blueGreen: {}}
    routing: {port: 18080, previewPort: 18081}
oncall:
  people:
    alice: {email: alice@example.com}
    bob: {email: bob@example.com}
    carol: {email: carol@example.com, notify: [CAROL_CHAT]}
  schedules:
    primary:
      timeZone: Europe/Berlin
      layers:
        - {name: weekly, rotation: weekly, start: 2026-11-30, handoff: "09:00", members: [alice, bob]}
  escalation:
    default:
      repeat: 1
      levels:
        - notify: [{schedule: primary}]
          timeout: TIMEOUT1
        - notify: [{person: carol}]
          timeout: TIMEOUT2
  services: {hello: default}
  watchdog: {stall: 10s, notify: [{person: bob}]}
"""


def policy_text(t1: str = "5m", t2: str = "10m") -> str:
    return POLICY.replace("TIMEOUT1", t1).replace("TIMEOUT2", t2)


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@dataclass
class Recorder:
    """A notifier that keeps what it is asked to send (and can fail on demand)."""

    sent: list[tuple[Contact, str, str, str]] = field(default_factory=list)
    fail: bool = False
    event: threading.Event = field(default_factory=threading.Event)

    def send(self, target: Contact, subject: str, body: str, dedupe_key: str) -> Delivery:
        if self.fail:
            return Delivery(False, "receiver down")
        self.sent.append((target, subject, body, dedupe_key))
        self.event.set()
        return Delivery(True, "ok")

    def to(self) -> list[str]:
        return [c.address for c, *_ in self.sent]


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oncall-template") / "sw.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture
def db_url(migrated_db: Path, tmp_path: Path) -> str:
    target = tmp_path / "sw.db"
    shutil.copy(migrated_db, target)
    return f"sqlite:///{target}"


@dataclass
class World:
    clock: Clock
    store: Store
    repo: OnCallRepo
    holder: list[LoadedPolicy]
    rota: Rota
    notifier: Recorder
    engine: EscalationEngine

    def set_policy(self, text: str) -> None:
        self.holder[0] = load_policy_text(text)

    def new_engine(self, clock: object = None, notifier: Recorder | None = None) -> EscalationEngine:
        return EscalationEngine(
            self.repo,
            self.rota,
            notifier or self.notifier,
            changes=StoreRecentChanges(self.store),
            links=LinkSigner(b"k" * 32, "http://sw.test", 3600),
            clock=clock or self.clock,
        )


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    clock = Clock()
    engine = make_engine(db_url)
    store = Store(engine, clock=clock)
    holder = [load_policy_text(policy_text())]
    rota = Rota(lambda: holder[0].policy.oncall)
    repo = OnCallRepo(store)
    rec = Recorder()
    w = World(clock, store, repo, holder, rota, rec, None)  # type: ignore[arg-type]
    w.engine = w.new_engine()
    yield w
    w.engine.stop()
    engine.dispose()
