"""The batch write of an ingest (one DB-API executemany per table) on every supported database:
labels and annotations read back as written, groups formed, duplicates change nothing."""

from __future__ import annotations

import pytest

from shipwarden.adapters.store.alerting_repo import AlertingRepo
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.alerting import Alert, AlertingPolicy
from shipwarden.services.alerting.pipeline import AlertPipeline

pytestmark = pytest.mark.integration

POLICY = {
    "receivers": [{"name": "ops", "apprise": ["OPS"]}],
    "route": {"receiver": "ops", "groupBy": ["alertname", "service"], "groupWait": "0s"},
}


def test_a_batch_is_stored_and_grouped_on_every_database(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    repo = AlertingRepo(Store(engine))
    now = 1_800_000_000.0
    pipeline = AlertPipeline(
        repo, AlertingPolicy.model_validate(POLICY), channel_for=lambda t: None, clock=lambda: now  # type: ignore[arg-type,return-value]
    )
    alerts = [
        Alert(
            {"alertname": "High", "service": f"s{i % 3}", "instance": f"h{i}", "quote": 'a"b\\c é'},
            {"summary": f"value {i}", "nested": "{not: json}"},
            starts_at=now - 10,
        )
        for i in range(30)
    ]
    try:
        assert pipeline.ingest(alerts, source="test") == 30
        assert pipeline.ingest(alerts, source="test") == 0  # duplicates
        stored = {a.fingerprint: a for a, state in repo.alerts(state="firing")}
        assert set(stored) == {a.fingerprint for a in alerts}
        for a in alerts:
            assert dict(stored[a.fingerprint].labels) == dict(a.labels)
            assert dict(stored[a.fingerprint].annotations) == dict(a.annotations)
        due = repo.due_groups(now)
        assert sorted(len(g.alerts) for g in due) == [10, 10, 10]
        assert all(g.group_labels["alertname"] == "High" for g in due)
    finally:
        engine.dispose()
