"""Processes starting together on a new state directory (twenty ``shipwarden deploy`` at once)
each find no signing key and no KEK and make one: exactly one of each must win, complete, and
every starter must use it — none may fail, or read half a key.

Key generation is slowed down here (as on a busy machine), so that every starter has seen "no key
yet" before the first has written one: the race is then certain, not a matter of luck."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shipwarden import bootstrap
from shipwarden.security.signing import fingerprint
from shipwarden.settings import Settings

pytestmark = pytest.mark.integration

STARTERS = 8


def _slow(make: Any) -> Any:
    def slow() -> Any:
        time.sleep(0.3)
        return make()

    return slow


def test_starters_at_once_share_one_signing_key_and_one_kek(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap, "generate_key", _slow(bootstrap.generate_key))
    monkeypatch.setattr(bootstrap, "generate_kek", _slow(bootstrap.generate_kek))
    settings = Settings(state_dir=tmp_path / "state")
    gate = threading.Barrier(STARTERS)
    seen: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def start() -> None:
        gate.wait()
        try:
            key = bootstrap.load_signing_key(settings)
            ring = bootstrap.load_keyring(settings)
            seen.append((fingerprint(key.public_key()), ring.primary))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(STARTERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(seen) == STARTERS and len(set(seen)) == 1, seen
    keys = sorted(p.name for p in (tmp_path / "state" / "keys").iterdir())
    assert keys == ["kek-1.key", "signing.key", "signing.pub"]  # no temporary file left behind
