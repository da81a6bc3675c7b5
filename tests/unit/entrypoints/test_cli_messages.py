"""CLI errors print an exception's message as written (``output.message_of``)."""

from __future__ import annotations

from shipwarden.entrypoints.cli.output import message_of
from shipwarden.ports.incidents import IncidentNotFound


def test_a_not_found_error_is_not_quoted_and_a_quoted_name_keeps_its_quotes() -> None:
    assert message_of(IncidentNotFound("no incident inc-1")) == "no incident inc-1"
    assert message_of(KeyError("'web' is not a service")) == "'web' is not a service"
    assert message_of(ValueError('"v2" is not a version')) == '"v2" is not a version'
    assert message_of(KeyError(3)) == "3"
