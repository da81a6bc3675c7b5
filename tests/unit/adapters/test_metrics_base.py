"""The metrics port: template safety, the registry, and the shared fetch_pair."""

from __future__ import annotations

from typing import cast

import pytest

from shipwarden.adapters.metrics import base
from shipwarden.adapters.metrics.base import (
    Aggregation,
    ErrorKind,
    Measurement,
    MetricProvider,
    NoData,
    ProviderConfigError,
    ProviderError,
    TemplateError,
    UnknownProvider,
    Value,
    aggregate_values,
    fetch_pair,
    known_providers,
    make_provider,
    register_provider,
    render_template,
)

PROMQL = 'sum(rate(http_requests_total{service="{service}",version="{version}"}[{window}]))'


def render(template: str, version: str = "v1.2.3", quotes: str = "\"'`") -> str:
    return render_template(template, service="checkout", version=version, window="30s", quotes=quotes)


def test_placeholders_are_substituted_and_other_braces_kept() -> None:
    assert render(PROMQL) == 'sum(rate(http_requests_total{service="checkout",version="v1.2.3"}[30s]))'


@pytest.mark.parametrize("version", ["1.2.3-rc.1+build.5", "sha-0a1b2c3", "registry.io/app:v2", "v2@sha256"])
def test_real_world_version_strings_are_accepted(version: str) -> None:
    assert f'"{version}"' in render(PROMQL, version)


@pytest.mark.parametrize(
    "version",
    ['v1"} or up{x="', "v1'", "v1\\", "v 1", "v1\n", "", "-v1", "v1,code=~'.*'", "x" * 129, "v1}", "vé"],
)
def test_values_that_could_change_the_query_are_refused(version: str) -> None:
    with pytest.raises(TemplateError) as exc:
        render(PROMQL, version)
    assert exc.value.kind is ErrorKind.BAD_TEMPLATE


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("up{version={version}}", "inside a string literal"),
        ('rate(x{v="{version}"}["{window}"])', "{window} must not be inside"),
        ('x{v="{version}}', "unterminated"),
        ('x{v="a\\"{version}"}', None),  # escaped quote keeps the literal open: allowed
    ],
)
def test_placement_rules(template: str, message: str | None) -> None:
    if message is None:
        assert "v1.2.3" in render(template)
    else:
        with pytest.raises(TemplateError, match=message):
            render(template)


def test_backtick_raw_strings_have_no_escapes() -> None:
    # In a PromQL raw string a backslash is literal, so `a\` closes at the back-tick.
    with pytest.raises(TemplateError, match="inside a string literal"):
        render("x{v=`a\\`, w={version}}")


def test_nrql_quotes_are_single_only() -> None:
    nrql = "SELECT count(*) FROM T WHERE v = '{version}' {window}"
    assert render(nrql, quotes="'") == "SELECT count(*) FROM T WHERE v = 'v1.2.3' 30s"
    with pytest.raises(TemplateError):
        render('SELECT count(*) FROM T WHERE v = "{version}"', quotes="'")


def test_aggregations() -> None:
    assert aggregate_values([1.0, 2.0, 6.0], Aggregation.SUM) == 9.0
    assert aggregate_values([1.0, 2.0, 6.0], Aggregation.MEAN) == 3.0
    assert aggregate_values([1.0, 2.0, 6.0], Aggregation.MAX) == 6.0
    assert aggregate_values([1.0, 2.0, 6.0], Aggregation.MIN) == 1.0
    with pytest.raises(ValueError):
        aggregate_values([], Aggregation.SUM)


def test_registry_refuses_unknown_names_and_bad_config() -> None:
    assert {"prometheus", "newrelic"} <= set(known_providers())
    with pytest.raises(UnknownProvider, match="datadog") as exc:
        make_provider("datadog", url="x")
    assert "prometheus" in str(exc.value)  # the error lists what is known
    with pytest.raises(ProviderConfigError, match="prometheus"):
        make_provider("prometheus", base_url="http://127.0.0.1:9", no_such_option=1)
    with pytest.raises(ProviderConfigError):
        make_provider("newrelic", account_id=1)  # api_key missing
    with pytest.raises(ValueError, match="already registered"):
        register_provider("prometheus", lambda **_: None)  # type: ignore[arg-type]


