"""A clock tests move by hand: ``sleep`` advances it, so nothing ever waits."""

from __future__ import annotations


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    sleep = advance
