"""Access service rules that need no HTTP: binding syntax and the order of authorisation checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shipwarden.domain.access import Binding, Permission, Role, Target
from shipwarden.services.access import InvalidInput, Principal, binding_text, parse_binding


def test_binding_syntax_round_trips() -> None:
    assert parse_binding("sre") == Binding(Role.SRE)
    b = parse_binding("developer:web,api,team=payments")
    assert b == Binding(Role.DEVELOPER, frozenset({"web", "api"}), frozenset({"payments"}))
    assert parse_binding(binding_text(b)) == b
    with pytest.raises(InvalidInput, match="unknown role 'root'"):
        parse_binding("root")


@pytest.fixture
def access(tmp_path: Path):  # type: ignore[no-untyped-def]
    from shipwarden.bootstrap import build_service
    from shipwarden.settings import Settings

    now = datetime(2031, 1, 1, tzinfo=UTC)
    svc = build_service(Settings(state_dir=tmp_path, role_cidrs={"admin": ["10.0.0.0/8"]}), clock=lambda: now)
    yield svc.access, now
    svc.store.engine.dispose()


def test_authorize_order(access) -> None:  # type: ignore[no-untyped-def]
    acc, now = access
    anon = Principal.anonymous("1.2.3.4")
    assert acc.authorize(anon, Permission.DEPLOYMENT_READ).status == 401
    dev = Principal(
        "d", "session", "1.2.3.4", bindings=(parse_binding("developer:web"),), mfa_verified_at=now
    )
    assert acc.authorize(dev, Permission.DEPLOYMENT_CREATE, Target("web")).allowed
    assert not acc.authorize(dev, Permission.DEPLOYMENT_CREATE, Target("api")).allowed
    stale = Principal(
        "d", "session", "1.2.3.4", bindings=dev.bindings, mfa_verified_at=now - timedelta(hours=1)
    )
    d = acc.authorize(stale, Permission.DEPLOYMENT_CREATE, Target("web"))
    assert d.status == 403 and d.reason.startswith("MFA required")
    assert acc.authorize(stale, Permission.DEPLOYMENT_READ, Target("web")).allowed  # reads need no MFA
    admin = Principal("a", "session", "1.2.3.4", bindings=(Binding(Role.ADMIN),), mfa_verified_at=now)
    assert "from this address" in acc.authorize(admin, Permission.USER_MANAGE).reason
    inside = Principal("a", "session", "10.1.1.1", bindings=(Binding(Role.ADMIN),), mfa_verified_at=now)
    assert acc.authorize(inside, Permission.USER_MANAGE).allowed
    tok = Principal(
        "a",
        "token",
        "10.1.1.1",
        bindings=(Binding(Role.ADMIN),),
        token_id="t",
        token_scopes=frozenset({Permission.DEPLOYMENT_READ}),
        token_services=frozenset({"web"}),
    )
    assert acc.authorize(tok, Permission.DEPLOYMENT_READ, Target("web")).allowed
    assert "service 'api'" in acc.authorize(tok, Permission.DEPLOYMENT_READ, Target("api")).reason
    assert "not scoped for user.manage" in acc.authorize(tok, Permission.USER_MANAGE).reason


def test_team_scoped_roles_match_the_services_the_policy_gives_the_team(tmp_path: Path) -> None:
    """``role:team=x`` covers exactly the services of the policy whose ``team`` is x."""
    from shipwarden.bootstrap import build_service, load_policy
    from shipwarden.settings import Settings

    example = Path(__file__).parents[3] / "examples" / "policy.yaml"
    loaded = load_policy(example)
    team, service = loaded.policy.team, loaded.policy.services[0].name
    now = datetime(2031, 1, 1, tzinfo=UTC)
    svc = build_service(Settings(state_dir=tmp_path, policy=example), loaded, clock=lambda: now)
    try:
        acc = svc.access

        deploy = Permission.DEPLOYMENT_CREATE

        def who(binding: str) -> Principal:
            b = (parse_binding(binding),)
            return Principal("d", "session", "1.2.3.4", bindings=b, mfa_verified_at=now)

        assert acc.authorize(who(f"developer:team={team}"), deploy, Target(service)).allowed
        other = acc.authorize(who("developer:team=someone-else"), deploy, Target(service))
        assert not other.allowed and other.status == 403
        # a service no policy names belongs to no team: a team binding does not reach it
        stray = acc.authorize(who(f"developer:team={team}"), deploy, Target("not-ours"))
        assert not stray.allowed
    finally:
        svc.store.engine.dispose()
