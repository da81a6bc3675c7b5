"""Policy parsing: valid files load; every problem is reported with file, line and field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipwarden.domain.policy import PolicyError, load_policy_text, parse_duration, policy_json_schema

EXAMPLE = Path(__file__).parents[3] / "examples" / "policy.yaml"


def test_example_policy_loads() -> None:
    loaded = load_policy_text(EXAMPLE.read_text(), "examples/policy.yaml")
    svc = loaded.policy.service("hello")
    assert svc.strategy.kind == "blueGreen"
    assert svc.health.interval == 0.5 and svc.run.instances == 2
    assert len(loaded.digest) == 64


@pytest.mark.parametrize(
    ("raw", "seconds"), [(30, 30.0), ("30s", 30.0), ("250ms", 0.25), ("1.5m", 90.0), ("1h", 3600.0)]
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["fast", "-1s", True, "10 days", -3])
def test_bad_durations(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(raw)


BAD = """\
apiVersion: shipwarden/v1
team: demo
services:
  - name: Hello
    run:
      command: []
    health:
      interval: fast
      bogus: 1
    routing:
      port: 80
      previewPort: 81
    strategy:
      blueGreen: {}
"""


def test_every_error_has_file_line_and_field() -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy_text(BAD, "team.yaml")
    found = {(i.field, i.line) for i in exc.value.issues}
    assert ("services[0].name", 4) in found
    assert ("services[0].run.command", 6) in found
    assert ("services[0].health.interval", 8) in found
    assert ("services[0].health.bogus", 9) in found
    assert all(str(i).startswith("team.yaml:") for i in exc.value.issues)


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy_text("apiVersion: shipwarden/v1\nteam: [unclosed\n", "x.yaml")
    assert exc.value.issues[0].line is not None and "YAML" in exc.value.issues[0].message


def test_both_strategies_is_an_error() -> None:
    text = (
        BAD.replace("Hello", "hello")
        .replace("command: []", "command: [x]")
        .replace("interval: fast", "interval: 1s")
    )
    text = text.replace("      bogus: 1\n", "").replace(
        "blueGreen: {}", "blueGreen: {}\n      canary: {steps: [{setWeight: 10}]}"
    )
    with pytest.raises(PolicyError) as exc:
        load_policy_text(text, "x.yaml")
    assert any("exactly one" in i.message and i.field == "services[0].strategy" for i in exc.value.issues)


def test_duplicate_ports_across_services() -> None:
    svc = (
        "  - name: {n}\n    run: {{command: [x]}}\n"
        "    routing: {{port: {p}, previewPort: {q}}}\n    strategy: {{blueGreen: {{}}}}\n"
    )
    text = (
        "apiVersion: shipwarden/v1\nteam: t\nservices:\n"
        + svc.format(n="a", p=1000, q=1001)
        + svc.format(n="b", p=1001, q=1002)
    )
    with pytest.raises(PolicyError) as exc:
        load_policy_text(text, "x.yaml")
    assert "port 1001" in str(exc.value)


def test_unknown_service_names_the_known_ones() -> None:
    loaded = load_policy_text(EXAMPLE.read_text())
    with pytest.raises(LookupError, match="hello"):
        loaded.policy.service("nope")


def test_schema_uses_file_names() -> None:
    schema = policy_json_schema()
    assert "apiVersion" in schema["properties"]
    assert "scaleDownDelay" in str(schema)


def test_a_judge_after_the_blue_green_switch_is_refused_with_the_reason() -> None:
    text = EXAMPLE.read_text()
    assert "blueGreen:" in text
    analysed = text.replace(
        "blueGreen:\n",
        "blueGreen:\n        postPromotionAnalysis: {judge: sequential}\n",
        1,
    )
    with pytest.raises(PolicyError) as exc:
        load_policy_text(analysed, "x.yaml")
    issue = next(i for i in exc.value.issues if "postPromotionAnalysis" in i.field)
    assert "old version serving traffic" in issue.message and issue.line is not None
    # the same judge before the switch is fine: green on preview is compared with blue on production
    judged = "blueGreen:\n        prePromotionAnalysis: {judge: sequential}\n"
    before = text.replace("blueGreen:\n", judged, 1)
    loaded = load_policy_text(before, "x.yaml")
    bg = loaded.policy.services[0].strategy.blue_green
    assert bg is not None and bg.pre_promotion_analysis is not None


def test_min_available_above_the_instance_count_is_refused() -> None:
    text = """apiVersion: shipwarden/v1
team: demo
services:
  - name: web
    run: {command: [x], instances: 2}
    routing: {port: 18080, previewPort: 18081}
    strategy:
      canary: {minAvailable: 5, steps: [{setWeight: 20}]}
"""
    with pytest.raises(PolicyError) as exc:
        load_policy_text(text, "x.yaml")
    assert any("minAvailable (5) is more than run.instances (2)" in i.message for i in exc.value.issues)
    loaded = load_policy_text(text.replace("minAvailable: 5", "minAvailable: 2"), "x.yaml")
    canary = loaded.policy.services[0].strategy.canary
    assert canary is not None and canary.min_available == 2
