"""Failure injection for the fakes: make an operation raise, a number of times or until healed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class InjectedFault(RuntimeError):
    """Raised by a fake operation told to fail (when no error of the driver's own type is given)."""


class Faults:
    """``fail("start")`` makes every ``start`` raise until ``heal``; ``fail("start", times=2)`` the
    next two.  ``error`` builds the exception (default: the driver's own error type)."""

    def __init__(self, default: Callable[[str], Exception]) -> None:
        self._default = default
        self._left: dict[str, int | None] = {}  # None: until healed
        self._errors: dict[str, Callable[[str], Exception]] = {}
        self.raised: Counter[str] = Counter()

    def fail(
        self, op: str, times: int | None = None, error: Callable[[str], Exception] | None = None
    ) -> None:
        self._left[op] = times
        self._errors[op] = error or self._default

    def heal(self, op: str | None = None) -> None:
        for key in [op] if op is not None else list(self._left):
            self._left.pop(key, None)

    def failing(self, op: str) -> bool:
        return op in self._left

    @property
    def permanent(self) -> set[str]:
        return {op for op, left in self._left.items() if left is None}

    def check(self, op: str) -> None:
        if op not in self._left:
            return
        left = self._left[op]
        if left is not None:
            if left <= 1:
                del self._left[op]
            else:
                self._left[op] = left - 1
        self.raised[op] += 1
        raise self._errors.get(op, self._default)(f"injected failure of {op}")
