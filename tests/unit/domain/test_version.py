"""The one version rule (``domain/version.py``) and the versions the delivery pipeline derives."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from shipwarden.domain.delivery import version_for
from shipwarden.domain.version import InvalidVersion, Version, check_version


@pytest.mark.parametrize(
    "ok", ["1", "v1", "1.4.2", "v2-rc.1", "1.0+build.7", "3f9c2a1b4d5e", "a_b", "x" * 128]
)
def test_valid_versions(ok: str) -> None:
    assert check_version(ok) == ok


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "empty"),
        ("x" * 129, "129 characters long"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("..", "contains '..'"),
        ("1..2", "contains '..'"),
        ("-1", "start with a letter or digit"),
        (".1", "start with a letter or digit"),
        ("v 1", "character ' ' is not allowed"),
        ("v1\n", "character '\\n' is not allowed"),
        ("v1\x00", "character '\\x00' is not allowed"),
        ("vé", "character 'é' is not allowed"),
        ("[b]v1", "character '[' is not allowed"),
        ("{version}", "character '{' is not allowed"),
    ],
)
def test_invalid_versions_say_why(bad: str, message: str) -> None:
    with pytest.raises(InvalidVersion, match=None) as exc:
        check_version(bad)
    assert message in str(exc.value) and isinstance(exc.value, ValueError)


def test_the_pydantic_type_gives_the_same_message() -> None:
    class Body(BaseModel):
        version: Version

    assert Body(version="1.2.3").version == "1.2.3"
    with pytest.raises(ValidationError, match="contains a path separator"):
        Body(version="../x")


def test_the_delivery_version_is_checked_like_a_typed_one() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert version_for("{short}", sha) == "0123456789ab"
    assert version_for("rel-{sha}", sha) == f"rel-{sha}"
    with pytest.raises(ValueError, match="not a git commit sha"):
        version_for("{short}", "../../etc")
    with pytest.raises(InvalidVersion, match="contains '..'"):
        version_for("a..{short}", sha)  # a template the policy loader refuses; checked here regardless
