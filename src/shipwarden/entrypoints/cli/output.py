"""The command line's consoles and its one way to print an error.

Rich reads ``[...]`` in a printed string as console markup, so a validator message such as
``must match ^[a-z][a-z0-9-]{0,62}$`` printed as a string came out as ``must match ^{0,62}$``,
and an evidence summary ``[tests=12, failures=0]`` vanished.  Almost everything the CLI prints
carries text it did not write — policy and validator messages, service and user names, versions,
reasons recorded by a rollout — so markup is **off** on both consoles, and so are emoji codes
(``policy.yaml:100: …`` came out as ``policy.yaml💯 …``): a ``str`` is printed as written,
always.  Styling is done with :class:`rich.text.Text` (``Text.assemble(("ok", "green"), " ",
path)``), whose plain parts are never parsed.  Highlighting is off too: it only guesses.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.text import Text

from shipwarden.domain.policy import PolicyError

__all__ = ["console", "err", "error", "make_console", "policy_errors"]


def make_console(*, stderr: bool = False) -> Console:
    """A console that never interprets markup in strings (pipes and CI logs get 200 columns)."""
    stream: TextIO = sys.stderr if stderr else sys.stdout
    return Console(
        stderr=stderr,
        width=None if stream.isatty() else 200,
        markup=False,
        emoji=False,  # ``p.yaml:100: …`` is a line number, not the :100: emoji
        highlight=False,
    )


console = make_console()
err = make_console(stderr=True)


def error(message: object, *, label: str = "error") -> None:
    """``error: MESSAGE`` on stderr, the message exactly as given (no markup, no wrapping)."""
    err.print(Text.assemble((f"{label}:", "red"), " ", str(message)), soft_wrap=True)


def message_of(exc: BaseException) -> str:
    """An exception's message as written: a ``KeyError`` (the "not found" errors are) quotes its
    message in ``str()``; its argument is the message itself."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def policy_errors(exc: PolicyError) -> None:
    """One ``error: file:line: field: message`` line per issue."""
    for issue in exc.issues:
        error(issue)
