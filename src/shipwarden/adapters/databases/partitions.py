"""Network partitions of loopback instances with iptables (``ports.databases.NetworkPartitions``).

A partition drill must leave the primary *running* and cut it off, the way a switch failure
or a split between two data centres does — a killed process is the easy case.  On one host
every instance listens on 127.0.0.1, so the cut is a chain of ``INPUT`` rules on ``lo`` for
the instance's port: every TCP packet to it, or from it, is dropped (established
connections included: no conntrack shortcut comes before the chain), unless the other end
is the ``keep`` address (e.g. 127.0.0.2, any 127/8 address is local) — a client bound to it
stands for an application server on the primary's side of the partition, the one that can
cause a split brain.  Nothing is reset: both sides see silence, as in a real partition, and
notice it only by their time-outs (replicas: ``slave_net_timeout``).

One chain per instance, ``SWP-<port>``, so healing removes exactly what was added; the
isolated instances are also kept in ``partitions.json`` so a drill that crashed half-way is
healed by the next one, or by ``heal`` of the same endpoint.  Needs root (``CAP_NET_ADMIN``)
and the ``iptables`` command (Debian package ``iptables``, nf_tables backend).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from shipwarden.domain.dr.topology import Endpoint
from shipwarden.ports.databases import DatabaseError

__all__ = ["IptablesPartitions"]

IPTABLES = "iptables"
_LOOPBACK = ("127.0.0.1", "localhost")


def _chain(ep: Endpoint) -> str:
    return f"SWP-{ep.port}"


class IptablesPartitions:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.state = self.state_dir / "partitions.json"

    def _ipt(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([IPTABLES, "-w", "5", *args], capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise DatabaseError(f"iptables {' '.join(args)}: {proc.stderr.strip()[-500:]}")
        return proc

    def unavailable(self) -> str | None:
        if shutil.which(IPTABLES) is None:
            return "the iptables command is not installed (Debian package iptables)"
        if os.geteuid() != 0:
            return "partitions need root (CAP_NET_ADMIN) to change iptables rules"
        proc = self._ipt("-S", "INPUT", check=False)
        if proc.returncode != 0:
            return f"iptables does not work here: {proc.stderr.strip()[-300:]}"
        return None

    def _load(self) -> list[str]:
        try:
            return list(json.loads(self.state.read_text()))
        except (OSError, ValueError):
            return []

    def _save(self, eps: list[str]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(set(eps))))
        os.replace(tmp, self.state)

    def isolate(self, endpoint: Endpoint, *, keep: str) -> None:
        if endpoint.host not in _LOOPBACK:
            raise DatabaseError(f"{endpoint}: only loopback instances can be partitioned on this host")
        why = self.unavailable()
        if why is not None:
            raise DatabaseError(f"cannot partition {endpoint}: {why}")
        self._save([*self._load(), str(endpoint)])  # noted first: a crash from here on is healed later
        self.heal(endpoint, forget=False)
        chain, port = _chain(endpoint), str(endpoint.port)
        self._ipt("-N", chain)
        self._ipt("-A", chain, "-p", "tcp", "--dport", port, "!", "-s", keep, "-j", "DROP")
        self._ipt("-A", chain, "-p", "tcp", "--sport", port, "!", "-d", keep, "-j", "DROP")
        self._ipt("-I", "INPUT", "1", "-i", "lo", "-j", chain)

    def heal(self, endpoint: Endpoint, *, forget: bool = True) -> None:
        chain = _chain(endpoint)
        while self._ipt("-D", "INPUT", "-i", "lo", "-j", chain, check=False).returncode == 0:
            pass
        if self._ipt("-S", chain, check=False).returncode == 0:
            self._ipt("-F", chain)
            self._ipt("-X", chain)
        if forget:
            self._save([e for e in self._load() if e != str(endpoint)])

    def isolated(self) -> list[Endpoint]:
        return [Endpoint.parse(e) for e in self._load()]
