"""Ports of the audit service: the witness kept outside the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shipwarden.domain.audit import Checkpoint

__all__ = ["HeadWitness"]


class HeadWitness(Protocol):
    """Append-only record of signed checkpoints kept where the database's writers cannot reach."""

    def append(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Record ``checkpoints`` durably (called after the transaction that stored them commits)."""
        ...

    def read(self) -> list[Checkpoint]:
        """Every checkpoint recorded so far, in the order written."""
        ...
