"""Shared test set-up.

Fixtures live in ``tests/fixtures/<area>.py`` (nginx, prometheus, processes,
databases, ...) and are loaded here as pytest plugins, so each area owns its
own file and tests import nothing by hand.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)
