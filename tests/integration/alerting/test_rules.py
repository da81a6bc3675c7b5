"""Generated rules pass `promtool check rules`; a rules file promtool refuses never replaces the
serving one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from shipwarden.adapters.metrics.prometheus_rules import PROMTOOL, PrometheusRules
from shipwarden.domain.alerting import MonitoringPolicy, prometheus_rules

pytestmark = pytest.mark.integration

FULL = {
    "evaluationInterval": "15s",
    "services": {
        "web": {
            "availability": {"warning": 99.5, "critical": 99, "for": "1m"},
            "errorRate": {"warning": 1, "critical": 5, "for": "2m", "window": "5m"},
            "latency": [
                {"quantile": 0.95, "warning": "300ms", "critical": "1s"},
                {"quantile": 0.999, "critical": "2.5s"},
            ],
            "saturation": {
                "selector": 'job="node",instance=~"web-.*"',
                "cpu": {"warning": 80, "critical": 95},
                "memory": {"warning": 85},
                "disk": {"critical": 90},
                "network": {"warning": 5e7},
            },
            "custom": [
                {
                    "name": "SignupsLow",
                    "promql": 'sum(rate(signups_total{env="prod"}[5m]))',
                    "op": "<",
                    "warning": 1,
                    "critical": 0.1,
                    "for": "10m",
                    "summary": "signups {{ $value }}/s",
                }
            ],
        },
        "pay-api": {"errorRate": {"critical": 2}},
    },
}


def _need_promtool() -> None:
    if shutil.which(PROMTOOL) is None and not Path(PROMTOOL).exists():
        pytest.skip("promtool not installed (make deps)")


def _text(spec: dict[str, object]) -> str:
    return yaml.safe_dump(
        prometheus_rules(MonitoringPolicy.model_validate(spec), team="demo"), sort_keys=False
    )


def test_every_signal_passes_promtool(tmp_path: Path) -> None:
    _need_promtool()
    target = PrometheusRules(tmp_path / "rules.yml")
    text = _text(FULL)
    assert target.apply(text).startswith("written; not reloaded")
    assert target.apply(text).startswith("unchanged")
    doc = yaml.safe_load((tmp_path / "rules.yml").read_text())
    assert [g["name"] for g in doc["groups"]] == ["shipwarden:pay-api", "shipwarden:web"]
    assert len(doc["groups"][1]["rules"]) == 2 + 2 + 2 + 1 + 2 + 1 + 1 + 1 + 2


def test_a_refused_file_leaves_the_serving_one(tmp_path: Path) -> None:
    _need_promtool()
    target = PrometheusRules(tmp_path / "rules.yml")
    target.apply(_text(FULL))
    before = (tmp_path / "rules.yml").read_text()
    bad = {"services": {"web": {"custom": [{"name": "Broken", "promql": "sum(rate(x[5m]", "warning": 1}]}}}
    with pytest.raises(ValueError, match="promtool check rules failed"):
        target.apply(_text(bad))
    assert (tmp_path / "rules.yml").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rules.yml"]  # no temporary file left behind
