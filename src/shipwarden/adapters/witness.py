"""The audit head witness: an append-only file of signed checkpoints, outside the database.

Whoever can write the database can cut the audit chain back to an older checkpoint and delete
the checkpoints after it: what is left is a consistent chain (see ``domain.audit.checkpoints``).
What they cannot do is reach this file — by default ``state_dir/audit.head``; put it on storage
the database's writers cannot change (another volume, another host's mount, a WORM bucket
synchronised from it).  ``audit verify`` then requires the chain to reach, and agree with, every
checkpoint the file holds.

One line per checkpoint, its row as canonical JSON, appended after the transaction that stored
it commits (so the file never names a checkpoint the database never had) and fsynced before the
call returns.  Appends use ``O_APPEND`` and one ``write`` per call, so lines from several
processes interleave whole; a line cut short by a crash (no newline) is ignored when reading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from shipwarden.domain.audit import Checkpoint, canonical_json
from shipwarden.ports.audit import WitnessError

__all__ = ["HeadFile", "WitnessError"]


class HeadFile:
    """The witness file at ``path`` (created, mode 0600, on the first append)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, checkpoints: Sequence[Checkpoint]) -> None:
        if not checkpoints:
            return
        data = "".join(canonical_json(cp.to_row()) + "\n" for cp in checkpoints).encode("utf-8")
        new = not self.path.exists()
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:  # the file's directory entry must survive a crash too
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def read(self) -> list[Checkpoint]:
        try:
            text = self.path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise WitnessError(f"{self.path}: unreadable: {exc}") from None
        lines = text.split("\n")
        # the last element is "" after a final newline, or a line a crash cut short: not a record
        out: list[Checkpoint] = []
        for n, line in enumerate(lines[:-1], 1):
            if not line:
                continue
            try:
                out.append(Checkpoint.from_row(json.loads(line)))
            except (ValueError, TypeError, KeyError) as exc:
                raise WitnessError(f"{self.path}:{n}: not a checkpoint: {exc}") from None
        return out
