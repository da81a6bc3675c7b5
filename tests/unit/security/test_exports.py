"""The curated public surface: every name in ``__all__`` exists, and the package re-exports resolve."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["shipwarden.domain.audit", "shipwarden.domain.access", "shipwarden.security",
           "shipwarden.security.passwords", "shipwarden.security.totp", "shipwarden.security.tokens",
           "shipwarden.security.envelope", "shipwarden.security.signing", "shipwarden.security.dossier"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    mod = importlib.import_module(name)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing
    assert len(set(mod.__all__)) == len(mod.__all__)
