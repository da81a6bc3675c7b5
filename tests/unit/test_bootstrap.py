"""Wiring: the API service and the CLI build the same rollout machinery from the same settings."""

from __future__ import annotations

from pathlib import Path

from shipwarden.bootstrap import NEWRELIC_KEY_SECRET, build, build_service, load_policy
from shipwarden.settings import Settings

EXAMPLE = Path(__file__).parents[2] / "examples" / "policy.yaml"


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", policy=EXAMPLE, keks=None, kek_files=[], **kw)  # type: ignore[arg-type]


def test_api_and_cli_deployments_get_the_same_metric_providers(tmp_path: Path) -> None:
    """A deployment started through the API (continuous delivery) can run Prometheus checks too."""
    settings = _settings(tmp_path, prometheus_url="http://127.0.0.1:9/")
    loaded = load_policy(EXAMPLE)
    api = build_service(settings, loaded)
    cli = build(settings, loaded)
    try:
        assert api.rollout is not None
        assert set(api.rollout.analysis.providers) == set(cli.rollout.analysis.providers) == {"prometheus"}
    finally:
        api.store.engine.dispose()
        cli.store.engine.dispose()


def test_the_new_relic_key_can_live_encrypted_in_the_secret_store(tmp_path: Path) -> None:
    settings = _settings(tmp_path, newrelic_account_id=1234567)
    loaded = load_policy(EXAMPLE)
    svc = build_service(settings, loaded)
    try:
        assert svc.rollout is not None and "newrelic" not in svc.rollout.analysis.providers
        svc.access.put_secret("admin", NEWRELIC_KEY_SECRET, "NRAK-TESTKEY0123456789ABCDEFGH")
    finally:
        svc.store.engine.dispose()
    again = build(settings, loaded)
    try:
        provider = again.rollout.analysis.providers["newrelic"]
        assert provider.kind == "newrelic"
    finally:
        again.store.engine.dispose()
