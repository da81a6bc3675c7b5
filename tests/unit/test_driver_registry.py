"""Driver registries: the policy names the router (``routing.driver``) and the platform
(``run.platform``) of each service; ``bootstrap`` builds them, nothing else names a driver."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from shipwarden.adapters.routers.routerset import RouterSet
from shipwarden.bootstrap import PLATFORMS, ROUTERS, make_platform, make_router
from shipwarden.domain.policy import PlatformName, PolicyError, RouterDriver, load_policy_text
from shipwarden.ports.routing import Listener, Routes
from shipwarden.settings import Settings
from tests.fakes.router import FakeRouter

POLICY = """\
apiVersion: shipwarden/v1
team: t
services:
{services}
"""
SERVICE = """\
  - name: {name}
    run: {{command: [python, app.py]{platform}}}
    routing: {{port: {port}, previewPort: {preview}{driver}}}
    strategy: {{blueGreen: {{}}}}
"""


def policy(*services: tuple[str, str | None]):  # type: ignore[no-untyped-def]
    text = "".join(
        SERVICE.format(name=name, port=20000 + 2 * i, preview=20001 + 2 * i,
                       driver=f", driver: {driver}" if driver else "", platform="")
        for i, (name, driver) in enumerate(services)
    )  # fmt: skip
    return load_policy_text(POLICY.format(services=text), "p.yaml")


def test_the_registries_build_what_the_policy_can_name() -> None:
    assert set(ROUTERS) == set(get_args(RouterDriver)) == {"nginx", "haproxy"}
    assert set(PLATFORMS) == set(get_args(PlatformName)) == {"local"}


def test_nginx_is_the_default_and_an_unknown_driver_is_refused_with_the_choices() -> None:
    loaded = policy(("web", None))
    assert loaded.policy.services[0].routing.driver == "nginx"
    assert loaded.policy.services[0].run.platform == "local"
    with pytest.raises(PolicyError) as err:
        policy(("web", "kong"))
    assert "services[0].routing.driver" in str(err.value) and "'haproxy'" in str(err.value)


def test_one_driver_per_policy_is_built_directly(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, router_admin_port=18999)  # type: ignore[call-arg]
    router = make_router(settings, policy(("web", "haproxy"), ("api", "haproxy")))
    assert type(router).__name__ == "HaproxyRouter"
    assert router.admin_port == 18999  # type: ignore[attr-defined]
    assert type(make_router(settings, policy(("web", None)))).__name__ == "NginxRouter"
    assert type(make_platform(settings, policy(("web", None)))).__name__ == "LocalPlatform"


def test_services_on_different_drivers_are_routed_each_by_its_own(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)  # type: ignore[call-arg]
    built = make_router(settings, policy(("web", "nginx"), ("api", "haproxy")))
    assert isinstance(built, RouterSet) and set(built.routers) == {"nginx", "haproxy"}
    fakes = {"nginx": FakeRouter(lambda a: None), "haproxy": FakeRouter(lambda a: None)}
    routers = RouterSet(fakes, {"web": "nginx", "api": "haproxy"})
    routers.ensure_listeners([Listener("web", 1001, 1002), Listener("api", 1003, 1004)])
    routers.start()
    routers.apply("api", Routes())
    assert set(fakes["nginx"].listeners) == {"web"} and set(fakes["haproxy"].listeners) == {"api"}
    assert fakes["haproxy"].current("api") == Routes() and fakes["nginx"].current("api") is None
    assert routers.running()
    routers.stop()
    assert not routers.running()
