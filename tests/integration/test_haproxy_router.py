"""What only the HAProxy driver does, against real HAProxy (the port's promises are in
tests/contract/test_router_contract.py, what both real drivers share in test_routers.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from examples.sample_service import SampleService

from shipwarden.adapters.routers.base import Pool, Routes
from tests.fixtures.routers import running_router

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("haproxy_router")]

Factory = Callable[..., SampleService]


def pool(version: str, services: list[SampleService], weight: int = 100) -> Pool:
    return Pool(version, tuple(s.address for s in services), weight)


def test_start_rebuilds_the_maps_from_the_saved_tables(tmp_path: Path, sample_service: Factory) -> None:
    """Map files are replaced atomically but not synced (state.json is): after a crash they may be
    stale, so ``start`` writes them all from the saved tables before HAProxy reads them."""
    v1, v2 = sample_service("v1"), sample_service("v2")
    with running_router("haproxy", tmp_path / "h") as (router, listener):
        router.apply("web", Routes(production=(pool("v1", [v1]),)))
        stale = {p: p.read_text() for p in (router.state_dir / "maps").iterdir()}
        router.apply("web", Routes(production=(pool("v2", [v2]),), preview=(pool("v1", [v1]),)))
        router.stop()
        for path, text in stale.items():  # what a crash before the rename reached the disk leaves
            path.write_text(text)
        router.start()
        assert router.probe("web", "production", 10).versions == Counter(v2=10)
        assert router.probe("web", "preview", 10).versions == Counter(v1=10)


def test_counters_shown_during_a_reload_handover_never_go_down(
    tmp_path: Path, sample_service: Factory
) -> None:
    """Between the freeze (the counts handed to the new worker) and the new worker taking over,
    the old worker shows the frozen counts: what the new one shows starts from them, so a
    scrape in between cannot see a drop (Prometheus' rate() would read it as a reset)."""
    v1 = sample_service("v1")
    with running_router("haproxy", tmp_path / "h") as (router, listener):
        router.apply("web", Routes(production=(pool("v1", [v1]),)))
        router.probe("web", "production", 5)
        router._counters("freeze")
        frozen = router.metrics_text()
        router.probe("web", "production", 5)
        assert router.metrics_text() == frozen
        router._counters("thaw")  # a refused reload: the live counts again
        assert 'version="v1",zone="",code="200"} 10\n' in router.metrics_text()
