"""Property-based fuzzing of the policy loader (issue 9): mutations of real policies.

Generated documents are mutations of the example policy and of the policies the tests deploy:
values replaced by wrong types, odd numbers and durations, placeholders of every shape, odd
unicode; then the YAML text itself mutated — duplicated, dropped and swapped lines (duplicate
keys), inserted bytes (invalid UTF-8, NUL, control characters), truncation, deep nesting,
alias bombs, BOMs and CRLFs.  The properties:

* ``load_policy_text`` returns a policy or raises ``PolicyError`` whose issues name the file and
  a line — never any other exception;
* ``shipwarden policy check`` on the same file exits 0 or 2 and prints the issues, never a traceback;
* a policy it accepts is one deploy can use: every ``run`` template renders with the platform's
  placeholders only, the plan recorded with a deployment is finite JSON, every analysis query
  renders and every judge can be built, every delivery version is a valid version.

Budget: ``SHIPWARDEN_FUZZ_EXAMPLES`` examples per property (default 150: three properties, a few
hundred cases, derandomized so the default run is the same every time); a full run::

    SHIPWARDEN_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest -q tests/unit/domain/test_policy_fuzz.py
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from shipwarden.domain._base import ENV_NAME
from shipwarden.domain.analysis import AnalysisSpec, JudgeSpec
from shipwarden.domain.delivery import version_for
from shipwarden.domain.policy import LoadedPolicy, PolicyError, load_policy_text
from shipwarden.domain.version import check_version
from shipwarden.entrypoints.cli import app
from shipwarden.services.rollout import _plan_json, plan_for
from tests.fixtures.deploy_env import BLUE_GREEN, POLICY

ROOT = Path(__file__).parents[3]
YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # line breaks as YAML (and every mark) counts them
EXAMPLES = int(os.environ.get("SHIPWARDEN_FUZZ_EXAMPLES", "150"))
# pytest-timeout's 300 s per test is for the default budget; a full run takes ~30 ms a case
pytestmark = pytest.mark.timeout(max(300, EXAMPLES // 10))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="SHIPWARDEN_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

FULL = """\
apiVersion: shipwarden/v1
team: shop
services:
  - name: web
    run:
      command: "{python} -m shop.web --port {port}"
      portEnv: HTTP_PORT
      env: {SHOP_VERSION: "{version}", SHOP_SERVICE: "{service}", LITERAL: "{{not a placeholder}}"}
      workdir: "releases/{version}"
      instances: 3
      stopTimeout: 5s
    health: {path: /healthz, interval: 250ms, timeout: 1s, healthyThreshold: 2, startTimeout: 30s}
    routing: {port: 18080, previewPort: 18081}
    strategy:
      canary:
        minAvailable: 2
        confirm: {beforePromotion: true, timeout: 10m, onTimeout: rollback}
        steps:
          - setWeight: 10
          - pause: {}
          - analysis:
              metrics:
                - name: p95
                  query: 'histogram_quantile(0.95, rate(x_bucket{service="{service}"}[{window}]))'
                  interval: 5s
                  count: 3
                  successCondition: {max: 0.4}
          - setWeight: 50
          - pause: {duration: 30s}
          - analysis: {}
        analysis:
          startingStep: 1
          interval: 2s
          judge: {algorithm: mann-whitney, samples: 20, alpha: 0.02, warmup: 5s}
          metrics:
            - name: errors
              provider: newrelic
              query: "SELECT percentage(count(*), WHERE error) FROM Transaction WHERE appName = '{service}'"
              interval: 10s
              window: 1m
              failureCondition: {min: 0.05}
              failureLimit: 1
  - name: api
    run: {command: ["{python}", "api.py"], instances: 1}
    routing: {port: 18090, previewPort: 18091}
    strategy:
      blueGreen:
        preview: {path: /ready, requests: 5, expectStatus: 204}
        scaleDownDelay: 0
        prePromotionAnalysis: {judge: sequential}
        postPromotionAnalysis:
          metrics: [{name: up, query: 'up{job="{service}"}', successCondition: {min: 1}}]
gates:
  suites: {unit: {minTests: 1}, integration: {minTests: 1}, security: {minTests: 1, maxSkipped: 0}}
  ci: {required: [build-and-test]}
  checklist:
    securityScan: {maxFindings: {critical: 0, high: 0}, maxAge: 168h}
    performance: {p95Ms: 400, p99Ms: 600, maxErrorRate: 0.01, maxAge: 2h}
    uatSignOff: {role: qa}
    backup: {maxAge: 24h}
    rollbackPlan: {requirePreviousVersion: true}
  changeControl:
    nonStandard:
      - {name: db-migrations, paths: ["migrations/**", "*.sql"], approvers: [cab]}
