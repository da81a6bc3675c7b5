"""Access decisions: RBAC matrix and scopes, fresh MFA, client IP and allowlist, sessions, lockout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipwarden.domain.access import (
    GLOBAL_ONLY,
    MATRIX,
    PRODUCTION_AFFECTING,
    Binding,
    ForwardedForError,
    LockoutPolicy,
    MfaPolicy,
    Permission,
    Role,
    SessionPolicy,
    SessionState,
    SessionStatus,
    Target,
    address_allowed,
    admit_session,
    check_login,
    check_session,
    client_ip,
    effective_allowlist,
    ip_allowed,
    is_allowed,
    lockout_decision,
    mfa_satisfied,
    new_session_id,
    outside_of,
    parse_networks,
    rotate_session,
    touch_session,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
P = Permission
CHECKOUT = Target(service="checkout", team="payments")


class TestRbac:
    @pytest.mark.parametrize(("role", "permission", "allowed"), [
        (Role.VIEWER, P.DEPLOYMENT_READ, True),
        (Role.VIEWER, P.DEPLOYMENT_CREATE, False),
        (Role.DEVELOPER, P.DEPLOYMENT_CREATE, True),
        (Role.DEVELOPER, P.EVIDENCE_WRITE, True),
        (Role.DEVELOPER, P.DEPLOYMENT_PROMOTE, False),
        (Role.DEVELOPER, P.CHANGE_APPROVE, False),
        (Role.RELEASE_MANAGER, P.CHANGE_APPROVE, True),
        (Role.RELEASE_MANAGER, P.DEPLOYMENT_ROLLBACK, True),
        (Role.RELEASE_MANAGER, P.USER_MANAGE, False),
        (Role.SRE, P.DEPLOYMENT_ROLLBACK, True),
        (Role.SRE, P.DEPLOYMENT_ABORT, True),
        (Role.SRE, P.CHANGE_APPROVE, False),
        (Role.AUDITOR, P.AUDIT_EXPORT, True),
        (Role.AUDITOR, P.AUDIT_READ, True),
        (Role.AUDITOR, P.DEPLOYMENT_ROLLBACK, False),
        (Role.AUDITOR, P.EVIDENCE_WRITE, False),
        (Role.ADMIN, P.USER_MANAGE, True),
        (Role.ADMIN, P.K8S_AUDIT_WRITE, True),
    ])
    def test_matrix(self, role: Role, permission: Permission, allowed: bool) -> None:
        assert is_allowed(role, permission, CHECKOUT) is allowed

    def test_matrix_covers_every_role_and_only_admin_has_everything(self) -> None:
        assert set(MATRIX) == set(Role)
        assert [r for r in Role if MATRIX[r] == frozenset(Permission)] == [Role.ADMIN]
        assert all(P.K8S_AUDIT_WRITE not in MATRIX[r] for r in Role if r is not Role.ADMIN)

    def test_auditors_change_nothing(self) -> None:
        assert not MATRIX[Role.AUDITOR] & PRODUCTION_AFFECTING

    def test_scoped_binding_only_reaches_its_services_or_teams(self) -> None:
        b = Binding(Role.RELEASE_MANAGER, services=frozenset({"checkout"}))
        assert is_allowed(b, P.DEPLOYMENT_PROMOTE, CHECKOUT)
        assert not is_allowed(b, P.DEPLOYMENT_PROMOTE, Target(service="search", team="payments"))
        assert not is_allowed(b, P.DEPLOYMENT_PROMOTE, None)
        team = Binding(Role.DEVELOPER, teams=frozenset({"payments"}))
        assert is_allowed(team, P.DEPLOYMENT_CREATE, Target(service="ledger", team="payments"))
        assert not is_allowed(team, P.DEPLOYMENT_CREATE, Target(service="ledger", team="search"))

    def test_scoped_bindings_never_grant_global_permissions(self) -> None:
        scoped = Binding(Role.ADMIN, services=frozenset({"checkout"}))
        for perm in GLOBAL_ONLY:
            assert not is_allowed(scoped, perm, CHECKOUT)
        assert is_allowed(Binding(Role.ADMIN), P.USER_MANAGE)

    def test_several_bindings_any_may_grant(self) -> None:
        bindings = [Binding(Role.VIEWER), Binding(Role.SRE, services=frozenset({"checkout"}))]
        assert is_allowed(bindings, P.DEPLOYMENT_ROLLBACK, CHECKOUT)
        assert not is_allowed(bindings, P.DEPLOYMENT_ROLLBACK, Target(service="search"))
        assert is_allowed(bindings, P.DEPLOYMENT_READ, Target(service="search"))


class TestFreshMfa:
    def test_production_affecting_needs_recent_totp(self) -> None:
        assert not mfa_satisfied(P.DEPLOYMENT_PROMOTE, None, NOW)
        assert mfa_satisfied(P.DEPLOYMENT_PROMOTE, NOW - timedelta(minutes=14), NOW)
        assert not mfa_satisfied(P.DEPLOYMENT_PROMOTE, NOW - timedelta(minutes=16), NOW)
        assert not mfa_satisfied(P.DEPLOYMENT_PROMOTE, NOW + timedelta(minutes=1), NOW)  # future stamp

    def test_reads_do_not_and_window_is_configurable(self) -> None:
        assert mfa_satisfied(P.DEPLOYMENT_READ, None, NOW)
        assert mfa_satisfied(P.AUDIT_EXPORT, None, NOW)
        short = MfaPolicy(window=timedelta(minutes=2))
        assert not mfa_satisfied(P.DEPLOYMENT_ROLLBACK, NOW - timedelta(minutes=3), NOW, short)
        strict = MfaPolicy(permissions=frozenset(Permission))
        assert not mfa_satisfied(P.AUDIT_EXPORT, None, NOW, strict)


class TestClientIp:
    PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])

    def test_xff_ignored_unless_peer_is_trusted(self) -> None:
        assert str(client_ip("203.0.113.7", "1.1.1.1", self.PROXIES)) == "203.0.113.7"

    def test_right_most_untrusted_address_is_the_client(self) -> None:
        # client forged "6.6.6.6"; real client 198.51.100.4 went through two of our proxies
        xff = "6.6.6.6, 198.51.100.4, 10.1.2.3"
        assert str(client_ip("10.0.0.5", xff, self.PROXIES)) == "198.51.100.4"

    def test_all_hops_trusted_gives_left_most_and_no_header_gives_peer(self) -> None:
        assert str(client_ip("10.0.0.5", "10.9.9.9, 10.1.1.1", self.PROXIES)) == "10.9.9.9"
        assert str(client_ip("10.0.0.5", None, self.PROXIES)) == "10.0.0.5"
        assert str(client_ip("10.0.0.5", " ", self.PROXIES)) == "10.0.0.5"

    def test_ports_brackets_ipv6_and_mapped_addresses(self) -> None:
        assert str(client_ip("[fd00::1]:443", "2001:db8::5", self.PROXIES)) == "2001:db8::5"
        assert str(client_ip("10.0.0.5", "198.51.100.4:5555", self.PROXIES)) == "198.51.100.4"
        assert str(client_ip("::ffff:10.0.0.5", "[2001:db8::9]:80", self.PROXIES)) == "2001:db8::9"

    def test_garbage_in_the_trusted_part_is_refused_but_client_garbage_is_skipped(self) -> None:
        with pytest.raises(ForwardedForError):
            client_ip("10.0.0.5", "198.51.100.4, not-an-ip", self.PROXIES)
        assert str(client_ip("10.0.0.5", "junk, 198.51.100.4", self.PROXIES)) == "198.51.100.4"

    def test_allowlist(self) -> None:
        allow = parse_networks(["192.0.2.0/24", "2001:db8::/32", "203.0.113.9"])
        assert ip_allowed("192.0.2.200", allow)
        assert ip_allowed("203.0.113.9", allow) and not ip_allowed("203.0.113.10", allow)
        assert ip_allowed("2001:db8::1", allow) and not ip_allowed("2001:db9::1", allow)
        assert ip_allowed("::ffff:192.0.2.1", allow)
        assert not ip_allowed("192.0.2.1", ())

    def test_effective_allowlist_is_the_intersection_so_each_level_only_narrows(self) -> None:
        user = parse_networks(["10.0.0.0/8"])
        token = parse_networks(["127.0.0.0/8"])
        both = effective_allowlist(user, token)
        assert both == ()  # disjoint lists: from nowhere, not from either
        assert not address_allowed("127.0.0.1", both) and not address_allowed("10.1.1.1", both)
        # nested blocks: the smaller one, whichever level it comes from
        assert effective_allowlist(user, parse_networks(["10.1.0.0/16", "192.0.2.0/24"])) == parse_networks(
            ["10.1.0.0/16"]
        )
        assert effective_allowlist(parse_networks(["10.1.2.0/24"]), user) == parse_networks(["10.1.2.0/24"])
        # three levels (user ∩ role ∩ token); a level without a list does not restrict
        role = parse_networks(["10.1.0.0/16", "10.2.0.0/16"])
        tok = parse_networks(["10.2.3.0/24", "10.9.0.0/16"])
        assert effective_allowlist(user, role, tok) == parse_networks(["10.2.3.0/24"])
        assert effective_allowlist(None, role, None) == role
        assert effective_allowlist(None, None) is None and address_allowed("198.51.100.1", None)

    def test_effective_allowlist_ipv6_and_mapped_addresses(self) -> None:
        v6 = parse_networks(["2001:db8::/32"])
        assert effective_allowlist(v6, parse_networks(["10.0.0.0/8"])) == ()  # IPv4 and IPv6 never meet
        mixed = parse_networks(["10.0.0.0/8", "2001:db8::/32"])
        assert effective_allowlist(mixed, parse_networks(["2001:db8:1::/48"])) == parse_networks(
            ["2001:db8:1::/48"]
        )
        # ::ffff:10.0.0.0/104 is 10.0.0.0/8 (addresses are judged unmapped too)
        mapped = parse_networks(["::ffff:10.0.0.0/104"])
        assert effective_allowlist(mapped, parse_networks(["10.5.0.0/16"])) == parse_networks(["10.5.0.0/16"])
        assert address_allowed("::ffff:10.5.0.1", effective_allowlist(mapped))
        assert address_allowed("10.200.0.1", effective_allowlist(mapped))

    def test_outside_of_names_what_a_narrower_list_would_widen(self) -> None:
        owner = parse_networks(["10.0.0.0/8"])
        assert outside_of(parse_networks(["10.1.0.0/16"]), owner) == ()
        assert outside_of(parse_networks(["10.1.0.0/16", "127.0.0.0/8"]), owner) == parse_networks(
            ["127.0.0.0/8"]
        )
        assert outside_of(parse_networks(["0.0.0.0/0"]), owner) == parse_networks(["0.0.0.0/0"])
        assert outside_of(parse_networks(["127.0.0.0/8"]), None) == ()

    def test_bad_cidrs_are_all_named(self) -> None:
        with pytest.raises(ValueError, match="'300.0.0.0/8'.*'x'"):
            parse_networks(["10.0.0.0/8", "300.0.0.0/8", "x"])


def session(created: timedelta, seen: timedelta, sid: str = "s", **kw: object) -> SessionState:
    return SessionState(sid, "alice", NOW - created, NOW - seen, **kw)  # type: ignore[arg-type]


class TestSessions:
    def test_defaults_are_owasp(self) -> None:
        p = SessionPolicy()
        assert (p.idle, p.absolute) == (timedelta(minutes=15), timedelta(hours=8))

    @pytest.mark.parametrize(("created", "seen", "revoked", "status"), [
        (timedelta(hours=1), timedelta(minutes=14), False, SessionStatus.OK),
        (timedelta(hours=1), timedelta(minutes=15), False, SessionStatus.EXPIRED_IDLE),
        (timedelta(hours=8), timedelta(seconds=1), False, SessionStatus.EXPIRED_ABSOLUTE),
        (timedelta(hours=9), timedelta(hours=1), False, SessionStatus.EXPIRED_ABSOLUTE),
        (timedelta(minutes=1), timedelta(0), True, SessionStatus.REVOKED),
    ])
    def test_check_session(self, created: timedelta, seen: timedelta, revoked: bool,
                           status: SessionStatus) -> None:
        assert check_session(session(created, seen, revoked=revoked), NOW) is status

    def test_activity_extends_idle_but_never_absolute(self) -> None:
        s = session(timedelta(hours=7, minutes=50), timedelta(minutes=14))
        s = touch_session(s, NOW)
        assert check_session(s, NOW + timedelta(minutes=9)) is SessionStatus.OK
        assert check_session(s, NOW + timedelta(minutes=10)) is SessionStatus.EXPIRED_ABSOLUTE
        assert touch_session(s, NOW - timedelta(hours=1)).last_seen_at == NOW

    def test_rotation_changes_id_keeps_absolute_deadline(self) -> None:
        s = session(timedelta(hours=2), timedelta(minutes=1), sid="old")
        r = rotate_session(s, NOW, mfa_verified_at=NOW)
        assert r.session_id != "old" and len(r.session_id) >= 43
        assert r.created_at == s.created_at and r.mfa_verified_at == NOW and r.last_seen_at == NOW
        assert new_session_id() != new_session_id()

    def test_concurrent_limit_evicts_least_recently_used(self) -> None:
        live = [session(timedelta(hours=1), timedelta(minutes=m), sid=f"s{m}") for m in (1, 5, 3)]
        dead = session(timedelta(hours=1), timedelta(hours=1), sid="dead")
        a = admit_session([*live, dead], NOW, SessionPolicy(max_concurrent=3))
        assert a.allowed and a.evict == ("s5",)
        assert admit_session(live[:2], NOW, SessionPolicy(max_concurrent=3)).evict == ()
        a = admit_session(live, NOW, SessionPolicy(max_concurrent=2))
        assert a.allowed and set(a.evict) == {"s5", "s3"}

    def test_concurrent_limit_can_refuse(self) -> None:
        live = [session(timedelta(hours=1), timedelta(minutes=m), sid=f"s{m}") for m in (1, 2)]
        a = admit_session(live, NOW, SessionPolicy(max_concurrent=2, on_limit="refuse"))
        assert not a.allowed and a.evict == () and "limit 2" in a.reason

    def test_policy_validation(self) -> None:
        with pytest.raises(ValueError):
            SessionPolicy(on_limit="ignore")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            SessionPolicy(idle=timedelta(hours=9))


class TestLockout:
    POLICY = LockoutPolicy(threshold=3, base_delay=timedelta(seconds=10), max_delay=timedelta(minutes=5),
                           window=timedelta(hours=1))

    def fails(self, *seconds_ago: int) -> list[datetime]:
        return [NOW - timedelta(seconds=s) for s in seconds_ago]

    def test_below_threshold_allowed(self) -> None:
        d = lockout_decision(self.fails(5, 3), NOW, self.POLICY)
        assert d.allowed and d.failures == 2

    def test_back_off_doubles_from_the_last_failure(self) -> None:
        d = lockout_decision(self.fails(9, 8, 4), NOW, self.POLICY)  # 3 failures: 10 s after the last
        assert not d.allowed and d.retry_after == timedelta(seconds=6)
        d = lockout_decision(self.fails(9, 8, 7, 4), NOW, self.POLICY)  # 4 failures: 20 s
        assert d.retry_after == timedelta(seconds=16)
        d = lockout_decision(self.fails(30, 29, 28, 27, 25), NOW, self.POLICY)  # 5: 40 s
        assert d.retry_after == timedelta(seconds=15)
        assert lockout_decision(self.fails(50, 49, 48, 47, 45), NOW, self.POLICY).allowed

    def test_delay_is_capped_and_old_failures_expire(self) -> None:
        many = self.fails(*range(1, 60))
        d = lockout_decision(many, NOW, self.POLICY)
        assert d.retry_after == timedelta(minutes=5) - timedelta(seconds=1)
        old = [NOW - timedelta(hours=2, seconds=s) for s in range(50)]
        assert lockout_decision(old, NOW, self.POLICY).allowed

    def test_account_and_address_both_count(self) -> None:
        acct = LockoutPolicy(threshold=3, base_delay=timedelta(seconds=10))
        addr = LockoutPolicy(threshold=5, base_delay=timedelta(seconds=60))
        spray = self.fails(10, 9, 8, 7, 6)  # one address, many accounts
        d = check_login([], spray, NOW, acct, addr)
        assert not d.allowed and d.retry_after == timedelta(seconds=54)
        d = check_login(self.fails(3, 2, 1), [], NOW, acct, addr)
        assert not d.allowed and d.retry_after == timedelta(seconds=9)
        assert check_login(self.fails(1), self.fails(1), NOW, acct, addr).allowed
