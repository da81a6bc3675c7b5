"""Primitives shared by every section of the policy file (no I/O).

Kept apart from ``policy.py`` so that the sections (analysis, gates, …) and
the top-level ``Policy`` that embeds them can all import them without a cycle.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_DURATION = 3660 * 24 * 3600.0
"""Ten years: longer than any wait, deadline or retention a policy can mean (backups kept for
compliance run to years); far below where timers overflow (``timedelta``)."""


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_duration(value: Any) -> float:
    """``30`` / ``"30s"`` / ``"1.5m"`` / ``"250ms"`` → seconds: finite, ≥ 0, at most ten years."""
    seconds: float | None = None
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '250ms'")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds, not {value}")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds is None:
        raise ValueError(
            f"invalid duration {_shown(value)}: use a number of seconds or '30s', '5m', '250ms', '1h', '14d'"
        )
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {_shown(value)} is longer than ten years")
    return seconds


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be longer than 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, ``0`` allowed (no delay, no warm-up)."""
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
"""Seconds where ``0`` makes no sense (an interval, a time-out, a deadline, a maximum age)."""


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""POSIX environment variable names."""


def check_env_name(name: str) -> str:
    if not ENV_NAME.fullmatch(name) or len(name) > 255:
        raise ValueError(f"{_shown(name)} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return name


EnvName = Annotated[str, AfterValidator(check_env_name)]


def _url_path(v: str) -> str:
    """A request path a probe sends as written: ``/``, then printable ASCII, no space, no fragment."""
    if not v.startswith("/"):
        raise ValueError("must start with '/'")
    bad = next((c for c in v if not ("!" <= c <= "~") or c == "#"), None)
    if bad is not None:
        raise ValueError(
            f"{bad!r} cannot be sent in a request path: use printable ASCII without spaces or '#' "
            "(percent-encode anything else)"
        )
    return v


UrlPath = Annotated[str, AfterValidator(_url_path)]


def check_template(template: str, allowed: Iterable[str]) -> str:
    """``template`` is a ``str.format`` template using only bare ``{name}`` fields from ``allowed``.

    No attribute or index access (``{version.__class__}``, ``{port[0]}``), no conversion
    (``{version!r}``), no format spec (``{port:>8}``), no positional ``{}``: the platform fills in
    plain strings, and anything more either fails at deploy time or reaches into Python objects.
    ``{{`` and ``}}`` are literal braces.  NUL characters cannot be passed to a process."""
    names = sorted(allowed)
    shown = ", ".join("{" + n + "}" for n in names)
    if "\x00" in template:
        raise ValueError("contains a NUL character")
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc}); write a literal brace as '{{{{' or '}}}}'") from None
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in names:
            field = _shown("{" + name + "}")
            if name == "" or name.isdigit():
                why = f"positional placeholder {field}"
            elif re.fullmatch(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                why = f"unknown placeholder {field}"
            else:
                why = f"placeholder {field} uses attribute or index access"
            raise ValueError(f"{why}; allowed: {shown} only (a literal brace is written '{{{{' or '}}}}')")
        if conversion is not None or spec:
            raise ValueError(f"placeholder {{{name}}} takes no conversion or format spec; allowed: {shown}")
    return template


class _Strict(BaseModel):
    # allow_inf_nan=False: ``.inf`` and ``.nan`` are valid YAML floats but never a valid setting
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class PolicyIssue:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '<root>'}: {self.message}"


class PolicyError(ValueError):
    """An invalid policy file; ``issues`` lists every problem found."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))