delivery:
  repository: {url: ../origin.git, mainBranch: main, mergeMode: merge-commit}
  services: [web, api]
  version: "rel-{short}"
  approvers: {cab: [carol], qa: [quinn]}
  webhooks: {circleci: CIRCLE_SECRET, github: GITHUB_SECRET, replayWindow: 1h}
  notify: {urls: [RELEASE_CHANNEL], required: false}
  preparation: {resources: {minFreeDiskMb: 100, minFreeMemoryMb: 64}, requireBackup: true}
  postDeployment:
    smoke: [{path: /healthz}, {path: /, contains: '"version"'}]
    performance: {path: /, requests: 50, maxRegression: 0.5, slackMs: 5}
    security: {url: "https://shop.example.com/", requireHeaders: [strict-transport-security]}
    releaseNotes: {path: "docs/releases/{service}.md"}
alerts:
  rollout: {urls: [OPS_ALERT_URL], events: [rollback, failed, paused]}
"""

SEEDS = [
    (ROOT / "examples" / "policy.yaml").read_text(),
    POLICY.format(
        port=18100,
        preview=18101,
        strategy="      " + BLUE_GREEN.strip().replace("\n", "\n      "),
        start_timeout="8s",
        driver="haproxy",
        zones="",
    ),  # fmt: skip
    FULL,
]
SEED_DATA = [yaml.safe_load(s) for s in SEEDS]


def test_the_seeds_are_valid_policies() -> None:
    for i, seed in enumerate(SEEDS):
        deploy_can_use(load_policy_text(seed, f"seed{i}.yaml"))


# -- generating documents -------------------------------------------------------------------------------

TEMPLATE_BITS = [
    "{version}", "{port}", "{service}", "{python}", "{versoin}", "{nope}", "{version.__class__}",
    "{version.__class__.__init__.__globals__}", "{port[0]}", "{version!r}", "{version!s}", "{port:>8}",
    "{version:{port}}", "{}", "{0}", "{", "}", "{{", "}}", "{{version}}", "{ version }", "{window}",
    "{short}", "{sha}", "\x00", "$(id)", "`id`", "[red]", "[/]", "%s", "\\", "'", '"',
]  # fmt: skip
DURATIONS = [
    "0", "0s", "0ms", "0.0", "-1s", "1e9h", "99999999h", "8784h", "8785h", ".5s", "0.5s", "1.5m", "250ms",
    "1 h", "inf", "nan", "1h30m", " 5s ", "5S", "5sec", "", "10", "1e3", "1_000", "0x10", "٣s",
]  # fmt: skip
ODD_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from("[]{}:#&*!|>%@`,-?\t\n\r\x85\u2028"),
    max_size=24,
)
NUMBERS = (
    st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 1, 2, 64, 65, 100, 101, 65535, 65536, 10**6, 2**63])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, -0.0, 1e-300, 1e308, float("inf"), float("-inf"), float("nan")])
)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    ODD_TEXT,
    st.sampled_from(DURATIONS),
    st.lists(st.sampled_from(TEMPLATE_BITS), min_size=1, max_size=4).map("".join),
    st.lists(st.integers() | ODD_TEXT, max_size=3),
    st.dictionaries(ODD_TEXT, st.integers() | ODD_TEXT, max_size=3),
    st.integers(1, 120).map(nested),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutate_data(draw: st.DrawFn, doc: Any) -> Any:
    """One structural change at a random place of (a deep copy of) the document."""
    doc = json.loads(json.dumps(doc))
    where = draw(st.sampled_from(list(paths(doc))))
    if not where:
        return draw(st.sampled_from([doc, [doc], None, "text", 42]))
    parent, key = get(doc, where[:-1]), where[-1]
    current = parent[key]
    op = draw(st.sampled_from(["replace", "template", "delete", "add", "duplicate", "wrap", "number"]))
    if op == "replace":
        parent[key] = draw(ODD_VALUES)
    elif op == "template" and isinstance(current, str):
        bit = draw(st.sampled_from(TEMPLATE_BITS))
        at = draw(st.integers(0, len(current)))
        parent[key] = current[:at] + bit + current[at:]
    elif op == "delete":
        del parent[key]
    elif op == "add" and isinstance(current, dict):
        name = draw(st.sampled_from(["bogus", "NAME", "A-B", "1X", "", "x" * 300]) | ODD_TEXT)
        current[name] = draw(ODD_VALUES)
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, json.loads(json.dumps(current)))
    elif op == "wrap":
        parent[key] = draw(st.sampled_from([[current], {"x": current}]))
    elif op == "number" and isinstance(current, int | float) and not isinstance(current, bool):
        parent[key] = draw(st.sampled_from([0, -current, current * 1000, current + 0.5, float("inf"), 2**64]))
    else:
        parent[key] = draw(ODD_VALUES)
    return doc


def dump(doc: Any, flow: bool) -> str:
    try:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=flow, width=100)
    except (yaml.YAMLError, RecursionError, ValueError):
        return json.dumps(doc)


INSERTED_LINES = [
    "services: []", "team: other", "apiVersion: shipwarden/v2", "name: x", "<<: *a", "x: &a {port: 1}",
    "x: *undefined", "--- ", "...", "%YAML 1.1", "? [a, b]\n: c", "!!python/object/apply:os.system [id]",
    "x: !!binary a", "x: 2024-13-45", "x: !!float abc", "x: !!int 0xZZ", "x: !!timestamp 2024-02-30",
    "x: !!set {a, b}", "x: !!omap [a: 1]", "x: 0o777", "x: 1_000.5e3", "x: .NaN", "x: -.Inf", "- 1",
    "\t- tab", "x: 'unterminated", 'x: "bad escape \\q"', "x: |\n  block", "{a: 1",
]  # fmt: skip


def alias_bomb(levels: int) -> str:
    lines = ['b0: &b0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@st.composite
def mutate_text(draw: st.DrawFn, raw: bytes) -> bytes:
    lines = raw.split(b"\n")
    op = draw(
        st.sampled_from(
            [
                "dup",
                "drop",
                "swap",
                "insert",
                "bytes",
                "truncate",
                "deep",
                "bomb",
                "bom",
                "crlf",
                "tabs",
                "dedent",
            ]
        )
    )
    i = draw(st.integers(0, max(0, len(lines) - 1)))
    j = draw(st.integers(0, max(0, len(lines) - 1)))
    if op == "dup":
        lines.insert(j, lines[i])
    elif op == "drop" and lines:
        del lines[i]
    elif op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "insert":
        indent = b" " * draw(st.sampled_from([0, 2, 4, 6, 8]))
        lines.insert(i, indent + draw(st.sampled_from(INSERTED_LINES)).encode())
    elif op == "bytes":
        at = draw(st.integers(0, len(raw)))
        junk = draw(
            st.binary(min_size=1, max_size=6)
            | st.sampled_from(
                [b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x1b[31m", b"\x7f"]
            )
            | st.text(max_size=6).map(lambda t: t.encode("utf-8", "surrogatepass"))
        )
        return raw[:at] + junk + raw[at:]
    elif op == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    elif op == "deep":
        depth = draw(st.sampled_from([40, 47, 48, 49, 60, 500, 5000]))
        opener = draw(st.sampled_from([b"[", b"{a: ", b"- "]))
        burst = (
            b"x: " + opener * depth
            if opener != b"- "
            else b"x:\n" + b"".join(b"  " * k + b"- \n" for k in range(depth))
        )
        lines.insert(i, burst)
    elif op == "bomb":
        lines.append(alias_bomb(draw(st.integers(2, 9))).encode())
    elif op == "bom":
        return b"\xef\xbb\xbf" + raw
    elif op == "crlf":
        return raw.replace(b"\n", b"\r\n")
    elif op == "tabs":
        lines[i] = lines[i].replace(b"  ", b"\t", 1)
    elif op == "dedent":
        lines[i] = lines[i].lstrip()
    return b"\n".join(lines)


@st.composite
def documents(draw: st.DrawFn, text_mutations: tuple[int, int]) -> bytes:
    k = draw(st.integers(0, len(SEEDS) - 1))
    doc = SEED_DATA[k]
    data_changes = draw(st.integers(0, 3))
    for _ in range(data_changes):
        doc = draw(mutate_data(doc))
    raw = (SEEDS[k] if data_changes == 0 else dump(doc, draw(st.booleans()))).encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(*text_mutations))):
        raw = draw(mutate_text(raw))
    return raw


# -- the properties -------------------------------------------------------------------------------------


def load(content: str | bytes, source: str = "fuzz.yaml") -> LoadedPolicy | PolicyError:
    """The loader's contract: a policy, or a PolicyError whose every issue has file and line."""
    try:
        loaded = load_policy_text(content, source)
    except PolicyError as exc:
        assert exc.issues
        event("rejected: " + ("document" if exc.issues[0].field == "" else "field values"))
        text = content if isinstance(content, str) else content.decode("utf-8", "replace")
        last_line = len(YAML_BREAK.findall(text)) + 1
        for issue in exc.issues:
            assert issue.file == source
            if issue.line is None:
                assert "larger than" in issue.message, issue  # the only whole-file issue
            else:
                assert 1 <= issue.line <= last_line, (issue, last_line)
            assert issue.message and str(issue).startswith(f"{source}:")
        return exc
    event("accepted")
    return loaded


