"""What a configuration backup contains, read from where it lives (E6).

* ``policy/<file>`` — the policy file as deployed;
* ``secrets.json`` — every secret row *still sealed* (blob and KEK id: a backup never holds
  a plaintext secret; restoring needs the KEK, kept apart);
* ``audit/log.jsonl`` and ``audit/checkpoints.json`` — the hash-chained log with its signed
  checkpoints, verifiable offline;
* ``repositories/<name>.bundle`` — ``git bundle create --all`` of each deployed repository.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from shipwarden.adapters.store.models import AuditCheckpointRow, AuditRow, SecretRow
from shipwarden.adapters.store.repository import Store

__all__ = ["config_items"]


def _git_bundle(repo: str) -> bytes | None:
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        out = Path(tmp) / "repo.bundle"
        proc = subprocess.run(["git", "-C", repo, "bundle", "create", str(out), "--all"],
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0 or not out.exists():
            return None
        return out.read_bytes()


def config_items(store: Store, policy_path: Path, repositories: list[str]) -> Iterator[tuple[str, bytes]]:
    yield f"policy/{policy_path.name}", policy_path.read_bytes()
    with store._tx() as s:
        secrets = [{"name": r.name, "blob": r.blob, "kek_id": r.kek_id, "updated_at": r.updated_at}
                   for r in s.scalars(select(SecretRow).order_by(SecretRow.name))]  # fmt: skip
        yield "secrets.json", json.dumps(secrets, indent=1).encode()
        lines = [r.canonical for r in s.scalars(select(AuditRow).order_by(AuditRow.seq))]
        yield "audit/log.jsonl", ("\n".join(lines) + "\n").encode()
        cps = [{"seq": r.seq, "hash": r.hash, "ts": r.ts, "key_id": r.key_id, "signature": r.signature}
               for r in s.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.seq))]  # fmt: skip
        yield "audit/checkpoints.json", json.dumps(cps, indent=1).encode()
    for repo in repositories:
        bundle = _git_bundle(repo)
        if bundle is not None:
            yield f"repositories/{Path(repo.rstrip('/')).name}.bundle", bundle
