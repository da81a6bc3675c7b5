"""The CLI process's context: the global options (``--policy``, ``--state-dir``), the settings they
give, and the one ``bootstrap.Services`` the process builds (every command module imports this
module, never the package's ``__init__``: no import cycle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Ctx:
    policy: Path | None = None
    state_dir: Path | None = None
    services: Any = None  # bootstrap.Services, built once per process by ``guard.services``


ctx = Ctx()


def settings() -> Any:
    """``Settings`` from the environment with the global options applied."""
    from shipwarden.settings import Settings

    overrides: dict[str, Any] = {}
    if ctx.policy is not None:
        overrides["policy"] = ctx.policy
    if ctx.state_dir is not None:
        overrides["state_dir"] = ctx.state_dir
    return Settings(**overrides)
