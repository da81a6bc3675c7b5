"""MariaDB global transaction ids (GTIDs), parsed and compared without a server.

A MariaDB GTID is ``domain-server-seq``; a *position* (``@@gtid_binlog_pos``,
``@@gtid_slave_pos``, ``Gtid_IO_Pos``) lists the last GTID of each replication
domain, comma-separated: ``0-1-1042,1-7-12``.  Within a domain sequence numbers
only grow (``gtid_strict_mode``), whichever server wrote them, so "which replica
has more of the primary's transactions" is a per-domain comparison of ``seq``;
the server id says who wrote the last one, not how far a stream got.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["Gtid", "GtidPosition", "GtidError"]

_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


class GtidError(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Gtid:
    domain: int
    server_id: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Gtid:
        m = _GTID.match(text.strip())
        if not m:
            raise GtidError(f"not a MariaDB GTID (domain-server-seq): {text!r}")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))


@dataclass(frozen=True)
class GtidPosition:
    """The last GTID of each domain.  Empty means "no transaction yet"."""

    by_domain: Mapping[int, Gtid]

    @classmethod
    def parse(cls, text: str | None) -> GtidPosition:
        out: dict[int, Gtid] = {}
        for part in (text or "").replace("\n", "").split(","):
            if not part.strip():
                continue
            g = Gtid.parse(part)
            if g.domain in out:
                raise GtidError(f"domain {g.domain} appears twice in {text!r}")
            out[g.domain] = g
        return cls(out)

    def __str__(self) -> str:
        return ",".join(str(self.by_domain[d]) for d in sorted(self.by_domain))

    def __iter__(self) -> Iterator[Gtid]:
        return iter(self.by_domain[d] for d in sorted(self.by_domain))

    def __bool__(self) -> bool:
        return bool(self.by_domain)

    def seq(self, domain: int) -> int:
        g = self.by_domain.get(domain)
        return g.seq if g else 0

    def contains(self, other: GtidPosition) -> bool:
        """Every transaction up to ``other`` is included here (per domain, seq ≥)."""
        return all(self.seq(d) >= g.seq for d, g in other.by_domain.items())

    def behind(self, other: GtidPosition) -> int:
        """How many transactions ``other`` has that this position lacks (summed over domains)."""
        return sum(max(0, g.seq - self.seq(d)) for d, g in other.by_domain.items())

    def rank(self) -> tuple[int, ...]:
        """A sort key: more transactions (domain by domain) ranks higher."""
        return tuple(self.seq(d) for d in sorted(self.by_domain))

    def total(self) -> int:
        return sum(g.seq for g in self.by_domain.values())

    def merge(self, other: GtidPosition) -> GtidPosition:
        out = dict(self.by_domain)
        for d, g in other.by_domain.items():
            if d not in out or out[d].seq < g.seq:
                out[d] = g
        return GtidPosition(out)
