"""The local platform against real processes: start, health, death, graceful and forced stop,
and recovery of a start that a crash interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipwarden.adapters.platforms.base import InstanceState
from shipwarden.adapters.platforms.local import INSTANCE_ENV, LocalPlatform
from shipwarden.domain.policy import load_policy_text

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).parents[2] / "examples" / "sample_service" / "app.py"
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"


def _spec(command: list[str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    policy = {
        "apiVersion": "shipwarden/v1",
        "team": "t",
        "services": [
            {
                "name": "svc",
                "run": {"command": command, "instances": 2, "env": env or {}},
                "health": {"path": "/healthz", "timeout": "1s"},
                "routing": {"port": 1, "previewPort": 2},
                "strategy": {"blueGreen": {}},
            }
        ],
    }
    return load_policy_text(json.dumps(policy)).policy.service("svc")


def _wait(pred, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture
def platform(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = LocalPlatform(tmp_path / "state", base_dir=tmp_path)
    yield p
    for inst in p.instances("svc"):
        if inst.pid:
            try:
                os.kill(inst.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_starts_healthy_instances_on_distinct_ports_then_stops_them(platform: LocalPlatform) -> None:
    spec = _spec(["{python}", str(SAMPLE)], {"SAMPLE_VERSION": "{version}"})
    started = platform.start(spec, "v1", 2)
    assert len({i.address for i in started}) == 2
    _wait(lambda: all(platform.healthy(spec, i) for i in started))
    assert {i.state for i in platform.instances("svc")} == {InstanceState.RUNNING}
    platform.stop(started, grace_s=5)
    assert platform.instances("svc") == []
    for inst in started:
        assert not Path(f"/proc/{inst.pid}").exists() or "Z" in Path(f"/proc/{inst.pid}/stat").read_text()


def test_a_process_that_dies_is_reported_dead_and_can_be_forgotten(platform: LocalPlatform) -> None:
    spec = _spec(["{python}", str(SAMPLE)])
    victim, survivor = platform.start(spec, "v1", 2)
    _wait(lambda: platform.healthy(spec, victim))
    os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
    _wait(lambda: {i.id: i.state for i in platform.instances("svc")}[victim.id] is InstanceState.DEAD)
    assert not platform.healthy(spec, next(i for i in platform.instances("svc") if i.id == victim.id))
    assert [i.id for i in platform.forget_dead("svc")] == [victim.id]
    assert [i.id for i in platform.instances("svc")] == [survivor.id]


def test_stop_escalates_to_sigkill_after_the_grace_period(platform: LocalPlatform, tmp_path: Path) -> None:
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    spec = _spec(["{python}", "stubborn.py"])
    (inst,) = platform.start(spec, "v1", 1)
    _wait(lambda: _ignores_term(inst.pid))  # the handler is installed: SIGTERM alone will not do
    t0 = time.monotonic()
    platform.stop([inst], grace_s=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert platform.instances("svc") == []
    _wait(
        lambda: not Path(f"/proc/{inst.pid}").exists() or " Z " in Path(f"/proc/{inst.pid}/stat").read_text()
    )


def _ignores_term(pid: int | None) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_an_interrupted_start_adopts_the_orphan_or_drops_the_intent(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A crash after the intent was written: one process was spawned but its pid never
    recorded, the other was never spawned.  The next look settles both."""
    registry = tmp_path / "state" / "instances" / "svc.json"
    env = {**os.environ, INSTANCE_ENV: "svc-v1-orphan", "PORT": "0"}
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True
    )
    try:
        registry.write_text(
            json.dumps(
                [
                    {
                        "id": "svc-v1-orphan",
                        "version": "v1",
                        "port": 1,
                        "pid": None,
                        "starttime": None,
                        "log": "",
                    },
                    {
                        "id": "svc-v1-never",
                        "version": "v1",
                        "port": 1,
                        "pid": None,
                        "starttime": None,
                        "log": "",
                    },
                ]
            )
        )
        _wait(lambda: INSTANCE_ENV.encode() in Path(f"/proc/{orphan.pid}/environ").read_bytes())
        (adopted,) = platform.instances("svc")
        assert (adopted.id, adopted.pid, adopted.state) == (
            "svc-v1-orphan",
            orphan.pid,
            InstanceState.RUNNING,
        )
        assert [e["id"] for e in json.loads(registry.read_text())] == ["svc-v1-orphan"]
        platform.stop([adopted], grace_s=5)
        # the platform reaped it (it is this test's child): the process is gone, not a zombie
        assert not Path(f"/proc/{orphan.pid}").exists()
    finally:
        orphan.kill()
