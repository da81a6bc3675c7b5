"""Many processes driving one router at once (twenty ``shipwarden deploy`` started together):
each builds its own driver on a new state dir, exposes every service, starts the data plane and
applies its service's table.  Every process must succeed, and every table must be served and
persisted: one admin port, one proxy, no change lost — for each driver."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from examples.sample_service import SampleService

from shipwarden.adapters.net import free_port
from shipwarden.adapters.routers.base import Listener
from shipwarden.adapters.routers.common import pid_alive
from shipwarden.adapters.routers.haproxy import HaproxyRouter
from shipwarden.adapters.routers.nginx import NginxRouter

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("nginx_router")]

PROCESSES = 8

DRIVE = """
import json, sys
from shipwarden.adapters.routers.base import Listener, Pool, Routes
from shipwarden.adapters.routers.haproxy import HaproxyRouter
from shipwarden.adapters.routers.nginx import NginxRouter
driver, state, service, backend, listeners = sys.argv[1:6]
sys.stdin.readline()  # the test releases every process at once
router = (NginxRouter if driver == "nginx" else HaproxyRouter)(state)
router.ensure_listeners([Listener(**x) for x in json.loads(listeners)])
router.start()
router.apply(service, Routes(production=(Pool("v-" + service, (backend,)),)))
print(router.admin_port)
"""


def _make(driver: str, state: Path) -> Any:
    return NginxRouter(state) if driver == "nginx" else HaproxyRouter(state)


@pytest.mark.parametrize("driver", ["nginx", "haproxy"])
def test_processes_starting_and_changing_one_router_at_once_all_succeed(
    driver: str, tmp_path: Path, sample_service: Any
) -> None:
    backend: SampleService = sample_service("v1")
    state = tmp_path / driver
    listeners = [Listener(f"s{i}", free_port(), free_port()) for i in range(PROCESSES)]
    spec = json.dumps([vars(x) for x in listeners])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVE, driver, str(state), x.service, backend.address, spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for x in listeners
    ]
    try:
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=300) for p in procs]
        failed = [(p.returncode, e[-2000:]) for p, (_, e) in zip(procs, results, strict=True) if p.returncode]
        assert not failed, failed
        router = _make(driver, state)
        assert {out.strip() for out, _ in results} == {str(router.admin_port)}  # one admin port for all
        for x in listeners:  # every table is served, and persisted for a restart
            assert router.probe(x.service, "production", 4).versions == {f"v-{x.service}": 4}, x.service
        router.stop()
        router.start()  # from the persisted tables alone
        for x in listeners:
            assert router.probe(x.service, "production", 2).versions == {f"v-{x.service}": 2}, x.service
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        router = _make(driver, state)
        pid = router.pid()
        router.stop()
        assert pid is None or not pid_alive(pid)