def floats_in(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from floats_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from floats_in(v)


def analyses(loaded: LoadedPolicy) -> Iterator[AnalysisSpec]:
    for spec in loaded.policy.services:
        bg, c = spec.strategy.blue_green, spec.strategy.canary
        if bg is not None:
            yield from (a for a in (bg.pre_promotion_analysis, bg.post_promotion_analysis) if a is not None)
        if c is not None:
            if c.analysis is not None:
                yield c.analysis
            for step in c.steps:
                a = getattr(step, "analysis", None)
                if isinstance(a, AnalysisSpec):
                    yield a


def deploy_can_use(loaded: LoadedPolicy) -> None:
    """What ``deploy`` (and the controller, and the delivery pipeline) do with an accepted policy."""
    from shipwarden.domain.judge import make_judge

    policy = loaded.policy
    dumped = policy.model_dump(mode="json", by_alias=True)
    json.dumps(dumped, allow_nan=False)  # no inf/nan anywhere
    assert all(math.isfinite(f) for f in floats_in(dumped))
    for spec in policy.services:
        for version in ("1", "v" * 128, "1.0+build.7", check_version("A_b-1.2")):
            run = spec.run.render(version=version, port="65535", service=spec.name, python=sys.executable)
            assert run.argv and run.argv[0].strip()
            assert all(isinstance(a, str) and "\x00" not in a for a in run.argv)
            assert all(ENV_NAME.fullmatch(k) and "\x00" not in v for k, v in run.env.items())
            assert spec.run.port_env not in run.env and ENV_NAME.fullmatch(spec.run.port_env)
            assert run.workdir is None or ("\x00" not in run.workdir and run.workdir.strip())
        json.dumps(_plan_json(plan_for(spec)), allow_nan=False)  # recorded with each deployment
        assert 0 < spec.health.interval and 0 < spec.health.timeout and 0 < spec.run.stop_timeout
    for analysis in analyses(loaded):
        for m in analysis.metrics:
            assert m.look_back > 0 and math.isfinite(m.look_back)
            m.render_query("web", "1.0", f"{int(m.look_back)}s")
        judge: JudgeSpec | None = analysis.judge
        if judge is not None:
            make_judge(judge, judge.algorithm)
    if policy.delivery is not None:
        for sha in ("0" * 40, "f" * 64):
            check_version(version_for(policy.delivery.version, sha))
        names = {s.name for s in policy.services}
        assert all(isinstance(s, str) for s in policy.delivery.services) and names


@FUZZ
@given(documents(text_mutations=(0, 0)))
def test_mutated_policies_load_or_fail_with_file_and_line(raw: bytes) -> None:
    result = load(raw)
    if isinstance(result, LoadedPolicy):
        deploy_can_use(result)


@FUZZ
@given(documents(text_mutations=(1, 3)), st.booleans())
def test_mutated_yaml_text_loads_or_fails_with_file_and_line(raw: bytes, as_text: bool) -> None:
    content: str | bytes = raw.decode("utf-8", "surrogateescape") if as_text else raw
    result = load(content)
    if isinstance(result, LoadedPolicy):
        deploy_can_use(result)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="shipwarden-fuzz-") as d:
        yield Path(d)


@FUZZ
@given(documents(text_mutations=(0, 2)))
def test_policy_check_exits_0_or_2_with_the_issues_never_a_traceback(workdir: Path, raw: bytes) -> None:
    path = workdir / "policy.yaml"
    path.write_bytes(raw)
    r = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    result = load(raw, str(path))
    if isinstance(result, PolicyError):
        assert r.exit_code == 2, r.output
        for issue in result.issues:
            assert str(issue) in r.output  # exactly as the loader says it: no markup eaten
    else:
        assert r.exit_code == 0 and r.output.startswith(f"ok {path}: team {result.policy.team}"), r.output
