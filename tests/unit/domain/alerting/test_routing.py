"""Routing tree, inhibition, silences and fingerprints (Alertmanager semantics)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipwarden.domain.alerting import (
    Alert,
    AlertingPolicy,
    Inhibitor,
    InhibitRule,
    Matcher,
    Rollback,
    Silence,
    fingerprint,
    group_key,
    inhibited,
    match_routes,
    matches_all,
    muted,
)
from shipwarden.domain.alerting.model import _FNV_OFFSET


def _policy(**route: object) -> AlertingPolicy:
    return AlertingPolicy.model_validate(
        {
            "receivers": [
                {"name": "ops", "apprise": ["OPS"]},
                {"name": "pager", "pagerduty": ["PD"]},
                {"name": "db", "escalation": "dba"},
                {"name": "web", "apprise": ["WEB"]},
            ],
            "route": route,
        }
    )


TREE = _policy(
    receiver="ops",
    group_by=["alertname"],
    group_wait="1s",
    routes=[
        {"match": {"severity": "critical"}, "receiver": "pager", "continue": True, "groupBy": ["service"]},
        {
            "matchRe": {"service": "db|mysql.*"},
            "receiver": "db",
            "routes": [{"match": {"env": "test"}, "receiver": "ops", "groupWait": "30s"}],
        },
        {"match": {"team": "web"}, "receiver": "web"},
    ],
)


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
LABELS = st.dictionaries(NAMES, st.text(max_size=8), max_size=6)


class TestFingerprint:
    def test_empty_label_set_is_the_fnv_offset(self) -> None:
        # prometheus/common: emptyLabelSignature = hashNew() = the FNV-1a 64 offset basis
        assert fingerprint({}) == f"{_FNV_OFFSET:016x}" == "cbf29ce484222325"

    @given(
        st.dictionaries(
            st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), st.text(max_size=8), max_size=6
        )
    )
    def test_independent_of_insertion_order(self, labels: dict[str, str]) -> None:
        assert fingerprint(labels) == fingerprint(dict(reversed(list(labels.items()))))

    @settings(max_examples=50)
    @given(LABELS)
    def test_matches_a_plain_fnv1a_oracle(self, labels: dict[str, str]) -> None:
        h = 0xCBF29CE484222325
        for name in sorted(labels):
            for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
                for byte in part:
                    h ^= byte
                    h = (h * 0x100000001B3) % 2**64
        assert fingerprint(labels) == f"{h:016x}"

    def test_the_separator_keeps_name_and_value_apart(self) -> None:
        assert fingerprint({"a": "bc"}) != fingerprint({"ab": "c"})


class TestRoutes:
    def test_no_child_matches_root_takes_it(self) -> None:
        [r] = match_routes(TREE.tree(), {"alertname": "X", "service": "api"})
        assert (r.id, r.receiver) == ("/", "ops")

    def test_continue_lets_later_siblings_match_too(self) -> None:
        hits = match_routes(TREE.tree(), {"alertname": "X", "severity": "critical", "service": "mysql-1"})
        assert [(r.id, r.receiver) for r in hits] == [("/0", "pager"), ("/1", "db")]

    def test_first_match_without_continue_stops(self) -> None:
        hits = match_routes(TREE.tree(), {"service": "db", "team": "web"})
        assert [r.id for r in hits] == ["/1"]

    def test_regex_is_anchored(self) -> None:
        assert [r.id for r in match_routes(TREE.tree(), {"service": "xdb"})] == ["/"]

    def test_deepest_match_and_inheritance(self) -> None:
        [r] = match_routes(TREE.tree(), {"service": "db", "env": "test"})
        assert r.id == "/1/0" and r.receiver == "ops"
        assert r.group_by == ("alertname",) and r.group_wait == 30.0
        [p] = match_routes(TREE.tree(), {"service": "db"})
        assert p.group_wait == 1.0  # inherited from the root

    def test_group_key_uses_the_routes_group_by(self) -> None:
        [r] = match_routes(TREE.tree(), {"alertname": "Up", "service": "api", "x": "1"})
        assert group_key(r, {"alertname": "Up", "service": "api", "x": "1"}) == '/:{alertname="Up"}'

    def test_unknown_receiver_is_refused(self) -> None:
        with pytest.raises(ValueError, match="receiver 'nobody', which is not declared"):
            _policy(receiver="ops", routes=[{"match": {"a": "b"}, "receiver": "nobody"}])

    def test_bad_regex_is_refused_with_the_label(self) -> None:
        with pytest.raises(ValueError, match="service: invalid regular expression"):
            _policy(receiver="ops", routes=[{"matchRe": {"service": "("}}])


def _a(**labels: str) -> Alert:
    return Alert(labels=labels, starts_at=100.0)


class TestMuting:
    rules = _policy(receiver="ops").inhibitions()

    def test_critical_inhibits_its_warning_only(self) -> None:
        crit = _a(alertname="ErrorRate", service="a", severity="critical")
        warn = _a(alertname="ErrorRate", service="a", severity="warning")
        other = _a(alertname="ErrorRate", service="b", severity="warning")
        assert inhibited(warn, [crit, warn], self.rules)
        assert not inhibited(other, [crit], self.rules)
        assert not inhibited(crit, [crit, warn], self.rules)

    def test_silence_by_matchers_and_time(self) -> None:
        s = Silence("s1", (Matcher.parse("service=a"), Matcher.parse("alertname=~Err.*")), 10.0, 20.0, "ann")
        a = _a(alertname="ErrorRate", service="a")
        assert muted(a, now=15.0, firing=[], rules=[], silences=[s]) == "silenced"
        assert muted(a, now=20.0, firing=[], rules=[], silences=[s]) is None  # expired at ends_at
        assert (
            muted(_a(alertname="ErrorRate", service="b"), now=15.0, firing=[], rules=[], silences=[s]) is None
        )

    def test_a_rollback_mutes_the_symptoms_it_causes_not_its_cause(self) -> None:
        cause = Alert(labels={"alertname": "ErrorRate", "service": "a"}, starts_at=90.0)
        symptom = Alert(labels={"alertname": "Availability", "service": "a"}, starts_at=105.0)
        rb = [Rollback("a", started_at=100.0)]
        kw = {"firing": [], "rules": [], "silences": [], "rollbacks": rb, "rollback_grace": 30.0}
        assert muted(cause, now=110.0, **kw) is None  # type: ignore[arg-type]
        assert muted(symptom, now=110.0, **kw) == "rollback"  # type: ignore[arg-type]
        done = [Rollback("a", started_at=100.0, ended_at=120.0)]
        kw["rollbacks"] = done
        assert muted(symptom, now=149.0, **kw) == "rollback"  # type: ignore[arg-type]
        assert muted(symptom, now=151.0, **kw) is None  # type: ignore[arg-type]


class TestMatcherParse:
    @pytest.mark.parametrize(
        ("text", "labels", "hit"),
        [
            ("a=b", {"a": "b"}, True),
            ("a!=b", {"a": "b"}, False),
            ("a=~b.*", {"a": "bcd"}, True),
            ("a!~b.*", {"a": "bcd"}, False),
            ('a="x y"', {"a": "x y"}, True),
            ("a=", {}, True),
        ],
    )
    def test_ops(self, text: str, labels: dict[str, str], hit: bool) -> None:
        assert Matcher.parse(text).matches(labels) is hit

    @pytest.mark.parametrize("bad", ["", "a", "1a=b", "a=~("])
    def test_refused(self, bad: str) -> None:
        with pytest.raises(ValueError):
            Matcher.parse(bad)


def _naive_inhibited(alert: Alert, firing: list[Alert], rules: list[InhibitRule]) -> bool:
    return any(
        matches_all(r.target, alert.labels)
        and any(
            s.fingerprint != alert.fingerprint
            and matches_all(r.source, s.labels)
            and all(s.labels.get(n, "") == alert.labels.get(n, "") for n in r.equal)
            for s in firing
        )
        for r in rules
    )


_LBL = st.fixed_dictionaries(
    {"alertname": st.sampled_from(["A", "B"]), "severity": st.sampled_from(["critical", "warning", "info"])},
    optional={"service": st.sampled_from(["x", "y"]), "zone": st.sampled_from(["1", "2"])},
)


@given(st.lists(_LBL, max_size=12), st.lists(_LBL, min_size=1, max_size=5))
def test_the_inhibitor_index_agrees_with_the_definition(
    firing: list[dict[str, str]], targets: list[dict[str, str]]
) -> None:
    rules = _policy(receiver="ops").inhibitions() + [
        InhibitRule((Matcher("alertname", "A"),), (Matcher("severity", "info"),), ("zone",)),
        InhibitRule((Matcher("severity", "crit.*", regex=True),), (), ()),
    ]
    fs = [Alert(labels=f) for f in firing]
    for t in targets:
        a = Alert(labels=t)
        assert Inhibitor(rules, fs).inhibits(a) == _naive_inhibited(a, fs, rules)
