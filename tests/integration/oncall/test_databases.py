"""The escalation store on SQLite, MariaDB and PostgreSQL: row locks, the nullable unique open key,
JSON snapshots, spent nonces, pages once per dedupe key."""

from __future__ import annotations

import pytest

from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.oncall_repo import OnCallRepo, StoreRecentChanges
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.oncall import Status
from shipwarden.domain.policy import load_policy_text
from shipwarden.ports.oncall import LinkSpent
from shipwarden.services.oncall import EscalationEngine, LinkSigner, Rota
from tests.integration.oncall.conftest import Clock, Recorder, policy_text

pytestmark = pytest.mark.integration


def test_the_escalation_store_on_every_database(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        clock = Clock()
        store = Store(engine, clock=clock)
        policy = load_policy_text(policy_text())
        rec = Recorder()

        def new() -> EscalationEngine:
            return EscalationEngine(
                OnCallRepo(store),
                Rota(lambda: policy.policy.oncall),
                rec,
                changes=StoreRecentChanges(store),
                links=LinkSigner(b"k" * 32, "http://x", 60),
                clock=clock,
            )

        a, b = new(), new()
        e = a.open("g1", title="Down", service="hello", actor="alerting")
        assert b.open("g1", title="Down", service="hello", actor="alerting").id == e.id
        assert len(a.tick()) + len(b.tick()) == 1
        assert a.deliver() + b.deliver() == 1
        assert rec.to() == ["alice@example.com"]
        token = a.links.url(e.id, "ack", "alice", clock()).rsplit("/", 1)[1]  # type: ignore[union-attr]
        assert a.act_by_link(token)[1].status is Status.ACKNOWLEDGED
        with pytest.raises(LinkSpent):
            b.act_by_link(token)
        a.resolve(e.id, actor="alice")
        again = a.open("g1", title="Down", service="hello", actor="alerting")  # the key is free again
        other = a.open("g2", title="Other", service="hello", actor="alerting")
        assert len({e.id, again.id, other.id}) == 3
        assert OnCallRepo(store).get(e.id).snapshot.levels[1].targets[0].name == "carol"
    finally:
        engine.dispose()
