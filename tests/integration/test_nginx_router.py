"""What only the nginx driver does, against real nginx (the port's promises, which every
driver keeps, are in test_routers.py)."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from examples.sample_service import SampleService

from shipwarden.adapters.routers.base import Listener, Pool, Routes
from shipwarden.adapters.routers.nginx import NginxRouter

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("nginx_router")]

Factory = Callable[..., SampleService]


def pool(version: str, services: list[SampleService], weight: int = 100) -> Pool:
    return Pool(version, tuple(s.address for s in services), weight)


def test_the_data_plane_refuses_a_bad_table_that_bypasses_python(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    v1 = sample_service("v1")
    good = Routes(production=(pool("v1", [v1]),))
    nginx_router.apply("web", good)
    persisted = nginx_router.routes_path.read_bytes()
    resp = httpx.put(f"{nginx_router.admin_url}/routes/web", json={"production": [
        {"version": "v9", "weight": 40, "addresses": [v1.address]}]})
    assert resp.status_code == 400 and "sum to 100" in resp.text
    assert nginx_router.current("web") == good
    assert nginx_router.routes_path.read_bytes() == persisted


def test_the_access_log_names_the_serving_version(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    v2 = sample_service("v2")
    nginx_router.apply("web", Routes(production=(pool("v2", [v2]),)))
    nginx_router.probe("web", "production", 3)
    nginx_router.stop()  # flushes the buffered log
    log = (nginx_router.state_dir / "logs" / "access.log").read_text()
    assert "service=web route=production version=v2 " in log


def test_a_version_whose_every_instance_is_marked_down_is_retried_on_another(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    """nginx tries the route's other pools once the drawn version's instances failed (HAProxy
    does not: see haproxy.py).  A peer that refused is skipped for 2 s; when every peer of the
    drawn pool was skipped, the balancer used to find none and answer 500."""
    stable, canary = sample_service("v1"), sample_service("v2")
    nginx_router.apply("web", Routes(production=(pool("v1", [stable], 50), pool("v2", [canary], 50))))
    canary.stop(signal.SIGKILL)
    result = nginx_router.probe("web", "production", 40)
    assert result.failures == 0 and result.versions == Counter(v1=40), result