def test_registered_provider_is_built_with_checked_config() -> None:
    made: list[dict[str, object]] = []

    def factory(*, answers: dict[str, Measurement]) -> MetricProvider:
        made.append({"answers": answers})
        return cast(MetricProvider, _Recorder(answers))

    register_provider("unit-test-recorder", factory)
    assert "unit-test-recorder" in known_providers()
    provider = make_provider("unit-test-recorder", answers={})
    assert provider.kind == "recorder" and made == [{"answers": {}}]
    with pytest.raises(ProviderConfigError):
        make_provider("unit-test-recorder", answer={})


def test_registry_builds_the_builtin_providers() -> None:
    p = make_provider("prometheus", base_url="http://127.0.0.1:9090/", timeout_s=2)
    n = make_provider("newrelic", api_key="NRAK-ABC", account_id=42, region="EU")
    try:
        assert p.kind == "prometheus" and n.kind == "newrelic"
        assert isinstance(p, base.MetricProvider) and isinstance(n, base.MetricProvider)
    finally:
        p.close()
        n.close()


class _Recorder:
    """A stand-in provider that records calls: tests the shared fetch_pair logic only."""

    kind = "recorder"

    def __init__(self, answers: dict[str, Measurement]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, float | None, float]] = []

    def query(
        self,
        template: str,
        *,
        service: str,
        version: str,
        window_s: float,
        at: float | None = None,
        aggregate: Aggregation | None = None,
    ) -> Measurement:
        self.calls.append((version, at, window_s))
        return self.answers[version]


def test_fetch_pair_pins_one_instant_for_both_sides() -> None:
    rec = _Recorder({"v1": Value(0.01, at=5), "v2": NoData("no series matched", at=5)})
    pair = fetch_pair(
        cast(MetricProvider, rec),
        PROMQL,
        service="s",
        baseline_version="v1",
        canary_version="v2",
        window_s=60,
    )
    assert [c[0] for c in rec.calls] == ["v1", "v2"]
    assert rec.calls[0][1] == rec.calls[1][1] == pair.at is not None
    assert isinstance(pair.baseline, Value) and isinstance(pair.canary, NoData)


def test_fetch_pair_refuses_templates_that_cannot_tell_versions_apart() -> None:
    rec = _Recorder({})
    with pytest.raises(TemplateError, match="no \\{version\\}"):
        fetch_pair(
            cast(MetricProvider, rec),
            "sum(up)",
            service="s",
            baseline_version="v1",
            canary_version="v2",
            window_s=60,
        )
    with pytest.raises(TemplateError, match="same"):
        fetch_pair(
            cast(MetricProvider, rec),
            PROMQL,
            service="s",
            baseline_version="v1",
            canary_version="v1",
            window_s=60,
        )
    assert rec.calls == []


def test_provider_error_text_carries_kind_status_and_type() -> None:
    err = ProviderError(
        "parse error", kind=ErrorKind.BAD_QUERY, provider="prometheus", status=400, error_type="bad_data"
    )
    assert str(err) == "prometheus: bad_query: parse error (HTTP 400, bad_data)"
    assert isinstance(TemplateError("x"), ProviderError)


def test_errors_survive_pickling_with_all_fields() -> None:
    import pickle

    err = ProviderError(
        "timed out",
        kind=ErrorKind.TIMEOUT,
        provider="newrelic",
        status=200,
        error_type="TIMEOUT",
        query="SELECT 1",
    )
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ProviderError and str(back) == str(err)
    assert (back.kind, back.status, back.error_type, back.query) == (err.kind, 200, "TIMEOUT", "SELECT 1")
    tpl = pickle.loads(pickle.dumps(TemplateError("bad", provider="prometheus")))
    assert type(tpl) is TemplateError and tpl.kind is ErrorKind.BAD_TEMPLATE and str(tpl).endswith("bad")
