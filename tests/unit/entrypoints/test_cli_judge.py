"""``shipwarden judge``: JSON verdict on stdout, exit codes, file:line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shipwarden.entrypoints.cli.judge import judge_command, plan_command
from tests.unit.domain.test_judge_corpus import pairs

app = typer.Typer()
app.command("judge")(judge_command)
app.command("noop")(lambda: None)  # two commands, so "judge" is a sub-command as in the real CLI
runner = CliRunner()


def write(tmp_path: Path, **kw: float) -> tuple[Path, Path]:
    b, c = tmp_path / "baseline.jsonl", tmp_path / "canary.jsonl"
    data = pairs(11, n=int(kw.pop("n", 30)), **kw)
    b.write_text("".join(json.dumps(x.to_json()) + "\n" for x, _ in data))
    c.write_text("".join(json.dumps(y.to_json()) + "\n" for _, y in data))
    return b, c


def invoke(*args: str | Path):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["judge", *map(str, args)])


def test_regression_prints_fail_verdict_with_decision_index(tmp_path: Path) -> None:
    b, c = write(tmp_path, requests=2000, error_factor=3.0)
    r = invoke("--baseline", b, "--canary", c)
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert out["judge"] == "sequential" and out["decision"] == "fail"
    assert isinstance(out["decidedAt"], int) and 1 <= out["decidedAt"] < 30
    err = next(m for m in out["metrics"] if m["name"] == "error_rate")
    assert err["classification"] == "high" and err["ratio"] > 1.5
    assert out["input"]["pairs"] == 30


def test_same_version_passes_with_exit_zero_under_both_judges(tmp_path: Path) -> None:
    b, c = write(tmp_path, requests=1000)
    seq = invoke("-b", b, "-c", c)
    assert seq.exit_code == 0, seq.output
    mw = invoke("-b", b, "-c", c, "--judge", "mann-whitney")
    assert mw.exit_code == 0, mw.output
    out = json.loads(mw.stdout)
    assert out["judge"] == "mann-whitney" and out["decision"] == "pass" and out["decidedAt"] == 30


def test_policy_file_selects_judge_and_settings(tmp_path: Path) -> None:
    b, c = write(tmp_path, requests=1000, n=12)
    policy = tmp_path / "judge.yaml"
    policy.write_text("judge:\n  algorithm: mann-whitney\n  minRequests: 1000000\n")
    r = invoke("-b", b, "-c", c, "--policy", policy)
    out = json.loads(r.stdout)
    assert out["judge"] == "mann-whitney" and out["decision"] == "inconclusive" and r.exit_code == 3


def test_bad_sample_line_exits_2_with_file_and_line(tmp_path: Path) -> None:
    b, c = write(tmp_path, n=5)
    lines = c.read_text().splitlines()
    lines[3] = '{"t": 180, "requests": 5, "errors": 9}'
    c.write_text("\n".join(lines) + "\n")
    r = invoke("-b", b, "-c", c)
    assert r.exit_code == 2
    assert f"{c}:4:" in r.stderr and "more than 'requests'" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        ("missing", "not found"),
        ("mismatch", "same number of lines"),
        ("policy", "judge.alpha"),
        ("judge", "unknown judge"),
    ],
)
def test_other_bad_input_exits_2(tmp_path: Path, setup: str, expect: str) -> None:
    b, c = write(tmp_path, n=5)
    extra: list[str | Path] = []
    if setup == "missing":
        c = tmp_path / "nope.jsonl"
    elif setup == "mismatch":
        c.write_text("".join(c.read_text().splitlines(keepends=True)[:4]))
    elif setup == "policy":
        p = tmp_path / "p.yaml"
        p.write_text("judge:\n  alpha: 7\n")
        extra = ["--policy", p]
        expect = f"{p}:2: judge.alpha"
    else:
        extra = ["--judge", "coin-flip"]
    r = invoke("-b", b, "-c", c, *extra)
    assert r.exit_code == 2
    assert expect in r.stderr


def test_warmup_from_the_policy_skips_the_leading_intervals(tmp_path: Path) -> None:
    b, c = write(tmp_path, requests=1000)  # intervals are 60 s apart
    policy = tmp_path / "judge.yaml"
    policy.write_text("judge:\n  algorithm: mann-whitney\n  warmup: 150s\n")
    out = json.loads(invoke("-b", b, "-c", c, "--policy", policy).stdout)
    assert out["input"]["warmupSkipped"] == 3  # t = 0, 60 and 120 s
    assert out["decidedAt"] == 27  # the fixed window is what is left


def plan(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(plan_app, ["judge-plan", *args])


plan_app = typer.Typer()
plan_app.command("judge-plan")(plan_command)
plan_app.command("noop")(lambda: None)


def test_plan_exit_code_says_whether_the_window_is_big_enough() -> None:
    big = plan("--rps", "500", "--error-rate", "0.01", "--interval", "30s")
    assert big.exit_code == 0, big.output
    out = json.loads(big.stdout)
    assert out["traffic"]["canaryRequestsPerSample"] == pytest.approx(500 * 30 * 0.2)
    assert out["windowSeconds"] == 30 * 30
    assert all(m["windowIsEnough"] for m in out["metrics"])
    small = plan("--rps", "2", "--error-rate", "0.002", "--interval", "10s")
    assert small.exit_code == 3, small.output
    err = next(m for m in json.loads(small.stdout)["metrics"] if m["name"] == "error_rate")
    assert err["windowIsEnough"] is False and err["samplesNeeded"] > 30


def test_plan_reads_the_judge_settings_from_a_policy_file(tmp_path: Path) -> None:
    f = tmp_path / "judge.yaml"
    f.write_text("judge:\n  samples: 5000\n  metrics: {latency: {enabled: false}}\n")
    r = plan("--rps", "20", "--error-rate", "0.002", "--interval", "10s", "--policy", str(f))
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["samples"] == 5000 and [m["name"] for m in out["metrics"]] == ["error_rate"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rps", "0", "--error-rate", "0.01"], "--rps must be > 0"),
        (["--rps", "5", "--error-rate", "1.5"], "--error-rate must be between 0 and 1"),
        (["--rps", "5", "--error-rate", "0.01", "--weight", "100"], "--weight must be between 0 and 100"),
        (["--rps", "5", "--error-rate", "0.01", "--interval", "soon"], "--interval: invalid duration"),
        (["--rps", "5", "--error-rate", "0.01", "--interval", "0s"], "--interval must be positive"),
    ],
)
def test_plan_refuses_bad_numbers_with_a_precise_message(args: list[str], message: str) -> None:
    r = plan(*args)
    assert r.exit_code == 2 and r.stdout == ""
    assert message in r.stderr
